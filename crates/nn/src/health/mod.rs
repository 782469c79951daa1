//! Training health: the lecture's diagnostics measured by graph ops while a network trains.
//!
//! [`Monitor::new`] groups the trainable variables by scope into layers (`hidden1/kernel` and
//! `hidden1/bias` form the layer `hidden1`; a layer is a scope with a rank-2 kernel), finds each
//! layer's activation in the graph (the first activation op downstream of the kernel's product,
//! before the next product), and adds ops for:
//!
//! - the gradient norm ‖∂L/∂W‖ of each kernel and the global norm over all of them;
//! - the weight norm ‖W‖;
//! - the activation's mean and standard deviation over the batch;
//! - the fraction of saturated outputs: sigmoid within 1e-2 of 0 or 1, tanh within 1e-2 of ±1, ELU
//!   and SELU within 1e-2 of their lower plateau (−1 and −1.7581);
//! - the fraction of dead units: ReLU units whose output is zero for the whole batch.
//!
//! The ops hang off the graph and cost nothing unless fetched (the plan prunes them). Fetching
//! [`Monitor::fetches`] with the train op gives one [`Snapshot`] per run; [`Monitor::train_step`]
//! does that and adds the update-to-weight ratio ‖ΔW‖/‖W‖ of the step from the kernels' values
//! before and after it. [`findings::diagnose`] turns a window of snapshots into
//! [`findings::Finding`]s with the lecture's remedies.

pub mod findings;
#[cfg(test)]
mod tests;

use crate::clip::global_norm;
use ferroflow_core::{keys, Error, Graph, Operation, Result, Session, Tensor, Value, Variable};
use std::collections::HashMap;

pub use findings::{diagnose, Finding, Thresholds};

/// How an activation's outputs are judged.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ActivationKind {
    /// Bounded on both sides (sigmoid, tanh): saturated within 1e-2 of either bound.
    Bounded { low: f64, high: f64 },
    /// A lower plateau (ELU, SELU): saturated within 1e-2 of it.
    Plateau { low: f64 },
    /// ReLU: a unit is dead when it outputs zero for the whole batch.
    Relu,
    /// Anything else (leaky ReLU, GELU, softplus...): mean and std only.
    Other,
}

impl ActivationKind {
    /// The kind of an op type, or `None` when the op is not an activation.
    pub fn of_op_type(op_type: &str) -> Option<ActivationKind> {
        Some(match op_type {
            "Sigmoid" => ActivationKind::Bounded {
                low: 0.0,
                high: 1.0,
            },
            "Tanh" => ActivationKind::Bounded {
                low: -1.0,
                high: 1.0,
            },
            "Elu" => ActivationKind::Plateau { low: -1.0 },
            // −scale·alpha of SELU: 1.0507009873554805 · 1.6732632423543772.
            "Selu" => ActivationKind::Plateau {
                low: -1.758_099_340_847_376_6,
            },
            "Relu" => ActivationKind::Relu,
            "Relu6" | "LeakyRelu" | "Softplus" | "Gelu" => ActivationKind::Other,
            _ => return None,
        })
    }
}

/// Distance from a bound within which an output counts as saturated.
pub const SATURATION_BAND: f64 = 1e-2;

/// The probes of one layer.
#[derive(Clone, Debug)]
pub struct LayerProbe {
    /// The layer's scope (`hidden1`).
    pub name: String,
    pub kernel: Variable,
    grad_norm: Tensor,
    weight_norm: Tensor,
    /// The activation output found (or named) for this layer, with its kind and op type.
    pub activation: Option<(Tensor, ActivationKind, String)>,
    act_stats: Vec<Tensor>,
}

/// Options of [`Monitor::new`].
#[derive(Clone, Debug, Default)]
pub struct MonitorOptions {
    /// The variables to watch; default `TRAINABLE_VARIABLES`.
    pub variables: Option<Vec<Variable>>,
    /// Activation tensors named explicitly, by layer scope, in place of the ones found in the graph.
    pub activations: Vec<(String, Tensor)>,
}

/// A layer's activation statistics over one batch.
#[derive(Clone, Debug, PartialEq)]
pub struct ActivationStats {
    /// The activation's op type (`Sigmoid`, `Relu`...).
    pub op_type: String,
    pub mean: f64,
    pub std: f64,
    /// Fraction of outputs within [`SATURATION_BAND`] of a bound (bounded and plateau kinds).
    pub saturated: Option<f64>,
    /// Fraction of units zero for the whole batch (ReLU).
    pub dead: Option<f64>,
}

