//! Vanishing gradients and their remedies on the digits (see src/demos/vanishing.rs).
//! Run: `cargo run --release --example vanishing_gradients`

use ferroflow_tools::demos::vanishing;

/// Vanishing gradients and their remedies on the digits.
#[derive(clap::Parser)]
#[command(version, about)]
struct Args {}

fn main() {
    let Args {} = clap::Parser::parse();
    let cfg = vanishing::Config::default();
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
    }
    println!("\n{}", vanishing::table(&traces));
    // Per-layer gradient norms as TensorBoard scalars and histograms (`tensorboard --logdir target/logs`).
    for (k, t) in traces.iter().enumerate() {
        let dir = std::path::PathBuf::from(format!("target/logs/vanishing/setup{k}"));
        let written = (|| -> Result<(), ferroflow::io::IoError> {
            let mut w = ferroflow::io::summary::FileWriter::new(&dir, None)?;
            for (epoch, norms) in t.grad_norms.iter().enumerate() {
                for (layer, n) in norms.iter().enumerate() {
                    w.add_scalar(&format!("grad_norm/hidden{}", layer + 1), *n, epoch as i64)?;
                }
                w.add_histogram("grad_norm/all_layers", norms, epoch as i64)?;
            }
            w.close()
        })();
        if let Err(e) = written {
            eprintln!("{}: {e}", t.setup);
        }
    }
    println!("TensorBoard logs: target/logs/vanishing (one run per setup, setup0 = (a))");
    let path = std::path::Path::new("target/vanishing_gradients.svg");
    match vanishing::plot(&traces, path) {
        Ok(()) => println!("plot: {}", path.display()),
        Err(e) => eprintln!("{e}"),
    }
}
