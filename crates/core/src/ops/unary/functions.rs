//! One section per elementwise function: its value, its TF name, its gradient rule and, for the
//! activations, the fused gradient kernel (`g · f'(v)` in one pass, TF's `ReluGrad`, `EluGrad`, ...)
//! with the second derivative that makes that kernel differentiable in turn. Each section also adds
//! the function's `Graph` builder. Adding a function is one section here and one entry in
//! [`super::UnaryKind`]'s list.

use super::{Reads, UnaryFn, UnaryKind};
use crate::error::Result;
use crate::graph::{Graph, Tensor};
use ferroflow_cpu::Float;

/// SELU's alpha (Klambauer et al. 2017), as in TF.
pub const SELU_ALPHA: f64 = 1.673_263_242_354_377_3;
/// SELU's scale, as in TF.
pub const SELU_SCALE: f64 = 1.050_700_987_355_480_5;
/// 1/√(2π), the standard normal density at 0.
const FRAC_1_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

// ---------------------------------------------------------------------------------------------
/// `tf.negative`: `-x` (also on int64, wrapping).
#[derive(Clone, Copy)]
pub struct Neg;
impl UnaryFn for Neg {
    const NAME: &'static str = "Neg";
    const ON_INTEGERS: bool = true;
    fn kind(self) -> UnaryKind {
        UnaryKind::Neg
    }
    #[inline(always)]
    fn f<T: Float>(self, x: T) -> T {
        -x
    }
    fn i64(self, x: i64) -> i64 {
        x.wrapping_neg()
    }
    fn gradient(self, g: &Graph, grad: Tensor, _x: Tensor, _y: Tensor) -> Result<Tensor> {
        g.neg(grad)
    }
}
impl Graph {
    /// `tf.negative` (`-x`).
    pub fn neg(&self, x: impl Into<Tensor>) -> Result<Tensor> {
        self.unary_op(UnaryKind::Neg, x)
    }
}

// ---------------------------------------------------------------------------------------------
/// `tf.square`: `x·x` (also on int64, wrapping). d/dx = 2x.
#[derive(Clone, Copy)]
pub struct Square;
impl UnaryFn for Square {
    const NAME: &'static str = "Square";
    const ON_INTEGERS: bool = true;
    fn kind(self) -> UnaryKind {
        UnaryKind::Square
    }
    #[inline(always)]
    fn f<T: Float>(self, x: T) -> T {
        x * x
    }
    fn i64(self, x: i64) -> i64 {
        x.wrapping_mul(x)
    }
    fn gradient(self, g: &Graph, grad: Tensor, x: Tensor, _y: Tensor) -> Result<Tensor> {
        g.mul(grad, g.mul(g.scalar_like(x, 2.0)?, x)?)
    }
}
impl Graph {
    /// `tf.square`.
    pub fn square(&self, x: impl Into<Tensor>) -> Result<Tensor> {
        self.unary_op(UnaryKind::Square, x)
    }
}

// ---------------------------------------------------------------------------------------------
/// `tf.sqrt`. d/dx = 0.5 / y.
#[derive(Clone, Copy)]
pub struct Sqrt;
impl UnaryFn for Sqrt {
    const NAME: &'static str = "Sqrt";
    fn kind(self) -> UnaryKind {
        UnaryKind::Sqrt
    }
    #[inline(always)]
    fn f<T: Float>(self, x: T) -> T {
        x.sqrt()
    }
    fn gradient(self, g: &Graph, grad: Tensor, x: Tensor, y: Tensor) -> Result<Tensor> {
        g.div(g.mul(grad, g.scalar_like(x, 0.5)?)?, y)
    }
}
impl Graph {
    /// `tf.sqrt`.
    pub fn sqrt(&self, x: impl Into<Tensor>) -> Result<Tensor> {
        self.unary_op(UnaryKind::Sqrt, x)
    }
}

