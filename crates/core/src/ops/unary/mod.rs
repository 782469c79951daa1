//! Elementwise functions of one tensor (math and activations), their fused activation gradients,
//! and zeros_like/ones_like.
//!
//! Each function is a small type implementing [`UnaryFn`] (value, TF name, gradient rule, and for
//! activations the fused gradient kernel), in one section of `functions.rs`. [`UnaryKind`] is the
//! list of them that graphs store and serialize; [`UnaryKind::visit`] turns a kind back into its
//! type, so that each kernel loop is compiled for one function (no match inside the loop).

mod functions;
#[cfg(test)]
mod tests;

pub use functions::*;

use super::kernels::{by_float, float_input, input, map_float, par_update, zip_broadcast_par};
use super::kernels::{float_target, zip_into, Float, FloatArray};
use super::tf::{TfAttr, TfNode};
use super::{expect_arity, expect_float, GradContext, InferResult, OpDef};
use crate::dtype::TensorInfo;
use crate::error::{KernelError, OpResult, Result};
use crate::graph::{Graph, Tensor};
use crate::value::Value;
use ferroflow_cpu::simd::inlined;
use ferroflow_cpu::Context;
use serde::{Deserialize, Serialize};

/// Which of its values the fused gradient of an activation reads: its input x or its output y.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reads {
    Input,
    Output,
}

/// One elementwise function: everything ferroflow knows about it.
pub trait UnaryFn: Copy + Send + Sync + 'static {
    /// TF's op type (`Relu`, `Elu`, ...).
    const NAME: &'static str;
    /// Whether the function also takes int64 tensors (then [`UnaryFn::i64`] computes it).
    const ON_INTEGERS: bool = false;
    /// For an activation with a fused gradient kernel: that kernel's op type, the op type of a
    /// product fused with it, and which value it reads. Its gradient rule is then that kernel.
    const FUSED_GRAD: Option<(&'static str, &'static str, Reads)> = None;
    /// The entry of the list for this function.
    fn kind(self) -> UnaryKind;
    /// The function of one float element.
    fn f<T: Float>(self, x: T) -> T;
    /// The function of one int64 element (only called when [`UnaryFn::ON_INTEGERS`]).
    fn i64(self, x: i64) -> i64 {
        x
    }
    /// The gradient rule `dx` from `grad = dy`, the input `x` and the output `y`, built from graph
    /// ops. The default, for activations with a fused gradient, is that kernel.
    fn gradient(self, g: &Graph, grad: Tensor, x: Tensor, y: Tensor) -> Result<Tensor> {
        match Self::FUSED_GRAD {
            Some((_, _, Reads::Input)) => g.activation_grad(self.kind(), grad, x),
            Some((_, _, Reads::Output)) => g.activation_grad(self.kind(), grad, y),
            None => Err(crate::error::Error::NoGradient {
                node: Self::NAME.into(),
                op: Self::NAME.into(),
            }),
        }
    }
    /// f' in terms of the value the fused gradient reads (x or y).
    fn derivative<T: Float>(self, _v: T) -> T {
        T::one()
    }
    /// d f'(v) / dv as graph ops, for the gradient of the fused gradient kernel; `None` where it is
    /// zero (the piecewise-linear activations).
    fn second_derivative(self, _g: &Graph, _v: Tensor) -> Result<Option<Tensor>> {
        Ok(None)
    }
}

/// Which elementwise function a `Unary` or `ActivationGrad` node applies: the list graphs store.
/// The position of each variant is its tag in meta-graph files: append new ones at the end.
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
    Gelu,
    Rsqrt,
}

/// Something done with a function, by its type: [`UnaryKind::visit`] calls it.
pub trait UnaryVisitor {
    type Output;
    fn visit<F: UnaryFn>(self, f: F) -> Self::Output;
}

impl UnaryKind {
    /// The functions TensorFlow has an op of the same name for and no parameter: what a TF node's
    /// type maps back to, and (with `LeakyRelu`) the ones written as TF nodes. Not `Gelu`, which
    /// is a Python composite in TF.
    pub const TF_OPS: [UnaryKind; 17] = [
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
        UnaryKind::Elu,
        UnaryKind::Selu,
        UnaryKind::Softplus,
        UnaryKind::Floor,
        UnaryKind::Rsqrt,
    ];