/// One layer's numbers at one step.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerStats {
    pub name: String,
    pub grad_norm: f64,
    pub weight_norm: f64,
    /// ‖ΔW‖/‖W‖ of the step (only from [`Monitor::train_step`]).
    pub update_ratio: Option<f64>,
    pub activation: Option<ActivationStats>,
}

/// Every layer's numbers at one step, lowest layer first.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    pub step: i64,
    pub layers: Vec<LayerStats>,
    /// √(Σ ‖∂L/∂W‖²) over the watched kernels.
    pub global_grad_norm: f64,
}

/// The graph ops that measure a network's health.
#[derive(Clone, Debug)]
pub struct Monitor {
    pub layers: Vec<LayerProbe>,
    global_grad_norm: Tensor,
}

/// The layer scope of a variable name: everything before the last `/`.
fn scope_of(name: &str) -> &str {
    name.rsplit_once('/').map_or("", |(s, _)| s)
}

/// Ops that read each tensor.
fn consumers(g: &Graph) -> Result<HashMap<usize, Vec<Operation>>> {
    let mut map: HashMap<usize, Vec<Operation>> = HashMap::new();
    for op in g.operations() {
        for t in g.inputs(op)? {
            map.entry(t.index()).or_default().push(op);
        }
    }
    Ok(map)
}

/// The activation downstream of a kernel: from the product that reads it, breadth first through at
/// most four ops, stopping at the next product.
fn find_activation(
    g: &Graph,
    users: &HashMap<usize, Vec<Operation>>,
    kernel: Variable,
) -> Option<(Tensor, ActivationKind, String)> {
    let product = users
        .get(&kernel.value().index())?
        .iter()
        .copied()
        .find(|op| g.op_type(*op).starts_with("MatMul"))?;
    let mut frontier = vec![product];
    for _ in 0..4 {
        let mut next = Vec::new();
        for op in frontier {
            for user in users.get(&op.index()).into_iter().flatten() {
                let ty = g.op_type(*user);
                if let Some(kind) = ActivationKind::of_op_type(&ty) {
                    return Some((Tensor::from_index(user.index()), kind, ty));
                }
                if !ty.starts_with("MatMul") {
                    next.push(*user);
                }
            }
        }
        frontier = next;
    }
    None
}

/// Mean, std, and the saturated or dead fraction of an activation output `[batch, units]`.
fn activation_ops(g: &Graph, a: Tensor, kind: ActivationKind) -> Result<Vec<Tensor>> {
    let mean = g.reduce_mean(a, None, false)?;
    let std = g.sqrt(g.reduce_mean(g.square(g.sub(a, mean)?)?, None, false)?)?;
    let fraction =
        |mask: Tensor| -> Result<Tensor> { g.reduce_mean(g.cast(mask, g.dtype(a)?)?, None, false) };
    let third = match kind {
        ActivationKind::Bounded { low, high } => {
            let lo = g.less(a, g.scalar_like(a, low + SATURATION_BAND)?)?;
            let hi = g.greater(a, g.scalar_like(a, high - SATURATION_BAND)?)?;
            Some(fraction(g.logical_or(lo, hi)?)?)
        }
        ActivationKind::Plateau { low } => Some(fraction(
            g.less(a, g.scalar_like(a, low + SATURATION_BAND)?)?,
        )?),
        ActivationKind::Relu => {
            let peak = g.reduce_max(a, Some(&[0]), false)?;
            Some(fraction(g.less_equal(peak, g.scalar_like(peak, 0.0)?)?)?)
        }
        ActivationKind::Other => None,
    };
    Ok([mean, std].into_iter().chain(third).collect())
}

