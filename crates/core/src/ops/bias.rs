//! `tf.nn.bias_add` as TF's `BiasAdd` op, and its gradient `BiasAddGrad`: a bias of one value per
//! channel (the last axis) added over every other axis. The sum is `AddV2`'s over the same
//! operands, so the kernels, the in-place form and the fusions (after a product, before a `Relu`)
//! are [`Binary`]'s add; what differs is the op type TF graphs use, the stricter shape rule (the
//! bias is a vector as long as the last axis), and the gradient: the bias's is `BiasAddGrad`, the
//! sum over every axis but the last.

use super::binary::{Binary, BinaryKind};
use super::kernels::{by_float, float_input, FloatArray};
use super::matmul::ProductEpilogue;
use super::tf::{TfAttr, TfNode};
use super::{
    expect_arity, expect_float, same_dtype, GradContext, InferError, InferResult, Op, OpDef,
};
use crate::dtype::{Shape, TensorInfo};
use crate::error::{KernelError, OpResult, Result};
use crate::graph::{Graph, Tensor};
use crate::value::Value;
use ferroflow_cpu::Context;
use ndarray::{ArrayD, IxDyn};
use serde::{Deserialize, Serialize};

const ADD: Binary = Binary {
    kind: BinaryKind::Add,
};

/// `value + bias`, `bias` a vector as long as `value`'s last axis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BiasAdd;

/// The gradient of [`BiasAdd`] with respect to its bias: the input summed over every axis but the
/// last.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BiasAddGrad;

impl OpDef for BiasAdd {
    fn type_name(&self) -> &'static str {
        "BiasAdd"
    }
    fn tf_node(&self, inputs: &[TensorInfo]) -> Option<TfNode> {
        Some(TfNode::typed(inputs)?.with("data_format", TfAttr::Str("NHWC".into())))
    }
    fn infer(&self, inputs: &[TensorInfo]) -> InferResult {
        expect_arity(inputs, 2, "BiasAdd")?;
        let dtype = same_dtype(inputs)?;
        expect_float(&inputs[0], "BiasAdd's inputs")?;
        let (x, b) = (&inputs[0].shape, &inputs[1].shape);
        let last = channels(x, "the value")?;
        match b.dims() {
            None | Some([None]) => {}
            Some([Some(n)]) if last.is_none_or(|c| c == *n) => {}
            Some(_) => {
                return Err(InferError::Shape(format!(
                    "the bias must be a vector as long as the value's last dimension: value {x}, bias {b}"
                )))
            }
        }
        Ok(Some(TensorInfo::new(dtype, x.clone())))
    }
    fn compute(&self, ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
        check_bias(inputs)?;
        ADD.compute(ctx, inputs)
    }
    fn in_place_input(&self, inputs: &[&Value]) -> Option<usize> {
        check_bias(inputs).ok()?;
        ADD.in_place_input(inputs).filter(|&i| i == 0)
    }
    fn compute_in_place(
        &self,
        ctx: &Context<'_>,
        k: usize,
        target: &mut Value,
        others: &[&Value],
    ) -> OpResult<()> {
        ADD.compute_in_place(ctx, k, target, others)
    }
    fn with_relu(&self) -> Option<Op> {
        ADD.with_relu()
    }
    fn as_epilogue(&self, product_input: usize) -> Option<ProductEpilogue> {
        (product_input == 0).then_some(ProductEpilogue::BiasAdd { relu: false })
    }
    fn gradient(&self, ctx: &GradContext<'_>, grad: Tensor) -> Result<Vec<Option<Tensor>>> {
        let db = ctx
            .graph
            .add_node(BiasAddGrad.into(), &[grad], None, "BiasAddGrad")?;
        Ok(vec![Some(grad), Some(db)])
    }
}

/// The static size of `shape`'s last axis (the channels), or an error naming `what` when it is a
/// scalar.
fn channels(shape: &Shape, what: &str) -> std::result::Result<Option<usize>, InferError> {
    match shape.dims() {
        Some([]) => Err(InferError::Shape(format!(
            "{what} must have at least one dimension, got a scalar"
        ))),
        Some(d) => Ok(d.last().copied().flatten()),
        None => Ok(None),
    }
}

/// The run-time form of the shape rule: a bias vector as long as the value's last axis.
fn check_bias(inputs: &[&Value]) -> OpResult<()> {
    let (Some(x), Some(b)) = (inputs.first(), inputs.get(1)) else {
        return Err(KernelError::InvalidArgument(
            "BiasAdd takes 2 inputs".into(),
        ));
    };
    match (x.shape().last(), b.shape()) {
        (Some(c), [n]) if c == n => Ok(()),
        _ => Err(KernelError::Shape(format!(
            "BiasAdd: the bias must be a vector as long as the value's last dimension: value {:?}, bias {:?}",
            x.shape(),
            b.shape()
        ))),
    }
}

fn bias_grad_typed<T: FloatArray>(ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
    let g = float_input::<T>(inputs, 0, "BiasAddGrad")?;
    let Some(&c) = g.shape().last() else {
        return Err(KernelError::Shape(
            "BiasAddGrad: the input must have at least one dimension".into(),
        ));
    };
    let data = super::conv::row_major(g);
    let sums = ferroflow_cpu::parallel::column_sums(ctx, &data, c)?;
    Ok(T::wrap(
        ArrayD::from_shape_vec(IxDyn(&[c]), sums).map_err(KernelError::from)?,
    ))
}

impl OpDef for BiasAddGrad {
    fn type_name(&self) -> &'static str {
        "BiasAddGrad"
    }
    fn infer(&self, inputs: &[TensorInfo]) -> InferResult {
        expect_arity(inputs, 1, "BiasAddGrad")?;
        expect_float(&inputs[0], "BiasAddGrad's input")?;
        let c = channels(&inputs[0].shape, "the input")?;
        Ok(Some(TensorInfo::new(inputs[0].dtype, Shape::new(vec![c]))))
    }
    fn compute(&self, ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
        by_float(
            inputs,
            "BiasAddGrad",
            || bias_grad_typed::<f32>(ctx, inputs),
            || bias_grad_typed::<f64>(ctx, inputs),
        )
    }
    /// Linear: the gradient of the column sums is the incoming vector broadcast over the rows.
    fn gradient(&self, ctx: &GradContext<'_>, grad: Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(ctx.graph.broadcast_like(grad, ctx.input(0)?)?)])
    }
}

impl Graph {
    /// `tf.nn.bias_add(value, bias)`: `bias` (one value per channel of `value`'s last axis) added
    /// over every other axis.
    pub fn bias_add(&self, value: impl Into<Tensor>, bias: impl Into<Tensor>) -> Result<Tensor> {
        self.add_node(
            BiasAdd.into(),
            &[value.into(), bias.into()],
            None,
            "BiasAdd",
        )
    }
}
