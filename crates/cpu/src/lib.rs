//! ferroflow-cpu: the CPU backend. Matrix products (a blocked loop around the `gemm` crates'
//! microkernels, [`gemm`]), the elementwise and column passes split across threads and compiled for
//! the CPU's widest vectors ([`parallel`], [`simd`]), the float math they vectorize ([`math`]), the
//! pool of dead tensors' storage ([`pool`]), the worker threads and packing workspaces, and a global
//! allocator for large buffers ([`alloc`]).
//!
//! It knows nothing about graphs: every kernel takes a [`Context`] (configuration, threads, pool,
//! workspaces, and for collectives a [`Communicator`]) and slices or strided matrices. All of ferroflow's `unsafe` is here.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod alloc;
pub mod comm;
pub mod config;
pub mod context;
pub mod conv;
pub mod error;
pub mod gemm;
pub mod math;
pub mod parallel;
pub mod pool;
pub mod simd;

pub use comm::{
    CallInfo, CollectiveKind, CommBuf, CommVec, Communicator, LocalGroup, LocalRank, Ticket,
};
pub use config::{ConfigError, CpuConfig};
pub use context::{Context, MemoryBudget, Workers, Workspaces};
pub use error::{Error, Result};
pub use math::Float;
pub use pool::VecPool;
pub use simd::Isa;
