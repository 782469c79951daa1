//! The main demo: the lecture's transfer-learning exercise on the bundled MNIST
//! (see crates/tools/src/demos/transfer). Run: `cargo run --release --example transfer_learning`;
//! `-- --help` lists the options.

use clap::Parser;
use ferroflow_tools::demos::transfer::{self, report, Source};
use std::path::PathBuf;

/// Pretrain on classes 0-4, then learn 5-9 from a few images per class, five ways.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Directory with the four MNIST-format IDX files (gzipped or not); default: the bundled MNIST.
    /// Fashion-MNIST works too, e.g. /usr/share/datasets/fashion-mnist.
    #[arg(long, value_name = "DIR", conflicts_with = "digits")]
    data: Option<PathBuf>,
    /// Use the bundled 8x8 digits instead (seconds; 20 units a layer, pretraining with batch 50 and
    /// learning rate 0.001).
    #[arg(long)]
    digits: bool,
    /// Training images per class of 5-9.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    per_class: u32,
    /// Epochs of each transfer run.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    epochs: u32,
    /// Runs per variant, each with its own seed.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    seeds: u32,
    /// Where the checkpoint and the plot go.
    #[arg(long, value_name = "DIR", default_value = "target/transfer_learning")]
    out: PathBuf,
}

fn main() {
    let args = Args::parse();
    let mut cfg = transfer::Config {
        per_class: args.per_class as usize,
        epochs: args.epochs as usize,
        seeds: args.seeds as usize,
        ..Default::default()
    };
    cfg.pretrain.checkpoint_dir = args.out.clone();
    if args.digits {
        cfg.source = Source::Digits;
        // 575 training images of 0-4: small batches and Adam's usual rate.
        cfg.pretrain.hidden_units = 20;
        cfg.pretrain.batch_size = 50;
        cfg.pretrain.learning_rate = 0.001;
    } else if let Some(dir) = args.data {
        cfg.source = Source::Idx(dir);
    }
    let r = match transfer::run(&cfg) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("transfer_learning failed: {e}");
            std::process::exit(1);
        }
    };
    print!("{}\n{}", report::table(&r), report::conclusion(&r));
    let plot = args.out.join("validation_accuracy.svg");
    match report::plot(&r, &plot) {
        Ok(()) => println!("\nplot: {}", plot.display()),
        Err(e) => eprintln!("{e}"),
    }
}
