//! Softmax, log-softmax and the cross-entropy ops (fused where numerics demand it), with the
//! composite `sigmoid_cross_entropy_with_logits` and `clip_by_value` builders.

use super::kernels::{by_float, float_input, FloatArray};
use super::tf::{TfAttr, TfNode};
use super::{expect_arity, expect_float, GradContext, InferError, InferResult, OpDef};
use crate::dtype::{DType, Shape, TensorInfo};
use crate::error::{Error, KernelError, OpResult, Result};
use crate::graph::{Graph, Tensor};
use crate::value::Value;
use ferroflow_cpu::Context;
use ndarray::{ArrayD, Axis, Ix2};
use serde::{Deserialize, Serialize};

/// Softmax (or log-softmax when `log`) over the last axis, computed stably.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Softmax {
    pub log: bool,
}

fn softmax_typed<T: FloatArray>(
    ctx: &Context<'_>,
    log: bool,
    inputs: &[&Value],
) -> OpResult<Value> {
    let x = float_input::<T>(inputs, 0, "Softmax")?;
    if x.ndim() == 0 {
        return Err(KernelError::Shape("softmax needs rank >= 1".into()));
    }
    let mut out = crate::value::map_pooled(ctx, x, |v| v)?;
    let last = Axis(out.ndim() - 1);
    for mut lane in out.lanes_mut(last) {
        let m = lane.iter().fold(T::neg_infinity(), |a, &b| a.max(b));
        let m = if m.is_finite() { m } else { T::zero() };
        let sum = lane.iter().fold(T::zero(), |a, &b| a + (b - m).exp());
        if log {
            let lse = sum.ln() + m;
            lane.mapv_inplace(|v| v - lse);
        } else {
            lane.mapv_inplace(|v| (v - m).exp() / sum);
        }
    }
    Ok(T::wrap(out))
}

impl OpDef for Softmax {
    fn type_name(&self) -> &'static str {
        if self.log {
            "LogSoftmax"
        } else {
            "Softmax"
        }
    }
    fn tf_node(&self, inputs: &[TensorInfo]) -> Option<TfNode> {
        TfNode::typed(inputs)
    }
    fn infer(&self, inputs: &[TensorInfo]) -> InferResult {
        expect_arity(inputs, 1, self.type_name())?;
        expect_float(&inputs[0], "logits")?;
        if inputs[0].shape.rank() == Some(0) {
            return Err(InferError::Shape("softmax needs rank >= 1".into()));
        }
        Ok(Some(inputs[0].clone()))
    }
    fn compute(&self, ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
        by_float(
            inputs,
            self.type_name(),
            || softmax_typed::<f32>(ctx, self.log, inputs),
            || softmax_typed::<f64>(ctx, self.log, inputs),
        )
    }
    fn gradient(&self, ctx: &GradContext<'_>, grad: Tensor) -> Result<Vec<Option<Tensor>>> {
        let g = ctx.graph;
        let y = ctx.output;
        let dx = if self.log {
            // d/dx log_softmax: g - softmax(x) · sum(g)
            g.sub(
                grad,
                g.mul(g.exp(y)?, g.reduce_sum(grad, Some(&[-1]), true)?)?,
            )?
        } else {
            // y · (g - sum(g·y))
            g.mul(
                y,
                g.sub(grad, g.reduce_sum(g.mul(grad, y)?, Some(&[-1]), true)?)?,
            )?
        };
        Ok(vec![Some(dx)])
    }
}

/// Per-example cross-entropy between integer labels `[N]` and logits `[N, C]`
/// (TF's `SparseSoftmaxCrossEntropyWithLogits`, loss output only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SparseSoftmaxXent;

