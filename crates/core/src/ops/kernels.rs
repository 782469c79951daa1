//! Shared kernel helpers: the float trait, broadcasting, reshaping and dtype dispatch.

pub use super::parallel::*;
use crate::error::OpResult;
use crate::value::Value;
use ndarray::{ArrayD, Axis, IxDyn, Zip};

thread_local! {
    static INTRA_OP_THREADS: std::cell::Cell<usize> = const { std::cell::Cell::new(1) };
}

thread_local! {
    /// This thread's own worker pool, of which the thread itself is worker 0 (rayon's
    /// `use_current_thread`): parallel kernels start on the calling thread at once and wake only the
    /// other workers, instead of handing all the work to a global pool and sleeping until it is done.
    /// Built on the first run with more than one thread and kept for the thread's life (rayon cannot
    /// take a thread out of a pool again); `None` when it could not be built (the thread already
    /// belongs to another rayon pool), and kernels then use the pool they are in.
    static OWN_POOL: std::cell::OnceCell<Option<rayon::ThreadPool>> = const { std::cell::OnceCell::new() };
}

/// Sets how many threads kernels started from this thread may use (the session sets it per run).
/// The first call asking for more than one thread gives this thread its own pool of that size.
pub fn set_intra_op_threads(n: usize) {
    let n = n.max(1);
    INTRA_OP_THREADS.with(|c| c.set(n));
    if n > 1 {
        OWN_POOL.with(|p| {
            p.get_or_init(|| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .use_current_thread()
                    .thread_name(|i| format!("ferroflow-intra-op-{i}"))
                    .build()
                    .ok()
            });
        });
    }
}

/// Runs `f` with kernels started from this thread limited to `n` threads, then restores the count.
pub fn with_intra_op_threads<R>(n: usize, f: impl FnOnce() -> R) -> R {
    let saved = INTRA_OP_THREADS.with(|c| c.replace(n.max(1)));
    let r = f();
    INTRA_OP_THREADS.with(|c| c.set(saved));
    r
}

/// How many threads kernels started from this thread may use.
pub fn intra_op_threads() -> usize {
    INTRA_OP_THREADS.with(|c| c.get())
}

/// The float element types kernels are generic over (f32 and f64).
pub trait Float:
    num_traits::Float
    + ndarray::LinalgScalar
    + ndarray::ScalarOperand
    + Default
    + std::fmt::Debug
    + Send
    + Sync
    + super::gemm::Microkernels
    + 'static
{
    /// Converts from f64 (rounding for f32).
    fn from_f64(x: f64) -> Self;
    /// Converts to f64.
    fn to_f64(self) -> f64;
    /// e^x; for f32 a branch-free polynomial that vectorizes (see [`exp_f32`]).
    fn exp_fast(self) -> Self;
    /// e^x - 1, accurate near 0; for f32 branch-free and vectorizable (see [`exp_m1_f32`]).
    fn exp_m1_fast(self) -> Self;
}
impl Float for f32 {
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn exp_fast(self) -> Self {
        exp_f32(self)
    }
    #[inline(always)]
    fn exp_m1_fast(self) -> Self {
        exp_m1_f32(self)
    }
}
impl Float for f64 {
    fn from_f64(x: f64) -> Self {
        x
    }
    fn to_f64(self) -> f64 {
        self
    }
    fn exp_fast(self) -> Self {
        self.exp()
    }
    fn exp_m1_fast(self) -> Self {
        self.exp_m1()
    }
}

/// e^x for f32 without a libm call, so that loops over it vectorize: x = n·ln2 + r with |r| ≤ ln2/2
/// (ln2 split in two parts so r is exact), e^r by its degree-7 Taylor polynomial (truncation below
/// 2^-24 relative on that interval), 2^n put together in the exponent bits. Relative error about
/// 2e-7 (2 ulp); +inf above ln(f32::MAX) = 88.7228, 0 below -87.3 (where e^x is subnormal), NaN stays NaN.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let xc = x.clamp(-87.3, 88.722_8);
    // Round to nearest by adding and subtracting 1.5·2^23 (plain SSE2 arithmetic, unlike `round`,
    // which is a libm call on the baseline x86-64 target and would stop vectorization).
    const ROUND: f32 = 12_582_912.0;
    let n = (xc * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    let mut p = 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    // 2^n as 2^h·2^(n-h) with h = floor(n/2), so that both factors are normal numbers for every n in
    // [-126, 128] (a single 2^n would overflow the exponent field at 128 and be 0 at -127). All in
    // float and bit arithmetic: a float-to-int `as` cast saturates, which is scalar code.
    let h = (n * 0.5 - 0.25 + ROUND) - ROUND;
    // e + 127 lands in the low mantissa bits of e + 127 + 2^23; shifted up it is the exponent field.
    let pow2 = |e: f32| f32::from_bits(((e + (127.0 + 8_388_608.0)).to_bits() & 0x7f_ffff) << 23);
    let y = p * pow2(h) * pow2(n - h);
    if x > 88.722_8 {
        f32::INFINITY
    } else if x < -87.3 {
        0.0
    } else if x.is_nan() {
        x
    } else {
        y
    }
}

