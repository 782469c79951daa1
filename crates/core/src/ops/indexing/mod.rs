//! Ops that select and combine parts of tensors: concat, slice, gather and one_hot, with the
//! gradient helpers `ConcatGrad`, `SliceGrad` and `GatherGrad`.

use super::kernels::{input, standard};
use super::shape_ops::{apply_any, AnyArrayFn};
use super::tf::{TfAttr, TfNode};
use super::{expect_arity, norm_axis, GradContext, InferError, InferResult, OpDef};
use crate::dtype::{DType, Dim, Shape, TensorInfo};
use crate::error::{Error, KernelError, OpResult, Result};
use crate::graph::{Graph, Tensor};
use crate::value::Value;
use ferroflow_cpu::Context;
use ndarray::{ArrayD, Axis, IxDyn, Slice as NdSlice};
use serde::{Deserialize, Serialize};

fn concat_infer(inputs: &[TensorInfo], axis: i64) -> InferResult {
    let dt = super::same_dtype(inputs)?;
    let rank = inputs.iter().find_map(|i| i.shape.rank());
    let Some(rank) = rank else {
        return Ok(Some(TensorInfo::new(dt, Shape::unknown())));
    };
    let ax = norm_axis(axis, rank).map_err(InferError::from)?;
    let mut out: Vec<Dim> = vec![None; rank];
    let mut total = Some(0usize);
    for (k, i) in inputs.iter().enumerate() {
        let Some(d) = i.shape.dims() else {
            total = None;
            continue;
        };
        if d.len() != rank {
            return Err(InferError::Shape(format!(
                "concat inputs must share a rank, input {k} has rank {}",
                d.len()
            )));
        }
        for (j, x) in d.iter().enumerate() {
            if j == ax {
                total = total.and_then(|t| x.and_then(|x| t.checked_add(x)));
            } else if let Some(x) = x {
                match out[j] {
                    Some(o) if o != *x => {
                        return Err(InferError::Shape(format!(
                            "concat inputs differ in dimension {j}: {o} vs {x}"
                        )))
                    }
                    _ => out[j] = Some(*x),
                }
            }
        }
    }
    out[ax] = total;
    Ok(Some(TensorInfo::new(dt, Shape::new(out))))
}

/// `tf.concat(values, axis)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Concat {
    pub axis: i64,
}

fn concat_typed<T: Clone>(arrays: &[&ArrayD<T>], axis: i64) -> OpResult<ArrayD<T>> {
    let rank = arrays
        .first()
        .map(|a| a.ndim())
        .ok_or_else(|| KernelError::InvalidArgument("concat needs at least one input".into()))?;
    let ax = norm_axis(axis, rank)?;
    let views: Vec<_> = arrays.iter().map(|a| a.view()).collect();
    ndarray::concatenate(Axis(ax), &views)
        .map(standard)
        .map_err(|e| KernelError::Shape(format!("concat: {e}")))
}

fn concat_values(inputs: &[&Value], axis: i64) -> OpResult<Value> {
    macro_rules! gather_as {
        ($method:ident) => {
            inputs
                .iter()
                .map(|v| {
                    v.$method().ok_or_else(|| {
                        KernelError::DType("concat inputs must share a dtype".into())
                    })
                })
                .collect::<std::result::Result<Vec<_>, _>>()?
        };
    }
    match input(inputs, 0, "ConcatV2")? {
        Value::F32(_) => Ok(Value::F32(concat_typed(&gather_as!(as_f32), axis)?)),
        Value::F64(_) => Ok(Value::F64(concat_typed(&gather_as!(as_f64), axis)?)),
        Value::I64(_) => Ok(Value::I64(concat_typed(&gather_as!(as_i64), axis)?)),
        Value::Bool(_) => Ok(Value::Bool(concat_typed(&gather_as!(as_bool), axis)?)),
    }
}

