//! Ops that reshape or reinterpret data without arithmetic: reshape, transpose, expand_dims, squeeze
//! and cast (selection and combination ops live in `indexing.rs`).

use super::kernels::{input, reshape, standard};
use super::tf::{TfAttr, TfNode};
use super::{expect_arity, norm_axis, GradContext, InferError, InferResult, OpDef};
use crate::dtype::{DType, Dim, Shape, TensorInfo};
use crate::error::{KernelError, OpResult, Result};
use crate::graph::{Graph, Tensor};
use crate::value::Value;
use ferroflow_cpu::Context;
use ndarray::{ArrayD, IxDyn};
use serde::{Deserialize, Serialize};

/// A function over arrays of any element type, applied to whichever dtype a value holds.
pub(crate) trait AnyArrayFn {
    fn call<T: Clone + Default + 'static>(
        &self,
        ctx: &Context<'_>,
        a: &ArrayD<T>,
    ) -> OpResult<ArrayD<T>>;
}

pub(crate) fn apply_any(ctx: &Context<'_>, v: &Value, f: &impl AnyArrayFn) -> OpResult<Value> {
    Ok(match v {
        Value::F32(a) => Value::F32(f.call(ctx, a)?),
        Value::F64(a) => Value::F64(f.call(ctx, a)?),
        Value::I64(a) => Value::I64(f.call(ctx, a)?),
        Value::Bool(a) => Value::Bool(f.call(ctx, a)?),
    })
}

/// Resolves a target shape with at most one `-1` against an element count.
pub(crate) fn resolve_reshape(target: &[i64], count: usize) -> OpResult<super::kernels::Dims> {
    let mut unknown = None;
    let mut known: usize = 1;
    for (i, &d) in target.iter().enumerate() {
        if d == -1 {
            if unknown.replace(i).is_some() {
                return Err(KernelError::Shape(
                    "only one dimension of a reshape may be -1".into(),
                ));
            }
        } else if d < 0 {
            return Err(KernelError::Shape(format!("invalid reshape dimension {d}")));
        } else {
            known = known
                .checked_mul(d as usize)
                .ok_or_else(|| KernelError::Shape("reshape size overflows".into()))?;
        }
    }
    let mut out: super::kernels::Dims = target.iter().map(|&d| d.max(0) as usize).collect();
    match unknown {
        Some(i) => {
            if known == 0 || !count.is_multiple_of(known) {
                return Err(KernelError::Shape(format!(
                    "cannot reshape a tensor with {count} elements to shape {target:?}"
                )));
            }
            out[i] = count / known;
        }
        None if known != count => {
            return Err(KernelError::Shape(format!(
            "cannot reshape a tensor with {count} elements to shape {target:?} ({known} elements)"
        )))
        }
        None => {}
    }
    Ok(out)
}

struct ReshapeTo(super::kernels::Dims);
impl AnyArrayFn for ReshapeTo {
    fn call<T: Clone + Default + 'static>(
        &self,
        ctx: &Context<'_>,
        a: &ArrayD<T>,
    ) -> OpResult<ArrayD<T>> {
        reshape(ctx, a, &self.0)
    }
}

/// `tf.reshape(x, shape)` with at most one `-1`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reshape {
    pub shape: Vec<i64>,
}

impl OpDef for Reshape {
    fn type_name(&self) -> &'static str {
        "Reshape"
    }
    fn tf_node(&self, inputs: &[TensorInfo]) -> Option<TfNode> {
        TfNode::typed(inputs)?
            .with("Tshape", TfAttr::Type(DType::I64))
            .with_const("shape", self.shape.clone(), false)
    }
    fn infer(&self, inputs: &[TensorInfo]) -> InferResult {
        expect_arity(inputs, 1, "Reshape")?;
        let shape = match inputs[0].shape.num_elements() {
            Some(n) => Shape::known(&resolve_reshape(&self.shape, n).map_err(InferError::from)?),
            None => {
                if self.shape.iter().filter(|&&d| d == -1).count() > 1
                    || self.shape.iter().any(|&d| d < -1)
                {
                    return Err(InferError::Shape(format!(
                        "invalid reshape target {:?}",
                        self.shape
                    )));
                }
                Shape::new(
                    self.shape
                        .iter()
                        .map(|&d| if d < 0 { None } else { Some(d as usize) })
                        .collect(),
                )
            }
        };
        Ok(Some(TensorInfo::new(inputs[0].dtype, shape)))
    }
    fn compute(&self, ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
        let x = input(inputs, 0, "Reshape")?;
        apply_any(ctx, x, &ReshapeTo(resolve_reshape(&self.shape, x.len())?))
    }
    fn gradient(&self, ctx: &GradContext<'_>, grad: Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(ctx.graph.reshape_like(grad, ctx.input(0)?)?)])
    }
}

