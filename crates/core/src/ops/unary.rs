//! Elementwise functions of one float tensor (math and activations), plus zeros_like/ones_like.

use super::kernels::{map_float, Float};
use super::{expect_arity, expect_float, GradContext, InferResult, OpDef};
use crate::dtype::TensorInfo;
use crate::error::{OpResult, Result};
use crate::graph::{Graph, Tensor};
use crate::value::Value;
use ferroflow_cpu::Context;
use serde::{Deserialize, Serialize};

/// TF's `Relu` of one value: `x` below zero becomes zero, NaN passes through. Also the activation of
/// the plan's fused `AddRelu` and `BatchNormalization+Relu` steps.
#[inline(always)]
pub(crate) fn relu<T: Float>(x: T) -> T {
    if x < T::zero() {
        T::zero()
    } else {
        x
    }
}

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
    LeakyRelu {
        alpha: f64,
    },
    Elu,
    Selu,
    Softplus,
    Floor,
}

impl UnaryKind {
    /// The function itself, for one element.
    #[inline(always)]
    pub fn apply<T: Float>(self, x: T) -> T {
        let zero = T::zero();
        let one = T::one();
        match self {
            UnaryKind::Neg => -x,
            UnaryKind::Square => x * x,
            UnaryKind::Sqrt => x.sqrt(),
            UnaryKind::Exp => x.exp_fast(),
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
            UnaryKind::Sigmoid => one / (one + (-x).exp_fast()),
            UnaryKind::Tanh => x.tanh(),
            UnaryKind::Relu => relu(x),
            UnaryKind::Relu6 => {
                let six = T::from_f64(6.0);
                if x < zero {
                    zero
                } else if x > six {
                    six
                } else {
                    x
                }
            }
            UnaryKind::LeakyRelu { alpha } => {
                if x > zero {
                    x
                } else {
                    x * T::from_f64(alpha)
                }
            }
            // Both sides computed, then chosen: a select the loop can vectorize.
            UnaryKind::Elu => {
                let e = x.exp_m1_fast();
                if x > zero {
                    x
                } else {
                    e
                }
            }
            UnaryKind::Selu => {
                let scale = T::from_f64(SELU_SCALE);
                let e = scale * T::from_f64(SELU_ALPHA) * x.exp_m1_fast();
                if x > zero {
                    scale * x
                } else {
                    e
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
/// One arm of [`with_const_kind`]: binds the kind's f32 and f64 functions, then evaluates the body.
macro_rules! const_kind_arm {
    ($kind:expr, $a:ident, $b:ident, $body:expr) => {{
        let $a = ferroflow_cpu::simd::inlined(
            #[inline(always)]
            |v: f32| $kind.apply(v),
        );
        let $b = ferroflow_cpu::simd::inlined(
            #[inline(always)]
            |v: f64| $kind.apply(v),
        );
        $body
    }};
}

/// Evaluates `$body` with `$a`/`$b` bound to the kind's function (f32, f64) as closures that call
/// `apply` on a constant kind, so the match inside `apply` folds away and each loop vectorizes (a
/// runtime `k.apply(v)` kept the match in the loop: relu ran at about 1 GB/s).
macro_rules! with_const_kind {
    ($k:expr, |$a:ident, $b:ident| $body:expr) => {
        match $k {
            UnaryKind::Neg => const_kind_arm!(UnaryKind::Neg, $a, $b, $body),
            UnaryKind::Square => const_kind_arm!(UnaryKind::Square, $a, $b, $body),
            UnaryKind::Sqrt => const_kind_arm!(UnaryKind::Sqrt, $a, $b, $body),
            UnaryKind::Exp => const_kind_arm!(UnaryKind::Exp, $a, $b, $body),
            UnaryKind::Log => const_kind_arm!(UnaryKind::Log, $a, $b, $body),
            UnaryKind::Abs => const_kind_arm!(UnaryKind::Abs, $a, $b, $body),
            UnaryKind::Sign => const_kind_arm!(UnaryKind::Sign, $a, $b, $body),
            UnaryKind::Reciprocal => const_kind_arm!(UnaryKind::Reciprocal, $a, $b, $body),
            UnaryKind::Sigmoid => const_kind_arm!(UnaryKind::Sigmoid, $a, $b, $body),
            UnaryKind::Tanh => const_kind_arm!(UnaryKind::Tanh, $a, $b, $body),
            UnaryKind::Relu => const_kind_arm!(UnaryKind::Relu, $a, $b, $body),
            UnaryKind::Relu6 => const_kind_arm!(UnaryKind::Relu6, $a, $b, $body),
            UnaryKind::Elu => const_kind_arm!(UnaryKind::Elu, $a, $b, $body),
            UnaryKind::Selu => const_kind_arm!(UnaryKind::Selu, $a, $b, $body),
            UnaryKind::Softplus => const_kind_arm!(UnaryKind::Softplus, $a, $b, $body),
            UnaryKind::Floor => const_kind_arm!(UnaryKind::Floor, $a, $b, $body),
            UnaryKind::LeakyRelu { alpha } => {
                const_kind_arm!(UnaryKind::LeakyRelu { alpha }, $a, $b, $body)
            }
        }
    };
}

fn map_float_kind(ctx: &Context<'_>, x: &Value, k: UnaryKind, op: &str) -> OpResult<Value> {
    with_const_kind!(k, |f32f, f64f| map_float(ctx, x, op, f32f, f64f))
}

/// `x = f(x)` in place for an f32 or f64 value.
fn map_float_kind_in_place(
    ctx: &Context<'_>,
    x: &mut Value,
    k: UnaryKind,
    op: &str,
) -> OpResult<()> {
    with_const_kind!(k, |f32f, f64f| match x {
        Value::F32(a) => a
            .as_slice_mut()
            .map(|s| super::kernels::par_update(ctx, s, f32f))
            .ok_or_else(|| format!("{op}: non-contiguous buffer")),
        Value::F64(a) => a
            .as_slice_mut()
            .map(|s| super::kernels::par_update(ctx, s, f64f))
            .ok_or_else(|| format!("{op}: non-contiguous buffer")),
        v => Err(format!("{op} needs a float input, got {}", v.dtype())),
    })
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
        if !matches!(
            self.kind,
            UnaryKind::Neg | UnaryKind::Abs | UnaryKind::Square | UnaryKind::Sign
        ) {
            expect_float(&inputs[0], "the input")?;
        }
        Ok(Some(inputs[0].clone()))
    }
    fn compute(&self, ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
        let x = super::kernels::input(inputs, 0, self.type_name())?;
        let k = self.kind;
        match x {
            Value::I64(a) => match k {
                UnaryKind::Neg => Ok(Value::I64(a.mapv(|v| v.wrapping_neg()))),
                UnaryKind::Abs => Ok(Value::I64(a.mapv(|v| v.wrapping_abs()))),
                UnaryKind::Square => Ok(Value::I64(a.mapv(|v| v.wrapping_mul(v)))),
                UnaryKind::Sign => Ok(Value::I64(a.mapv(i64::signum))),
                _ => Err(format!(
                    "{} needs a float input, got int64",
                    self.type_name()
                )),
            },
            _ => map_float_kind(ctx, x, k, self.type_name()),
        }
    }
    fn in_place_input(&self, inputs: &[&Value]) -> Option<usize> {
        inputs.first()?.is_writable_float().then_some(0)
    }
    fn compute_in_place(
        &self,
        ctx: &Context<'_>,
        _k: usize,
        target: &mut Value,
        _others: &[&Value],
    ) -> OpResult<()> {
        map_float_kind_in_place(ctx, target, self.kind, self.type_name())
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
            UnaryKind::Sigmoid | UnaryKind::Tanh => g.activation_grad(self.kind, grad, y)?,
            // Fused one-pass kernels (TF's ReluGrad, EluGrad, ...): see `ActivationGrad` for the values at
            // the kinks (relu/relu6 0 at 0, leaky_relu alpha, elu 1, selu scale). Relu and relu6 read
            // their output (y > 0 exactly where x > 0, and 0 < y < 6 where 0 < x < 6), so the
            // pre-activation dies at the forward op and its buffer is reused for the output.
            UnaryKind::Relu | UnaryKind::Relu6 => g.activation_grad(self.kind, grad, y)?,
            UnaryKind::LeakyRelu { .. } => g.activation_grad(self.kind, grad, x)?,
            UnaryKind::Elu | UnaryKind::Selu => g.activation_grad(self.kind, grad, y)?,
            UnaryKind::Softplus => g.mul(grad, g.sigmoid(x)?)?,
        };
        Ok(vec![Some(dx)])
    }
}

/// The fused backward pass of an activation: `g · f'` in one pass, from the input x (leaky_relu), the
/// output y (sigmoid, tanh, elu, selu) or either (relu, relu6: the same sign pattern; the gradient
/// builder passes y), as TF's `ReluGrad`, `SigmoidGrad`, ...
/// Inputs: `(g, x or y)`. It is itself differentiable, for second-order gradients.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActivationGrad {
    pub kind: UnaryKind,
}

/// One arm of [`with_derivative`].
macro_rules! derivative_arm {
    ($kind:expr, $d:ident, $body:expr) => {{
        let $d = ferroflow_cpu::simd::inlined(
            #[inline(always)]
            |v| ActivationGrad::derivative($kind, v),
        );
        $body
    }};
}

/// Evaluates `$body` with `$d` bound to f' of a constant kind (see [`with_const_kind`]).
macro_rules! with_derivative {
    ($k:expr, |$d:ident| $body:expr) => {
        match $k {
            UnaryKind::Relu => derivative_arm!(UnaryKind::Relu, $d, $body),
            UnaryKind::Relu6 => derivative_arm!(UnaryKind::Relu6, $d, $body),
            UnaryKind::Sigmoid => derivative_arm!(UnaryKind::Sigmoid, $d, $body),
            UnaryKind::Tanh => derivative_arm!(UnaryKind::Tanh, $d, $body),
            UnaryKind::Elu => derivative_arm!(UnaryKind::Elu, $d, $body),
            UnaryKind::Selu => derivative_arm!(UnaryKind::Selu, $d, $body),
            UnaryKind::LeakyRelu { alpha } => {
                derivative_arm!(UnaryKind::LeakyRelu { alpha }, $d, $body)
            }
            other => derivative_arm!(other, $d, $body),
        }
    };
}

/// `g ← g · f'(v)` over two slices of the same length, for a `kind` of [`ActivationGrad`]: the same
/// operation per element as its kernel (the same bits), on the band of a product's output that has
/// just been computed (`ops::matmul::MatMulFused`).
pub(crate) fn activation_grad_slice<T: Float>(
    ctx: &Context<'_>,
    kind: UnaryKind,
    g: &mut [T],
    v: &[T],
) {
    with_derivative!(kind, |d| ctx.vectorized(
        #[inline(always)]
        || {
            for (g, &v) in g.iter_mut().zip(v) {
                *g = *g * d(v);
            }
        }
    ))
}

impl ActivationGrad {
    /// f' in terms of the stored input (x for the piecewise-linear kinds, y otherwise).
    #[inline(always)]
    fn derivative<T: Float>(kind: UnaryKind, v: T) -> T {
        let (zero, one) = (T::zero(), T::one());
        match kind {
            UnaryKind::Relu => {
                if v > zero {
                    one
                } else {
                    zero
                }
            }
            UnaryKind::Relu6 => {
                if v > zero && v < T::from_f64(6.0) {
                    one
                } else {
                    zero
                }
            }
            UnaryKind::LeakyRelu { alpha } => {
                if v > zero {
                    one
                } else {
                    T::from_f64(alpha)
                }
            }
            UnaryKind::Sigmoid => v * (one - v),
            UnaryKind::Tanh => one - v * v,
            UnaryKind::Elu => {
                if v < zero {
                    v + one
                } else {
                    one
                }
            }
            UnaryKind::Selu => {
                if v < zero {
                    v + T::from_f64(SELU_SCALE * SELU_ALPHA)
                } else {
                    T::from_f64(SELU_SCALE)
                }
            }
            _ => one,
        }
    }

    fn run<T: super::kernels::FloatArray>(
        &self,
        ctx: &Context<'_>,
        inputs: &[&Value],
    ) -> OpResult<Value> {
        let g = super::kernels::float_input::<T>(inputs, 0, "ActivationGrad")?;
        let v = super::kernels::float_input::<T>(inputs, 1, "ActivationGrad")?;
        if g.shape() != v.shape() {
            return Err(format!(
                "gradient {:?} and activation {:?} differ in shape",
                g.shape(),
                v.shape()
            ));
        }
        let out = with_derivative!(self.kind, |d| {
            super::kernels::zip_broadcast_par(ctx, g, v, |g, v| g * d(v))
        })?;
        Ok(T::wrap(out))
    }

    fn run_in_place<T: super::kernels::FloatArray>(
        &self,
        ctx: &Context<'_>,
        k: usize,
        target: &mut Value,
        others: &[&Value],
    ) -> OpResult<()> {
        let other = super::kernels::float_input::<T>(others, 0, "ActivationGrad")?;
        let t = T::array_mut(target).ok_or("ActivationGrad: inputs differ in dtype")?;
        if t.shape() != other.shape() {
            return Err(format!(
                "gradient and activation differ in shape: {:?} vs {:?}",
                t.shape(),
                other.shape()
            ));
        }
        // out = g · f'(v); the target is g (k = 0) or v (k = 1).
        with_derivative!(self.kind, |d| {
            super::kernels::zip_into(ctx, t, other, k == 0, |a, b| a * d(b))
        })
    }
}

impl OpDef for ActivationGrad {
    fn type_name(&self) -> &'static str {
        match self.kind {
            UnaryKind::Relu => "ReluGrad",
            UnaryKind::Relu6 => "Relu6Grad",
            UnaryKind::LeakyRelu { .. } => "LeakyReluGrad",
            UnaryKind::Sigmoid => "SigmoidGrad",
            UnaryKind::Tanh => "TanhGrad",
            UnaryKind::Elu => "EluGrad",
            UnaryKind::Selu => "SeluGrad",
            _ => "ActivationGrad",
        }
    }
    fn infer(&self, inputs: &[TensorInfo]) -> InferResult {
        expect_arity(inputs, 2, self.type_name())?;
        super::same_dtype(inputs)?;
        expect_float(&inputs[0], "the gradient")?;
        let shape = inputs[0].shape.merge(&inputs[1].shape).ok_or_else(|| {
            super::InferError::Shape(format!(
                "gradient {} and activation {} differ in shape",
                inputs[0].shape, inputs[1].shape
            ))
        })?;
        Ok(Some(TensorInfo::new(inputs[0].dtype, shape)))
    }
    fn compute(&self, ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
        super::kernels::by_float(
            inputs,
            self.type_name(),
            || self.run::<f32>(ctx, inputs),
            || self.run::<f64>(ctx, inputs),
        )
    }
    fn in_place_input(&self, inputs: &[&Value]) -> Option<usize> {
        let (g, v) = (inputs.first()?, inputs.get(1)?);
        if g.dtype() != v.dtype() || g.shape() != v.shape() || !g.dtype().is_float() {
            return None;
        }
        [g, v].iter().position(|x| x.is_writable_float())
    }
    fn compute_in_place(
        &self,
        ctx: &Context<'_>,
        k: usize,
        target: &mut Value,
        others: &[&Value],
    ) -> OpResult<()> {
        match target.dtype() {
            crate::DType::F32 => self.run_in_place::<f32>(ctx, k, target, others),
            crate::DType::F64 => self.run_in_place::<f64>(ctx, k, target, others),
            d => Err(format!("{} needs float inputs, got {d}", self.type_name())),
        }
    }
    fn gradient(&self, ctx: &GradContext<'_>, grad: Tensor) -> Result<Vec<Option<Tensor>>> {
        // out = g·f'(v): linear in g; d/dv = g·f''(v) in terms of v (0 for the piecewise-linear kinds,
        // whose v is x or y). For y-based kinds the chain continues through y = f(x).
        let g = ctx.graph;
        let (up, v) = (ctx.input(0)?, ctx.input(1)?);
        let d_up = g.activation_grad(self.kind, grad, v)?;
        let c = |x: f64| g.scalar_like(v, x);
        let d_v = match self.kind {
            UnaryKind::Sigmoid => {
                Some(g.mul(g.mul(grad, up)?, g.sub(c(1.0)?, g.mul(c(2.0)?, v)?)?)?)
            }
            UnaryKind::Tanh => Some(g.mul(g.mul(grad, up)?, g.mul(c(-2.0)?, v)?)?),
            UnaryKind::Elu | UnaryKind::Selu => {
                let neg = g.cast(g.less(v, c(0.0)?)?, g.dtype(v)?)?;
                Some(g.mul(g.mul(grad, up)?, neg)?)
            }
            _ => None,
        };
        Ok(vec![Some(d_up), d_v])
    }
}

impl Graph {
    /// The fused activation backward `g · f'` (see [`ActivationGrad`]); `v` is x for leaky_relu, x or
    /// y for relu and relu6, and the activation's output y for sigmoid, tanh, elu and selu.
    pub fn activation_grad(&self, kind: UnaryKind, grad: Tensor, v: Tensor) -> Result<Tensor> {
        let op = ActivationGrad { kind };
        let name = op.type_name();
        self.add_node(op.into(), &[grad, v], None, name)
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
    fn compute(&self, _ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
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
        self.add_node(
            FillLike { value: 0.0 }.into(),
            &[x.into()],
            None,
            "zeros_like",
        )
    }
    /// `tf.ones_like`.
    pub fn ones_like(&self, x: impl Into<Tensor>) -> Result<Tensor> {
        self.add_node(
            FillLike { value: 1.0 }.into(),
            &[x.into()],
            None,
            "ones_like",
        )
    }
}
