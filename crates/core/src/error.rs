//! The error type of ferroflow-core: every variant names what a user needs to fix the problem.

use crate::dtype::{DType, Shape};

/// Errors raised while building graphs, deriving gradients, compiling plans and running sessions.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum Error {
    /// Static shape inference failed when a node was added.
    #[error("shape error in node '{node}' (op {op}): {message}")]
    Shape {
        node: String,
        op: String,
        message: String,
    },

    /// Static dtype inference failed when a node was added.
    #[error("dtype error in node '{node}' (op {op}): {message}")]
    DType {
        node: String,
        op: String,
        message: String,
    },

    /// An argument of a builder call or a kernel is invalid (bad axis, out-of-range label, ...).
    #[error("invalid argument in node '{node}' (op {op}): {message}")]
    InvalidArgument {
        node: String,
        op: String,
        message: String,
    },

    /// A name is not valid as a TF op or scope name.
    #[error("invalid name '{name}': {message}")]
    InvalidName { name: String, message: String },

    /// `get_variable` without reuse found an existing variable.
    #[error("Variable {name} already exists, disallowed. Did you mean to set reuse=True or reuse=AUTO_REUSE in VarScope?")]
    VariableExists { name: String },

    /// `get_variable` with reuse=true found no such variable.
    #[error("Variable {name} does not exist, or was not created with get_variable(). Did you mean to set reuse=AUTO_REUSE in VarScope?")]
    VariableMissing { name: String },

    /// `get_variable` with reuse found the variable with another shape or dtype.
    #[error("Trying to share variable {name}, but specified {requested} and found {found}.")]
    VariableMismatch {
        name: String,
        requested: String,
        found: String,
    },

    /// A name or handle does not refer to anything in this graph.
    #[error("not found in graph: {what}")]
    NotFound { what: String },

    /// A tensor name was expected but an operation name was given (`"x"` instead of `"x:0"`).
    #[error("the name '{name}' refers to an Operation, not a Tensor. Tensor names must be of the form \"<op_name>:<output_index>\".")]
    OperationNotTensor { name: String },

    /// An operation without an output value was fetched or used as an input.
    #[error("operation '{name}' (op {op}) has no output value; run it as a target instead")]
    NoOutput { name: String, op: String },

    /// A placeholder needed by the fetches was not fed.
    #[error("You must feed a value for placeholder tensor '{placeholder}' with dtype {dtype} and shape {shape}")]
    MissingFeed {
        placeholder: String,
        dtype: DType,
        shape: Shape,
    },

    /// A fed value does not match the tensor's dtype or static shape.
    #[error("cannot feed value of dtype {got_dtype} and shape {got_shape:?} for tensor '{tensor}', which has dtype {dtype} and shape {shape}")]
    FeedMismatch {
        tensor: String,
        dtype: DType,
        shape: Shape,
        got_dtype: DType,
        got_shape: Vec<usize>,
    },

    /// A variable was read before it was initialized.
    #[error("Attempting to use uninitialized value {name}")]
    UninitializedVariable { name: String },

    /// The subgraph to run contains a cycle.
    #[error("the graph contains a cycle through node '{node}'")]
    Cycle { node: String },

    /// No gradient rule exists for an op on the path between ys and xs.
    #[error("No gradient defined for operation '{node}' (op type: {op})")]
    NoGradient { node: String, op: String },

    /// A gradient rule returned a tensor whose shape does not match its input.
    #[error("gradient of op {op} (node '{node}') for input {input} has shape {grad_shape}, but the input has shape {input_shape}")]
    GradientShape {
        node: String,
        op: String,
        input: usize,
        grad_shape: Shape,
        input_shape: Shape,
    },

    /// A kernel failed at run time (bad runtime shape, out-of-range index, out of memory, ...):
    /// the node, its op, the shapes of the inputs it was given, and the kernel's reason.
    #[error(
        "error running node '{node}' (op {op}) on inputs of shapes {input_shapes:?}: {source}"
    )]
    Kernel {
        node: String,
        op: String,
        input_shapes: Vec<Vec<usize>>,
        source: KernelError,
    },

    /// A tensor held NaN or infinite values where numerics are checked (`check_numerics`).
    #[error("{message}: Tensor had {what} values (node '{node}', op {op})")]
    NonFinite {
        node: String,
        op: String,
        what: String,
        message: String,
    },

    /// A regular expression given as a collection scope does not compile.
    #[error("invalid scope regex '{pattern}': {message}")]
    BadRegex { pattern: String, message: String },

    /// Values that do not fill the shape asked for (`Value::from_f32` and friends).
    #[error("cannot make a tensor of shape {shape:?} from {len} values")]
    DataShape { shape: Vec<usize>, len: usize },

    /// The backend failed outside a kernel (worker threads that could not start).
    #[error(transparent)]
    Backend(#[from] ferroflow_cpu::Error),

    /// A broken invariant of ferroflow itself (a bug to report), with what was found.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Result with ferroflow-core's error.
pub type Result<T> = std::result::Result<T, Error>;

/// Why a kernel failed, before the session adds the node, its op and its inputs' shapes
/// ([`Error::Kernel`]).
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum KernelError {
    /// The backend could not do it: out of memory (TF's `ResourceExhausted`), or operands it
    /// refuses.
    #[error(transparent)]
    Backend(#[from] ferroflow_cpu::Error),
    /// The run-time shapes do not fit the op.
    #[error("{0}")]
    Shape(String),
    /// An input's dtype is not one the kernel takes.
    #[error("{0}")]
    DType(String),
    /// An input value the op refuses (an out-of-range index or label, a bad axis, ...).
    #[error("{0}")]
    InvalidArgument(String),
}

impl From<ndarray::ShapeError> for KernelError {
    fn from(e: ndarray::ShapeError) -> Self {
        KernelError::Shape(e.to_string())
    }
}

/// The result of a kernel.
pub type OpResult<T> = std::result::Result<T, KernelError>;

impl Error {
    pub(crate) fn internal(msg: impl Into<String>) -> Self {
        Error::Internal(msg.into())
    }
}
