//! Batch normalization at a normal and a 10x learning rate (see src/demos/batch_norm.rs).
//! Run: `cargo run --release --example batch_norm [-- --relu]` (sigmoid by default)

use ferroflow_tools::demos::batch_norm;

fn main() {
    let mut cfg = batch_norm::Config::default();
    if std::env::args().any(|a| a == "--relu") {
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
}
