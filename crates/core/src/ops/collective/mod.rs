//! Collectives across the ranks of a data-parallel job, as graph ops (Horovod's model): all-reduce
//! (sum or mean), broadcast from a root, all-gather, and the two that are their gradients, reduce to a
//! root and reduce-scatter. Their kernels run over the communicator of the session's context
//! (`SessionOptions::communicator`); every rank must run the same collectives in the same order,
//! which the plan gives when every rank builds the same graph and runs the same fetches.
//!
//! Gradients, for a loss that is the sum of every rank's loss:
//! - all-reduce sum `y_q = Σ_r x_r` on every rank q: `∂L/∂x_r = Σ_q dy_q`, an all-reduce sum of the
//!   incoming gradient; the mean's is the mean of it.
//! - broadcast `y_q = x_root`: `∂L/∂x_root = Σ_q dy_q`, and zero on the other ranks: a reduce to the
//!   root, whose own gradient is the broadcast again.
//! - all-gather `y = [x_0; x_1; …]` (along axis 0, the same on every rank): `∂L/∂x_r = Σ_q dy_q[r]`,
//!   rank r's segment of the summed gradient: a reduce-scatter, whose gradient is the all-gather.

use super::{expect_arity, GradContext, InferError, InferResult, OpDef, OpKind};
use crate::dtype::{DType, Shape, TensorInfo};
use crate::error::{KernelError, OpResult, Result};
use crate::graph::{Graph, Tensor};
use crate::value::Value;
use ferroflow_cpu::{CallInfo, CollectiveKind, CommBuf, Communicator, Context};
use ndarray::{ArrayD, Axis, IxDyn};
use serde::{Deserialize, Serialize};

/// How an all-reduce combines the ranks' tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reduction {
    Sum,
    /// The sum divided by the number of ranks (float tensors only).
    Mean,
}

/// Which collective a [`Collective`] node runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CollectiveOp {
    /// Every rank gets the sum (or mean) of every rank's tensor.
    AllReduce(Reduction),
    /// Every rank gets the root's tensor.
    Broadcast { root: usize },
    /// The root gets the sum of every rank's tensor, the other ranks zeros (the gradient of a
    /// broadcast).
    Reduce { root: usize },
    /// Every rank gets the ranks' tensors concatenated along axis 0, in rank order.
    AllGather,
    /// Rank r gets segment r (along axis 0, of `size` equal segments) of the sum of every rank's
    /// tensor (the gradient of an all-gather).
    ReduceScatter,
}

/// One collective over the session's communicator; `key` names it across ranks (the name of the
/// tensor it was built on, as Horovod names its ops), so that ranks that disagree say on what.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Collective {
    pub op: CollectiveOp,
    pub key: String,
}

/// The communicator, or the error for a session without one.
fn communicator<'a>(ctx: &Context<'a>, op: &str) -> OpResult<&'a dyn Communicator> {
    ctx.communicator().ok_or_else(|| {
        KernelError::InvalidArgument(format!(
            "{op} needs the ranks of a data-parallel job: run it in a session with \
             SessionOptions::communicator"
        ))
    })
}

/// Runs `kind` over `value`'s storage in place.
fn run_on(
    comm: &dyn Communicator,
    kind: CollectiveKind,
    key: &str,
    value: &mut Value,
) -> OpResult<()> {
    let shape = value.shape().to_vec();
    let not_contiguous =
        || KernelError::InvalidArgument(format!("a collective over a strided {shape:?} tensor"));
    let buf = match value {
        Value::F32(a) => CommBuf::F32(a.as_slice_mut().ok_or_else(not_contiguous)?),
        Value::F64(a) => CommBuf::F64(a.as_slice_mut().ok_or_else(not_contiguous)?),
        Value::I64(a) => CommBuf::I64(a.as_slice_mut().ok_or_else(not_contiguous)?),
        Value::Bool(_) => {
            return Err(KernelError::DType(
                "collectives carry float32, float64 or int64 tensors, got bool".into(),
            ))
        }
    };
    let call = CallInfo {
        kind,
        key: key.to_string(),
        dtype: buf.dtype_name(),
        len: buf.len(),
    };
    comm.collective(&call, buf)?;
    Ok(())
}

/// `value` in standard layout (the storage a collective runs over), taking it when it already is.
fn standard(value: Value) -> Value {
    match value {
        Value::F32(a) if !a.is_standard_layout() => Value::F32(a.as_standard_layout().into_owned()),
        Value::F64(a) if !a.is_standard_layout() => Value::F64(a.as_standard_layout().into_owned()),
        Value::I64(a) if !a.is_standard_layout() => Value::I64(a.as_standard_layout().into_owned()),
        v => v,
    }
}

