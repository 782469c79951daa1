//! The backward kernels of the fused batch norm (see the parent module).

use super::{
    big_data, channel_data, expect_channels, first_writable, in_place_by_float, infer_channels,
    per_rows, rows_cols,
};
use crate::dtype::{Shape, TensorInfo};
use crate::error::{KernelError, OpResult};
use crate::ops::kernels::{
    by_float, column_blocks, float_input, float_target, halved_column_pass, FloatArray,
    COLUMN_BLOCK,
};
use crate::ops::{expect_arity, expect_float, same_dtype, InferError, InferResult, OpDef};
use crate::value::Value;
use ferroflow_cpu::simd::inlined;
use ferroflow_cpu::Context;
use ndarray::{ArrayD, IxDyn};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------------------------
// The backward kernels

/// `[Σ_r g, Σ_r g·(x - mean)]` per channel, shape `[2, C]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchNormGradStats;

fn grad_stats_typed<T: FloatArray>(ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
    let op = "BatchNormGradStats";
    let (gr, rows, c) = big_data::<T>(inputs, 0, op)?;
    let (x, _, cx) = big_data::<T>(inputs, 1, op)?;
    if cx != c || x.len() != gr.len() {
        return Err(KernelError::InvalidArgument(format!(
            "{op}: the gradient has {} values of {c} channels, the input {} of {cx}",
            gr.len(),
            x.len()
        )));
    }
    let mean = channel_data::<T>(inputs, 2, c, op, "the mean")?;
    let mut out = ctx.try_filled_vec(2 * c, T::zero())?;
    // Columns `c0..c0 + a0.len()` over the rows of `gr` and `x` (slices of whole rows).
    let pass = inlined(
        #[inline(always)]
        |gr: &[T], x: &[T], c0: usize, a0: &mut [T], a1: &mut [T]| {
            let rows = gr.len().checked_div(c).unwrap_or(0);
            column_blocks(
                a0.len(),
                #[inline(always)]
                |j0, w| {
                    let m = &mean[c0 + j0..][..w];
                    let (mut l0, mut l1) = ([T::zero(); COLUMN_BLOCK], [T::zero(); COLUMN_BLOCK]);
                    for r in 0..rows {
                        let base = r * c + c0 + j0;
                        let (gr, xr) = (&gr[base..][..w], &x[base..][..w]);
                        for ((((a, b), &gv), &xv), &mu) in l0[..w]
                            .iter_mut()
                            .zip(l1[..w].iter_mut())
                            .zip(gr)
                            .zip(xr)
                            .zip(m)
                        {
                            *a = *a + gv;
                            *b = *b + gv * (xv - mu);
                        }
                    }
                    a0[j0..j0 + w].copy_from_slice(&l0[..w]);
                    a1[j0..j0 + w].copy_from_slice(&l1[..w]);
                },
            )
        },
    );
    // The rows apart in halves from `HALVED_COLUMN_ROWS` on, as `fold_columns` does.
    halved_column_pass(
        ctx,
        rows,
        gr.len(),
        &mut out,
        #[inline(always)]
        |r, acc, parts| {
            let (g, x) = (&gr[r.start * c..r.end * c], &x[r.start * c..r.end * c]);
            let (a0, a1) = acc.split_at_mut(c);
            if parts >= 2 && c >= 2 * parts {
                let chunk = c.div_ceil(parts);
                a0.par_chunks_mut(chunk)
                    .zip(a1.par_chunks_mut(chunk))
                    .enumerate()
                    .for_each(|(i, (a0, a1))| {
                        ctx.vectorized(
                            #[inline(always)]
                            || pass(g, x, i * chunk, a0, a1),
                        )
                    });
            } else {
                ctx.vectorized(
                    #[inline(always)]
                    || pass(g, x, 0, a0, a1),
                )
            }
        },
    );
    Ok(T::wrap(
        ArrayD::from_shape_vec(IxDyn(&[2, c]), out).map_err(KernelError::from)?,
    ))
}

