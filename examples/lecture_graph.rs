//! The lecture's slide 27, line by line:
//!
//! ```python
//! with tf.name_scope("dnn"):
//!     hidden1 = tf.layers.dense(X, n_hidden1, activation=tf.nn.relu, name="hidden1")
//!     ...
//!     logits = tf.layers.dense(hidden5, n_outputs, name="outputs")
//! reuse_vars = tf.get_collection(tf.GraphKeys.GLOBAL_VARIABLES, scope="hidden[123]")
//! ```
//! Run: `cargo run --example lecture_graph`

use ferroflow::nn::layers::{dense, Activation};
use ferroflow::prelude::*;

/// The lecture's slide 27: the graph, the collections, the reuse of hidden1-3.
#[derive(clap::Parser)]
#[command(version)]
struct Args {}

fn main() -> Result<()> {
    let Args {} = clap::Parser::parse();
    let (n_inputs, n_hidden1, n_hidden2, n_hidden3, n_hidden4, n_hidden5, n_outputs) =
        (28 * 28, 300, 50, 50, 50, 50, 10);
    let g = Graph::new();
    let x = g
        .named("X")
        .placeholder(DType::F32, [None, Some(n_inputs)])?;
    let relu = Some(Activation::Relu);
    let logits = {
        let _dnn = g.name_scope("dnn")?;
        let hidden1 = dense(&g, x, n_hidden1, relu, "hidden1")?;
        let hidden2 = dense(&g, hidden1, n_hidden2, relu, "hidden2")?;
        let hidden3 = dense(&g, hidden2, n_hidden3, relu, "hidden3")?;
        let hidden4 = dense(&g, hidden3, n_hidden4, relu, "hidden4")?;
        let hidden5 = dense(&g, hidden4, n_hidden5, relu, "hidden5")?;
        dense(&g, hidden5, n_outputs, None, "outputs")?
    };
    let reuse_vars: Vec<Variable> =
        g.get_collection(keys::GLOBAL_VARIABLES, Some("hidden[123]"))?;
    println!("logits: {}", g.tensor_name(logits));
    println!("get_collection(GLOBAL_VARIABLES, scope=\"hidden[123]\"):");
    for v in &reuse_vars {
        println!("  {} {}", v.name(&g), v.shape(&g));
    }
    Ok(())
}