/// Reshapes input 0 to the runtime shape of input 1 (used by gradients).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReshapeLike;

impl OpDef for ReshapeLike {
    fn type_name(&self) -> &'static str {
        "ReshapeLike"
    }
    fn infer(&self, inputs: &[TensorInfo]) -> InferResult {
        expect_arity(inputs, 2, "ReshapeLike")?;
        if let (Some(a), Some(b)) = (
            inputs[0].shape.num_elements(),
            inputs[1].shape.num_elements(),
        ) {
            if a != b {
                return Err(InferError::Shape(format!(
                    "cannot reshape {} elements to {} elements",
                    a, b
                )));
            }
        }
        Ok(Some(TensorInfo::new(
            inputs[0].dtype,
            inputs[1].shape.clone(),
        )))
    }
    fn alias_input(&self, inputs: &[&Value]) -> Option<usize> {
        super::reduce::same_shape(inputs)
    }
    fn compute(&self, ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
        let like = input(inputs, 1, "ReshapeLike")?
            .shape()
            .iter()
            .copied()
            .collect();
        apply_any(ctx, input(inputs, 0, "ReshapeLike")?, &ReshapeTo(like))
    }
    fn gradient(&self, ctx: &GradContext<'_>, grad: Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![
            Some(ctx.graph.reshape_like(grad, ctx.input(0)?)?),
            None,
        ])
    }
}

/// `tf.transpose(x, perm)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transpose {
    pub perm: Vec<usize>,
}

struct Permute<'a>(&'a [usize]);
impl AnyArrayFn for Permute<'_> {
    fn call<T: Clone + Default + 'static>(
        &self,
        _ctx: &Context<'_>,
        a: &ArrayD<T>,
    ) -> OpResult<ArrayD<T>> {
        if a.ndim() != self.0.len() {
            return Err(KernelError::Shape(format!(
                "transpose perm {:?} does not fit rank {}",
                self.0,
                a.ndim()
            )));
        }
        Ok(standard(a.view().permuted_axes(IxDyn(self.0)).to_owned()))
    }
}

fn check_perm(perm: &[usize]) -> OpResult<()> {
    let mut seen = vec![false; perm.len()];
    for &p in perm {
        match seen.get_mut(p) {
            Some(s) if !*s => *s = true,
            _ => {
                return Err(KernelError::InvalidArgument(format!(
                    "{perm:?} is not a permutation"
                )))
            }
        }
    }
    Ok(())
}

impl OpDef for Transpose {
    fn type_name(&self) -> &'static str {
        "Transpose"
    }
    fn tf_node(&self, inputs: &[TensorInfo]) -> Option<TfNode> {
        TfNode::typed(inputs)?
            .with("Tperm", TfAttr::Type(DType::I64))
            .with_const("perm", self.perm.iter().map(|&p| p as i64).collect(), false)
    }
    fn infer(&self, inputs: &[TensorInfo]) -> InferResult {
        expect_arity(inputs, 1, "Transpose")?;
        check_perm(&self.perm).map_err(InferError::from)?;
        let shape = match inputs[0].shape.dims() {
            None => Shape::unknown_dims(self.perm.len()),
            Some(d) if d.len() == self.perm.len() => {
                Shape::new(self.perm.iter().map(|&p| d[p]).collect())
            }
            Some(d) => {
                return Err(InferError::Shape(format!(
                    "perm {:?} does not fit rank {}",
                    self.perm,
                    d.len()
                )))
            }
        };
        Ok(Some(TensorInfo::new(inputs[0].dtype, shape)))
    }
    fn compute(&self, ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
        apply_any(ctx, input(inputs, 0, "Transpose")?, &Permute(&self.perm))
    }
    fn gradient(&self, ctx: &GradContext<'_>, grad: Tensor) -> Result<Vec<Option<Tensor>>> {
        let mut inv = vec![0; self.perm.len()];
        for (i, &p) in self.perm.iter().enumerate() {
            inv[p] = i;
        }
        Ok(vec![Some(ctx.graph.transpose(grad, &inv)?)])
    }
}

