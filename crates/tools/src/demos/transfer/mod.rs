//! The main demo, the lecture's transfer-learning exercise (Hands-On ML ch. 11, exercises 8-10) on
//! MNIST: pretrain 5 hidden layers of 100 ELU units (He initialization, Adam, early stopping) on digits
//! 0-4 and save them (the first model of [`mnist`], the same code and settings); then learn digits 5-9 from 100 images per class in five ways:
//!
//! - from scratch;
//! - restoring `get_collection(GLOBAL_VARIABLES, "hidden[123]")` and training only
//!   `get_collection(TRAINABLE_VARIABLES, "hidden[45]|outputs")` (hidden1-3 frozen);
//! - the same with hidden3's outputs computed once and fed in place of the images (the lecture's
//!   caching trick: a frozen layer's output never changes);
//! - restoring hidden1-3 and training hidden3 too (the top reused layer unfrozen);
//! - `import_meta_graph` of the saved model and a new head on `dnn/hidden3/Elu:0`, without the code
//!   that built the pretrained graph.
//!
//! Each runs with several seeds (a different sample of the training images and a different
//! initialization each); the test accuracy is taken at the epoch of best validation accuracy.
//! [`report`] turns the runs into the table, the conclusion and the plot.

pub mod report;

use super::mnist;
use super::{accuracy, feeds_for, progress, Classifier};
use crate::{Result, ToolError};
use ferroflow::data::Dataset;
use ferroflow::io::{import_meta_graph, Saver};
use ferroflow::nn::layers::{dense_with, Activation, DenseOptions};
use ferroflow::nn::{losses, Optimizer};
use ferroflow::prelude::*;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where the images come from.
#[derive(Clone, Debug)]
pub enum Source {
    /// The bundled 8x8 digits: small and fast (the tests use it).
    Digits,
    /// A directory with the four MNIST-format IDX files: MNIST (the default, bundled) or
    /// Fashion-MNIST (its classes 0-4 and 5-9 then play the digits' parts).
    Idx(PathBuf),
}

/// Settings of a run.
#[derive(Clone, Debug)]
pub struct Config {
    pub source: Source,
    /// The pretraining on classes 0-4 (network size, optimizer, early stopping, checkpoint folder).
    pub pretrain: mnist::Config,
    /// Training examples per class of 5-9.
    pub per_class: usize,
    /// Validation examples of 5-9 (taken from the training file, apart from the training samples).
    pub validation: usize,
    /// Epochs of each transfer run.
    pub epochs: usize,
    /// Runs per variant, with seeds `pretrain.seed + 1 ..= pretrain.seed + seeds`.
    pub seeds: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub quiet: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            source: Source::Idx(ferroflow::data::bundled_mnist_dir()),
            pretrain: mnist::Config {
                checkpoint_dir: PathBuf::from("target/transfer_learning"),
                ..Default::default()
            },
            per_class: 100,
            validation: 1000,
            epochs: 100,
            seeds: 5,
            batch_size: 50,
            learning_rate: 0.001,
            quiet: false,
        }
    }
}

/// The ways of learning 5-9.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    Scratch,
    Frozen,
    Cached,
    Unfrozen,
    MetaGraph,
}

impl Variant {
    pub const ALL: [Variant; 5] = [
        Variant::Scratch,
        Variant::Frozen,
        Variant::Cached,
        Variant::Unfrozen,
        Variant::MetaGraph,
    ];

    /// The name in the table and the plot.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Scratch => "from scratch",
            Variant::Frozen => "reuse hidden1-3, frozen",
            Variant::Cached => "frozen, hidden3 cached",
            Variant::Unfrozen => "reuse, hidden3 unfrozen",
            Variant::MetaGraph => "import_meta_graph + head",
        }
    }

    /// The regex over trainable variables' names of the variants that restore hidden1-3.
    fn trained_scope(self) -> &'static str {
        match self {
            Variant::Unfrozen => "hidden[345]|outputs",
            _ => "hidden[45]|outputs",
        }
    }
}

