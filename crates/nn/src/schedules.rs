//! Learning-rate schedules as graph ops of the global step (TF's `tf.train.*_decay`,
//! `piecewise_constant`).

use ferroflow_core::{DType, Error, Graph, Result, Tensor, Variable};

fn step_f32(g: &Graph, global_step: Variable) -> Result<Tensor> {
    g.cast(global_step.value(), DType::F32)
}

fn c(g: &Graph, x: f64) -> Result<Tensor> {
    g.scalar(DType::F32, x)
}

/// `step / decay_steps`, floored when `staircase`.
fn progress(g: &Graph, global_step: Variable, decay_steps: f64, staircase: bool) -> Result<Tensor> {
    let p = g.div(step_f32(g, global_step)?, c(g, decay_steps)?)?;
    if staircase {
        g.floor(p)
    } else {
        Ok(p)
    }
}

/// `tf.train.exponential_decay`: `lr · rate^(step / decay_steps)`, the exponent floored when `staircase`.
pub fn exponential_decay(
    g: &Graph,
    lr: f64,
    global_step: Variable,
    decay_steps: f64,
    decay_rate: f64,
    staircase: bool,
) -> Result<Tensor> {
    let _s = g.name_scope("ExponentialDecay")?;
    let p = progress(g, global_step, decay_steps, staircase)?;
    g.mul(c(g, lr)?, g.pow(c(g, decay_rate)?, p)?)
}

/// `tf.train.inverse_time_decay`: `lr / (1 + rate · step / decay_steps)` (floored when `staircase`).
pub fn inverse_time_decay(
    g: &Graph,
    lr: f64,
    global_step: Variable,
    decay_steps: f64,
    decay_rate: f64,
    staircase: bool,
) -> Result<Tensor> {
    let _s = g.name_scope("InverseTimeDecay")?;
    let p = progress(g, global_step, decay_steps, staircase)?;
    g.div(c(g, lr)?, g.add(c(g, 1.0)?, g.mul(c(g, decay_rate)?, p)?)?)
}

/// `tf.train.polynomial_decay` (no cycle): `(lr - end)·(1 - min(step, decay_steps)/decay_steps)^power + end`.
pub fn polynomial_decay(
    g: &Graph,
    lr: f64,
    global_step: Variable,
    decay_steps: f64,
    end_lr: f64,
    power: f64,
) -> Result<Tensor> {
    let _s = g.name_scope("PolynomialDecay")?;
    let step = g.minimum(step_f32(g, global_step)?, c(g, decay_steps)?)?;
    let frac = g.sub(c(g, 1.0)?, g.div(step, c(g, decay_steps)?)?)?;
    g.add(
        g.mul(c(g, lr - end_lr)?, g.pow(frac, c(g, power)?)?)?,
        c(g, end_lr)?,
    )
}

/// `tf.train.piecewise_constant(step, boundaries, values)`: `values[0]` while step ≤ `boundaries[0]`,
/// `values[i]` while `boundaries[i-1]` < step ≤ `boundaries[i]`, the last value beyond.
pub fn piecewise_constant(
    g: &Graph,
    global_step: Variable,
    boundaries: &[i64],
    values: &[f64],
) -> Result<Tensor> {
    if values.len() != boundaries.len() + 1 {
        return Err(Error::InvalidArgument {
            node: "PiecewiseConstant".into(),
            op: "piecewise_constant".into(),
            message: format!(
                "need one more value than boundaries, got {} values and {} boundaries",
                values.len(),
                boundaries.len()
            ),
        });
    }
    let _s = g.name_scope("PiecewiseConstant")?;
    let step = global_step.value();
    let mut out = c(g, values[values.len() - 1])?;
    for (b, v) in boundaries.iter().zip(values).rev() {
        let le = g.less_equal(step, g.scalar(DType::I64, *b as f64)?)?;
        out = g.select(le, c(g, *v)?, out)?;
    }
    Ok(out)
}
