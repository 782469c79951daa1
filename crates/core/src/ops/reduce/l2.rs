//! `L2Loss`: `sum(x²)/2` in fixed blocks, so that its bits do not depend on the thread count.

use crate::dtype::{Shape, TensorInfo};
use crate::error::{OpResult, Result};
use crate::graph::Tensor;
use crate::ops::kernels::{by_float, float_input, FloatArray};
use crate::ops::{expect_arity, expect_float, GradContext, InferResult, OpDef};
use crate::value::Value;
use ferroflow_cpu::Context;
use ndarray::ArrayD;
use serde::{Deserialize, Serialize};

/// `sum(x²) / 2` (TF's `L2Loss`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct L2Loss;

/// Σ f(x) with [`SUM_LANES`] independent partial sums, so the loop vectorizes (a single running sum
/// cannot be reordered by the compiler) and four vector additions are in flight at once (one chain
/// would wait out the adder's latency every 16 values).
///
/// Inputs longer than [`SUM_BLOCK`] are summed block by block (each block as above, then the block
/// totals in order), and from half the elementwise threshold on (32K values by default; see
/// [`super::kernels::parallel_min_elements`]) the blocks split across the session's threads: the
/// order of every addition is fixed by the length alone, so the result does not depend on the
/// thread count.
pub(crate) fn lane_sum<T: FloatArray>(
    ctx: &Context<'_>,
    x: &ArrayD<T>,
    f: impl Fn(T) -> T + Sync,
) -> T {
    let owned;
    let s = match x.as_slice() {
        Some(s) => s,
        None => {
            owned = x.iter().copied().collect::<Vec<T>>();
            &owned
        }
    };
    let mut total = T::zero();
    // Block totals on the stack, SUM_GROUP blocks at a time (no allocation).
    for group in s.chunks(SUM_BLOCK * SUM_GROUP) {
        let mut totals = [T::zero(); SUM_GROUP];
        let blocks = group.len().div_ceil(SUM_BLOCK);
        let threads = ctx.threads();
        if threads > 1 && blocks > 1 && group.len() >= ctx.config().parallel_min_elements / 2 {
            use rayon::prelude::*;
            let per = blocks.div_ceil(threads);
            totals[..blocks]
                .par_chunks_mut(per)
                .zip(group.par_chunks(per * SUM_BLOCK))
                .for_each(|(t, g)| {
                    for (t, b) in t.iter_mut().zip(g.chunks(SUM_BLOCK)) {
                        *t = block_sum(ctx, b, &f);
                    }
                });
        } else {
            for (t, b) in totals.iter_mut().zip(group.chunks(SUM_BLOCK)) {
                *t = block_sum(ctx, b, &f);
            }
        }
        for t in &totals[..blocks] {
            total = total + *t;
        }
    }
    total
}

/// One block of [`lane_sum`]: [`SUM_LANES`] partial sums over fixed-size chunks (the loop over one
/// unrolls completely and the partial sums stay in registers; over slices of a run-time length they
/// were stored and reloaded every chunk), then the rest, then the lanes in order.
fn block_sum<T: FloatArray>(ctx: &Context<'_>, s: &[T], f: &impl Fn(T) -> T) -> T {
    let mut lanes = [T::zero(); SUM_LANES];
    let (chunks, rest) = s.as_chunks::<SUM_LANES>();
    ctx.vectorized(
        #[inline(always)]
        || {
            for c in chunks {
                lanes = std::array::from_fn(|i| lanes[i] + f(c[i]));
            }
        },
    );
    let mut total = rest.iter().fold(T::zero(), |a, &v| a + f(v));
    for l in lanes {
        total = total + l;
    }
    total
}

/// The partial sums of [`lane_sum`].
const SUM_LANES: usize = 64;
/// The block length of [`lane_sum`] (a multiple of [`SUM_LANES`]): shorter inputs are one block.
const SUM_BLOCK: usize = 1 << 13;
/// Blocks whose totals [`lane_sum`] keeps at once.
const SUM_GROUP: usize = 64;

fn l2_typed<T: FloatArray>(ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
    let x = float_input::<T>(inputs, 0, "L2Loss")?;
    let s = lane_sum(
        ctx,
        x,
        #[inline(always)]
        |v| v * v,
    ) / T::from_f64(2.0);
    Ok(T::wrap(crate::value::pooled_scalar(ctx, s)?))
}

impl OpDef for L2Loss {
    fn type_name(&self) -> &'static str {
        "L2Loss"
    }
    fn infer(&self, inputs: &[TensorInfo]) -> InferResult {
        expect_arity(inputs, 1, "L2Loss")?;
        expect_float(&inputs[0], "the input")?;
        Ok(Some(TensorInfo::new(inputs[0].dtype, Shape::scalar())))
    }
    fn compute(&self, ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
        by_float(
            inputs,
            "L2Loss",
            || l2_typed::<f32>(ctx, inputs),
            || l2_typed::<f64>(ctx, inputs),
        )
    }
    fn gradient(&self, ctx: &GradContext<'_>, grad: Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(ctx.graph.mul(ctx.input(0)?, grad)?)])
    }
}