// ---------------------------------------------------------------------------------------------
/// `tf.math.rsqrt`: 1/√x (batch normalization's scale). d/dx = -y³/2.
#[derive(Clone, Copy)]
pub struct Rsqrt;
impl UnaryFn for Rsqrt {
    const NAME: &'static str = "Rsqrt";
    fn kind(self) -> UnaryKind {
        UnaryKind::Rsqrt
    }
    #[inline(always)]
    fn f<T: Float>(self, x: T) -> T {
        T::one() / x.sqrt()
    }
    fn gradient(self, g: &Graph, grad: Tensor, x: Tensor, y: Tensor) -> Result<Tensor> {
        let cube = g.mul(g.square(y)?, y)?;
        g.mul(grad, g.mul(cube, g.scalar_like(x, -0.5)?)?)
    }
}
impl Graph {
    /// `tf.math.rsqrt`.
    pub fn rsqrt(&self, x: impl Into<Tensor>) -> Result<Tensor> {
        self.unary_op(UnaryKind::Rsqrt, x)
    }
}

// ---------------------------------------------------------------------------------------------
/// `tf.exp`, by the vectorizable [`Float::exp_fast`]. d/dx = y.
#[derive(Clone, Copy)]
pub struct Exp;
impl UnaryFn for Exp {
    const NAME: &'static str = "Exp";
    fn kind(self) -> UnaryKind {
        UnaryKind::Exp
    }
    #[inline(always)]
    fn f<T: Float>(self, x: T) -> T {
        x.exp_fast()
    }
    fn gradient(self, g: &Graph, grad: Tensor, _x: Tensor, y: Tensor) -> Result<Tensor> {
        g.mul(grad, y)
    }
}
impl Graph {
    /// `tf.exp`.
    pub fn exp(&self, x: impl Into<Tensor>) -> Result<Tensor> {
        self.unary_op(UnaryKind::Exp, x)
    }
}

// ---------------------------------------------------------------------------------------------
/// `tf.log`, the natural logarithm. d/dx = 1/x.
#[derive(Clone, Copy)]
pub struct Log;
impl UnaryFn for Log {
    const NAME: &'static str = "Log";
    fn kind(self) -> UnaryKind {
        UnaryKind::Log
    }
    #[inline(always)]
    fn f<T: Float>(self, x: T) -> T {
        x.ln()
    }
    fn gradient(self, g: &Graph, grad: Tensor, x: Tensor, _y: Tensor) -> Result<Tensor> {
        g.div(grad, x)
    }
}
impl Graph {
    /// `tf.log` (natural logarithm).
    pub fn log(&self, x: impl Into<Tensor>) -> Result<Tensor> {
        self.unary_op(UnaryKind::Log, x)
    }
}

// ---------------------------------------------------------------------------------------------
/// `tf.abs` (also on int64, wrapping). d/dx = sign(x).
#[derive(Clone, Copy)]
pub struct Abs;
impl UnaryFn for Abs {
    const NAME: &'static str = "Abs";
    const ON_INTEGERS: bool = true;
    fn kind(self) -> UnaryKind {
        UnaryKind::Abs
    }
    #[inline(always)]
    fn f<T: Float>(self, x: T) -> T {
        x.abs()
    }
    fn i64(self, x: i64) -> i64 {
        x.wrapping_abs()
    }
    fn gradient(self, g: &Graph, grad: Tensor, x: Tensor, _y: Tensor) -> Result<Tensor> {
        g.mul(grad, g.sign(x)?)
    }
}
impl Graph {
    /// `tf.abs`.
    pub fn abs(&self, x: impl Into<Tensor>) -> Result<Tensor> {
        self.unary_op(UnaryKind::Abs, x)
    }
}

