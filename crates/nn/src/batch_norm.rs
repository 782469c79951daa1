//! `tf.layers.batch_normalization`: per-channel normalization over the last axis, with gamma/beta
//! and moving averages whose update ops go into UPDATE_OPS and run only when asked.

use crate::layers::{unique_layer_name, Training};
use ferroflow_core::{
    keys, Error, Graph, Initializer, Result, Reuse, Tensor, VarOptions, Variable,
};

/// Options of `batch_normalization` (TF's defaults).
#[derive(Clone, Debug)]
pub struct BatchNormOptions {
    /// 0.99: `moving ← moving·momentum + batch·(1 - momentum)`.
    pub momentum: f64,
    /// 1e-3.
    pub epsilon: f64,
    /// Add beta (true).
    pub center: bool,
    /// Multiply by gamma (true).
    pub scale: bool,
    pub name: Option<String>,
    pub reuse: Reuse,
    pub trainable: bool,
}

impl Default for BatchNormOptions {
    fn default() -> Self {
        BatchNormOptions {
            momentum: 0.99,
            epsilon: 1e-3,
            center: true,
            scale: true,
            name: None,
            reuse: Reuse::No,
            trainable: true,
        }
    }
}

/// `tf.layers.batch_normalization(x, training=...)`.
///
/// Variables `<name>/gamma`, `beta` (trainable), `moving_mean`, `moving_variance` (global only).
/// Training mode normalizes with the batch mean and the **biased** batch variance; inference mode uses
/// the moving statistics. With `Training::Bool(false)` no update ops are made; otherwise two update ops
/// (`AssignMovingAvg`, `AssignMovingAvg_1`) go into UPDATE_OPS, applying
/// `moving ← moving - (moving - batch)·(1 - momentum)`, and do nothing when a training tensor is false.
/// They run only when fetched or made a control dependency of the train op, exactly as in TF.
/// For rank-4 inputs TF's fused kernel feeds the **unbiased** variance into the moving average; ferroflow
/// does the same.
pub fn batch_normalization(
    g: &Graph,
    x: Tensor,
    training: impl Into<Training>,
    opts: BatchNormOptions,
) -> Result<Tensor> {
    let training = training.into();
    let info = g.info(x)?;
    let name = opts
        .name
        .clone()
        .unwrap_or_else(|| unique_layer_name(g, "batch_normalization", "gamma"));
    let dims = info.shape.dims().ok_or_else(|| Error::Shape {
        node: name.clone(),
        op: "batch_normalization".into(),
        message: "the input's rank must be known".into(),
    })?;
    let rank = dims.len();
    let channels = dims.last().copied().flatten().ok_or_else(|| Error::Shape {
        node: name.clone(),
        op: "batch_normalization".into(),
        message: format!(
            "the channel (last) dimension must be known, got {}",
            info.shape
        ),
    })?;
    let _vs = g.variable_scope_with(&name, opts.reuse)?;
    let var = |n: &str, init: Initializer, trainable: bool| -> Result<Variable> {
        g.get_variable_with(
            n,
            &[channels],
            info.dtype,
            VarOptions {
                initializer: Some(init),
                trainable,
                collections: None,
            },
        )
    };
    let gamma = if opts.scale {
        Some(var("gamma", Initializer::Ones, opts.trainable)?)
    } else {
        None
    };
    let beta = if opts.center {
        Some(var("beta", Initializer::Zeros, opts.trainable)?)
    } else {
        None
    };
    let moving_mean = var("moving_mean", Initializer::Zeros, false)?;
    let moving_var = var("moving_variance", Initializer::Ones, false)?;
    let gamma_t = gamma.map(|v| v.value());
    let beta_t = beta.map(|v| v.value());

    let inference = || {
        g.batch_normalization(
            x,
            moving_mean.value(),
            moving_var.value(),
            beta_t,
            gamma_t,
            opts.epsilon,
        )
    };
    if training == Training::Bool(false) {
        return inference();
    }
    let axes: Vec<i64> = (0..rank as i64 - 1).collect();
    let (mean, variance) = g.moments(x, &axes, false)?;
    let train_out = g.batch_normalization(x, mean, variance, beta_t, gamma_t, opts.epsilon)?;
    let out = match training {
        Training::Tensor(t) => g.select(t, train_out, inference()?)?,
        Training::Bool(_) => train_out,
    };
    let stat_var = if rank == 4 {
        // Bessel's correction n/(n-1), n = elements per channel (TF's fused kernel).
        let n = g.div(
            g.cast(g.size(x)?, info.dtype)?,
            g.scalar_like(x, channels as f64)?,
        )?;
        g.mul(variance, g.div(n, g.sub(n, g.scalar_like(x, 1.0)?)?)?)?
    } else {
        variance
    };
    let decay = g.scalar_like(x, 1.0 - opts.momentum)?;
    for (k, (moving, batch)) in [(moving_mean, mean), (moving_var, stat_var)]
        .into_iter()
        .enumerate()
    {
        let _s = g.name_scope(if k == 0 {
            "AssignMovingAvg"
        } else {
            "AssignMovingAvg_1"
        })?;
        let delta = g.mul(g.sub(moving.value(), batch)?, decay)?;
        let delta = match training {
            Training::Tensor(t) => g.select(t, delta, g.zeros_like(delta)?)?,
            Training::Bool(_) => delta,
        };
        let update = g.assign_sub(moving, delta)?;
        g.add_to_collection(keys::UPDATE_OPS, update.op());
    }
    Ok(out)
}