/// One transfer run (one variant, one seed).
#[derive(Clone, Debug)]
pub struct Run {
    /// Validation accuracy after each epoch.
    pub validation: Vec<f64>,
    /// The epoch (1-based) of the best validation accuracy, whose weights are tested.
    pub best_epoch: usize,
    pub test_accuracy: f64,
    /// Training time per epoch (the steps only, not the evaluations).
    pub epoch_ms: f64,
    /// Time spent once before the epochs: computing the cached layer's outputs.
    pub setup_ms: f64,
    /// Number of scalars the optimizer updates.
    pub trained_params: usize,
}

/// All runs of a variant.
#[derive(Clone, Debug)]
pub struct Row {
    pub variant: Variant,
    pub runs: Vec<Run>,
}

/// What the demo measured.
#[derive(Clone, Debug)]
pub struct Report {
    pub pretrained: mnist::Outcome,
    /// Sizes of the 5-9 sets: (training, validation, test).
    pub sizes: (usize, usize, usize),
    pub rows: Vec<Row>,
    /// In every frozen run, hidden1-3 end bit-identical to the pretrained values.
    pub frozen_bit_identical: bool,
}

/// The data of the 5-9 task: the pool training samples are drawn from, validation and test.
struct Task {
    pool: Dataset,
    valid: Dataset,
    test: Dataset,
}

/// The tensors a run feeds and fetches: `input` is `X` or, for the cached variant, hidden3.
struct Io {
    input: Tensor,
    y: Tensor,
    logits: Tensor,
}

/// The inputs one run trains and evaluates on (images, or cached hidden3 outputs).
struct Sets<'a> {
    train: &'a Dataset,
    valid: &'a Dataset,
    test: &'a Dataset,
}

fn load(cfg: &Config) -> Result<(Dataset, Dataset)> {
    match &cfg.source {
        Source::Digits => Ok(ferroflow::data::digits_split()),
        Source::Idx(dir) => ferroflow::data::mnist(dir).map_err(|e| ToolError::Data(e.to_string())),
    }
}

/// `per_class` examples of each class, drawn by `seed`.
fn sample_per_class(data: &Dataset, per_class: usize, seed: u64) -> Dataset {
    let mut order: Vec<usize> = (0..data.len()).collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    let mut counts = [0usize; 5];
    let mut idx: Vec<usize> = order
        .into_iter()
        .filter(|&i| {
            let c = data.labels[i] as usize;
            let keep = counts[c] < per_class;
            counts[c] += usize::from(keep);
            keep
        })
        .collect();
    idx.sort_unstable();
    data.select(&idx)
}

/// Runs the whole demo.
pub fn run(cfg: &Config) -> Result<Report> {
    let (train, test) = load(cfg)?;
    let pcfg = mnist::Config {
        quiet: cfg.quiet,
        ..cfg.pretrain.clone()
    };
    let pretrained = mnist::run(false, &mnist::split_0_4(&train, &test, &pcfg), &pcfg)?;
    let high = |d: &Dataset| d.filter_classes(|l| l >= 5, |l| l - 5);
    let all = high(&train);
    let n = all.len();
    let valid_n = cfg.validation.min(n / 4);
    let task = Task {
        pool: all.select(&(0..n - valid_n).collect::<Vec<_>>()),
        valid: all.select(&(n - valid_n..n).collect::<Vec<_>>()),
        test: high(&test),
    };
    let mut rows = Vec::new();
    let mut frozen_bit_identical = true;
    let mut train_n = 0;
    for variant in Variant::ALL {
        let bar = progress((cfg.seeds * cfg.epochs) as u64, variant.name(), cfg.quiet);
        let mut runs = Vec::new();
        for s in 1..=cfg.seeds as u64 {
            let seed = pcfg.seed + s;
            let train = sample_per_class(&task.pool, cfg.per_class, seed);
            train_n = train.len();
            let (run, kept) = run_variant(variant, cfg, &pretrained, &task, train, seed, &bar)?;
            frozen_bit_identical &= kept;
            runs.push(run);
        }
        bar.finish_and_clear();
        rows.push(Row { variant, runs });
    }
    Ok(Report {
        sizes: (train_n, task.valid.len(), task.test.len()),
        pretrained,
        rows,
        frozen_bit_identical,
    })
}

