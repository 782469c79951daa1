//! Batch normalization at a normal and a 10x learning rate (see src/demos/batch_norm.rs).
//! Run: `cargo run --release --example batch_norm [-- --relu]` (sigmoid by default)

use ferroflow_tools::demos::batch_norm;

/// Batch normalization at a normal and a 10x learning rate, on the digits.
#[derive(clap::Parser)]
#[command(version)]
struct Args {
    /// ReLU hidden layers instead of sigmoid ones.
    #[arg(long)]
    relu: bool,
}

fn main() {
    let args: Args = clap::Parser::parse();
    let mut cfg = batch_norm::Config::default();
    if args.relu {
        cfg.activation = ferroflow::nn::Activation::Relu;
    }
    let mut outcomes = Vec::new();
    for (bn, lr) in [
        (false, cfg.learning_rate),
        (true, cfg.learning_rate),
        (false, 10.0 * cfg.learning_rate),
        (true, 10.0 * cfg.learning_rate),
    ] {
        match batch_norm::run(bn, lr, &cfg) {
            Ok(o) => outcomes.push(o),
            Err(e) => {
                eprintln!("BN={bn} lr={lr}: {e}");
                std::process::exit(1);
            }
        }
    }
    print!("{}", batch_norm::table(&outcomes, &cfg));
    println!("\ntraining health (one snapshot per epoch, before its updates):");
    for o in &outcomes {
        let label = format!("BN={} lr={}", o.batch_norm, o.learning_rate);
        print!(
            "{}",
            ferroflow_tools::demos::findings_text(&label, &o.findings)
        );
    }
}
