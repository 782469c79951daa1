//! Fused batch normalization: `tf.nn.moments` and `tf.nn.batch_normalization` as [`Graph::moments`]
//! and [`Graph::batch_normalization`], each one pass over the data instead of TF's chain of small
//! composite ops, and a backward pass of two kernels.
//!
//! The tensor `x` is seen as `rows × C`, C its last dimension; every statistic and parameter is a
//! vector of C. In TF the forward is built from `Mean`, `SquaredDifference`, `Rsqrt`, `Mul`, `Sub`
//! and `Add`, and its gradient from a dozen broadcasting ops per layer. Here:
//!
//! - `MomentsVariance(x, mean)`: Σ_r (x - mean)² / rows per channel (the `SquaredDifference` + `Mean`
//!   of `tf.nn.moments`, in the same summation order, without the `rows × C` temporary). As in TF
//!   the mean input is taken through `stop_gradient`: it gets no gradient.
//! - `BatchNormalization(x, mean, variance, offset, scale)`: `x·inv + (offset - mean·inv)` with
//!   `inv = scale / √(variance + ε)`, TF's formula term for term.
//! - Its gradient: `BatchNormGradStats(g, x, mean)` = `[Σg, Σg·(x - mean)]` per channel (one pass),
//!   `BatchNormParamGrad` turns those into the gradients of offset, scale, mean and variance (C
//!   elements each), and `BatchNormGradInput` gives the gradient of x (one pass, over g's buffer when
//!   g dies there). When the mean and variance inputs are the moments of x itself (built by
//!   [`Graph::moments`] over the leading axes), `BatchNormGradInput` computes the *total* derivative
//!   of x — directly and through the batch mean and variance — and the mean and variance inputs get
//!   no gradient from this node: the sum the autodiff would have built from three paths, in one pass.
//!   Gradients reaching the mean or variance from other consumers still flow back the ordinary way.

use super::kernels::{
    by_float, column_blocks, float_input, float_target, FloatArray, COLUMN_BLOCK,
};
use super::reduce::{normalize_axes, Reduce, ReduceKind};
use super::{
    expect_arity, expect_float, same_dtype, GradContext, InferError, InferResult, Op, OpDef,
};
use crate::dtype::{Shape, TensorInfo};
use crate::error::{Error, KernelError, OpResult, Result};
use crate::graph::{Graph, Tensor};
use crate::value::Value;
use ferroflow_cpu::Context;
use ndarray::{ArrayD, IxDyn};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// `x` as rows × channels.
fn rows_cols(shape: &[usize]) -> (usize, usize) {
    let c = shape.last().copied().unwrap_or(1);
    let n: usize = shape.iter().product();
    (n.checked_div(c).unwrap_or(0), c)
}

/// The contiguous data of a float input of `C` channels (its last dimension).
fn channel_data<'a, T: FloatArray>(
    inputs: &[&'a Value],
    i: usize,
    c: usize,
    op: &str,
    what: &str,
) -> OpResult<&'a [T]> {
    let a = float_input::<T>(inputs, i, op)?;
    let s = a
        .as_slice()
        .ok_or_else(|| KernelError::Shape(format!("{op}: {what} is not contiguous")))?;
    if s.len() != c {
        return Err(KernelError::Shape(format!(
            "{op}: {what} has shape {:?}, expected [{c}] (the input's last dimension)",
            a.shape()
        )));
    }
    Ok(s)
}

/// The contiguous data of the big input and its rows × channels.
fn big_data<'a, T: FloatArray>(
    inputs: &[&'a Value],
    i: usize,
    op: &str,
) -> OpResult<(&'a [T], usize, usize)> {
    let a = float_input::<T>(inputs, i, op)?;
    let (rows, c) = rows_cols(a.shape());
    let s = a
        .as_slice()
        .ok_or_else(|| KernelError::Shape(format!("{op}: input {i} is not contiguous")))?;
    Ok((s, rows, c))
}

/// Whether a pass over `elements` values is split across the session's threads.
fn parallel(ctx: &Context<'_>, elements: usize) -> Option<usize> {
    let threads = ctx.threads();
    (threads > 1 && elements >= ctx.config().parallel_min_elements).then_some(threads)
}

