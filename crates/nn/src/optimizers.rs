//! Optimizers with TF1's three calls (`compute_gradients`, `apply_gradients`, `minimize`), TF's update
//! rules and slot names, and the global step.

use ferroflow_core::ops::apply::ApplyRule;
use ferroflow_core::ops::binary::{Binary, BinaryKind};
use ferroflow_core::ops::Op;
use ferroflow_core::{
    keys, DType, Error, Graph, Initializer, Operation, Result, Tensor, VarOptions, Variable,
};

/// `(t, Some(s))` when `grad` is `Mul(t, s)` with `s` a scalar of t's dtype and shape-preserving
/// (what `clip_by_global_norm` builds): the update then multiplies each element as it reads it, with
/// the same result as the `Mul`, and the `Mul` no longer runs when nothing else fetches it. Anything
/// else is `(grad, None)`.
fn scaled_gradient(g: &Graph, grad: Tensor) -> (Tensor, Option<Tensor>) {
    let plain = (grad, None);
    let Ok(node) = g.node(grad.index()) else {
        return plain;
    };
    let (
        Op::Binary(Binary {
            kind: BinaryKind::Mul,
        }),
        &[t, s],
    ) = (node.op.as_ref(), &node.inputs[..])
    else {
        return plain;
    };
    let (t, s) = (Tensor::from_index(t), Tensor::from_index(s));
    match (g.info(t), g.info(s), g.info(grad)) {
        (Ok(ti), Ok(si), Ok(gi))
            if si.shape.rank() == Some(0) && si.dtype == ti.dtype && gi.shape == ti.shape =>
        {
            (t, Some(s))
        }
        _ => plain,
    }
}

/// A learning rate: a number or a tensor (e.g. a schedule of the global step).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LearningRate {
    Const(f64),
    Tensor(Tensor),
}
impl From<f64> for LearningRate {
    fn from(x: f64) -> Self {
        LearningRate::Const(x)
    }
}
impl From<Tensor> for LearningRate {
    fn from(t: Tensor) -> Self {
        LearningRate::Tensor(t)
    }
}

/// A TF1 optimizer: one of core's fused update rules ([`ApplyRule`], tf1-reference.md §8) with its
/// learning rate and name.
#[derive(Clone, Debug)]
pub struct Optimizer {
    pub rule: ApplyRule,
    /// Adagrad's starting accumulator (TF's `initial_accumulator_value`, 0.1); unused by other rules.
    pub initial_accumulator_value: f64,
    pub learning_rate: LearningRate,
    /// Name of the train op and of the slots (`GradientDescent`, `Adam`, ...).
    pub name: String,
}

impl Optimizer {
    /// `tf.train.GradientDescentOptimizer(lr)`.
    pub fn gradient_descent(lr: impl Into<LearningRate>) -> Self {
        Optimizer {
            rule: ApplyRule::GradientDescent,
            initial_accumulator_value: 0.1,
            learning_rate: lr.into(),
            name: "GradientDescent".into(),
        }
    }
    /// `tf.train.MomentumOptimizer(lr, momentum, use_nesterov)`.
    pub fn momentum(lr: impl Into<LearningRate>, momentum: f64, nesterov: bool) -> Self {
        Optimizer {
            rule: ApplyRule::Momentum { momentum, nesterov },
            initial_accumulator_value: 0.1,
            learning_rate: lr.into(),
            name: "Momentum".into(),
        }
    }
    /// `tf.train.AdagradOptimizer(lr)` (initial accumulator 0.1).
    pub fn adagrad(lr: impl Into<LearningRate>) -> Self {
        Optimizer {
            rule: ApplyRule::Adagrad,
            initial_accumulator_value: 0.1,
            learning_rate: lr.into(),
            name: "Adagrad".into(),
        }
    }
    /// `tf.train.RMSPropOptimizer(lr)` with decay 0.9, momentum 0, epsilon 1e-10, not centered.
    pub fn rmsprop(lr: impl Into<LearningRate>) -> Self {
        Self::rmsprop_with(lr, 0.9, 0.0, 1e-10, false)
    }
    /// `tf.train.RMSPropOptimizer(lr, decay, momentum, epsilon, centered)`.
    pub fn rmsprop_with(
        lr: impl Into<LearningRate>,
        decay: f64,
        momentum: f64,
        epsilon: f64,
        centered: bool,
    ) -> Self {
        Optimizer {
            rule: ApplyRule::RMSProp {
                decay,
                momentum,
                epsilon,
                centered,
            },
            initial_accumulator_value: 0.1,
            learning_rate: lr.into(),
            name: "RMSProp".into(),
        }
    }
    /// `tf.train.AdamOptimizer(lr)` with β1 0.9, β2 0.999, ε 1e-8 (TF's default lr is 0.001).
    pub fn adam(lr: impl Into<LearningRate>) -> Self {
        Self::adam_with(lr, 0.9, 0.999, 1e-8)
    }
    /// `tf.train.AdamOptimizer(lr, beta1, beta2, epsilon)`.
    pub fn adam_with(lr: impl Into<LearningRate>, beta1: f64, beta2: f64, epsilon: f64) -> Self {
        Optimizer {
            rule: ApplyRule::Adam {
                beta1,
                beta2,
                epsilon,
            },
            initial_accumulator_value: 0.1,
            learning_rate: lr.into(),
            name: "Adam".into(),
        }
    }

