//! Reductions (sum, mean, max, min, argmax, l2_loss, size) and the two broadcasting helpers that
//! gradients of broadcasting ops are built from (`SumToShapeOf`, `BroadcastLike`).

use super::kernels::{by_float, float_input, standard, sum_to_shape, FloatArray};
use super::tf::{TfAttr, TfNode};
use super::{expect_arity, expect_float, norm_axis, GradContext, InferError, InferResult, OpDef};
use crate::dtype::{DType, Shape, TensorInfo};
use crate::error::{Error, KernelError, OpResult, Result};
use crate::graph::{Graph, Tensor};
use crate::value::Value;
use ferroflow_cpu::Context;
use ndarray::{ArrayD, Axis, IxDyn};
use serde::{Deserialize, Serialize};

/// Which reduction a `Reduce` node computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReduceKind {
    Sum,
    Mean,
    Max,
    Min,
}

/// Reduces over `axes` (all when `None`), keeping reduced axes as size 1 when `keepdims`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reduce {
    pub kind: ReduceKind,
    pub axes: Option<Vec<i64>>,
    pub keepdims: bool,
}

/// Normalizes and deduplicates axes against a rank; `None` means every axis.
pub(crate) fn normalize_axes(
    axes: &Option<Vec<i64>>,
    rank: usize,
) -> OpResult<super::kernels::Dims> {
    let mut out = match axes {
        None => (0..rank).collect::<super::kernels::Dims>(),
        Some(a) => a
            .iter()
            .map(|&x| norm_axis(x, rank))
            .collect::<std::result::Result<super::kernels::Dims, _>>()?,
    };
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Sum or mean over the leading axes of a row-major array (a bias gradient, a batch mean), as column
/// sums of `rows × rest`; `None` for other reductions.
fn reduce_leading<T: FloatArray>(
    ctx: &Context<'_>,
    r: &Reduce,
    x: &ArrayD<T>,
    axes: &[usize],
) -> Option<OpResult<Value>> {
    let k = axes.len();
    let leading = k >= 1 && k < x.ndim() && axes.iter().enumerate().all(|(i, &a)| i == a);
    if !leading || !matches!(r.kind, ReduceKind::Sum | ReduceKind::Mean) {
        return None;
    }
    let data = x.as_slice()?;
    let rest = &x.shape()[k..];
    let cols: usize = rest.iter().product();
    Some((|| {
        let mut out = super::kernels::column_sums(ctx, data, cols)?;
        if r.kind == ReduceKind::Mean {
            let c = T::from_f64(x.shape()[..k].iter().product::<usize>() as f64);
            for v in &mut out {
                *v = *v / c;
            }
        }
        let shape: super::kernels::Dims = if r.keepdims {
            std::iter::repeat_n(1, k)
                .chain(rest.iter().copied())
                .collect()
        } else {
            rest.iter().copied().collect()
        };
        Ok(T::wrap(
            ArrayD::from_shape_vec(IxDyn(&shape), out).map_err(KernelError::from)?,
        ))
    })())
}

fn reduce_typed<T: FloatArray>(
    ctx: &Context<'_>,
    r: &Reduce,
    inputs: &[&Value],
) -> OpResult<Value> {
    let x = float_input::<T>(inputs, 0, "Reduce")?;
    let axes = normalize_axes(&r.axes, x.ndim())?;
    if let Some(v) = reduce_leading(ctx, r, x, &axes) {
        return v;
    }
    // Everything to a scalar (a loss): ndarray's unrolled sum, no copy of the input.
    if axes.len() == x.ndim() && !r.keepdims && matches!(r.kind, ReduceKind::Sum | ReduceKind::Mean)
    {
        let mut total = x.sum();
        if r.kind == ReduceKind::Mean {
            total = total / T::from_f64(x.len() as f64);
        }
        return Ok(T::wrap(crate::value::pooled_scalar(ctx, total)?));
    }
    let mut out = x.clone();
    let mut count = 1usize;
    for &ax in axes.iter().rev() {
        count *= x.shape()[ax];
        out = match r.kind {
            ReduceKind::Sum | ReduceKind::Mean => out.sum_axis(Axis(ax)),
            ReduceKind::Max => out.fold_axis(Axis(ax), T::neg_infinity(), |&a, &b| {
                if b > a || b.is_nan() {
                    b
                } else {
                    a
                }
            }),
            ReduceKind::Min => out.fold_axis(Axis(ax), T::infinity(), |&a, &b| {
                if b < a || b.is_nan() {
                    b
                } else {
                    a
                }
            }),
        };
    }
    if r.kind == ReduceKind::Mean {
        let c = T::from_f64(count as f64);
        out.mapv_inplace(|v| v / c);
    }
    if r.keepdims {
        for &ax in &axes {
            out = out.insert_axis(Axis(ax));
        }
    }
    Ok(T::wrap(standard(out)))
}

impl OpDef for Reduce {
    fn type_name(&self) -> &'static str {
        match self.kind {
            ReduceKind::Sum => "Sum",
            ReduceKind::Mean => "Mean",
            ReduceKind::Max => "Max",
            ReduceKind::Min => "Min",
        }
    }
    fn tf_node(&self, inputs: &[TensorInfo]) -> Option<TfNode> {
        // TF takes the axes as a tensor; all of them when ferroflow's are `None`.
        let axes = match &self.axes {
            Some(a) => a.clone(),
            None => (0..inputs.first()?.shape.rank()? as i64).collect(),
        };
        TfNode::typed(inputs)?
            .with("Tidx", TfAttr::Type(DType::I64))
            .with("keep_dims", TfAttr::Bool(self.keepdims))
            .with_const("reduction_indices", axes, false)
    }
    fn infer(&self, inputs: &[TensorInfo]) -> InferResult {
        expect_arity(inputs, 1, self.type_name())?;
        expect_float(&inputs[0], "the input")?;
        let Some(dims) = inputs[0].shape.dims() else {
            return Ok(Some(TensorInfo::new(inputs[0].dtype, Shape::unknown())));
        };
        let axes = normalize_axes(&self.axes, dims.len()).map_err(InferError::from)?;
        let mut out = Vec::new();
        for (i, d) in dims.iter().enumerate() {
            if axes.contains(&i) {
                if self.keepdims {
                    out.push(Some(1));
                }
            } else {
                out.push(*d);
            }
        }
        Ok(Some(TensorInfo::new(inputs[0].dtype, Shape::new(out))))
    }
    fn compute(&self, ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
        by_float(
            inputs,
            self.type_name(),
            || reduce_typed::<f32>(ctx, self, inputs),
            || reduce_typed::<f64>(ctx, self, inputs),
        )
    }
    fn gradient(&self, ctx: &GradContext<'_>, grad: Tensor) -> Result<Vec<Option<Tensor>>> {
        let g = ctx.graph;
        let x = ctx.input(0)?;
        let rank = ctx.input_infos[0]
            .shape
            .rank()
            .ok_or_else(|| Error::NoGradient {
                node: ctx.name.clone(),
                op: format!("{} (the gradient needs the input's rank)", self.type_name()),
            })?;
        let axes = normalize_axes(&self.axes, rank).map_err(|m| Error::InvalidArgument {
            node: ctx.name.clone(),
            op: self.type_name().into(),
            message: m.to_string(),
        })?;
        let keep = |t: Tensor| -> Result<Tensor> {
            let mut t = t;
            if !self.keepdims {
                for &ax in &axes {
                    t = g.expand_dims(t, ax as i64)?;
                }
            }
            Ok(t)
        };
        let g_keep = keep(grad)?;
        let dx = match self.kind {
            ReduceKind::Sum => g.broadcast_like(g_keep, x)?,
            ReduceKind::Mean => {
                let count = match (
                    ctx.input_infos[0].shape.num_elements(),
                    g.shape(ctx.output)?.num_elements(),
                ) {
                    (Some(n), Some(m)) if m > 0 => g.scalar_like(x, (n / m) as f64)?,
                    _ => {
                        let dt = g.dtype(x)?;
                        g.div(g.cast(g.size(x)?, dt)?, g.cast(g.size(ctx.output)?, dt)?)?
                    }
                };
                g.div(g.broadcast_like(g_keep, x)?, count)?
            }
            ReduceKind::Max | ReduceKind::Min => {
                let y_keep = keep(ctx.output)?;
                let dt = g.dtype(x)?;
                let indicators = g.cast(g.equal(x, y_keep)?, dt)?;
                let axes_i: Vec<i64> = axes.iter().map(|&a| a as i64).collect();
                let num_selected = g.reduce_sum(indicators, Some(&axes_i), true)?;
                g.mul(g.div(indicators, num_selected)?, g_keep)?
            }
        };
        Ok(vec![Some(dx)])
    }
}