fn io(net: &Classifier, input: Tensor) -> Io {
    Io {
        input,
        y: net.y,
        logits: net.logits,
    }
}

/// One run of a variant; also says whether the layers it keeps frozen stayed bit-identical.
fn run_variant(
    variant: Variant,
    cfg: &Config,
    pretrained: &mnist::Outcome,
    task: &Task,
    train: Dataset,
    seed: u64,
    bar: &indicatif::ProgressBar,
) -> Result<(Run, bool)> {
    let sets = Sets {
        train: &train,
        valid: &task.valid,
        test: &task.test,
    };
    let adam = Optimizer::adam(cfg.learning_rate);
    if variant == Variant::MetaGraph {
        return Ok((meta_graph_run(cfg, pretrained, &sets, seed, bar)?, true));
    }
    let spec = mnist::spec(&cfg.pretrain, false);
    let net = Classifier::new(sets.train.images.ncols(), 5, &spec, seed, Some("dnn"))?;
    let g = &net.g;
    if variant == Variant::Scratch {
        let op = adam.minimize(g, net.loss, None, None)?;
        let sess = net.session()?;
        let trained = g.trainable_variables();
        let run = fit(&sess, op, &io(&net, net.x), &trained, &sets, cfg, seed, bar)?;
        return Ok((run, true));
    }
    // restore_saver = tf.train.Saver(reuse_vars_dict); restore_saver.restore(sess, ...)
    let reuse: Vec<Variable> = g.get_collection(keys::GLOBAL_VARIABLES, Some("hidden[123]"))?;
    let dict: Vec<(String, Variable)> = reuse.iter().map(|v| (v.op_name(g), *v)).collect();
    let restore_saver = Saver::new(g, dict)?;
    let trained: Vec<Variable> =
        g.get_collection(keys::TRAINABLE_VARIABLES, Some(variant.trained_scope()))?;
    let op = adam.minimize(g, net.loss, Some(&trained), None)?;
    let sess = net.session()?;
    restore_saver.restore(&sess, &pretrained.checkpoint)?;
    let frozen: Vec<Variable> = reuse
        .iter()
        .copied()
        .filter(|v| !trained.contains(v))
        .collect();
    let before: Vec<Value> = frozen
        .iter()
        .map(|v| sess.variable_value(*v))
        .collect::<ferroflow::Result<_>>()?;
    let run = if variant == Variant::Cached {
        // The frozen layers' outputs, computed once; training feeds them in place of the images.
        let t0 = Instant::now();
        let hidden3 = net.hidden[2];
        let cache = |d: &Dataset| -> Result<Dataset> {
            let h = sess.run_one(hidden3, &[feed(net.x, d.images.clone().into_dyn())])?;
            let h = h
                .as_f32()
                .and_then(|a| a.clone().into_dimensionality().ok())
                .ok_or_else(|| ToolError::Data("hidden3 is not a f32 matrix".into()))?;
            Ok(Dataset {
                images: h,
                labels: d.labels.clone(),
            })
        };
        let (train, valid, test) = (cache(sets.train)?, cache(sets.valid)?, cache(sets.test)?);
        let cached = Sets {
            train: &train,
            valid: &valid,
            test: &test,
        };
        let setup_ms = 1e3 * t0.elapsed().as_secs_f64();
        let mut run = fit(
            &sess,
            op,
            &io(&net, hidden3),
            &trained,
            &cached,
            cfg,
            seed,
            bar,
        )?;
        run.setup_ms = setup_ms;
        run
    } else {
        fit(&sess, op, &io(&net, net.x), &trained, &sets, cfg, seed, bar)?
    };
    let kept = frozen.iter().zip(&before).all(|(v, b)| {
        sess.variable_value(*v)
            .map(|now| &now == b)
            .unwrap_or(false)
    });
    Ok((run, kept))
}