fn sparse_xent_typed<T: FloatArray>(ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
    let logits = float_input::<T>(inputs, 0, "SparseSoftmaxCrossEntropyWithLogits")?;
    let labels = super::kernels::input(inputs, 1, "SparseSoftmaxCrossEntropyWithLogits")?
        .as_i64()
        .ok_or_else(|| KernelError::DType("labels must be int64".into()))?;
    let l2 = logits
        .view()
        .into_dimensionality::<Ix2>()
        .map_err(|_| KernelError::Shape("logits must be rank 2".into()))?;
    let (n, c) = l2.dim();
    if labels.len() != n || labels.ndim() != 1 {
        return Err(KernelError::Shape(format!(
            "labels of shape {:?} do not match logits of shape [{n}, {c}]",
            labels.shape()
        )));
    }
    let mut out = ctx.output_vec(n)?;
    for (row, &lab) in l2.outer_iter().zip(labels.iter()) {
        if lab < 0 || lab as usize >= c {
            return Err(KernelError::InvalidArgument(format!(
                "Received a label value of {lab} which is outside the valid range of [0, {c})"
            )));
        }
        let m = row.iter().fold(T::neg_infinity(), |a, &b| a.max(b));
        let lse = row.iter().fold(T::zero(), |a, &b| a + (b - m).exp()).ln() + m;
        out.push(lse - row[lab as usize]);
    }
    Ok(T::wrap(
        ArrayD::from_shape_vec(ndarray::IxDyn(&[n]), out).map_err(KernelError::from)?,
    ))
}

fn xent_infer(inputs: &[TensorInfo], label_dtype: Option<DType>, op: &str) -> InferResult {
    expect_arity(inputs, 2, op)?;
    expect_float(&inputs[0], "logits")?;
    match label_dtype {
        Some(dt) if inputs[1].dtype != dt => {
            return Err(InferError::DType(format!(
                "labels must be {dt}, got {}",
                inputs[1].dtype
            )))
        }
        None if inputs[1].dtype != inputs[0].dtype => {
            return Err(InferError::DType(format!(
                "labels must have the logits' dtype {}, got {}",
                inputs[0].dtype, inputs[1].dtype
            )))
        }
        _ => {}
    }
    let n = match inputs[0].shape.dims() {
        Some([n, _]) => *n,
        None => None,
        Some(d) => {
            return Err(InferError::Shape(format!(
                "logits must be rank 2 [batch, classes], got rank {}",
                d.len()
            )))
        }
    };
    Ok(Some(TensorInfo::new(inputs[0].dtype, Shape::new(vec![n]))))
}

fn class_count(ctx: &GradContext<'_>) -> Result<usize> {
    ctx.input_infos[0]
        .shape
        .dims()
        .and_then(|d| d.get(1).copied().flatten())
        .ok_or_else(|| Error::NoGradient {
            node: ctx.name.clone(),
            op: "cross-entropy (the gradient needs a static number of classes)".into(),
        })
}

impl OpDef for SparseSoftmaxXent {
    fn type_name(&self) -> &'static str {
        "SparseSoftmaxCrossEntropyWithLogits"
    }
    fn tf_node(&self, inputs: &[TensorInfo]) -> Option<TfNode> {
        Some(TfNode::typed(inputs)?.with("Tlabels", TfAttr::Type(inputs.get(1)?.dtype)))
    }
    fn infer(&self, inputs: &[TensorInfo]) -> InferResult {
        let out = xent_infer(inputs, Some(DType::I64), self.type_name())?;
        if let (Some(l), Some(Some(n))) =
            (inputs[1].shape.dims(), inputs[0].shape.dims().map(|d| d[0]))
        {
            if l.len() != 1 || l[0].is_some_and(|x| x != n) {
                return Err(InferError::Shape(format!(
                    "labels must be [batch] = [{n}], got {}",
                    inputs[1].shape
                )));
            }
        }
        Ok(out)
    }
    fn compute(&self, ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
        by_float(
            inputs,
            self.type_name(),
            || sparse_xent_typed::<f32>(ctx, inputs),
            || sparse_xent_typed::<f64>(ctx, inputs),
        )
    }
    fn gradient(&self, ctx: &GradContext<'_>, grad: Tensor) -> Result<Vec<Option<Tensor>>> {
        let g = ctx.graph;
        let (logits, labels) = (ctx.input(0)?, ctx.input(1)?);
        let classes = class_count(ctx)?;
        let dt = ctx.input_infos[0].dtype;
        let onehot = g.one_hot_with(labels, classes, 1.0, 0.0, dt)?;
        let backprop = g.sub(g.softmax(logits)?, onehot)?;
        Ok(vec![Some(g.mul(g.expand_dims(grad, -1)?, backprop)?), None])
    }
}

