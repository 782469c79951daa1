//! The README's TF1-style program, kept compiling and running.
use ferroflow::nn::layers::{dense, Activation};
use ferroflow::nn::{losses, Optimizer};
use ferroflow::prelude::*;

/// The README's TF1-style program.
#[derive(clap::Parser)]
#[command(version)]
struct Args {}

fn main() -> Result<()> {
    let Args {} = clap::Parser::parse();
    let g = Graph::new();
    let x = g.named("X").placeholder(DType::F32, [None, Some(64)])?;
    let y = g.named("y").placeholder(DType::I64, [None])?;
    let logits = {
        let _dnn = g.name_scope("dnn")?;
        let h1 = dense(&g, x, 100, Some(Activation::Elu), "hidden1")?;
        let h2 = dense(&g, h1, 100, Some(Activation::Elu), "hidden2")?;
        dense(&g, h2, 10, None, "outputs")?
    };
    let loss = losses::sparse_softmax_cross_entropy(&g, y, logits)?;
    let train_vars: Vec<Variable> =
        g.get_collection(keys::TRAINABLE_VARIABLES, Some("hidden2|outputs"))?;
    let train = Optimizer::adam(0.001).minimize(&g, loss, Some(&train_vars), None)?;
    let sess = Session::new(&g);
    sess.run_targets(&[g.global_variables_initializer()?], &[])?;
    let (train_set, _test) = ferroflow::data::digits_split();
    for (xb, yb) in train_set.batches(32, 0) {
        sess.run_targets(&[train], &[feed(x, xb.into_dyn()), feed(y, yb.into_dyn())])?;
    }
    let (xa, ya) = (
        train_set.images.clone().into_dyn(),
        train_set.labels.clone().into_dyn(),
    );
    println!(
        "loss after one epoch: {:.4}",
        sess.run_one(loss, &[feed(x, xa), feed(y, ya)])?
            .scalar_value()
            .unwrap_or(f64::NAN)
    );
    Ok(())
}
