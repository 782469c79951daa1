//! Matrix multiplication with transpose flags (TF's `MatMul`).

use super::gemm::{gemm_into_vec, MatRef};
use super::kernels::{by_float, float_input, FloatArray};
use super::{expect_arity, GradContext, InferError, InferResult, OpDef};
use crate::dtype::{Shape, TensorInfo};
use crate::error::{OpResult, Result};
use crate::graph::{Graph, Tensor};
use crate::value::Value;
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

fn matmul_typed<T: FloatArray>(m: &MatMul, inputs: &[&Value]) -> OpResult<Value> {
    let a = float_input::<T>(inputs, 0, "MatMul")?;
    let b = float_input::<T>(inputs, 1, "MatMul")?;
    let (&[ar, ac], &[br, bc]) = (a.shape(), b.shape()) else {
        return Err(format!(
            "MatMul needs rank-2 inputs, got shapes {:?} and {:?}",
            a.shape(),
            b.shape()
        ));
    };
    let (mm, ka) = if m.transpose_a { (ac, ar) } else { (ar, ac) };
    let (kb, n) = if m.transpose_b { (bc, br) } else { (br, bc) };
    if ka != kb {
        return Err(format!(
            "Matrix size-incompatible: In[0]: {:?}, In[1]: {:?} (transpose_a={}, transpose_b={})",
            a.shape(),
            b.shape(),
            m.transpose_a,
            m.transpose_b
        ));
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
    let mut c = crate::Value::try_vec(crate::Value::checked_len(&[mm, n])?)?;
    gemm_into_vec(
        &mut c,
        MatRef::row_major(sa, ar, ac, m.transpose_a),
        MatRef::row_major(sb, br, bc, m.transpose_b),
        super::kernels::intra_op_threads(),
    )?;
    Ok(T::wrap(
        ArrayD::from_shape_vec(IxDyn(&[mm, n]), c).map_err(|e| e.to_string())?,
    ))
}

impl OpDef for MatMul {
    fn type_name(&self) -> &'static str {
        "MatMul"
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
    fn compute(&self, inputs: &[&Value]) -> OpResult<Value> {
        by_float(
            inputs,
            "MatMul",
            || matmul_typed::<f32>(self, inputs),
            || matmul_typed::<f64>(self, inputs),
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