/// Per-example cross-entropy between dense label distributions and logits, both `[N, C]`
/// (TF's `SoftmaxCrossEntropyWithLogits`; gradients flow to the labels too, as in the v2 API).
///
/// TF's trap, reproduced: the logits' gradient is `softmax - labels`, which is the true derivative
/// only when every label row sums to 1. Feed distributions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SoftmaxXent;

fn xent_typed<T: FloatArray>(inputs: &[&Value]) -> OpResult<Value> {
    let logits = float_input::<T>(inputs, 0, "SoftmaxCrossEntropyWithLogits")?;
    let labels = float_input::<T>(inputs, 1, "SoftmaxCrossEntropyWithLogits")?;
    if logits.shape() != labels.shape() || logits.ndim() != 2 {
        return Err(KernelError::Shape(format!(
            "logits {:?} and labels {:?} must be the same rank-2 shape",
            logits.shape(),
            labels.shape()
        )));
    }
    let l2 = logits
        .view()
        .into_dimensionality::<Ix2>()
        .map_err(KernelError::from)?;
    let y2 = labels
        .view()
        .into_dimensionality::<Ix2>()
        .map_err(KernelError::from)?;
    let mut out = Vec::with_capacity(l2.nrows());
    for (row, lab) in l2.outer_iter().zip(y2.outer_iter()) {
        let m = row.iter().fold(T::neg_infinity(), |a, &b| a.max(b));
        let lse = row.iter().fold(T::zero(), |a, &b| a + (b - m).exp()).ln() + m;
        out.push(
            row.iter()
                .zip(lab.iter())
                .fold(T::zero(), |a, (&x, &y)| a - y * (x - lse)),
        );
    }
    Ok(T::wrap(
        ArrayD::from_shape_vec(ndarray::IxDyn(&[l2.nrows()]), out).map_err(KernelError::from)?,
    ))
}

impl OpDef for SoftmaxXent {
    fn type_name(&self) -> &'static str {
        "SoftmaxCrossEntropyWithLogits"
    }
    fn infer(&self, inputs: &[TensorInfo]) -> InferResult {
        let out = xent_infer(inputs, None, self.type_name())?;
        if !inputs[0].shape.compatible_with(&inputs[1].shape) {
            return Err(InferError::Shape(format!(
                "logits {} and labels {} must have the same shape",
                inputs[0].shape, inputs[1].shape
            )));
        }
        Ok(out)
    }
    fn compute(&self, _ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
        by_float(
            inputs,
            self.type_name(),
            || xent_typed::<f32>(inputs),
            || xent_typed::<f64>(inputs),
        )
    }
    fn gradient(&self, ctx: &GradContext<'_>, grad: Tensor) -> Result<Vec<Option<Tensor>>> {
        let g = ctx.graph;
        let (logits, labels) = (ctx.input(0)?, ctx.input(1)?);
        let g2 = g.expand_dims(grad, -1)?;
        let d_logits = g.mul(g2, g.sub(g.softmax(logits)?, labels)?)?;
        let d_labels = g.mul(g2, g.neg(g.log_softmax(logits)?)?)?;
        Ok(vec![Some(d_logits), Some(d_labels)])
    }
}

