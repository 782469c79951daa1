//! Batch normalization (slides 17-19): the same deep net with and without BN, at a normal and a 10×
//! learning rate; epochs to reach a target test accuracy.

use super::{accuracy, feeds_for, progress_with_health, Classifier, MlpSpec};
use crate::Result;
use ferroflow::nn::health::{self, Finding, Monitor, MonitorOptions};
use ferroflow::nn::layers::Activation;
use ferroflow::nn::Optimizer;
use ferroflow::prelude::*;

/// Sizes of a run.
#[derive(Clone, Debug)]
pub struct Config {
    pub layers: usize,
    pub units: usize,
    pub activation: Activation,
    pub learning_rate: f64,
    pub target_accuracy: f64,
    pub max_epochs: usize,
    pub batch_size: usize,
    pub quiet: bool,
    pub seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            layers: 10,
            units: 100,
            activation: Activation::Sigmoid,
            learning_rate: 0.05,
            target_accuracy: 0.9,
            max_epochs: 30,
            batch_size: 32,
            quiet: false,
            seed: 42,
        }
    }
}

/// One run's result.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub batch_norm: bool,
    pub learning_rate: f64,
    /// Test accuracy after each epoch.
    pub accuracy: Vec<f64>,
    /// First epoch (1-based) at which the target was reached.
    pub epochs_to_target: Option<usize>,
    /// The training-health monitor's findings over the epochs (one snapshot per epoch on the whole
    /// training set, taken before the epoch's updates).
    pub findings: Vec<Finding>,
}

/// Trains the net with or without BN at `learning_rate`.
pub fn run(batch_norm: bool, learning_rate: f64, cfg: &Config) -> Result<Outcome> {
    let (train, test) = ferroflow::data::digits_split();
    let spec = MlpSpec {
        hidden: vec![cfg.units; cfg.layers],
        activation: cfg.activation,
        initializer: Initializer::he_normal(),
        batch_norm: batch_norm.then_some(0.9),
    };
    let net = Classifier::new(64, 10, &spec, cfg.seed, None)?;
    let kernels: Vec<Variable> = net
        .g
        .get_collection(keys::TRAINABLE_VARIABLES, Some("hidden[0-9]+/kernel"))?;
    let monitor = Monitor::new(
        &net.g,
        net.loss,
        MonitorOptions {
            variables: Some(kernels),
            ..Default::default()
        },
    )?;
    let train_op = net.train_op(&Optimizer::gradient_descent(learning_rate))?;
    let sess = net.session()?;
    let mut all = feeds_for(net.x, net.y, train.images.clone(), train.labels.clone());
    all.push(feed(net.training, batch_norm));
    let mut snapshots = Vec::new();
    let mut out = Outcome {
        batch_norm,
        learning_rate,
        accuracy: vec![],
        epochs_to_target: None,
        findings: vec![],
    };
    let bar = progress_with_health(
        cfg.max_epochs as u64,
        &format!("BN={batch_norm} lr={learning_rate}"),
        cfg.quiet,
    );
    for epoch in 0..cfg.max_epochs {
        let snap = monitor.measure(&sess, epoch as i64, &all)?;
        bar.set_message(snap.table());
        snapshots.push(snap);
        net.epoch(
            &sess,
            train_op,
            &train,
            cfg.batch_size,
            cfg.seed + epoch as u64,
        )?;
        let acc = accuracy(&sess, net.x, net.logits, &test)?;
        out.accuracy.push(acc);
        bar.inc(1);
        if acc >= cfg.target_accuracy && out.epochs_to_target.is_none() {
            out.epochs_to_target = Some(epoch + 1);
        }
    }
    bar.finish_and_clear();
    out.findings = health::diagnose(&snapshots, &health::Thresholds::default());
    Ok(out)
}

/// The summary table.
pub fn table(outcomes: &[Outcome], cfg: &Config) -> String {
    let mut s = format!(
        "{:<11} {:<6} {:>8} {:>22} {:>16}\n",
        "activation",
        "BN",
        "lr",
        format!("epochs to {:.0}%", 100.0 * cfg.target_accuracy),
        "final accuracy"
    );
    for o in outcomes {
        s.push_str(&format!(
            "{:<11} {:<6} {:>8} {:>22} {:>15.1}%\n",
            format!("{:?}", cfg.activation).to_lowercase(),
            o.batch_norm,
            o.learning_rate,
            o.epochs_to_target
                .map(|e| e.to_string())
                .unwrap_or_else(|| format!("not in {}", cfg.max_epochs)),
            100.0 * o.accuracy.last().copied().unwrap_or(0.0)
        ));
    }
    s
}
