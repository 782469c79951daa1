//! ferroflow-tools: what is built on the `ferroflow` library rather than part of it. The lecture's
//! demos (`demos`, run by the examples), the benchmark models (`bench`, run by `ferroflow bench`),
//! the bodies of the fuzz targets (`fuzzing`, run by `fuzz/` and replayed by the tests), the health
//! report of a saved model (`health`, run by `ferroflow health`), and the `ferroflow` command-line
//! tool. Library users depend on `ferroflow` and compile none of this (nor
//! its progress bars and plots).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod bench;
pub mod demos;
pub mod distributed;
mod error;
pub mod fuzzing;
pub mod health;

pub use error::{Result, ToolError};
