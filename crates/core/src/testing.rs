//! Test helpers shipped with the library: a finite-difference gradient checker (central differences
//! in f64) that every op's tests use, and users can use for their own composites.

use crate::error::{Error, Result};
use crate::graph::{Graph, Tensor};
use crate::session::{Session, SessionOptions};
use crate::value::Value;
use rand::{Rng, SeedableRng};

/// How far symbolic gradients are from finite differences.
#[derive(Clone, Debug, PartialEq)]
pub struct GradCheck {
    /// Largest absolute difference over every element of every x.
    pub max_abs_err: f64,
    /// Largest difference relative to max(1, |numeric|).
    pub max_rel_err: f64,
}

/// Compares the symbolic gradient of `sum(y · w)` (w a fixed random weighting of y's shape) with
/// respect to each placeholder in `xs` against central differences with step `eps`.
///
/// `xs` gives each input tensor (usually an f64 placeholder) and the point to check at. Use f64
/// inputs for tight tolerances.
pub fn check_gradients(
    g: &Graph,
    y: Tensor,
    xs: &[(Tensor, Value)],
    eps: f64,
) -> Result<GradCheck> {
    let sess = Session::with_options(
        g,
        SessionOptions {
            optimize: false,
            ..SessionOptions::default()
        },
    );
    let y_val = sess.run_one(y, xs)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let w_data: Vec<f64> = (0..y_val.len()).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let w = Value::from_f64(y_val.shape(), w_data)?.cast(y_val.dtype());
    let w = g.constant(w)?;
    let loss = g.reduce_sum(g.mul(y, w)?, None, false)?;
    let xt: Vec<Tensor> = xs.iter().map(|(t, _)| *t).collect();
    let grads = g.gradients(&[loss], &xt)?;
    let mut report = GradCheck {
        max_abs_err: 0.0,
        max_rel_err: 0.0,
    };
    for (k, ((x, x0), gsym)) in xs.iter().zip(&grads).enumerate() {
        let sym: Vec<f64> = match gsym {
            Some(gt) => sess.run_one(*gt, xs)?.to_f64_vec(),
            None => vec![0.0; x0.len()],
        };
        let base = x0.to_f64_vec();
        for (e, &s) in sym.iter().enumerate() {
            let eval = |delta: f64| -> Result<f64> {
                let mut p = base.clone();
                p[e] += delta;
                let pv = Value::from_f64(x0.shape(), p)?.cast(x0.dtype());
                let mut feeds: Vec<(Tensor, Value)> = xs.to_vec();
                feeds[k] = (*x, pv);
                sess.run_one(loss, &feeds)?
                    .scalar_value()
                    .ok_or_else(|| Error::InvalidArgument {
                        node: sess.graph().op_name(loss.op()),
                        op: "check_gradients".into(),
                        message: "the loss is not a scalar".into(),
                    })
            };
            let num = (eval(eps)? - eval(-eps)?) / (2.0 * eps);
            let abs = (num - s).abs();
            report.max_abs_err = report.max_abs_err.max(abs);
            report.max_rel_err = report.max_rel_err.max(abs / num.abs().max(1.0));
        }
    }
    Ok(report)
}