impl OpDef for Concat {
    fn type_name(&self) -> &'static str {
        "ConcatV2"
    }
    fn tf_node(&self, inputs: &[TensorInfo]) -> Option<TfNode> {
        TfNode::typed(inputs)?
            .with("N", TfAttr::Int(inputs.len() as i64))
            .with("Tidx", TfAttr::Type(DType::I64))
            .with_const("axis", vec![self.axis], true)
    }
    fn infer(&self, inputs: &[TensorInfo]) -> InferResult {
        concat_infer(inputs, self.axis)
    }
    fn compute(&self, _ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
        concat_values(inputs, self.axis)
    }
    fn gradient(&self, ctx: &GradContext<'_>, grad: Tensor) -> Result<Vec<Option<Tensor>>> {
        let mut out = Vec::new();
        for (i, info) in ctx.input_infos.iter().enumerate() {
            if !info.dtype.is_float() {
                out.push(None);
                continue;
            }
            let mut ins = vec![grad];
            ins.extend(&ctx.inputs);
            out.push(Some(
                ctx.graph.add_node(
                    ConcatGrad {
                        axis: self.axis,
                        index: i,
                    }
                    .into(),
                    &ins,
                    None,
                    "ConcatGrad",
                )?,
            ));
        }
        Ok(out)
    }
}

/// The part of a concat's gradient (input 0) that belongs to input `index + 1`, located by the
/// runtime shapes of the concatenated inputs (inputs 1..).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConcatGrad {
    pub axis: i64,
    pub index: usize,
}

struct SliceAlong {
    axis: usize,
    start: usize,
    len: usize,
}
impl AnyArrayFn for SliceAlong {
    fn call<T: Clone + Default + 'static>(
        &self,
        _ctx: &Context<'_>,
        a: &ArrayD<T>,
    ) -> OpResult<ArrayD<T>> {
        if self.start + self.len > a.shape().get(self.axis).copied().unwrap_or(0) {
            return Err(KernelError::InvalidArgument("slice out of range".into()));
        }
        let v = a.slice_axis(
            Axis(self.axis),
            NdSlice::from(self.start..self.start + self.len),
        );
        Ok(standard(v.to_owned()))
    }
}

impl OpDef for ConcatGrad {
    fn type_name(&self) -> &'static str {
        "ConcatGrad"
    }
    fn infer(&self, inputs: &[TensorInfo]) -> InferResult {
        let part = inputs
            .get(self.index + 1)
            .ok_or_else(|| InferError::Shape("ConcatGrad: index out of range".into()))?;
        Ok(Some(TensorInfo::new(inputs[0].dtype, part.shape.clone())))
    }
    fn compute(&self, ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
        let g = input(inputs, 0, "ConcatGrad")?;
        let ax = norm_axis(self.axis, g.shape().len())?;
        let mut start = 0;
        for v in inputs.iter().skip(1).take(self.index) {
            start += v.shape().get(ax).copied().unwrap_or(0);
        }
        let part = input(inputs, self.index + 1, "ConcatGrad")?;
        let len = part.shape().get(ax).copied().unwrap_or(0);
        apply_any(
            ctx,
            g,
            &SliceAlong {
                axis: ax,
                start,
                len,
            },
        )
    }
    fn gradient(&self, ctx: &GradContext<'_>, grad: Tensor) -> Result<Vec<Option<Tensor>>> {
        // Linear in input 0: the adjoint puts `grad` at this part's place and zeros elsewhere.
        let g = ctx.graph;
        let mut parts = Vec::new();
        for (j, &x) in ctx.inputs.iter().enumerate().skip(1) {
            parts.push(if j == self.index + 1 {
                grad
            } else {
                g.zeros_like(x)?
            });
        }
        let mut out = vec![Some(g.concat(&parts, self.axis)?)];
        out.extend(std::iter::repeat_n(None, ctx.inputs.len() - 1));
        Ok(out)
    }
}

/// `tf.slice(x, begin, size)`; a size of -1 means "to the end".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slice {
    pub begin: Vec<usize>,
    pub size: Vec<i64>,
}

