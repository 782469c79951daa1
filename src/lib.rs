//! ferroflow: a TensorFlow-1-style static computation-graph framework for deep learning.
//!
//! Build a symbolic [`Graph`] of placeholders, variables and ops under name scopes; derive gradients
//! symbolically with [`Graph::gradients`]; run it with a [`Session`]; pick variables out of
//! collections with [`Graph::get_collection`] (TF's start-anchored scope regex).
//!
//! ```
//! use ferroflow::prelude::*;
//! let g = Graph::new();
//! let x = g.named("x").placeholder(DType::F32, [None, Some(2)]).unwrap();
//! let w = g.get_variable("w", &[2, 1], DType::F32).unwrap();
//! let y = g.matmul(x, w).unwrap();
//! let init = g.global_variables_initializer().unwrap();
//! let sess = Session::new(&g);
//! sess.run_targets(&[init], &[]).unwrap();
//! let out = sess.run_one(y, &[feed(x, Value::from_f32(&[1, 2], vec![1.0, 2.0]).unwrap())]).unwrap();
//! assert_eq!(out.shape(), &[1, 1]);
//! ```
// Panic audit: no unwrap/expect in library code (indexing is reviewed and fuzzed: docs/reliability.md).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub use ferroflow_core as core;
pub use ferroflow_core::*;
pub use ferroflow_data as data;
pub use ferroflow_io as io;
pub use ferroflow_nn as nn;

/// Everything a TF1-style program usually needs in scope.
pub mod prelude {
    pub use ferroflow_core::{
        feed, keys, CollectionItem, DType, Error, Graph, Initializer, Operation, Result, Reuse,
        Session, SessionOptions, Shape, Tensor, Value, VarOptions, Variable,
    };
}
