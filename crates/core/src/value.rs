//! Concrete tensor values that cross the session API: ndarray arrays wrapped in a small enum.

use crate::dtype::DType;
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
        Self::filled(dtype, &[], x)
    }
    /// The element count of `shape`, or an error when it overflows or exceeds [`MAX_ELEMENTS`], so
    /// that an absurd user-given shape is an error instead of an aborted allocation.
    /// Zero-length dimensions do not excuse the others: `[0, 2^40]` is refused too (the array
    /// library's own limit is on the product of the non-zero dimensions).
    pub fn checked_len(shape: &[usize]) -> Result<usize, String> {
        let nonzero = shape
            .iter()
            .filter(|&&d| d != 0)
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .filter(|&n| n <= MAX_ELEMENTS)
            .ok_or_else(|| format!("shape {shape:?} has more than {MAX_ELEMENTS} elements"))?;
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

    /// An empty vector with room for `n` elements, or an error when the allocator refuses it (a legal
    /// but larger-than-memory tensor), instead of aborting the process.
    ///
    /// Inside a session run this is where a kernel's output storage comes from: a vector of the
    /// element type with room for `n` is taken from the session's pool of dead values' storage
    /// (see `Pool`) instead of a fresh allocation when one fits.
    pub fn try_vec<T: 'static>(n: usize) -> Result<Vec<T>, String> {
        if let Some(v) = take_spare::<T>(n) {
            return Ok(v);
        }
        let mut v = Vec::new();
        v.try_reserve_exact(n).map_err(|_| {
            format!(
                "cannot allocate a tensor of {n} elements ({} bytes)",
                n.saturating_mul(std::mem::size_of::<T>())
            )
        })?;
        Ok(v)
    }

    /// `n` copies of `x`, allocated fallibly (see [`Value::try_vec`]).
    pub fn try_filled_vec<T: Clone + 'static>(n: usize, x: T) -> Result<Vec<T>, String> {
        let mut v = Self::try_vec(n)?;
        v.resize(n, x);
        Ok(v)
    }

    /// A tensor of the given shape with every element `x` converted to `dtype`.
    pub fn filled(dtype: DType, shape: &[usize], x: f64) -> Self {
        let d = IxDyn(shape);
        match dtype {
            DType::F32 => Value::F32(ArrayD::from_elem(d, x as f32)),
            DType::F64 => Value::F64(ArrayD::from_elem(d, x)),
            DType::I64 => Value::I64(ArrayD::from_elem(d, x as i64)),
            DType::Bool => Value::Bool(ArrayD::from_elem(d, x != 0.0)),
        }
    }
    /// An f32 tensor from a shape and row-major data; `Err` when the sizes disagree.
    pub fn from_f32(shape: &[usize], data: Vec<f32>) -> Result<Self, String> {
        ArrayD::from_shape_vec(IxDyn(shape), data)
            .map(Value::F32)
            .map_err(|e| e.to_string())
    }
    /// An f64 tensor from a shape and row-major data.
    pub fn from_f64(shape: &[usize], data: Vec<f64>) -> Result<Self, String> {
        ArrayD::from_shape_vec(IxDyn(shape), data)
            .map(Value::F64)
            .map_err(|e| e.to_string())
    }
    /// An i64 tensor from a shape and row-major data.
    pub fn from_i64(shape: &[usize], data: Vec<i64>) -> Result<Self, String> {
        ArrayD::from_shape_vec(IxDyn(shape), data)
            .map(Value::I64)
            .map_err(|e| e.to_string())
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
        match (self, to) {
            (Value::F32(a), DType::F32) => Value::F32(map_pooled(a, |x| x)),
            (Value::F64(a), DType::F64) => Value::F64(map_pooled(a, |x| x)),
            (Value::I64(a), DType::I64) => Value::I64(map_pooled(a, |x| x)),
            (Value::Bool(a), DType::Bool) => Value::Bool(map_pooled(a, |x| x)),
            (Value::F32(a), DType::F64) => Value::F64(map_pooled(a, |x| x as f64)),
            (Value::F32(a), DType::I64) => Value::I64(map_pooled(a, |x| x as i64)),
            (Value::F32(a), DType::Bool) => Value::Bool(map_pooled(a, |x| x != 0.0)),
            (Value::F64(a), DType::F32) => Value::F32(map_pooled(a, |x| x as f32)),
            (Value::F64(a), DType::I64) => Value::I64(map_pooled(a, |x| x as i64)),
            (Value::F64(a), DType::Bool) => Value::Bool(map_pooled(a, |x| x != 0.0)),
            (Value::I64(a), DType::F32) => Value::F32(map_pooled(a, |x| x as f32)),
            (Value::I64(a), DType::F64) => Value::F64(map_pooled(a, |x| x as f64)),
            (Value::I64(a), DType::Bool) => Value::Bool(map_pooled(a, |x| x != 0)),
            (Value::Bool(a), DType::F32) => Value::F32(map_pooled(a, |x| x as u8 as f32)),
            (Value::Bool(a), DType::F64) => Value::F64(map_pooled(a, |x| x as u8 as f64)),
            (Value::Bool(a), DType::I64) => Value::I64(map_pooled(a, |x| x as i64)),
        }
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

/// The storage of the values that died during session runs, by element type, for kernels to fill
/// again (TF's allocator keeps freed chunks the same way). While a run executes, its session's pool is
/// lent to the running thread: [`Value::try_vec`] takes the smallest stored vector that fits, and the
/// session puts back each value whose last reader has run. After warm-up a training step finds every
/// buffer it needs here and allocates nothing, and the pool holds no more than the step's peak.
#[derive(Debug, Default)]
pub(crate) struct Pool {
    f32: List<f32>,
    f64: List<f64>,
    i64: List<i64>,
    bool: List<bool>,
    /// Runs ended so far: each stored vector remembers the run it came back in, and a vector no
    /// kernel took within two more runs is freed, so storage of values that no kernel asks for again
    /// (made by a kernel that allocates by itself, or of a size no longer used) does not pile up.
    run: u64,
}

/// Stored vectors of one element type by capacity, each with the run it was stored in; per capacity
/// also the last run that stored or took one (an emptied entry stays while in use, so that steady
/// runs do not rebuild it).
#[derive(Debug)]
struct List<T> {
    by_capacity: std::collections::BTreeMap<usize, Entry<T>>,
}

/// The stored vectors of one capacity (each with its run) and the last run that used the entry.
type Entry<T> = (Vec<(Vec<T>, u64)>, u64);

impl<T> Default for List<T> {
    fn default() -> Self {
        List {
            by_capacity: std::collections::BTreeMap::new(),
        }
    }
}

impl<T> List<T> {
    fn put(&mut self, v: Vec<T>, run: u64) {
        if v.capacity() > 0 {
            let (list, used) = self.by_capacity.entry(v.capacity()).or_default();
            list.push((v, run));
            *used = run;
        }
    }

    /// The smallest stored vector with room for `n` (and not more than about twice that), emptied.
    fn take(&mut self, n: usize, run: u64) -> Option<Vec<T>> {
        let limit = n.saturating_mul(2).max(64);
        let (_, (list, used)) = self
            .by_capacity
            .range_mut(n..=limit)
            .find(|(_, (l, _))| !l.is_empty())?;
        let (mut v, _) = list.pop()?;
        *used = run;
        v.clear();
        Some(v)
    }

    /// Frees the vectors stored before run `oldest`, and the entries unused since then.
    fn trim(&mut self, oldest: u64) {
        self.by_capacity.retain(|_, (l, used)| {
            l.retain(|(_, r)| *r >= oldest);
            !l.is_empty() || *used >= oldest
        });
    }

    fn len(&self) -> usize {
        self.by_capacity.values().map(|(l, _)| l.len()).sum()
    }
}

impl Pool {
    /// Keeps a value's storage.
    pub(crate) fn put(&mut self, v: Value) {
        match v {
            Value::F32(a) => self.put_vec(a.into_raw_vec_and_offset().0),
            Value::F64(a) => self.put_vec(a.into_raw_vec_and_offset().0),
            Value::I64(a) => self.put_vec(a.into_raw_vec_and_offset().0),
            Value::Bool(a) => self.put_vec(a.into_raw_vec_and_offset().0),
        }
    }

    fn take<T: 'static>(&mut self, n: usize) -> Option<Vec<T>> {
        let run = self.run;
        self.list::<T>()?.take(n, run)
    }

    /// Keeps a vector of one of the pooled element types (dropped if `T` is none of them).
    fn put_vec<T: 'static>(&mut self, v: Vec<T>) {
        let run = self.run;
        if let Some(list) = self.list::<T>() {
            list.put(v, run);
        }
    }

    /// The list of vectors of element type `T`, if `T` is one of the pooled types.
    fn list<T: 'static>(&mut self) -> Option<&mut List<T>> {
        use std::any::Any;
        let lists: [&mut dyn Any; 4] =
            [&mut self.f32, &mut self.f64, &mut self.i64, &mut self.bool];
        lists.into_iter().find_map(|l| l.downcast_mut::<List<T>>())
    }

    /// Ends a run: frees what no kernel took in this run or the two before.
    pub(crate) fn end_run(&mut self) {
        let oldest = self.run.saturating_sub(1);
        self.f32.trim(oldest);
        self.f64.trim(oldest);
        self.i64.trim(oldest);
        self.bool.trim(oldest);
        self.run += 1;
    }

    /// Number of stored vectors.
    pub(crate) fn len(&self) -> usize {
        self.f32.len() + self.f64.len() + self.i64.len() + self.bool.len()
    }
}

