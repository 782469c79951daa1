//! The transfer demo's table, its conclusion (worded from the numbers) and its plot.

use super::{Report, Row, Variant};
use crate::demos::mean_std;
use crate::Result;
use std::path::Path;

impl Row {
    /// Test accuracy over the seeds: (mean, std).
    pub fn accuracy(&self) -> (f64, f64) {
        mean_std(
            &self
                .runs
                .iter()
                .map(|r| r.test_accuracy)
                .collect::<Vec<_>>(),
        )
    }
    /// Mean training time per epoch, ms.
    pub fn epoch_ms(&self) -> f64 {
        mean_std(&self.runs.iter().map(|r| r.epoch_ms).collect::<Vec<_>>()).0
    }
    /// Mean one-time cost before the epochs, ms.
    pub fn setup_ms(&self) -> f64 {
        mean_std(&self.runs.iter().map(|r| r.setup_ms).collect::<Vec<_>>()).0
    }
    /// Mean validation accuracy after each epoch.
    pub fn validation_curve(&self) -> Vec<f64> {
        let epochs = self.runs.first().map_or(0, |r| r.validation.len());
        (0..epochs)
            .map(|e| {
                mean_std(
                    &self
                        .runs
                        .iter()
                        .map(|r| r.validation[e])
                        .collect::<Vec<_>>(),
                )
                .0
            })
            .collect()
    }
    /// Mean training time until the best epoch, the one-time cost included, ms.
    pub fn ms_to_best(&self) -> f64 {
        mean_std(
            &self
                .runs
                .iter()
                .map(|r| r.setup_ms + r.best_epoch as f64 * r.epoch_ms)
                .collect::<Vec<_>>(),
        )
        .0
    }
    fn trained_params(&self) -> usize {
        self.runs.first().map_or(0, |r| r.trained_params)
    }
}

impl Report {
    /// The row of a variant.
    pub fn row(&self, v: Variant) -> Option<&Row> {
        self.rows.iter().find(|r| r.variant == v)
    }
}

/// The summary table.
pub fn table(r: &Report) -> String {
    let p = &r.pretrained;
    let seeds = r.rows.first().map_or(0, |row| row.runs.len());
    let mut s = format!(
        "pretrained on classes 0-4: test accuracy {:.2}% (best epoch {} of {}, {:.1}s; {})\n\
         transfer to classes 5-9: {} training, {} validation, {} test images; {} seeds\n\n",
        100.0 * p.test_accuracy,
        p.best_epoch,
        p.epochs_run,
        p.seconds,
        p.checkpoint,
        r.sizes.0,
        r.sizes.1,
        r.sizes.2,
        seeds
    );
    s.push_str(&format!(
        "{:<26} {:>18} {:>11} {:>9} {:>8} {:>12} {:>15}\n",
        "model",
        "test accuracy",
        "best epoch",
        "ms/epoch",
        "once ms",
        "ms to best",
        "trained params"
    ));
    for row in &r.rows {
        let (m, sd) = row.accuracy();
        let best = mean_std(
            &row.runs
                .iter()
                .map(|r| r.best_epoch as f64)
                .collect::<Vec<_>>(),
        )
        .0;
        s.push_str(&format!(
            "{:<26} {:>10.2}% ± {:>4.2} {:>11.1} {:>9.1} {:>8.0} {:>12.0} {:>15}\n",
            row.variant.name(),
            100.0 * m,
            100.0 * sd,
            best,
            row.epoch_ms(),
            row.setup_ms(),
            row.ms_to_best(),
            row.trained_params()
        ));
    }
    s.push_str(&format!(
        "\nhidden1-3 bit-identical to the pretrained weights after every frozen run: {}\n",
        r.frozen_bit_identical
    ));
    s
}

/// How two variants' accuracies compare: the difference in points and whether it exceeds the sum
/// of their standard deviations over the seeds.
fn compare(a: &Row, b: &Row) -> String {
    let ((ma, sa), (mb, sb)) = (a.accuracy(), b.accuracy());
    let d = 100.0 * (ma - mb);
    let word = if d.abs() <= 100.0 * (sa + sb) {
        "within the seeds' spread of"
    } else if d > 0.0 {
        "clearly above"
    } else {
        "clearly below"
    };
    format!(
        "{} ({:.2}%) is {:+.2} points, {word} {} ({:.2}%)",
        a.variant.name(),
        100.0 * ma,
        d,
        b.variant.name(),
        100.0 * mb
    )
}

