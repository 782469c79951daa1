//! MNIST digits 0-4 (the lecture's exercise), without and with batch normalization, over several
//! seeds (see crates/tools/src/demos/mnist.rs). Run: `cargo run --release --example mnist_0_4`;
//! `-- --help` lists the options.

use clap::Parser;
use ferroflow_tools::demos::mnist;
use std::path::PathBuf;

/// 5 hidden layers of ELU units, He initialization, Adam, early stopping on classes 0-4.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Directory with the four MNIST-format IDX files (gzipped or not); default: the bundled MNIST.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Runs per model, with seeds 42, 43, ...
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    seeds: u32,
    /// Adam's learning rate.
    #[arg(long)]
    learning_rate: Option<f64>,
    /// Mini-batch size.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    batch_size: Option<u32>,
    /// Units in each hidden layer.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    hidden_units: Option<u32>,
    /// Epochs without a better validation loss before stopping.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    patience: Option<u32>,
    /// Batch normalization's momentum.
    #[arg(long)]
    bn_momentum: Option<f64>,
    /// Only the model without batch normalization, or only the one with it.
    #[arg(long, value_enum)]
    only: Option<Model>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
enum Model {
    Plain,
    Bn,
}

fn main() {
    let args = Args::parse();
    let mut cfg = mnist::Config::default();
    if let Some(dir) = args.data {
        cfg.data_dir = dir;
    }
    if let Some(lr) = args.learning_rate {
        cfg.learning_rate = lr;
    }
    if let Some(b) = args.batch_size {
        cfg.batch_size = b as usize;
    }
    if let Some(p) = args.patience {
        cfg.patience = p as usize;
    }
    if let Some(m) = args.bn_momentum {
        cfg.bn_momentum = m;
    }
    if let Some(u) = args.hidden_units {
        cfg.hidden_units = u as usize;
    }
    let data = match mnist::load(&cfg) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("cannot load the data: {e}");
            std::process::exit(1);
        }
    };
    println!(
        "classes 0-4: {} training, {} validation, {} test images; Adam lr {}, batch {}",
        data.0.len(),
        data.1.len(),
        data.2.len(),
        cfg.learning_rate,
        cfg.batch_size
    );
    let mut outcomes = Vec::new();
    for bn in [false, true] {
        if args
            .only
            .is_some_and(|m| m != if bn { Model::Bn } else { Model::Plain })
        {
            continue;
        }
        for s in 0..args.seeds as u64 {
            let run = mnist::Config {
                seed: cfg.seed + s,
                ..cfg.clone()
            };
            match mnist::run(bn, &data, &run) {
                Ok(o) => outcomes.push(o),
                Err(e) => {
                    eprintln!("{e}");
                    std::process::exit(1);
                }
            }
        }
    }
    print!("{}", mnist::table(&outcomes, &cfg));
}
