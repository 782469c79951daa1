//! Constants, placeholders, variables and assignment, identity, stop_gradient and no-ops:
//! the nodes the session matches by kind.

use super::tf::{TfAttr, TfNode};
use super::{expect_arity, same_dtype, GradContext, InferError, InferResult, Op, OpDef, OpKind};
use crate::dtype::{DType, Shape, TensorInfo};
use crate::error::{KernelError, OpResult, Result};
use crate::graph::{Graph, Operation, Tensor};
use crate::value::Value;
use ferroflow_cpu::Context;
use serde::{Deserialize, Serialize};

/// A constant value (TF's `Const`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Const {
    pub value: Value,
}

impl OpDef for Const {
    fn type_name(&self) -> &'static str {
        "Const"
    }
    fn tf_node(&self, _inputs: &[TensorInfo]) -> Option<TfNode> {
        Some(
            TfNode::default()
                .with("dtype", TfAttr::Type(self.value.dtype()))
                .with("value", TfAttr::Tensor(self.value.clone())),
        )
    }
    fn infer(&self, inputs: &[TensorInfo]) -> InferResult {
        expect_arity(inputs, 0, "Const")?;
        Ok(Some(TensorInfo::new(
            self.value.dtype(),
            Shape::known(self.value.shape()),
        )))
    }
    fn compute(&self, _ctx: &Context<'_>, _inputs: &[&Value]) -> OpResult<Value> {
        Ok(self.value.clone())
    }
    fn gradient(&self, _ctx: &GradContext<'_>, _grad: Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![])
    }
}

/// A value fed at run time (TF's `Placeholder`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Placeholder {
    pub dtype: DType,
    pub shape: Shape,
}

impl OpDef for Placeholder {
    fn type_name(&self) -> &'static str {
        "Placeholder"
    }
    fn tf_node(&self, _inputs: &[TensorInfo]) -> Option<TfNode> {
        Some(
            TfNode::default()
                .with("dtype", TfAttr::Type(self.dtype))
                .with("shape", TfAttr::Shape(self.shape.clone())),
        )
    }
    fn infer(&self, inputs: &[TensorInfo]) -> InferResult {
        expect_arity(inputs, 0, "Placeholder")?;
        // The known dimensions alone must fit a tensor, so that static shape arithmetic cannot overflow.
        if let Some(dims) = self.shape.dims() {
            let known: Vec<usize> = dims.iter().flatten().copied().collect();
            crate::Value::checked_len(&known).map_err(InferError::from)?;
        }
        Ok(Some(TensorInfo::new(self.dtype, self.shape.clone())))
    }
    fn kind(&self) -> OpKind {
        OpKind::Stateful
    }
    fn gradient(&self, _ctx: &GradContext<'_>, _grad: Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![])
    }
}

/// A placeholder that passes its input through when not fed (TF's `PlaceholderWithDefault`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlaceholderWithDefault {
    pub shape: Shape,
}

impl OpDef for PlaceholderWithDefault {
    fn type_name(&self) -> &'static str {
        "PlaceholderWithDefault"
    }
    fn infer(&self, inputs: &[TensorInfo]) -> InferResult {
        expect_arity(inputs, 1, "PlaceholderWithDefault")?;
        if !self.shape.compatible_with(&inputs[0].shape) {
            return Err(InferError::Shape(format!(
                "the default value's shape {} is not compatible with the placeholder's shape {}",
                inputs[0].shape, self.shape
            )));
        }
        Ok(Some(TensorInfo::new(inputs[0].dtype, self.shape.clone())))
    }
    fn compute(&self, _ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
        Ok(super::kernels::input(inputs, 0, "PlaceholderWithDefault")?.clone())
    }
    fn gradient(&self, _ctx: &GradContext<'_>, grad: Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(grad)])
    }
}

/// A variable's storage (TF's `VariableV2`): its value lives in the session.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VariableOp {
    pub dtype: DType,
    pub shape: Shape,
}

impl OpDef for VariableOp {
    fn type_name(&self) -> &'static str {
        "VariableV2"
    }
    fn tf_node(&self, _inputs: &[TensorInfo]) -> Option<TfNode> {
        Some(
            TfNode::default()
                .with("dtype", TfAttr::Type(self.dtype))
                .with("shape", TfAttr::Shape(self.shape.clone()))
                .with("container", TfAttr::Str(String::new()))
                .with("shared_name", TfAttr::Str(String::new())),
        )
    }
    fn infer(&self, inputs: &[TensorInfo]) -> InferResult {
        expect_arity(inputs, 0, "VariableV2")?;
        Ok(Some(TensorInfo::new(self.dtype, self.shape.clone())))
    }
    fn kind(&self) -> OpKind {
        OpKind::Stateful
    }
    fn gradient(&self, _ctx: &GradContext<'_>, _grad: Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![])
    }
}

/// Which assignment an `Assign` node performs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AssignMode {
    /// `var = value`
    Set,
    /// `var += value`
    Add,
    /// `var -= value`
    Sub,
}

