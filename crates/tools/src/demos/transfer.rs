//! The main demo: transfer learning on the digits. Pretrain a 5-hidden-layer ELU/He net on digits 0-4
//! and save it; for digits 5-9, restore hidden1-3 with a Saver over
//! `get_collection(GLOBAL_VARIABLES, "hidden[123]")`, freeze them (train only
//! `get_collection(TRAINABLE_VARIABLES, "hidden[45]|outputs")`), train the rest on a small training set,
//! and compare with training from scratch on the same set. A second variant reuses the saved model
//! through `import_meta_graph` + `get_tensor_by_name`.

use super::{accuracy, build_mlp, feeds_for, progress, secs, MlpSpec};
use crate::{Result, ToolError};
use ferroflow::data::Dataset;
use ferroflow::io::{import_meta_graph, Saver, VarList};
use ferroflow::nn::layers::{dense_with, Activation, DenseOptions};
use ferroflow::nn::{losses, Optimizer};
use ferroflow::prelude::*;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Sizes of a run (the example uses the defaults; tests use smaller ones).
#[derive(Clone, Debug)]
pub struct Config {
    pub pretrain_epochs: usize,
    pub transfer_epochs: usize,
    /// Training examples per class (digits 5-9) for the transfer task.
    pub per_class: usize,
    pub hidden_units: usize,
    pub batch_size: usize,
    pub dir: PathBuf,
    pub quiet: bool,
    pub seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            pretrain_epochs: 40,
            transfer_epochs: 60,
            per_class: 20,
            hidden_units: 64,
            batch_size: 32,
            dir: PathBuf::from("target/transfer_learning"),
            quiet: false,
            seed: 42,
        }
    }
}

/// One row of the summary table.
#[derive(Clone, Debug)]
pub struct Row {
    pub name: String,
    pub test_accuracy: f64,
    pub seconds: f64,
    pub trained_variables: usize,
}

/// What the demo measured.
#[derive(Clone, Debug)]
pub struct Report {
    pub pretrain_accuracy: f64,
    pub rows: Vec<Row>,
    /// hidden1-3 after transfer training are bit-identical to the pretrained values.
    pub frozen_bit_identical: bool,
    pub checkpoint: String,
}

struct Net {
    g: Graph,
    x: Tensor,
    y: Tensor,
    logits: Tensor,
    loss: Tensor,
}

fn spec(cfg: &Config) -> MlpSpec {
    MlpSpec {
        hidden: vec![cfg.hidden_units; 5],
        activation: Activation::Elu,
        initializer: Initializer::he_normal(),
        batch_norm: None,
    }
}

fn build(cfg: &Config, seed: u64) -> Result<Net> {
    let g = Graph::new();
    g.set_random_seed(seed);
    let x = g.named("X").placeholder(DType::F32, [None, Some(64)])?;
    let y = g.named("y").placeholder(DType::I64, [None])?;
    let logits = {
        let _dnn = g.name_scope("dnn")?;
        build_mlp(&g, x, &spec(cfg), 5, None)?.0
    };
    let loss = losses::sparse_softmax_cross_entropy(&g, y, logits)?;
    Ok(Net {
        g,
        x,
        y,
        logits,
        loss,
    })
}