/// Index of the largest value along an axis (int64; the first on ties).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArgMax {
    pub axis: i64,
}

fn argmax_typed<T: FloatArray>(axis: i64, inputs: &[&Value]) -> OpResult<Value> {
    let x = float_input::<T>(inputs, 0, "ArgMax")?;
    let ax = norm_axis(axis, x.ndim())?;
    if x.shape()[ax] == 0 {
        return Err(KernelError::Shape("ArgMax over an empty axis".into()));
    }
    let out = x.map_axis(Axis(ax), |lane| {
        let mut best = 0usize;
        for (i, v) in lane.iter().enumerate() {
            if *v > lane[best] {
                best = i;
            }
        }
        best as i64
    });
    Ok(Value::I64(standard(out)))
}

impl OpDef for ArgMax {
    fn type_name(&self) -> &'static str {
        "ArgMax"
    }
    fn tf_node(&self, inputs: &[TensorInfo]) -> Option<TfNode> {
        TfNode::typed(inputs)?
            .with("Tidx", TfAttr::Type(DType::I64))
            .with("output_type", TfAttr::Type(DType::I64))
            .with_const("dimension", vec![self.axis], true)
    }
    fn infer(&self, inputs: &[TensorInfo]) -> InferResult {
        expect_arity(inputs, 1, "ArgMax")?;
        expect_float(&inputs[0], "the input")?;
        let shape = match inputs[0].shape.dims() {
            None => Shape::unknown(),
            Some(d) => {
                let ax = norm_axis(self.axis, d.len()).map_err(InferError::from)?;
                let mut v = d.to_vec();
                v.remove(ax);
                Shape::new(v)
            }
        };
        Ok(Some(TensorInfo::new(DType::I64, shape)))
    }
    fn compute(&self, _ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
        by_float(
            inputs,
            "ArgMax",
            || argmax_typed::<f32>(self.axis, inputs),
            || argmax_typed::<f64>(self.axis, inputs),
        )
    }
    fn gradient(&self, _ctx: &GradContext<'_>, _grad: Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![None])
    }
}

