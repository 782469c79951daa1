//! Trains two small networks on the bundled digits with ferroflow, an MLP and a CNN (the 8×8
//! digits as 8×8×1 images), and saves each as a TensorFlow V2 checkpoint, with probe files
//! (inputs, ferroflow's logits, every variable's sum) for `scripts/check_tf_checkpoint.py`, which
//! restores the checkpoints with Python TensorFlow's own `tf.compat.v1.train.Saver` into the same
//! networks and compares.
//!
//! `cargo run --release --example tf_export [-- OUT_DIR]` (default `target/tf_export`)
use ferroflow::io::{SaveFormat, Saver, VarList};
use ferroflow::nn::layers::{dense, Activation};
use ferroflow::nn::{conv2d, flatten, losses, max_pooling2d, Optimizer};
use ferroflow::prelude::*;
use std::fmt::Write;

/// Trains a small network on the digits and saves it as a TensorFlow V2 checkpoint with a probe file.
#[derive(clap::Parser)]
#[command(version)]
struct Args {
    /// Where the checkpoint and the probe file go.
    #[arg(default_value = "target/tf_export")]
    out_dir: std::path::PathBuf,
}

fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let Args { out_dir: out } = clap::Parser::parse();
    std::fs::create_dir_all(&out)?;
    let g = Graph::new();
    g.set_random_seed(42);
    let x = g.named("X").placeholder(DType::F32, [None, Some(64)])?;
    let y = g.named("y").placeholder(DType::I64, [None])?;
    let logits = {
        let _dnn = g.name_scope("dnn")?;
        let h1 = dense(&g, x, 50, Some(Activation::Elu), "hidden1")?;
        let h2 = dense(&g, h1, 30, Some(Activation::Relu), "hidden2")?;
        dense(&g, h2, 10, None, "outputs")?
    };
    let (train_set, test_set) = ferroflow::data::digits_split();
    let probe = test_set.take(8);
    let net = Net {
        g: &g,
        x,
        y,
        logits,
    };
    train_and_export(
        &net,
        &train_set,
        &probe,
        &out,
        ("model.ckpt", Some(3)),
        "probe.json",
    )?;

    // The CNN of tests/data/tf-cnn-checkpoint: conv 8 3×3 SAME → conv 16 3×3 stride 2 SAME → max
    // pool 2 → flatten → dense 32 → 10, on the digits as 8×8×1 images.
    let g = Graph::new();
    g.set_random_seed(7);
    let x = g.named("X").placeholder(DType::F32, [None, Some(64)])?;
    let y = g.named("y").placeholder(DType::I64, [None])?;
    let relu = Some(Activation::Relu);
    let images = g.reshape(x, &[-1, 8, 8, 1])?;
    let c1 = conv2d(&g, images, 8, [3, 3], [1, 1], "same", relu, "conv2d")?;
    let c2 = conv2d(&g, c1, 16, [3, 3], [2, 2], "same", relu, "conv2d_1")?;
    let pooled = max_pooling2d(&g, c2, [2, 2], [2, 2], "valid", None)?;
    let h = dense(&g, flatten(&g, pooled, None)?, 32, relu, "dense")?;
    let logits = dense(&g, h, 10, None, "dense_1")?;
    let net = Net {
        g: &g,
        x,
        y,
        logits,
    };
    train_and_export(
        &net,
        &train_set,
        &probe,
        &out,
        ("cnn.ckpt", None),
        "cnn_probe.json",
    )?;
    export_op_zoo(&out, &probe)?;
    Ok(())
}

/// Every op that has a TensorFlow node, on the probe images: exported as a MetaGraphDef with
/// ferroflow's value of each output, which scripts/check_tf_checkpoint.py compares with what
/// TensorFlow computes from the imported graph.
fn export_op_zoo(
    out: &std::path::Path,
    probe: &ferroflow::data::Dataset,
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let g = Graph::new();
    let x = g.named("X").placeholder(DType::F32, [None, Some(64)])?;
    let labels = g.named("labels").placeholder(DType::I64, [None])?;
    let two = g.constant(Value::scalar_f32(2.0))?;
    let pos = g.add(g.abs(x)?, g.constant(Value::scalar_f32(0.5))?)?;
    let images = g.reshape(x, &[-1, 8, 8, 1])?;
    let filters = g.constant(Value::from_f32(
        &[3, 3, 1, 2],
        (0..18).map(|i| (i as f32 - 9.0) / 10.0).collect(),
    )?)?;
    // 16 classes: the mean of each group of 4 pixels.
    let logits = g.reduce_mean(g.reshape(x, &[-1, 16, 4])?, Some(&[2]), false)?;
    let outputs = vec![
        g.softmax(x)?,
        g.log_softmax(x)?,
        g.cast(g.argmax(x, 1)?, DType::F32)?,
        g.reduce_mean(x, Some(&[1]), true)?,
        g.reduce_sum(x, None, false)?,
        g.reduce_max(x, Some(&[0]), false)?,
        g.transpose(g.reshape(x, &[-1, 4, 16])?, &[0, 2, 1])?,
        g.squeeze(g.expand_dims(x, 1)?, &[1])?,
        g.concat(&[x, g.neg(x)?], 1)?,
        g.cast(g.size(x)?, DType::F32)?,
        g.leaky_relu(x, 0.2)?,
        g.elu(x)?,
        g.selu(x)?,
        g.softplus(x)?,
        g.sigmoid(x)?,
        g.tanh(x)?,
        g.relu6(g.mul(x, two)?)?,
        g.sqrt(pos)?,
        g.log(pos)?,
        g.exp(g.neg(pos)?)?,
        g.reciprocal(pos)?,
        g.square(x)?,
        g.sign(x)?,
        g.floor(x)?,
        g.pow(pos, two)?,
        g.maximum(x, g.neg(x)?)?,
        g.minimum(x, two)?,
        g.squared_difference(x, two)?,
        g.div(x, pos)?,
        g.sub(x, two)?,
        g.conv2d_dilated(images, filters, &[1, 1], "SAME", &[2, 2])?,
        g.conv2d(images, filters, &[2, 2], "VALID")?,
        g.max_pool(images, &[3, 3], &[2, 2], "SAME")?,
        g.avg_pool(images, &[3, 3], &[2, 2], "SAME")?,
        g.sparse_softmax_cross_entropy_with_logits(labels, logits)?,
    ];
    let path = out.join("ops-inference.meta");
    ferroflow::io::export_tf_meta_graph(&g, &path, &outputs)?;
    let sess = Session::new(&g);
    let values = sess.run(
        &outputs,
        &[
            feed(x, probe.images.clone().into_dyn()),
            feed(labels, probe.labels.clone().into_dyn()),
        ],
        &[],
    )?;
    let mut json = format!(
        "{{\"meta\": {:?}, \"inputs\": {}, \"labels\": {}, \"outputs\": {{",
        path.to_string_lossy(),
        image_rows(probe),
        numbers(probe.labels.iter().map(|&l| l as f64)),
    );
    for (i, (t, v)) in outputs.iter().zip(&values).enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        let name = g.op_name(*t);
        write!(json, "{sep}\"{name}:0\": {}", numbers(v.to_f64_vec()))?;
    }
    json.push_str("}}\n");
    std::fs::write(out.join("ops_probe.json"), json)?;
    println!(
        "saved {} ops' outputs as a TensorFlow MetaGraphDef to {}",
        outputs.len(),
        path.display()
    );
    Ok(())
}