thread_local! {
    static POOL: std::cell::RefCell<Option<Pool>> = const { std::cell::RefCell::new(None) };
}

/// Lends a session's pool to this thread for the duration of a run.
pub(crate) fn lend_pool(p: Pool) {
    POOL.with(|s| *s.borrow_mut() = Some(p));
}

/// Puts `p` in this thread's lent-pool place and returns what was there (a kernel of a pair may run
/// on the thread that runs the session, whose own pool must come back untouched).
pub(crate) fn swap_pool(p: Option<Pool>) -> Option<Pool> {
    POOL.with(|s| std::mem::replace(&mut *s.borrow_mut(), p))
}

/// Takes the lent pool back at the end of a run.
pub(crate) fn reclaim_pool() -> Pool {
    POOL.with(|s| s.borrow_mut().take()).unwrap_or_default()
}

/// Returns a dead value's storage to the lent pool (dropped when no pool is lent).
pub(crate) fn return_to_pool(v: Value) {
    with_lent_pool(|p| p.put(v));
}

/// Moves a vector with room for `n` elements of `dtype` from the lent pool into `side` (the pool of
/// another thread running one kernel of a pair), if one fits.
pub(crate) fn lend_one_to(side: &mut Pool, dtype: DType, n: usize) {
    fn move_one<T: 'static>(from: &mut Pool, to: &mut Pool, n: usize) {
        if let Some(v) = from.take::<T>(n) {
            to.put_vec(v);
        }
    }
    with_lent_pool(|p| match dtype {
        DType::F32 => move_one::<f32>(p, side, n),
        DType::F64 => move_one::<f64>(p, side, n),
        DType::I64 => move_one::<i64>(p, side, n),
        DType::Bool => move_one::<bool>(p, side, n),
    });
}