    /// Calls `v` with this kind's function type.
    #[inline(always)]
    pub fn visit<V: UnaryVisitor>(self, v: V) -> V::Output {
        match self {
            UnaryKind::Neg => v.visit(Neg),
            UnaryKind::Square => v.visit(Square),
            UnaryKind::Sqrt => v.visit(Sqrt),
            UnaryKind::Exp => v.visit(Exp),
            UnaryKind::Log => v.visit(Log),
            UnaryKind::Abs => v.visit(Abs),
            UnaryKind::Sign => v.visit(Sign),
            UnaryKind::Reciprocal => v.visit(Reciprocal),
            UnaryKind::Sigmoid => v.visit(Sigmoid),
            UnaryKind::Tanh => v.visit(Tanh),
            UnaryKind::Relu => v.visit(Relu),
            UnaryKind::Relu6 => v.visit(Relu6),
            UnaryKind::LeakyRelu { alpha } => v.visit(LeakyRelu { alpha }),
            UnaryKind::Elu => v.visit(Elu),
            UnaryKind::Selu => v.visit(Selu),
            UnaryKind::Softplus => v.visit(Softplus),
            UnaryKind::Floor => v.visit(Floor),
            UnaryKind::Gelu => v.visit(Gelu),
            UnaryKind::Rsqrt => v.visit(Rsqrt),
        }
    }

    /// The function of one element (a match per call: for tests and single values).
    pub fn apply<T: Float>(self, x: T) -> T {
        struct Apply<T>(T);
        impl<T: Float> UnaryVisitor for Apply<T> {
            type Output = T;
            fn visit<F: UnaryFn>(self, f: F) -> T {
                f.f(self.0)
            }
        }
        self.visit(Apply(x))
    }

    /// TF's op type.
    pub fn type_name(self) -> &'static str {
        self.visit(Names).0
    }

    /// The op type of the fused gradient kernel, if the function has one.
    pub fn grad_type_name(self) -> Option<&'static str> {
        self.visit(Names).1
    }

    /// The op type of a product fused with the gradient kernel.
    pub fn fused_product_name(self) -> &'static str {
        self.visit(Names).2.unwrap_or("MatMul+ActivationGrad")
    }
}

/// The names of a function: its op type, its gradient kernel's, and a product fused with that.
struct Names;
impl UnaryVisitor for Names {
    type Output = (&'static str, Option<&'static str>, Option<&'static str>);
    fn visit<F: UnaryFn>(self, _f: F) -> Self::Output {
        (
            F::NAME,
            F::FUSED_GRAD.map(|(n, _, _)| n),
            F::FUSED_GRAD.map(|(_, n, _)| n),
        )
    }
}

/// `f(x)` of a whole value, into pooled storage, one loop per function and dtype.
struct MapValue<'a, 'c> {
    ctx: &'a Context<'c>,
    x: &'a Value,
    op: &'static str,
}
impl UnaryVisitor for MapValue<'_, '_> {
    type Output = OpResult<Value>;
    fn visit<F: UnaryFn>(self, f: F) -> OpResult<Value> {
        if let Value::I64(a) = self.x {
            return if F::ON_INTEGERS {
                Ok(Value::I64(a.mapv(|v| f.i64(v))))
            } else {
                Err(KernelError::DType(format!(
                    "{} needs a float input, got int64",
                    self.op
                )))
            };
        }
        map_float(
            self.ctx,
            self.x,
            self.op,
            inlined(
                #[inline(always)]
                |v: f32| f.f(v),
            ),
            inlined(
                #[inline(always)]
                |v: f64| f.f(v),
            ),
        )
    }
}

/// `x = f(x)` in place for an f32 or f64 value.
struct MapInPlace<'a, 'c> {
    ctx: &'a Context<'c>,
    x: &'a mut Value,
    op: &'static str,
}
impl UnaryVisitor for MapInPlace<'_, '_> {
    type Output = OpResult<()>;
    fn visit<F: UnaryFn>(self, f: F) -> OpResult<()> {
        let op = self.op;
        match self.x {
            Value::F32(a) => a
                .as_slice_mut()
                .map(|s| {
                    par_update(
                        self.ctx,
                        s,
                        inlined(
                            #[inline(always)]
                            |v: f32| f.f(v),
                        ),
                    )
                })
                .ok_or_else(|| KernelError::Shape(format!("{op}: non-contiguous buffer"))),
            Value::F64(a) => a
                .as_slice_mut()
                .map(|s| {
                    par_update(
                        self.ctx,
                        s,
                        inlined(
                            #[inline(always)]
                            |v: f64| f.f(v),
                        ),
                    )
                })
                .ok_or_else(|| KernelError::Shape(format!("{op}: non-contiguous buffer"))),
            v => Err(KernelError::DType(format!(
                "{op} needs a float input, got {}",
                v.dtype()
            ))),
        }
    }
}

/// An elementwise function of one tensor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Unary {
    pub kind: UnaryKind,
}

