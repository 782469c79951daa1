//! Weight regularizers (TF1's `l1_regularizer`, `l2_regularizer`, `l1_l2_regularizer`) and the
//! max-norm constraint op.

use crate::clip::clip_by_norm;
use ferroflow_core::{Graph, Operation, Result, Tensor, Variable};

/// A penalty on a weight tensor, added to REGULARIZATION_LOSSES by layers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Regularizer {
    /// `scale · Σ|w|`
    L1(f64),
    /// `scale · Σw²/2` (TF1's `l2_regularizer`, i.e. `scale · l2_loss(w)`).
    L2(f64),
    /// L1 plus L2 with their own scales.
    L1L2(f64, f64),
}

impl Regularizer {
    /// Builds the penalty of `w`.
    pub fn apply(self, g: &Graph, w: Tensor) -> Result<Tensor> {
        let l1 = |s: f64| -> Result<Tensor> {
            g.mul(g.scalar_like(w, s)?, g.reduce_sum(g.abs(w)?, None, false)?)
        };
        let l2 = |s: f64| -> Result<Tensor> { g.mul(g.scalar_like(w, s)?, g.l2_loss(w)?) };
        match self {
            Regularizer::L1(s) => l1(s),
            Regularizer::L2(s) => l2(s),
            Regularizer::L1L2(a, b) => g.add(l1(a)?, l2(b)?),
        }
    }
}

/// The max-norm constraint: an op that clips each row slice of `var` (norm over `axes`, TF's
/// `clip_by_norm(weights, threshold, axes=1)`) and assigns it back. Run it after each training step.
pub fn max_norm(g: &Graph, var: Variable, threshold: f64, axes: &[i64]) -> Result<Operation> {
    let _s = g.name_scope("max_norm")?;
    let clipped = clip_by_norm(g, var.value(), threshold, Some(axes))?;
    Ok(g.assign(var, clipped)?.op())
}