fn train(
    sess: &Session,
    net: &Net,
    train_op: Operation,
    data: &Dataset,
    epochs: usize,
    cfg: &Config,
    label: &str,
) -> Result<()> {
    let bar = progress(epochs as u64, label, cfg.quiet);
    for epoch in 0..epochs {
        for (xb, yb) in data.batches(cfg.batch_size, cfg.seed + epoch as u64) {
            sess.run_targets(&[train_op], &feeds_for(net.x, net.y, xb, yb))?;
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(())
}

fn small_set(data: &Dataset, per_class: usize) -> Dataset {
    let mut counts = [0usize; 5];
    let idx: Vec<usize> = (0..data.len())
        .filter(|&i| {
            let c = data.labels[i] as usize;
            let keep = counts[c] < per_class;
            counts[c] += usize::from(keep);
            keep
        })
        .collect();
    data.select(&idx)
}

fn io_err(e: ferroflow::io::IoError) -> ToolError {
    ToolError::Io(e)
}

/// Runs the whole demo.
pub fn run(cfg: &Config) -> Result<Report> {
    std::fs::create_dir_all(&cfg.dir).map_err(|e| ToolError::Write {
        path: cfg.dir.display().to_string(),
        message: e.to_string(),
    })?;
    let (train_all, test_all) = ferroflow::data::digits_split();
    let low = |d: &Dataset| d.filter_classes(|l| l < 5, |l| l);
    let high = |d: &Dataset| d.filter_classes(|l| l >= 5, |l| l - 5);
    let (train_low, test_low) = (low(&train_all), low(&test_all));
    let (train_high, test_high) = (small_set(&high(&train_all), cfg.per_class), high(&test_all));

    // 1. Pretrain on digits 0-4 and save.
    let pre = build(cfg, cfg.seed)?;
    let train_op = Optimizer::adam(0.001).minimize(&pre.g, pre.loss, None, None)?;
    let sess = Session::new(&pre.g);
    sess.run_targets(&[pre.g.global_variables_initializer()?], &[])?;
    train(
        &sess,
        &pre,
        train_op,
        &train_low,
        cfg.pretrain_epochs,
        cfg,
        "pretraining on 0-4",
    )?;
    let pretrain_accuracy = accuracy(&sess, pre.x, pre.logits, &test_low)?;
    let prefix = cfg
        .dir
        .join("pretrained.ckpt")
        .to_string_lossy()
        .into_owned();
    let checkpoint = Saver::new(&pre.g, VarList::All)
        .map_err(io_err)?
        .save(&sess, &prefix, None)
        .map_err(io_err)?;
    let pretrained_lower: Vec<Value> = pre
        .g
        .get_collection::<Variable>(keys::GLOBAL_VARIABLES, Some("hidden[123]"))?
        .iter()
        .map(|v| sess.variable_value(*v))
        .collect::<ferroflow::Result<_>>()?;

    let mut rows = Vec::new();
    // 2. From scratch on the small 5-9 set.
    let t0 = Instant::now();
    let scratch = build(cfg, cfg.seed + 1)?;
    let op = Optimizer::adam(0.001).minimize(&scratch.g, scratch.loss, None, None)?;
    let s = Session::new(&scratch.g);
    s.run_targets(&[scratch.g.global_variables_initializer()?], &[])?;
    train(
        &s,
        &scratch,
        op,
        &train_high,
        cfg.transfer_epochs,
        cfg,
        "from scratch on 5-9",
    )?;
    rows.push(Row {
        name: "from scratch".into(),
        test_accuracy: accuracy(&s, scratch.x, scratch.logits, &test_high)?,
        seconds: t0.elapsed().as_secs_f64(),
        trained_variables: scratch.g.trainable_variables().len(),
    });

    // 3. Reuse hidden1-3 (restored, frozen), train hidden4-5 and a new output layer.
    let t0 = Instant::now();
    let tl = build(cfg, cfg.seed + 1)?;
    let g = &tl.g;
    let reuse_vars: Vec<Variable> =
        g.get_collection(keys::GLOBAL_VARIABLES, Some("hidden[123]"))?;
    let reuse_vars_dict: Vec<(String, Variable)> =
        reuse_vars.iter().map(|v| (v.op_name(g), *v)).collect();
    let restore_saver = Saver::new(g, reuse_vars_dict).map_err(io_err)?;
    let train_vars: Vec<Variable> =
        g.get_collection(keys::TRAINABLE_VARIABLES, Some("hidden[45]|outputs"))?;
    let op = Optimizer::adam(0.001).minimize(g, tl.loss, Some(&train_vars), None)?;
    let s = Session::new(g);
    s.run_targets(&[g.global_variables_initializer()?], &[])?;
    restore_saver.restore(&s, &checkpoint).map_err(io_err)?;
    train(
        &s,
        &tl,
        op,
        &train_high,
        cfg.transfer_epochs,
        cfg,
        "reusing hidden1-3 (frozen)",
    )?;
    let frozen_bit_identical = reuse_vars.iter().zip(&pretrained_lower).all(|(v, before)| {
        s.variable_value(*v)
            .map(|now| &now == before)
            .unwrap_or(false)
    });
    rows.push(Row {
        name: "reuse hidden1-3, frozen".into(),
        test_accuracy: accuracy(&s, tl.x, tl.logits, &test_high)?,
        seconds: t0.elapsed().as_secs_f64(),
        trained_variables: train_vars.len(),
    });

    // 4. Reuse through the meta-graph, without the building code: new head on hidden3.
    let t0 = Instant::now();
    let (mg, saver) =
        import_meta_graph(Path::new(&format!("{checkpoint}.meta"))).map_err(io_err)?;
    let x = mg.get_tensor_by_name("X:0")?;
    let y = mg.get_tensor_by_name("y:0")?;
    let hidden3 = mg.get_tensor_by_name("dnn/hidden3/Elu:0")?;
    let new_logits = {
        let _s = mg.name_scope("new")?;
        let opts = |name: &str, act: Option<Activation>| DenseOptions {
            activation: act,
            kernel_initializer: Some(Initializer::he_normal()),
            name: Some(name.into()),
            ..Default::default()
        };
        let h4 = dense_with(
            &mg,
            hidden3,
            cfg.hidden_units,
            opts("new_hidden4", Some(Activation::Elu)),
        )?;
        dense_with(&mg, h4, 5, opts("new_outputs", None))?
    };
    let new_loss = losses::sparse_softmax_cross_entropy(&mg, y, new_logits)?;
    let new_vars: Vec<Variable> = mg.get_collection(keys::TRAINABLE_VARIABLES, Some("new_"))?;
    let op = Optimizer::adam(0.001).minimize(&mg, new_loss, Some(&new_vars), None)?;
    let s = Session::new(&mg);
    s.run_targets(&[mg.global_variables_initializer()?], &[])?;
    saver
        .ok_or_else(|| ToolError::Data("the meta-graph has no saver".into()))?
        .restore(&s, &checkpoint)
        .map_err(io_err)?;
    let net = Net {
        g: mg.clone(),
        x,
        y,
        logits: new_logits,
        loss: new_loss,
    };
    train(
        &s,
        &net,
        op,
        &train_high,
        cfg.transfer_epochs,
        cfg,
        "meta-graph, new head on hidden3",
    )?;
    rows.push(Row {
        name: "import_meta_graph + new head".into(),
        test_accuracy: accuracy(&s, x, new_logits, &test_high)?,
        seconds: t0.elapsed().as_secs_f64(),
        trained_variables: new_vars.len(),
    });
    Ok(Report {
        pretrain_accuracy,
        rows,
        frozen_bit_identical,
        checkpoint,
    })
}

/// The summary table as text.
pub fn table(r: &Report, cfg: &Config) -> String {
    let mut s = format!(
        "pretrained on digits 0-4: test accuracy {:.1}% (checkpoint {})\ntransfer task: digits 5-9 with {} training examples per class\n\n",
        100.0 * r.pretrain_accuracy,
        r.checkpoint,
        cfg.per_class
    );
    s.push_str(&format!(
        "{:<32} {:>14} {:>10} {:>18}\n",
        "model", "test accuracy", "time", "trained variables"
    ));
    for row in &r.rows {
        s.push_str(&format!(
            "{:<32} {:>13.1}% {:>10} {:>18}\n",
            row.name,
            100.0 * row.test_accuracy,
            secs(std::time::Duration::from_secs_f64(row.seconds)),
            row.trained_variables
        ));
    }
    s.push_str(&format!(
        "\nhidden1-3 bit-identical to the pretrained weights after transfer training: {}\n",
        r.frozen_bit_identical
    ));
    s
}
