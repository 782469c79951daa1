//! Fused optimizer updates (TF's `ApplyGradientDescent`, `ApplyMomentum`, `ApplyAdagrad`,
//! `ApplyRMSProp`, `ApplyCenteredRMSProp`, `ApplyAdam`): one in-place pass over a variable and its
//! slots per step. Inputs: the variable and its slots (references, not read), then the gradient and the
//! learning rate. The session runs them after every other op of the run, so the update happens in place
//! once nothing else reads the old value.
//!
//! An update may also take a scalar that multiplies the gradient first (`g·scale`, computed exactly as
//! a separate `Mul` would): the optimizers pass `tf.clip_by_global_norm`'s scale this way, which saves
//! a pass over every gradient.

use super::kernels::Float;
use super::{expect_float, InferError, InferResult, OpDef, OpKind};
use crate::dtype::TensorInfo;
use crate::error::{KernelError, OpResult, Result};
use crate::graph::{Graph, Tensor, Variable};
use ferroflow_cpu::Context;
use serde::{Deserialize, Serialize};

/// The update rule with its hyperparameters (tf1-reference.md §8).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ApplyRule {
    /// `w -= lr·g`
    GradientDescent,
    /// slots `[accum]`: `a = μa + g; w -= lr·a` (Nesterov: `w -= lr·(g + μa)`).
    Momentum { momentum: f64, nesterov: bool },
    /// slots `[accum]`: `acc += g²; w -= lr·g/√acc`.
    Adagrad,
    /// slots `[ms, mom]` or `[ms, mg, mom]` when centered.
    RMSProp {
        decay: f64,
        momentum: f64,
        epsilon: f64,
        centered: bool,
    },
    /// slots `[m, v]`; the learning-rate input is the bias-corrected `lr_t`.
    Adam {
        beta1: f64,
        beta2: f64,
        epsilon: f64,
    },
}

impl ApplyRule {
    /// Number of slot variables the rule updates.
    pub fn slot_count(&self) -> usize {
        match self {
            ApplyRule::GradientDescent => 0,
            ApplyRule::Momentum { .. } | ApplyRule::Adagrad => 1,
            ApplyRule::RMSProp { centered, .. } => 2 + usize::from(*centered),
            ApplyRule::Adam { .. } => 2,
        }
    }

    /// Applies the rule in place to `w` and its slots with gradient `g·scale` (each element multiplied
    /// as it is read; `scale` 1 leaves it unchanged) and learning rate `lr`; large updates are split
    /// into halves on the session's threads (elementwise, so the result does not depend on the split).
    pub fn apply<T: Float>(
        &self,
        ctx: &Context<'_>,
        w: &mut [T],
        slots: &mut [&mut [T]],
        g: &[T],
        lr: T,
        scale: T,
    ) -> OpResult<()> {
        let n = w.len();
        if g.len() != n || slots.iter().any(|s| s.len() != n) || slots.len() != self.slot_count() {
            return Err(KernelError::Shape(format!(
                "update of {} elements with a gradient of {} elements",
                n,
                g.len()
            )));
        }
        let threads = ctx.threads();
        self.apply_split(ctx, w, slots, g, (lr, scale), threads)
    }

    /// [`Self::apply`] on `parts` threads: halves run under `rayon::join` while each is large.
    fn apply_split<T: Float>(
        &self,
        ctx: &Context<'_>,
        w: &mut [T],
        slots: &mut [&mut [T]],
        g: &[T],
        lr_scale: (T, T),
        parts: usize,
    ) -> OpResult<()> {
        let n = w.len();
        if parts < 2 || n < ctx.config().parallel_min_elements / 2 {
            return ctx.vectorized(
                #[inline(always)]
                || self.apply_serial(w, slots, g, lr_scale),
            );
        }
        let mid = n / 2;
        let (w1, w2) = w.split_at_mut(mid);
        let (g1, g2) = g.split_at(mid);
        let mut s1: smallvec::SmallVec<[&mut [T]; 4]> = smallvec::SmallVec::new();
        let mut s2: smallvec::SmallVec<[&mut [T]; 4]> = smallvec::SmallVec::new();
        for s in slots.iter_mut() {
            let (a, b) = s.split_at_mut(mid);
            s1.push(a);
            s2.push(b);
        }
        let half = parts / 2;
        let (r1, r2) = rayon::join(
            || self.apply_split(ctx, w1, &mut s1, g1, lr_scale, half),
            || self.apply_split(ctx, w2, &mut s2, g2, lr_scale, parts - half),
        );
        r1.and(r2)
    }

