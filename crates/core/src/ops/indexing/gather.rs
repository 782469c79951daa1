//! Row gathers (`Gather`, its gradient `GatherGrad`) and `OneHot`.

use crate::dtype::{DType, Shape, TensorInfo};
use crate::error::{KernelError, OpResult, Result};
use crate::graph::Tensor;
use crate::ops::kernels::{input, standard};
use crate::ops::shape_ops::{apply_any, AnyArrayFn};
use crate::ops::{expect_arity, GradContext, InferError, InferResult, OpDef};
use crate::value::Value;
use ferroflow_cpu::Context;
use ndarray::{ArrayD, Axis, IxDyn};
use serde::{Deserialize, Serialize};

/// `tf.gather(params, indices)` along axis 0 (rows).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gather;

struct GatherRows<'a>(&'a ArrayD<i64>);
impl AnyArrayFn for GatherRows<'_> {
    fn call<T: Clone + Default + 'static>(
        &self,
        ctx: &Context<'_>,
        p: &ArrayD<T>,
    ) -> OpResult<ArrayD<T>> {
        let rows = *p
            .shape()
            .first()
            .ok_or_else(|| KernelError::Shape("gather needs params of rank >= 1".into()))?;
        let mut shape = self.0.shape().to_vec();
        shape.extend_from_slice(&p.shape()[1..]);
        let mut data = ctx.try_vec(crate::Value::checked_len(&shape)?)?;
        for &i in self.0.iter() {
            if i < 0 || i as usize >= rows {
                return Err(KernelError::Shape(format!(
                    "indices value {i} is not in [0, {rows})"
                )));
            }
            data.extend(p.index_axis(Axis(0), i as usize).iter().cloned());
        }
        ArrayD::from_shape_vec(IxDyn(&shape), data).map_err(KernelError::from)
    }
}

impl OpDef for Gather {
    fn type_name(&self) -> &'static str {
        "GatherV2"
    }
    fn infer(&self, inputs: &[TensorInfo]) -> InferResult {
        expect_arity(inputs, 2, "GatherV2")?;
        if inputs[1].dtype != DType::I64 {
            return Err(InferError::DType(format!(
                "indices must be int64, got {}",
                inputs[1].dtype
            )));
        }
        let shape = match (inputs[0].shape.dims(), inputs[1].shape.dims()) {
            (Some(p), Some(i)) => {
                if p.is_empty() {
                    return Err(InferError::Shape("gather needs params of rank >= 1".into()));
                }
                let mut v = i.to_vec();
                v.extend_from_slice(&p[1..]);
                Shape::new(v)
            }
            _ => Shape::unknown(),
        };
        Ok(Some(TensorInfo::new(inputs[0].dtype, shape)))
    }
    fn compute(&self, ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
        let idx = input(inputs, 1, "GatherV2")?
            .as_i64()
            .ok_or_else(|| KernelError::DType("indices must be int64".into()))?;
        apply_any(ctx, input(inputs, 0, "GatherV2")?, &GatherRows(idx))
    }
    fn gradient(&self, ctx: &GradContext<'_>, grad: Tensor) -> Result<Vec<Option<Tensor>>> {
        let (p, i) = (ctx.input(0)?, ctx.input(1)?);
        Ok(vec![
            Some(
                ctx.graph
                    .add_node(GatherGrad.into(), &[grad, i, p], None, "GatherGrad")?,
            ),
            None,
        ])
    }
}

/// Scatter-adds rows of input 0 at indices (input 1) into zeros shaped like input 2
/// (the gradient of `Gather`, TF's `UnsortedSegmentSum`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatherGrad;

fn gather_grad_typed<T: Clone + num_traits::Zero + std::ops::AddAssign + 'static>(
    ctx: &Context<'_>,
    g: &ArrayD<T>,
    idx: &ArrayD<i64>,
    like: &[usize],
) -> OpResult<ArrayD<T>> {
    let rows = *like
        .first()
        .ok_or_else(|| KernelError::Shape("GatherGrad: params must have rank >= 1".into()))?;
    let row_len: usize = like[1..].iter().product();
    let mut out = ctx.try_filled_vec(crate::Value::checked_len(like)?, T::zero())?;
    let gs = standard(g.clone());
    let gflat = gs
        .as_slice()
        .ok_or_else(|| KernelError::Shape("GatherGrad: non-contiguous gradient".into()))?;
    if gflat.len() != idx.len() * row_len {
        return Err(KernelError::Shape(
            "GatherGrad: gradient shape does not match indices".into(),
        ));
    }
    for (k, &i) in idx.iter().enumerate() {
        if i < 0 || i as usize >= rows {
            return Err(KernelError::Shape(format!(
                "indices value {i} is not in [0, {rows})"
            )));
        }
        let dst = &mut out[i as usize * row_len..(i as usize + 1) * row_len];
        for (d, s) in dst.iter_mut().zip(&gflat[k * row_len..(k + 1) * row_len]) {
            *d += s.clone();
        }
    }
    ArrayD::from_shape_vec(IxDyn(like), out).map_err(KernelError::from)
}

