//! Matrix multiplication with transpose flags (TF's `MatMul`).

use super::binary::{AddRelu, Binary, BinaryKind};
use super::kernels::{by_float, float_input, FloatArray};
use super::tf::{TfAttr, TfNode};
use super::unary::{activation_grad_slice, relu, ActivationGrad, UnaryKind};
use super::Op;
use super::{expect_arity, GradContext, InferError, InferResult, OpDef};
use crate::dtype::{Shape, TensorInfo};
use crate::error::{KernelError, OpResult, Result};
use crate::graph::{Graph, Tensor};
use crate::value::Value;
use ferroflow_cpu::gemm::{gemm_into_vec_then, Epilogue, MatRef};
use ferroflow_cpu::Context;
use ndarray::{ArrayD, IxDyn};
use serde::{Deserialize, Serialize};

/// `C = op(A) · op(B)` for rank-2 float tensors, `op` transposing when its flag is set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatMul {
    pub transpose_a: bool,
    pub transpose_b: bool,
}

impl MatMul {
    /// Rows, depth (terms per sum) and columns of the product of these inputs, when they are rank-2
    /// and fit.
    pub(crate) fn product_size(&self, inputs: &[&Value]) -> Option<(usize, usize, usize)> {
        let (&[ar, ac], &[br, bc]) = (inputs.first()?.shape(), inputs.get(1)?.shape()) else {
            return None;
        };
        let (m, k) = if self.transpose_a { (ac, ar) } else { (ar, ac) };
        let (kb, n) = if self.transpose_b { (bc, br) } else { (br, bc) };
        (k == kb).then_some((m, k, n))
    }
}

fn matmul_typed<T: FloatArray>(
    ctx: &Context<'_>,
    m: &MatMul,
    inputs: &[&Value],
    epilogue: Epilogue<'_, T>,
) -> OpResult<Value> {
    let a = float_input::<T>(inputs, 0, "MatMul")?;
    let b = float_input::<T>(inputs, 1, "MatMul")?;
    let (&[ar, ac], &[br, bc]) = (a.shape(), b.shape()) else {
        return Err(KernelError::DType(format!(
            "MatMul needs rank-2 inputs, got shapes {:?} and {:?}",
            a.shape(),
            b.shape()
        )));
    };
    let (mm, ka) = if m.transpose_a { (ac, ar) } else { (ar, ac) };
    let (kb, n) = if m.transpose_b { (bc, br) } else { (br, bc) };
    if ka != kb {
        return Err(KernelError::Shape(format!(
            "Matrix size-incompatible: In[0]: {:?}, In[1]: {:?} (transpose_a={}, transpose_b={})",
            a.shape(),
            b.shape(),
            m.transpose_a,
            m.transpose_b
        )));
    }
    let (a_owned, b_owned);
    let sa = match a.as_slice() {
        Some(s) => s,
        None => {
            a_owned = a.iter().copied().collect::<Vec<T>>();
            &a_owned
        }
    };
    let sb = match b.as_slice() {
        Some(s) => s,
        None => {
            b_owned = b.iter().copied().collect::<Vec<T>>();
            &b_owned
        }
    };
    let mut c = ctx.try_vec(crate::Value::checked_len(&[mm, n])?)?;
    gemm_into_vec_then(
        ctx,
        &mut c,
        MatRef::row_major(sa, ar, ac, m.transpose_a),
        MatRef::row_major(sb, br, bc, m.transpose_b),
        epilogue,
    )?;
    Ok(T::wrap(
        ArrayD::from_shape_vec(IxDyn(&[mm, n]), c).map_err(KernelError::from)?,
    ))
}

