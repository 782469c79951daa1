//! The next chapter's network: the classic TF1 MNIST CNN (conv 32 3×3 ReLU SAME → conv 64 3×3
//! stride 2 ReLU SAME → max pool 2 → flatten → dense 64 ReLU → dropout 0.5 → 10 logits, Adam) on
//! the bundled MNIST, over several seeds: the validation accuracy after each epoch, the test
//! accuracy of the last epoch, and a checkpoint of each run.

use super::plot::{line_chart, Axes, Line};
use super::{accuracy, feeds_for, hold_out, mean_std, progress};
use crate::{Result, ToolError};
use ferroflow::core::ops::conv::Padding;
use ferroflow::data::Dataset;
use ferroflow::io::summary::FileWriter;
use ferroflow::io::{Saver, VarList};
use ferroflow::nn::layers::{dense_with, dropout, Activation, DenseOptions, Training};
use ferroflow::nn::{conv2d_with, flatten, max_pooling2d, Conv2dOptions, Optimizer};
use ferroflow::prelude::*;
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Settings of a run.
#[derive(Clone, Debug)]
pub struct Config {
    /// Directory with the four MNIST-format IDX files.
    pub data_dir: PathBuf,
    pub epochs: usize,
    pub batch_size: usize,
    /// Adam's learning rate at the start, multiplied by `decay_per_epoch` each epoch
    /// (`tf.train.exponential_decay` over the global step).
    pub learning_rate: f64,
    pub decay_per_epoch: f64,
    /// The last this many training images are the validation set.
    pub validation: usize,
    /// Use only this many training images (all when `None`), for quick runs.
    pub train_limit: Option<usize>,
    /// Checkpoints go to `<out_dir>/seed-<seed>/cnn.ckpt`.
    pub out_dir: PathBuf,
    pub quiet: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: ferroflow::data::bundled_mnist_dir(),
            epochs: 14,
            batch_size: 32,
            learning_rate: 1e-3,
            decay_per_epoch: 0.8,
            validation: 5000,
            train_limit: None,
            out_dir: PathBuf::from("target/mnist_cnn"),
            quiet: false,
        }
    }
}

/// What one run measured.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub seed: u64,
    /// Validation accuracy after each epoch.
    pub validation_accuracy: Vec<f64>,
    pub test_accuracy: f64,
    pub seconds: f64,
    pub checkpoint: String,
    /// The TensorBoard event file: the validation accuracy per epoch, and the first layer's
    /// filters as an image.
    pub events: PathBuf,
}

/// The CNN's graph: `X` `[None, 784]`, labels `y`, a `training` flag (false unless fed) for the
/// dropout, the logits and the mean cross-entropy.
pub struct Cnn {
    pub g: Graph,
    pub x: Tensor,
    pub y: Tensor,
    pub training: Tensor,
    pub logits: Tensor,
    pub loss: Tensor,
}

impl Cnn {
    /// Builds the network with graph seed `seed`, as the TF1 code does with `tf.layers`.
    pub fn new(seed: u64) -> Result<Cnn> {
        let g = Graph::new();
        g.set_random_seed(seed);
        let x = g.named("X").placeholder(DType::F32, [None, Some(784)])?;
        let y = g.named("y").placeholder(DType::I64, [None])?;
        let training = g
            .named("training")
            .placeholder_with_default(g.constant(false)?, Shape::scalar())?;
        let logits = logits(&g, x, training, None)?;
        let loss = ferroflow::nn::losses::sparse_softmax_cross_entropy(&g, y, logits)?;
        Ok(Cnn {
            g,
            x,
            y,
            training,
            logits,
            loss,
        })
    }
}

/// The network on `x` (`[None, 784]`, seen as 28×28×1 images), under tf.layers' names: its
/// logits. Every kernel starts from `kernel_initializer` (`None`: glorot uniform, tf.layers'
/// default), biases at zero; the dropout is active when `training` says so.
pub fn logits(
    g: &Graph,
    x: Tensor,
    training: impl Into<Training>,
    kernel_initializer: Option<Initializer>,
) -> Result<Tensor> {
    let conv = |h: Tensor, filters: usize, stride: usize, name: &str| {
        let options = Conv2dOptions {
            strides: [stride, stride],
            padding: Padding::Same,
            activation: Some(Activation::Relu),
            kernel_initializer: kernel_initializer.clone(),
            name: Some(name.into()),
            ..Default::default()
        };
        conv2d_with(g, h, filters, [3, 3], options)
    };
    let dense = |h: Tensor, units: usize, activation: Option<Activation>, name: &str| {
        let options = DenseOptions {
            activation,
            kernel_initializer: kernel_initializer.clone(),
            name: Some(name.into()),
            ..Default::default()
        };
        dense_with(g, h, units, options)
    };
    let images = g.reshape(x, &[-1, 28, 28, 1])?;
    let c1 = conv(images, 32, 1, "conv2d")?;
    let c2 = conv(c1, 64, 2, "conv2d_1")?;
    let pooled = max_pooling2d(g, c2, [2, 2], [2, 2], "valid", None)?;
    let h = dense(
        flatten(g, pooled, None)?,
        64,
        Some(Activation::Relu),
        "dense",
    )?;
    let h = dropout(g, h, 0.5, training, None)?;
    Ok(dense(h, 10, None, "dense_1")?)
}