impl OpDef for Unary {
    fn type_name(&self) -> &'static str {
        self.kind.type_name()
    }
    fn tf_node(&self, inputs: &[TensorInfo]) -> Option<TfNode> {
        match self.kind {
            UnaryKind::LeakyRelu { alpha } => {
                Some(TfNode::typed(inputs)?.with("alpha", TfAttr::Float(alpha)))
            }
            k if UnaryKind::TF_OPS.contains(&k) => TfNode::typed(inputs),
            _ => None,
        }
    }
    fn is_relu(&self) -> bool {
        self.kind == UnaryKind::Relu
    }
    fn infer(&self, inputs: &[TensorInfo]) -> InferResult {
        struct OnIntegers;
        impl UnaryVisitor for OnIntegers {
            type Output = bool;
            fn visit<F: UnaryFn>(self, _f: F) -> bool {
                F::ON_INTEGERS
            }
        }
        expect_arity(inputs, 1, self.type_name())?;
        if !self.kind.visit(OnIntegers) {
            expect_float(&inputs[0], "the input")?;
        }
        Ok(Some(inputs[0].clone()))
    }
    fn compute(&self, ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
        let op = self.type_name();
        let x = input(inputs, 0, op)?;
        self.kind.visit(MapValue { ctx, x, op })
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
        let op = self.type_name();
        self.kind.visit(MapInPlace { ctx, x: target, op })
    }
    fn gradient(&self, ctx: &GradContext<'_>, grad: Tensor) -> Result<Vec<Option<Tensor>>> {
        struct Gradient<'a> {
            g: &'a Graph,
            grad: Tensor,
            x: Tensor,
            y: Tensor,
        }
        impl UnaryVisitor for Gradient<'_> {
            type Output = Result<Tensor>;
            fn visit<F: UnaryFn>(self, f: F) -> Result<Tensor> {
                f.gradient(self.g, self.grad, self.x, self.y)
            }
        }
        let (g, x, y) = (ctx.graph, ctx.input(0)?, ctx.output);
        let dx = self.kind.visit(Gradient { g, grad, x, y })?;
        Ok(vec![Some(dx)])
    }
}

/// The fused backward pass of an activation: `g · f'(v)` in one pass, where `v` is the value the
/// function's gradient reads (x or y, see [`UnaryFn::FUSED_GRAD`]), as TF's `ReluGrad`,
/// `SigmoidGrad`, ... Inputs: `(g, v)`. It is itself differentiable, for second-order gradients.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActivationGrad {
    pub kind: UnaryKind,
}

/// `g ← g · f'(v)` over two slices of the same length: the same operation per element as the
/// [`ActivationGrad`] kernel (the same bits), on the band of a product's output that has just been
/// computed (`ops::matmul::MatMulFused`).
pub(crate) fn activation_grad_slice<T: Float>(
    ctx: &Context<'_>,
    kind: UnaryKind,
    g: &mut [T],
    v: &[T],
) {
    struct Slice<'a, 'c, T> {
        ctx: &'a Context<'c>,
        g: &'a mut [T],
        v: &'a [T],
    }
    impl<T: Float> UnaryVisitor for Slice<'_, '_, T> {
        type Output = ();
        fn visit<F: UnaryFn>(self, f: F) {
            let (g, v) = (self.g, self.v);
            self.ctx.vectorized(
                #[inline(always)]
                || {
                    for (g, &v) in g.iter_mut().zip(v) {
                        *g = *g * f.derivative(v);
                    }
                },
            )
        }
    }
    kind.visit(Slice { ctx, g, v })
}

