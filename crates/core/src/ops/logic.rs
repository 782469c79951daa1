//! Elementwise comparisons and logic of tensors with numpy broadcasting, and `where` (select).

use super::binary::broadcast_infer;
use super::kernels::zip_broadcast;
use super::{expect_arity, GradContext, InferError, InferResult, OpDef};
use crate::dtype::{DType, TensorInfo};
use crate::error::{KernelError, OpResult, Result};
use crate::graph::{Graph, Tensor};
use crate::value::Value;
use ferroflow_cpu::Context;
use serde::{Deserialize, Serialize};

/// Which comparison a `Compare` node performs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareKind {
    Equal,
    NotEqual,
    Greater,
    GreaterEqual,
    Less,
    LessEqual,
}

impl CompareKind {
    fn test<T: PartialOrd>(self, x: &T, y: &T) -> bool {
        match self {
            CompareKind::Equal => x == y,
            CompareKind::NotEqual => x != y,
            CompareKind::Greater => x > y,
            CompareKind::GreaterEqual => x >= y,
            CompareKind::Less => x < y,
            CompareKind::LessEqual => x <= y,
        }
    }
    fn type_name(self) -> &'static str {
        match self {
            CompareKind::Equal => "Equal",
            CompareKind::NotEqual => "NotEqual",
            CompareKind::Greater => "Greater",
            CompareKind::GreaterEqual => "GreaterEqual",
            CompareKind::Less => "Less",
            CompareKind::LessEqual => "LessEqual",
        }
    }
}

/// Elementwise comparison with broadcasting; the output is bool. Not differentiable.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Compare {
    pub kind: CompareKind,
}

impl OpDef for Compare {
    fn type_name(&self) -> &'static str {
        self.kind.type_name()
    }
    fn infer(&self, inputs: &[TensorInfo]) -> InferResult {
        broadcast_infer(inputs, self.type_name(), Some(DType::Bool))
    }
    fn compute(&self, ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
        let k = self.kind;
        let out = match (
            super::kernels::input(inputs, 0, "Compare")?,
            super::kernels::input(inputs, 1, "Compare")?,
        ) {
            (Value::F32(a), Value::F32(b)) => zip_broadcast(ctx, a, b, |x, y| k.test(&x, &y))?,
            (Value::F64(a), Value::F64(b)) => zip_broadcast(ctx, a, b, |x, y| k.test(&x, &y))?,
            (Value::I64(a), Value::I64(b)) => zip_broadcast(ctx, a, b, |x, y| k.test(&x, &y))?,
            (Value::Bool(a), Value::Bool(b)) => zip_broadcast(ctx, a, b, |x, y| k.test(&x, &y))?,
            (a, b) => {
                return Err(KernelError::DType(format!(
                    "cannot compare {} with {}",
                    a.dtype(),
                    b.dtype()
                )))
            }
        };
        Ok(Value::Bool(out))
    }
    fn gradient(&self, _ctx: &GradContext<'_>, _grad: Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![None, None])
    }
}

/// Which logical function a `Logical` node computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogicalKind {
    And,
    Or,
    Not,
}

/// Elementwise logic on bool tensors (`logical_and`, `logical_or`, `logical_not`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Logical {
    pub kind: LogicalKind,
}