/// Runs `f(first_row, rows)` over disjoint bands of whole rows of `data` (`c` values a row).
fn per_rows<T: Send>(
    ctx: &Context<'_>,
    data: &mut [T],
    c: usize,
    f: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    let rows = data.len().checked_div(c).unwrap_or(0);
    match parallel(ctx, data.len()) {
        Some(threads) if rows >= threads => {
            let band = rows.div_ceil(threads) * c;
            data.par_chunks_mut(band).enumerate().for_each(|(i, d)| {
                ctx.vectorized(
                    #[inline(always)]
                    || f(i * band / c, d),
                )
            });
        }
        _ => ctx.vectorized(
            #[inline(always)]
            || f(0, data),
        ),
    }
}

/// Copies a float array into a fresh row-major one (the out-of-place form of an in-place kernel).
fn owned_copy<T: FloatArray>(ctx: &Context<'_>, a: &ArrayD<T>) -> OpResult<ArrayD<T>> {
    let mut v = ctx.try_vec(a.len())?;
    match a.as_slice() {
        Some(s) => v.extend_from_slice(s),
        None => v.extend(a.iter().copied()),
    }
    ArrayD::from_shape_vec(IxDyn(a.shape()), v).map_err(KernelError::from)
}

/// The out-of-place form of a kernel that writes over its first input: a copy of input 0, then
/// `in_place(copy, other inputs)`.
fn copy_then_in_place<T: FloatArray>(
    ctx: &Context<'_>,
    inputs: &[&Value],
    op: &str,
    in_place: impl FnOnce(&mut Value, &[&Value]) -> OpResult<()>,
) -> OpResult<Value> {
    let x = float_input::<T>(inputs, 0, op)?;
    let mut out = T::wrap(owned_copy(ctx, x)?);
    in_place(&mut out, inputs.get(1..).unwrap_or(&[]))?;
    Ok(out)
}

/// The static channel count of `x`'s info (its last dimension), when known.
fn static_channels(info: &TensorInfo) -> Option<usize> {
    info.shape.dims()?.last().copied().flatten()
}

/// Checks that a parameter's static shape can be `[C]`.
fn expect_channels(
    info: &TensorInfo,
    c: Option<usize>,
    what: &str,
) -> std::result::Result<(), InferError> {
    let want = Shape::new(vec![c]);
    if info.shape.merge(&want).is_none() {
        return Err(InferError::Shape(format!(
            "{what} must have shape [{}], got {}",
            c.map_or("?".to_string(), |c| c.to_string()),
            info.shape
        )));
    }
    Ok(())
}

/// The shared shape rule of the per-channel ops: `x` (rank ≥ 1) and `[C]` parameters.
fn infer_channels(
    inputs: &[TensorInfo],
    n: usize,
    op: &str,
    names: &[&str],
) -> std::result::Result<Option<usize>, InferError> {
    expect_arity(inputs, n, op)?;
    same_dtype(inputs)?;
    expect_float(&inputs[0], "the input")?;
    if inputs[0].shape.rank() == Some(0) {
        return Err(InferError::Shape(format!(
            "{op} needs an input of rank >= 1"
        )));
    }
    let c = static_channels(&inputs[0]);
    for (info, what) in inputs.iter().skip(1).zip(names) {
        expect_channels(info, c, what)?;
    }
    Ok(c)
}

// ---------------------------------------------------------------------------------------------
// BatchNormalization

/// `x·inv + (offset - mean·inv)`, `inv = scale / √(variance + ε)`: `tf.nn.batch_normalization` with
/// `[C]` parameters, in one pass.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchNorm {
    pub epsilon: f64,
    /// `max(y, 0)` of each output as it is written: set only by the plan compiler, which fuses a
    /// `Relu` that is the sole reader of the output into this step (see `plan::fuse_relu`);
    /// never part of a graph, so it has no gradient rule and is not saved.
    #[serde(skip)]
    pub(crate) relu: bool,
}

impl BatchNorm {
    /// The op `tf.nn.batch_normalization` builds, with variance epsilon `epsilon`.
    pub fn new(epsilon: f64) -> Self {
        BatchNorm {
            epsilon,
            relu: false,
        }
    }
}

/// `y`, or TF's `Relu` of it when `RELU`.
#[inline(always)]
fn activate<T: FloatArray, const RELU: bool>(y: T) -> T {
    if RELU {
        super::unary::relu(y)
    } else {
        y
    }
}

/// The most channels whose coefficients [`BatchNorm::run`] keeps on the stack.
const ROW_COEFFICIENTS: usize = 1024;