/// e^x - 1 for f32, vectorizable: a degree-9 Taylor polynomial for |x| < 0.5 (no cancellation, error
/// below 1e-9 relative there), [`exp_f32`]` - 1` elsewhere.
#[inline(always)]
pub fn exp_m1_f32(x: f32) -> f32 {
    let mut p = 1.0 / 362_880.0;
    p = p * x + 1.0 / 40320.0;
    p = p * x + 1.0 / 5040.0;
    p = p * x + 1.0 / 720.0;
    p = p * x + 1.0 / 120.0;
    p = p * x + 1.0 / 24.0;
    p = p * x + 1.0 / 6.0;
    p = p * x + 0.5;
    let small = (p * x + 1.0) * x;
    let large = exp_f32(x) - 1.0;
    if x.abs() < 0.5 {
        small
    } else {
        large
    }
}

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
            return Err(format!(
                "shapes {a:?} and {b:?} cannot be broadcast together"
            ));
        };
    }
    crate::Value::checked_len(&out)?;
    Ok(out)
}

/// Applies `f` elementwise over two arrays with numpy broadcasting; the result is row-major.
pub fn zip_broadcast<A: Clone, B: Clone, C: 'static>(
    a: &ArrayD<A>,
    b: &ArrayD<B>,
    mut f: impl FnMut(A, B) -> C,
) -> OpResult<ArrayD<C>> {
    if a.shape() == b.shape() && a.is_standard_layout() && b.is_standard_layout() {
        let (sa, sb) = (a.as_slice(), b.as_slice());
        if let (Some(sa), Some(sb)) = (sa, sb) {
            let mut v: Vec<C> = crate::value::output_vec(sa.len());
            v.extend(sa.iter().zip(sb).map(|(x, y)| f(x.clone(), y.clone())));
            return ArrayD::from_shape_vec(IxDyn(a.shape()), v).map_err(|e| e.to_string());
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
            let mut v = crate::value::output_vec(n);
            v.extend(sa.iter().map(|x| f(x.clone(), sb[0].clone())));
            Some(v)
        } else if sa.len() == 1 && b.shape() == &shape[..] {
            let mut v = crate::value::output_vec(n);
            v.extend(sb.iter().map(|y| f(sa[0].clone(), y.clone())));
            Some(v)
        } else if !sb.is_empty() && a.shape() == &shape[..] && trailing(a.shape(), b.shape()) {
            let mut out = crate::Value::try_vec(n)?;
            for row in sa.chunks_exact(sb.len()) {
                out.extend(row.iter().zip(sb).map(|(x, y)| f(x.clone(), y.clone())));
            }
            Some(out)
        } else if !sa.is_empty() && b.shape() == &shape[..] && trailing(b.shape(), a.shape()) {
            let mut out = crate::Value::try_vec(n)?;
            for row in sb.chunks_exact(sa.len()) {
                out.extend(sa.iter().zip(row).map(|(x, y)| f(x.clone(), y.clone())));
            }
            Some(out)
        } else {
            None
        };
        if let Some(v) = v {
            return ArrayD::from_shape_vec(IxDyn(&shape), v).map_err(|e| e.to_string());
        }
    }
    let av = a.broadcast(IxDyn(&shape)).ok_or("broadcast failed")?;
    let bv = b.broadcast(IxDyn(&shape)).ok_or("broadcast failed")?;
    let mut out = crate::Value::try_vec(crate::Value::checked_len(&shape)?)?;
    Zip::from(&av)
        .and(&bv)
        .for_each(|x, y| out.push(f(x.clone(), y.clone())));
    ArrayD::from_shape_vec(IxDyn(&shape), out).map_err(|e| e.to_string())
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
pub fn reshape<T: Clone + 'static>(a: &ArrayD<T>, shape: &[usize]) -> OpResult<ArrayD<T>> {
    let n = crate::Value::checked_len(shape)?;
    if n != a.len() {
        return Err(format!(
            "cannot reshape a tensor with {} elements to shape {:?} ({} elements)",
            a.len(),
            shape,
            n
        ));
    }
    let mut data: Vec<T> = crate::value::output_vec(n);
    match a.as_slice() {
        Some(s) => data.extend_from_slice(s),
        None => data.extend(a.iter().cloned()),
    }
    ArrayD::from_shape_vec(IxDyn(shape), data).map_err(|e| e.to_string())
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
        format!(
            "cannot sum a gradient of shape {:?} to the larger shape {:?}",
            g.shape(),
            target
        )
    })?;
    let mut out = g.clone();
    for _ in 0..extra {
        out = out.sum_axis(Axis(0));
    }
    for (i, &t) in target.iter().enumerate() {
        if t == 1 && out.shape()[i] != 1 {
            out = out.sum_axis(Axis(i)).insert_axis(Axis(i));
        } else if out.shape()[i] != t {
            return Err(format!(
                "cannot sum a gradient of shape {:?} to shape {:?}",
                g.shape(),
                target
            ));
        }
    }
    Ok(standard(out))
}