impl OpDef for Logical {
    fn type_name(&self) -> &'static str {
        match self.kind {
            LogicalKind::And => "LogicalAnd",
            LogicalKind::Or => "LogicalOr",
            LogicalKind::Not => "LogicalNot",
        }
    }
    fn infer(&self, inputs: &[TensorInfo]) -> InferResult {
        if inputs.iter().any(|i| i.dtype != DType::Bool) {
            return Err(InferError::DType("logical ops take bool inputs".into()));
        }
        if self.kind == LogicalKind::Not {
            expect_arity(inputs, 1, "LogicalNot")?;
            return Ok(Some(inputs[0].clone()));
        }
        broadcast_infer(inputs, self.type_name(), None)
    }
    fn compute(&self, ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
        let bool_in = |i: usize| -> OpResult<&ndarray::ArrayD<bool>> {
            super::kernels::input(inputs, i, "Logical")?
                .as_bool()
                .ok_or_else(|| KernelError::DType("logical ops take bool inputs".into()))
        };
        let out = match self.kind {
            LogicalKind::Not => bool_in(0)?.mapv(|x| !x),
            LogicalKind::And => zip_broadcast(ctx, bool_in(0)?, bool_in(1)?, |x, y| x && y)?,
            LogicalKind::Or => zip_broadcast(ctx, bool_in(0)?, bool_in(1)?, |x, y| x || y)?,
        };
        Ok(Value::Bool(out))
    }
    fn gradient(&self, ctx: &GradContext<'_>, _grad: Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![None; ctx.inputs.len()])
    }
}

/// `where(cond, a, b)` with broadcasting of all three (TF's `where_v2`/`SelectV2`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Select;

fn select_typed<T: Clone + 'static>(
    ctx: &Context<'_>,
    c: &ndarray::ArrayD<bool>,
    a: &ndarray::ArrayD<T>,
    b: &ndarray::ArrayD<T>,
) -> OpResult<ndarray::ArrayD<T>> {
    let ab_shape = super::kernels::broadcast_shapes(a.shape(), b.shape())?;
    let shape = super::kernels::broadcast_shapes(c.shape(), &ab_shape)?;
    let d = ndarray::IxDyn(&shape);
    let cv = c
        .broadcast(d.clone())
        .ok_or_else(|| KernelError::Shape("broadcast failed".into()))?;
    let av = a
        .broadcast(d.clone())
        .ok_or_else(|| KernelError::Shape("broadcast failed".into()))?;
    let bv = b
        .broadcast(d.clone())
        .ok_or_else(|| KernelError::Shape("broadcast failed".into()))?;
    let mut out = ctx.try_vec(Value::checked_len(&shape)?)?;
    ndarray::Zip::from(&cv)
        .and(&av)
        .and(&bv)
        .for_each(|&c, x, y| out.push(if c { x.clone() } else { y.clone() }));
    ndarray::ArrayD::from_shape_vec(d, out).map_err(KernelError::from)
}

impl OpDef for Select {
    fn type_name(&self) -> &'static str {
        "SelectV2"
    }
    fn infer(&self, inputs: &[TensorInfo]) -> InferResult {
        expect_arity(inputs, 3, "SelectV2")?;
        if inputs[0].dtype != DType::Bool {
            return Err(InferError::DType(format!(
                "the condition must be bool, got {}",
                inputs[0].dtype
            )));
        }
        let ab = broadcast_infer(&inputs[1..], "SelectV2", None)?
            .ok_or_else(|| InferError::Shape("no output".into()))?;
        let shape = inputs[0]
            .shape
            .broadcast(&ab.shape)
            .map_err(InferError::Shape)?;
        Ok(Some(TensorInfo::new(ab.dtype, shape)))
    }
    fn compute(&self, ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
        let c = super::kernels::input(inputs, 0, "SelectV2")?
            .as_bool()
            .ok_or_else(|| KernelError::DType("the condition must be bool".into()))?;
        match (
            super::kernels::input(inputs, 1, "SelectV2")?,
            super::kernels::input(inputs, 2, "SelectV2")?,
        ) {
            (Value::F32(a), Value::F32(b)) => Ok(Value::F32(select_typed(ctx, c, a, b)?)),
            (Value::F64(a), Value::F64(b)) => Ok(Value::F64(select_typed(ctx, c, a, b)?)),
            (Value::I64(a), Value::I64(b)) => Ok(Value::I64(select_typed(ctx, c, a, b)?)),
            (Value::Bool(a), Value::Bool(b)) => Ok(Value::Bool(select_typed(ctx, c, a, b)?)),
            (a, b) => Err(KernelError::DType(format!(
                "branches must share a dtype, got {} and {}",
                a.dtype(),
                b.dtype()
            ))),
        }
    }
    fn gradient(&self, ctx: &GradContext<'_>, grad: Tensor) -> Result<Vec<Option<Tensor>>> {
        let g = ctx.graph;
        let (c, a, b) = (ctx.input(0)?, ctx.input(1)?, ctx.input(2)?);
        let zeros = g.zeros_like(grad)?;
        let ga = g.sum_to_shape_of(g.select(c, grad, zeros)?, a)?;
        let gb = g.sum_to_shape_of(g.select(c, zeros, grad)?, b)?;
        Ok(vec![None, Some(ga), Some(gb)])
    }
}

