//! Ops: each op's struct, shape/dtype rule, CPU kernel, gradient rule and `Graph` builder method
//! live together in one section of one family file.

pub mod apply;
pub mod batch_norm;
pub mod bias;
pub mod binary;
pub mod collective;
pub mod conv;
pub mod indexing;
pub(crate) mod kernels;
pub mod logic;
pub mod matmul;
pub mod nn;
pub mod random;
pub mod reduce;
pub mod shape_ops;
pub mod state;
pub mod tf;
pub mod unary;

pub use tf::{TfAttr, TfNode};

use crate::dtype::TensorInfo;
use crate::error::{Error, KernelError, OpResult, Result};
use crate::graph::{Graph, Tensor};
use crate::value::Value;
use ferroflow_cpu::Context;
use serde::{Deserialize, Serialize};

/// Why a shape/dtype rule rejected its inputs.
#[derive(Clone, Debug, PartialEq)]
pub enum InferError {
    /// The static shapes do not fit the op.
    Shape(String),
    /// The dtypes do not fit the op.
    DType(String),
}

impl From<KernelError> for InferError {
    fn from(e: KernelError) -> Self {
        match e {
            KernelError::DType(m) => InferError::DType(m),
            other => InferError::Shape(other.to_string()),
        }
    }
}

/// The result of a shape/dtype rule: the output's info, or `None` for ops without a value.
pub type InferResult = std::result::Result<Option<TensorInfo>, InferError>;

/// How the session treats an op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// A deterministic function of its inputs: may be deduplicated (CSE) and constant-folded.
    Pure,
    /// Reads or writes session state, or draws random numbers: executed by the session itself.
    Stateful,
    /// Communicates with the other ranks of a data-parallel job: its kernel runs like a pure op's,
    /// but it is never folded or deduplicated (every rank must make the same calls).
    Collective,
}

/// Where the plan places an op among the ops ready at the same time (after the variable reads,
/// before the writes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Schedule {
    /// As soon as its inputs exist (the start of a communication that overlaps what follows).
    Early,
    /// In creation order among the others.
    Normal,
    /// Only when nothing else is ready (waiting for that communication).
    Late,
}

/// What a gradient rule sees of the node it differentiates.
pub struct GradContext<'a> {
    /// The graph to add gradient ops to (under `gradients/<op>_grad/`).
    pub graph: &'a Graph,
    /// The node's name.
    pub name: String,
    /// The node's data inputs.
    pub inputs: Vec<Tensor>,
    /// Static info of each input.
    pub input_infos: Vec<TensorInfo>,
    /// The node's output.
    pub output: Tensor,
}

impl GradContext<'_> {
    /// The `i`-th input, or an error naming the node.
    pub fn input(&self, i: usize) -> Result<Tensor> {
        self.inputs
            .get(i)
            .copied()
            .ok_or_else(|| Error::internal(format!("node '{}' has no input {i}", self.name)))
    }
}

