//! The backend's error type: what a kernel could not do, and why.

/// Why a backend call failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The allocator refused memory (a legal but larger-than-memory tensor): TensorFlow's
    /// `ResourceExhausted`.
    #[error("OOM when allocating {what} of {elements} elements ({bytes} bytes)")]
    OutOfMemory {
        what: &'static str,
        elements: usize,
        bytes: usize,
    },
    /// An output the session's memory limit has no room for (`SessionOptions::memory_limit`):
    /// refused before it is allocated.
    #[error("OOM when allocating a tensor of {bytes} bytes: the run holds {held} bytes of the session's memory limit of {limit}")]
    MemoryLimit {
        bytes: usize,
        held: usize,
        limit: usize,
    },
    /// Operands whose sizes or strides do not fit the call (the kernel touches no memory then).
    #[error("{kernel}: {message}")]
    Operands {
        kernel: &'static str,
        message: String,
    },
    /// A collective that could not complete on this rank: another rank gone or late past the
    /// timeout, ranks making different calls, or the transport failing.
    #[error("collective on rank {rank}: {message}")]
    Collective { rank: usize, message: String },
    /// Worker threads could not be started.
    #[error("cannot start {threads} worker threads: {message}")]
    Threads { threads: usize, message: String },
}

impl Error {
    /// An [`Error::OutOfMemory`] for `elements` values of `T`.
    pub fn out_of_memory<T>(what: &'static str, elements: usize) -> Self {
        Error::OutOfMemory {
            what,
            elements,
            bytes: elements.saturating_mul(std::mem::size_of::<T>()),
        }
    }

    /// An [`Error::Operands`] of `kernel`.
    pub fn operands(kernel: &'static str, message: impl Into<String>) -> Self {
        Error::Operands {
            kernel,
            message: message.into(),
        }
    }
}

/// Result with the backend's error.
pub type Result<T> = std::result::Result<T, Error>;