/// `tf.expand_dims(x, axis)`: inserts a size-1 axis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpandDims {
    pub axis: i64,
}

fn expand_axis(axis: i64, rank: usize) -> OpResult<usize> {
    norm_axis(axis, rank + 1)
}

impl OpDef for ExpandDims {
    fn type_name(&self) -> &'static str {
        "ExpandDims"
    }
    fn tf_node(&self, inputs: &[TensorInfo]) -> Option<TfNode> {
        TfNode::typed(inputs)?
            .with("Tdim", TfAttr::Type(DType::I64))
            .with_const("dim", vec![self.axis], true)
    }
    fn infer(&self, inputs: &[TensorInfo]) -> InferResult {
        expect_arity(inputs, 1, "ExpandDims")?;
        let shape = match inputs[0].shape.dims() {
            None => Shape::unknown(),
            Some(d) => {
                let ax = expand_axis(self.axis, d.len()).map_err(InferError::from)?;
                let mut v = d.to_vec();
                v.insert(ax, Some(1));
                Shape::new(v)
            }
        };
        Ok(Some(TensorInfo::new(inputs[0].dtype, shape)))
    }
    fn compute(&self, ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
        let x = input(inputs, 0, "ExpandDims")?;
        let ax = expand_axis(self.axis, x.shape().len())?;
        let mut s: super::kernels::Dims = x.shape().iter().copied().collect();
        s.insert(ax, 1);
        apply_any(ctx, x, &ReshapeTo(s))
    }
    fn gradient(&self, ctx: &GradContext<'_>, grad: Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(ctx.graph.reshape_like(grad, ctx.input(0)?)?)])
    }
}

/// `tf.squeeze(x, axis)`: removes size-1 axes (all of them when `axes` is empty).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Squeeze {
    pub axes: Vec<i64>,
}

impl Squeeze {
    fn kept(&self, dims: &[Dim]) -> OpResult<Vec<Dim>> {
        let axes: Vec<usize> = self
            .axes
            .iter()
            .map(|&a| norm_axis(a, dims.len()))
            .collect::<std::result::Result<_, _>>()?;
        let mut out = Vec::new();
        for (i, d) in dims.iter().enumerate() {
            let squeeze = if axes.is_empty() {
                *d == Some(1)
            } else {
                axes.contains(&i)
            };
            if squeeze {
                match d {
                    Some(1) => {}
                    None if !axes.is_empty() => {}
                    _ => {
                        return Err(KernelError::Shape(format!(
                            "cannot squeeze axis {i} of size {d:?}"
                        )))
                    }
                }
            } else {
                out.push(*d);
            }
        }
        Ok(out)
    }
}

impl OpDef for Squeeze {
    fn type_name(&self) -> &'static str {
        "Squeeze"
    }
    fn tf_node(&self, inputs: &[TensorInfo]) -> Option<TfNode> {
        Some(TfNode::typed(inputs)?.with("squeeze_dims", TfAttr::Ints(self.axes.clone())))
    }
    fn infer(&self, inputs: &[TensorInfo]) -> InferResult {
        expect_arity(inputs, 1, "Squeeze")?;
        let shape = match inputs[0].shape.dims() {
            None => Shape::unknown(),
            Some(d) => {
                if self.axes.is_empty() && d.iter().any(|x| x.is_none()) {
                    return Err(InferError::Shape(
                        "squeeze without axes needs a fully known shape".into(),
                    ));
                }
                Shape::new(self.kept(d).map_err(InferError::from)?)
            }
        };
        Ok(Some(TensorInfo::new(inputs[0].dtype, shape)))
    }
    fn compute(&self, ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
        let x = input(inputs, 0, "Squeeze")?;
        let dims: Vec<Dim> = x.shape().iter().map(|&d| Some(d)).collect();
        let kept: Vec<usize> = self
            .kept(&dims)?
            .into_iter()
            .map(|d| d.unwrap_or(0))
            .collect();
        apply_any(ctx, x, &ReshapeTo(kept.into()))
    }
    fn gradient(&self, ctx: &GradContext<'_>, grad: Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(ctx.graph.reshape_like(grad, ctx.input(0)?)?)])
    }
}

