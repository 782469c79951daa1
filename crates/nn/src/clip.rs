//! Gradient clipping (TF's `clip_ops`): `clip_by_norm`, `global_norm`, `clip_by_global_norm`.
//! `clip_by_value` is a core op (`Graph::clip_by_value`).

use ferroflow_core::{Graph, Result, Tensor};

/// `tf.clip_by_norm(t, clip_norm, axes)`: `t · c / max(‖t‖₂, c)`, the norm taken over `axes` (all when
/// `None`). Unchanged when the norm is at most c; safe when it is 0; a negative c acts as 0.
pub fn clip_by_norm(g: &Graph, t: Tensor, clip_norm: f64, axes: Option<&[i64]>) -> Result<Tensor> {
    let _s = g.name_scope("clip_by_norm")?;
    let c = g.scalar_like(t, clip_norm.max(0.0))?;
    let l2sum = g.reduce_sum(g.square(t)?, axes, true)?;
    let zero = g.scalar_like(t, 0.0)?;
    let positive = g.greater(l2sum, zero)?;
    let safe = g.select(positive, l2sum, g.ones_like(l2sum)?)?;
    let norm = g.select(positive, g.sqrt(safe)?, l2sum)?;
    g.div(g.mul(t, c)?, g.maximum(norm, c)?)
}

/// `tf.global_norm(ts)`: √(Σ‖tᵢ‖²) over the non-`None` tensors.
pub fn global_norm(g: &Graph, ts: &[Option<Tensor>]) -> Result<Tensor> {
    let _s = g.name_scope("global_norm")?;
    let parts: Vec<Tensor> = ts
        .iter()
        .flatten()
        .map(|&t| g.mul(g.l2_loss(t)?, g.scalar_like(t, 2.0)?))
        .collect::<Result<_>>()?;
    if parts.is_empty() {
        return g.constant(0.0f32);
    }
    let sum = if parts.len() == 1 {
        parts[0]
    } else {
        g.add_n(&parts)?
    };
    g.named("global_norm").sqrt(sum)
}

/// `tf.clip_by_global_norm(t_list, clip_norm)`: returns the clipped list (`None` entries pass through)
/// and the **pre-clip** global norm. Each t becomes `t · c · min(1/gn, 1/c)`; when the norm is inf or
/// NaN every value becomes NaN, as in TF.
pub fn clip_by_global_norm(
    g: &Graph,
    ts: &[Option<Tensor>],
    clip_norm: f64,
) -> Result<(Vec<Option<Tensor>>, Tensor)> {
    let gn = global_norm(g, ts)?;
    let _s = g.name_scope("clip_by_global_norm")?;
    let one = g.scalar_like(gn, 1.0)?;
    let scale = g.mul(
        g.scalar_like(gn, clip_norm)?,
        g.minimum(g.div(one, gn)?, g.scalar_like(gn, 1.0 / clip_norm)?)?,
    )?;
    // is_finite(gn) ⇔ gn - gn == 0.
    let finite = g.equal(g.sub(gn, gn)?, g.scalar_like(gn, 0.0)?)?;
    let scale = g.select(finite, scale, g.scalar_like(gn, f64::NAN)?)?;
    let mut out = Vec::with_capacity(ts.len());
    for t in ts {
        out.push(match t {
            None => None,
            Some(t) => {
                let s = if g.dtype(*t)? == g.dtype(scale)? {
                    scale
                } else {
                    g.cast(scale, g.dtype(*t)?)?
                };
                Some(g.mul(*t, s)?)
            }
        });
    }
    Ok((out, gn))
}
