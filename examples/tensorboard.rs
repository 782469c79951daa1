//! Writes TensorBoard event files: the graph, a scalar over three steps (from a summary op), and a
//! histogram of a layer's kernel. `cargo run --example tensorboard [-- LOGDIR]` (default `target/logs/tensorboard`), then
//! `tensorboard --logdir LOGDIR` (or `python3 scripts/check_tensorboard.py LOGDIR`).

use ferroflow::io::summary::{self, FileWriter};
use ferroflow::nn::layers::{dense, Activation};
use ferroflow::prelude::*;

/// Writes TensorBoard event files: a graph, a scalar and a histogram.
#[derive(clap::Parser)]
#[command(version)]
struct Args {
    /// Where the event files go.
    #[arg(default_value = "target/logs/tensorboard")]
    logdir: String,
}

fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let Args { logdir } = clap::Parser::parse();
    let g = Graph::new();
    let x = g.named("X").placeholder(DType::F32, [None, Some(3)])?;
    let loss_in = g
        .named("loss_value")
        .placeholder(DType::F32, Shape::scalar())?;
    let kernel = {
        let _dnn = g.name_scope("dnn")?;
        dense(&g, x, 2, Some(Activation::Relu), "hidden1")?;
        g.get_tensor_by_name("hidden1/kernel:0")?
    };
    {
        let _s = g.name_scope("train")?;
        summary::scalar(&g, "loss", loss_in)?;
    }
    {
        // A scope ending in '/' is absolute: the tag is `hidden1/kernel_hist`.
        let _h = g.name_scope("hidden1/")?;
        summary::histogram(&g, "kernel_hist", kernel)?;
    }
    let merged = summary::merge_all(&g)?;
    let sess = Session::new(&g);
    sess.run_targets(&[g.global_variables_initializer()?], &[])?;
    let mut writer = FileWriter::new(std::path::Path::new(&logdir), Some(&g))?;
    for (step, loss) in [1.0f32, 0.5, 0.25].into_iter().enumerate() {
        let s = merged.run(&sess, &[feed(loss_in, loss)])?;
        writer.add_summary(s, step as i64)?;
    }
    println!("wrote {}", writer.path().display());
    writer.close()?;
    Ok(())
}
