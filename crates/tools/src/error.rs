//! The error type of the tools: the library's errors, and what the tools add (data, files, plots,
//! arguments).

/// Why a demo, a benchmark or the command-line tool failed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// An error of the library (graph, session, kernels).
    #[error(transparent)]
    Core(#[from] ferroflow::Error),
    /// A checkpoint, meta-graph or summary could not be read or written.
    #[error(transparent)]
    Io(#[from] ferroflow::io::IoError),
    /// A data set could not be loaded.
    #[error("{0}")]
    Data(String),
    /// A file of the tool's own (a plot, a directory) could not be written.
    #[error("cannot write {path}: {message}")]
    Write { path: String, message: String },
    /// An argument or setting the tool does not accept.
    #[error("{0}")]
    Usage(String),
}

/// Result with the tools' error.
pub type Result<T> = std::result::Result<T, ToolError>;
