//! Elementwise functions of one float tensor (math and activations), plus zeros_like/ones_like.

use super::kernels::{map_float, Float};
use super::{expect_arity, expect_float, GradContext, InferResult, OpDef};
use crate::dtype::TensorInfo;
use crate::error::{OpResult, Result};
use crate::graph::{Graph, Tensor};
use crate::value::Value;
use serde::{Deserialize, Serialize};

/// SELU's alpha (Klambauer et al. 2017), as in TF.
pub const SELU_ALPHA: f64 = 1.673_263_242_354_377_3;
/// SELU's scale, as in TF.
pub const SELU_SCALE: f64 = 1.050_700_987_355_480_5;

/// Which elementwise function a `Unary` node applies.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum UnaryKind {
    Neg,
    Square,
    Sqrt,
    Exp,
    Log,
    Abs,
    Sign,
    Reciprocal,
    Sigmoid,
    Tanh,
    Relu,
    Relu6,
    /// `x > 0 ? x : alpha·x`
    LeakyRelu { alpha: f64 },
    Elu,
    Selu,
    Softplus,
    Floor,
}

impl UnaryKind {
    /// The function itself, for one element.
    pub fn apply<T: Float>(self, x: T) -> T {
        let zero = T::zero();
        let one = T::one();
        match self {
            UnaryKind::Neg => -x,
            UnaryKind::Square => x * x,
            UnaryKind::Sqrt => x.sqrt(),
            UnaryKind::Exp => x.exp(),
            UnaryKind::Log => x.ln(),
            UnaryKind::Abs => x.abs(),
            UnaryKind::Sign => {
                if x > zero {
                    one
                } else if x < zero {
                    -one
                } else {
                    x // keeps 0 and NaN as TF does
                }
            }
            UnaryKind::Reciprocal => one / x,
            UnaryKind::Sigmoid => one / (one + (-x).exp()),
            UnaryKind::Tanh => x.tanh(),
            UnaryKind::Relu => {
                if x > zero {
                    x
                } else {
                    zero
                }
            }
            UnaryKind::Relu6 => x.max(zero).min(T::from_f64(6.0)),
            UnaryKind::LeakyRelu { alpha } => {
                if x > zero {
                    x
                } else {
                    x * T::from_f64(alpha)
                }
            }
            UnaryKind::Elu => {
                if x > zero {
                    x
                } else {
                    x.exp_m1()
                }
            }
            UnaryKind::Selu => {
                let scale = T::from_f64(SELU_SCALE);
                if x > zero {
                    scale * x
                } else {
                    scale * T::from_f64(SELU_ALPHA) * x.exp_m1()
                }
            }
            // log(1 + e^x) computed without overflow: max(x, 0) + log1p(e^-|x|).
            UnaryKind::Softplus => x.max(zero) + (-x.abs()).exp().ln_1p(),
            UnaryKind::Floor => x.floor(),
        }
    }

    fn type_name(self) -> &'static str {
        match self {
            UnaryKind::Neg => "Neg",
            UnaryKind::Square => "Square",
            UnaryKind::Sqrt => "Sqrt",
            UnaryKind::Exp => "Exp",
            UnaryKind::Log => "Log",
            UnaryKind::Abs => "Abs",
            UnaryKind::Sign => "Sign",
            UnaryKind::Reciprocal => "Reciprocal",
            UnaryKind::Sigmoid => "Sigmoid",
            UnaryKind::Tanh => "Tanh",
            UnaryKind::Relu => "Relu",
            UnaryKind::Relu6 => "Relu6",
            UnaryKind::LeakyRelu { .. } => "LeakyRelu",
            UnaryKind::Elu => "Elu",
            UnaryKind::Selu => "Selu",
            UnaryKind::Softplus => "Softplus",
            UnaryKind::Floor => "Floor",
        }
    }
}

/// Applies `k` with the match on the kind hoisted out of the loop, so each loop is specialized (and
/// vectorized) for one function.
fn map_float_kind(x: &Value, k: UnaryKind, op: &str) -> OpResult<Value> {
    macro_rules! each {
        ($($kind:pat),*) => {
            match k {
                $($kind => map_float(x, op, |v| k.apply(v), |v| k.apply(v)),)*
            }
        };
    }
    each!(
        UnaryKind::Neg,
        UnaryKind::Square,
        UnaryKind::Sqrt,
        UnaryKind::Exp,
        UnaryKind::Log,
        UnaryKind::Abs,
        UnaryKind::Sign,
        UnaryKind::Reciprocal,
        UnaryKind::Sigmoid,
        UnaryKind::Tanh,
        UnaryKind::Relu,
        UnaryKind::Relu6,
        UnaryKind::LeakyRelu { .. },
        UnaryKind::Elu,
        UnaryKind::Selu,
        UnaryKind::Softplus,
        UnaryKind::Floor
    )
}

