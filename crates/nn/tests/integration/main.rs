//! ferroflow-nn's integration tests.
//! A single test binary: one link instead of one per file.

mod distributed;
mod layers;
mod train;
