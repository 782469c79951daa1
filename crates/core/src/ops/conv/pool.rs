//! Max and average pooling over NHWC data, TF's `MaxPool` and `AvgPool`, with their gradients
//! `MaxPoolGrad` and `AvgPoolGrad`. Windows with SAME padding take only the taps inside the input:
//! the maximum of those, and the mean over how many there are. A maximum's gradient goes to the
//! first tap in row-major window order that holds it (TF's CPU kernel). `AvgPoolGrad` is linear in
//! its gradient input and differentiable again (its gradient is `AvgPool`); `MaxPoolGrad`'s
//! gradient is TF's `MaxPoolGradGrad` and the other way round, so both pools differentiate to any
//! order.

use super::super::kernels::{by_float, float_input, FloatArray};
use super::super::tf::{nhwc, TfAttr, TfNode};
use super::super::{
    expect_arity, expect_float, same_dtype, GradContext, InferError, InferResult, OpDef,
};
use super::{bad_argument, rank4, row_major, spatial, window, window_shape, Padding};
use crate::dtype::TensorInfo;
use crate::error::{KernelError, OpResult, Result};
use crate::graph::{Graph, Tensor};
use crate::value::Value;
use ferroflow_cpu::conv::pooling;
use ferroflow_cpu::Context;
use ndarray::{ArrayD, IxDyn};
use serde::{Deserialize, Serialize};

/// Window size, strides and padding of a pooling op (TF's `ksize` and `strides` without their batch
/// and depth entries, which TF requires to be 1 on CPU).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolAttrs {
    pub ksize: [usize; 2],
    pub strides: [usize; 2],
    pub padding: Padding,
}

/// Which pooling op a node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PoolKind {
    /// `tf.nn.max_pool`: the maximum of each window, per channel.
    Max,
    /// The gradient of `Max`: inputs the pool's input, its output and the output's gradient (TF's
    /// order; the kernel finds each window's maximum again from the input).
    MaxGrad,
    /// `tf.nn.avg_pool`: the mean of each window's taps inside the input, per channel.
    Avg,
    /// The gradient of `Avg`: inputs the pool's input (for its shape; TF takes the shape as a
    /// tensor) and the output's gradient.
    AvgGrad,
    /// The gradient of `MaxGrad` with respect to its output gradient: inputs the pool's input, its
    /// output, and an input-shaped gradient; each pooled output takes that gradient at the tap of
    /// its window's maximum.
    MaxGradGrad,
}

impl PoolKind {
    /// TF's op type.
    pub fn name(self) -> &'static str {
        match self {
            PoolKind::Max => "MaxPool",
            PoolKind::MaxGrad => "MaxPoolGrad",
            PoolKind::Avg => "AvgPool",
            PoolKind::AvgGrad => "AvgPoolGrad",
            PoolKind::MaxGradGrad => "MaxPoolGradGrad",
        }
    }
    /// The input that holds the incoming gradient, for the gradient ops.
    fn grad_input(self) -> Option<usize> {
        match self {
            PoolKind::MaxGrad | PoolKind::MaxGradGrad => Some(2),
            PoolKind::AvgGrad => Some(1),
            PoolKind::Max | PoolKind::Avg => None,
        }
    }
    /// Whether the output has the pooled shape (else the input's); the gradient input has the
    /// other one.
    fn pooled_output(self) -> bool {
        matches!(self, PoolKind::Max | PoolKind::Avg | PoolKind::MaxGradGrad)
    }
}

