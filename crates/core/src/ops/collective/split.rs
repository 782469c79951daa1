//! An all-reduce in two ops, so that communication overlaps computation: `AllReduceStart` hands
//! the tensor to the communicator and outputs a ticket at once; `AllReduceFinish` waits for the
//! result. The plan runs a start as soon as its input exists and a finish only when nothing else
//! is ready ([`Schedule`]): over MPI, whose communicator reduces on its own thread, one layer's
//! gradients are reduced while the backward pass computes the next layer's.
//!
//! The ticket is an int64 vector: the communicator's ticket number, then the tensor's shape. The
//! pair has no gradient (TF's Horovod ops do not either for their fused, asynchronous form); use
//! [`Graph::all_reduce`] where a gradient must flow through the reduction.

use super::{communicator, divide, Reduction};
use crate::dtype::{DType, Shape, TensorInfo};
use crate::error::{KernelError, OpResult, Result};
use crate::graph::{Graph, Tensor};
use crate::ops::{expect_arity, InferError, InferResult, OpDef, OpKind, Schedule};
use crate::value::Value;
use ferroflow_cpu::{CallInfo, CollectiveKind, CommVec, Context};
use ndarray::{ArrayD, IxDyn};
use serde::{Deserialize, Serialize};

/// Starts an all-reduce (sum) of its input; outputs the ticket. `key` names it across ranks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllReduceStart {
    pub key: String,
}

/// Waits for the all-reduce its ticket started; outputs the sum, or with [`Reduction::Mean`] the
/// mean, in the shape the start was given. `info` is that input's static dtype and shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllReduceFinish {
    pub reduction: Reduction,
    pub info: TensorInfo,
}

/// A copy of `x`'s elements in order, for the communicator to own.
fn owned(x: &Value) -> OpResult<CommVec> {
    Ok(match x {
        Value::F32(a) => CommVec::F32(
            a.as_slice()
                .map_or_else(|| a.iter().copied().collect(), <[f32]>::to_vec),
        ),
        Value::F64(a) => CommVec::F64(
            a.as_slice()
                .map_or_else(|| a.iter().copied().collect(), <[f64]>::to_vec),
        ),
        Value::I64(a) => CommVec::I64(
            a.as_slice()
                .map_or_else(|| a.iter().copied().collect(), <[i64]>::to_vec),
        ),
        Value::Bool(_) => {
            return Err(KernelError::DType(
                "collectives carry float32, float64 or int64 tensors, got bool".into(),
            ))
        }
    })
}

impl OpDef for AllReduceStart {
    fn type_name(&self) -> &'static str {
        "HorovodAllreduceStart"
    }
    fn kind(&self) -> OpKind {
        OpKind::Collective
    }
    fn schedule(&self) -> Schedule {
        Schedule::Early
    }
    fn infer(&self, inputs: &[TensorInfo]) -> InferResult {
        expect_arity(inputs, 1, self.type_name())?;
        if inputs[0].dtype == DType::Bool {
            return Err(InferError::DType(
                "an all-reduce carries float32, float64 or int64 tensors, got bool".into(),
            ));
        }
        let rank = inputs[0].shape.rank();
        Ok(Some(TensorInfo::new(
            DType::I64,
            Shape::new(vec![rank.map(|r| r + 1)]),
        )))
    }
    fn compute(&self, ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
        let comm = communicator(ctx, self.type_name())?;
        let x = inputs
            .first()
            .ok_or_else(|| KernelError::InvalidArgument("AllReduceStart takes 1 input".into()))?;
        let data = owned(x)?;
        let call = CallInfo {
            kind: CollectiveKind::AllReduceSum,
            key: self.key.clone(),
            dtype: x.dtype().tf_name(),
            len: x.len(),
        };
        let ticket = comm.start(call, data)?;
        let mut ticket_and_shape = vec![ticket as i64];
        ticket_and_shape.extend(x.shape().iter().map(|&d| d as i64));
        let n = ticket_and_shape.len();
        Ok(Value::I64(
            ArrayD::from_shape_vec(IxDyn(&[n]), ticket_and_shape).map_err(KernelError::from)?,
        ))
    }
}

impl OpDef for AllReduceFinish {
    fn type_name(&self) -> &'static str {
        "HorovodAllreduceFinish"
    }
    fn kind(&self) -> OpKind {
        OpKind::Collective
    }
    fn schedule(&self) -> Schedule {
        Schedule::Late
    }
    fn infer(&self, inputs: &[TensorInfo]) -> InferResult {
        expect_arity(inputs, 1, self.type_name())?;
        if inputs[0].dtype != DType::I64 {
            return Err(InferError::DType(format!(
                "an all-reduce's ticket is int64, got {}",
                inputs[0].dtype
            )));
        }
        Ok(Some(self.info.clone()))
    }
    fn compute(&self, ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
        let comm = communicator(ctx, self.type_name())?;
        let bad = || {
            KernelError::InvalidArgument(
                "AllReduceFinish takes the ticket of an AllReduceStart".into(),
            )
        };
        let ticket = inputs.first().and_then(|t| t.as_i64()).ok_or_else(bad)?;
        let mut parts = ticket.iter().copied();
        let number = parts
            .next()
            .and_then(|t| u64::try_from(t).ok())
            .ok_or_else(bad)?;
        let shape: Vec<usize> = parts
            .map(|d| usize::try_from(d).map_err(|_| bad()))
            .collect::<OpResult<_>>()?;
        let dims = IxDyn(&shape);
        let wrong = KernelError::from;
        let mut value = match comm.finish(number)? {
            CommVec::F32(v) => Value::F32(ArrayD::from_shape_vec(dims, v).map_err(wrong)?),
            CommVec::F64(v) => Value::F64(ArrayD::from_shape_vec(dims, v).map_err(wrong)?),
            CommVec::I64(v) => Value::I64(ArrayD::from_shape_vec(dims, v).map_err(wrong)?),
        };
        if self.reduction == Reduction::Mean {
            divide(&mut value, comm.size());
        }
        Ok(value)
    }
}

impl Graph {
    /// An all-reduce of `x` in two ops (see the module): the plan starts it as soon as `x` exists
    /// and waits for it as late as it can. No gradient flows through it.
    pub fn all_reduce_overlapped(
        &self,
        x: impl Into<Tensor>,
        reduction: Reduction,
    ) -> Result<Tensor> {
        let x = x.into();
        let info = self.info(x)?;
        if reduction == Reduction::Mean && !info.dtype.is_float() {
            return Err(crate::Error::DType {
                node: self.tensor_name(x),
                op: "HorovodAllreduceFinish".into(),
                message: format!("a mean all-reduce needs a float tensor, got {}", info.dtype),
            });
        }
        let key = self.tensor_name(x);
        let ticket = self.add_node(
            AllReduceStart { key }.into(),
            &[x],
            None,
            "HorovodAllreduceStart",
        )?;
        self.add_node(
            AllReduceFinish { reduction, info }.into(),
            &[ticket],
            None,
            "HorovodAllreduceFinish",
        )
    }
}