/// inv and shift of channel `c`, as TF's composite computes them.
#[inline(always)]
fn inv_shift<T: FloatArray>(eps: T, mean: T, var: T, offset: T, scale: T) -> (T, T) {
    let inv = (T::one() / (var + eps).sqrt()) * scale;
    (inv, offset - mean * inv)
}

impl BatchNorm {
    fn run_in_place<T: FloatArray>(
        &self,
        ctx: &Context<'_>,
        target: &mut Value,
        others: &[&Value],
    ) -> OpResult<()> {
        if self.relu {
            self.affine_in_place::<T, true>(ctx, target, others)
        } else {
            self.affine_in_place::<T, false>(ctx, target, others)
        }
    }

    fn affine_in_place<T: FloatArray, const RELU: bool>(
        &self,
        ctx: &Context<'_>,
        target: &mut Value,
        others: &[&Value],
    ) -> OpResult<()> {
        let op = "BatchNormalization";
        let eps = T::from_f64(self.epsilon);
        let x = float_target::<T>(target, op)?;
        let (_, c) = rows_cols(x.shape());
        let mean = channel_data::<T>(others, 0, c, op, "the mean")?;
        let var = channel_data::<T>(others, 1, c, op, "the variance")?;
        let offset = channel_data::<T>(others, 2, c, op, "the offset")?;
        let scale = channel_data::<T>(others, 3, c, op, "the scale")?;
        let data = x.as_slice_mut().ok_or_else(|| {
            KernelError::Shape("BatchNormalization: the input is not contiguous".into())
        })?;
        per_rows(
            ctx,
            data,
            c,
            #[inline(always)]
            |_, band| {
                column_blocks(
                    c,
                    #[inline(always)]
                    |c0, w| {
                        let mut inv = [T::zero(); COLUMN_BLOCK];
                        let mut shift = [T::zero(); COLUMN_BLOCK];
                        for j in 0..w {
                            (inv[j], shift[j]) = inv_shift(
                                eps,
                                mean[c0 + j],
                                var[c0 + j],
                                offset[c0 + j],
                                scale[c0 + j],
                            );
                        }
                        for row in band.chunks_exact_mut(c) {
                            for ((y, &k), &s) in
                                row[c0..][..w].iter_mut().zip(&inv[..w]).zip(&shift[..w])
                            {
                                *y = activate::<T, RELU>(*y * k + s);
                            }
                        }
                    },
                )
            },
        );
        Ok(())
    }

    /// The out-of-place pass (the input is kept for the backward): each row's `x·inv + shift` written
    /// once into a new buffer, with `inv` and `shift` for every channel computed first (the same
    /// operations as [`Self::run_in_place`], so the same bits). Over a contiguous input of at most
    /// [`ROW_COEFFICIENTS`] channels, so that the coefficients stay on the stack; other inputs take
    /// a copy and the in-place pass.
    fn run<T: FloatArray>(&self, ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
        let op = "BatchNormalization";
        let x = float_input::<T>(inputs, 0, op)?;
        let (rows, c) = rows_cols(x.shape());
        let (Some(data), true) = (x.as_slice(), c <= ROW_COEFFICIENTS) else {
            return copy_then_in_place::<T>(ctx, inputs, op, |out, others| {
                self.run_in_place::<T>(ctx, out, others)
            });
        };
        let others = inputs.get(1..).unwrap_or(&[]);
        let eps = T::from_f64(self.epsilon);
        let mean = channel_data::<T>(others, 0, c, op, "the mean")?;
        let var = channel_data::<T>(others, 1, c, op, "the variance")?;
        let offset = channel_data::<T>(others, 2, c, op, "the offset")?;
        let scale = channel_data::<T>(others, 3, c, op, "the scale")?;
        let mut inv = [T::zero(); ROW_COEFFICIENTS];
        let mut shift = [T::zero(); ROW_COEFFICIENTS];
        for j in 0..c {
            (inv[j], shift[j]) = inv_shift(eps, mean[j], var[j], offset[j], scale[j]);
        }
        let (inv, shift) = (&inv[..c], &shift[..c]);
        let mut out = ctx.try_vec(data.len())?;
        let threads = parallel(ctx, data.len()).unwrap_or(1);
        let written = if self.relu {
            rows_affine::<T, true>(ctx, &mut out, data, rows, c, threads, (inv, shift))
        } else {
            rows_affine::<T, false>(ctx, &mut out, data, rows, c, threads, (inv, shift))
        };
        written?;
        let out = ArrayD::from_shape_vec(IxDyn(x.shape()), out).map_err(KernelError::from)?;
        Ok(T::wrap(out))
    }
}