/// An elementwise function of one float tensor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Unary {
    pub kind: UnaryKind,
}

impl OpDef for Unary {
    fn type_name(&self) -> &'static str {
        self.kind.type_name()
    }
    fn infer(&self, inputs: &[TensorInfo]) -> InferResult {
        expect_arity(inputs, 1, self.type_name())?;
        if !matches!(self.kind, UnaryKind::Neg | UnaryKind::Abs | UnaryKind::Square | UnaryKind::Sign) {
            expect_float(&inputs[0], "the input")?;
        }
        Ok(Some(inputs[0].clone()))
    }
    fn compute(&self, inputs: &[&Value]) -> OpResult<Value> {
        let x = super::kernels::input(inputs, 0, self.type_name())?;
        let k = self.kind;
        match x {
            Value::I64(a) => match k {
                UnaryKind::Neg => Ok(Value::I64(a.mapv(|v| v.wrapping_neg()))),
                UnaryKind::Abs => Ok(Value::I64(a.mapv(|v| v.wrapping_abs()))),
                UnaryKind::Square => Ok(Value::I64(a.mapv(|v| v.wrapping_mul(v)))),
                UnaryKind::Sign => Ok(Value::I64(a.mapv(i64::signum))),
                _ => Err(format!("{} needs a float input, got int64", self.type_name())),
            },
            _ => map_float_kind(x, k, self.type_name()),
        }
    }
    fn gradient(&self, ctx: &GradContext<'_>, grad: Tensor) -> Result<Vec<Option<Tensor>>> {
        let g = ctx.graph;
        let x = ctx.input(0)?;
        let y = ctx.output;
        let c = |v: f64| g.scalar_like(x, v);
        let dx = match self.kind {
            UnaryKind::Neg => g.neg(grad)?,
            UnaryKind::Square => g.mul(grad, g.mul(c(2.0)?, x)?)?,
            UnaryKind::Sqrt => g.div(g.mul(grad, c(0.5)?)?, y)?,
            UnaryKind::Exp => g.mul(grad, y)?,
            UnaryKind::Log => g.div(grad, x)?,
            UnaryKind::Abs => g.mul(grad, g.sign(x)?)?,
            UnaryKind::Sign | UnaryKind::Floor => g.zeros_like(x)?,
            UnaryKind::Reciprocal => g.neg(g.mul(grad, g.square(y)?)?)?,
            UnaryKind::Sigmoid => g.mul(grad, g.mul(y, g.sub(c(1.0)?, y)?)?)?,
            UnaryKind::Tanh => g.mul(grad, g.sub(c(1.0)?, g.square(y)?)?)?,
            // 0 at x = 0, as TF's ReluGrad.
            UnaryKind::Relu => g.mul(grad, g.cast(g.greater(x, c(0.0)?)?, g.dtype(x)?)?)?,
            UnaryKind::Relu6 => {
                let inside = g.logical_and(g.greater(x, c(0.0)?)?, g.less(x, c(6.0)?)?)?;
                g.mul(grad, g.cast(inside, g.dtype(x)?)?)?
            }
            // alpha at x = 0.
            UnaryKind::LeakyRelu { alpha } => g.select(g.greater(x, c(0.0)?)?, grad, g.mul(grad, c(alpha)?)?)?,
            // From the output: y < 0 ? g·(y+1) : g, so 1 at x = 0.
            UnaryKind::Elu => g.select(g.less(y, c(0.0)?)?, g.mul(grad, g.add(y, c(1.0)?)?)?, grad)?,
            // y < 0 ? g·(y + scale·alpha) : g·scale, so scale at x = 0.
            UnaryKind::Selu => g.select(
                g.less(y, c(0.0)?)?,
                g.mul(grad, g.add(y, c(SELU_SCALE * SELU_ALPHA)?)?)?,
                g.mul(grad, c(SELU_SCALE)?)?,
            )?,
            UnaryKind::Softplus => g.mul(grad, g.sigmoid(x)?)?,
        };
        Ok(vec![Some(dx)])
    }
}

/// A tensor of the input's shape and dtype filled with one value (TF's `ZerosLike`/`OnesLike`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FillLike {
    pub value: f64,
}

impl OpDef for FillLike {
    fn type_name(&self) -> &'static str {
        if self.value == 0.0 {
            "ZerosLike"
        } else if self.value == 1.0 {
            "OnesLike"
        } else {
            "FillLike"
        }
    }
    fn infer(&self, inputs: &[TensorInfo]) -> InferResult {
        expect_arity(inputs, 1, self.type_name())?;
        Ok(Some(inputs[0].clone()))
    }
    fn compute(&self, inputs: &[&Value]) -> OpResult<Value> {
        let x = super::kernels::input(inputs, 0, self.type_name())?;
        Ok(Value::filled(x.dtype(), x.shape(), self.value))
    }
    fn gradient(&self, _ctx: &GradContext<'_>, _grad: Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![None])
    }
}