/// Writes a variable (TF's `Assign`, `AssignAdd`, `AssignSub`); input 0 is the variable (a reference,
/// not read), input 1 the value. The output is the variable's new value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Assign {
    pub mode: AssignMode,
}

impl OpDef for Assign {
    fn type_name(&self) -> &'static str {
        match self.mode {
            AssignMode::Set => "Assign",
            AssignMode::Add => "AssignAdd",
            AssignMode::Sub => "AssignSub",
        }
    }
    fn tf_node(&self, inputs: &[TensorInfo]) -> Option<TfNode> {
        let node =
            TfNode::typed(inputs)?.with("use_locking", TfAttr::Bool(self.mode == AssignMode::Set));
        Some(match self.mode {
            AssignMode::Set => node.with("validate_shape", TfAttr::Bool(true)),
            AssignMode::Add | AssignMode::Sub => node,
        })
    }
    fn infer(&self, inputs: &[TensorInfo]) -> InferResult {
        expect_arity(inputs, 2, self.type_name())?;
        same_dtype(inputs)?;
        if !inputs[0].shape.compatible_with(&inputs[1].shape) {
            return Err(InferError::Shape(format!(
                "Assign requires shapes of both tensors to match. lhs shape= {} rhs shape= {}",
                inputs[0].shape, inputs[1].shape
            )));
        }
        Ok(Some(inputs[0].clone()))
    }
    fn kind(&self) -> OpKind {
        OpKind::Stateful
    }
}

/// Does nothing; used for grouping with control inputs (TF's `NoOp`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NoOp;

impl OpDef for NoOp {
    fn type_name(&self) -> &'static str {
        "NoOp"
    }
    fn tf_node(&self, _inputs: &[TensorInfo]) -> Option<TfNode> {
        Some(TfNode::default())
    }
    fn infer(&self, _inputs: &[TensorInfo]) -> InferResult {
        Ok(None)
    }
    fn kind(&self) -> OpKind {
        OpKind::Stateful
    }
}

/// Passes its input through (TF's `Identity`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Identity;

impl OpDef for Identity {
    fn type_name(&self) -> &'static str {
        "Identity"
    }
    fn tf_node(&self, inputs: &[TensorInfo]) -> Option<TfNode> {
        TfNode::typed(inputs)
    }
    fn infer(&self, inputs: &[TensorInfo]) -> InferResult {
        expect_arity(inputs, 1, "Identity")?;
        Ok(Some(inputs[0].clone()))
    }
    fn compute(&self, _ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
        Ok(super::kernels::input(inputs, 0, "Identity")?.clone())
    }
    fn gradient(&self, _ctx: &GradContext<'_>, grad: Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(grad)])
    }
}

/// Identity in the forward pass; blocks gradients (TF's `StopGradient`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StopGradient;

impl OpDef for StopGradient {
    fn type_name(&self) -> &'static str {
        "StopGradient"
    }
    fn tf_node(&self, inputs: &[TensorInfo]) -> Option<TfNode> {
        TfNode::typed(inputs)
    }
    fn infer(&self, inputs: &[TensorInfo]) -> InferResult {
        expect_arity(inputs, 1, "StopGradient")?;
        Ok(Some(inputs[0].clone()))
    }
    fn compute(&self, _ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
        Ok(super::kernels::input(inputs, 0, "StopGradient")?.clone())
    }
    fn gradient(&self, _ctx: &GradContext<'_>, _grad: Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![None])
    }
}

/// Passes a float tensor through, failing the run if it holds NaN or infinity (TF's `CheckNumerics`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckNumerics {
    pub message: String,
}

/// "NaN" or "Inf" when a value holds one (NaN first), else `None`.
pub fn non_finite(v: &Value) -> Option<&'static str> {
    fn scan<T: num_traits::Float>(a: &ndarray::ArrayD<T>) -> Option<&'static str> {
        if a.iter().any(|x| x.is_nan()) {
            Some("NaN")
        } else if a.iter().any(|x| x.is_infinite()) {
            Some("Inf")
        } else {
            None
        }
    }
    match v {
        Value::F32(a) => scan(a),
        Value::F64(a) => scan(a),
        _ => None,
    }
}

impl OpDef for CheckNumerics {
    fn type_name(&self) -> &'static str {
        "CheckNumerics"
    }
    fn infer(&self, inputs: &[TensorInfo]) -> InferResult {
        expect_arity(inputs, 1, "CheckNumerics")?;
        super::expect_float(&inputs[0], "the checked tensor")?;
        Ok(Some(inputs[0].clone()))
    }
    fn compute(&self, _ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
        let x = super::kernels::input(inputs, 0, "CheckNumerics")?;
        match non_finite(x) {
            Some(what) => Err(KernelError::InvalidArgument(format!(
                "{}: Tensor had {what} values",
                self.message
            ))),
            None => Ok(x.clone()),
        }
    }
    fn gradient(&self, _ctx: &GradContext<'_>, grad: Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(grad)])
    }
}