/// The number of elements of the input, as an int64 scalar (TF's `Size`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Size;

impl OpDef for Size {
    fn type_name(&self) -> &'static str {
        "Size"
    }
    fn tf_node(&self, inputs: &[TensorInfo]) -> Option<TfNode> {
        Some(TfNode::typed(inputs)?.with("out_type", TfAttr::Type(DType::I64)))
    }
    fn infer(&self, inputs: &[TensorInfo]) -> InferResult {
        expect_arity(inputs, 1, "Size")?;
        Ok(Some(TensorInfo::new(DType::I64, Shape::scalar())))
    }
    fn compute(&self, ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
        Ok(Value::I64(crate::value::pooled_scalar(
            ctx,
            super::kernels::input(inputs, 0, "Size")?.len() as i64,
        )?))
    }
    fn gradient(&self, _ctx: &GradContext<'_>, _grad: Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![None])
    }
}

/// `Some(0)` when inputs 0 and 1 have the same run-time shape.
pub(crate) fn same_shape(inputs: &[&Value]) -> Option<usize> {
    match inputs {
        [a, b, ..] if a.shape() == b.shape() => Some(0),
        _ => None,
    }
}

/// Sums input 0 down to the runtime shape of input 1 (undoes broadcasting in gradients).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SumToShapeOf;