impl Graph {
    fn unary(&self, kind: UnaryKind, x: Tensor) -> Result<Tensor> {
        self.add_node(Unary { kind }.into(), &[x], None, kind.type_name())
    }
    /// `tf.negative` (`-x`).
    pub fn neg(&self, x: impl Into<Tensor>) -> Result<Tensor> {
        self.unary(UnaryKind::Neg, x.into())
    }
    /// `tf.square`.
    pub fn square(&self, x: impl Into<Tensor>) -> Result<Tensor> {
        self.unary(UnaryKind::Square, x.into())
    }
    /// `tf.sqrt`.
    pub fn sqrt(&self, x: impl Into<Tensor>) -> Result<Tensor> {
        self.unary(UnaryKind::Sqrt, x.into())
    }
    /// `tf.exp`.
    pub fn exp(&self, x: impl Into<Tensor>) -> Result<Tensor> {
        self.unary(UnaryKind::Exp, x.into())
    }
    /// `tf.log` (natural logarithm).
    pub fn log(&self, x: impl Into<Tensor>) -> Result<Tensor> {
        self.unary(UnaryKind::Log, x.into())
    }
    /// `tf.abs`.
    pub fn abs(&self, x: impl Into<Tensor>) -> Result<Tensor> {
        self.unary(UnaryKind::Abs, x.into())
    }
    /// `tf.sign` (0 at 0).
    pub fn sign(&self, x: impl Into<Tensor>) -> Result<Tensor> {
        self.unary(UnaryKind::Sign, x.into())
    }
    /// `tf.reciprocal` (1/x).
    pub fn reciprocal(&self, x: impl Into<Tensor>) -> Result<Tensor> {
        self.unary(UnaryKind::Reciprocal, x.into())
    }
    /// `tf.sigmoid`, the logistic function.
    pub fn sigmoid(&self, x: impl Into<Tensor>) -> Result<Tensor> {
        self.unary(UnaryKind::Sigmoid, x.into())
    }
    /// `tf.tanh`.
    pub fn tanh(&self, x: impl Into<Tensor>) -> Result<Tensor> {
        self.unary(UnaryKind::Tanh, x.into())
    }
    /// `tf.nn.relu`: max(x, 0).
    pub fn relu(&self, x: impl Into<Tensor>) -> Result<Tensor> {
        self.unary(UnaryKind::Relu, x.into())
    }
    /// `tf.nn.relu6`: min(max(x, 0), 6).
    pub fn relu6(&self, x: impl Into<Tensor>) -> Result<Tensor> {
        self.unary(UnaryKind::Relu6, x.into())
    }
    /// `tf.nn.leaky_relu(x, alpha)`; TF's default alpha is 0.2 ([`Graph::leaky_relu_default`]).
    pub fn leaky_relu(&self, x: impl Into<Tensor>, alpha: f64) -> Result<Tensor> {
        self.unary(UnaryKind::LeakyRelu { alpha }, x.into())
    }
    /// `tf.nn.leaky_relu(x)` with TF's default alpha 0.2.
    pub fn leaky_relu_default(&self, x: impl Into<Tensor>) -> Result<Tensor> {
        self.leaky_relu(x, 0.2)
    }
    /// `tf.nn.elu` (alpha fixed at 1, as in TF).
    pub fn elu(&self, x: impl Into<Tensor>) -> Result<Tensor> {
        self.unary(UnaryKind::Elu, x.into())
    }
    /// `tf.nn.selu` with TF's alpha and scale.
    pub fn selu(&self, x: impl Into<Tensor>) -> Result<Tensor> {
        self.unary(UnaryKind::Selu, x.into())
    }
    /// `tf.nn.softplus`: log(1 + e^x), computed stably.
    pub fn softplus(&self, x: impl Into<Tensor>) -> Result<Tensor> {
        self.unary(UnaryKind::Softplus, x.into())
    }
    /// `tf.floor`.
    pub fn floor(&self, x: impl Into<Tensor>) -> Result<Tensor> {
        self.unary(UnaryKind::Floor, x.into())
    }
    /// `tf.zeros_like`.
    pub fn zeros_like(&self, x: impl Into<Tensor>) -> Result<Tensor> {
        self.add_node(FillLike { value: 0.0 }.into(), &[x.into()], None, "zeros_like")
    }
    /// `tf.ones_like`.
    pub fn ones_like(&self, x: impl Into<Tensor>) -> Result<Tensor> {
        self.add_node(FillLike { value: 1.0 }.into(), &[x.into()], None, "ones_like")
    }
}