    /// One pass over the elements (inlined into [`super::simd::vectorized`]; slices are cut to `n`
    /// first so that the indexed loops carry no bounds checks and vectorize).
    #[inline(always)]
    fn apply_serial<T: Float>(
        &self,
        w: &mut [T],
        slots: &mut [&mut [T]],
        g: &[T],
        (lr, scale): (T, T),
    ) -> OpResult<()> {
        let n = w.len();
        let c = T::from_f64;
        match (self, slots) {
            (ApplyRule::GradientDescent, []) => {
                for (w, &g) in w.iter_mut().zip(g) {
                    *w = *w - lr * (g * scale);
                }
            }
            (ApplyRule::Momentum { momentum, nesterov }, [a]) => {
                let mu = c(*momentum);
                let it = w.iter_mut().zip(a.iter_mut()).zip(g);
                if *nesterov {
                    for ((w, a), &g) in it {
                        let g = g * scale;
                        *a = mu * *a + g;
                        *w = *w - lr * (g + mu * *a);
                    }
                } else {
                    for ((w, a), &g) in it {
                        *a = mu * *a + g * scale;
                        *w = *w - lr * *a;
                    }
                }
            }
            (ApplyRule::Adagrad, [acc]) => {
                for ((w, acc), &g) in w.iter_mut().zip(acc.iter_mut()).zip(g) {
                    let g = g * scale;
                    *acc = *acc + g * g;
                    *w = *w - lr * g / acc.sqrt();
                }
            }
            (
                ApplyRule::RMSProp {
                    decay,
                    momentum,
                    epsilon,
                    centered: false,
                },
                [ms, mom],
            ) => {
                let (rho, mu, eps) = (c(*decay), c(*momentum), c(*epsilon));
                let (ms, mom, g) = (&mut ms[..n], &mut mom[..n], &g[..n]);
                for i in 0..n {
                    let gi = g[i] * scale;
                    ms[i] = rho * ms[i] + (T::one() - rho) * gi * gi;
                    mom[i] = mu * mom[i] + lr * gi / (ms[i] + eps).sqrt();
                    w[i] = w[i] - mom[i];
                }
            }
            (
                ApplyRule::RMSProp {
                    decay,
                    momentum,
                    epsilon,
                    centered: true,
                },
                [ms, mg, mom],
            ) => {
                let (rho, mu, eps) = (c(*decay), c(*momentum), c(*epsilon));
                let (ms, mg, mom, g) = (&mut ms[..n], &mut mg[..n], &mut mom[..n], &g[..n]);
                for i in 0..n {
                    let gi = g[i] * scale;
                    ms[i] = rho * ms[i] + (T::one() - rho) * gi * gi;
                    mg[i] = rho * mg[i] + (T::one() - rho) * gi;
                    mom[i] = mu * mom[i] + lr * gi / (ms[i] - mg[i] * mg[i] + eps).sqrt();
                    w[i] = w[i] - mom[i];
                }
            }
            (
                ApplyRule::Adam {
                    beta1,
                    beta2,
                    epsilon,
                },
                [m, v],
            ) => {
                let (b1, b2, eps) = (c(*beta1), c(*beta2), c(*epsilon));
                let (m, v, g) = (&mut m[..n], &mut v[..n], &g[..n]);
                for i in 0..n {
                    let gi = g[i] * scale;
                    m[i] = b1 * m[i] + (T::one() - b1) * gi;
                    v[i] = b2 * v[i] + (T::one() - b2) * gi * gi;
                    w[i] = w[i] - lr * m[i] / (v[i].sqrt() + eps);
                }
            }
            _ => {
                return Err(KernelError::InvalidArgument(
                    "slot count does not match the rule".into(),
                ))
            }
        }
        Ok(())
    }
}

/// The fused update op. Inputs: `[var, slots..., grad, lr]`, and a scalar `scale` of the gradient
/// after them when `scaled`; the output is the variable's new value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApplyUpdate {
    pub rule: ApplyRule,
    /// Whether the gradient is multiplied by a trailing scalar input first.
    #[serde(default)]
    pub scaled: bool,
}