/// What the numbers show, in sentences derived from them.
pub fn conclusion(r: &Report) -> String {
    let (Some(scratch), Some(frozen), Some(cached), Some(unfrozen), Some(meta)) = (
        r.row(Variant::Scratch),
        r.row(Variant::Frozen),
        r.row(Variant::Cached),
        r.row(Variant::Unfrozen),
        r.row(Variant::MetaGraph),
    ) else {
        return String::new();
    };
    let mut s = String::from("conclusion:\n");
    let ((mf, sf), (ms, ss)) = (frozen.accuracy(), scratch.accuracy());
    s.push_str(if mf - ms > sf + ss {
        "- with this few examples, reusing the pretrained layers beats training from scratch:\n  "
    } else if ms - mf > sf + ss {
        "- the pretrained layers do not make up for the missing examples here; training from scratch is \
         more accurate:\n  "
    } else {
        "- reusing the pretrained layers and training from scratch end up alike:\n  "
    });
    s.push_str(&format!("{}.\n", compare(frozen, scratch)));
    s.push_str(&format!(
        "- the frozen model trains {} of the {} parameters from scratch ({:.0}%), {:.1} vs {:.1} ms an epoch.\n",
        frozen.trained_params(),
        scratch.trained_params(),
        100.0 * frozen.trained_params() as f64 / scratch.trained_params().max(1) as f64,
        frozen.epoch_ms(),
        scratch.epoch_ms()
    ));
    s.push_str(&format!(
        "- time to the best epoch: {:.0} ms from scratch, {:.0} ms frozen, {:.0} ms frozen with the cache.\n",
        scratch.ms_to_best(),
        frozen.ms_to_best(),
        cached.ms_to_best()
    ));
    s.push_str(&format!(
        "- caching hidden3's outputs makes an epoch {:.1}x faster than the frozen model's ({:.1} vs {:.1} ms) \
         for a one-time {:.0} ms; {}.\n",
        frozen.epoch_ms() / cached.epoch_ms().max(1e-9),
        cached.epoch_ms(),
        frozen.epoch_ms(),
        cached.setup_ms(),
        compare(cached, frozen)
    ));
    s.push_str(&format!("- {}.\n", compare(unfrozen, frozen)));
    s.push_str(&format!("- {}.\n", compare(meta, frozen)));
    s
}

/// Plots the mean validation accuracy after each epoch, one line per variant, as SVG.
pub fn plot(r: &Report, path: &Path) -> Result<()> {
    use crate::demos::plot::{line_chart, Axes, Line};
    use plotters::prelude::*;
    let curves: Vec<(Variant, Vec<f64>)> = r
        .rows
        .iter()
        .map(|row| (row.variant, row.validation_curve()))
        .collect();
    let epochs = curves.iter().map(|(_, c)| c.len()).max().unwrap_or(1);
    let lo = curves
        .iter()
        .flat_map(|(_, c)| c.iter().copied())
        .fold(1.0_f64, f64::min);
    let lo = (100.0 * lo / 5.0).floor() * 5.0;
    let colors = [BLACK, BLUE, GREEN, RED, MAGENTA];
    let lines: Vec<Line> = curves
        .iter()
        .zip(colors.iter().cycle())
        .map(|((v, curve), &color)| Line {
            label: v.name().into(),
            points: curve
                .iter()
                .enumerate()
                .map(|(i, a)| (i + 1, 100.0 * a))
                .collect(),
            color,
            // The cached variant repeats the frozen one's numbers: the frozen line is drawn wider
            // so that it shows around the cached one.
            width: if *v == Variant::Frozen { 5 } else { 2 },
        })
        .collect();
    let axes = Axes {
        title: "Classes 5-9 from few examples: validation accuracy (mean over seeds)",
        x: "epoch",
        y: "validation accuracy (%)",
        y_label: &|v| format!("{v:.0}"),
        legend: SeriesLabelPosition::LowerRight,
    };
    line_chart(path, &axes, epochs, lo..100.0, &lines)
}