/// Divides every element by `n` (a mean from a sum).
fn divide(value: &mut Value, n: usize) {
    match value {
        Value::F32(a) => a.mapv_inplace(|x| x / n as f32),
        Value::F64(a) => a.mapv_inplace(|x| x / n as f64),
        _ => {}
    }
}

/// Rank `r`'s segment of `value` along axis 0, of `size` equal segments.
fn segment(value: &Value, r: usize, size: usize) -> OpResult<Value> {
    let rows = value.shape().first().copied().unwrap_or(0);
    if !rows.is_multiple_of(size) {
        return Err(KernelError::Shape(format!(
            "ReduceScatter: axis 0 of {:?} does not split into {size} equal segments",
            value.shape()
        )));
    }
    let n = rows / size;
    let range = ndarray::Slice::from(r * n..(r + 1) * n);
    Ok(match value {
        Value::F32(a) => Value::F32(a.slice_axis(Axis(0), range).to_owned()),
        Value::F64(a) => Value::F64(a.slice_axis(Axis(0), range).to_owned()),
        Value::I64(a) => Value::I64(a.slice_axis(Axis(0), range).to_owned()),
        Value::Bool(a) => Value::Bool(a.slice_axis(Axis(0), range).to_owned()),
    })
}

/// `size` copies of `x`'s shape stacked along axis 0, with `x` in segment `rank` and zeros elsewhere:
/// the buffer an all-gather fills in.
fn gather_buffer(x: &Value, rank: usize, size: usize) -> OpResult<Value> {
    let mut shape = x.shape().to_vec();
    let Some(rows) = shape.first_mut() else {
        return Err(KernelError::Shape(
            "AllGather: a scalar has no axis 0 to gather along".into(),
        ));
    };
    let n = *rows;
    *rows *= size;
    let range = ndarray::Slice::from(rank * n..(rank + 1) * n);
    fn place<T: Clone + num_traits::Zero>(
        a: &ArrayD<T>,
        shape: &[usize],
        range: ndarray::Slice,
    ) -> ArrayD<T> {
        let mut out = ArrayD::zeros(IxDyn(shape));
        out.slice_axis_mut(Axis(0), range).assign(a);
        out
    }
    Ok(match x {
        Value::F32(a) => Value::F32(place(a, &shape, range)),
        Value::F64(a) => Value::F64(place(a, &shape, range)),
        Value::I64(a) => Value::I64(place(a, &shape, range)),
        Value::Bool(_) => {
            return Err(KernelError::DType(
                "collectives carry float32, float64 or int64 tensors, got bool".into(),
            ))
        }
    })
}

impl Collective {
    /// The collective over `value`, which the kernel owns.
    fn run(&self, ctx: &Context<'_>, value: Value) -> OpResult<Value> {
        let comm = communicator(ctx, self.type_name())?;
        let (rank, size) = (comm.rank(), comm.size());
        let mut value = standard(value);
        match self.op {
            CollectiveOp::AllReduce(reduction) => {
                run_on(comm, CollectiveKind::AllReduceSum, &self.key, &mut value)?;
                if reduction == Reduction::Mean {
                    divide(&mut value, size);
                }
                Ok(value)
            }
            CollectiveOp::Broadcast { root } => {
                run_on(
                    comm,
                    CollectiveKind::Broadcast { root },
                    &self.key,
                    &mut value,
                )?;
                Ok(value)
            }
            CollectiveOp::Reduce { root } => {
                run_on(comm, CollectiveKind::AllReduceSum, &self.key, &mut value)?;
                if rank != root {
                    value = Value::filled(value.dtype(), value.shape(), 0.0)?;
                }
                Ok(value)
            }
            CollectiveOp::AllGather => {
                let mut out = gather_buffer(&value, rank, size)?;
                run_on(comm, CollectiveKind::AllGather, &self.key, &mut out)?;
                Ok(out)
            }
            CollectiveOp::ReduceScatter => {
                run_on(comm, CollectiveKind::AllReduceSum, &self.key, &mut value)?;
                segment(&value, rank, size)
            }
        }
    }
}