/// The bundled (or given) MNIST: (train, validation, test), pixels scaled to [0, 1].
pub fn load(cfg: &Config) -> Result<(Dataset, Dataset, Dataset)> {
    let (train, test) =
        ferroflow::data::mnist(&cfg.data_dir).map_err(|e| ToolError::Data(e.to_string()))?;
    let (train, valid) = hold_out(&train, cfg.validation, cfg.train_limit);
    Ok((train, valid, test))
}

/// Trains one CNN with seed `seed` for `cfg.epochs` epochs and saves it.
pub fn run(seed: u64, data: &(Dataset, Dataset, Dataset), cfg: &Config) -> Result<Outcome> {
    let (train, valid, test) = data;
    let t0 = Instant::now();
    let net = Cnn::new(seed)?;
    let g = &net.g;
    let global_step = ferroflow::nn::get_or_create_global_step(g)?;
    let steps_per_epoch = train.len().div_ceil(cfg.batch_size.max(1)) as f64;
    let lr = ferroflow::nn::schedules::exponential_decay(
        g,
        cfg.learning_rate,
        global_step,
        steps_per_epoch,
        cfg.decay_per_epoch,
        false,
    )?;
    let train_op = Optimizer::adam(lr).minimize(g, net.loss, None, Some(global_step))?;
    let sess = Session::new(g);
    sess.run_targets(&[g.global_variables_initializer()?], &[])?;
    let dir = cfg.out_dir.join(format!("seed-{seed}"));
    let mut writer = FileWriter::new(&dir.join("logs"), Some(g))?;
    let bar = progress(cfg.epochs as u64, &format!("CNN, seed {seed}"), cfg.quiet);
    let mut validation_accuracy = Vec::new();
    for epoch in 1..=cfg.epochs {
        for (xb, yb) in train.batches(cfg.batch_size, seed * 1000 + epoch as u64) {
            let mut f = feeds_for(net.x, net.y, xb, yb);
            f.push(feed(net.training, true));
            sess.run_targets(&[train_op], &f)?;
        }
        let v = accuracy(&sess, net.x, net.logits, valid)?;
        validation_accuracy.push(v);
        writer.add_scalar("validation_accuracy", v, epoch as i64)?;
        bar.set_message(format!("validation accuracy {:.2}%", 100.0 * v));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let kernel: Vec<Variable> = g.get_collection(keys::GLOBAL_VARIABLES, Some("conv2d/kernel"))?;
    if let Some(k) = kernel.first() {
        let (pixels, height, width) = filter_grid(&sess.variable_value(*k)?)?;
        writer.add_image(
            "conv2d/kernel",
            &pixels,
            height,
            width,
            1,
            cfg.epochs as i64,
        )?;
    }
    let writer_path = writer.path().to_path_buf();
    writer.close()?;
    let prefix = dir.join("cnn.ckpt").to_string_lossy().into_owned();
    let checkpoint = Saver::new(g, VarList::All)?.save(&sess, &prefix, None)?;
    Ok(Outcome {
        seed,
        validation_accuracy,
        test_accuracy: accuracy(&sess, net.x, net.logits, test)?,
        seconds: t0.elapsed().as_secs_f64(),
        checkpoint,
        events: writer_path,
    })
}

/// Pixels each filter tap becomes, on a side.
const TAP_PIXELS: usize = 8;
/// Filters per row of the grid.
const GRID_COLUMNS: usize = 8;

/// The filters of a `[k_h, k_w, 1, n]` kernel as one grey image: a grid of `GRID_COLUMNS` filters
/// per row, each tap `TAP_PIXELS` wide, 2-pixel gaps, the values mapped linearly from the kernel's
/// minimum (black) to its maximum (white). Returns (pixels, height, width).
pub fn filter_grid(kernel: &Value) -> Result<(Vec<u8>, usize, usize)> {
    let &[kh, kw, 1, n] = kernel.shape() else {
        return Err(ToolError::Data(format!(
            "a filter image needs a [k_h, k_w, 1, n] kernel, got shape {:?}",
            kernel.shape()
        )));
    };
    let v = kernel.to_f64_vec();
    let (lo, hi) = v
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    let scale = if hi > lo { 255.0 / (hi - lo) } else { 0.0 };
    let (cell_h, cell_w) = (kh * TAP_PIXELS, kw * TAP_PIXELS);
    let rows = n.div_ceil(GRID_COLUMNS);
    let height = rows * cell_h + rows.saturating_sub(1) * 2;
    let width = GRID_COLUMNS * cell_w + (GRID_COLUMNS - 1) * 2;
    let mut pixels = vec![0u8; height * width];
    for f in 0..n {
        let (top, left) = (
            (f / GRID_COLUMNS) * (cell_h + 2),
            (f % GRID_COLUMNS) * (cell_w + 2),
        );
        for y in 0..cell_h {
            for x in 0..cell_w {
                let tap = v[((y / TAP_PIXELS) * kw + x / TAP_PIXELS) * n + f];
                pixels[(top + y) * width + left + x] = ((tap - lo) * scale).round() as u8;
            }
        }
    }
    Ok((pixels, height, width))
}

/// The summary: each run's test accuracy and time, then their mean ± sample standard deviation.
pub fn table(outcomes: &[Outcome]) -> String {
    let mut s = format!(
        "{:<8} {:>14} {:>16} {:>10}\n",
        "seed", "test accuracy", "last validation", "time"
    );
    for o in outcomes {
        let last = o.validation_accuracy.last().copied().unwrap_or(f64::NAN);
        s.push_str(&format!(
            "{:<8} {:>13.2}% {:>15.2}% {:>9.1}s\n",
            o.seed,
            100.0 * o.test_accuracy,
            100.0 * last,
            o.seconds
        ));
    }
    let (m, sd) = mean_std(&outcomes.iter().map(|o| o.test_accuracy).collect::<Vec<_>>());
    s.push_str(&format!(
        "mean test accuracy {:.2}% ± {:.2} over {} seeds\n",
        100.0 * m,
        100.0 * sd,
        outcomes.len()
    ));
    s
}

/// The validation accuracy per epoch of every run, as an SVG chart at `path`.
pub fn plot(path: &Path, outcomes: &[Outcome]) -> Result<()> {
    let colors = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
    let lines: Vec<Line> = outcomes
        .iter()
        .enumerate()
        .map(|(i, o)| Line {
            label: format!("seed {}", o.seed),
            points: o
                .validation_accuracy
                .iter()
                .enumerate()
                .map(|(e, &a)| (e + 1, 100.0 * a))
                .collect(),
            color: colors[i % colors.len()],
            width: 2,
        })
        .collect();
    let epochs = outcomes
        .iter()
        .map(|o| o.validation_accuracy.len())
        .max()
        .unwrap_or(1);
    let lo = outcomes
        .iter()
        .flat_map(|o| o.validation_accuracy.iter())
        .fold(100.0f64, |a, &v| a.min(100.0 * v));
    let axes = Axes {
        title: "MNIST CNN: validation accuracy per epoch",
        x: "epoch",
        y: "validation accuracy (%)",
        y_label: &|v| format!("{v:.1}"),
        legend: SeriesLabelPosition::LowerRight,
    };
    line_chart(
        path,
        &axes,
        epochs,
        (lo.floor() - 0.5).max(0.0)..100.0,
        &lines,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_become_a_grid_from_black_to_white() {
        // Two 1×1 filters, 0 and 1: two 8×8 cells of a row of eight (width 8·8 + 7·2 = 78), the
        // first black, the second (from x = 10) white, the gap between them black.
        let k = Value::from_f32(&[1, 1, 1, 2], vec![0.0, 1.0]).unwrap();
        let (pixels, h, w) = filter_grid(&k).unwrap();
        assert_eq!((h, w), (8, 78));
        assert_eq!(pixels[0], 0);
        assert_eq!(pixels[8], 0);
        assert_eq!(pixels[10], 255);
        assert_eq!(pixels[7 * 78 + 17], 255);
        assert_eq!(pixels[7 * 78 + 18], 0);
        let rgb = Value::from_f32(&[1, 1, 3, 2], vec![0.0; 6]).unwrap();
        assert!(filter_grid(&rgb).is_err());
    }
}
