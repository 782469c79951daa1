//! MNIST digits 0-4 (the lecture's exercise), without and with batch normalization
//! (see crates/tools/src/demos/mnist.rs). Run: `cargo run --release --example mnist_0_4 [-- DIR]`,
//! DIR holding the four official gzipped MNIST IDX files (`train-images-idx3-ubyte.gz`,
//! `train-labels-idx1-ubyte.gz`, `t10k-images-idx3-ubyte.gz`, `t10k-labels-idx1-ubyte.gz`; default
//! `data/mnist`).

use ferroflow_tools::demos::mnist;

fn main() {
    let mut cfg = mnist::Config::default();
    if let Some(dir) = std::env::args().nth(1) {
        cfg.data_dir = dir.into();
    }
    let data = match mnist::load(&cfg) {
        Ok(d) => d,
        Err(e) => {
            eprintln!(
                "cannot load MNIST from {}: {e}\nPut the four gzipped MNIST IDX files there, or pass their \
                 directory: cargo run --release --example mnist_0_4 -- DIR",
                cfg.data_dir.display()
            );
            std::process::exit(1);
        }
    };
    println!(
        "MNIST 0-4: {} training, {} validation, {} test images",
        data.0.len(),
        data.1.len(),
        data.2.len()
    );
    let mut outcomes = Vec::new();
    for bn in [false, true] {
        match mnist::run(bn, &data, &cfg) {
            Ok(o) => outcomes.push(o),
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(1);
            }
        }
    }
    print!("{}", mnist::table(&outcomes));
}
