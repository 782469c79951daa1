//! Exploding gradients and gradient clipping (slide 22): a deep ReLU net with oversized weights and
//! plain gradient descent diverges; the same net trained with `clip_by_global_norm`, or with the
//! lecture's `[(clip_by_value(g, -θ, θ), v) for g, v in grads]` loop, trains.

use super::{accuracy, build_mlp, feeds_for, progress, MlpSpec};
use crate::Result;
use ferroflow::nn::health::{self, Finding, Monitor, MonitorOptions};
use ferroflow::nn::layers::Activation;
use ferroflow::nn::{clip_by_global_norm, losses, Optimizer};
use ferroflow::prelude::*;

/// How gradients are treated before the update.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Clipping {
    None,
    /// `clip_by_global_norm(grads, c)`.
    GlobalNorm(f64),
    /// The lecture's loop: `clip_by_value(g, -θ, θ)` for each gradient.
    Value(f64),
}

/// Sizes of a run.
#[derive(Clone, Debug)]
pub struct Config {
    pub layers: usize,
    pub units: usize,
    /// Weight std as a multiple of He's √(2/fan_in): above 1 the forward signal and the gradients grow
    /// geometrically with depth.
    pub init_gain: f64,
    pub learning_rate: f64,
    pub epochs: usize,
    pub batch_size: usize,
    pub quiet: bool,
    pub seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            layers: 10,
            units: 100,
            init_gain: 2.0,
            learning_rate: 0.01,
            epochs: 10,
            batch_size: 32,
            quiet: false,
            seed: 42,
        }
    }
}

/// What one run measured.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub clipping: Clipping,
    /// Training loss on the whole training set after each epoch (NaN or inf once diverged).
    pub losses: Vec<f64>,
    /// The global gradient norm before the first update.
    pub initial_grad_norm: f64,
    pub test_accuracy: f64,
    /// The training-health monitor's findings over the epochs (one snapshot per epoch, on the whole
    /// training set, of the gradients before clipping).
    pub findings: Vec<Finding>,
}

impl Outcome {
    /// True when the loss became NaN or infinite, or ended above where it started.
    pub fn diverged(&self) -> bool {
        self.losses.iter().any(|l| !l.is_finite()) || self.losses.last() > self.losses.first()
    }
}

/// Trains the exploding network with the given clipping.
pub fn run(clipping: Clipping, cfg: &Config) -> Result<Outcome> {
    let (train, test) = ferroflow::data::digits_split();
    let g = Graph::new();
    g.set_random_seed(cfg.seed);
    let x = g.named("X").placeholder(DType::F32, [None, Some(64)])?;
    let y = g.named("y").placeholder(DType::I64, [None])?;
    let init = Initializer::variance_scaling(
        2.0 * cfg.init_gain * cfg.init_gain,
        ferroflow::nn::FanMode::FanIn,
        ferroflow::nn::VsDistribution::TruncatedNormal,
    );
    let spec = MlpSpec {
        hidden: vec![cfg.units; cfg.layers],
        activation: Activation::Relu,
        initializer: init,
        batch_norm: None,
    };
    let (logits, _) = build_mlp(&g, x, &spec, 10, None)?;
    let loss = losses::sparse_softmax_cross_entropy(&g, y, logits)?;
    let opt = Optimizer::gradient_descent(cfg.learning_rate);
    let grads_and_vars = opt.compute_gradients(&g, loss, None)?;
    let grads: Vec<Option<Tensor>> = grads_and_vars.iter().map(|(gr, _)| *gr).collect();
    let vars = grads_and_vars.iter().map(|(_, v)| *v);
    let norm = ferroflow::nn::global_norm(&g, &grads)?;
    let capped: Vec<(Option<Tensor>, Variable)> = match clipping {
        Clipping::None => grads_and_vars.clone(),
        Clipping::GlobalNorm(c) => clip_by_global_norm(&g, &grads, c)?
            .0
            .into_iter()
            .zip(vars)
            .collect(),
        Clipping::Value(t) => grads_and_vars
            .iter()
            .map(|(gr, v)| Ok((gr.map(|gr| g.clip_by_value(gr, -t, t)).transpose()?, *v)))
            .collect::<Result<_>>()?,
    };
    let train_op = opt.apply_gradients(&g, &capped, None)?;
    let monitor = Monitor::new(&g, loss, MonitorOptions::default())?;
    let sess = Session::new(&g);
    sess.run_targets(&[g.global_variables_initializer()?], &[])?;
    let all = feeds_for(x, y, train.images.clone(), train.labels.clone());
    let initial_grad_norm = sess.run_one(norm, &all)?.scalar_value().unwrap_or(f64::NAN);
    let mut out = Outcome {
        clipping,
        losses: vec![],
        initial_grad_norm,
        test_accuracy: 0.0,
        findings: vec![],
    };
    let mut snapshots = vec![monitor.measure(&sess, 0, &all)?];
    let bar = progress(cfg.epochs as u64, &format!("{clipping:?}"), cfg.quiet);
    for epoch in 0..cfg.epochs {
        for (xb, yb) in train.batches(cfg.batch_size, cfg.seed + epoch as u64) {
            sess.run_targets(&[train_op], &feeds_for(x, y, xb, yb))?;
        }
        out.losses
            .push(sess.run_one(loss, &all)?.scalar_value().unwrap_or(f64::NAN));
        snapshots.push(monitor.measure(&sess, epoch as i64 + 1, &all)?);
        bar.inc(1);
    }
    bar.finish_and_clear();
    out.findings = health::diagnose(&snapshots, &health::Thresholds::default());
    out.test_accuracy = accuracy(&sess, x, logits, &test)?;
    Ok(out)
}

/// The summary table.
pub fn table(outcomes: &[Outcome]) -> String {
    let mut s = format!(
        "{:<22} {:>16} {:>14} {:>14} {:>10} {:>14}\n",
        "clipping", "initial ‖g‖", "loss epoch 1", "final loss", "diverged", "test accuracy"
    );
    for o in outcomes {
        s.push_str(&format!(
            "{:<22} {:>16.3e} {:>14.4} {:>14.4} {:>10} {:>13.1}%\n",
            format!("{:?}", o.clipping),
            o.initial_grad_norm,
            o.losses.first().copied().unwrap_or(f64::NAN),
            o.losses.last().copied().unwrap_or(f64::NAN),
            o.diverged(),
            100.0 * o.test_accuracy
        ));
    }
    s
}
