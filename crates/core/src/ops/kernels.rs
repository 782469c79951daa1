//! Shared kernel helpers over values and arrays: broadcasting, reshaping, dtype dispatch, and the
//! array-level elementwise passes built on the backend's slice passes.

use crate::error::{KernelError, OpResult};
use crate::value::Value;
pub use ferroflow_cpu::parallel::*;
pub use ferroflow_cpu::{Context, Float};
use ndarray::{ArrayD, Axis, IxDyn, Zip};

/// A concrete shape on the stack (up to six dimensions).
pub type Dims = smallvec::SmallVec<[usize; 6]>;

/// Numpy broadcasting of two concrete shapes.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> OpResult<Dims> {
    let n = a.len().max(b.len());
    let mut out: Dims = smallvec::smallvec![0; n];
    for (i, slot) in out.iter_mut().enumerate() {
        let da = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        *slot = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(KernelError::Shape(format!(
                "shapes {a:?} and {b:?} cannot be broadcast together"
            )));
        };
    }
    crate::Value::checked_len(&out)?;
    Ok(out)
}

/// Applies `f` elementwise over two arrays with numpy broadcasting; the result is row-major.
pub fn zip_broadcast<A: Clone, B: Clone, C: 'static>(
    ctx: &Context<'_>,
    a: &ArrayD<A>,
    b: &ArrayD<B>,
    mut f: impl FnMut(A, B) -> C,
) -> OpResult<ArrayD<C>> {
    if a.shape() == b.shape() && a.is_standard_layout() && b.is_standard_layout() {
        let (sa, sb) = (a.as_slice(), b.as_slice());
        if let (Some(sa), Some(sb)) = (sa, sb) {
            let mut v: Vec<C> = ctx.output_vec(sa.len())?;
            v.extend(sa.iter().zip(sb).map(|(x, y)| f(x.clone(), y.clone())));
            return ArrayD::from_shape_vec(IxDyn(a.shape()), v).map_err(KernelError::from);
        }
    }
    let shape = broadcast_shapes(a.shape(), b.shape())?;
    // Fast paths for the common broadcasts: a scalar on either side, and a row vector (a bias) over the
    // trailing dimensions of the other operand.
    if let (Some(sa), Some(sb)) = (a.as_slice(), b.as_slice()) {
        let n: usize = shape.iter().product();
        let trailing = |big: &[usize], small: &[usize]| {
            small.len() <= big.len() && big[big.len() - small.len()..] == *small
        };
        let v: Option<Vec<C>> = if sb.len() == 1 && a.shape() == &shape[..] {
            let mut v = ctx.output_vec(n)?;
            v.extend(sa.iter().map(|x| f(x.clone(), sb[0].clone())));
            Some(v)
        } else if sa.len() == 1 && b.shape() == &shape[..] {
            let mut v = ctx.output_vec(n)?;
            v.extend(sb.iter().map(|y| f(sa[0].clone(), y.clone())));
            Some(v)
        } else if !sb.is_empty() && a.shape() == &shape[..] && trailing(a.shape(), b.shape()) {
            let mut out = ctx.try_vec(n)?;
            for row in sa.chunks_exact(sb.len()) {
                out.extend(row.iter().zip(sb).map(|(x, y)| f(x.clone(), y.clone())));
            }
            Some(out)
        } else if !sa.is_empty() && b.shape() == &shape[..] && trailing(b.shape(), a.shape()) {
            let mut out = ctx.try_vec(n)?;
            for row in sb.chunks_exact(sa.len()) {
                out.extend(sa.iter().zip(row).map(|(x, y)| f(x.clone(), y.clone())));
            }
            Some(out)
        } else {
            None
        };
        if let Some(v) = v {
            return ArrayD::from_shape_vec(IxDyn(&shape), v).map_err(KernelError::from);
        }
    }
    let av = a
        .broadcast(IxDyn(&shape))
        .ok_or_else(|| KernelError::Shape("broadcast failed".into()))?;
    let bv = b
        .broadcast(IxDyn(&shape))
        .ok_or_else(|| KernelError::Shape("broadcast failed".into()))?;
    let mut out = ctx.try_vec(crate::Value::checked_len(&shape)?)?;
    Zip::from(&av)
        .and(&bv)
        .for_each(|x, y| out.push(f(x.clone(), y.clone())));
    ArrayD::from_shape_vec(IxDyn(&shape), out).map_err(KernelError::from)
}

/// Returns the array in row-major layout, copying only when needed.
pub fn standard<T: Clone>(a: ArrayD<T>) -> ArrayD<T> {
    if a.is_standard_layout() {
        a
    } else {
        a.as_standard_layout().into_owned()
    }
}