// ---------------------------------------------------------------------------------------------
/// `tf.sign`: -1, 0 or 1, keeping 0 and NaN as TF does (also on int64). No gradient (zeros).
#[derive(Clone, Copy)]
pub struct Sign;
impl UnaryFn for Sign {
    const NAME: &'static str = "Sign";
    const ON_INTEGERS: bool = true;
    fn kind(self) -> UnaryKind {
        UnaryKind::Sign
    }
    #[inline(always)]
    fn f<T: Float>(self, x: T) -> T {
        if x > T::zero() {
            T::one()
        } else if x < T::zero() {
            -T::one()
        } else {
            x
        }
    }
    fn i64(self, x: i64) -> i64 {
        x.signum()
    }
    fn gradient(self, g: &Graph, _grad: Tensor, x: Tensor, _y: Tensor) -> Result<Tensor> {
        g.zeros_like(x)
    }
}
impl Graph {
    /// `tf.sign` (0 at 0).
    pub fn sign(&self, x: impl Into<Tensor>) -> Result<Tensor> {
        self.unary_op(UnaryKind::Sign, x)
    }
}

// ---------------------------------------------------------------------------------------------
/// `tf.reciprocal`: 1/x. d/dx = -y².
#[derive(Clone, Copy)]
pub struct Reciprocal;
impl UnaryFn for Reciprocal {
    const NAME: &'static str = "Reciprocal";
    fn kind(self) -> UnaryKind {
        UnaryKind::Reciprocal
    }
    #[inline(always)]
    fn f<T: Float>(self, x: T) -> T {
        T::one() / x
    }
    fn gradient(self, g: &Graph, grad: Tensor, _x: Tensor, y: Tensor) -> Result<Tensor> {
        g.neg(g.mul(grad, g.square(y)?)?)
    }
}
impl Graph {
    /// `tf.reciprocal` (1/x).
    pub fn reciprocal(&self, x: impl Into<Tensor>) -> Result<Tensor> {
        self.unary_op(UnaryKind::Reciprocal, x)
    }
}

// ---------------------------------------------------------------------------------------------
/// `tf.sigmoid`: 1/(1 + e^-x). f' = y(1 - y), f'' in terms of y: 1 - 2y (times f').
#[derive(Clone, Copy)]
pub struct Sigmoid;
impl UnaryFn for Sigmoid {
    const NAME: &'static str = "Sigmoid";
    const FUSED_GRAD: Option<(&'static str, &'static str, Reads)> =
        Some(("SigmoidGrad", "MatMul+SigmoidGrad", Reads::Output));
    fn kind(self) -> UnaryKind {
        UnaryKind::Sigmoid
    }
    #[inline(always)]
    fn f<T: Float>(self, x: T) -> T {
        T::one() / (T::one() + (-x).exp_fast())
    }
    #[inline(always)]
    fn derivative<T: Float>(self, y: T) -> T {
        y * (T::one() - y)
    }
    fn second_derivative(self, g: &Graph, y: Tensor) -> Result<Option<Tensor>> {
        let c = |v: f64| g.scalar_like(y, v);
        Ok(Some(g.sub(c(1.0)?, g.mul(c(2.0)?, y)?)?))
    }
}
impl Graph {
    /// `tf.sigmoid`, the logistic function.
    pub fn sigmoid(&self, x: impl Into<Tensor>) -> Result<Tensor> {
        self.unary_op(UnaryKind::Sigmoid, x)
    }
}

// ---------------------------------------------------------------------------------------------
/// `tf.tanh`. f' = 1 - y², its derivative in y: -2y.
#[derive(Clone, Copy)]
pub struct Tanh;
impl UnaryFn for Tanh {
    const NAME: &'static str = "Tanh";
    const FUSED_GRAD: Option<(&'static str, &'static str, Reads)> =
        Some(("TanhGrad", "MatMul+TanhGrad", Reads::Output));
    fn kind(self) -> UnaryKind {
        UnaryKind::Tanh
    }
    #[inline(always)]
    fn f<T: Float>(self, x: T) -> T {
        x.tanh()
    }
    #[inline(always)]
    fn derivative<T: Float>(self, y: T) -> T {
        T::one() - y * y
    }
    fn second_derivative(self, g: &Graph, y: Tensor) -> Result<Option<Tensor>> {
        Ok(Some(g.mul(g.scalar_like(y, -2.0)?, y)?))
    }
}
impl Graph {
    /// `tf.tanh`.
    pub fn tanh(&self, x: impl Into<Tensor>) -> Result<Tensor> {
        self.unary_op(UnaryKind::Tanh, x)
    }
}

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

