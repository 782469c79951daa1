//! Elementwise arithmetic of two tensors with numpy broadcasting, its plan-only fusion with `Relu`
//! (`AddRelu`), and `AddN`. Comparisons, logic and `where` are in `logic.rs`.

use super::kernels::{
    by_float, float_input, float_target, zip_broadcast, zip_broadcast_par, Float, FloatArray,
};
use super::matmul::ProductEpilogue;
use super::tf::TfNode;
use super::unary::relu;
use super::{expect_arity, GradContext, InferError, InferResult, Op, OpDef};
use crate::dtype::{DType, TensorInfo};
use crate::error::{KernelError, OpResult, Result};
use crate::graph::{Graph, Tensor};
use crate::value::Value;
use ferroflow_cpu::Context;
use serde::{Deserialize, Serialize};

/// Which arithmetic a `Binary` node performs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BinaryKind {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Maximum,
    Minimum,
    SquaredDifference,
}

impl BinaryKind {
    /// Every kind (TF has an op for each).
    pub const ALL: [BinaryKind; 8] = [
        BinaryKind::Add,
        BinaryKind::Sub,
        BinaryKind::Mul,
        BinaryKind::Div,
        BinaryKind::Pow,
        BinaryKind::Maximum,
        BinaryKind::Minimum,
        BinaryKind::SquaredDifference,
    ];

    #[inline(always)]
    fn apply<T: Float>(self, x: T, y: T) -> T {
        match self {
            BinaryKind::Add => x + y,
            BinaryKind::Sub => x - y,
            BinaryKind::Mul => x * y,
            BinaryKind::Div => x / y,
            BinaryKind::Pow => x.powf(y),
            // NaN propagates, as in TF.
            BinaryKind::Maximum => {
                if x.is_nan() || x >= y {
                    x
                } else {
                    y
                }
            }
            BinaryKind::Minimum => {
                if x.is_nan() || x <= y {
                    x
                } else {
                    y
                }
            }
            BinaryKind::SquaredDifference => (x - y) * (x - y),
        }
    }

    fn apply_int(self, x: i64, y: i64) -> OpResult<i64> {
        Ok(match self {
            BinaryKind::Add => x.wrapping_add(y),
            BinaryKind::Sub => x.wrapping_sub(y),
            BinaryKind::Mul => x.wrapping_mul(y),
            BinaryKind::Div => {
                if y == 0 {
                    return Err(KernelError::InvalidArgument(
                        "integer division by zero".into(),
                    ));
                }
                x.wrapping_div(y)
            }
            BinaryKind::Pow => {
                let e = u32::try_from(y).map_err(|_| {
                    KernelError::InvalidArgument(format!(
                        "integer pow needs a small non-negative exponent, got {y}"
                    ))
                })?;
                x.wrapping_pow(e)
            }
            BinaryKind::Maximum => x.max(y),
            BinaryKind::Minimum => x.min(y),
            BinaryKind::SquaredDifference => (x.wrapping_sub(y)).wrapping_mul(x.wrapping_sub(y)),
        })
    }

    fn type_name(self) -> &'static str {
        match self {
            BinaryKind::Add => "AddV2",
            BinaryKind::Sub => "Sub",
            BinaryKind::Mul => "Mul",
            BinaryKind::Div => "RealDiv",
            BinaryKind::Pow => "Pow",
            BinaryKind::Maximum => "Maximum",
            BinaryKind::Minimum => "Minimum",
            BinaryKind::SquaredDifference => "SquaredDifference",
        }
    }
}

pub(super) fn broadcast_infer(
    inputs: &[TensorInfo],
    op: &str,
    out_dtype: Option<DType>,
) -> InferResult {
    expect_arity(inputs, 2, op)?;
    if inputs[0].dtype != inputs[1].dtype {
        return Err(InferError::DType(format!(
            "both inputs must have the same dtype, got {} and {}",
            inputs[0].dtype, inputs[1].dtype
        )));
    }
    let shape = inputs[0]
        .shape
        .broadcast(&inputs[1].shape)
        .map_err(InferError::Shape)?;
    Ok(Some(TensorInfo::new(
        out_dtype.unwrap_or(inputs[0].dtype),
        shape,
    )))
}

/// Elementwise arithmetic with broadcasting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Binary {
    pub kind: BinaryKind,
}

fn binary_float<T: FloatArray>(
    ctx: &Context<'_>,
    k: BinaryKind,
    inputs: &[&Value],
) -> OpResult<Value> {
    let a = float_input::<T>(inputs, 0, k.type_name())?;
    let b = float_input::<T>(inputs, 1, k.type_name())?;
    // One arm per kind, so each loop is specialized (and vectorized) for one function.
    macro_rules! each {
        ($($kind:ident),*) => {
            match k {
                $(BinaryKind::$kind => zip_broadcast_par(ctx, a, b, |x, y| BinaryKind::$kind.apply(x, y))?,)*
            }
        };
    }
    Ok(T::wrap(each!(
        Add,
        Sub,
        Mul,
        Div,
        Pow,
        Maximum,
        Minimum,
        SquaredDifference
    )))
}