/// The behaviour every op provides.
pub trait OpDef {
    /// TF's op type (`MatMul`, `AddV2`, `Relu`).
    fn type_name(&self) -> &'static str;
    /// Static dtype and shape of the output from those of the inputs.
    fn infer(&self, inputs: &[TensorInfo]) -> InferResult;
    /// The CPU kernel, run with the context's threads, pool and configuration. Stateful ops are
    /// executed by the session and keep this default.
    fn compute(&self, _ctx: &Context<'_>, _inputs: &[&Value]) -> OpResult<Value> {
        Err(KernelError::InvalidArgument(format!(
            "op {} has no stateless kernel",
            self.type_name()
        )))
    }
    /// Pure or stateful.
    fn kind(&self) -> OpKind {
        OpKind::Pure
    }
    /// Where the plan places it among the ops ready at the same time.
    fn schedule(&self) -> Schedule {
        Schedule::Normal
    }
    /// When the output is exactly input `i` for these run-time inputs (e.g. summing a gradient to the
    /// shape it already has), the session shares that input instead of running the kernel.
    fn alias_input(&self, _inputs: &[&Value]) -> Option<usize> {
        None
    }
    /// In-place execution: the input whose buffer this kernel can overwrite with its output for
    /// these inputs (same dtype and shape as the output, contiguous), if any. When the session owns
    /// that input exclusively and no later node reads it, it calls [`OpDef::compute_in_place`]
    /// instead of [`OpDef::compute`], saving an allocation and a pass over fresh memory.
    fn in_place_input(&self, _inputs: &[&Value]) -> Option<usize> {
        None
    }
    /// Computes the output into `target`, which holds input `k`; `others` are the other inputs in
    /// order. Must give exactly what `compute` gives.
    fn compute_in_place(
        &self,
        _ctx: &Context<'_>,
        _k: usize,
        _target: &mut Value,
        _others: &[&Value],
    ) -> OpResult<()> {
        Err(KernelError::InvalidArgument(format!(
            "op {} has no in-place kernel",
            self.type_name()
        )))
    }
    /// Fusion: the op that computes this one followed by the `Relu` that alone reads its output, in
    /// one pass (a bias add becomes `AddRelu`, a batch normalization its `+Relu` form). The plan
    /// fuses float outputs only.
    fn with_relu(&self) -> Option<Op> {
        None
    }
    /// Fusion: whether this is the `Relu` that [`OpDef::with_relu`] absorbs.
    fn is_relu(&self) -> bool {
        false
    }
    /// Fusion: the op that computes this product and then `epilogue` over each band of its rows, if
    /// this op takes epilogues (`MatMul`).
    fn with_epilogue(&self, _epilogue: matmul::ProductEpilogue) -> Option<Op> {
        None
    }
    /// Fusion: what this op does as the epilogue of a product that is its input `product_input`
    /// (a bias add, or an activation gradient whose gradient input is the product), if it can be one.
    fn as_epilogue(&self, _product_input: usize) -> Option<matmul::ProductEpilogue> {
        None
    }
    /// The TensorFlow node of the same meaning (see [`tf`]), for these input dtypes and shapes;
    /// `None` when TF has no such op.
    fn tf_node(&self, _inputs: &[TensorInfo]) -> Option<TfNode> {
        None
    }
    /// The gradient rule: one entry per input (`None` for no gradient), built from graph ops.
    fn gradient(&self, ctx: &GradContext<'_>, _grad: Tensor) -> Result<Vec<Option<Tensor>>> {
        Err(Error::NoGradient {
            node: ctx.name.clone(),
            op: self.type_name().into(),
        })
    }
}

macro_rules! op_list {
    ($($variant:ident($ty:ty)),* $(,)?) => {
        /// Every op ferroflow knows: the one list that maps op names to types for (de)serialization.
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        pub enum Op { $($variant($ty)),* }

        impl Op {
            /// The op's behaviour.
            pub fn def(&self) -> &dyn OpDef {
                match self { $(Op::$variant(o) => o),* }
            }
        }
        $(impl From<$ty> for Op { fn from(o: $ty) -> Self { Op::$variant(o) } })*
    };
}

