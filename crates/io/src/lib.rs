//! ferroflow-io: the Saver and ferroflow's checkpoint format (checksummed, atomic, streaming),
//! partial restore by scope regex or key map, and meta-graphs for reusing a model without its code.
// Panic audit: these crates read user files; no unwrap/expect/unchecked indexing outside tests.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

pub mod checkpoint;
mod files;
pub mod meta_graph;
pub mod safetensors_io;
pub mod saver;
pub mod summary;
pub mod tf_checkpoint;
pub mod tf_graph;

pub use checkpoint::{CheckpointReader, TensorEntry};
pub use meta_graph::{export_meta_graph, import_meta_graph};
pub use safetensors_io::{
    export_safetensors, export_safetensors_with, import_safetensors, FloatFormat,
};
pub use saver::{
    get_checkpoint_state, latest_checkpoint, AnyCheckpoint, SaveFormat, Saver, VarList,
};
pub use tf_checkpoint::{write_tf_checkpoint, TfCheckpointReader};
pub use tf_graph::{export_tf_meta_graph, import_tf_meta_graph};

use std::path::PathBuf;

/// Errors of checkpoints and meta-graphs; each names the path, key or variable involved.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    #[error("cannot access {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid checkpoint: {message}")]
    Corrupt { path: PathBuf, message: String },
    /// A well-formed entry of a kind ferroflow does not read (a string tensor, a partitioned
    /// variable, an unknown dtype): the checkpoint's other entries still read.
    #[error("{path}: tensor {key} is not supported: it is {message}")]
    Unsupported {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error("The passed save_path is not a valid checkpoint: {path}")]
    NotACheckpoint { path: PathBuf },
    /// Another save into the same directory is in progress (two processes of a data-parallel job
    /// saving one checkpoint: only the chief should). `holder` says whose lock `path` is.
    #[error("{path}: another save into this directory is in progress ({holder}); save from one process only (rank 0), or remove the file if that process is gone")]
    Busy { path: PathBuf, holder: String },
    #[error("Restoring from checkpoint failed: Key {key} not found in checkpoint {path}")]
    KeyNotFound { key: String, path: PathBuf },
    #[error("Restoring from checkpoint failed for key {key}: Assign requires shapes of both tensors to match. lhs shape= {var_shape} rhs shape= {ckpt_shape:?} (dtypes {var_dtype} and {ckpt_dtype})")]
    Mismatch {
        key: String,
        var_shape: String,
        var_dtype: String,
        ckpt_shape: Vec<usize>,
        ckpt_dtype: String,
    },
    #[error("{path}: key {key} holds {file_dtype}, which does not convert to the variable's dtype {var_dtype}")]
    DTypeMismatch {
        key: String,
        var_dtype: String,
        file_dtype: String,
        path: PathBuf,
    },
    #[error("No variables to save")]
    NoVariables,
    #[error("The same saveable will be restored with two names: {key}")]
    SameVariableTwice { key: String },
    #[error("At least two variables have the same name: {name}")]
    DuplicateName { name: String },
    #[error("{path}: {message}")]
    MetaGraph { path: PathBuf, message: String },
    /// A summary that cannot be written as asked (an image of an unsupported size or layout).
    #[error("{path}: cannot write the summary: {message}")]
    Summary { path: PathBuf, message: String },
    #[error(transparent)]
    Core(#[from] ferroflow_core::Error),
}

/// Result with the io error.
pub type Result<T> = std::result::Result<T, IoError>;