impl OpDef for ApplyUpdate {
    fn type_name(&self) -> &'static str {
        match &self.rule {
            ApplyRule::GradientDescent => "ApplyGradientDescent",
            ApplyRule::Momentum { .. } => "ApplyMomentum",
            ApplyRule::Adagrad => "ApplyAdagrad",
            ApplyRule::RMSProp {
                centered: false, ..
            } => "ApplyRMSProp",
            ApplyRule::RMSProp { centered: true, .. } => "ApplyCenteredRMSProp",
            ApplyRule::Adam { .. } => "ApplyAdam",
        }
    }
    fn infer(&self, inputs: &[TensorInfo]) -> InferResult {
        let k = self.rule.slot_count();
        super::expect_arity(inputs, k + 3 + usize::from(self.scaled), self.type_name())?;
        let var = &inputs[0];
        expect_float(var, "the variable")?;
        for t in &inputs[1..=k + 1] {
            if t.dtype != var.dtype || !t.shape.compatible_with(&var.shape) {
                return Err(InferError::Shape(format!(
                    "slot or gradient {} {} does not match the variable {} {}",
                    t.dtype, t.shape, var.dtype, var.shape
                )));
            }
        }
        for (t, what) in inputs[k + 2..]
            .iter()
            .zip(["learning rate", "gradient scale"])
        {
            if t.dtype != var.dtype || t.shape.rank().is_some_and(|r| r != 0) {
                return Err(InferError::DType(format!(
                    "the {what} must be a {} scalar, got {} {}",
                    var.dtype, t.dtype, t.shape
                )));
            }
        }
        Ok(Some(var.clone()))
    }
    fn kind(&self) -> OpKind {
        OpKind::Stateful
    }
}

impl Graph {
    /// A fused in-place optimizer update of `var` and its `slots` (see [`ApplyRule`]).
    pub fn apply_update(
        &self,
        rule: ApplyRule,
        var: Variable,
        slots: &[Variable],
        grad: Tensor,
        lr: Tensor,
    ) -> Result<Tensor> {
        self.apply_update_scaled(rule, var, slots, grad, None, lr)
    }

    /// [`Graph::apply_update`] of the gradient `grad·scale` (a scalar `scale`), without a separate
    /// pass that multiplies it (`None`: the plain update).
    pub fn apply_update_scaled(
        &self,
        rule: ApplyRule,
        var: Variable,
        slots: &[Variable],
        grad: Tensor,
        scale: Option<Tensor>,
        lr: Tensor,
    ) -> Result<Tensor> {
        let mut inputs = vec![var.var_tensor()];
        inputs.extend(slots.iter().map(|s| s.var_tensor()));
        inputs.push(grad);
        inputs.push(lr);
        inputs.extend(scale);
        let op = ApplyUpdate {
            rule,
            scaled: scale.is_some(),
        };
        let name = op.type_name();
        self.add_node(op.into(), &inputs, None, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Split updates (halves on two or three threads) equal the serial loop bit for bit, for every rule.
    #[test]
    fn split_updates_equal_the_serial_loop() {
        let n = 300_001;
        let val = |i: usize, k: f32| ((i as f32) * 0.013 + k).sin() * 0.5 + 0.6;
        let rules = [
            ApplyRule::GradientDescent,
            ApplyRule::Momentum {
                momentum: 0.9,
                nesterov: false,
            },
            ApplyRule::Momentum {
                momentum: 0.9,
                nesterov: true,
            },
            ApplyRule::Adagrad,
            ApplyRule::RMSProp {
                decay: 0.9,
                momentum: 0.5,
                epsilon: 1e-7,
                centered: true,
            },
            ApplyRule::Adam {
                beta1: 0.9,
                beta2: 0.999,
                epsilon: 1e-8,
            },
        ];
        for rule in rules {
            let g: Vec<f32> = (0..n).map(|i| val(i, 1.0) - 0.6).collect();
            let run = |parts: usize| {
                let mut w: Vec<f32> = (0..n).map(|i| val(i, 2.0)).collect();
                let mut slots: Vec<Vec<f32>> = (0..rule.slot_count())
                    .map(|k| (0..n).map(|i| val(i, 3.0 + k as f32)).collect())
                    .collect();
                let mut refs: Vec<&mut [f32]> =
                    slots.iter_mut().map(|s| s.as_mut_slice()).collect();
                rule.apply_split(
                    &ferroflow_cpu::Context::serial(),
                    &mut w,
                    &mut refs,
                    &g,
                    (0.01, 0.7),
                    parts,
                )
                .unwrap();
                // Bits, so that NaN (a centered RMSProp of these made-up slots) compares equal.
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
                (bits(&w), slots.iter().map(|s| bits(s)).collect::<Vec<_>>())
            };
            let serial = run(1);
            assert_eq!(run(2), serial, "{rule:?}");
            assert_eq!(run(3), serial, "{rule:?}");
            assert_ne!(
                serial.0[7],
                val(7, 2.0).to_bits(),
                "{rule:?} changed nothing"
            );
        }
    }
}