// The position of each op in this list is its tag in meta-graph files (bincode's variant index):
// append new ops at the end, never reorder. `tests::meta_graph_tags_are_stable` pins a few.
op_list! {
    Const(state::Const),
    Placeholder(state::Placeholder),
    PlaceholderWithDefault(state::PlaceholderWithDefault),
    Variable(state::VariableOp),
    Assign(state::Assign),
    ApplyUpdate(apply::ApplyUpdate),
    NoOp(state::NoOp),
    Identity(state::Identity),
    StopGradient(state::StopGradient),
    CheckNumerics(state::CheckNumerics),
    Random(random::Random),
    Unary(unary::Unary),
    ActivationGrad(unary::ActivationGrad),
    FillLike(unary::FillLike),
    Binary(binary::Binary),
    Compare(logic::Compare),
    Logical(logic::Logical),
    Select(logic::Select),
    AddN(binary::AddN),
    MatMul(matmul::MatMul),
    Reduce(reduce::Reduce),
    ArgMax(reduce::ArgMax),
    L2Loss(reduce::L2Loss),
    Size(reduce::Size),
    SumToShapeOf(reduce::SumToShapeOf),
    BroadcastLike(reduce::BroadcastLike),
    Reshape(shape_ops::Reshape),
    ReshapeLike(shape_ops::ReshapeLike),
    Transpose(shape_ops::Transpose),
    ExpandDims(shape_ops::ExpandDims),
    Squeeze(shape_ops::Squeeze),
    Concat(indexing::Concat),
    ConcatGrad(indexing::ConcatGrad),
    Slice(indexing::Slice),
    SliceGrad(indexing::SliceGrad),
    Gather(indexing::Gather),
    GatherGrad(indexing::GatherGrad),
    OneHot(indexing::OneHot),
    Cast(shape_ops::Cast),
    Softmax(nn::Softmax),
    SparseSoftmaxXent(nn::SparseSoftmaxXent),
    SoftmaxXent(nn::SoftmaxXent),
    MomentsVariance(batch_norm::MomentsVariance),
    BatchNorm(batch_norm::BatchNorm),
    BatchNormGradStats(batch_norm::BatchNormGradStats),
    BatchNormParamGrad(batch_norm::BatchNormParamGrad),
    BatchNormGradInput(batch_norm::BatchNormGradInput),
    AddRelu(binary::AddRelu),
    MatMulFused(matmul::MatMulFused),
    Conv(conv::Conv),
    Pool(conv::pool::Pool),
    BiasAdd(bias::BiasAdd),
    BiasAddGrad(bias::BiasAddGrad),
    Collective(collective::Collective),
    AllReduceStart(collective::AllReduceStart),
    AllReduceFinish(collective::AllReduceFinish),
}

impl Op {
    /// TF's op type name.
    pub fn type_name(&self) -> &'static str {
        self.def().type_name()
    }
    /// Runs the shape/dtype rule.
    pub fn infer(&self, inputs: &[TensorInfo]) -> InferResult {
        self.def().infer(inputs)
    }
    /// Runs the kernel.
    pub fn compute(&self, ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
        self.def().compute(ctx, inputs)
    }
    /// Pure or stateful.
    pub fn kind(&self) -> OpKind {
        self.def().kind()
    }
    /// See [`OpDef::alias_input`].
    pub fn alias_input(&self, inputs: &[&Value]) -> Option<usize> {
        self.def().alias_input(inputs)
    }
    /// See [`OpDef::in_place_input`].
    pub fn in_place_input(&self, inputs: &[&Value]) -> Option<usize> {
        self.def().in_place_input(inputs)
    }
    /// The matrix product an op runs (`MatMul`, or a `MatMul` fused with the op after it).
    pub(crate) fn product(&self) -> Option<&matmul::MatMul> {
        match self {
            Op::MatMul(m) => Some(m),
            Op::MatMulFused(f) => Some(&f.product),
            _ => None,
        }
    }
    /// See [`OpDef::compute_in_place`].
    pub fn compute_in_place(
        &self,
        ctx: &Context<'_>,
        k: usize,
        target: &mut Value,
        others: &[&Value],
    ) -> OpResult<()> {
        self.def().compute_in_place(ctx, k, target, others)
    }
}

/// Checks the number of inputs in a shape rule.
pub(crate) fn expect_arity(
    inputs: &[TensorInfo],
    n: usize,
    op: &str,
) -> std::result::Result<(), InferError> {
    if inputs.len() == n {
        Ok(())
    } else {
        Err(InferError::Shape(format!(
            "{op} takes {n} inputs, got {}",
            inputs.len()
        )))
    }
}

