//! ferroflow: a TensorFlow-1-style static computation-graph framework for deep learning.
//!
//! A program builds a symbolic [`Graph`] of placeholders, variables and ops under name scopes, lets
//! an optimizer derive the backward graph ([`Graph::gradients`]), runs it in a [`Session`] with feeds
//! and fetches, and picks variables out of collections with [`Graph::get_collection`] (TF's
//! start-anchored scope regex) to save, restore and freeze them. The crates behind this one:
//!
//! | crate | re-exported as | what it holds |
//! |---|---|---|
//! | [`ferroflow_core`] | the root, [`prelude`] | [`Graph`], ops and their gradients, [`Session`], [`SessionOptions`] |
//! | [`ferroflow_nn`] | [`nn`] | [`nn::layers::dense`], [`nn::batch_normalization`], [`nn::losses`], [`nn::Optimizer`], clipping |
//! | [`ferroflow_io`] | [`io`] | [`io::Saver`], [`io::import_meta_graph`], TensorFlow checkpoints, TensorBoard summaries |
//! | [`ferroflow_data`] | [`data`] | the bundled digits and MNIST, IDX files, [`data::Dataset`] batches |
//!
//! The CPU kernels live in the `ferroflow-cpu` crate, configured through
//! [`SessionOptions`]' `cpu` field. The lecture's whole workflow, TF1 line by line (the comments are
//! the TF1 calls):
//!
//! ```
//! use ferroflow::io::{Saver, VarList};
//! use ferroflow::nn::layers::{dense, Activation};
//! use ferroflow::nn::{losses, Optimizer};
//! use ferroflow::prelude::*;
//!
//! # fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
//! let (train, test) = ferroflow::data::digits_split(); // 8x8 digits, bundled
//! let g = Graph::new();
//! let x = g.named("X").placeholder(DType::F32, [None, Some(64)])?; // tf.placeholder(..., name="X")
//! let y = g.named("y").placeholder(DType::I64, [None])?;
//! let logits = {
//!     let _dnn = g.name_scope("dnn")?; // with tf.name_scope("dnn"):
//!     let h1 = dense(&g, x, 50, Some(Activation::Elu), "hidden1")?; // tf.layers.dense
//!     let h2 = dense(&g, h1, 50, Some(Activation::Elu), "hidden2")?;
//!     dense(&g, h2, 10, None, "outputs")?
//! };
//! let loss = losses::sparse_softmax_cross_entropy(&g, y, logits)?;
//! let train_op = Optimizer::adam(0.01).minimize(&g, loss, None, None)?; // AdamOptimizer().minimize
//! let sess = Session::new(&g);
//! sess.run_targets(&[g.global_variables_initializer()?], &[])?;
//! for epoch in 0..5 {
//!     for (xb, yb) in train.batches(32, epoch) {
//!         // sess.run(train_op, feed_dict={X: xb, y: yb})
//!         sess.run_targets(&[train_op], &[feed(x, xb.into_dyn()), feed(y, yb.into_dyn())])?;
//!     }
//! }
//! let test_loss = sess
//!     .run_one(loss, &[feed(x, test.images.clone().into_dyn()), feed(y, test.labels.clone().into_dyn())])?
//!     .scalar_value()
//!     .unwrap_or(f64::NAN);
//! assert!(test_loss < 1.0, "five epochs of Adam learn the digits: loss {test_loss}");
//!
//! // tf.train.Saver().save(sess, path): a checkpoint and its meta-graph.
//! let dir = std::env::temp_dir().join(format!("ff-doc-{}", std::process::id()));
//! let path = Saver::new(&g, VarList::All)?.save(&sess, &dir.join("model.ckpt").to_string_lossy(), None)?;
//!
//! // Reuse the lower layer in a new graph: tf.get_collection(tf.GraphKeys.GLOBAL_VARIABLES,
//! // scope="hidden1") into a Saver of its own. As in TF1, name_scope("dnn") names the ops but not the
//! // variables: the kernel is "hidden1/kernel".
//! let g2 = Graph::new();
//! let x2 = g2.named("X").placeholder(DType::F32, [None, Some(64)])?;
//! let _h1 = {
//!     let _dnn = g2.name_scope("dnn")?;
//!     dense(&g2, x2, 50, Some(Activation::Elu), "hidden1")?
//! };
//! let reuse: Vec<Variable> = g2.get_collection(keys::GLOBAL_VARIABLES, Some("hidden1"))?;
//! let restore = Saver::new(&g2, reuse.iter().map(|v| (v.op_name(&g2), *v)).collect::<Vec<_>>())?;
//! let sess2 = Session::new(&g2);
//! sess2.run_targets(&[g2.global_variables_initializer()?], &[])?;
//! restore.restore(&sess2, &path)?;
//! let before = g.get_collection::<Variable>(keys::GLOBAL_VARIABLES, Some("hidden1"))?;
//! assert_eq!(sess2.variable_value(reuse[0])?, sess.variable_value(before[0])?);
//! std::fs::remove_dir_all(dir)?;
//! # Ok(())
//! # }
//! ```
//!
//! The repository's examples run the lecture's experiments (transfer learning on MNIST, vanishing
//! gradients, batch normalization, gradient clipping); `docs/tf1-migration.md` maps each TF1 call to
//! its counterpart here.
// Panic audit: no unwrap/expect in library code (indexing is reviewed and fuzzed: docs/reliability.md).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub use ferroflow_core as core;
pub use ferroflow_core::*;
pub use ferroflow_data as data;
pub use ferroflow_io as io;
/// Data-parallel training over MPI (the `mpi` feature).
#[cfg(feature = "mpi")]
pub use ferroflow_mpi as mpi;
pub use ferroflow_nn as nn;

/// Everything a TF1-style program usually needs in scope.
pub mod prelude {
    pub use ferroflow_core::{
        feed, keys, CollectionItem, DType, Error, Graph, Initializer, Operation, Result, Reuse,
        Session, SessionOptions, Shape, Tensor, Value, VarOptions, Variable,
    };
}
