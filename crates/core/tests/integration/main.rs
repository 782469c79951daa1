//! ferroflow-core's integration tests, one module per concern.
//! A single test binary: one link instead of one per file.

mod batch_norm;
mod fused_products;
mod gradients;
mod kernels_prop;
mod memory_limit;
mod naming;
mod op_gradients_prop;
mod session;