impl OpDef for Collective {
    fn type_name(&self) -> &'static str {
        // Horovod's op types where Horovod has the op.
        match self.op {
            CollectiveOp::AllReduce(_) => "HorovodAllreduce",
            CollectiveOp::Broadcast { .. } => "HorovodBroadcast",
            CollectiveOp::Reduce { .. } => "CollectiveReduce",
            CollectiveOp::AllGather => "HorovodAllgather",
            CollectiveOp::ReduceScatter => "HorovodReducescatter",
        }
    }
    fn kind(&self) -> OpKind {
        OpKind::Collective
    }
    fn infer(&self, inputs: &[TensorInfo]) -> InferResult {
        expect_arity(inputs, 1, self.type_name())?;
        let x = &inputs[0];
        match (x.dtype, self.op) {
            (DType::Bool, _) => {
                return Err(InferError::DType(format!(
                    "{} carries float32, float64 or int64 tensors, got bool",
                    self.type_name()
                )))
            }
            (DType::I64, CollectiveOp::AllReduce(Reduction::Mean)) => {
                return Err(InferError::DType(
                    "a mean all-reduce needs a float tensor, got int64".into(),
                ))
            }
            _ => {}
        }
        match self.op {
            CollectiveOp::AllGather | CollectiveOp::ReduceScatter => match x.shape.dims() {
                Some([]) => Err(InferError::Shape(format!(
                    "{} works along axis 0, and a scalar has none",
                    self.type_name()
                ))),
                // Axis 0 depends on the number of ranks, known only when the graph runs.
                Some([_, rest @ ..]) => {
                    let mut dims = vec![None];
                    dims.extend_from_slice(rest);
                    Ok(Some(TensorInfo::new(x.dtype, Shape::new(dims))))
                }
                None => Ok(Some(x.clone())),
            },
            _ => Ok(Some(x.clone())),
        }
    }
    fn compute(&self, ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
        let x = inputs.first().ok_or_else(|| {
            KernelError::InvalidArgument(format!("{} takes 1 input", self.type_name()))
        })?;
        self.run(ctx, (*x).clone())
    }
    fn in_place_input(&self, _inputs: &[&Value]) -> Option<usize> {
        matches!(
            self.op,
            CollectiveOp::AllReduce(_)
                | CollectiveOp::Broadcast { .. }
                | CollectiveOp::Reduce { .. }
        )
        .then_some(0)
    }
    fn compute_in_place(
        &self,
        ctx: &Context<'_>,
        _k: usize,
        target: &mut Value,
        _others: &[&Value],
    ) -> OpResult<()> {
        let value = std::mem::replace(target, Value::from(0.0f32));
        *target = self.run(ctx, value)?;
        Ok(())
    }
    fn gradient(&self, ctx: &GradContext<'_>, grad: Tensor) -> Result<Vec<Option<Tensor>>> {
        let g = ctx.graph;
        let dx = match self.op {
            CollectiveOp::AllReduce(r) => g.all_reduce(grad, r)?,
            CollectiveOp::Broadcast { root } => {
                g.collective(grad, CollectiveOp::Reduce { root })?
            }
            CollectiveOp::Reduce { root } => g.broadcast(grad, root)?,
            CollectiveOp::AllGather => g.collective(grad, CollectiveOp::ReduceScatter)?,
            CollectiveOp::ReduceScatter => g.all_gather(grad)?,
        };
        Ok(vec![Some(dx)])
    }
}

impl Graph {
    /// The collective `op` over `x`, keyed by `x`'s name.
    pub fn collective(&self, x: impl Into<Tensor>, op: CollectiveOp) -> Result<Tensor> {
        let x = x.into();
        let key = self.tensor_name(x);
        let node = Collective { op, key };
        let name = node.type_name();
        self.add_node(node.into(), &[x], None, name)
    }

    /// `hvd.allreduce(x, average)`: the sum or mean of `x` over every rank, on every rank.
    pub fn all_reduce(&self, x: impl Into<Tensor>, reduction: Reduction) -> Result<Tensor> {
        self.collective(x, CollectiveOp::AllReduce(reduction))
    }

    /// `hvd.broadcast(x, root_rank)`: the root's `x` on every rank.
    pub fn broadcast(&self, x: impl Into<Tensor>, root: usize) -> Result<Tensor> {
        self.collective(x, CollectiveOp::Broadcast { root })
    }

    /// `hvd.allgather(x)`: every rank's `x` concatenated along axis 0 in rank order.
    pub fn all_gather(&self, x: impl Into<Tensor>) -> Result<Tensor> {
        self.collective(x, CollectiveOp::AllGather)
    }
}

mod split;

pub use split::{AllReduceFinish, AllReduceStart};

#[cfg(test)]
mod tests;
