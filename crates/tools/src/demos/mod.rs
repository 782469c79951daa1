//! The lecture's experiments as library code: the examples are thin wrappers around these, and the
//! integration tests run small, fast configurations of the same code.

pub mod batch_norm;
pub mod clipping;
pub mod cnn;
pub mod mnist;
pub mod plot;
pub mod transfer;
pub mod vanishing;

use crate::{Result, ToolError};
use ferroflow::data::Dataset;
use ferroflow::nn::layers::{dense_with, Activation, DenseOptions};
use ferroflow::nn::{batch_normalization, BatchNormOptions, Training};
use ferroflow::prelude::*;
use std::time::Duration;

/// How each hidden layer of an MLP is built.
#[derive(Clone, Debug)]
pub struct MlpSpec {
    pub hidden: Vec<usize>,
    pub activation: Activation,
    pub initializer: Initializer,
    /// Batch normalization before each activation (the dense layer then has no bias).
    pub batch_norm: Option<f64>,
}

/// Builds `hidden1..hiddenN` and `outputs` (TF1 names) on `x`; returns (logits, hidden outputs).
pub fn build_mlp(
    g: &Graph,
    x: Tensor,
    spec: &MlpSpec,
    classes: usize,
    training: Option<Tensor>,
) -> Result<(Tensor, Vec<Tensor>)> {
    let mut h = x;
    let mut hidden = Vec::new();
    for (i, &units) in spec.hidden.iter().enumerate() {
        let name = format!("hidden{}", i + 1);
        h = match spec.batch_norm {
            None => dense_with(
                g,
                h,
                units,
                DenseOptions {
                    activation: Some(spec.activation),
                    kernel_initializer: Some(spec.initializer.clone()),
                    name: Some(name),
                    ..Default::default()
                },
            )?,
            Some(momentum) => {
                let z = dense_with(
                    g,
                    h,
                    units,
                    DenseOptions {
                        use_bias: false,
                        kernel_initializer: Some(spec.initializer.clone()),
                        name: Some(name.clone()),
                        ..Default::default()
                    },
                )?;
                let t: Training = training
                    .map(Training::Tensor)
                    .unwrap_or(Training::Bool(true));
                let bn = batch_normalization(
                    g,
                    z,
                    t,
                    BatchNormOptions {
                        momentum,
                        name: Some(format!("{name}_bn")),
                        ..Default::default()
                    },
                )?;
                g.unary_op(spec.activation, bn)?
            }
        };
        hidden.push(h);
    }
    let logits = dense_with(
        g,
        h,
        classes,
        DenseOptions {
            name: Some("outputs".into()),
            ..Default::default()
        },
    )?;
    Ok((logits, hidden))
}

/// A classifier graph as the demos build it: `X` `[None, features]`, integer labels `y`, a `training`
/// flag that is false unless fed, an MLP under an optional name scope, and the mean cross-entropy.
pub struct Classifier {
    pub g: Graph,
    pub x: Tensor,
    pub y: Tensor,
    pub training: Tensor,
    pub logits: Tensor,
    pub hidden: Vec<Tensor>,
    pub loss: Tensor,
}

impl Classifier {
    /// Builds the graph with graph seed `seed`.
    pub fn new(
        features: usize,
        classes: usize,
        spec: &MlpSpec,
        seed: u64,
        scope: Option<&str>,
    ) -> Result<Self> {
        let g = Graph::new();
        g.set_random_seed(seed);
        let x = g
            .named("X")
            .placeholder(DType::F32, [None, Some(features)])?;
        let y = g.named("y").placeholder(DType::I64, [None])?;
        let training = g
            .named("training")
            .placeholder_with_default(g.constant(false)?, Shape::scalar())?;
        let (logits, hidden) = {
            let _s = scope.map(|s| g.name_scope(s)).transpose()?;
            build_mlp(&g, x, spec, classes, Some(training))?
        };
        let loss = ferroflow::nn::losses::sparse_softmax_cross_entropy(&g, y, logits)?;
        Ok(Classifier {
            g,
            x,
            y,
            training,
            logits,
            hidden,
            loss,
        })
    }

    /// `opt.minimize(loss)` behind `control_dependencies(UPDATE_OPS)`, so batch norm's moving averages
    /// update with every step.
    pub fn train_op(&self, opt: &ferroflow::nn::Optimizer) -> Result<Operation> {
        let updates: Vec<Operation> = self.g.get_collection(keys::UPDATE_OPS, None)?;
        let _c = self.g.control_dependencies(&updates)?;
        Ok(opt.minimize(&self.g, self.loss, None, None)?)
    }