/// `tf.cast(x, dtype)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cast {
    pub to: DType,
}

impl OpDef for Cast {
    fn type_name(&self) -> &'static str {
        "Cast"
    }
    fn tf_node(&self, inputs: &[TensorInfo]) -> Option<TfNode> {
        Some(
            TfNode::default()
                .with("SrcT", TfAttr::Type(inputs.first()?.dtype))
                .with("DstT", TfAttr::Type(self.to))
                .with("Truncate", TfAttr::Bool(false)),
        )
    }
    fn infer(&self, inputs: &[TensorInfo]) -> InferResult {
        expect_arity(inputs, 1, "Cast")?;
        Ok(Some(TensorInfo::new(self.to, inputs[0].shape.clone())))
    }
    fn compute(&self, ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
        Ok(input(inputs, 0, "Cast")?.cast_in(ctx, self.to)?)
    }
    fn gradient(&self, ctx: &GradContext<'_>, grad: Tensor) -> Result<Vec<Option<Tensor>>> {
        let from = ctx.input_infos[0].dtype;
        if from.is_float() && self.to.is_float() {
            Ok(vec![Some(ctx.graph.cast(grad, from)?)])
        } else {
            Ok(vec![None])
        }
    }
}

impl Graph {
    /// `tf.reshape(x, shape)`; one dimension may be -1.
    pub fn reshape(&self, x: impl Into<Tensor>, shape: &[i64]) -> Result<Tensor> {
        self.add_node(
            Reshape {
                shape: shape.to_vec(),
            }
            .into(),
            &[x.into()],
            None,
            "Reshape",
        )
    }
    /// Reshapes `t` to the runtime shape of `like` (no op when the static shapes are known and equal).
    pub fn reshape_like(&self, t: Tensor, like: Tensor) -> Result<Tensor> {
        let (st, sl) = (self.shape(t)?, self.shape(like)?);
        if st.is_fully_defined() && st == sl {
            return Ok(t);
        }
        self.add_node(ReshapeLike.into(), &[t, like], None, "Reshape")
    }
    /// `tf.transpose(x, perm)`.
    pub fn transpose(&self, x: impl Into<Tensor>, perm: &[usize]) -> Result<Tensor> {
        self.add_node(
            Transpose {
                perm: perm.to_vec(),
            }
            .into(),
            &[x.into()],
            None,
            "transpose",
        )
    }
    /// `tf.expand_dims(x, axis)`.
    pub fn expand_dims(&self, x: impl Into<Tensor>, axis: i64) -> Result<Tensor> {
        self.add_node(ExpandDims { axis }.into(), &[x.into()], None, "ExpandDims")
    }
    /// `tf.squeeze(x, axis)`; empty `axes` removes every size-1 axis.
    pub fn squeeze(&self, x: impl Into<Tensor>, axes: &[i64]) -> Result<Tensor> {
        self.add_node(
            Squeeze {
                axes: axes.to_vec(),
            }
            .into(),
            &[x.into()],
            None,
            "Squeeze",
        )
    }
    /// `tf.cast(x, dtype)`.
    pub fn cast(&self, x: impl Into<Tensor>, dtype: DType) -> Result<Tensor> {
        self.add_node(Cast { to: dtype }.into(), &[x.into()], None, "Cast")
    }
}

#[cfg(test)]
#[path = "shape_ops_tests.rs"]
mod tests;
