//! Concrete tensor values that cross the session API: ndarray arrays wrapped in a small enum.

use crate::dtype::DType;
use crate::error::KernelError;
use ferroflow_cpu::{Context, VecPool};
use ndarray::{ArrayD, IxDyn};
use serde::{Deserialize, Serialize};

/// The largest tensor a kernel or initializer may create from a user-given shape (2^34 elements,
/// 64 GiB of f32).
pub const MAX_ELEMENTS: usize = 1 << 34;

/// A concrete tensor: an n-dimensional array of one of ferroflow's dtypes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Value {
    F32(ArrayD<f32>),
    F64(ArrayD<f64>),
    I64(ArrayD<i64>),
    Bool(ArrayD<bool>),
}

impl Value {
    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            Value::F32(_) => DType::F32,
            Value::F64(_) => DType::F64,
            Value::I64(_) => DType::I64,
            Value::Bool(_) => DType::Bool,
        }
    }
    /// The concrete shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            Value::F32(a) => a.shape(),
            Value::F64(a) => a.shape(),
            Value::I64(a) => a.shape(),
            Value::Bool(a) => a.shape(),
        }
    }
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape().iter().product()
    }
    /// True when the value has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// An empty f32 vector (no allocation): a placeholder while a value's storage is lent out.
    pub fn empty() -> Self {
        Value::F32(ndarray::Array1::from_vec(Vec::new()).into_dyn())
    }
    /// A scalar f32.
    pub fn scalar_f32(x: f32) -> Self {
        Value::F32(ArrayD::from_elem(IxDyn(&[]), x))
    }
    /// A scalar of the given float or integer dtype holding `x` (bool: `x != 0`).
    pub fn scalar(dtype: DType, x: f64) -> Self {
        let d = IxDyn(&[]);
        match dtype {
            DType::F32 => Value::F32(ArrayD::from_elem(d, x as f32)),
            DType::F64 => Value::F64(ArrayD::from_elem(d, x)),
            DType::I64 => Value::I64(ArrayD::from_elem(d, x as i64)),
            DType::Bool => Value::Bool(ArrayD::from_elem(d, x != 0.0)),
        }
    }
    /// The element count of `shape`, or an error when it overflows or exceeds [`MAX_ELEMENTS`], so
    /// that an absurd user-given shape is an error instead of an aborted allocation.
    /// Zero-length dimensions do not excuse the others: `[0, 2^40]` is refused too (the array
    /// library's own limit is on the product of the non-zero dimensions).
    pub fn checked_len(shape: &[usize]) -> Result<usize, KernelError> {
        let nonzero = shape
            .iter()
            .filter(|&&d| d != 0)
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .filter(|&n| n <= MAX_ELEMENTS)
            .ok_or_else(|| {
                KernelError::Shape(format!(
                    "shape {shape:?} has more than {MAX_ELEMENTS} elements"
                ))
            })?;
        Ok(if shape.contains(&0) { 0 } else { nonzero })
    }

    /// True for an f32 or f64 tensor in row-major (standard) layout: one an elementwise kernel can
    /// overwrite in place.
    pub fn is_writable_float(&self) -> bool {
        match self {
            Value::F32(a) => a.is_standard_layout(),
            Value::F64(a) => a.is_standard_layout(),
            _ => false,
        }
    }

    /// A tensor of the given shape with every element `x` converted to `dtype`. An absurd shape
    /// (see [`Value::checked_len`]) or an allocation the machine refuses is an error, never an
    /// abort.
    pub fn filled(dtype: DType, shape: &[usize], x: f64) -> Result<Self, KernelError> {
        fn make<T: Clone>(shape: &[usize], n: usize, x: T) -> Result<ArrayD<T>, KernelError> {
            let mut v: Vec<T> = Vec::new();
            v.try_reserve_exact(n)
                .map_err(|_| ferroflow_cpu::Error::out_of_memory::<T>("a filled tensor", n))?;
            v.resize(n, x);
            Ok(ArrayD::from_shape_vec(IxDyn(shape), v)?)
        }
        let n = Value::checked_len(shape)?;
        Ok(match dtype {
            DType::F32 => Value::F32(make(shape, n, x as f32)?),
            DType::F64 => Value::F64(make(shape, n, x)?),
            DType::I64 => Value::I64(make(shape, n, x as i64)?),
            DType::Bool => Value::Bool(make(shape, n, x != 0.0)?),
        })
    }
    /// An f32 tensor from a shape and row-major data; `Err` when the sizes disagree.
    pub fn from_f32(shape: &[usize], data: Vec<f32>) -> Result<Self, crate::Error> {
        let len = data.len();
        ArrayD::from_shape_vec(IxDyn(shape), data)
            .map(Value::F32)
            .map_err(|_| crate::Error::DataShape {
                shape: shape.to_vec(),
                len,
            })
    }
    /// An f64 tensor from a shape and row-major data.
    pub fn from_f64(shape: &[usize], data: Vec<f64>) -> Result<Self, crate::Error> {
        let len = data.len();
        ArrayD::from_shape_vec(IxDyn(shape), data)
            .map(Value::F64)
            .map_err(|_| crate::Error::DataShape {
                shape: shape.to_vec(),
                len,
            })
    }
    /// An i64 tensor from a shape and row-major data.
    pub fn from_i64(shape: &[usize], data: Vec<i64>) -> Result<Self, crate::Error> {
        let len = data.len();
        ArrayD::from_shape_vec(IxDyn(shape), data)
            .map(Value::I64)
            .map_err(|_| crate::Error::DataShape {
                shape: shape.to_vec(),
                len,
            })
    }
    /// The f32 array, if this is one.
    pub fn as_f32(&self) -> Option<&ArrayD<f32>> {
        match self {
            Value::F32(a) => Some(a),
            _ => None,
        }
    }
    /// The f64 array, if this is one.
    pub fn as_f64(&self) -> Option<&ArrayD<f64>> {
        match self {
            Value::F64(a) => Some(a),
            _ => None,
        }
    }
    /// The i64 array, if this is one.
    pub fn as_i64(&self) -> Option<&ArrayD<i64>> {
        match self {
            Value::I64(a) => Some(a),
            _ => None,
        }
    }
    /// The bool array, if this is one.
    pub fn as_bool(&self) -> Option<&ArrayD<bool>> {
        match self {
            Value::Bool(a) => Some(a),
            _ => None,
        }
    }
    /// Every element converted to f64, in row-major order (for tests, summaries and printing).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match self {
            Value::F32(a) => a.iter().map(|&x| x as f64).collect(),
            Value::F64(a) => a.iter().copied().collect(),
            Value::I64(a) => a.iter().map(|&x| x as f64).collect(),
            Value::Bool(a) => a.iter().map(|&x| if x { 1.0 } else { 0.0 }).collect(),
        }
    }
    /// The single element of a one-element tensor as f64.
    pub fn scalar_value(&self) -> Option<f64> {
        if self.len() != 1 {
            return None;
        }
        match self {
            Value::F32(a) => a.iter().next().map(|&x| x as f64),
            Value::F64(a) => a.iter().next().copied(),
            Value::I64(a) => a.iter().next().map(|&x| x as f64),
            Value::Bool(a) => a.iter().next().map(|&x| if x { 1.0 } else { 0.0 }),
        }
    }
    /// Converts to another dtype (TF's `cast`: float→int truncates toward zero, nonzero→true).
    pub fn cast(&self, to: DType) -> Value {
        // A context without a memory budget never refuses an output: `cast_in` cannot fail here.
        self.cast_in(&Context::serial(), to)
            .unwrap_or_else(|_| Value::empty())
    }

    /// [`Value::cast`] with the output storage from `ctx`'s pool and drawn from its memory budget.
    pub fn cast_in(&self, ctx: &Context<'_>, to: DType) -> ferroflow_cpu::Result<Value> {
        Ok(match (self, to) {
            (Value::F32(a), DType::F32) => Value::F32(map_pooled(ctx, a, |x| x)?),
            (Value::F64(a), DType::F64) => Value::F64(map_pooled(ctx, a, |x| x)?),
            (Value::I64(a), DType::I64) => Value::I64(map_pooled(ctx, a, |x| x)?),
            (Value::Bool(a), DType::Bool) => Value::Bool(map_pooled(ctx, a, |x| x)?),
            (Value::F32(a), DType::F64) => Value::F64(map_pooled(ctx, a, |x| x as f64)?),
            (Value::F32(a), DType::I64) => Value::I64(map_pooled(ctx, a, |x| x as i64)?),
            (Value::F32(a), DType::Bool) => Value::Bool(map_pooled(ctx, a, |x| x != 0.0)?),
            (Value::F64(a), DType::F32) => Value::F32(map_pooled(ctx, a, |x| x as f32)?),
            (Value::F64(a), DType::I64) => Value::I64(map_pooled(ctx, a, |x| x as i64)?),
            (Value::F64(a), DType::Bool) => Value::Bool(map_pooled(ctx, a, |x| x != 0.0)?),
            (Value::I64(a), DType::F32) => Value::F32(map_pooled(ctx, a, |x| x as f32)?),
            (Value::I64(a), DType::F64) => Value::F64(map_pooled(ctx, a, |x| x as f64)?),
            (Value::I64(a), DType::Bool) => Value::Bool(map_pooled(ctx, a, |x| x != 0)?),
            (Value::Bool(a), DType::F32) => Value::F32(map_pooled(ctx, a, |x| x as u8 as f32)?),
            (Value::Bool(a), DType::F64) => Value::F64(map_pooled(ctx, a, |x| x as u8 as f64)?),
            (Value::Bool(a), DType::I64) => Value::I64(map_pooled(ctx, a, |x| x as i64)?),
        })
    }
}