// ---------------------------------------------------------------------------------------------
/// `tf.nn.relu`: max(x, 0). The fused gradient reads y (y > 0 exactly where x > 0, so the
/// pre-activation dies at the forward op and its buffer holds the output); f' is 0 at 0, as TF.
#[derive(Clone, Copy)]
pub struct Relu;
impl UnaryFn for Relu {
    const NAME: &'static str = "Relu";
    const FUSED_GRAD: Option<(&'static str, &'static str, Reads)> =
        Some(("ReluGrad", "MatMul+ReluGrad", Reads::Output));
    fn kind(self) -> UnaryKind {
        UnaryKind::Relu
    }
    #[inline(always)]
    fn f<T: Float>(self, x: T) -> T {
        relu(x)
    }
    #[inline(always)]
    fn derivative<T: Float>(self, v: T) -> T {
        if v > T::zero() {
            T::one()
        } else {
            T::zero()
        }
    }
}
impl Graph {
    /// `tf.nn.relu`: max(x, 0).
    pub fn relu(&self, x: impl Into<Tensor>) -> Result<Tensor> {
        self.unary_op(UnaryKind::Relu, x)
    }
}

// ---------------------------------------------------------------------------------------------
/// `tf.nn.relu6`: min(max(x, 0), 6). The fused gradient reads y (0 < y < 6 where 0 < x < 6).
#[derive(Clone, Copy)]
pub struct Relu6;
impl UnaryFn for Relu6 {
    const NAME: &'static str = "Relu6";
    const FUSED_GRAD: Option<(&'static str, &'static str, Reads)> =
        Some(("Relu6Grad", "MatMul+Relu6Grad", Reads::Output));
    fn kind(self) -> UnaryKind {
        UnaryKind::Relu6
    }
    #[inline(always)]
    fn f<T: Float>(self, x: T) -> T {
        let six = T::from_f64(6.0);
        if x < T::zero() {
            T::zero()
        } else if x > six {
            six
        } else {
            x
        }
    }
    #[inline(always)]
    fn derivative<T: Float>(self, v: T) -> T {
        if v > T::zero() && v < T::from_f64(6.0) {
            T::one()
        } else {
            T::zero()
        }
    }
}
impl Graph {
    /// `tf.nn.relu6`: min(max(x, 0), 6).
    pub fn relu6(&self, x: impl Into<Tensor>) -> Result<Tensor> {
        self.unary_op(UnaryKind::Relu6, x)
    }
}

// ---------------------------------------------------------------------------------------------
/// `tf.nn.leaky_relu(x, alpha)`: `x > 0 ? x : alpha·x`. The fused gradient reads x; f' is alpha at 0.
#[derive(Clone, Copy)]
pub struct LeakyRelu {
    pub alpha: f64,
}
impl UnaryFn for LeakyRelu {
    const NAME: &'static str = "LeakyRelu";
    const FUSED_GRAD: Option<(&'static str, &'static str, Reads)> =
        Some(("LeakyReluGrad", "MatMul+LeakyReluGrad", Reads::Input));
    fn kind(self) -> UnaryKind {
        UnaryKind::LeakyRelu { alpha: self.alpha }
    }
    #[inline(always)]
    fn f<T: Float>(self, x: T) -> T {
        if x > T::zero() {
            x
        } else {
            x * T::from_f64(self.alpha)
        }
    }
    #[inline(always)]
    fn derivative<T: Float>(self, x: T) -> T {
        if x > T::zero() {
            T::one()
        } else {
            T::from_f64(self.alpha)
        }
    }
}
impl Graph {
    /// `tf.nn.leaky_relu(x, alpha)`; TF's default alpha is 0.2 ([`Graph::leaky_relu_default`]).
    pub fn leaky_relu(&self, x: impl Into<Tensor>, alpha: f64) -> Result<Tensor> {
        self.unary_op(UnaryKind::LeakyRelu { alpha }, x)
    }
    /// `tf.nn.leaky_relu(x)` with TF's default alpha 0.2.
    pub fn leaky_relu_default(&self, x: impl Into<Tensor>) -> Result<Tensor> {
        self.leaky_relu(x, 0.2)
    }
}

