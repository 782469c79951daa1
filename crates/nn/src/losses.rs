//! `tf.losses.*` (each adds its value to LOSSES), regularization and total losses, and the
//! accuracy / in_top_k metrics.

use ferroflow_core::{keys, DType, Graph, Result, Tensor};

fn scoped_mean(
    g: &Graph,
    scope: &str,
    per_example: impl FnOnce() -> Result<Tensor>,
) -> Result<Tensor> {
    let s = g.name_scope(scope)?;
    let losses = per_example()?;
    // SUM_BY_NONZERO_WEIGHTS with unit weights: the mean over examples.
    let value = g.named("value").reduce_mean(losses, None, false)?;
    drop(s);
    g.add_to_collection(keys::LOSSES, value);
    Ok(value)
}

/// `tf.losses.sparse_softmax_cross_entropy(labels, logits)`: mean cross-entropy, named
/// `sparse_softmax_cross_entropy_loss/value`.
pub fn sparse_softmax_cross_entropy(g: &Graph, labels: Tensor, logits: Tensor) -> Result<Tensor> {
    scoped_mean(g, "sparse_softmax_cross_entropy_loss", || {
        g.sparse_softmax_cross_entropy_with_logits(labels, logits)
    })
}

/// `tf.losses.softmax_cross_entropy(onehot_labels, logits)`.
pub fn softmax_cross_entropy(g: &Graph, onehot_labels: Tensor, logits: Tensor) -> Result<Tensor> {
    scoped_mean(g, "softmax_cross_entropy_loss", || {
        g.softmax_cross_entropy_with_logits(onehot_labels, logits)
    })
}

/// `tf.losses.sigmoid_cross_entropy(multi_class_labels, logits)`.
pub fn sigmoid_cross_entropy(g: &Graph, labels: Tensor, logits: Tensor) -> Result<Tensor> {
    scoped_mean(g, "sigmoid_cross_entropy_loss", || {
        g.sigmoid_cross_entropy_with_logits(labels, logits)
    })
}

/// `tf.losses.mean_squared_error(labels, predictions)`.
pub fn mean_squared_error(g: &Graph, labels: Tensor, predictions: Tensor) -> Result<Tensor> {
    scoped_mean(g, "mean_squared_error", || {
        g.squared_difference(predictions, labels)
    })
}

/// `tf.losses.huber_loss(labels, predictions, delta)`: ½e² for |e| ≤ δ, δ(|e| - ½δ) beyond.
pub fn huber_loss(g: &Graph, labels: Tensor, predictions: Tensor, delta: f64) -> Result<Tensor> {
    scoped_mean(g, "huber_loss", || {
        let abs = g.abs(g.sub(predictions, labels)?)?;
        let d = g.scalar_like(abs, delta)?;
        let quadratic = g.minimum(abs, d)?;
        let linear = g.sub(abs, quadratic)?;
        g.add(
            g.mul(g.scalar_like(abs, 0.5)?, g.square(quadratic)?)?,
            g.mul(d, linear)?,
        )
    })
}

/// `tf.losses.get_regularization_loss()`: the sum of REGULARIZATION_LOSSES (`total_regularization_loss`),
/// or a zero constant when there are none.
pub fn get_regularization_loss(g: &Graph) -> Result<Tensor> {
    let regs: Vec<Tensor> = g.get_collection(keys::REGULARIZATION_LOSSES, None)?;
    match regs.len() {
        0 => g.named("total_regularization_loss").constant(0.0f32),
        1 => g.named("total_regularization_loss").identity(regs[0]),
        _ => g.named("total_regularization_loss").add_n(&regs),
    }
}

/// `tf.losses.get_total_loss()`: LOSSES plus (when asked) REGULARIZATION_LOSSES, named `total_loss`.
pub fn get_total_loss(g: &Graph, add_regularization_losses: bool) -> Result<Tensor> {
    let mut all: Vec<Tensor> = g.get_collection(keys::LOSSES, None)?;
    if add_regularization_losses {
        all.extend(g.get_collection::<Tensor>(keys::REGULARIZATION_LOSSES, None)?);
    }
    match all.len() {
        0 => g.named("total_loss").constant(0.0f32),
        1 => g.named("total_loss").identity(all[0]),
        _ => g.named("total_loss").add_n(&all),
    }
}

/// Fraction of examples whose `argmax(logits)` equals the integer label (float32 scalar).
pub fn accuracy(g: &Graph, labels: Tensor, logits: Tensor) -> Result<Tensor> {
    let _s = g.name_scope("accuracy")?;
    let pred = g.argmax(logits, -1)?;
    g.reduce_mean(g.cast(g.equal(pred, labels)?, DType::F32)?, None, false)
}

/// `tf.nn.in_top_k(predictions, targets, k)`: whether each target's score is among the k largest
/// (bool `[N]`; ties counted in the target's favour, as TF does).
pub fn in_top_k(g: &Graph, predictions: Tensor, targets: Tensor, k: usize) -> Result<Tensor> {
    let _s = g.name_scope("in_top_k")?;
    let classes = g
        .shape(predictions)?
        .dims()
        .and_then(|d| d.last().copied().flatten())
        .ok_or_else(|| ferroflow_core::Error::Shape {
            node: "in_top_k".into(),
            op: "InTopK".into(),
            message: "the number of classes must be known".into(),
        })?;
    let dt = g.dtype(predictions)?;
    let target_score = g.reduce_sum(
        g.mul(predictions, g.one_hot_with(targets, classes, 1.0, 0.0, dt)?)?,
        Some(&[-1]),
        true,
    )?;
    let better = g.reduce_sum(
        g.cast(g.greater(predictions, target_score)?, dt)?,
        Some(&[-1]),
        false,
    )?;
    g.less(better, g.scalar_like(better, k as f64)?)
}