/// `target = a ∘ b` where `target` holds input `k` and `others[0]` is the other input.
fn binary_in_place<T: FloatArray>(
    ctx: &Context<'_>,
    kind: BinaryKind,
    k: usize,
    target: &mut Value,
    others: &[&Value],
) -> OpResult<()> {
    let other = float_input::<T>(others, 0, kind.type_name())?;
    let t = float_target::<T>(target, kind.type_name())?;
    // One arm per kind, so each loop is specialized for one function.
    macro_rules! each {
        ($($kind:ident),*) => {
            match kind {
                $(BinaryKind::$kind => super::kernels::zip_into(ctx, t, other, k == 0, |x, y| BinaryKind::$kind.apply(x, y)),)*
            }
        };
    }
    each!(Add, Sub, Mul, Div, Pow, Maximum, Minimum, SquaredDifference)
}

/// `max(a + b, 0)`: an `AddV2` (a bias add, say) followed by the `Relu` that alone reads it, fused by
/// the plan compiler (`plan::fuse_relu`): one pass instead of two, with the same operations (the same
/// bits). No graph method builds it; it has no gradient rule (the graph keeps the two ops and their
/// gradients).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AddRelu;

const ADD: Binary = Binary {
    kind: BinaryKind::Add,
};

fn add_relu_in_place<T: FloatArray>(
    ctx: &Context<'_>,
    k: usize,
    target: &mut Value,
    others: &[&Value],
) -> OpResult<()> {
    let op = "AddV2+Relu";
    let other = float_input::<T>(others, 0, op)?;
    let t = float_target::<T>(target, op)?;
    // The operands in the order `AddV2` adds them (the sum is the same either way).
    if k == 0 {
        super::kernels::zip_into(ctx, t, other, true, |x, y| relu(x + y))
    } else {
        super::kernels::zip_into(ctx, t, other, false, |x, y| relu(x + y))
    }
}

impl OpDef for AddRelu {
    fn type_name(&self) -> &'static str {
        "AddV2+Relu"
    }
    fn as_epilogue(&self, _product_input: usize) -> Option<ProductEpilogue> {
        Some(ProductEpilogue::BiasAdd { relu: true })
    }
    fn infer(&self, inputs: &[TensorInfo]) -> InferResult {
        ADD.infer(inputs)
    }
    fn compute(&self, ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
        let mut out = ADD.compute(ctx, inputs)?;
        match &mut out {
            Value::F32(a) => super::kernels::par_update(
                ctx,
                a.as_slice_mut().ok_or_else(|| {
                    KernelError::Shape("AddV2+Relu: output not contiguous".into())
                })?,
                relu,
            ),
            Value::F64(a) => super::kernels::par_update(
                ctx,
                a.as_slice_mut().ok_or_else(|| {
                    KernelError::Shape("AddV2+Relu: output not contiguous".into())
                })?,
                relu,
            ),
            v => {
                return Err(KernelError::DType(format!(
                    "AddV2+Relu needs floats, got {}",
                    v.dtype()
                )))
            }
        }
        Ok(out)
    }
    fn in_place_input(&self, inputs: &[&Value]) -> Option<usize> {
        ADD.in_place_input(inputs)
    }
    fn compute_in_place(
        &self,
        ctx: &Context<'_>,
        k: usize,
        target: &mut Value,
        others: &[&Value],
    ) -> OpResult<()> {
        match target.dtype() {
            DType::F32 => add_relu_in_place::<f32>(ctx, k, target, others),
            DType::F64 => add_relu_in_place::<f64>(ctx, k, target, others),
            d => Err(KernelError::DType(format!(
                "AddV2+Relu in place needs floats, got {d}"
            ))),
        }
    }
}