impl OpDef for MatMul {
    fn type_name(&self) -> &'static str {
        "MatMul"
    }
    fn tf_node(&self, inputs: &[TensorInfo]) -> Option<TfNode> {
        Some(
            TfNode::typed(inputs)?
                .with("transpose_a", TfAttr::Bool(self.transpose_a))
                .with("transpose_b", TfAttr::Bool(self.transpose_b)),
        )
    }
    fn with_epilogue(&self, epilogue: ProductEpilogue) -> Option<Op> {
        Some(Op::MatMulFused(MatMulFused {
            product: self.clone(),
            epilogue,
        }))
    }
    fn infer(&self, inputs: &[TensorInfo]) -> InferResult {
        expect_arity(inputs, 2, "MatMul")?;
        super::same_dtype(inputs)?;
        super::expect_float(&inputs[0], "MatMul's inputs")?;
        let dims = |s: &Shape,
                    t: bool|
         -> std::result::Result<(Option<usize>, Option<usize>), InferError> {
            match s.dims() {
                None => Ok((None, None)),
                Some([r, c]) => Ok(if t { (*c, *r) } else { (*r, *c) }),
                Some(d) => Err(InferError::Shape(format!(
                    "MatMul needs rank-2 inputs, got rank {}",
                    d.len()
                ))),
            }
        };
        let (m, ka) = dims(&inputs[0].shape, self.transpose_a)?;
        let (kb, n) = dims(&inputs[1].shape, self.transpose_b)?;
        if let (Some(x), Some(y)) = (ka, kb) {
            if x != y {
                return Err(InferError::Shape(format!(
                    "Dimensions must be equal, but are {x} and {y} for MatMul with input shapes {} and {} (transpose_a={}, transpose_b={})",
                    inputs[0].shape, inputs[1].shape, self.transpose_a, self.transpose_b
                )));
            }
        }
        Ok(Some(TensorInfo::new(
            inputs[0].dtype,
            Shape::new(vec![m, n]),
        )))
    }
    fn compute(&self, ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
        by_float(
            inputs,
            "MatMul",
            || matmul_typed::<f32>(ctx, self, inputs, None),
            || matmul_typed::<f64>(ctx, self, inputs, None),
        )
    }
    fn gradient(&self, ctx: &GradContext<'_>, grad: Tensor) -> Result<Vec<Option<Tensor>>> {
        let g = ctx.graph;
        let (a, b) = (ctx.input(0)?, ctx.input(1)?);
        let (da, db) = match (self.transpose_a, self.transpose_b) {
            (false, false) => (
                g.matmul_t(grad, b, false, true)?,
                g.matmul_t(a, grad, true, false)?,
            ),
            (true, false) => (
                g.matmul_t(b, grad, false, true)?,
                g.matmul_t(a, grad, false, false)?,
            ),
            (false, true) => (
                g.matmul_t(grad, b, false, false)?,
                g.matmul_t(grad, a, true, false)?,
            ),
            (true, true) => (
                g.matmul_t(b, grad, true, true)?,
                g.matmul_t(grad, a, true, true)?,
            ),
        };
        Ok(vec![Some(da), Some(db)])
    }
}

/// What a fused product does to its output (see [`MatMulFused`]).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum ProductEpilogue {
    /// `AddV2` of a bias (one value per column), then `Relu` when `relu` (the plan's `AddRelu`).
    BiasAdd { relu: bool },
    /// The activation gradient `ActivationGrad { kind }` whose gradient input is the product:
    /// `c · f'(v)`, `v` of the product's shape.
    ActivationGrad(UnaryKind),
}

/// A `MatMul` and the one op that alone reads its output (a bias add, with its `Relu` fused, or an
/// activation gradient), fused by the plan compiler (`plan::fuse_products`). Inputs: the product's
/// two, then the other op's other input (the bias, or the activation's stored value). Each band of
/// rows a thread computes goes through the second op at once, while it is in that core's cache,
/// instead of in a pass over the whole output after the product; the operations per element are the
/// second op's own, so the values are the same bits. Operands the epilogue does not cover (a sum
/// that broadcasts otherwise) run the second op as its own pass.
/// No graph method builds it; it has no gradient rule (the graph keeps the two ops).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MatMulFused {
    pub product: MatMul,
    pub epilogue: ProductEpilogue,
}

impl MatMulFused {
    /// The op the epilogue stands for, as a step of its own.
    fn second(&self) -> Op {
        match self.epilogue {
            ProductEpilogue::BiasAdd { relu: true } => Op::AddRelu(AddRelu),
            ProductEpilogue::BiasAdd { relu: false } => Op::Binary(Binary {
                kind: BinaryKind::Add,
            }),
            ProductEpilogue::ActivationGrad(kind) => Op::ActivationGrad(ActivationGrad { kind }),
        }
    }

