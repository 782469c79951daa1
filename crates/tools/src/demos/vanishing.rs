//! The lecture's first claim, measured: a deep sigmoid net with N(0, 1) weights has vanishing
//! gradients in its lower layers; Xavier initialization, ReLU/ELU with He initialization, and batch
//! normalization fix it. A training-health monitor (`ferroflow::nn::health`) records per layer and
//! per epoch the gradient norm of each kernel and the activations' mean, std and saturation; its
//! findings name what went wrong; the demo plots gradient norm by layer.

use super::{accuracy, feeds_for, progress_with_health, Classifier, MlpSpec};
use crate::Result;
use ferroflow::io::summary::FileWriter;
use ferroflow::nn::health::{self, Finding, Monitor, MonitorOptions, Snapshot};
use ferroflow::nn::layers::Activation;
use ferroflow::nn::Optimizer;
use ferroflow::prelude::*;
use std::path::{Path, PathBuf};

/// One configuration of the experiment.
#[derive(Clone, Debug)]
pub struct Setup {
    pub name: String,
    pub activation: Activation,
    pub initializer: Initializer,
    pub batch_norm: bool,
}

/// The lecture's four setups: (a) sigmoid + N(0,1), (b) sigmoid + Xavier, (c) ReLU + He and ELU + He,
/// (d) (a) with batch normalization.
pub fn setups() -> Vec<Setup> {
    let s = |name: &str, activation, initializer, batch_norm| Setup {
        name: name.into(),
        activation,
        initializer,
        batch_norm,
    };
    vec![
        s(
            "(a) sigmoid + N(0,1)",
            Activation::Sigmoid,
            Initializer::random_normal(),
            false,
        ),
        s(
            "(b) sigmoid + Xavier",
            Activation::Sigmoid,
            Initializer::glorot_uniform(),
            false,
        ),
        s(
            "(c) ReLU + He",
            Activation::Relu,
            Initializer::he_normal(),
            false,
        ),
        s(
            "(c) ELU + He",
            Activation::Elu,
            Initializer::he_normal(),
            false,
        ),
        s(
            "(d) sigmoid + N(0,1) + BN",
            Activation::Sigmoid,
            Initializer::random_normal(),
            true,
        ),
    ]
}

/// Sizes of a run.
#[derive(Clone, Debug)]
pub struct Config {
    pub layers: usize,
    pub units: usize,
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub quiet: bool,
    pub seed: u64,
    /// Where to write TensorBoard event files, one run per setup (`<logdir>/<setup name>`): the
    /// monitor's scalars and each layer's kernel and activation histograms, per epoch.
    pub logdir: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            layers: 10,
            units: 100,
            epochs: 10,
            batch_size: 32,
            learning_rate: 0.05,
            quiet: false,
            seed: 42,
            logdir: None,
        }
    }
}

/// What one setup measured.
#[derive(Clone, Debug)]
pub struct Trace {
    pub setup: String,
    /// `grad_norms[epoch][layer]`: ‖∂loss/∂kernel‖ of each hidden layer, on the whole training set.
    pub grad_norms: Vec<Vec<f64>>,
    /// `activations[epoch][layer]`: (mean, std) of each hidden layer's output.
    pub activations: Vec<Vec<(f64, f64)>>,
    pub test_accuracy: Vec<f64>,
    /// The monitor's snapshot at the start of each epoch (epoch 0: as initialized).
    pub snapshots: Vec<Snapshot>,
    /// What the monitor finds in the network as initialized (the first snapshot).
    pub findings: Vec<Finding>,
}