fn sum_to_typed<T: FloatArray>(ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
    let g = float_input::<T>(inputs, 0, "SumToShapeOf")?;
    let like = super::kernels::input(inputs, 1, "SumToShapeOf")?;
    // Summing leading axes away (a bias gradient): column sums, no copy of the gradient.
    let extra = g.ndim().saturating_sub(like.shape().len());
    if extra >= 1 && !like.shape().is_empty() && g.shape()[extra..] == *like.shape() {
        if let Some(data) = g.as_slice() {
            let out = super::kernels::column_sums(ctx, data, like.len())?;
            return Ok(T::wrap(
                ArrayD::from_shape_vec(IxDyn(like.shape()), out).map_err(KernelError::from)?,
            ));
        }
    }
    Ok(T::wrap(sum_to_shape(g, like.shape())?))
}

impl OpDef for SumToShapeOf {
    fn type_name(&self) -> &'static str {
        "SumToShapeOf"
    }
    fn infer(&self, inputs: &[TensorInfo]) -> InferResult {
        expect_arity(inputs, 2, "SumToShapeOf")?;
        expect_float(&inputs[0], "the gradient")?;
        Ok(Some(TensorInfo::new(
            inputs[0].dtype,
            inputs[1].shape.clone(),
        )))
    }
    fn compute(&self, ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
        by_float(
            inputs,
            "SumToShapeOf",
            || sum_to_typed::<f32>(ctx, inputs),
            || sum_to_typed::<f64>(ctx, inputs),
        )
    }
    fn alias_input(&self, inputs: &[&Value]) -> Option<usize> {
        same_shape(inputs)
    }
    fn gradient(&self, ctx: &GradContext<'_>, grad: Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![
            Some(ctx.graph.broadcast_like(grad, ctx.input(0)?)?),
            None,
        ])
    }
}

/// Broadcasts input 0 to the runtime shape of input 1 (TF's `BroadcastTo` with a shape taken from a tensor).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BroadcastLike;

fn broadcast_typed<T: FloatArray>(ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
    let g = float_input::<T>(inputs, 0, "BroadcastLike")?;
    let like = super::kernels::input(inputs, 1, "BroadcastLike")?;
    let shape = super::kernels::broadcast_shapes(g.shape(), like.shape())?;
    let v = g
        .broadcast(IxDyn(&shape))
        .ok_or_else(|| KernelError::Shape("broadcast failed".into()))?;
    let mut out = ctx.output_vec(v.len())?;
    out.extend(v.iter().copied());
    Ok(T::wrap(
        ArrayD::from_shape_vec(IxDyn(&shape), out).map_err(KernelError::from)?,
    ))
}

impl OpDef for BroadcastLike {
    fn type_name(&self) -> &'static str {
        "BroadcastLike"
    }
    fn infer(&self, inputs: &[TensorInfo]) -> InferResult {
        expect_arity(inputs, 2, "BroadcastLike")?;
        expect_float(&inputs[0], "the input")?;
        let shape = inputs[0]
            .shape
            .broadcast(&inputs[1].shape)
            .map_err(InferError::Shape)?;
        Ok(Some(TensorInfo::new(inputs[0].dtype, shape)))
    }
    fn compute(&self, ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
        by_float(
            inputs,
            "BroadcastLike",
            || broadcast_typed::<f32>(ctx, inputs),
            || broadcast_typed::<f64>(ctx, inputs),
        )
    }
    fn alias_input(&self, inputs: &[&Value]) -> Option<usize> {
        same_shape(inputs)
    }
    fn gradient(&self, ctx: &GradContext<'_>, grad: Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![
            Some(ctx.graph.sum_to_shape_of(grad, ctx.input(0)?)?),
            None,
        ])
    }
}