/// Shape rule: the forward ops map `[N, H, W, C]` to `[N, OH, OW, C]`; `MaxPoolGrad` and
/// `AvgPoolGrad` give their first input's shape and check the gradient against the pooled shape;
/// `MaxPoolGradGrad` gives the pooled shape and checks its gradient against the input's.
fn infer_pool(inputs: &[TensorInfo], a: &PoolAttrs, which: PoolKind) -> InferResult {
    let op = which.name();
    let arity = match which {
        PoolKind::Max | PoolKind::Avg => 1,
        PoolKind::AvgGrad => 2,
        PoolKind::MaxGrad | PoolKind::MaxGradGrad => 3,
    };
    expect_arity(inputs, arity, op)?;
    let dtype = same_dtype(inputs)?;
    expect_float(&inputs[0], &format!("{op}'s input"))?;
    let x = rank4(&inputs[0], "the input")?;
    let k = [Some(a.ksize[0]), Some(a.ksize[1])];
    let out = window_shape(x, k, a.strides, [1, 1], a.padding, x.and_then(|x| x[3]))?;
    let Some(g) = which.grad_input() else {
        return Ok(Some(TensorInfo::new(dtype, out)));
    };
    let (want, what) = if which.pooled_output() {
        (inputs[0].shape.clone(), "the pool's input")
    } else {
        (out.clone(), "the pooled output")
    };
    if let (Some(dy), Some(w)) = (rank4(&inputs[g], "the gradient")?, want.dims()) {
        if !dy
            .iter()
            .zip(w)
            .all(|(a, b)| a.is_none() || b.is_none() || a == b)
        {
            return Err(InferError::Shape(format!(
                "the gradient has shape {}, {what} is {want}",
                inputs[g].shape
            )));
        }
    }
    let shape = if which.pooled_output() {
        out
    } else {
        inputs[0].shape.clone()
    };
    Ok(Some(TensorInfo::new(dtype, shape)))
}

fn pool_typed<T: FloatArray>(
    ctx: &Context<'_>,
    a: &PoolAttrs,
    which: PoolKind,
    inputs: &[&Value],
) -> OpResult<Value> {
    let op = which.name();
    let x = float_input::<T>(inputs, 0, op)?;
    let g = window(x.shape(), a.ksize, a.strides, [1, 1], a.padding)?;
    let pooled = [g.batch, g.out_h, g.out_w, g.channels];
    let dy = match which.grad_input() {
        Some(i) => {
            let dy = float_input::<T>(inputs, i, op)?;
            let want: &[usize] = if which.pooled_output() {
                x.shape()
            } else {
                &pooled
            };
            if dy.shape() != want {
                return Err(KernelError::Shape(format!(
                    "{op}: the gradient has shape {:?}, expected {want:?}",
                    dy.shape()
                )));
            }
            Some(row_major(dy))
        }
        None => None,
    };
    let shape: &[usize] = if which.pooled_output() {
        &pooled
    } else {
        x.shape()
    };
    let mut out = ctx.try_vec::<T>(Value::checked_len(shape)?)?;
    match (which, dy) {
        (PoolKind::Max, _) => pooling::max_pool(ctx, &g, &row_major(x), &mut out)?,
        (PoolKind::Avg, _) => pooling::avg_pool(ctx, &g, &row_major(x), &mut out)?,
        (PoolKind::MaxGrad, Some(dy)) => {
            pooling::max_pool_grad(ctx, &g, &row_major(x), &dy, &mut out)?
        }
        (PoolKind::MaxGradGrad, Some(dd)) => {
            pooling::max_pool_grad_grad(ctx, &g, &row_major(x), &dd, &mut out)?
        }
        (PoolKind::AvgGrad, Some(dy)) => pooling::avg_pool_grad(ctx, &g, &dy, &mut out)?,
        _ => {
            return Err(KernelError::InvalidArgument(format!(
                "{op}: missing its gradient input"
            )))
        }
    }
    Ok(T::wrap(
        ArrayD::from_shape_vec(IxDyn(shape), out).map_err(KernelError::from)?,
    ))
}

fn compute_pool(
    ctx: &Context<'_>,
    a: &PoolAttrs,
    which: PoolKind,
    inputs: &[&Value],
) -> OpResult<Value> {
    by_float(
        inputs,
        which.name(),
        || pool_typed::<f32>(ctx, a, which, inputs),
        || pool_typed::<f64>(ctx, a, which, inputs),
    )
}

/// A pooling op or its gradient (see [`PoolKind`]), with its window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    pub kind: PoolKind,
    pub attrs: PoolAttrs,
}