impl OpDef for BatchNormGradStats {
    fn type_name(&self) -> &'static str {
        "BatchNormGradStats"
    }
    fn infer(&self, inputs: &[TensorInfo]) -> InferResult {
        expect_arity(inputs, 3, self.type_name())?;
        let c = infer_channels(
            &[inputs[1].clone(), inputs[2].clone()],
            2,
            self.type_name(),
            &["the mean"],
        )?;
        same_dtype(inputs)?;
        Ok(Some(TensorInfo::new(
            inputs[0].dtype,
            Shape::new(vec![Some(2), c]),
        )))
    }
    fn compute(&self, ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
        by_float(
            inputs,
            self.type_name(),
            || grad_stats_typed::<f32>(ctx, inputs),
            || grad_stats_typed::<f64>(ctx, inputs),
        )
    }
}

/// Which parameter [`BatchNormParamGrad`] gives the gradient of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BnParam {
    /// Σg.
    Offset,
    /// Σg·(x - mean) / √(variance + ε).
    Scale,
    /// -inv·Σg (only when the mean is not the batch's own).
    Mean,
    /// -½·scale·(variance + ε)^(-3/2)·Σg·(x - mean).
    Variance,
}

/// A parameter's gradient from the `[2, C]` statistics: inputs `(stats, variance, scale)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchNormParamGrad {
    pub epsilon: f64,
    pub which: BnParam,
}

impl BatchNormParamGrad {
    fn run<T: FloatArray>(&self, ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
        let op = "BatchNormParamGrad";
        let stats = float_input::<T>(inputs, 0, op)?;
        let s = stats.as_slice().ok_or_else(|| {
            KernelError::Shape("BatchNormParamGrad: the statistics are not contiguous".into())
        })?;
        let c = s.len() / 2;
        if stats.shape() != [2, c] {
            return Err(KernelError::Shape(format!(
                "{op}: the statistics have shape {:?}, expected [2, C]",
                stats.shape()
            )));
        }
        let var = channel_data::<T>(inputs, 1, c, op, "the variance")?;
        let scale = channel_data::<T>(inputs, 2, c, op, "the scale")?;
        let eps = T::from_f64(self.epsilon);
        let (s0, s1) = s.split_at(c);
        let mut out = ctx.try_vec(c)?;
        for j in 0..c {
            let r = T::one() / (var[j] + eps).sqrt();
            out.push(match self.which {
                BnParam::Offset => s0[j],
                BnParam::Scale => s1[j] * r,
                BnParam::Mean => -(s0[j] * (r * scale[j])),
                BnParam::Variance => T::from_f64(-0.5) * scale[j] * r * r * r * s1[j],
            });
        }
        Ok(T::wrap(
            ArrayD::from_shape_vec(IxDyn(&[c]), out).map_err(KernelError::from)?,
        ))
    }
}

impl OpDef for BatchNormParamGrad {
    fn type_name(&self) -> &'static str {
        "BatchNormParamGrad"
    }
    fn infer(&self, inputs: &[TensorInfo]) -> InferResult {
        expect_arity(inputs, 3, self.type_name())?;
        same_dtype(inputs)?;
        expect_float(&inputs[0], "the statistics")?;
        let c = inputs[0]
            .shape
            .dims()
            .and_then(|d| d.get(1).copied().flatten());
        expect_channels(&inputs[1], c, "the variance")?;
        expect_channels(&inputs[2], c, "the scale")?;
        Ok(Some(TensorInfo::new(inputs[0].dtype, Shape::new(vec![c]))))
    }
    fn compute(&self, ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
        by_float(
            inputs,
            self.type_name(),
            || self.run::<f32>(ctx, inputs),
            || self.run::<f64>(ctx, inputs),
        )
    }
}

/// The gradient of x: inputs `(g, x, mean, variance, scale, stats)`. With `total`, the derivative
/// through the batch mean and variance too: `inv·(g - Σg/N - (x - mean)·Σg(x - mean)/(N·(var + ε)))`;
/// without, `g·inv`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchNormGradInput {
    pub epsilon: f64,
    pub total: bool,
}

