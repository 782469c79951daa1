//! The main demo: transfer learning on the bundled digits (see src/demos/transfer.rs).
//! Run: `cargo run --release --example transfer_learning [-- --per-class N --epochs E]`

fn main() {
    let mut cfg = ferroflow_tools::demos::transfer::Config::default();
    let args: Vec<String> = std::env::args().collect();
    for w in args.windows(2) {
        match (w[0].as_str(), w[1].parse::<usize>()) {
            ("--per-class", Ok(n)) => cfg.per_class = n,
            ("--epochs", Ok(n)) => cfg.transfer_epochs = n,
            _ => {}
        }
    }
    match ferroflow_tools::demos::transfer::run(&cfg) {
        Ok(report) => print!("{}", ferroflow_tools::demos::transfer::table(&report, &cfg)),
        Err(e) => {
            eprintln!("transfer_learning failed: {e}");
            std::process::exit(1);
        }
    }
}
