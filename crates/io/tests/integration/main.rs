//! ferroflow-io's integration tests.
//! A single test binary: one link instead of one per file.

mod crash;
mod meta_graph;
mod saver;