/// The [`ActivationGrad`] kernel over arrays of `T`: into a new value, or in place over `target`
/// (input `k`: 0 the gradient, 1 the activation).
struct GradKernel<'a, 'c, T> {
    ctx: &'a Context<'c>,
    inputs: &'a [&'a Value],
    in_place: Option<(usize, &'a mut Value)>,
    _t: std::marker::PhantomData<T>,
}
impl<T: FloatArray> UnaryVisitor for GradKernel<'_, '_, T> {
    type Output = OpResult<Option<Value>>;
    fn visit<F: UnaryFn>(self, f: F) -> OpResult<Option<Value>> {
        let d = inlined(
            #[inline(always)]
            move |v: T| f.derivative(v),
        );
        let ctx = self.ctx;
        if let Some((k, target)) = self.in_place {
            let other = float_input::<T>(self.inputs, 0, "ActivationGrad")?;
            let t = float_target::<T>(target, "ActivationGrad")?;
            if t.shape() != other.shape() {
                return Err(KernelError::Shape(format!(
                    "gradient and activation differ in shape: {:?} vs {:?}",
                    t.shape(),
                    other.shape()
                )));
            }
            // out = g · f'(v); the target is g (k = 0) or v (k = 1).
            zip_into(ctx, t, other, k == 0, |a, b| a * d(b))?;
            return Ok(None);
        }
        let g = float_input::<T>(self.inputs, 0, "ActivationGrad")?;
        let v = float_input::<T>(self.inputs, 1, "ActivationGrad")?;
        if g.shape() != v.shape() {
            return Err(KernelError::Shape(format!(
                "gradient {:?} and activation {:?} differ in shape",
                g.shape(),
                v.shape()
            )));
        }
        let out = zip_broadcast_par(ctx, g, v, |g, v| g * d(v))?;
        Ok(Some(T::wrap(out)))
    }
}

impl ActivationGrad {
    fn run<T: FloatArray>(
        &self,
        ctx: &Context<'_>,
        inputs: &[&Value],
        in_place: Option<(usize, &mut Value)>,
    ) -> OpResult<Option<Value>> {
        self.kind.visit(GradKernel::<T> {
            ctx,
            inputs,
            in_place,
            _t: std::marker::PhantomData,
        })
    }
}

impl OpDef for ActivationGrad {
    fn type_name(&self) -> &'static str {
        self.kind.grad_type_name().unwrap_or("ActivationGrad")
    }
    fn as_epilogue(&self, product_input: usize) -> Option<super::matmul::ProductEpilogue> {
        (product_input == 0).then_some(super::matmul::ProductEpilogue::ActivationGrad(self.kind))
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
        let fresh = |r: OpResult<Option<Value>>| {
            r?.ok_or_else(|| KernelError::InvalidArgument("no output".into()))
        };
        by_float(
            inputs,
            self.type_name(),
            || fresh(self.run::<f32>(ctx, inputs, None)),
            || fresh(self.run::<f64>(ctx, inputs, None)),
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
        let r = match target.dtype() {
            crate::DType::F32 => self.run::<f32>(ctx, others, Some((k, target))),
            crate::DType::F64 => self.run::<f64>(ctx, others, Some((k, target))),
            d => Err(KernelError::DType(format!(
                "{} needs float inputs, got {d}",
                self.type_name()
            ))),
        };
        r.map(|_| ())
    }
    fn gradient(&self, ctx: &GradContext<'_>, grad: Tensor) -> Result<Vec<Option<Tensor>>> {
        // out = up·f'(v): linear in up; d/dv = up·f''(v) in terms of v (none for the
        // piecewise-linear kinds). For y-based kinds the chain continues through y = f(x).
        struct Second<'a> {
            g: &'a Graph,
            v: Tensor,
        }
        impl UnaryVisitor for Second<'_> {
            type Output = Result<Option<Tensor>>;
            fn visit<F: UnaryFn>(self, f: F) -> Result<Option<Tensor>> {
                f.second_derivative(self.g, self.v)
            }
        }
        let g = ctx.graph;
        let (up, v) = (ctx.input(0)?, ctx.input(1)?);
        let d_up = g.activation_grad(self.kind, grad, v)?;
        let d_v = match self.kind.visit(Second { g, v })? {
            Some(second) => Some(g.mul(g.mul(grad, up)?, second)?),
            None => None,
        };
        Ok(vec![Some(d_up), d_v])
    }
}

impl Graph {
    /// The elementwise function `kind` of `x` (the builders `relu`, `elu`, ... call this).
    pub fn unary_op(&self, kind: UnaryKind, x: impl Into<Tensor>) -> Result<Tensor> {
        self.add_node(Unary { kind }.into(), &[x.into()], None, kind.type_name())
    }

    /// The fused activation backward `g · f'` (see [`ActivationGrad`]); `v` is the value the
    /// function's gradient reads ([`UnaryFn::FUSED_GRAD`]).
    pub fn activation_grad(&self, kind: UnaryKind, grad: Tensor, v: Tensor) -> Result<Tensor> {
        let op = ActivationGrad { kind };
        let name = op.type_name();
        self.add_node(op.into(), &[grad, v], None, name)
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
        let x = input(inputs, 0, self.type_name())?;
        Value::filled(x.dtype(), x.shape(), self.value)
    }
    fn gradient(&self, _ctx: &GradContext<'_>, _grad: Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![None])
    }
}