/// Reshapes to a concrete shape with the same number of elements (row-major).
pub fn reshape<T: Clone + 'static>(
    ctx: &Context<'_>,
    a: &ArrayD<T>,
    shape: &[usize],
) -> OpResult<ArrayD<T>> {
    let n = crate::Value::checked_len(shape)?;
    if n != a.len() {
        return Err(KernelError::Shape(format!(
            "cannot reshape a tensor with {} elements to shape {:?} ({} elements)",
            a.len(),
            shape,
            n
        )));
    }
    let mut data: Vec<T> = ctx.output_vec(n)?;
    match a.as_slice() {
        Some(s) => data.extend_from_slice(s),
        None => data.extend(a.iter().cloned()),
    }
    ArrayD::from_shape_vec(IxDyn(shape), data).map_err(KernelError::from)
}

/// Sums `g` down to `target` (reverses numpy broadcasting): leading axes and axes where the
/// target has size 1 are summed.
pub fn sum_to_shape<T: Clone + num_traits::Zero + std::ops::Add<Output = T>>(
    g: &ArrayD<T>,
    target: &[usize],
) -> OpResult<ArrayD<T>> {
    if g.shape() == target {
        return Ok(g.clone());
    }
    let extra = g.ndim().checked_sub(target.len()).ok_or_else(|| {
        KernelError::Shape(format!(
            "cannot sum a gradient of shape {:?} to the larger shape {:?}",
            g.shape(),
            target
        ))
    })?;
    let mut out = g.clone();
    for _ in 0..extra {
        out = out.sum_axis(Axis(0));
    }
    for (i, &t) in target.iter().enumerate() {
        if t == 1 && out.shape()[i] != 1 {
            out = out.sum_axis(Axis(i)).insert_axis(Axis(i));
        } else if out.shape()[i] != t {
            return Err(KernelError::Shape(format!(
                "cannot sum a gradient of shape {:?} to shape {:?}",
                g.shape(),
                target
            )));
        }
    }
    Ok(standard(out))
}

/// Applies a float function to an f32 or f64 value; other dtypes are an error naming the op.
pub fn map_float(
    ctx: &Context<'_>,
    v: &Value,
    op: &str,
    f32f: impl Fn(f32) -> f32 + Sync + Send,
    f64f: impl Fn(f64) -> f64 + Sync + Send,
) -> OpResult<Value> {
    let run = |shape: &[usize], data: Option<&[f32]>, a: &ArrayD<f32>| -> OpResult<Value> {
        let v = match data {
            Some(s) => par_map(ctx, s, |x| f32f(*x))?,
            None => a.iter().map(|x| f32f(*x)).collect(),
        };
        ArrayD::from_shape_vec(IxDyn(shape), v)
            .map(Value::F32)
            .map_err(KernelError::from)
    };
    match v {
        Value::F32(a) => run(a.shape(), a.as_slice(), a),
        Value::F64(a) => {
            let v: Vec<f64> = match a.as_slice() {
                Some(s) => par_map(ctx, s, |x| f64f(*x))?,
                None => a.iter().map(|x| f64f(*x)).collect(),
            };
            ArrayD::from_shape_vec(IxDyn(a.shape()), v)
                .map(Value::F64)
                .map_err(KernelError::from)
        }
        other => Err(KernelError::DType(format!(
            "{op} needs a float input, got {}",
            other.dtype()
        ))),
    }
}

/// `target = f(target, other)` (or `f(other, target)` when `!target_left`) in place, `other`
/// broadcast to `target`'s shape (which must be the broadcast shape). Equal shapes, a scalar and a
/// trailing row (a bias) run on the context's threads; other broadcasts go through ndarray.
pub fn zip_into<T: Copy + Send + Sync>(
    ctx: &Context<'_>,
    target: &mut ArrayD<T>,
    other: &ArrayD<T>,
    target_left: bool,
    f: impl Fn(T, T) -> T + Sync + Send,
) -> OpResult<()> {
    if broadcast_shapes(target.shape(), other.shape())?[..] != *target.shape() {
        return Err(KernelError::Shape(format!(
            "cannot write {:?} broadcast with {:?} into the first",
            target.shape(),
            other.shape()
        )));
    }
    let g = |t: T, o: T| if target_left { f(t, o) } else { f(o, t) };
    let trailing = other.ndim() <= target.ndim()
        && target.shape()[target.ndim() - other.ndim()..] == *other.shape();
    let parts = if ctx.parallel(target.len()) {
        ctx.threads()
    } else {
        1
    };
    if let (Some(t), Some(o)) = (target.as_slice_mut(), other.as_slice()) {
        if let [s] = o {
            par_update(ctx, t, |x| g(x, *s));
            return Ok(());
        }
        // The operand order is chosen outside the loops, which then vectorize (a branch inside kept
        // them scalar).
        if o.len() == t.len() {
            // Equal shapes: one chunk of both per thread when large.
            if target_left {
                zip_slices(ctx, t, o, parts, f);
            } else {
                zip_slices(ctx, t, o, parts, |x, y| f(y, x));
            }
            return Ok(());
        }
        if trailing && !o.is_empty() {
            // A trailing row (a bias): whole rows per thread.
            if target_left {
                zip_rows(ctx, t, o, f);
            } else {
                zip_rows(ctx, t, o, |x, y| f(y, x));
            }
            return Ok(());
        }
    }
    target.zip_mut_with(other, |x, y| *x = g(*x, *y));
    Ok(())
}