impl OpDef for Pool {
    fn type_name(&self) -> &'static str {
        self.kind.name()
    }
    fn tf_node(&self, inputs: &[TensorInfo]) -> Option<TfNode> {
        // The gradients take other inputs than TF's own gradient ops: forward pooling only.
        if !matches!(self.kind, PoolKind::Max | PoolKind::Avg) {
            return None;
        }
        let a = &self.attrs;
        Some(
            TfNode::typed(inputs)?
                .with("ksize", nhwc(a.ksize))
                .with("strides", nhwc(a.strides))
                .with("padding", TfAttr::Str(a.padding.tf_name().into()))
                .with("data_format", TfAttr::Str("NHWC".into())),
        )
    }
    fn infer(&self, inputs: &[TensorInfo]) -> InferResult {
        infer_pool(inputs, &self.attrs, self.kind)
    }
    fn compute(&self, ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
        compute_pool(ctx, &self.attrs, self.kind, inputs)
    }
    /// `MaxPool`: `MaxPoolGrad(x, y, dy)`. `AvgPool`: `AvgPoolGrad(x, dy)`. `AvgPoolGrad` is linear
    /// in the output gradient and the adjoint of `AvgPool`: its gradient is `AvgPool` of the
    /// incoming gradient. `MaxPoolGrad` and `MaxPoolGradGrad` are linear in their gradient input
    /// and adjoint to each other (both route values along the same argmax taps), so each one's
    /// gradient is the other; the input and output of the pool get none (TF gives zeros).
    fn gradient(&self, ctx: &GradContext<'_>, grad: Tensor) -> Result<Vec<Option<Tensor>>> {
        let g = ctx.graph;
        let node = |kind: PoolKind, inputs: &[Tensor]| g.pool_node(kind, inputs, self.attrs);
        match self.kind {
            PoolKind::Max => Ok(vec![Some(node(
                PoolKind::MaxGrad,
                &[ctx.input(0)?, ctx.output, grad],
            )?)]),
            PoolKind::Avg => Ok(vec![Some(node(PoolKind::AvgGrad, &[ctx.input(0)?, grad])?)]),
            PoolKind::AvgGrad => Ok(vec![None, Some(node(PoolKind::Avg, &[grad])?)]),
            PoolKind::MaxGrad => Ok(vec![
                None,
                None,
                Some(node(
                    PoolKind::MaxGradGrad,
                    &[ctx.input(0)?, ctx.input(1)?, grad],
                )?),
            ]),
            PoolKind::MaxGradGrad => Ok(vec![
                None,
                None,
                Some(node(
                    PoolKind::MaxGrad,
                    &[ctx.input(0)?, ctx.input(1)?, grad],
                )?),
            ]),
        }
    }
}

impl Graph {
    /// `tf.nn.max_pool(value, ksize, strides, padding)` (NHWC): `ksize` and `strides` as `[k]`,
    /// `[k_h, k_w]` or `[1, k_h, k_w, 1]`.
    pub fn max_pool(
        &self,
        value: impl Into<Tensor>,
        ksize: &[usize],
        strides: &[usize],
        padding: &str,
    ) -> Result<Tensor> {
        let attrs = pool_attrs("MaxPool", ksize, strides, padding)?;
        self.pool_node(PoolKind::Max, &[value.into()], attrs)
    }

    /// `tf.nn.avg_pool(value, ksize, strides, padding)` (NHWC).
    pub fn avg_pool(
        &self,
        value: impl Into<Tensor>,
        ksize: &[usize],
        strides: &[usize],
        padding: &str,
    ) -> Result<Tensor> {
        let attrs = pool_attrs("AvgPool", ksize, strides, padding)?;
        self.pool_node(PoolKind::Avg, &[value.into()], attrs)
    }

    /// TF's `AvgPoolGrad`, the shape taken from `input`.
    pub fn avg_pool_grad(&self, input: Tensor, grad: Tensor, attrs: PoolAttrs) -> Result<Tensor> {
        self.pool_node(PoolKind::AvgGrad, &[input, grad], attrs)
    }

    fn pool_node(&self, kind: PoolKind, inputs: &[Tensor], attrs: PoolAttrs) -> Result<Tensor> {
        self.add_node(Pool { kind, attrs }.into(), inputs, None, kind.name())
    }
}

/// Parses TF's list forms into [`PoolAttrs`].
fn pool_attrs(op: &str, ksize: &[usize], strides: &[usize], padding: &str) -> Result<PoolAttrs> {
    Ok(PoolAttrs {
        ksize: spatial("ksize", ksize).map_err(|m| bad_argument(op, m))?,
        strides: spatial("strides", strides).map_err(|m| bad_argument(op, m))?,
        padding: Padding::parse(padding).ok_or_else(|| {
            bad_argument(op, format!("padding '{padding}': expected SAME or VALID"))
        })?,
    })
}