/// `activate(x·inv + shift)` of each row of `data` (`rows × c`) written once into the empty `out`.
fn rows_affine<T: FloatArray, const RELU: bool>(
    ctx: &Context<'_>,
    out: &mut Vec<T>,
    data: &[T],
    rows: usize,
    c: usize,
    threads: usize,
    (inv, shift): (&[T], &[T]),
) -> OpResult<()> {
    Ok(ferroflow_cpu::gemm::rows_into_vec(
        &ctx.with_threads(threads),
        out,
        rows,
        c,
        #[inline(always)]
        |r| {
            let x = data.get(r * c..(r + 1) * c).unwrap_or(&[]);
            x.iter()
                .zip(inv)
                .zip(shift)
                .map(|((&x, &k), &s)| activate::<T, RELU>(x * k + s))
        },
    )?)
}

/// In-place rule shared by the two elementwise batch-norm kernels: input 0 when it is a writable float.
fn first_writable(inputs: &[&Value]) -> Option<usize> {
    inputs.first()?.is_writable_float().then_some(0)
}

/// Dispatches an in-place kernel on the target's dtype.
fn in_place_by_float(
    target: &mut Value,
    op: &str,
    f32_body: impl FnOnce(&mut Value) -> OpResult<()>,
    f64_body: impl FnOnce(&mut Value) -> OpResult<()>,
) -> OpResult<()> {
    match target.dtype() {
        crate::DType::F32 => f32_body(target),
        crate::DType::F64 => f64_body(target),
        d => Err(KernelError::DType(format!(
            "{op} needs float inputs, got {d}"
        ))),
    }
}

/// The `OpDef` methods of a kernel that writes over its first input: `compute` is a copy of that
/// input followed by `run_in_place` (through the type's `run`), and the session may forward the input.
macro_rules! over_first_input {
    () => {
        fn compute(&self, ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
            by_float(
                inputs,
                self.type_name(),
                || self.run::<f32>(ctx, inputs),
                || self.run::<f64>(ctx, inputs),
            )
        }
        fn in_place_input(&self, inputs: &[&Value]) -> Option<usize> {
            first_writable(inputs)
        }
        fn compute_in_place(
            &self,
            ctx: &Context<'_>,
            k: usize,
            target: &mut Value,
            others: &[&Value],
        ) -> OpResult<()> {
            if k != 0 {
                return Err(KernelError::InvalidArgument(format!(
                    "{} runs in place only over its first input",
                    self.type_name()
                )));
            }
            in_place_by_float(
                target,
                self.type_name(),
                |t| self.run_in_place::<f32>(ctx, t, others),
                |t| self.run_in_place::<f64>(ctx, t, others),
            )
        }
    };
}

/// True when `t` is `Mean(x)` over all leading axes (the mean [`Graph::moments`] builds).
fn is_leading_mean(g: &Graph, t: Tensor, x: Tensor, rank: usize) -> bool {
    let Ok(node) = g.node(t.index()) else {
        return false;
    };
    let Op::Reduce(Reduce {
        kind: ReduceKind::Mean,
        axes,
        keepdims: false,
    }) = node.op.as_ref()
    else {
        return false;
    };
    node.inputs == [x.index()]
        && normalize_axes(axes, rank).is_ok_and(|a| a.iter().copied().eq(0..rank - 1))
}

/// True when `var` is `MomentsVariance(x, mean)`.
fn is_moments_variance(g: &Graph, var: Tensor, x: Tensor, mean: Tensor) -> bool {
    g.node(var.index()).is_ok_and(|n| {
        matches!(n.op.as_ref(), Op::MomentsVariance(_)) && n.inputs == [x.index(), mean.index()]
    })
}