impl Graph {
    fn compare(&self, kind: CompareKind, x: Tensor, y: Tensor) -> Result<Tensor> {
        self.add_node(Compare { kind }.into(), &[x, y], None, kind.type_name())
    }
    /// `tf.equal(x, y)` (bool).
    pub fn equal(&self, x: impl Into<Tensor>, y: impl Into<Tensor>) -> Result<Tensor> {
        self.compare(CompareKind::Equal, x.into(), y.into())
    }
    /// `tf.not_equal(x, y)` (bool).
    pub fn not_equal(&self, x: impl Into<Tensor>, y: impl Into<Tensor>) -> Result<Tensor> {
        self.compare(CompareKind::NotEqual, x.into(), y.into())
    }
    /// `tf.greater(x, y)` (bool).
    pub fn greater(&self, x: impl Into<Tensor>, y: impl Into<Tensor>) -> Result<Tensor> {
        self.compare(CompareKind::Greater, x.into(), y.into())
    }
    /// `tf.greater_equal(x, y)` (bool).
    pub fn greater_equal(&self, x: impl Into<Tensor>, y: impl Into<Tensor>) -> Result<Tensor> {
        self.compare(CompareKind::GreaterEqual, x.into(), y.into())
    }
    /// `tf.less(x, y)` (bool).
    pub fn less(&self, x: impl Into<Tensor>, y: impl Into<Tensor>) -> Result<Tensor> {
        self.compare(CompareKind::Less, x.into(), y.into())
    }
    /// `tf.less_equal(x, y)` (bool).
    pub fn less_equal(&self, x: impl Into<Tensor>, y: impl Into<Tensor>) -> Result<Tensor> {
        self.compare(CompareKind::LessEqual, x.into(), y.into())
    }
    /// `tf.logical_and(x, y)`.
    pub fn logical_and(&self, x: impl Into<Tensor>, y: impl Into<Tensor>) -> Result<Tensor> {
        self.add_node(
            Logical {
                kind: LogicalKind::And,
            }
            .into(),
            &[x.into(), y.into()],
            None,
            "LogicalAnd",
        )
    }
    /// `tf.logical_or(x, y)`.
    pub fn logical_or(&self, x: impl Into<Tensor>, y: impl Into<Tensor>) -> Result<Tensor> {
        self.add_node(
            Logical {
                kind: LogicalKind::Or,
            }
            .into(),
            &[x.into(), y.into()],
            None,
            "LogicalOr",
        )
    }
    /// `tf.logical_not(x)`.
    pub fn logical_not(&self, x: impl Into<Tensor>) -> Result<Tensor> {
        self.add_node(
            Logical {
                kind: LogicalKind::Not,
            }
            .into(),
            &[x.into()],
            None,
            "LogicalNot",
        )
    }
    /// `tf.where(cond, a, b)`: elementwise choice, all three broadcast (TF2's `where_v2` semantics).
    pub fn select(
        &self,
        cond: impl Into<Tensor>,
        a: impl Into<Tensor>,
        b: impl Into<Tensor>,
    ) -> Result<Tensor> {
        self.add_node(
            Select.into(),
            &[cond.into(), a.into(), b.into()],
            None,
            "SelectV2",
        )
    }
}

#[cfg(test)]
#[path = "logic_tests.rs"]
mod tests;