impl Slice {
    fn ranges(&self, shape: &[usize]) -> OpResult<Vec<(usize, usize)>> {
        if self.begin.len() != shape.len() || self.size.len() != shape.len() {
            return Err(KernelError::Shape(format!(
                "slice begin {:?} / size {:?} do not fit shape {:?}",
                self.begin, self.size, shape
            )));
        }
        let mut out = Vec::new();
        for ((&b, &s), &d) in self.begin.iter().zip(&self.size).zip(shape) {
            let len = if s < 0 {
                d.checked_sub(b).ok_or_else(|| {
                    KernelError::InvalidArgument("slice begin beyond the end".into())
                })?
            } else {
                s as usize
            };
            if b.checked_add(len).is_none_or(|e| e > d) {
                return Err(KernelError::Shape(format!(
                    "slice [{b}, {b}+{len}) is out of range for a dimension of size {d}"
                )));
            }
            out.push((b, len));
        }
        Ok(out)
    }
}

struct SliceBox(Vec<(usize, usize)>);
impl AnyArrayFn for SliceBox {
    fn call<T: Clone + Default + 'static>(
        &self,
        _ctx: &Context<'_>,
        a: &ArrayD<T>,
    ) -> OpResult<ArrayD<T>> {
        let v = a.slice_each_axis(|ax| {
            let (b, l) = self.0[ax.axis.index()];
            NdSlice::from(b..b + l)
        });
        Ok(standard(v.to_owned()))
    }
}

impl OpDef for Slice {
    fn type_name(&self) -> &'static str {
        "Slice"
    }
    fn infer(&self, inputs: &[TensorInfo]) -> InferResult {
        expect_arity(inputs, 1, "Slice")?;
        if self.begin.len() != self.size.len() {
            return Err(InferError::Shape(
                "slice begin and size must have the same length".into(),
            ));
        }
        let dims: Vec<Dim> = match inputs[0].shape.dims() {
            Some(d) => {
                if d.len() != self.begin.len() {
                    return Err(InferError::Shape(format!(
                        "slice of rank {} on a rank-{} input",
                        self.begin.len(),
                        d.len()
                    )));
                }
                let mut out = Vec::new();
                for ((&b, &s), &dim) in self.begin.iter().zip(&self.size).zip(d) {
                    if let Some(dim) = dim {
                        let end = if s < 0 { dim } else { b + s as usize };
                        if b > dim || end > dim {
                            return Err(InferError::Shape(format!(
                                "slice [{b}, {end}) is out of range for a dimension of size {dim}"
                            )));
                        }
                    }
                    out.push(if s >= 0 {
                        Some(s as usize)
                    } else {
                        dim.map(|x| x - b)
                    });
                }
                out
            }
            None => self
                .size
                .iter()
                .map(|&s| if s >= 0 { Some(s as usize) } else { None })
                .collect(),
        };
        Ok(Some(TensorInfo::new(inputs[0].dtype, Shape::new(dims))))
    }
    fn compute(&self, ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
        let x = input(inputs, 0, "Slice")?;
        apply_any(ctx, x, &SliceBox(self.ranges(x.shape())?))
    }
    fn gradient(&self, ctx: &GradContext<'_>, grad: Tensor) -> Result<Vec<Option<Tensor>>> {
        let x = ctx.input(0)?;
        Ok(vec![Some(
            ctx.graph.add_node(
                SliceGrad {
                    begin: self.begin.clone(),
                }
                .into(),
                &[grad, x],
                None,
                "SliceGrad",
            )?,
        )])
    }
}

/// Zeros of input 1's shape with input 0 placed at `begin` (the gradient of `Slice`, TF's Pad).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SliceGrad {
    pub begin: Vec<usize>,
}