/// Applies a float function to an f32 or f64 value; other dtypes are an error naming the op.
pub fn map_float(
    v: &Value,
    op: &str,
    f32f: impl Fn(f32) -> f32 + Sync + Send,
    f64f: impl Fn(f64) -> f64 + Sync + Send,
) -> OpResult<Value> {
    let run = |shape: &[usize], data: Option<&[f32]>, a: &ArrayD<f32>| -> OpResult<Value> {
        let v = match data {
            Some(s) => par_map(s, |x| f32f(*x)),
            None => a.iter().map(|x| f32f(*x)).collect(),
        };
        ArrayD::from_shape_vec(IxDyn(shape), v)
            .map(Value::F32)
            .map_err(|e| e.to_string())
    };
    match v {
        Value::F32(a) => run(a.shape(), a.as_slice(), a),
        Value::F64(a) => {
            let v: Vec<f64> = match a.as_slice() {
                Some(s) => par_map(s, |x| f64f(*x)),
                None => a.iter().map(|x| f64f(*x)).collect(),
            };
            ArrayD::from_shape_vec(IxDyn(a.shape()), v)
                .map(Value::F64)
                .map_err(|e| e.to_string())
        }
        other => Err(format!("{op} needs a float input, got {}", other.dtype())),
    }
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
        .ok_or_else(|| format!("{op}: missing input {i}"))?;
    T::array(v).ok_or_else(|| {
        format!(
            "{op}: input {i} has dtype {}, expected a float of the op's dtype",
            v.dtype()
        )
    })
}

/// Gets the `i`-th input of a kernel.
pub fn input<'a>(inputs: &[&'a Value], i: usize, op: &str) -> OpResult<&'a Value> {
    inputs
        .get(i)
        .copied()
        .ok_or_else(|| format!("{op}: missing input {i}"))
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
        Some(d) => Err(format!("{op} needs float inputs, got {d}")),
        None => Err(format!("{op} needs at least one input")),
    }
}

#[cfg(test)]
mod exp_tests {
    use super::*;

    /// The vectorizable f32 exp and expm1 agree with the f64 library functions to 3e-7 relative
    /// over the whole range (and 1e-6 absolute where e^x - 1 is tiny), with the same special values.
    #[test]
    fn fast_exp_matches_the_library() {
        let mut x = -90.0f32;
        while x < 90.0 {
            let want = (x as f64).exp();
            let got = exp_f32(x) as f64;
            if (-87.3..=88.722_8).contains(&x) {
                assert!(
                    ((got - want) / want).abs() < 3e-7,
                    "exp({x}) = {got}, want {want}"
                );
            } else if x < -87.3 {
                assert_eq!(got, 0.0, "exp({x})"); // e^x < 1.2e-38 (subnormal) flushed to 0
            } else {
                assert_eq!(got, f64::INFINITY, "exp({x})");
            }
            let want = (x as f64).exp_m1();
            let got = exp_m1_f32(x) as f64;
            if want.is_finite() && want.abs() < 3.4e38 {
                let tol = 3e-7 * want.abs() + 1e-12;
                assert!((got - want).abs() <= tol, "expm1({x}) = {got}, want {want}");
            }
            x += 0.001_37;
        }
        for x in [1e-8f32, -1e-8, 1e-20, 0.0, -0.0] {
            assert!((exp_m1_f32(x) - x).abs() <= x.abs() * 1e-6, "{x}");
        }
        assert_eq!(exp_f32(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_f32(100.0), f32::INFINITY);
        assert!(exp_f32(f32::NAN).is_nan());
        assert!(exp_m1_f32(f32::NAN).is_nan());
        assert_eq!(exp_m1_f32(f32::NEG_INFINITY), -1.0);
        assert_eq!(exp_f32(0.0), 1.0);
    }
}
