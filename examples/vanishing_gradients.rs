//! Vanishing gradients and their remedies on the digits (see src/demos/vanishing.rs).
//! Run: `cargo run --release --example vanishing_gradients`

use ferroflow_tools::demos::vanishing;

/// Vanishing gradients and their remedies on the digits.
#[derive(clap::Parser)]
#[command(version)]
struct Args {}

fn main() {
    let Args {} = clap::Parser::parse();
    let cfg = vanishing::Config {
        logdir: Some("target/logs/vanishing".into()),
        ..Default::default()
    };
    let mut traces = Vec::new();
    for s in vanishing::setups() {
        match vanishing::run_setup(&s, &cfg) {
            Ok(t) => traces.push(t),
            Err(e) => {
                eprintln!("{}: {e}", s.name);
                std::process::exit(1);
            }
        }
    }
    for t in &traces {
        println!("{}", t.setup);
        println!("  epoch  gradient norm by layer (1 → {})", cfg.layers);
        for (e, g) in t.grad_norms.iter().enumerate() {
            let row: Vec<String> = g.iter().map(|v| format!("{v:.1e}")).collect();
            println!("  {e:>5}  {}", row.join(" "));
        }
        let a: Vec<String> = t.activations[0]
            .iter()
            .map(|(m, s)| format!("{m:.2}±{s:.2}"))
            .collect();
        println!("  activations at init (mean±std): {}", a.join(" "));
        if let Some(init) = t.snapshots.first() {
            println!("  training health at init:");
            for line in init.table().lines() {
                println!("    {line}");
            }
        }
        print!(
            "{}",
            ferroflow_tools::demos::findings_text("  at init", &t.findings)
        );
    }
    println!("\n{}", vanishing::table(&traces));
    println!("TensorBoard logs: target/logs/vanishing (one run per setup)");
    let path = std::path::Path::new("target/vanishing_gradients.svg");
    match vanishing::plot(&traces, path) {
        Ok(()) => println!("plot: {}", path.display()),
        Err(e) => eprintln!("{e}"),
    }
}