    /// A session with every variable initialized.
    pub fn session(&self) -> Result<Session> {
        let sess = Session::new(&self.g);
        sess.run_targets(&[self.g.global_variables_initializer()?], &[])?;
        Ok(sess)
    }

    /// One epoch of `train_op` over shuffled batches, with `training` fed true.
    pub fn epoch(
        &self,
        sess: &Session,
        train_op: Operation,
        data: &Dataset,
        batch_size: usize,
        seed: u64,
    ) -> Result<()> {
        for (xb, yb) in data.batches(batch_size, seed) {
            let mut f = feeds_for(self.x, self.y, xb, yb);
            f.push(feed(self.training, true));
            sess.run_targets(&[train_op], &f)?;
        }
        Ok(())
    }
}

/// A training set split for early stopping: its last `validation` examples (at most a fifth) for
/// validation, the rest, capped at `limit` examples, for training. Returns (train, validation).
pub fn hold_out(train: &Dataset, validation: usize, limit: Option<usize>) -> (Dataset, Dataset) {
    let n = train.len();
    let valid_n = validation.min(n / 5);
    let mut tr = train.select(&(0..n - valid_n).collect::<Vec<_>>());
    if let Some(l) = limit {
        tr = tr.take(l);
    }
    (tr, train.select(&(n - valid_n..n).collect::<Vec<_>>()))
}

/// Feeds for a data set: images as `[n, features]` f32 and labels as i64.
pub fn feeds_for(
    x: Tensor,
    y: Tensor,
    images: ndarray::Array2<f32>,
    labels: ndarray::Array1<i64>,
) -> Vec<(Tensor, Value)> {
    vec![feed(x, images.into_dyn()), feed(y, labels.into_dyn())]
}

/// Accuracy of `logits` on a whole data set.
pub fn accuracy(sess: &Session, x: Tensor, logits: Tensor, data: &Dataset) -> Result<f64> {
    let out = sess.run_one(logits, &[feed(x, data.images.clone().into_dyn())])?;
    let l = out
        .as_f32()
        .ok_or_else(|| ToolError::Data("logits are not f32".into()))?;
    let mut correct = 0usize;
    for (row, &label) in l.outer_iter().zip(data.labels.iter()) {
        let mut best = 0;
        for (j, v) in row.iter().enumerate() {
            if *v > row[best] {
                best = j;
            }
        }
        correct += usize::from(best as i64 == label);
    }
    Ok(correct as f64 / data.len().max(1) as f64)
}

/// A progress bar for `n` epochs (hidden when `quiet`).
pub fn progress(n: u64, label: &str, quiet: bool) -> indicatif::ProgressBar {
    styled_bar(
        n,
        label,
        quiet,
        "{prefix:>28} [{bar:30}] {pos}/{len} epochs {msg}",
    )
}

/// A progress bar for `n` epochs with the training-health table below it, refreshed with
/// `bar.set_message(snapshot.table())` (hidden when `quiet`).
pub fn progress_with_health(n: u64, label: &str, quiet: bool) -> indicatif::ProgressBar {
    styled_bar(
        n,
        label,
        quiet,
        "{prefix:>28} [{bar:30}] {pos}/{len} epochs\n{msg}",
    )
}

fn styled_bar(n: u64, label: &str, quiet: bool, template: &str) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(n);
    bar.set_style(
        indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(label.to_string());
    bar
}

/// Formats a duration in seconds with two decimals.
pub fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

/// The training-health findings of a run, one line each ("none" when there are none).
pub fn findings_text(label: &str, findings: &[ferroflow::nn::health::Finding]) -> String {
    if findings.is_empty() {
        return format!("{label}: no findings\n");
    }
    findings.iter().map(|f| format!("{label}: {f}\n")).collect()
}

/// Mean and sample standard deviation (0 for fewer than two values).
pub fn mean_std(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    if xs.is_empty() {
        return (f64::NAN, 0.0);
    }
    let mean = xs.iter().sum::<f64>() / n;
    if xs.len() < 2 {
        return (mean, 0.0);
    }
    let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

#[cfg(test)]
mod tests {
    use super::mean_std;

    #[test]
    fn mean_and_sample_std() {
        // 1, 2, 3, 4: mean 2.5; squared deviations 2.25+0.25+0.25+2.25 = 5; 5/3 → std 1.2910.
        let (m, s) = mean_std(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(m, 2.5);
        assert!((s - (5.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(mean_std(&[7.0]), (7.0, 0.0));
    }
}