/// Gives a kernel's scratch vector back to the lent pool (dropped when no pool is lent).
pub(crate) fn return_vec_to_pool<T: 'static>(v: Vec<T>) {
    with_lent_pool(|p| p.put_vec(v));
}

/// Runs `f` on the pool lent to this thread, if there is one (and it is not borrowed already).
fn with_lent_pool<R>(f: impl FnOnce(&mut Pool) -> R) -> Option<R> {
    POOL.with(|s| Some(f(s.try_borrow_mut().ok()?.as_mut()?)))
}

/// A vector from the lent pool with room for `n`, if one fits.
fn take_spare<T: 'static>(n: usize) -> Option<Vec<T>> {
    with_lent_pool(|p| p.take::<T>(n)).flatten()
}

/// An empty vector with room for `n`: from the lent pool when one fits, else a new one
/// (infallible, for kernels whose input already proves the size is reasonable).
pub(crate) fn output_vec<T: 'static>(n: usize) -> Vec<T> {
    take_spare::<T>(n).unwrap_or_else(|| Vec::with_capacity(n))
}

/// `f` of every element of `a`, in row-major order, into a pooled buffer of `a`'s shape.
pub(crate) fn map_pooled<A: Clone, B: 'static>(a: &ArrayD<A>, f: impl Fn(A) -> B) -> ArrayD<B> {
    let mut v = output_vec(a.len());
    match a.as_slice() {
        Some(s) => v.extend(s.iter().map(|x| f(x.clone()))),
        None => v.extend(a.iter().map(|x| f(x.clone()))),
    }
    ArrayD::from_shape_vec(a.raw_dim(), v).unwrap_or_else(|_| a.map(|x| f(x.clone())))
}

