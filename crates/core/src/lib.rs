//! ferroflow-core: the graph IR (nodes, dtypes, static shapes), TF1 naming and collections, ops
//! (kernel + shape rule + gradient rule), symbolic autodiff, compiler passes, plans and the session.
// Panic audit: no unwrap/expect in library code (indexing is reviewed and fuzzed: docs/reliability.md).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod autodiff;
pub mod dtype;
pub mod error;
pub mod graph;
pub mod init;
pub mod ops;
mod passes;
mod plan;
pub mod session;
pub mod testing;
pub mod value;

pub use autodiff::{GradientOptions, UnconnectedGradients};
pub use dtype::{DType, Dim, Shape, TensorInfo};
pub use error::{Error, Result};
/// The CPU backend (kernels, worker threads, configuration).
pub use ferroflow_cpu as cpu;
/// The CPU backend's configuration, part of [`SessionOptions`].
pub use ferroflow_cpu::CpuConfig;
/// The ranks of a data-parallel job, part of [`SessionOptions`]; a group of threads for tests.
pub use ferroflow_cpu::{Communicator, LocalGroup, LocalRank};
pub use graph::{
    keys, CollectionItem, Graph, Operation, Reuse, ScopeGuard, ScopeRegex, Tensor, VarOptions,
    Variable,
};
pub use init::{FanMode, Initializer, VsDistribution};
pub use ops::collective::{CollectiveOp, Reduction};
pub use session::{feed, OpProfile, Session, SessionOptions};
pub use value::Value;