/// A classifier of the digits: its graph, input, labels and logits.
struct Net<'g> {
    g: &'g Graph,
    x: Tensor,
    y: Tensor,
    logits: Tensor,
}

/// Trains `net` three epochs with Adam on `train_set`, saves it in TensorFlow's format under
/// `out/<name>` (with the global step given), and writes the probe file `out/<probe_file>`.
fn train_and_export(
    net: &Net,
    train_set: &ferroflow::data::Dataset,
    probe: &ferroflow::data::Dataset,
    out: &std::path::Path,
    (name, step): (&str, Option<i64>),
    probe_file: &str,
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let (g, x, y) = (net.g, net.x, net.y);
    let loss = losses::sparse_softmax_cross_entropy(g, y, net.logits)?;
    let train = Optimizer::adam(0.01).minimize(g, loss, None, None)?;
    let sess = Session::new(g);
    sess.run_targets(&[g.global_variables_initializer()?], &[])?;
    for epoch in 0..3 {
        for (xb, yb) in train_set.batches(32, epoch) {
            sess.run_targets(&[train], &[feed(x, xb.into_dyn()), feed(y, yb.into_dyn())])?;
        }
    }
    let saver = Saver::new(g, VarList::All)?.format(SaveFormat::TensorFlow);
    let prefix = saver.save(&sess, &out.join(name).to_string_lossy(), step)?;
    // The inference part of the graph as TensorFlow's MetaGraphDef, for
    // `tf.compat.v1.train.import_meta_graph` (and Netron).
    let meta = format!("{prefix}-inference.meta");
    ferroflow::io::export_tf_meta_graph(g, std::path::Path::new(&meta), &[net.logits])?;
    let probe_path = out.join(probe_file);
    write_probe(&probe_path, &prefix, &sess, &saver, x, net.logits, probe)?;
    println!(
        "saved {} variables to {prefix} (TensorFlow V2 format), its inference graph to {meta} \
         (TensorFlow MetaGraphDef) and {}",
        saver.entries().len(),
        probe_path.display()
    );
    Ok(())
}

/// The probe file: the checkpoint's prefix, the probe inputs (rows of 64), ferroflow's logits for
/// them, and the sum of every saved variable.
fn write_probe(
    path: &std::path::Path,
    prefix: &str,
    sess: &Session,
    saver: &Saver,
    x: Tensor,
    logits: Tensor,
    probe: &ferroflow::data::Dataset,
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let lv = sess.run_one(logits, &[feed(x, probe.images.clone().into_dyn())])?;
    let mut json = String::from("{\"prefix\": ");
    let logit_rows: Vec<String> = lv
        .to_f64_vec()
        .chunks(10)
        .map(|row| numbers(row.iter().copied()))
        .collect();
    write!(
        json,
        "{:?}, \"logits_tensor\": {:?}, \"inputs\": {}, \"logits\": [{}], \"sums\": {{",
        prefix,
        format!("{}:0", sess.graph().op_name(logits)),
        image_rows(probe),
        logit_rows.join(", ")
    )?;
    for (i, (key, v)) in saver.entries().iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        let sum: f64 = sess.variable_value(*v)?.to_f64_vec().iter().sum();
        write!(json, "{sep}{key:?}: {sum:e}")?;
    }
    json.push_str("}}\n");
    std::fs::write(path, json)?;
    Ok(())
}

/// A JSON list of numbers.
fn numbers(values: impl IntoIterator<Item = f64>) -> String {
    let cells: Vec<String> = values.into_iter().map(|v| format!("{v:e}")).collect();
    format!("[{}]", cells.join(", "))
}

/// The probe images as a JSON list of rows.
fn image_rows(probe: &ferroflow::data::Dataset) -> String {
    let rows: Vec<String> = probe
        .images
        .rows()
        .into_iter()
        .map(|row| numbers(row.iter().map(|&v| f64::from(v))))
        .collect();
    format!("[{}]", rows.join(", "))
}