impl Monitor {
    /// Adds the probes for `loss` under the name scope `health`.
    pub fn new(g: &Graph, loss: Tensor, opts: MonitorOptions) -> Result<Monitor> {
        let vars = match opts.variables {
            Some(v) => v,
            None => g.get_collection(keys::TRAINABLE_VARIABLES, None)?,
        };
        let mut kernels: Vec<(String, Variable)> = Vec::new();
        for v in vars {
            if g.shape(v.value())?.rank() == Some(2) {
                let name = v.op_name(g);
                kernels.push((scope_of(&name).to_string(), v));
            }
        }
        if kernels.is_empty() {
            return Err(Error::InvalidArgument {
                node: g.op_name(loss),
                op: "Monitor".into(),
                message: "no rank-2 kernel among the watched variables".into(),
            });
        }
        let users = consumers(g)?;
        let grads = g.gradients(
            &[loss],
            &kernels
                .iter()
                .map(|(_, v)| v.var_tensor())
                .collect::<Vec<_>>(),
        )?;
        let _scope = g.name_scope("health")?;
        let mut layers = Vec::new();
        let mut squares = Vec::new();
        for ((name, kernel), grad) in kernels.into_iter().zip(grads) {
            let grad_norm = match grad {
                Some(gr) => global_norm(g, &[Some(gr)])?,
                None => g.scalar(g.dtype(kernel.value())?, 0.0)?,
            };
            squares.push(g.square(grad_norm)?);
            let activation = match opts.activations.iter().find(|(n, _)| *n == name) {
                Some((_, t)) => {
                    let ty = g.op_type(*t);
                    let kind = ActivationKind::of_op_type(&ty).unwrap_or(ActivationKind::Other);
                    Some((*t, kind, ty))
                }
                None => find_activation(g, &users, kernel),
            };
            let act_stats = match &activation {
                Some((t, kind, _)) => activation_ops(g, *t, *kind)?,
                None => Vec::new(),
            };
            layers.push(LayerProbe {
                name,
                kernel,
                grad_norm,
                weight_norm: global_norm(g, &[Some(kernel.value())])?,
                activation,
                act_stats,
            });
        }
        let global_grad_norm = g.sqrt(g.add_n(&squares)?)?;
        Ok(Monitor {
            layers,
            global_grad_norm,
        })
    }

    /// The tensors to fetch for a [`Snapshot`] (pass their values to [`Monitor::read`]).
    pub fn fetches(&self) -> Vec<Tensor> {
        let mut f = vec![self.global_grad_norm];
        for l in &self.layers {
            f.push(l.grad_norm);
            f.push(l.weight_norm);
            f.extend(&l.act_stats);
        }
        f
    }

    /// A snapshot from the values of [`Monitor::fetches`], in order.
    pub fn read(&self, step: i64, values: &[Value]) -> Result<Snapshot> {
        let mut it = values.iter().map(|v| v.scalar_value().unwrap_or(f64::NAN));
        let mut next = || {
            it.next()
                .ok_or_else(|| Error::Internal("fewer values than the monitor's fetches".into()))
        };
        let global_grad_norm = next()?;
        let mut layers = Vec::new();
        for l in &self.layers {
            let grad_norm = next()?;
            let weight_norm = next()?;
            let activation = match &l.activation {
                Some((_, kind, ty)) => {
                    let (mean, std) = (next()?, next()?);
                    let third = match kind {
                        ActivationKind::Other => None,
                        _ => Some(next()?),
                    };
                    Some(ActivationStats {
                        op_type: ty.clone(),
                        mean,
                        std,
                        saturated: third.filter(|_| *kind != ActivationKind::Relu),
                        dead: third.filter(|_| *kind == ActivationKind::Relu),
                    })
                }
                None => None,
            };
            layers.push(LayerStats {
                name: l.name.clone(),
                grad_norm,
                weight_norm,
                update_ratio: None,
                activation,
            });
        }
        Ok(Snapshot {
            step,
            layers,
            global_grad_norm,
        })
    }

    /// Measures one batch without training.
    pub fn measure(
        &self,
        sess: &Session,
        step: i64,
        feeds: &[(Tensor, Value)],
    ) -> Result<Snapshot> {
        let values = sess.run(&self.fetches(), feeds, &[])?;
        self.read(step, &values)
    }

