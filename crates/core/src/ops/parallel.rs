//! The elementwise passes of the kernels, split across the session's threads when large and compiled
//! for the CPU's widest vector instructions ([`super::simd::vectorized`]): maps, zips, in-place
//! updates with a broadcast operand, and column sums.

use super::kernels::{broadcast_shapes, intra_op_threads, zip_broadcast, Float};
use super::simd::vectorized;
use crate::error::OpResult;
use ndarray::{ArrayD, IxDyn};

/// Elementwise kernels split their work across the session's threads above this many elements (the
/// default of [`parallel_min_elements`]).
pub const PARALLEL_MIN_ELEMENTS: usize = 1 << 16;

/// The element count above which elementwise kernels, reductions and optimizer updates split their
/// work across the session's threads: [`PARALLEL_MIN_ELEMENTS`], or `FERROFLOW_PAR_MIN` ([`crate::tuning`],
/// for benchmarking).
pub fn parallel_min_elements() -> usize {
    crate::tuning::get(crate::tuning::Switch::ParMin)
}

/// Runs `f(first_column, accumulators)` over `parts` disjoint column ranges of `acc` (one call when
/// `parts` < 2), each inside [`vectorized`]. Each column's sum runs over its rows in order whatever
/// the split, so results do not depend on it.
pub fn column_parts<T: Send>(
    acc: &mut [T],
    parts: usize,
    f: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    if parts >= 2 && acc.len() >= 2 * parts {
        use rayon::prelude::*;
        let chunk = acc.len().div_ceil(parts);
        acc.par_chunks_mut(chunk).enumerate().for_each(|(i, a)| {
            vectorized(
                #[inline(always)]
                || f(i * chunk, a),
            )
        });
    } else {
        vectorized(
            #[inline(always)]
            || f(0, acc),
        );
    }
}

/// Columns handled together by the column passes: a block's accumulators (64 values, four AVX-512
/// registers) stay in registers over all rows.
pub const COLUMN_BLOCK: usize = 64;

/// Calls `body(first, width)` over `0..w` in blocks of [`COLUMN_BLOCK`] columns, then of 16, then
/// the rest. Inlined, the calls with a constant width compile to loops that unroll completely, so
/// that per-column accumulators and coefficients in `[T; COLUMN_BLOCK]` arrays stay in registers
/// (with a run-time width they are stored and reloaded every row).
#[inline(always)]
pub fn column_blocks(w: usize, mut body: impl FnMut(usize, usize)) {
    let mut j0 = 0;
    while j0 + COLUMN_BLOCK <= w {
        body(j0, COLUMN_BLOCK);
        j0 += COLUMN_BLOCK;
    }
    while j0 + 16 <= w {
        body(j0, 16);
        j0 += 16;
    }
    if j0 < w {
        body(j0, w - j0);
    }
}

/// Column sums of a row-major `rows × cols` slice: `Σ_r x[r·cols + j]`, adding the rows in order from
/// zero (the order of ndarray's `sum_axis(Axis(0))`) below [`HALVED_COLUMN_ROWS`] rows and each half
/// of the rows so from there on (see [`fold_columns`]), split across threads when large.
pub fn column_sums<T: Float>(x: &[T], cols: usize) -> crate::error::OpResult<Vec<T>> {
    let mut out = crate::Value::try_filled_vec(cols, T::zero())?;
    if cols == 0 {
        return Ok(out);
    }
    // The per-column operand is unused here; any `cols` values will do.
    fold_columns(
        x,
        &x[..cols.min(x.len())],
        &mut out,
        #[inline(always)]
        |v, _| v,
    );
    Ok(out)
}

/// Column passes over at least this many rows sum each half of the rows separately and then add the
/// two sums (see [`fold_columns`]).
pub const HALVED_COLUMN_ROWS: usize = 256;