/// A scalar in a pooled buffer.
pub(crate) fn pooled_scalar<T: Clone + 'static>(x: T) -> ArrayD<T> {
    let mut v = output_vec(1);
    v.push(x.clone());
    ArrayD::from_shape_vec(IxDyn(&[]), v).unwrap_or_else(|_| ArrayD::from_elem(IxDyn(&[]), x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_hands_out_the_smallest_fitting_vector_of_the_right_type() {
        let mut p = Pool::default();
        for n in [10usize, 1000, 100] {
            p.put(Value::F32(
                ndarray::Array1::from_vec(vec![1.0f32; n]).into_dyn(),
            ));
        }
        p.put(Value::I64(
            ndarray::Array1::from_vec(vec![7i64; 50]).into_dyn(),
        ));
        // Smallest that fits, emptied.
        let v = p.take::<f32>(50).unwrap();
        assert!(v.is_empty() && v.capacity() >= 100 && v.capacity() < 1000);
        // Not more than about twice the request: 1000 is too big for 20 (and 10 too small).
        assert!(p.take::<f32>(20).is_none());
        assert!(p.take::<f32>(5000).is_none());
        assert_eq!(p.take::<f32>(8).map(|v| v.capacity() >= 10), Some(true));
        // Element types never mix.
        assert!(p.take::<f64>(10).is_none());
        assert!(p.take::<i64>(40).is_some());
        assert!(p.take::<i64>(40).is_none());
        // Lent to a thread, the pool serves `try_vec`; without it, vectors are new.
        lend_pool(p);
        let big = Value::try_vec::<f32>(600).unwrap();
        assert!(big.capacity() >= 1000);
        let back = reclaim_pool();
        assert_eq!(back.f32.len(), 0);
        assert_eq!(Value::try_vec::<f32>(600).unwrap().capacity(), 600);
    }

    #[test]
    fn vectors_no_kernel_takes_are_freed_after_two_more_runs() {
        let mut p = Pool::default();
        let one = |n: usize| Value::F32(ndarray::Array1::from_vec(vec![0.0f32; n]).into_dyn());
        p.put(one(100)); // run 0
        p.end_run();
        p.put(one(200)); // run 1
        p.end_run();
        assert_eq!(p.len(), 2);
        p.end_run(); // end of run 2: run 0's vector is now three runs old
        assert_eq!(p.len(), 1);
        assert!(p.take::<f32>(100).is_some_and(|v| v.capacity() == 200));
        p.end_run();
        assert_eq!(p.len(), 0);
    }
}
