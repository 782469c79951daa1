//! `MomentsVariance`: the variance half of `tf.nn.moments`, one pass per channel.

use super::*;
use crate::dtype::{Shape, TensorInfo};
use crate::error::{KernelError, OpResult, Result};
use crate::graph::Tensor;
use crate::ops::collective::{CollectiveOp, Reduction};
use crate::ops::kernels::{by_float, fold_columns, FloatArray};
use crate::ops::Op;
use crate::ops::{GradContext, InferResult, OpDef};
use crate::value::Value;
use ferroflow_cpu::Context;
use ndarray::{ArrayD, IxDyn};
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------------------------
// MomentsVariance

/// `Σ_r (x - mean)² / rows` per channel: the variance half of `tf.nn.moments` over the leading axes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MomentsVariance;

fn variance_typed<T: FloatArray>(ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
    let op = "MomentsVariance";
    let (x, rows, c) = big_data::<T>(inputs, 0, op)?;
    let mean = channel_data::<T>(inputs, 1, c, op, "the mean")?;
    let mut out = ctx.try_filled_vec(c, T::zero())?;
    fold_columns(
        ctx,
        x,
        mean,
        &mut out,
        #[inline(always)]
        |v, mu| (v - mu) * (v - mu),
    );
    let n = T::from_f64(rows as f64);
    for a in out.iter_mut() {
        *a = *a / n;
    }
    Ok(T::wrap(
        ArrayD::from_shape_vec(IxDyn(&[c]), out).map_err(KernelError::from)?,
    ))
}

impl OpDef for MomentsVariance {
    fn type_name(&self) -> &'static str {
        "MomentsVariance"
    }
    fn infer(&self, inputs: &[TensorInfo]) -> InferResult {
        let c = infer_channels(inputs, 2, "MomentsVariance", &["the mean"])?;
        Ok(Some(TensorInfo::new(inputs[0].dtype, Shape::new(vec![c]))))
    }
    fn compute(&self, ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
        by_float(
            inputs,
            self.type_name(),
            || variance_typed::<f32>(ctx, inputs),
            || variance_typed::<f64>(ctx, inputs),
        )
    }
    fn gradient(&self, ctx: &GradContext<'_>, grad: Tensor) -> Result<Vec<Option<Tensor>>> {
        // d/dx = 2·(x - mean)·grad / rows; the mean is under stop_gradient, as in tf.nn.moments.
        let g = ctx.graph;
        let (x, mean) = (ctx.input(0)?, ctx.input(1)?);
        let dtype = g.dtype(x)?;
        let rows = g.div(g.cast(g.size(x)?, dtype)?, g.cast(g.size(mean)?, dtype)?)?;
        let scale = g.div(g.mul(g.scalar_like(x, 2.0)?, grad)?, rows)?;
        Ok(vec![Some(g.mul(g.sub(x, mean)?, scale)?), None])
    }
}

impl crate::graph::Graph {
    /// `tf.nn.moments(x, axes, keep_dims)`: the mean and the (biased) variance over `axes`, the
    /// variance computed against `stop_gradient(mean)` as in TF. Names `moments/mean` and
    /// `moments/variance` under the current scope. Over all leading axes without `keep_dims` (the
    /// batch-norm case) the variance is one fused pass (`MomentsVariance`); otherwise TF's composite.
    pub fn moments(&self, x: Tensor, axes: &[i64], keep_dims: bool) -> Result<(Tensor, Tensor)> {
        let _s = self.name_scope("moments")?;
        let rank = self.shape(x)?.rank();
        let leading = rank.is_some_and(|r| {
            r >= 1
                && normalize_axes(&Some(axes.to_vec()), r)
                    .is_ok_and(|a| a.iter().copied().eq(0..r - 1))
        });
        if leading && !keep_dims {
            let mean = self.named("mean").reduce_mean(x, Some(axes), false)?;
            let var = self.add_node(MomentsVariance.into(), &[x, mean], Some("variance"), "")?;
            return Ok((mean, var));
        }
        let mean = self.named("mean").reduce_mean(x, Some(axes), true)?;
        let sq = self.squared_difference(x, self.stop_gradient(mean)?)?;
        let var = self.named("variance").reduce_mean(sq, Some(axes), true)?;
        if keep_dims {
            return Ok((mean, var));
        }
        let squeeze = |t: Tensor| self.squeeze(t, axes);
        Ok((squeeze(mean)?, squeeze(var)?))
    }

    /// The moments over the leading axes of a data-parallel job's global batch, from each rank's
    /// shard of equal size (Horovod's synchronized batch norm; needs `SessionOptions::communicator`):
    /// the mean of the shards' means, and the mean of the shards' variances plus their means' squared
    /// distances from it. `batch_normalization` over them differentiates as over [`Graph::moments`]
    /// (one fused total derivative), its batch sums averaged over the ranks.
    pub fn global_moments(&self, x: Tensor) -> Result<(Tensor, Tensor)> {
        let _s = self.name_scope("global_moments")?;
        let rank = self.shape(x)?.rank().filter(|&r| r >= 1).ok_or_else(|| {
            crate::Error::InvalidArgument {
                node: self.tensor_name(x),
                op: "global_moments".into(),
                message: "the input needs a known rank of at least 1".into(),
            }
        })?;
        let axes: Vec<i64> = (0..rank as i64 - 1).collect();
        let mean = self.named("mean").reduce_mean(x, Some(&axes), false)?;
        let var = self.add_node(MomentsVariance.into(), &[x, mean], Some("variance"), "")?;
        let global_mean = self.all_reduce(mean, Reduction::Mean)?;
        let spread = self.add(var, self.square(self.sub(mean, global_mean)?)?)?;
        Ok((global_mean, self.all_reduce(spread, Reduction::Mean)?))
    }
}

/// True when `mean` and `var` are [`Graph::global_moments`] of `x`.
pub(super) fn is_global_moments(
    g: &Graph,
    mean: Tensor,
    var: Tensor,
    x: Tensor,
    rank: usize,
) -> bool {
    let node = |t: usize| g.node(t).ok();
    let mean_of = |t: Tensor| -> Option<usize> {
        let n = node(t.index())?;
        let Op::Collective(c) = n.op.as_ref() else {
            return None;
        };
        (c.op == CollectiveOp::AllReduce(Reduction::Mean)).then_some(*n.inputs.first()?)
    };
    let typed = |t: usize, ty: &str| node(t).filter(|n| n.op.type_name() == ty).map(|n| n.inputs);
    (|| {
        let local_mean = mean_of(mean)?;
        let spread = mean_of(var)?;
        let [local_var, square] = typed(spread, "AddV2")?[..] else {
            return None;
        };
        let [diff] = typed(square, "Square")?[..] else {
            return None;
        };
        let is_diff = typed(diff, "Sub")? == [local_mean, mean.index()];
        let local_mean_t = Tensor::from_index(local_mean);
        (is_diff
            && super::is_leading_mean(g, local_mean_t, x, rank)
            && super::is_moments_variance(g, Tensor::from_index(local_var), x, local_mean_t))
        .then_some(())
    })()
    .is_some()
}