impl From<ArrayD<f32>> for Value {
    fn from(a: ArrayD<f32>) -> Self {
        Value::F32(a)
    }
}
impl From<ArrayD<f64>> for Value {
    fn from(a: ArrayD<f64>) -> Self {
        Value::F64(a)
    }
}
impl From<ArrayD<i64>> for Value {
    fn from(a: ArrayD<i64>) -> Self {
        Value::I64(a)
    }
}
impl From<ArrayD<bool>> for Value {
    fn from(a: ArrayD<bool>) -> Self {
        Value::Bool(a)
    }
}
impl From<f32> for Value {
    fn from(x: f32) -> Self {
        Value::scalar_f32(x)
    }
}
impl From<f64> for Value {
    fn from(x: f64) -> Self {
        Value::F64(ArrayD::from_elem(IxDyn(&[]), x))
    }
}
impl From<i64> for Value {
    fn from(x: i64) -> Self {
        Value::I64(ArrayD::from_elem(IxDyn(&[]), x))
    }
}
impl From<bool> for Value {
    fn from(x: bool) -> Self {
        Value::Bool(ArrayD::from_elem(IxDyn(&[]), x))
    }
}

/// Gives a dead value's storage to `pool` (see [`VecPool`]).
pub(crate) fn recycle(pool: &mut VecPool, v: Value) {
    match v {
        Value::F32(a) => pool.put_vec(a.into_raw_vec_and_offset().0),
        Value::F64(a) => pool.put_vec(a.into_raw_vec_and_offset().0),
        Value::I64(a) => pool.put_vec(a.into_raw_vec_and_offset().0),
        Value::Bool(a) => pool.put_vec(a.into_raw_vec_and_offset().0),
    }
}