impl Graph {
    /// `tf.nn.softmax(logits)` over the last axis.
    pub fn softmax(&self, logits: impl Into<Tensor>) -> Result<Tensor> {
        self.add_node(
            Softmax { log: false }.into(),
            &[logits.into()],
            None,
            "Softmax",
        )
    }
    /// `tf.nn.log_softmax(logits)` over the last axis.
    pub fn log_softmax(&self, logits: impl Into<Tensor>) -> Result<Tensor> {
        self.add_node(
            Softmax { log: true }.into(),
            &[logits.into()],
            None,
            "LogSoftmax",
        )
    }
    /// `tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)`: per-example loss `[N]`.
    /// An out-of-range label is a run-time error naming the label and the valid range.
    pub fn sparse_softmax_cross_entropy_with_logits(
        &self,
        labels: impl Into<Tensor>,
        logits: impl Into<Tensor>,
    ) -> Result<Tensor> {
        self.add_node(
            SparseSoftmaxXent.into(),
            &[logits.into(), labels.into()],
            None,
            "SparseSoftmaxCrossEntropyWithLogits",
        )
    }
    /// `tf.nn.softmax_cross_entropy_with_logits_v2(labels, logits)`: gradients reach the labels too.
    pub fn softmax_cross_entropy_with_logits_v2(
        &self,
        labels: impl Into<Tensor>,
        logits: impl Into<Tensor>,
    ) -> Result<Tensor> {
        self.add_node(
            SoftmaxXent.into(),
            &[logits.into(), labels.into()],
            None,
            "softmax_cross_entropy_with_logits",
        )
    }
    /// `tf.nn.softmax_cross_entropy_with_logits(labels, logits)` (v1): the labels are wrapped in
    /// `stop_gradient`, so they receive no gradient.
    pub fn softmax_cross_entropy_with_logits(
        &self,
        labels: impl Into<Tensor>,
        logits: impl Into<Tensor>,
    ) -> Result<Tensor> {
        let name = self.take_pending_name();
        let labels = self.stop_gradient(labels.into())?;
        if let Some(n) = name {
            self.named(&n);
        }
        self.softmax_cross_entropy_with_logits_v2(labels, logits)
    }
    /// `tf.nn.sigmoid_cross_entropy_with_logits(labels, logits)`:
    /// `max(x, 0) - x·z + log(1 + e^-|x|)`, under the scope `logistic_loss` as in TF.
    pub fn sigmoid_cross_entropy_with_logits(
        &self,
        labels: impl Into<Tensor>,
        logits: impl Into<Tensor>,
    ) -> Result<Tensor> {
        let (labels, logits) = (labels.into(), logits.into());
        let name = self.take_pending_name();
        let scope = self.name_scope(name.as_deref().unwrap_or("logistic_loss"))?;
        let final_name = scope.scope().to_string();
        let zeros = self.zeros_like(logits)?;
        let cond = self.greater_equal(logits, zeros)?;
        let relu_logits = self.select(cond, logits, zeros)?;
        let neg_abs = self.select(cond, self.neg(logits)?, logits)?;
        let a = self.sub(relu_logits, self.mul(logits, labels)?)?;
        let b = self.softplus(neg_abs)?;
        let out = self.add_node(
            super::binary::Binary {
                kind: super::binary::BinaryKind::Add,
            }
            .into(),
            &[a, b],
            Some(&final_name),
            "add",
        )?;
        drop(scope);
        Ok(out)
    }
    /// `tf.clip_by_value(t, min, max)`: `maximum(minimum(t, max), min)` under the scope `clip_by_value`.
    pub fn clip_by_value(&self, t: impl Into<Tensor>, min: f64, max: f64) -> Result<Tensor> {
        let t = t.into();
        let name = self.take_pending_name();
        let scope = self.name_scope(name.as_deref().unwrap_or("clip_by_value"))?;
        let final_name = scope.scope().to_string();
        let hi = self.scalar_like(t, max)?;
        let lo = self.scalar_like(t, min)?;
        let t_min = self.minimum(t, hi)?;
        let out = self.add_node(
            super::binary::Binary {
                kind: super::binary::BinaryKind::Maximum,
            }
            .into(),
            &[t_min, lo],
            Some(&final_name),
            "Maximum",
        )?;
        drop(scope);
        Ok(out)
    }
}

#[cfg(test)]
#[path = "nn_tests.rs"]
mod tests;