/// The model rebuilt from the saved meta-graph alone, with a new hidden4 and output layer on hidden3.
fn meta_graph_run(
    cfg: &Config,
    pretrained: &mnist::Outcome,
    sets: &Sets,
    seed: u64,
    bar: &indicatif::ProgressBar,
) -> Result<Run> {
    let meta = format!("{}.meta", pretrained.checkpoint);
    let (g, saver) = import_meta_graph(Path::new(&meta))?;
    g.set_random_seed(seed);
    let x = g.get_tensor_by_name("X:0")?;
    let y = g.get_tensor_by_name("y:0")?;
    let hidden3 = g.get_tensor_by_name("dnn/hidden3/Elu:0")?;
    let logits = {
        let _s = g.name_scope("new")?;
        let opts = |name: &str, activation: Option<Activation>| DenseOptions {
            activation,
            kernel_initializer: Some(Initializer::he_normal()),
            name: Some(name.into()),
            ..Default::default()
        };
        let units = cfg.pretrain.hidden_units;
        let h4 = dense_with(
            &g,
            hidden3,
            units,
            opts("new_hidden4", Some(Activation::Elu)),
        )?;
        dense_with(&g, h4, 5, opts("new_outputs", None))?
    };
    let loss = losses::sparse_softmax_cross_entropy(&g, y, logits)?;
    let trained: Vec<Variable> = g.get_collection(keys::TRAINABLE_VARIABLES, Some("new_"))?;
    let op = Optimizer::adam(cfg.learning_rate).minimize(&g, loss, Some(&trained), None)?;
    let sess = Session::new(&g);
    sess.run_targets(&[g.global_variables_initializer()?], &[])?;
    saver
        .ok_or_else(|| ToolError::Data(format!("{meta} has no saver")))?
        .restore(&sess, &pretrained.checkpoint)?;
    let io = Io {
        input: x,
        y,
        logits,
    };
    fit(&sess, op, &io, &trained, sets, cfg, seed, bar)
}

/// Trains for `cfg.epochs` epochs, feeding `input` (the images or a cached layer) and the labels;
/// keeps the weights of the best validation accuracy and tests those.
#[allow(clippy::too_many_arguments)]
fn fit(
    sess: &Session,
    op: Operation,
    io: &Io,
    trained: &[Variable],
    sets: &Sets,
    cfg: &Config,
    seed: u64,
    bar: &indicatif::ProgressBar,
) -> Result<Run> {
    let mut validation = Vec::with_capacity(cfg.epochs);
    let (mut best_epoch, mut best_weights) = (0, Vec::new());
    let mut steps = Duration::ZERO;
    for epoch in 1..=cfg.epochs {
        let t0 = Instant::now();
        for (xb, yb) in sets
            .train
            .batches(cfg.batch_size, seed * 1000 + epoch as u64)
        {
            sess.run_targets(&[op], &feeds_for(io.input, io.y, xb, yb))?;
        }
        steps += t0.elapsed();
        let v = accuracy(sess, io.input, io.logits, sets.valid)?;
        if best_epoch == 0 || v > validation[best_epoch - 1] {
            best_epoch = epoch;
            best_weights = trained
                .iter()
                .map(|t| sess.variable_value(*t))
                .collect::<ferroflow::Result<_>>()?;
        }
        validation.push(v);
        bar.inc(1);
    }
    for (t, w) in trained.iter().zip(best_weights) {
        sess.set_variable_value(*t, w)?;
    }
    let trained_params = trained
        .iter()
        .map(|t| sess.variable_value(*t).map(|v| v.len()))
        .sum::<ferroflow::Result<usize>>()?;
    Ok(Run {
        validation,
        best_epoch,
        test_accuracy: accuracy(sess, io.input, io.logits, sets.test)?,
        epoch_ms: 1e3 * steps.as_secs_f64() / cfg.epochs.max(1) as f64,
        setup_ms: 0.0,
        trained_params,
    })
}