fn slice_grad_typed<T: Clone + num_traits::Zero>(
    g: &ArrayD<T>,
    like: &[usize],
    begin: &[usize],
) -> OpResult<ArrayD<T>> {
    if g.ndim() != like.len() || begin.len() != like.len() {
        return Err(KernelError::Shape("SliceGrad: rank mismatch".into()));
    }
    let mut out = ArrayD::<T>::zeros(IxDyn(like));
    for ((&b, &l), &d) in begin.iter().zip(g.shape()).zip(like) {
        if b + l > d {
            return Err(KernelError::InvalidArgument(
                "SliceGrad: gradient does not fit".into(),
            ));
        }
    }
    out.slice_each_axis_mut(|ax| {
        let i = ax.axis.index();
        NdSlice::from(begin[i]..begin[i] + g.shape()[i])
    })
    .assign(g);
    Ok(out)
}

impl OpDef for SliceGrad {
    fn type_name(&self) -> &'static str {
        "SliceGrad"
    }
    fn infer(&self, inputs: &[TensorInfo]) -> InferResult {
        expect_arity(inputs, 2, "SliceGrad")?;
        Ok(Some(TensorInfo::new(
            inputs[0].dtype,
            inputs[1].shape.clone(),
        )))
    }
    fn compute(&self, _ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
        let like = input(inputs, 1, "SliceGrad")?.shape().to_vec();
        match input(inputs, 0, "SliceGrad")? {
            Value::F32(g) => Ok(Value::F32(slice_grad_typed(g, &like, &self.begin)?)),
            Value::F64(g) => Ok(Value::F64(slice_grad_typed(g, &like, &self.begin)?)),
            other => Err(KernelError::DType(format!(
                "SliceGrad needs a float gradient, got {}",
                other.dtype()
            ))),
        }
    }
    fn gradient(&self, ctx: &GradContext<'_>, grad: Tensor) -> Result<Vec<Option<Tensor>>> {
        let g = ctx.graph;
        let size = g
            .shape(ctx.input(0)?)?
            .to_known()
            .ok_or_else(|| Error::NoGradient {
                node: ctx.name.clone(),
                op: "SliceGrad (second-order gradient needs a static slice size)".into(),
            })?;
        let size: Vec<i64> = size.iter().map(|&s| s as i64).collect();
        Ok(vec![Some(g.slice(grad, &self.begin, &size)?), None])
    }
}

impl Graph {
    /// `tf.concat(values, axis)`.
    pub fn concat(&self, values: &[Tensor], axis: i64) -> Result<Tensor> {
        self.add_node(Concat { axis }.into(), values, None, "concat")
    }
    /// `tf.slice(x, begin, size)`; a size of -1 takes the rest of that dimension.
    pub fn slice(&self, x: impl Into<Tensor>, begin: &[usize], size: &[i64]) -> Result<Tensor> {
        self.add_node(
            Slice {
                begin: begin.to_vec(),
                size: size.to_vec(),
            }
            .into(),
            &[x.into()],
            None,
            "Slice",
        )
    }
    /// `tf.gather(params, indices)` along axis 0; indices are int64.
    pub fn gather(&self, params: impl Into<Tensor>, indices: impl Into<Tensor>) -> Result<Tensor> {
        self.add_node(
            Gather.into(),
            &[params.into(), indices.into()],
            None,
            "GatherV2",
        )
    }
    /// `tf.one_hot(indices, depth)` as float32 with on 1 and off 0.
    pub fn one_hot(&self, indices: impl Into<Tensor>, depth: usize) -> Result<Tensor> {
        self.one_hot_with(indices, depth, 1.0, 0.0, DType::F32)
    }
    /// `tf.one_hot(indices, depth, on_value, off_value, dtype)`.
    pub fn one_hot_with(
        &self,
        indices: impl Into<Tensor>,
        depth: usize,
        on_value: f64,
        off_value: f64,
        dtype: DType,
    ) -> Result<Tensor> {
        self.add_node(
            OneHot {
                depth,
                on_value,
                off_value,
                dtype,
            }
            .into(),
            &[indices.into()],
            None,
            "one_hot",
        )
    }
}

mod gather;
pub use gather::*;

#[cfg(test)]
mod tests;