impl OpDef for GatherGrad {
    fn type_name(&self) -> &'static str {
        "GatherGrad"
    }
    fn infer(&self, inputs: &[TensorInfo]) -> InferResult {
        expect_arity(inputs, 3, "GatherGrad")?;
        Ok(Some(TensorInfo::new(
            inputs[0].dtype,
            inputs[2].shape.clone(),
        )))
    }
    fn compute(&self, ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
        let idx = input(inputs, 1, "GatherGrad")?
            .as_i64()
            .ok_or_else(|| KernelError::DType("indices must be int64".into()))?;
        let like = input(inputs, 2, "GatherGrad")?.shape().to_vec();
        match input(inputs, 0, "GatherGrad")? {
            Value::F32(g) => Ok(Value::F32(gather_grad_typed(ctx, g, idx, &like)?)),
            Value::F64(g) => Ok(Value::F64(gather_grad_typed(ctx, g, idx, &like)?)),
            other => Err(KernelError::DType(format!(
                "GatherGrad needs a float gradient, got {}",
                other.dtype()
            ))),
        }
    }
    fn gradient(&self, ctx: &GradContext<'_>, grad: Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![
            Some(ctx.graph.gather(grad, ctx.input(1)?)?),
            None,
            None,
        ])
    }
}

/// `tf.one_hot(indices, depth, on_value, off_value, dtype)`; out-of-range indices give all `off_value`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OneHot {
    pub depth: usize,
    pub on_value: f64,
    pub off_value: f64,
    pub dtype: DType,
}

impl OpDef for OneHot {
    fn type_name(&self) -> &'static str {
        "OneHot"
    }
    fn infer(&self, inputs: &[TensorInfo]) -> InferResult {
        expect_arity(inputs, 1, "OneHot")?;
        if inputs[0].dtype != DType::I64 {
            return Err(InferError::DType(format!(
                "one_hot indices must be int64, got {}",
                inputs[0].dtype
            )));
        }
        let shape = match inputs[0].shape.dims() {
            None => Shape::unknown(),
            Some(d) => {
                let mut v = d.to_vec();
                v.push(Some(self.depth));
                Shape::new(v)
            }
        };
        Ok(Some(TensorInfo::new(self.dtype, shape)))
    }
    fn compute(&self, ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
        let idx = input(inputs, 0, "OneHot")?
            .as_i64()
            .ok_or_else(|| KernelError::DType("one_hot indices must be int64".into()))?;
        let mut shape: crate::ops::kernels::Dims = idx.shape().iter().copied().collect();
        shape.push(self.depth);
        let n = Value::checked_len(&shape)?;
        fn fill<T: Copy + 'static>(
            ctx: &Context<'_>,
            n: usize,
            depth: usize,
            idx: &ndarray::ArrayD<i64>,
            on: T,
            off: T,
            shape: &[usize],
        ) -> OpResult<ndarray::ArrayD<T>> {
            let mut data = ctx.try_filled_vec(n, off)?;
            for (k, &i) in idx.iter().enumerate() {
                if let Some(d) = usize::try_from(i).ok().filter(|&i| i < depth) {
                    if let Some(x) = data.get_mut(k * depth + d) {
                        *x = on;
                    }
                }
            }
            ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(shape), data).map_err(KernelError::from)
        }
        let (on, off, d) = (self.on_value, self.off_value, self.depth);
        Ok(match self.dtype {
            DType::F32 => Value::F32(fill(ctx, n, d, idx, on as f32, off as f32, &shape)?),
            DType::F64 => Value::F64(fill(ctx, n, d, idx, on, off, &shape)?),
            DType::I64 => Value::I64(fill(ctx, n, d, idx, on as i64, off as i64, &shape)?),
            DType::Bool => Value::Bool(fill(ctx, n, d, idx, on != 0.0, off != 0.0, &shape)?),
        })
    }
    fn gradient(&self, _ctx: &GradContext<'_>, _grad: Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![None])
    }
}