// ---------------------------------------------------------------------------------------------
/// `tf.nn.elu` (alpha 1, as TF): `x > 0 ? x : e^x - 1`. The fused gradient reads y: f' = y + 1 below
/// zero, 1 above (1 at 0, as TF); its derivative in y is 1 below zero.
#[derive(Clone, Copy)]
pub struct Elu;
impl UnaryFn for Elu {
    const NAME: &'static str = "Elu";
    const FUSED_GRAD: Option<(&'static str, &'static str, Reads)> =
        Some(("EluGrad", "MatMul+EluGrad", Reads::Output));
    fn kind(self) -> UnaryKind {
        UnaryKind::Elu
    }
    // Both sides computed, then chosen: a select the loop can vectorize.
    #[inline(always)]
    fn f<T: Float>(self, x: T) -> T {
        let e = x.exp_m1_fast();
        if x > T::zero() {
            x
        } else {
            e
        }
    }
    #[inline(always)]
    fn derivative<T: Float>(self, y: T) -> T {
        if y < T::zero() {
            y + T::one()
        } else {
            T::one()
        }
    }
    fn second_derivative(self, g: &Graph, y: Tensor) -> Result<Option<Tensor>> {
        below_zero(g, y)
    }
}
impl Graph {
    /// `tf.nn.elu` (alpha fixed at 1, as in TF).
    pub fn elu(&self, x: impl Into<Tensor>) -> Result<Tensor> {
        self.unary_op(UnaryKind::Elu, x)
    }
}

/// `[y < 0]`: the derivative in y of f'(y) for ELU and SELU, whose f' is y plus a constant below zero
/// and a constant above.
fn below_zero(g: &Graph, y: Tensor) -> Result<Option<Tensor>> {
    Ok(Some(
        g.cast(g.less(y, g.scalar_like(y, 0.0)?)?, g.dtype(y)?)?,
    ))
}

// ---------------------------------------------------------------------------------------------
/// `tf.nn.selu` with TF's alpha and scale: `scale·(x > 0 ? x : alpha·(e^x - 1))`. The fused gradient
/// reads y: f' = y + scale·alpha below zero, scale above.
#[derive(Clone, Copy)]
pub struct Selu;
impl UnaryFn for Selu {
    const NAME: &'static str = "Selu";
    const FUSED_GRAD: Option<(&'static str, &'static str, Reads)> =
        Some(("SeluGrad", "MatMul+SeluGrad", Reads::Output));
    fn kind(self) -> UnaryKind {
        UnaryKind::Selu
    }
    #[inline(always)]
    fn f<T: Float>(self, x: T) -> T {
        let scale = T::from_f64(SELU_SCALE);
        let e = scale * T::from_f64(SELU_ALPHA) * x.exp_m1_fast();
        if x > T::zero() {
            scale * x
        } else {
            e
        }
    }
    #[inline(always)]
    fn derivative<T: Float>(self, y: T) -> T {
        if y < T::zero() {
            y + T::from_f64(SELU_SCALE * SELU_ALPHA)
        } else {
            T::from_f64(SELU_SCALE)
        }
    }
    fn second_derivative(self, g: &Graph, y: Tensor) -> Result<Option<Tensor>> {
        below_zero(g, y)
    }
}
impl Graph {
    /// `tf.nn.selu` with TF's alpha and scale.
    pub fn selu(&self, x: impl Into<Tensor>) -> Result<Tensor> {
        self.unary_op(UnaryKind::Selu, x)
    }
}