impl BatchNormGradInput {
    fn run_in_place<T: FloatArray>(
        &self,
        ctx: &Context<'_>,
        target: &mut Value,
        others: &[&Value],
    ) -> OpResult<()> {
        let op = "BatchNormGradInput";
        let eps = T::from_f64(self.epsilon);
        let gr = float_target::<T>(target, op)?;
        let (rows, c) = rows_cols(gr.shape());
        let (x, _, cx) = big_data::<T>(others, 0, op)?;
        if cx != c || x.len() != gr.len() {
            return Err(KernelError::Shape(format!(
                "{op}: the gradient has shape {:?}, the input {} values of {cx} channels",
                gr.shape(),
                x.len()
            )));
        }
        let mean = channel_data::<T>(others, 1, c, op, "the mean")?;
        let var = channel_data::<T>(others, 2, c, op, "the variance")?;
        let scale = channel_data::<T>(others, 3, c, op, "the scale")?;
        let stats = float_input::<T>(others, 4, op)?;
        let s = stats
            .as_slice()
            .filter(|s| s.len() == 2 * c)
            .ok_or_else(|| {
                KernelError::InvalidArgument(format!("{op}: the statistics must be [2, {c}]"))
            })?;
        let (s0, s1) = s.split_at(c);
        let n = T::from_f64(rows as f64);
        let total = self.total;
        let data = gr.as_slice_mut().ok_or_else(|| {
            KernelError::Shape("BatchNormGradInput: the gradient is not contiguous".into())
        })?;
        per_rows(
            ctx,
            data,
            c,
            #[inline(always)]
            |first_row, band| {
                column_blocks(
                    c,
                    #[inline(always)]
                    |c0, w| {
                        // dx = k1·g - k2 - k3·(x - mean)
                        let (mut k1, mut k2, mut k3) = (
                            [T::zero(); COLUMN_BLOCK],
                            [T::zero(); COLUMN_BLOCK],
                            [T::zero(); COLUMN_BLOCK],
                        );
                        for j in 0..w {
                            let ch = c0 + j;
                            let r = T::one() / (var[ch] + eps).sqrt();
                            let inv = r * scale[ch];
                            k1[j] = inv;
                            if total {
                                k2[j] = inv * s0[ch] / n;
                                k3[j] = inv * r * r * s1[ch] / n;
                            }
                        }
                        let m = &mean[c0..][..w];
                        for (i, row) in band.chunks_exact_mut(c).enumerate() {
                            let g = &mut row[c0..][..w];
                            if total {
                                let xr = &x[(first_row + i) * c + c0..][..w];
                                for (((((gv, &xv), &mu), &a), &b), &d) in g
                                    .iter_mut()
                                    .zip(xr)
                                    .zip(m)
                                    .zip(&k1[..w])
                                    .zip(&k2[..w])
                                    .zip(&k3[..w])
                                {
                                    *gv = a * *gv - b - d * (xv - mu);
                                }
                            } else {
                                for (gv, &k) in g.iter_mut().zip(&k1[..w]) {
                                    *gv = *gv * k;
                                }
                            }
                        }
                    },
                )
            },
        );
        Ok(())
    }

    fn run<T: FloatArray>(&self, ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
        super::copy_then_in_place::<T>(ctx, inputs, "BatchNormGradInput", |out, others| {
            self.run_in_place::<T>(ctx, out, others)
        })
    }
}

impl OpDef for BatchNormGradInput {
    fn type_name(&self) -> &'static str {
        "BatchNormGradInput"
    }
    fn infer(&self, inputs: &[TensorInfo]) -> InferResult {
        expect_arity(inputs, 6, self.type_name())?;
        infer_channels(
            &inputs[1..5],
            4,
            self.type_name(),
            &["the mean", "the variance", "the scale"],
        )?;
        same_dtype(inputs)?;
        let shape = inputs[0].shape.merge(&inputs[1].shape).ok_or_else(|| {
            InferError::Shape(format!(
                "the gradient {} and the input {} differ in shape",
                inputs[0].shape, inputs[1].shape
            ))
        })?;
        Ok(Some(TensorInfo::new(inputs[0].dtype, shape)))
    }
    over_first_input!();
}