/// Like [`zip_broadcast`] for pure functions: equal shapes and scalars run on the context's threads.
pub fn zip_broadcast_par<
    A: Clone + Sync + Send,
    B: Clone + Sync + Send,
    C: Copy + Default + Send + Sync + 'static,
>(
    ctx: &Context<'_>,
    a: &ArrayD<A>,
    b: &ArrayD<B>,
    f: impl Fn(A, B) -> C + Sync + Send,
) -> OpResult<ArrayD<C>> {
    if let (Some(sa), Some(sb)) = (a.as_slice(), b.as_slice()) {
        let v = if a.shape() == b.shape() {
            Some(par_zip(ctx, sa, sb, |x, y| f(x.clone(), y.clone()))?)
        } else if sb.len() == 1 && a.ndim() >= b.ndim() {
            Some(par_map(ctx, sa, |x| f(x.clone(), sb[0].clone()))?)
        } else if sa.len() == 1 && b.ndim() >= a.ndim() {
            Some(par_map(ctx, sb, |y| f(sa[0].clone(), y.clone()))?)
        } else {
            None
        };
        if let Some(v) = v {
            let shape = if a.len() >= b.len() && a.ndim() >= b.ndim() {
                a.shape()
            } else {
                b.shape()
            };
            return ArrayD::from_shape_vec(IxDyn(shape), v).map_err(KernelError::from);
        }
    }
    zip_broadcast(ctx, a, b, f)
}

/// The f32/f64 array behind a value, for kernels generic over `Float`.
pub trait FloatArray: Float {
    /// Borrows the array when the value has this dtype.
    fn array(v: &Value) -> Option<&ArrayD<Self>>;
    /// Wraps an array into a value.
    fn wrap(a: ArrayD<Self>) -> Value;
    /// Mutably borrows the array when the value has this dtype.
    fn array_mut(v: &mut Value) -> Option<&mut ArrayD<Self>>;
}
impl FloatArray for f32 {
    fn array(v: &Value) -> Option<&ArrayD<f32>> {
        v.as_f32()
    }
    fn wrap(a: ArrayD<f32>) -> Value {
        Value::F32(a)
    }
    fn array_mut(v: &mut Value) -> Option<&mut ArrayD<f32>> {
        match v {
            Value::F32(a) => Some(a),
            _ => None,
        }
    }
}
impl FloatArray for f64 {
    fn array(v: &Value) -> Option<&ArrayD<f64>> {
        v.as_f64()
    }
    fn wrap(a: ArrayD<f64>) -> Value {
        Value::F64(a)
    }
    fn array_mut(v: &mut Value) -> Option<&mut ArrayD<f64>> {
        match v {
            Value::F64(a) => Some(a),
            _ => None,
        }
    }
}

/// Gets the `i`-th input of a kernel as a float array of type `T`.
pub fn float_input<'a, T: FloatArray>(
    inputs: &[&'a Value],
    i: usize,
    op: &str,
) -> OpResult<&'a ArrayD<T>> {
    let v = inputs
        .get(i)
        .ok_or_else(|| KernelError::InvalidArgument(format!("{op}: missing input {i}")))?;
    T::array(v).ok_or_else(|| {
        KernelError::DType(format!(
            "{op}: input {i} has dtype {}, expected a float of the op's dtype",
            v.dtype()
        ))
    })
}

/// The float array of type `T` an in-place kernel of `op` writes over (an error when the target
/// has another dtype than the op's other inputs).
pub fn float_target<'a, T: FloatArray>(
    target: &'a mut Value,
    op: &str,
) -> OpResult<&'a mut ArrayD<T>> {
    T::array_mut(target).ok_or_else(|| KernelError::DType(format!("{op}: inputs differ in dtype")))
}

/// Gets the `i`-th input of a kernel.
pub fn input<'a>(inputs: &[&'a Value], i: usize, op: &str) -> OpResult<&'a Value> {
    inputs
        .get(i)
        .copied()
        .ok_or_else(|| KernelError::InvalidArgument(format!("{op}: missing input {i}")))
}

/// Runs the f32 or the f64 instance of a generic kernel body, by the dtype of the first input.
pub fn by_float(
    inputs: &[&Value],
    op: &str,
    f32_body: impl FnOnce() -> OpResult<Value>,
    f64_body: impl FnOnce() -> OpResult<Value>,
) -> OpResult<Value> {
    match inputs.first().map(|v| v.dtype()) {
        Some(crate::dtype::DType::F32) => f32_body(),
        Some(crate::dtype::DType::F64) => f64_body(),
        Some(d) => Err(KernelError::DType(format!(
            "{op} needs float inputs, got {d}"
        ))),
        None => Err(KernelError::DType(format!("{op} needs at least one input"))),
    }
}