/// Trains one setup with plain gradient descent and records its trace.
pub fn run_setup(setup: &Setup, cfg: &Config) -> Result<Trace> {
    let (train, test) = ferroflow::data::digits_split();
    let spec = MlpSpec {
        hidden: vec![cfg.units; cfg.layers],
        activation: setup.activation,
        initializer: setup.initializer.clone(),
        batch_norm: setup.batch_norm.then_some(0.9),
    };
    let net = Classifier::new(64, 10, &spec, cfg.seed, Some("dnn"))?;
    let (g, x, y, training, logits) = (&net.g, net.x, net.y, net.training, net.logits);
    // The hidden layers' kernels: the monitor finds each one's activation in the graph.
    let kernels: Vec<Variable> =
        g.get_collection(keys::TRAINABLE_VARIABLES, Some("hidden[0-9]+/kernel"))?;
    let monitor = Monitor::new(
        g,
        net.loss,
        MonitorOptions {
            variables: Some(kernels),
            ..Default::default()
        },
    )?;
    let train_op = net.train_op(&Optimizer::gradient_descent(cfg.learning_rate))?;
    let sess = net.session()?;
    let mut trace = Trace {
        setup: setup.name.clone(),
        grad_norms: vec![],
        activations: vec![],
        test_accuracy: vec![],
        snapshots: vec![],
        findings: vec![],
    };
    let bar = progress_with_health(cfg.epochs as u64, &setup.name, cfg.quiet);
    let mut all = feeds_for(x, y, train.images.clone(), train.labels.clone());
    all.push(feed(training, setup.batch_norm));
    let mut writer = match &cfg.logdir {
        Some(dir) => Some(FileWriter::new(&dir.join(run_name(&setup.name)), None)?),
        None => None,
    };
    for epoch in 0..cfg.epochs {
        // Measured before the epoch's updates: epoch 0 shows the network as initialized.
        let snap = monitor.measure(&sess, epoch as i64, &all)?;
        trace
            .grad_norms
            .push(snap.layers.iter().map(|l| l.grad_norm).collect());
        trace.activations.push(
            snap.layers
                .iter()
                .map(|l| {
                    l.activation
                        .as_ref()
                        .map_or((f64::NAN, f64::NAN), |a| (a.mean, a.std))
                })
                .collect(),
        );
        bar.set_message(snap.table());
        if let Some(w) = writer.as_mut() {
            for (tag, v) in snap.scalars() {
                w.add_scalar(&tag, v, snap.step)?;
            }
            for (tag, values) in monitor.histograms(&sess, &all)? {
                w.add_histogram(&tag, &values, snap.step)?;
            }
        }
        trace.snapshots.push(snap);
        for (xb, yb) in train.batches(cfg.batch_size, cfg.seed + epoch as u64) {
            let mut f = feeds_for(x, y, xb, yb);
            f.push(feed(training, true));
            sess.run_targets(&[train_op], &f)?;
        }
        trace.test_accuracy.push(accuracy(&sess, x, logits, &test)?);
        bar.inc(1);
    }
    if let Some(w) = writer {
        w.close()?;
    }
    trace.findings = health::diagnose(
        trace.snapshots.get(..1).unwrap_or_default(),
        &health::Thresholds::default(),
    );
    bar.finish_and_clear();
    Ok(trace)
}

/// A setup's name as a folder name: `(a) sigmoid + N(0,1)` → `a_sigmoid_N_0_1`.
pub fn run_name(setup: &str) -> String {
    let mut out = String::new();
    for c in setup.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_end_matches('_').to_string()
}

/// The summary table: per setup, the gradient norm of the lowest and top hidden layers at the start,
/// their ratio, and test accuracy after the last epoch.
pub fn table(traces: &[Trace]) -> String {
    let mut s = format!(
        "{:<28} {:>14} {:>14} {:>12} {:>14}\n",
        "setup", "‖g‖ layer 1", "‖g‖ top layer", "ratio", "test accuracy"
    );
    for t in traces {
        let first = &t.grad_norms[0];
        let (lo, hi) = (first[0], first[first.len() - 1]);
        s.push_str(&format!(
            "{:<28} {:>14.3e} {:>14.3e} {:>12.3e} {:>13.1}%\n",
            t.setup,
            lo,
            hi,
            lo / hi,
            100.0 * t.test_accuracy.last().copied().unwrap_or(0.0)
        ));
    }
    s
}

/// Plots the gradient norm by layer (log scale) at the first epoch, one line per setup, as SVG.
pub fn plot(traces: &[Trace], path: &Path) -> Result<()> {
    use super::plot::{line_chart, Axes, Line};
    use plotters::prelude::*;
    let layers = traces.first().map(|t| t.grad_norms[0].len()).unwrap_or(1);
    let all: Vec<f64> = traces
        .iter()
        .flat_map(|t| t.grad_norms[0].iter().copied())
        .filter(|v| *v > 0.0 && v.is_finite())
        .collect();
    let lo = all.iter().cloned().fold(f64::INFINITY, f64::min).max(1e-30) / 2.0;
    let hi = all.iter().cloned().fold(0.0, f64::max) * 2.0;
    let colors = [RED, BLUE, GREEN, MAGENTA, BLACK];
    let lines: Vec<Line> = traces
        .iter()
        .zip(colors.iter().cycle())
        .map(|(t, &color)| Line {
            label: t.setup.clone(),
            points: t.grad_norms[0]
                .iter()
                .enumerate()
                .map(|(i, v)| (i + 1, v.max(lo)))
                .collect(),
            color,
            width: 2,
        })
        .collect();
    let axes = Axes {
        title: "Gradient norm of each hidden layer's kernel at initialization",
        x: "hidden layer (1 = lowest)",
        y: "‖∂loss/∂W‖",
        y_label: &|v| format!("{v:.0e}"),
        legend: SeriesLabelPosition::MiddleRight,
    };
    line_chart(path, &axes, layers, (lo..hi).log_scale(), &lines)
}