// ---------------------------------------------------------------------------------------------
/// `tf.nn.softplus`: log(1 + e^x), computed without overflow as max(x, 0) + log1p(e^-|x|).
/// d/dx = sigmoid(x).
#[derive(Clone, Copy)]
pub struct Softplus;
impl UnaryFn for Softplus {
    const NAME: &'static str = "Softplus";
    fn kind(self) -> UnaryKind {
        UnaryKind::Softplus
    }
    #[inline(always)]
    fn f<T: Float>(self, x: T) -> T {
        x.max(T::zero()) + (-x.abs()).exp().ln_1p()
    }
    fn gradient(self, g: &Graph, grad: Tensor, x: Tensor, _y: Tensor) -> Result<Tensor> {
        g.mul(grad, g.sigmoid(x)?)
    }
}
impl Graph {
    /// `tf.nn.softplus`: log(1 + e^x), computed stably.
    pub fn softplus(&self, x: impl Into<Tensor>) -> Result<Tensor> {
        self.unary_op(UnaryKind::Softplus, x)
    }
}

// ---------------------------------------------------------------------------------------------
/// `tf.floor`. No gradient (zeros).
#[derive(Clone, Copy)]
pub struct Floor;
impl UnaryFn for Floor {
    const NAME: &'static str = "Floor";
    fn kind(self) -> UnaryKind {
        UnaryKind::Floor
    }
    #[inline(always)]
    fn f<T: Float>(self, x: T) -> T {
        x.floor()
    }
    fn gradient(self, g: &Graph, _grad: Tensor, x: Tensor, _y: Tensor) -> Result<Tensor> {
        g.zeros_like(x)
    }
}
impl Graph {
    /// `tf.floor`.
    pub fn floor(&self, x: impl Into<Tensor>) -> Result<Tensor> {
        self.unary_op(UnaryKind::Floor, x)
    }
}

// ---------------------------------------------------------------------------------------------
/// `tf.nn.gelu(x, approximate=False)`: `x·Φ(x) = 0.5·x·(1 + erf(x/√2))` (Hendrycks & Gimpel 2016).
/// The fused gradient reads x: f' = Φ(x) + x·φ(x), with φ(x) = e^(-x²/2)/√(2π); its derivative is
/// f'' = φ(x)·(2 - x²).
#[derive(Clone, Copy)]
pub struct Gelu;
impl UnaryFn for Gelu {
    const NAME: &'static str = "Gelu";
    const FUSED_GRAD: Option<(&'static str, &'static str, Reads)> =
        Some(("GeluGrad", "MatMul+GeluGrad", Reads::Input));
    fn kind(self) -> UnaryKind {
        UnaryKind::Gelu
    }
    #[inline(always)]
    fn f<T: Float>(self, x: T) -> T {
        let half = T::from_f64(0.5);
        half * x * (T::one() + (x * T::from_f64(std::f64::consts::FRAC_1_SQRT_2)).erf())
    }
    #[inline(always)]
    fn derivative<T: Float>(self, x: T) -> T {
        let half = T::from_f64(0.5);
        let cdf = half * (T::one() + (x * T::from_f64(std::f64::consts::FRAC_1_SQRT_2)).erf());
        let pdf = (-half * x * x).exp() * T::from_f64(FRAC_1_SQRT_2PI);
        cdf + x * pdf
    }
    fn second_derivative(self, g: &Graph, x: Tensor) -> Result<Option<Tensor>> {
        let c = |v: f64| g.scalar_like(x, v);
        let x2 = g.square(x)?;
        let pdf = g.mul(g.exp(g.mul(c(-0.5)?, x2)?)?, c(FRAC_1_SQRT_2PI)?)?;
        Ok(Some(g.mul(pdf, g.sub(c(2.0)?, x2)?)?))
    }
}
impl Graph {
    /// `tf.nn.gelu(x, approximate=False)`: x·Φ(x) with the exact normal CDF.
    pub fn gelu(&self, x: impl Into<Tensor>) -> Result<Tensor> {
        self.unary_op(UnaryKind::Gelu, x)
    }
}