impl OpDef for BatchNorm {
    fn type_name(&self) -> &'static str {
        if self.relu {
            "BatchNormalization+Relu"
        } else {
            "BatchNormalization"
        }
    }
    fn with_relu(&self) -> Option<Op> {
        (!self.relu).then(|| {
            Op::BatchNorm(BatchNorm {
                epsilon: self.epsilon,
                relu: true,
            })
        })
    }
    fn infer(&self, inputs: &[TensorInfo]) -> InferResult {
        infer_channels(
            inputs,
            5,
            self.type_name(),
            &["the mean", "the variance", "the offset", "the scale"],
        )?;
        Ok(Some(inputs[0].clone()))
    }
    over_first_input!();
    fn gradient(&self, ctx: &GradContext<'_>, grad: Tensor) -> Result<Vec<Option<Tensor>>> {
        let g = ctx.graph;
        let [x, mean, var, _offset, scale] = [0, 1, 2, 3, 4].map(|i| ctx.input(i));
        let (x, mean, var, scale) = (x?, mean?, var?, scale?);
        let rank = ctx.input_infos[0].shape.rank().unwrap_or(0);
        let total =
            rank >= 1 && is_leading_mean(g, mean, x, rank) && is_moments_variance(g, var, x, mean);
        // Statistics of a data-parallel job's global batch: the same total derivative, with the
        // batch sums averaged over the ranks (the kernel divides by this rank's rows).
        let global = !total && rank >= 1 && is_global_moments(g, mean, var, x, rank);
        let eps = self.epsilon;
        let stats = g.add_node(
            BatchNormGradStats.into(),
            &[grad, x, mean],
            None,
            "BatchNormGradStats",
        )?;
        let input_stats = if global {
            g.all_reduce(stats, super::collective::Reduction::Mean)?
        } else {
            stats
        };
        let total = total || global;
        let param = |which: BnParam| {
            let op = BatchNormParamGrad {
                epsilon: eps,
                which,
            };
            let name = op.type_name();
            g.add_node(op.into(), &[stats, var, scale], None, name)
        };
        let dx = g.add_node(
            BatchNormGradInput {
                epsilon: eps,
                total,
            }
            .into(),
            &[grad, x, mean, var, scale, input_stats],
            None,
            "BatchNormGradInput",
        )?;
        let (d_mean, d_var) = if total {
            (None, None)
        } else {
            (Some(param(BnParam::Mean)?), Some(param(BnParam::Variance)?))
        };
        Ok(vec![
            Some(dx),
            d_mean,
            d_var,
            Some(param(BnParam::Offset)?),
            Some(param(BnParam::Scale)?),
        ])
    }
}

// ---------------------------------------------------------------------------------------------
// Builders

impl Graph {
    /// `tf.nn.batch_normalization(x, mean, variance, offset, scale, variance_epsilon)`:
    /// `x·inv + (offset - mean·inv)`, `inv = scale / √(variance + ε)` (offset 0 and scale 1 when
    /// `None`). With `[C]` statistics and parameters for an input of C channels it is the fused
    /// `BatchNormalization` op (see the module docs); otherwise TF's composite of broadcasting ops.
    pub fn batch_normalization(
        &self,
        x: Tensor,
        mean: Tensor,
        variance: Tensor,
        offset: Option<Tensor>,
        scale: Option<Tensor>,
        epsilon: f64,
    ) -> Result<Tensor> {
        let _s = self.name_scope("batchnorm")?;
        let c = static_channels(&self.info(x)?);
        let is_vec = |t: Tensor| -> Result<bool> {
            Ok(c.is_some() && self.shape(t)?.dims() == Some(&[c][..]))
        };
        let params = [Some(mean), Some(variance), offset, scale];
        let fused = params
            .iter()
            .flatten()
            .try_fold(true, |ok, &t| Ok::<_, Error>(ok && is_vec(t)?))?;
        if fused {
            let offset = match offset {
                Some(t) => t,
                None => self.zeros_like(mean)?,
            };
            let scale = match scale {
                Some(t) => t,
                None => self.ones_like(mean)?,
            };
            return self.add_node(
                BatchNorm::new(epsilon).into(),
                &[x, mean, variance, offset, scale],
                None,
                "BatchNormalization",
            );
        }
        let mut inv = self.div(
            self.scalar_like(x, 1.0)?,
            self.sqrt(self.add(variance, self.scalar_like(x, epsilon)?)?)?,
        )?;
        if let Some(s) = scale {
            inv = self.mul(inv, s)?;
        }
        let shift = match offset {
            Some(b) => self.sub(b, self.mul(mean, inv)?)?,
            None => self.neg(self.mul(mean, inv)?)?,
        };
        self.add(self.mul(x, inv)?, shift)
    }
}

mod grad;
pub use grad::{BatchNormGradInput, BatchNormGradStats, BatchNormParamGrad, BnParam};

mod moments;
pub use moments::*;

#[cfg(test)]
mod tests;
