//! `ferroflow health`: the training-health report of a saved classifier on one batch of data.
//!
//! From `PREFIX.meta` and the checkpoint `PREFIX`: the loss is the first tensor of the `losses`
//! collection (every `tf.losses.*` puts its value there), the inputs are the float placeholder
//! `[None, features]` and the integer placeholder `[None]`, and the number of classes is the last
//! dimension of the logits of the loss's sparse softmax cross-entropy. The batch is the first
//! `batch` test images of an MNIST-format directory whose labels the model knows.

use crate::{Result, ToolError};
use ferroflow::io::{import_meta_graph, Saver, VarList};
use ferroflow::nn::health::{self, Monitor, MonitorOptions, Snapshot};
use ferroflow::prelude::*;
use std::path::Path;

/// What the report found.
#[derive(Clone, Debug)]
pub struct Report {
    pub snapshot: Snapshot,
    pub findings: Vec<health::Finding>,
    /// Images in the batch, and the number of classes of the model.
    pub batch: usize,
    pub classes: usize,
}

fn usage(msg: String) -> ToolError {
    ToolError::Usage(msg)
}

/// The placeholders fed by the report: (images, labels).
fn inputs(g: &Graph) -> Result<(Tensor, Tensor)> {
    let mut x = None;
    let mut y = None;
    for op in g.operations() {
        if g.op_type(op) != "Placeholder" {
            continue;
        }
        let t = Tensor::from_index(op.index());
        let (dtype, rank) = (g.dtype(t)?, g.shape(t)?.rank());
        match (dtype, rank) {
            (DType::F32, Some(2)) if x.is_none() => x = Some(t),
            (DType::I64, Some(1)) if y.is_none() => y = Some(t),
            _ => {}
        }
    }
    match (x, y) {
        (Some(x), Some(y)) => Ok((x, y)),
        _ => Err(usage(
            "unsupported model: the meta-graph needs a float placeholder [None, features] for the \
             images and an int64 placeholder [None] for the labels"
                .into(),
        )),
    }
}

/// The classes of the loss's sparse softmax cross-entropy.
fn classes(g: &Graph) -> Result<usize> {
    for op in g.operations() {
        if g.op_type(op) == "SparseSoftmaxCrossEntropyWithLogits" {
            let logits = *g
                .inputs(op)?
                .first()
                .ok_or_else(|| usage(format!("{}: an op without inputs", g.op_name(op))))?;
            let shape = g.shape(logits)?;
            if let Some(Some(c)) = shape.dims().and_then(|d| d.last().copied()) {
                return Ok(c);
            }
        }
    }
    Err(usage(
        "unsupported model: no sparse softmax cross-entropy with a known number of classes".into(),
    ))
}

/// Restores the model at `prefix` and measures it on `batch` test images from `data_dir`.
pub fn report(prefix: &str, data_dir: &Path, batch: usize) -> Result<Report> {
    let meta = format!("{prefix}.meta");
    if !Path::new(&meta).is_file() {
        return Err(usage(format!(
            "no meta-graph at {meta}: the health report needs the graph saved with the checkpoint"
        )));
    }
    let (g, saver) = import_meta_graph(Path::new(&meta))?;
    let loss: Tensor = g
        .get_collection::<Tensor>(keys::LOSSES, None)?
        .first()
        .copied()
        .ok_or_else(|| usage(format!("{meta}: the 'losses' collection is empty")))?;
    let (x, y) = inputs(&g)?;
    let classes = classes(&g)?;
    let monitor = Monitor::new(&g, loss, MonitorOptions::default())?;
    let sess = Session::new(&g);
    sess.run_targets(&[g.global_variables_initializer()?], &[])?;
    let saver = match saver {
        Some(s) => s,
        None => Saver::new(&g, VarList::All)?,
    };
    saver.restore(&sess, prefix)?;
    let (_, test) = ferroflow::data::mnist(data_dir).map_err(|e| ToolError::Data(e.to_string()))?;
    let features = g.shape(x)?.dims().and_then(|d| d[1]).unwrap_or(0);
    if test.images.ncols() != features {
        return Err(usage(format!(
            "the model takes {features} features, the images in {} have {}",
            data_dir.display(),
            test.images.ncols()
        )));
    }
    let known = test
        .filter_classes(|l| (l as usize) < classes, |l| l)
        .take(batch);
    if known.is_empty() {
        return Err(ToolError::Data(format!(
            "no test image in {} has a label below {classes}",
            data_dir.display()
        )));
    }
    let feeds = vec![
        feed(x, known.images.clone().into_dyn()),
        feed(y, known.labels.clone().into_dyn()),
    ];
    let snapshot = monitor.measure(&sess, 0, &feeds)?;
    let findings = health::diagnose(
        std::slice::from_ref(&snapshot),
        &health::Thresholds::default(),
    );
    Ok(Report {
        snapshot,
        findings,
        batch: known.len(),
        classes,
    })
}