    /// `opt.compute_gradients(loss, var_list)`: `(gradient or None, variable)` per variable; the
    /// default list is TRAINABLE_VARIABLES.
    pub fn compute_gradients(
        &self,
        g: &Graph,
        loss: Tensor,
        var_list: Option<&[Variable]>,
    ) -> Result<Vec<(Option<Tensor>, Variable)>> {
        let vars: Vec<Variable> = match var_list {
            Some(v) => v.to_vec(),
            None => g.get_collection(keys::TRAINABLE_VARIABLES, None)?,
        };
        if vars.is_empty() {
            return Err(self.error("No variables to optimize."));
        }
        let xs: Vec<Tensor> = vars.iter().map(|v| v.var_tensor()).collect();
        let grads = g.gradients(&[loss], &xs)?;
        if grads.iter().all(|x| x.is_none()) {
            return Err(self.no_gradients(g, &vars, loss));
        }
        Ok(grads.into_iter().zip(vars).collect())
    }

    fn error(&self, message: &str) -> Error {
        Error::InvalidArgument {
            node: self.name.clone(),
            op: "Optimizer".into(),
            message: message.into(),
        }
    }

    fn no_gradients(&self, g: &Graph, vars: &[Variable], loss: Tensor) -> Error {
        let names: Vec<String> = vars.iter().map(|v| v.op_name(g)).collect();
        self.error(&format!(
            "No gradients provided for any variable, check your graph for ops that do not support gradients, between variables {names:?} and loss {}.",
            g.tensor_name(loss)
        ))
    }

    fn lr(&self, g: &Graph, like: Tensor) -> Result<Tensor> {
        match self.learning_rate {
            LearningRate::Const(x) => g.scalar_like(like, x),
            LearningRate::Tensor(t) => {
                let dt = g.dtype(like)?;
                if g.dtype(t)? == dt {
                    Ok(t)
                } else {
                    g.cast(t, dt)
                }
            }
        }
    }

    fn slot(&self, g: &Graph, var: Variable, fill: f64) -> Result<Variable> {
        let shape = var
            .shape(g)
            .to_known()
            .ok_or_else(|| self.error("slot variables need a fully known shape"))?;
        g.root_variable(
            &format!("{}/{}", var.op_name(g), self.name),
            &shape,
            var.dtype(g),
            &Initializer::Constant(fill),
            false,
        )
    }

    /// The update op of one variable: one fused in-place kernel (TF's `Apply*` ops).
    fn apply_dense(
        &self,
        g: &Graph,
        grad: Tensor,
        var: Variable,
        powers: Option<(Variable, Variable)>,
    ) -> Result<Vec<Operation>> {
        let lr = self.lr(g, grad)?;
        // Slots in the order the rule takes them, named `<var>/<Name>`, `<var>/<Name>_1`, ... as in TF.
        let (slots, lr) = match &self.rule {
            ApplyRule::GradientDescent => (vec![], lr),
            ApplyRule::Momentum { .. } => (vec![self.slot(g, var, 0.0)?], lr),
            ApplyRule::Adagrad => (vec![self.slot(g, var, self.initial_accumulator_value)?], lr),
            ApplyRule::RMSProp { centered, .. } => {
                let mut slots = vec![self.slot(g, var, 1.0)?];
                if *centered {
                    slots.push(self.slot(g, var, 0.0)?);
                }
                slots.push(self.slot(g, var, 0.0)?);
                (slots, lr)
            }
            ApplyRule::Adam { .. } => {
                let (b1p, b2p) = powers.ok_or_else(|| self.error("Adam needs its beta powers"))?;
                let slots = vec![self.slot(g, var, 0.0)?, self.slot(g, var, 0.0)?];
                let dt = g.dtype(grad)?;
                let one = g.scalar_like(grad, 1.0)?;
                let b1 = g.cast(b1p.value(), dt)?;
                let b2 = g.cast(b2p.value(), dt)?;
                // lr_t = lr·√(1-β2ᵗ)/(1-β1ᵗ), from the powers' values before this step.
                let lr_t = g.div(g.mul(lr, g.sqrt(g.sub(one, b2)?)?)?, g.sub(one, b1)?)?;
                (slots, lr_t)
            }
        };
        let rule = self.rule.clone();
        let (grad, scale) = scaled_gradient(g, grad);
        Ok(vec![g
            .apply_update_scaled(rule, var, &slots, grad, scale, lr)?
            .op()])
    }