impl OpDef for Binary {
    fn type_name(&self) -> &'static str {
        self.kind.type_name()
    }
    fn tf_node(&self, inputs: &[TensorInfo]) -> Option<TfNode> {
        TfNode::typed(inputs)
    }
    fn with_relu(&self) -> Option<Op> {
        (self.kind == BinaryKind::Add).then_some(Op::AddRelu(AddRelu))
    }
    fn as_epilogue(&self, _product_input: usize) -> Option<ProductEpilogue> {
        (self.kind == BinaryKind::Add).then_some(ProductEpilogue::BiasAdd { relu: false })
    }
    fn infer(&self, inputs: &[TensorInfo]) -> InferResult {
        let out = broadcast_infer(inputs, self.type_name(), None)?;
        if inputs[0].dtype == DType::Bool {
            return Err(InferError::DType(format!(
                "{} is not defined for bool",
                self.type_name()
            )));
        }
        Ok(out)
    }
    fn compute(&self, ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
        let k = self.kind;
        if let (Some(Value::I64(a)), Some(Value::I64(b))) = (inputs.first(), inputs.get(1)) {
            let mut err = None;
            let out = zip_broadcast(ctx, a, b, |x, y| {
                k.apply_int(x, y).unwrap_or_else(|e| {
                    err = Some(e);
                    0
                })
            })?;
            return match err {
                Some(e) => Err(e),
                None => Ok(Value::I64(out)),
            };
        }
        by_float(
            inputs,
            k.type_name(),
            || binary_float::<f32>(ctx, k, inputs),
            || binary_float::<f64>(ctx, k, inputs),
        )
    }
    fn in_place_input(&self, inputs: &[&Value]) -> Option<usize> {
        let (a, b) = (inputs.first()?, inputs.get(1)?);
        if a.dtype() != b.dtype() || !a.dtype().is_float() {
            return None;
        }
        let out = super::kernels::broadcast_shapes(a.shape(), b.shape()).ok()?;
        [a, b]
            .iter()
            .position(|x| x.shape() == out.as_slice() && x.is_writable_float())
    }
    fn compute_in_place(
        &self,
        ctx: &Context<'_>,
        k: usize,
        target: &mut Value,
        others: &[&Value],
    ) -> OpResult<()> {
        match target.dtype() {
            DType::F32 => binary_in_place::<f32>(ctx, self.kind, k, target, others),
            DType::F64 => binary_in_place::<f64>(ctx, self.kind, k, target, others),
            d => Err(KernelError::DType(format!(
                "{} in place needs floats, got {d}",
                self.type_name()
            ))),
        }
    }
    fn gradient(&self, ctx: &GradContext<'_>, grad: Tensor) -> Result<Vec<Option<Tensor>>> {
        let g = ctx.graph;
        let (x, y) = (ctx.input(0)?, ctx.input(1)?);
        let (gx, gy) = match self.kind {
            BinaryKind::Add => (grad, grad),
            BinaryKind::Sub => (grad, g.neg(grad)?),
            BinaryKind::Mul => (g.mul(grad, y)?, g.mul(grad, x)?),
            BinaryKind::Div => (
                g.div(grad, y)?,
                g.mul(grad, g.div(g.div(g.neg(x)?, y)?, y)?)?,
            ),
            BinaryKind::Pow => {
                let one = g.scalar_like(x, 1.0)?;
                let gx = g.mul(g.mul(grad, y)?, g.pow(x, g.sub(y, one)?)?)?;
                // log(x) only where x > 0, as TF does, so that x <= 0 gives 0 instead of NaN.
                let zero = g.zeros_like(x)?;
                let positive = g.greater(x, zero)?;
                let safe_x = g.select(positive, x, g.ones_like(x)?)?;
                let log_x = g.select(positive, g.log(safe_x)?, zero)?;
                (gx, g.mul(g.mul(grad, ctx.output)?, log_x)?)
            }
            BinaryKind::Maximum | BinaryKind::Minimum => {
                let mask = if self.kind == BinaryKind::Maximum {
                    g.greater_equal(x, y)?
                } else {
                    g.less_equal(x, y)?
                };
                let zeros = g.zeros_like(grad)?;
                (g.select(mask, grad, zeros)?, g.select(mask, zeros, grad)?)
            }
            BinaryKind::SquaredDifference => {
                let two = g.scalar_like(x, 2.0)?;
                let gx = g.mul(grad, g.mul(two, g.sub(x, y)?)?)?;
                (gx, g.neg(gx)?)
            }
        };
        Ok(vec![
            Some(reduce_to_operand(g, gx, x, y)?),
            Some(reduce_to_operand(g, gy, y, x)?),
        ])
    }
}

/// Sums the gradient `gx` of broadcast operand `x` (whose partner is `y`) back to `x`'s shape. When
/// the static shapes prove that `x` is never broadcast (every dimension `y` has is 1 or equal to a
/// known dimension of `x`, and `x` has at least `y`'s rank), the gradient already has `x`'s shape and
/// no node is made: `z + bias` then does not keep `z` alive until the backward pass just to read its
/// shape, so `z`'s buffer can be reused by the add itself.
fn reduce_to_operand(g: &Graph, gx: Tensor, x: Tensor, y: Tensor) -> Result<Tensor> {
    let (sx, sy) = (g.shape(x)?, g.shape(y)?);
    if let (Some(dx), Some(dy)) = (sx.dims(), sy.dims()) {
        let passes = dx.len() >= dy.len()
            && dy
                .iter()
                .zip(&dx[dx.len() - dy.len()..])
                .all(|(b, a)| *b == Some(1) || (a.is_some() && a == b));
        if passes && g.shape(gx)?.rank() == Some(dx.len()) {
            return Ok(gx);
        }
    }
    g.sum_to_shape_of(gx, x)
}