    /// TensorBoard histograms of one batch: each layer's kernel (`health/<layer>/kernel`) and
    /// activation output (`health/<layer>/activation`), as values.
    pub fn histograms(
        &self,
        sess: &Session,
        feeds: &[(Tensor, Value)],
    ) -> Result<Vec<(String, Vec<f64>)>> {
        let acts: Vec<(usize, Tensor)> = self
            .layers
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.activation.as_ref().map(|a| (i, a.0)))
            .collect();
        let values = sess.run(&acts.iter().map(|a| a.1).collect::<Vec<_>>(), feeds, &[])?;
        let mut out = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            let kernel = sess.variable_value(l.kernel)?.to_f64_vec();
            out.push((format!("health/{}/kernel", l.name), kernel));
            if let Some(k) = acts.iter().position(|a| a.0 == i) {
                out.push((
                    format!("health/{}/activation", l.name),
                    values[k].to_f64_vec(),
                ));
            }
        }
        Ok(out)
    }

    /// Runs `train_op` once with the probes fetched in the same run (they see the weights before the
    /// update), then adds each kernel's ‖ΔW‖/‖W‖ from its values before and after.
    pub fn train_step(
        &self,
        sess: &Session,
        train_op: Operation,
        step: i64,
        feeds: &[(Tensor, Value)],
    ) -> Result<Snapshot> {
        let before: Vec<Value> = self
            .layers
            .iter()
            .map(|l| sess.variable_value(l.kernel))
            .collect::<Result<_>>()?;
        let values = sess.run(&self.fetches(), feeds, &[train_op])?;
        let mut snap = self.read(step, &values)?;
        for ((stats, l), b) in snap.layers.iter_mut().zip(&self.layers).zip(&before) {
            let after = sess.variable_value(l.kernel)?;
            let (dw, w) = step_and_norm(b, &after);
            stats.update_ratio = Some(if w > 0.0 { dw / w } else { f64::INFINITY });
        }
        Ok(snap)
    }
}

/// (‖after − before‖, ‖after‖), summed in f64 straight from the tensors' elements.
fn step_and_norm(before: &Value, after: &Value) -> (f64, f64) {
    fn sums<'a, T: Copy + Into<f64> + 'a>(
        b: impl Iterator<Item = &'a T>,
        a: impl Iterator<Item = &'a T>,
    ) -> (f64, f64) {
        b.zip(a).fold((0.0, 0.0), |(d, n), (&x, &y)| {
            let (x, y): (f64, f64) = (x.into(), y.into());
            (d + (y - x) * (y - x), n + y * y)
        })
    }
    let (d, n) = match (before, after) {
        (Value::F32(b), Value::F32(a)) => sums(b.iter(), a.iter()),
        (Value::F64(b), Value::F64(a)) => sums(b.iter(), a.iter()),
        _ => (f64::NAN, f64::NAN),
    };
    (d.sqrt(), n.sqrt())
}

impl Snapshot {
    /// TensorBoard scalars: `health/<layer>/grad_norm`, `weight_norm`, `update_ratio`,
    /// `activation_mean`, `activation_std`, `saturated`, `dead`, and `health/global_grad_norm`.
    pub fn scalars(&self) -> Vec<(String, f64)> {
        let mut s = vec![("health/global_grad_norm".to_string(), self.global_grad_norm)];
        for l in &self.layers {
            let tag = |k: &str| format!("health/{}/{k}", l.name);
            s.push((tag("grad_norm"), l.grad_norm));
            s.push((tag("weight_norm"), l.weight_norm));
            if let Some(r) = l.update_ratio {
                s.push((tag("update_ratio"), r));
            }
            if let Some(a) = &l.activation {
                s.push((tag("activation_mean"), a.mean));
                s.push((tag("activation_std"), a.std));
                if let Some(x) = a.saturated {
                    s.push((tag("saturated"), x));
                }
                if let Some(x) = a.dead {
                    s.push((tag("dead"), x));
                }
            }
        }
        s
    }

    /// A compact table, one line per layer.
    pub fn table(&self) -> String {
        let mut s = format!(
            "{:<14} {:>10} {:>10} {:>10} {:>9} {:>8} {:>10} {:>7}\n",
            "layer", "‖∂L/∂W‖", "‖W‖", "‖ΔW‖/‖W‖", "act mean", "act std", "saturated", "dead"
        );
        let pct = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{:.0}%", 100.0 * v));
        for l in &self.layers {
            let a = l.activation.as_ref();
            s.push_str(&format!(
                "{:<14} {:>10.2e} {:>10.2e} {:>10} {:>9} {:>8} {:>10} {:>7}\n",
                l.name,
                l.grad_norm,
                l.weight_norm,
                l.update_ratio
                    .map_or("-".to_string(), |r| format!("{r:.1e}")),
                a.map_or("-".to_string(), |a| format!("{:.2}", a.mean)),
                a.map_or("-".to_string(), |a| format!("{:.2}", a.std)),
                pct(a.and_then(|a| a.saturated)),
                pct(a.and_then(|a| a.dead)),
            ));
        }
        s
    }
}
