//! Exploding gradients and gradient clipping on the digits (see src/demos/clipping.rs).
//! Run: `cargo run --release --example gradient_clipping`

use ferroflow_tools::demos::clipping::{self, Clipping};

/// Exploding gradients and gradient clipping on the digits.
#[derive(clap::Parser)]
#[command(version)]
struct Args {}

fn main() {
    let Args {} = clap::Parser::parse();
    let cfg = clipping::Config::default();
    let mut outcomes = Vec::new();
    for c in [
        Clipping::None,
        Clipping::GlobalNorm(1.0),
        Clipping::Value(1.0),
    ] {
        match clipping::run(c, &cfg) {
            Ok(o) => outcomes.push(o),
            Err(e) => {
                eprintln!("{c:?}: {e}");
                std::process::exit(1);
            }
        }
    }
    print!("{}", clipping::table(&outcomes));
    println!("\ntraining health (one snapshot per epoch, gradients before clipping):");
    for o in &outcomes {
        print!(
            "{}",
            ferroflow_tools::demos::findings_text(&format!("{:?}", o.clipping), &o.findings)
        );
    }
}