impl Graph {
    /// `tf.debugging.check_numerics(t, message)`: identity that fails the run, naming this node, when `t`
    /// holds NaN or infinity.
    pub fn check_numerics(&self, t: impl Into<Tensor>, message: &str) -> Result<Tensor> {
        self.add_node(
            CheckNumerics {
                message: message.into(),
            }
            .into(),
            &[t.into()],
            None,
            "CheckNumerics",
        )
    }

    /// `tf.add_check_numerics_ops()`: a check for every float tensor of the graph so far, grouped into one
    /// op (running it computes and checks them all, so it needs every placeholder they depend on).
    pub fn add_check_numerics_ops(&self) -> Result<Operation> {
        let mut checks = Vec::new();
        for op in self.operations() {
            let node = self.node(op.index())?;
            let float = node.output.as_ref().is_some_and(|o| o.dtype.is_float());
            if float
                && !matches!(
                    node.op.as_ref(),
                    Op::CheckNumerics(_) | Op::Assign(_) | Op::ApplyUpdate(_)
                )
            {
                let t = Tensor::from_index(op.index());
                checks.push(
                    self.check_numerics(
                        t,
                        &format!("{} : checked by add_check_numerics_ops", node.name),
                    )?
                    .op(),
                );
            }
        }
        self.named("CheckNumericsOps").group(&checks)
    }

    /// A constant (`tf.constant`), named `Const` by default.
    pub fn constant(&self, value: impl Into<Value>) -> Result<Tensor> {
        self.add_node(
            Const {
                value: value.into(),
            }
            .into(),
            &[],
            None,
            "Const",
        )
    }

    /// A scalar constant of the given dtype.
    pub fn scalar(&self, dtype: DType, x: f64) -> Result<Tensor> {
        self.constant(Value::scalar(dtype, x))
    }

    /// A scalar constant with the dtype of `like` (for building formulas over f32 or f64 tensors).
    pub fn scalar_like(&self, like: Tensor, x: f64) -> Result<Tensor> {
        let dt = self.dtype(like)?;
        self.scalar(dt, x)
    }

    /// A placeholder (`tf.placeholder(dtype, shape)`); name it with `g.named("X")`.
    pub fn placeholder(&self, dtype: DType, shape: impl Into<Shape>) -> Result<Tensor> {
        self.add_node(
            Placeholder {
                dtype,
                shape: shape.into(),
            }
            .into(),
            &[],
            None,
            "Placeholder",
        )
    }

    /// A placeholder that yields `default` when not fed (`tf.placeholder_with_default`), the pattern of
    /// a `training` flag that is false unless fed.
    pub fn placeholder_with_default(
        &self,
        default: impl Into<Tensor>,
        shape: impl Into<Shape>,
    ) -> Result<Tensor> {
        self.add_node(
            PlaceholderWithDefault {
                shape: shape.into(),
            }
            .into(),
            &[default.into()],
            None,
            "PlaceholderWithDefault",
        )
    }

    /// `tf.identity`.
    pub fn identity(&self, x: impl Into<Tensor>) -> Result<Tensor> {
        self.add_node(Identity.into(), &[x.into()], None, "Identity")
    }

    /// `tf.stop_gradient`: identity forward, no gradient backward.
    pub fn stop_gradient(&self, x: impl Into<Tensor>) -> Result<Tensor> {
        self.add_node(StopGradient.into(), &[x.into()], None, "StopGradient")
    }

    /// `tf.no_op`.
    pub fn no_op(&self) -> Result<Operation> {
        Ok(self.add_node(NoOp.into(), &[], None, "NoOp")?.op())
    }

    /// `tf.group(ops)`: a NoOp that runs all of `ops` first.
    pub fn group(&self, ops: &[Operation]) -> Result<Operation> {
        let name = self.take_pending_name();
        let _c = self.control_dependencies(ops)?;
        Ok(self
            .add_node(NoOp.into(), &[], name.as_deref(), "group_deps")?
            .op())
    }

    pub(crate) fn assign_mode(
        &self,
        var: crate::graph::Variable,
        value: Tensor,
        mode: AssignMode,
    ) -> Result<Tensor> {
        let default = match mode {
            AssignMode::Set => "Assign",
            AssignMode::Add => "AssignAdd",
            AssignMode::Sub => "AssignSub",
        };
        self.add_node(
            Assign { mode }.into(),
            &[var.var_tensor(), value],
            None,
            default,
        )
    }

    /// `tf.assign(var, value)`: the op that sets the variable when run; its output is the new value.
    pub fn assign(&self, var: crate::graph::Variable, value: impl Into<Tensor>) -> Result<Tensor> {
        self.assign_mode(var, value.into(), AssignMode::Set)
    }

    /// `tf.assign_add(var, delta)`.
    pub fn assign_add(
        &self,
        var: crate::graph::Variable,
        delta: impl Into<Tensor>,
    ) -> Result<Tensor> {
        self.assign_mode(var, delta.into(), AssignMode::Add)
    }

    /// `tf.assign_sub(var, delta)`.
    pub fn assign_sub(
        &self,
        var: crate::graph::Variable,
        delta: impl Into<Tensor>,
    ) -> Result<Tensor> {
        self.assign_mode(var, delta.into(), AssignMode::Sub)
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
