//! The classic TF1 MNIST CNN on the bundled MNIST over several seeds (see
//! crates/tools/src/demos/cnn.rs): progress bars, the test accuracy of each run and their mean,
//! a checkpoint per run, and a chart of the validation accuracy per epoch.
//! Run: `cargo run --release --example mnist_cnn`; `-- --help` lists the options.

use clap::Parser;
use ferroflow_tools::demos::cnn;
use std::path::PathBuf;

/// conv 32 3×3 → conv 64 3×3 stride 2 → max pool 2 → dense 64 → dropout 0.5 → 10, Adam with
/// an exponentially decaying learning rate.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Directory with the four MNIST-format IDX files (gzipped or not); default: the bundled MNIST.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Runs, with seeds 42, 43, ...
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    seeds: u32,
    /// Epochs per run.
    #[arg(long, default_value_t = 14, value_parser = clap::value_parser!(u32).range(1..))]
    epochs: u32,
    /// Adam's learning rate at the start.
    #[arg(long)]
    learning_rate: Option<f64>,
    /// Factor of the learning rate per epoch.
    #[arg(long)]
    decay_per_epoch: Option<f64>,
    /// Mini-batch size.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    batch_size: u32,
    /// Where the checkpoints and the chart go.
    #[arg(long, default_value = "target/mnist_cnn")]
    out_dir: PathBuf,
}

fn main() {
    let args = Args::parse();
    let mut cfg = cnn::Config {
        epochs: args.epochs as usize,
        batch_size: args.batch_size as usize,
        out_dir: args.out_dir,
        ..Default::default()
    };
    if let Some(lr) = args.learning_rate {
        cfg.learning_rate = lr;
    }
    if let Some(d) = args.decay_per_epoch {
        cfg.decay_per_epoch = d;
    }
    if let Some(dir) = args.data {
        cfg.data_dir = dir;
    }
    let fail = |e: ferroflow_tools::ToolError| -> ! {
        eprintln!("{e}");
        std::process::exit(1)
    };
    let data = cnn::load(&cfg).unwrap_or_else(|e| fail(e));
    println!(
        "MNIST: {} training, {} validation, {} test images; Adam lr {} × {}^epoch, batch {}, {} epochs",
        data.0.len(),
        data.1.len(),
        data.2.len(),
        cfg.learning_rate,
        cfg.decay_per_epoch,
        cfg.batch_size,
        cfg.epochs
    );
    let outcomes: Vec<cnn::Outcome> = (0..args.seeds as u64)
        .map(|s| cnn::run(42 + s, &data, &cfg).unwrap_or_else(|e| fail(e)))
        .collect();
    print!("{}", cnn::table(&outcomes));
    let chart = cfg.out_dir.join("validation_accuracy.svg");
    cnn::plot(&chart, &outcomes).unwrap_or_else(|e| fail(e));
    println!(
        "checkpoints: {}; chart: {}",
        outcomes
            .iter()
            .map(|o| o.checkpoint.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        chart.display()
    );
}