/// `out[j] = Σ_r term(x[r·cols + j], k[j])` for a row-major slice of `cols = out.len()` columns
/// (`k` holds one value per column). Each block of [`column_blocks`] keeps its partial sums in
/// registers and adds the rows in order from zero. From [`HALVED_COLUMN_ROWS`] rows on, the first
/// `⌈rows/2⌉` rows and the rest are summed apart and the two sums added: on two threads each half runs
/// on its own, over the rows that the matrix product and the row-split kernels before it wrote on that
/// thread (the rows are then mostly in that core's cache; a split by columns read half of them from
/// the other core). The order of additions depends on the shape only, never on the thread count.
pub fn fold_columns<T: Float>(
    x: &[T],
    k: &[T],
    out: &mut [T],
    term: impl Fn(T, T) -> T + Sync + Send + Copy,
) {
    let cols = out.len();
    let Some(k) = k.get(..cols) else {
        return;
    };
    if cols == 0 {
        return;
    }
    let rows = x.len() / cols;
    halved_column_pass(
        rows,
        x.len(),
        out,
        #[inline(always)]
        |r, acc, parts| {
            let x = &x[r.start * cols..r.end * cols];
            column_parts(
                acc,
                parts,
                #[inline(always)]
                |c0, a| fold_rows(x, cols, c0, &k[c0..], a, term),
            )
        },
    );
}

/// The row split shared by the column passes over `rows` rows (`elements` values in all):
/// `pass(rows, accumulators, parts)` sums the given range of rows into the accumulators (all of
/// them), splitting its columns into `parts` ranges across threads. Below [`HALVED_COLUMN_ROWS`] rows
/// one pass covers every row into `out`; from there on the first `⌈rows/2⌉` rows go into `out` and the
/// rest into a second set of accumulators that is then added to `out`, the halves on two threads at
/// once when large (any further threads split each half's columns).
pub fn halved_column_pass<T: Float>(
    rows: usize,
    elements: usize,
    out: &mut [T],
    pass: impl Fn(std::ops::Range<usize>, &mut [T], usize) + Sync + Send,
) {
    let threads = intra_op_threads();
    let parallel = threads > 1 && elements >= parallel_min_elements();
    if rows < HALVED_COLUMN_ROWS {
        return pass(0..rows, out, if parallel { threads } else { 1 });
    }
    let mid = rows.div_ceil(2);
    let mut second: smallvec::SmallVec<[T; 2048]> = smallvec::smallvec![T::zero(); out.len()];
    if parallel {
        rayon::join(
            || pass(0..mid, out, threads / 2),
            || pass(mid..rows, &mut second, threads / 2),
        );
    } else {
        pass(0..mid, out, 1);
        pass(mid..rows, &mut second, 1);
    }
    for (o, s) in out.iter_mut().zip(&second) {
        *o = *o + *s;
    }
}

/// Columns `c0..c0 + acc.len()` of [`fold_columns`] over all rows of `x` (`cols` values a row), in
/// blocks of [`column_blocks`]; `k` starts at column `c0`.
#[inline(always)]
fn fold_rows<T: Float>(
    x: &[T],
    cols: usize,
    c0: usize,
    k: &[T],
    acc: &mut [T],
    term: impl Fn(T, T) -> T + Copy,
) {
    let rows = x.len() / cols;
    column_blocks(
        acc.len(),
        #[inline(always)]
        |j0, w| {
            let kb = &k[j0..][..w];
            let mut lanes = [T::zero(); COLUMN_BLOCK];
            for r in 0..rows {
                let row = &x[r * cols + c0 + j0..][..w];
                for ((l, &v), &kv) in lanes[..w].iter_mut().zip(row).zip(kb) {
                    *l = *l + term(v, kv);
                }
            }
            acc[j0..j0 + w].copy_from_slice(&lanes[..w]);
        },
    )
}