/// Checks that all inputs share one dtype, returning it.
pub(crate) fn same_dtype(
    inputs: &[TensorInfo],
) -> std::result::Result<crate::dtype::DType, InferError> {
    let first = inputs
        .first()
        .ok_or_else(|| InferError::Shape("op needs at least one input".into()))?
        .dtype;
    for i in inputs {
        if i.dtype != first {
            return Err(InferError::DType(format!(
                "inputs must share one dtype, got {} and {}",
                first, i.dtype
            )));
        }
    }
    Ok(first)
}

/// Checks that an input is a float tensor.
pub(crate) fn expect_float(info: &TensorInfo, what: &str) -> std::result::Result<(), InferError> {
    if info.dtype.is_float() {
        Ok(())
    } else {
        Err(InferError::DType(format!(
            "{what} must be float32 or float64, got {}",
            info.dtype
        )))
    }
}

/// Normalizes a possibly negative axis against a rank.
pub(crate) fn norm_axis(axis: i64, rank: usize) -> OpResult<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r {
        Err(KernelError::Shape(format!(
            "axis {axis} is out of range for rank {rank}"
        )))
    } else {
        Ok(a as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The variant index bincode writes first for an enum: the op's tag in meta-graph files.
    fn tag(op: &Op) -> u32 {
        let bytes = bincode::serialize(op).unwrap();
        u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
    }

    #[test]
    fn meta_graph_tags_are_stable() {
        use crate::dtype::{DType, Shape};
        assert_eq!(
            tag(&Op::Const(state::Const {
                value: crate::value::Value::from(1.0f32)
            })),
            0
        );
        assert_eq!(
            tag(&Op::Placeholder(state::Placeholder {
                dtype: DType::F32,
                shape: Shape::scalar()
            })),
            1
        );
        assert_eq!(
            tag(&Op::Assign(state::Assign {
                mode: state::AssignMode::Set
            })),
            4
        );
        assert_eq!(
            tag(&Op::MatMul(matmul::MatMul {
                transpose_a: false,
                transpose_b: false
            })),
            19
        );
        assert_eq!(tag(&Op::SoftmaxXent(nn::SoftmaxXent)), 41);
    }
}

/// What the families' unit tests share: f64 inputs fed to placeholders, one-thread runs, gradients of
/// a sum, and comparisons.
#[cfg(test)]
pub(crate) mod test_support {
    use crate::{feed, DType, Graph, Session, SessionOptions, Tensor, Value};

    /// An f64 placeholder of `shape`, and the feed that gives it `data`.
    pub(crate) fn input(g: &Graph, shape: &[usize], data: &[f64]) -> (Tensor, (Tensor, Value)) {
        let dims: Vec<Option<usize>> = shape.iter().map(|&d| Some(d)).collect();
        let x = g.placeholder(DType::F64, dims).unwrap();
        (x, feed(x, Value::from_f64(shape, data.to_vec()).unwrap()))
    }

    /// The fetches as f64 vectors, run on one thread.
    pub(crate) fn eval(g: &Graph, fetches: &[Tensor], feeds: &[(Tensor, Value)]) -> Vec<Vec<f64>> {
        let sess = Session::with_options(g, SessionOptions::with_threads(1));
        let out = sess.run(fetches, feeds, &[]).unwrap();
        out.iter().map(Value::to_f64_vec).collect()
    }

    /// d(sum(y))/dx.
    pub(crate) fn grad(g: &Graph, y: Tensor, x: Tensor) -> Tensor {
        let s = g.reduce_sum(y, None, false).unwrap();
        g.gradients(&[s], &[x]).unwrap()[0].unwrap()
    }

    /// `got` equals `want` within `tol` relative (and absolute near zero).
    pub(crate) fn close(got: &[f64], want: &[f64], tol: f64, what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: {got:?}");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= tol * (1.0 + w.abs()),
                "{what}[{i}]: {g} vs {w}"
            );
        }
    }
}