    /// `opt.apply_gradients(grads_and_vars, global_step)`: the train op. `None` gradients are skipped;
    /// all of them `None` is an error. With a global step the op is the step's increment (run after every
    /// update); otherwise a grouped no-op. Every update of one run reads the variables' values from
    /// before the run, so the whole train op is one step.
    pub fn apply_gradients(
        &self,
        g: &Graph,
        grads_and_vars: &[(Option<Tensor>, Variable)],
        global_step: Option<Variable>,
    ) -> Result<Operation> {
        let pairs: Vec<(Tensor, Variable)> = grads_and_vars
            .iter()
            .filter_map(|(gr, v)| gr.map(|gr| (gr, *v)))
            .collect();
        if pairs.is_empty() {
            let vars: Vec<Variable> = grads_and_vars.iter().map(|p| p.1).collect();
            let names: Vec<String> = vars.iter().map(|v| v.op_name(g)).collect();
            return Err(self.error(&format!(
                "No gradients provided for any variable: {names:?}"
            )));
        }
        let powers = match &self.rule {
            ApplyRule::Adam { beta1, beta2, .. } => {
                let dt = pairs[0].1.dtype(g);
                Some((
                    g.root_variable(
                        "beta1_power",
                        &[],
                        dt,
                        &Initializer::Constant(*beta1),
                        false,
                    )?,
                    g.root_variable(
                        "beta2_power",
                        &[],
                        dt,
                        &Initializer::Constant(*beta2),
                        false,
                    )?,
                ))
            }
            _ => None,
        };
        let scope = g.name_scope(&self.name)?;
        let final_name = scope.scope().to_string();
        let mut updates = Vec::new();
        for (grad, var) in &pairs {
            let _u = g.name_scope(&format!("update_{}", var.op_name(g)))?;
            updates.extend(self.apply_dense(g, *grad, *var, powers)?);
        }
        if let (Some((b1p, b2p)), ApplyRule::Adam { beta1, beta2, .. }) = (powers, &self.rule) {
            let _c = g.control_dependencies(&updates)?;
            let u1 = g.assign(
                b1p,
                g.mul(b1p.value(), g.scalar_like(b1p.value(), *beta1)?)?,
            )?;
            let u2 = g.assign(
                b2p,
                g.mul(b2p.value(), g.scalar_like(b2p.value(), *beta2)?)?,
            )?;
            updates.push(u1.op());
            updates.push(u2.op());
        }
        let op = match global_step {
            Some(gs) => {
                let _c = g.control_dependencies(&updates)?;
                let one = g.scalar(gs.dtype(g), 1.0)?;
                g.named(&final_name).assign_add(gs, one)?.op()
            }
            None => g.named(&final_name).group(&updates)?,
        };
        drop(scope);
        g.add_to_collection(keys::TRAIN_OP, op);
        Ok(op)
    }

    /// `opt.minimize(loss, var_list, global_step)`: compute_gradients then apply_gradients.
    pub fn minimize(
        &self,
        g: &Graph,
        loss: Tensor,
        var_list: Option<&[Variable]>,
        global_step: Option<Variable>,
    ) -> Result<Operation> {
        let gv = self.compute_gradients(g, loss, var_list)?;
        self.apply_gradients(g, &gv, global_step)
    }
}

/// `tf.train.get_or_create_global_step()`: `global_step:0`, int64, value 0, not trainable, in the
/// GLOBAL_STEP and GLOBAL_VARIABLES collections.
pub fn get_or_create_global_step(g: &Graph) -> Result<Variable> {
    let existing: Vec<Variable> = g.get_collection(keys::GLOBAL_STEP, None)?;
    if let Some(v) = existing.first() {
        return Ok(*v);
    }
    let _root = g.name_scope("")?;
    g.get_variable_with(
        "global_step",
        &[],
        DType::I64,
        VarOptions {
            initializer: Some(Initializer::Zeros),
            trainable: false,
            collections: Some(vec![
                keys::GLOBAL_VARIABLES.into(),
                keys::GLOBAL_STEP.into(),
            ]),
        },
    )
}
