//! The elementwise passes of the kernels, split across the context's threads when large and
//! compiled for the CPU's widest vector instructions ([`Context::vectorized`]): maps, zips, in-place
//! updates, rows updated with one operand row, and column sums.

use crate::context::Context;
use crate::math::Float;

/// Runs `f(first_column, accumulators)` over `parts` disjoint column ranges of `acc` (one call when
/// `parts` < 2), each inside [`Context::vectorized`]. Each column's sum runs over its rows in order whatever
/// the split, so results do not depend on it.
pub fn column_parts<T: Send>(
    ctx: &Context<'_>,
    acc: &mut [T],
    parts: usize,
    f: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    if parts >= 2 && acc.len() >= 2 * parts {
        use rayon::prelude::*;
        let chunk = acc.len().div_ceil(parts);
        acc.par_chunks_mut(chunk).enumerate().for_each(|(i, a)| {
            ctx.vectorized(
                #[inline(always)]
                || f(i * chunk, a),
            )
        });
    } else {
        ctx.vectorized(
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
pub fn column_sums<T: Float>(ctx: &Context<'_>, x: &[T], cols: usize) -> crate::Result<Vec<T>> {
    let mut out = ctx.try_filled_vec(cols, T::zero())?;
    if cols == 0 {
        return Ok(out);
    }
    // The per-column operand is unused here; any `cols` values will do.
    fold_columns(
        ctx,
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
    ctx: &Context<'_>,
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
        ctx,
        rows,
        x.len(),
        out,
        #[inline(always)]
        |r, acc, parts| {
            let x = &x[r.start * cols..r.end * cols];
            column_parts(
                ctx,
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
    ctx: &Context<'_>,
    rows: usize,
    elements: usize,
    out: &mut [T],
    pass: impl Fn(std::ops::Range<usize>, &mut [T], usize) + Sync + Send,
) {
    let threads = ctx.threads();
    let parallel = ctx.parallel(elements);
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

/// `out[i] = f(a[i])`, split into one contiguous chunk per session thread when large; an error only
/// beyond the context's memory budget.
pub fn par_map<A: Sync, C: Copy + Default + Send + Sync + 'static>(
    ctx: &Context<'_>,
    a: &[A],
    f: impl Fn(&A) -> C + Sync + Send,
) -> crate::Result<Vec<C>> {
    let threads = ctx.threads();
    if ctx.parallel(a.len()) {
        use rayon::prelude::*;
        let chunk = a.len().div_ceil(threads);
        let mut out = ctx.output_vec(a.len())?;
        out.resize(a.len(), C::default());
        out.par_chunks_mut(chunk)
            .zip(a.par_chunks(chunk))
            .for_each(|(o, x)| {
                ctx.vectorized(
                    #[inline(always)]
                    || {
                        for (o, x) in o.iter_mut().zip(x) {
                            *o = f(x);
                        }
                    },
                )
            });
        Ok(out)
    } else {
        let mut out = ctx.output_vec(a.len())?;
        ctx.vectorized(
            #[inline(always)]
            || out.extend(a.iter().map(f)),
        );
        Ok(out)
    }
}

/// `x[i] = f(x[i])` in place, split into one contiguous chunk per session thread when large.
pub fn par_update<A: Copy + Send + Sync>(
    ctx: &Context<'_>,
    x: &mut [A],
    f: impl Fn(A) -> A + Sync + Send,
) {
    let threads = ctx.threads();
    if ctx.parallel(x.len()) {
        use rayon::prelude::*;
        let chunk = x.len().div_ceil(threads);
        x.par_chunks_mut(chunk).for_each(|c| {
            ctx.vectorized(
                #[inline(always)]
                || {
                    for v in c {
                        *v = f(*v);
                    }
                },
            )
        });
    } else {
        ctx.vectorized(
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
    ctx: &Context<'_>,
    t: &mut [T],
    o: &[T],
    threads: usize,
    f: impl Fn(T, T) -> T + Sync + Send,
) {
    let run = |c: &mut [T], oc: &[T]| {
        ctx.vectorized(
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

/// `out[i] = f(a[i], b[i])` for equal-length slices, split across the session's threads when large.
pub fn par_zip<A: Sync, B: Sync, C: Copy + Default + Send + Sync + 'static>(
    ctx: &Context<'_>,
    a: &[A],
    b: &[B],
    f: impl Fn(&A, &B) -> C + Sync + Send,
) -> crate::Result<Vec<C>> {
    let threads = ctx.threads();
    if ctx.parallel(a.len()) && a.len() == b.len() {
        use rayon::prelude::*;
        let chunk = a.len().div_ceil(threads);
        let mut out = ctx.output_vec(a.len())?;
        out.resize(a.len(), C::default());
        out.par_chunks_mut(chunk)
            .zip(a.par_chunks(chunk).zip(b.par_chunks(chunk)))
            .for_each(|(o, (x, y))| {
                ctx.vectorized(
                    #[inline(always)]
                    || {
                        for ((o, p), q) in o.iter_mut().zip(x).zip(y) {
                            *o = f(p, q);
                        }
                    },
                )
            });
        Ok(out)
    } else {
        let mut out = ctx.output_vec(a.len())?;
        ctx.vectorized(
            #[inline(always)]
            || out.extend(a.iter().zip(b).map(|(p, q)| f(p, q))),
        );
        Ok(out)
    }
}

/// `t[r·w + j] = f(t[r·w + j], row[j])` for every row `r` of `t` (`w = row.len()`): a bias or
/// another trailing-row operand, whole rows per thread when `ctx` splits `t.len()` elements.
pub fn zip_rows<T: Copy + Send + Sync>(
    ctx: &Context<'_>,
    t: &mut [T],
    row: &[T],
    f: impl Fn(T, T) -> T + Sync + Send,
) {
    use rayon::prelude::*;
    let w = row.len();
    if w == 0 {
        return;
    }
    let apply = |c: &mut [T]| {
        ctx.vectorized(
            #[inline(always)]
            || {
                for r in c.chunks_exact_mut(w) {
                    for (x, y) in r.iter_mut().zip(row) {
                        *x = f(*x, *y);
                    }
                }
            },
        )
    };
    if ctx.parallel(t.len()) {
        let rows_per_chunk = (t.len() / w).div_ceil(ctx.threads()).max(1);
        t.par_chunks_mut(rows_per_chunk * w).for_each(apply);
    } else {
        apply(t);
    }
}