/// The sum of several tensors of one shape (TF's `AddN`, used to aggregate gradients).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AddN;

fn add_n_float<T: FloatArray>(ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
    let first = float_input::<T>(inputs, 0, "AddN")?;
    let mut acc = crate::value::map_pooled(ctx, first, |v| v)?;
    for i in 1..inputs.len() {
        let x = float_input::<T>(inputs, i, "AddN")?;
        if x.shape() != acc.shape() {
            return Err(KernelError::Shape(format!(
                "AddN inputs must share a shape, got {:?} and {:?}",
                acc.shape(),
                x.shape()
            )));
        }
        acc.zip_mut_with(x, |a, &b| *a = *a + b);
    }
    Ok(T::wrap(acc))
}

impl OpDef for AddN {
    fn type_name(&self) -> &'static str {
        "AddN"
    }
    fn infer(&self, inputs: &[TensorInfo]) -> InferResult {
        let dt = super::same_dtype(inputs)?;
        super::expect_float(&inputs[0], "AddN's inputs")?;
        let mut shape = inputs[0].shape.clone();
        for i in &inputs[1..] {
            shape = shape.merge(&i.shape).ok_or_else(|| {
                InferError::Shape(format!(
                    "AddN inputs must share a shape, got {} and {}",
                    shape, i.shape
                ))
            })?;
        }
        Ok(Some(TensorInfo::new(dt, shape)))
    }
    fn compute(&self, ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
        by_float(
            inputs,
            "AddN",
            || add_n_float::<f32>(ctx, inputs),
            || add_n_float::<f64>(ctx, inputs),
        )
    }
    fn gradient(&self, ctx: &GradContext<'_>, grad: Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(grad); ctx.inputs.len()])
    }
}

impl Graph {
    fn binary(&self, kind: BinaryKind, x: Tensor, y: Tensor, default_name: &str) -> Result<Tensor> {
        self.add_node(Binary { kind }.into(), &[x, y], None, default_name)
    }
    /// `tf.add(x, y)` (op type AddV2, default name `Add`).
    pub fn add(&self, x: impl Into<Tensor>, y: impl Into<Tensor>) -> Result<Tensor> {
        self.binary(BinaryKind::Add, x.into(), y.into(), "Add")
    }
    /// `tf.subtract(x, y)`.
    pub fn sub(&self, x: impl Into<Tensor>, y: impl Into<Tensor>) -> Result<Tensor> {
        self.binary(BinaryKind::Sub, x.into(), y.into(), "Sub")
    }
    /// `tf.multiply(x, y)`.
    pub fn mul(&self, x: impl Into<Tensor>, y: impl Into<Tensor>) -> Result<Tensor> {
        self.binary(BinaryKind::Mul, x.into(), y.into(), "Mul")
    }
    /// `tf.divide(x, y)` (op type RealDiv, default name `truediv`).
    pub fn div(&self, x: impl Into<Tensor>, y: impl Into<Tensor>) -> Result<Tensor> {
        self.binary(BinaryKind::Div, x.into(), y.into(), "truediv")
    }
    /// `tf.pow(x, y)`.
    pub fn pow(&self, x: impl Into<Tensor>, y: impl Into<Tensor>) -> Result<Tensor> {
        self.binary(BinaryKind::Pow, x.into(), y.into(), "Pow")
    }
    /// `tf.maximum(x, y)`.
    pub fn maximum(&self, x: impl Into<Tensor>, y: impl Into<Tensor>) -> Result<Tensor> {
        self.binary(BinaryKind::Maximum, x.into(), y.into(), "Maximum")
    }
    /// `tf.minimum(x, y)`.
    pub fn minimum(&self, x: impl Into<Tensor>, y: impl Into<Tensor>) -> Result<Tensor> {
        self.binary(BinaryKind::Minimum, x.into(), y.into(), "Minimum")
    }
    /// `tf.squared_difference(x, y)`: (x - y)².
    pub fn squared_difference(&self, x: impl Into<Tensor>, y: impl Into<Tensor>) -> Result<Tensor> {
        self.binary(
            BinaryKind::SquaredDifference,
            x.into(),
            y.into(),
            "SquaredDifference",
        )
    }
    /// `tf.add_n(xs)`: sum of same-shaped tensors.
    pub fn add_n(&self, xs: &[Tensor]) -> Result<Tensor> {
        self.add_node(AddN.into(), xs, None, "AddN")
    }
}

#[cfg(test)]
#[path = "binary_tests.rs"]
mod tests;