/// `out[i] = f(a[i])`, split into one contiguous chunk per session thread when large.
pub fn par_map<A: Sync, C: Copy + Default + Send + Sync + 'static>(
    a: &[A],
    f: impl Fn(&A) -> C + Sync + Send,
) -> Vec<C> {
    let threads = intra_op_threads();
    if threads > 1 && a.len() >= parallel_min_elements() {
        use rayon::prelude::*;
        let chunk = a.len().div_ceil(threads);
        let mut out = crate::value::output_vec(a.len());
        out.resize(a.len(), C::default());
        out.par_chunks_mut(chunk)
            .zip(a.par_chunks(chunk))
            .for_each(|(o, x)| {
                vectorized(
                    #[inline(always)]
                    || {
                        for (o, x) in o.iter_mut().zip(x) {
                            *o = f(x);
                        }
                    },
                )
            });
        out
    } else {
        let mut out = crate::value::output_vec(a.len());
        vectorized(
            #[inline(always)]
            || out.extend(a.iter().map(f)),
        );
        out
    }
}

/// `x[i] = f(x[i])` in place, split into one contiguous chunk per session thread when large.
pub fn par_update<A: Copy + Send + Sync>(x: &mut [A], f: impl Fn(A) -> A + Sync + Send) {
    let threads = intra_op_threads();
    if threads > 1 && x.len() >= parallel_min_elements() {
        use rayon::prelude::*;
        let chunk = x.len().div_ceil(threads);
        x.par_chunks_mut(chunk).for_each(|c| {
            vectorized(
                #[inline(always)]
                || {
                    for v in c {
                        *v = f(*v);
                    }
                },
            )
        });
    } else {
        vectorized(
            #[inline(always)]
            || {
                for v in x {
                    *v = f(*v);
                }
            },
        )
    }
}

/// `t[i] = f(t[i], o[i])` over slices of equal length, one chunk of both per thread when `threads`
/// is more than one (elementwise: the split does not change the result).
pub fn zip_slices<T: Copy + Send + Sync>(
    t: &mut [T],
    o: &[T],
    threads: usize,
    f: impl Fn(T, T) -> T + Sync + Send,
) {
    let run = |c: &mut [T], oc: &[T]| {
        vectorized(
            #[inline(always)]
            || {
                for (x, y) in c.iter_mut().zip(oc) {
                    *x = f(*x, *y);
                }
            },
        )
    };
    if threads > 1 && !t.is_empty() {
        use rayon::prelude::*;
        let chunk = t.len().div_ceil(threads);
        t.par_chunks_mut(chunk)
            .zip(o.par_chunks(chunk))
            .for_each(|(c, oc)| run(c, oc));
    } else {
        run(t, o);
    }
}

/// `target = f(target, other)` (or `f(other, target)` when `!target_left`) in place, `other`
/// broadcast to `target`'s shape (which must be the broadcast shape). Equal shapes, a scalar and a
/// trailing row (a bias) run on the session's threads; other broadcasts go through ndarray.
pub fn zip_into<T: Copy + Send + Sync>(
    target: &mut ArrayD<T>,
    other: &ArrayD<T>,
    target_left: bool,
    f: impl Fn(T, T) -> T + Sync + Send,
) -> OpResult<()> {
    if broadcast_shapes(target.shape(), other.shape())?[..] != *target.shape() {
        return Err(format!(
            "cannot write {:?} broadcast with {:?} into the first",
            target.shape(),
            other.shape()
        ));
    }
    let g = |t: T, o: T| if target_left { f(t, o) } else { f(o, t) };
    let trailing = other.ndim() <= target.ndim()
        && target.shape()[target.ndim() - other.ndim()..] == *other.shape();
    let threads = intra_op_threads();
    let par = threads > 1 && target.len() >= parallel_min_elements();
    if let (Some(t), Some(o)) = (target.as_slice_mut(), other.as_slice()) {
        if let [s] = o {
            par_update(t, |x| g(x, *s));
            return Ok(());
        }
        if o.len() == t.len() {
            // Equal shapes: one chunk of both per thread when large. The operand order is chosen
            // outside the loop, which then vectorizes (a branch inside kept it scalar).
            let parts = if par { threads } else { 1 };
            if target_left {
                zip_slices(t, o, parts, f);
            } else {
                zip_slices(t, o, parts, |x, y| f(y, x));
            }
            return Ok(());
        }
        if trailing && !o.is_empty() {
            // A trailing row (a bias): whole rows per thread.
            use rayon::prelude::*;
            let row = o.len();
            let rows_per_chunk = (t.len() / row).div_ceil(threads).max(1);
            let apply = |c: &mut [T]| {
                vectorized(
                    #[inline(always)]
                    || {
                        for r in c.chunks_exact_mut(row) {
                            if target_left {
                                for (x, y) in r.iter_mut().zip(o) {
                                    *x = f(*x, *y);
                                }
                            } else {
                                for (x, y) in r.iter_mut().zip(o) {
                                    *x = f(*y, *x);
                                }
                            }
                        }
                    },
                )
            };
            if par {
                t.par_chunks_mut(rows_per_chunk * row).for_each(apply);
            } else {
                apply(t);
            }
            return Ok(());
        }
    }
    target.zip_mut_with(other, |x, y| *x = g(*x, *y));
    Ok(())
}