    /// The product with the epilogue run over each band, or `None` when the third input is not one
    /// the epilogue covers (not contiguous, or not of the shape it expects).
    fn fused<T: FloatArray>(
        &self,
        ctx: &Context<'_>,
        inputs: &[&Value],
    ) -> OpResult<Option<Value>> {
        let extra = float_input::<T>(inputs, 2, self.type_name())?;
        let (Some(v), Some((m, _, n))) = (extra.as_slice(), self.product.product_size(inputs))
        else {
            return Ok(None);
        };
        let out = match self.epilogue {
            ProductEpilogue::BiasAdd { relu: with_relu } => {
                if extra.shape() != [n] {
                    return Ok(None);
                }
                // `AddV2`'s sum of the two (commutative: the same bits in either order), then `Relu`.
                let bias = |_: usize, band: &mut [T]| {
                    ctx.vectorized(
                        #[inline(always)]
                        || {
                            for row in band.chunks_exact_mut(n) {
                                for (c, &b) in row.iter_mut().zip(v) {
                                    *c = if with_relu { relu(*c + b) } else { *c + b };
                                }
                            }
                        },
                    )
                };
                matmul_typed::<T>(ctx, &self.product, inputs, Some(&bias))?
            }
            ProductEpilogue::ActivationGrad(kind) => {
                if extra.shape() != [m, n] {
                    return Ok(None);
                }
                // The band's rows of `v` (always there: `v` has the product's shape).
                let grad = |r0: usize, band: &mut [T]| {
                    let rows = v.get(r0 * n..).unwrap_or_default();
                    activation_grad_slice(ctx, kind, band, rows);
                };
                matmul_typed::<T>(ctx, &self.product, inputs, Some(&grad))?
            }
        };
        Ok(Some(out))
    }
}

impl OpDef for MatMulFused {
    fn type_name(&self) -> &'static str {
        match self.epilogue {
            ProductEpilogue::BiasAdd { relu: true } => "MatMul+AddV2+Relu",
            ProductEpilogue::BiasAdd { relu: false } => "MatMul+AddV2",
            ProductEpilogue::ActivationGrad(kind) => kind.fused_product_name(),
        }
    }
    fn infer(&self, inputs: &[TensorInfo]) -> InferResult {
        expect_arity(inputs, 3, self.type_name())?;
        let Some(product) = self.product.infer(&inputs[..2])? else {
            return Ok(None);
        };
        self.second().infer(&[product, inputs[2].clone()])
    }
    fn compute(&self, ctx: &Context<'_>, inputs: &[&Value]) -> OpResult<Value> {
        let name = self.type_name();
        let fused = match inputs.first().map(|v| v.dtype()) {
            Some(crate::DType::F32) => self.fused::<f32>(ctx, inputs)?,
            Some(crate::DType::F64) => self.fused::<f64>(ctx, inputs)?,
            _ => None,
        };
        if let Some(v) = fused {
            return Ok(v);
        }
        // The two ops one after the other, the second over the product's buffer when it can be.
        let extra = super::kernels::input(inputs, 2, name)?;
        let mut c = self
            .product
            .compute(ctx, inputs.get(..2).unwrap_or_default())?;
        let second = self.second();
        if second.in_place_input(&[&c, extra]) == Some(0) {
            second.compute_in_place(ctx, 0, &mut c, &[extra])?;
            Ok(c)
        } else {
            second.compute(ctx, &[&c, extra])
        }
    }
}

impl Graph {
    /// `tf.matmul(a, b)`.
    pub fn matmul(&self, a: impl Into<Tensor>, b: impl Into<Tensor>) -> Result<Tensor> {
        self.matmul_t(a, b, false, false)
    }
    /// `tf.matmul(a, b, transpose_a, transpose_b)`: the transposes are flags of the kernel, never
    /// materialized.
    pub fn matmul_t(
        &self,
        a: impl Into<Tensor>,
        b: impl Into<Tensor>,
        transpose_a: bool,
        transpose_b: bool,
    ) -> Result<Tensor> {
        self.add_node(
            MatMul {
                transpose_a,
                transpose_b,
            }
            .into(),
            &[a.into(), b.into()],
            None,
            "MatMul",
        )
    }
}

#[cfg(test)]
#[path = "matmul_tests.rs"]
mod tests;