impl Graph {
    fn reduce(
        &self,
        kind: ReduceKind,
        x: Tensor,
        axes: Option<&[i64]>,
        keepdims: bool,
        name: &str,
    ) -> Result<Tensor> {
        self.add_node(
            Reduce {
                kind,
                axes: axes.map(|a| a.to_vec()),
                keepdims,
            }
            .into(),
            &[x],
            None,
            name,
        )
    }
    /// `tf.reduce_sum(x, axis, keepdims)`; `axes = None` reduces everything.
    pub fn reduce_sum(
        &self,
        x: impl Into<Tensor>,
        axes: Option<&[i64]>,
        keepdims: bool,
    ) -> Result<Tensor> {
        self.reduce(ReduceKind::Sum, x.into(), axes, keepdims, "Sum")
    }
    /// `tf.reduce_mean(x, axis, keepdims)`.
    pub fn reduce_mean(
        &self,
        x: impl Into<Tensor>,
        axes: Option<&[i64]>,
        keepdims: bool,
    ) -> Result<Tensor> {
        self.reduce(ReduceKind::Mean, x.into(), axes, keepdims, "Mean")
    }
    /// `tf.reduce_max(x, axis, keepdims)`.
    pub fn reduce_max(
        &self,
        x: impl Into<Tensor>,
        axes: Option<&[i64]>,
        keepdims: bool,
    ) -> Result<Tensor> {
        self.reduce(ReduceKind::Max, x.into(), axes, keepdims, "Max")
    }
    /// `tf.reduce_min(x, axis, keepdims)`.
    pub fn reduce_min(
        &self,
        x: impl Into<Tensor>,
        axes: Option<&[i64]>,
        keepdims: bool,
    ) -> Result<Tensor> {
        self.reduce(ReduceKind::Min, x.into(), axes, keepdims, "Min")
    }
    /// `tf.argmax(x, axis)` (int64).
    pub fn argmax(&self, x: impl Into<Tensor>, axis: i64) -> Result<Tensor> {
        self.add_node(ArgMax { axis }.into(), &[x.into()], None, "ArgMax")
    }
    /// `tf.nn.l2_loss(x)`: sum(x²)/2.
    pub fn l2_loss(&self, x: impl Into<Tensor>) -> Result<Tensor> {
        self.add_node(L2Loss.into(), &[x.into()], None, "L2Loss")
    }
    /// `tf.size(x)` (int64 scalar).
    pub fn size(&self, x: impl Into<Tensor>) -> Result<Tensor> {
        self.add_node(Size.into(), &[x.into()], None, "Size")
    }
    /// Sums `t` down to the shape of `like` (no op when the static shapes are known and equal).
    pub fn sum_to_shape_of(&self, t: Tensor, like: Tensor) -> Result<Tensor> {
        let (st, sl) = (self.shape(t)?, self.shape(like)?);
        if st.is_fully_defined() && st == sl {
            return Ok(t);
        }
        self.add_node(SumToShapeOf.into(), &[t, like], None, "SumToShapeOf")
    }
    /// Broadcasts `t` to the shape of `like` (no op when the static shapes are known and equal).
    pub fn broadcast_like(&self, t: Tensor, like: Tensor) -> Result<Tensor> {
        let (st, sl) = (self.shape(t)?, self.shape(like)?);
        if st.is_fully_defined() && st == sl {
            return Ok(t);
        }
        self.add_node(BroadcastLike.into(), &[t, like], None, "BroadcastTo")
    }
}

mod l2;
pub use l2::*;

#[cfg(test)]
mod tests;