/// `out[i] = f(a[i], b[i])` for equal-length slices, split across the session's threads when large.
pub fn par_zip<A: Sync, B: Sync, C: Copy + Default + Send + Sync + 'static>(
    a: &[A],
    b: &[B],
    f: impl Fn(&A, &B) -> C + Sync + Send,
) -> Vec<C> {
    let threads = intra_op_threads();
    if threads > 1 && a.len() >= parallel_min_elements() && a.len() == b.len() {
        use rayon::prelude::*;
        let chunk = a.len().div_ceil(threads);
        let mut out = crate::value::output_vec(a.len());
        out.resize(a.len(), C::default());
        out.par_chunks_mut(chunk)
            .zip(a.par_chunks(chunk).zip(b.par_chunks(chunk)))
            .for_each(|(o, (x, y))| {
                vectorized(
                    #[inline(always)]
                    || {
                        for ((o, p), q) in o.iter_mut().zip(x).zip(y) {
                            *o = f(p, q);
                        }
                    },
                )
            });
        out
    } else {
        let mut out = crate::value::output_vec(a.len());
        vectorized(
            #[inline(always)]
            || out.extend(a.iter().zip(b).map(|(p, q)| f(p, q))),
        );
        out
    }
}

/// Like [`zip_broadcast`] for pure functions: equal shapes and scalars run on the session's threads.
pub fn zip_broadcast_par<
    A: Clone + Sync + Send,
    B: Clone + Sync + Send,
    C: Copy + Default + Send + Sync + 'static,
>(
    a: &ArrayD<A>,
    b: &ArrayD<B>,
    f: impl Fn(A, B) -> C + Sync + Send,
) -> OpResult<ArrayD<C>> {
    if let (Some(sa), Some(sb)) = (a.as_slice(), b.as_slice()) {
        let v = if a.shape() == b.shape() {
            Some(par_zip(sa, sb, |x, y| f(x.clone(), y.clone())))
        } else if sb.len() == 1 && a.ndim() >= b.ndim() {
            Some(par_map(sa, |x| f(x.clone(), sb[0].clone())))
        } else if sa.len() == 1 && b.ndim() >= a.ndim() {
            Some(par_map(sb, |y| f(sa[0].clone(), y.clone())))
        } else {
            None
        };
        if let Some(v) = v {
            let shape = if a.len() >= b.len() && a.ndim() >= b.ndim() {
                a.shape()
            } else {
                b.shape()
            };
            return ArrayD::from_shape_vec(IxDyn(shape), v).map_err(|e| e.to_string());
        }
    }
    zip_broadcast(a, b, f)
}
