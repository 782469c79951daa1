//! Findings: what a window of [`Snapshot`]s says, with the lecture's remedy for each.

use super::Snapshot;
use std::fmt;

/// The thresholds of [`diagnose`] (the defaults are documented in docs/training-health.md).
#[derive(Clone, Debug, PartialEq)]
pub struct Thresholds {
    /// Vanishing: ‖∂L/∂W‖ of the lowest layer over the highest's below this. Default 1e-3.
    pub vanishing_ratio: f64,
    /// Exploding: the global gradient norm grows by this factor within the window. Default 10.
    pub exploding_growth: f64,
    /// ... and reaches at least this norm (growth from a tiny norm to a small one is not an
    /// explosion). Default 1.
    pub exploding_min_norm: f64,
    /// Saturation: more than this fraction of a layer's outputs saturated. Default 0.5.
    pub saturated: f64,
    /// Dead ReLUs: more than this fraction of a layer's units dead. Default 0.5.
    pub dead: f64,
    /// Stalled: ‖ΔW‖/‖W‖ of a step below this (healthy is around 1e-3). Default 1e-5.
    pub stalled_ratio: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            vanishing_ratio: 1e-3,
            exploding_growth: 10.0,
            exploding_min_norm: 1.0,
            saturated: 0.5,
            dead: 0.5,
            stalled_ratio: 1e-5,
        }
    }
}

/// One finding, with the numbers behind it.
#[derive(Clone, Debug, PartialEq)]
pub enum Finding {
    /// The lowest layer's gradient is a tiny fraction of the highest layer's.
    Vanishing {
        lowest: String,
        highest: String,
        ratio: f64,
    },
    /// The global gradient norm grew by `growth` within the window.
    Exploding { growth: f64, global_norm: f64 },
    /// A gradient or weight norm is NaN or infinite in these layers.
    NonFinite { layers: Vec<String> },
    /// Most of a layer's outputs sit at a bound of its activation.
    Saturated { layer: String, fraction: f64 },
    /// Most of a layer's ReLU units output zero for the whole batch.
    DeadRelus { layer: String, fraction: f64 },
    /// A layer's weights barely move.
    Stalled { layer: String, update_ratio: f64 },
}

impl Finding {
    /// The finding's short name.
    pub fn name(&self) -> &'static str {
        match self {
            Finding::Vanishing { .. } => "vanishing",
            Finding::Exploding { .. } => "exploding",
            Finding::NonFinite { .. } => "non-finite",
            Finding::Saturated { .. } => "saturated",
            Finding::DeadRelus { .. } => "dead ReLUs",
            Finding::Stalled { .. } => "stalled",
        }
    }

    /// What the lecture does about it.
    pub fn remedy(&self) -> &'static str {
        match self {
            Finding::Vanishing { .. } => {
                "Xavier/He initialization, a nonsaturating activation (ReLU, ELU), batch normalization"
            }
            Finding::Exploding { .. } | Finding::NonFinite { .. } => {
                "gradient clipping (clip_by_global_norm), a lower learning rate, batch normalization"
            }
            Finding::Saturated { .. } => {
                "Xavier/He initialization instead of N(0,1), a nonsaturating activation, batch normalization"
            }
            Finding::DeadRelus { .. } => {
                "leaky ReLU or ELU, He initialization, a lower learning rate"
            }
            Finding::Stalled { .. } => {
                "a higher learning rate, or unfreeze the layer if it was meant to train; check for vanishing gradients"
            }
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::Vanishing {
                lowest,
                highest,
                ratio,
            } => write!(
                f,
                "vanishing gradients: ‖∂L/∂W‖ of {lowest} is {ratio:.1e} × that of {highest}"
            ),
            Finding::Exploding {
                growth,
                global_norm,
            } => write!(
                f,
                "exploding gradients: the global norm grew {growth:.0}× to {global_norm:.2e}"
            ),
            Finding::NonFinite { layers } => {
                write!(
                    f,
                    "non-finite gradients or weights in {}",
                    layers.join(", ")
                )
            }
            Finding::Saturated { layer, fraction } => write!(
                f,
                "{layer}: {:.0}% of the outputs saturated",
                100.0 * fraction
            ),
            Finding::DeadRelus { layer, fraction } => {
                write!(
                    f,
                    "{layer}: {:.0}% of the ReLU units dead",
                    100.0 * fraction
                )
            }
            Finding::Stalled {
                layer,
                update_ratio,
            } => write!(f, "{layer}: stalled, ‖ΔW‖/‖W‖ = {update_ratio:.1e}"),
        }?;
        write!(f, " → {}", self.remedy())
    }
}

/// The findings of a window of snapshots (oldest first): exploding and non-finite over the whole
/// window, the others on its last snapshot.
pub fn diagnose(window: &[Snapshot], t: &Thresholds) -> Vec<Finding> {
    let mut out = Vec::new();
    let Some(last) = window.last() else {
        return out;
    };
    let mut bad: Vec<String> = Vec::new();
    for l in window.iter().flat_map(|s| &s.layers) {
        let finite = l.grad_norm.is_finite() && l.weight_norm.is_finite();
        if !finite && !bad.contains(&l.name) {
            bad.push(l.name.clone());
        }
    }
    if !bad.is_empty() {
        out.push(Finding::NonFinite { layers: bad });
    }
    let norms: Vec<f64> = window.iter().map(|s| s.global_grad_norm).collect();
    let mut lowest_so_far = f64::INFINITY;
    let mut growth: f64 = 0.0;
    let mut at = 0.0;
    for &n in &norms {
        if n.is_finite() {
            if lowest_so_far > 0.0 && lowest_so_far.is_finite() && n / lowest_so_far > growth {
                growth = n / lowest_so_far;
                at = n;
            }
            lowest_so_far = lowest_so_far.min(n);
        }
    }
    if growth >= t.exploding_growth && at >= t.exploding_min_norm {
        out.push(Finding::Exploding {
            growth,
            global_norm: at,
        });
    }
    if let (Some(lo), Some(hi)) = (last.layers.first(), last.layers.last()) {
        if last.layers.len() > 1 && hi.grad_norm > 0.0 {
            let ratio = lo.grad_norm / hi.grad_norm;
            if ratio < t.vanishing_ratio {
                out.push(Finding::Vanishing {
                    lowest: lo.name.clone(),
                    highest: hi.name.clone(),
                    ratio,
                });
            }
        }
    }
    for l in &last.layers {
        if let Some(a) = &l.activation {
            if let Some(fr) = a.saturated.filter(|&x| x > t.saturated) {
                out.push(Finding::Saturated {
                    layer: l.name.clone(),
                    fraction: fr,
                });
            }
            if let Some(fr) = a.dead.filter(|&x| x > t.dead) {
                out.push(Finding::DeadRelus {
                    layer: l.name.clone(),
                    fraction: fr,
                });
            }
        }
        if let Some(r) = l.update_ratio.filter(|&r| r < t.stalled_ratio) {
            out.push(Finding::Stalled {
                layer: l.name.clone(),
                update_ratio: r,
            });
        }
    }
    out
}