/// Moves a vector with room for `n` elements of `dtype` from `from` to `to`, if one fits.
pub(crate) fn lend_one(from: &mut VecPool, to: &mut VecPool, dtype: DType, n: usize) {
    match dtype {
        DType::F32 => from.lend_one_to::<f32>(to, n),
        DType::F64 => from.lend_one_to::<f64>(to, n),
        DType::I64 => from.lend_one_to::<i64>(to, n),
        DType::Bool => from.lend_one_to::<bool>(to, n),
    }
}

/// `f` of every element of `a`, in row-major order, into a pooled buffer of `a`'s shape.
pub(crate) fn map_pooled<A: Clone, B: 'static>(
    ctx: &Context<'_>,
    a: &ArrayD<A>,
    f: impl Fn(A) -> B,
) -> ferroflow_cpu::Result<ArrayD<B>> {
    let mut v = ctx.output_vec(a.len())?;
    match a.as_slice() {
        Some(s) => v.extend(s.iter().map(|x| f(x.clone()))),
        None => v.extend(a.iter().map(|x| f(x.clone()))),
    }
    Ok(ArrayD::from_shape_vec(a.raw_dim(), v).unwrap_or_else(|_| a.map(|x| f(x.clone()))))
}

/// A scalar in a pooled buffer.
pub(crate) fn pooled_scalar<T: Clone + 'static>(
    ctx: &Context<'_>,
    x: T,
) -> ferroflow_cpu::Result<ArrayD<T>> {
    let mut v = ctx.output_vec(1)?;
    v.push(x.clone());
    Ok(ArrayD::from_shape_vec(IxDyn(&[]), v).unwrap_or_else(|_| ArrayD::from_elem(IxDyn(&[]), x)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recycled_values_serve_later_outputs_of_their_element_type() {
        let mut pool = VecPool::default();
        recycle(
            &mut pool,
            Value::F32(ndarray::Array1::from_vec(vec![1.0f32; 100]).into_dyn()),
        );
        recycle(
            &mut pool,
            Value::I64(ndarray::Array1::from_vec(vec![7i64; 50]).into_dyn()),
        );
        let mut side = VecPool::default();
        lend_one(&mut pool, &mut side, DType::F32, 80);
        assert_eq!(side.take::<f32>(80).map(|v| v.capacity()), Some(100));
        assert!(pool.take::<f32>(10).is_none());
        assert!(pool.take::<i64>(40).is_some());
    }

    #[test]
    fn cast_truncates_floats_and_maps_nonzero_to_true() {
        let v = Value::from_f32(&[4], vec![-1.7, 0.0, 2.9, 0.5]).unwrap();
        assert_eq!(v.cast(DType::I64).to_f64_vec(), vec![-1.0, 0.0, 2.0, 0.0]);
        assert_eq!(v.cast(DType::Bool).to_f64_vec(), vec![1.0, 0.0, 1.0, 1.0]);
    }
}
