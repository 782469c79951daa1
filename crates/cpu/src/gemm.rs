//! Matrix products (with the submodule `packed`, our blocked loop around the `gemm` crates'
//! microkernels): calls into the strided matrix multiply, the split of a product across threads,
//! and vectors filled straight into their spare capacity ([`gemm_into_vec`], [`rows_into_vec`]),
//! which saves the zero-filling pass an output would otherwise need.
//!
//! Invariant (checked before every call): `a` is `m×k`, `b` is `k×n` and `c` is `m×n`, each given as a
//! slice with row/column strides (in elements) such that every index `i·rs + j·cs` for `i < rows`,
//! `j < cols` lies inside its slice; `c` does not alias `a` or `b` (it is a separate `&mut`).

use crate::context::Context;
use crate::error::{Error, Result};
use crate::math::Float;
use std::mem::MaybeUninit;

mod pack;
mod packed;
pub use packed::Microkernels;

/// What a fused product does to its output once a band of whole rows is complete: called with the
/// band's first row and the band (`rows × n` values, row-major), on the thread that computed it,
/// while the band is still in that core's cache (a fused product's second op).
pub type Epilogue<'e, T> = Option<&'e (dyn Fn(usize, &mut [T]) + Sync)>;

/// A read-only strided matrix view over a slice.
#[derive(Clone, Copy)]
pub struct MatRef<'a, T> {
    pub data: &'a [T],
    pub rows: usize,
    pub cols: usize,
    pub rs: isize,
    pub cs: isize,
}

impl<'a, T> MatRef<'a, T> {
    /// A row-major `rows×cols` matrix, transposed when `t` (a view with swapped strides, no copy).
    pub fn row_major(data: &'a [T], rows: usize, cols: usize, t: bool) -> Self {
        if t {
            MatRef {
                data,
                rows: cols,
                cols: rows,
                rs: 1,
                cs: cols as isize,
            }
        } else {
            MatRef {
                data,
                rows,
                cols,
                rs: cols as isize,
                cs: 1,
            }
        }
    }

    /// The data from element `offset` on (the start of a band or half of this view), or an error
    /// naming `what` when that lies outside the slice.
    fn data_from(&self, offset: isize, what: &str) -> Result<&'a [T]> {
        usize::try_from(offset)
            .ok()
            .and_then(|o| self.data.get(o..))
            .ok_or_else(|| Error::operands("gemm", format!("{what} outside the operand")))
    }

    fn in_bounds(&self) -> bool {
        if self.rows == 0 || self.cols == 0 {
            return true;
        }
        let last = (self.rows as isize - 1) * self.rs + (self.cols as isize - 1) * self.cs;
        self.rs >= 0 && self.cs >= 0 && (last as usize) < self.data.len()
    }
}

/// Whether f32 products on this CPU run our loop with packing buffers from the context's workspaces
/// (no allocation per product), rather than the crate's driver (a CPU without FMA, or
/// [`crate::CpuConfig::gemm_own`] off).
pub fn products_reuse_their_workspace(ctx: &Context<'_>) -> bool {
    ctx.config().gemm_own && <f32 as Microkernels>::kernels().is_some()
}

/// `c = alpha·c + a·b` (`alpha` 0 overwrites `c`; 1 accumulates), with the context's threads.
/// Returns an error on mismatched shapes or out-of-bounds strides instead of touching memory.
pub fn gemm<T: Float>(
    ctx: &Context<'_>,
    c: &mut [T],
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    accumulate: bool,
) -> Result<()> {
    // SAFETY: `c` is initialized, and `product` writes only initialized values into it.
    let c = unsafe { &mut *(c as *mut [T] as *mut [MaybeUninit<T>]) };
    // SAFETY: `c` is initialized (it came from a `&mut [T]`), as accumulation requires.
    unsafe { product(ctx, c, a, b, accumulate, ctx.threads(), None) }
}

/// `a·b` appended to the empty `c`, whose storage is written once by the product (no zero-filling
/// pass first: the product overwrites every element). Reserves what is missing.
pub fn gemm_into_vec<T: Float>(
    ctx: &Context<'_>,
    c: &mut Vec<T>,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
) -> Result<()> {
    gemm_into_vec_then(ctx, c, a, b, None)
}

/// [`gemm_into_vec`], then `epilogue` over each band of rows of `c` as soon as the band is complete
/// (one call over all of `c` when the product does not run in row bands).
pub fn gemm_into_vec_then<T: Float>(
    ctx: &Context<'_>,
    c: &mut Vec<T>,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    epilogue: Epilogue<'_, T>,
) -> Result<()> {
    let len = a
        .rows
        .checked_mul(b.cols)
        .ok_or_else(|| Error::operands("gemm", "the product's size overflows"))?;
    let spare = spare_of_empty(c, len, "gemm")?;
    // SAFETY: without accumulation `product` never reads `c`.
    unsafe { product(ctx, spare, a, b, false, ctx.threads(), epilogue) }?;
    // SAFETY: `product` returned Ok, so it wrote all `len` elements (every (i, j) of the m×n output).
    unsafe { c.set_len(len) };
    Ok(())
}

/// `a·b` written into `c`, storage not yet initialized (`m×n` slots): every slot is written when this
/// returns `Ok` (the product never reads `c`).
pub(crate) fn gemm_into_uninit<T: Float>(
    ctx: &Context<'_>,
    c: &mut [MaybeUninit<T>],
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
) -> Result<()> {
    // SAFETY: without accumulation `product` never reads `c`; it checks the shapes against
    // `c.len()` before writing.
    unsafe { product(ctx, c, a, b, false, ctx.threads(), None) }
}

/// The first `len` slots of the empty vector `v`'s spare capacity, reserved fallibly (an error
/// naming `what` when `v` is not empty or the memory is not there).
pub(crate) fn spare_of_empty<'v, T>(
    v: &'v mut Vec<T>,
    len: usize,
    what: &'static str,
) -> Result<&'v mut [MaybeUninit<T>]> {
    if !v.is_empty() {
        let message = format!(
            "the output vector holds {} elements, expected none",
            v.len()
        );
        return Err(Error::operands(what, message));
    }
    v.try_reserve_exact(len)
        .map_err(|_| Error::out_of_memory::<T>("an output", len))?;
    v.spare_capacity_mut()
        .get_mut(..len)
        .ok_or_else(|| Error::operands(what, "reserve failed"))
}

/// `rows × cols` values appended to the empty `out`, row `r` being the first `cols` items of
/// `row(r)`: each written once, straight into the vector's storage (no zero fill first), in bands of
/// whole rows split across the context's threads, each band's loop compiled for the CPU's widest vectors. Fails,
/// leaving `out` empty, when a row yields fewer than `cols` items.
pub fn rows_into_vec<T, I>(
    ctx: &Context<'_>,
    out: &mut Vec<T>,
    rows: usize,
    cols: usize,
    row: impl Fn(usize) -> I + Sync + Send + Copy,
) -> Result<()>
where
    T: Send,
    I: Iterator<Item = T>,
{
    use rayon::prelude::*;
    let len = rows
        .checked_mul(cols)
        .ok_or_else(|| Error::operands("rows_into_vec", "the size overflows"))?;
    let spare = spare_of_empty(out, len, "rows_into_vec")?;
    if len == 0 {
        return Ok(());
    }
    // Writes the rows from `r0` on into `part`; true when every row gave `cols` items.
    let fill = |r0: usize, part: &mut [MaybeUninit<T>]| -> bool {
        ctx.vectorized(
            #[inline(always)]
            || {
                let mut complete = true;
                for (i, dst) in part.chunks_exact_mut(cols).enumerate() {
                    let mut written = 0;
                    for (d, v) in dst.iter_mut().zip(row(r0 + i)) {
                        d.write(v);
                        written += 1;
                    }
                    complete &= written == cols;
                }
                complete
            },
        )
    };
    let threads = ctx.threads();
    let complete = if threads > 1 && rows >= threads {
        let band = rows.div_ceil(threads) * cols;
        spare
            .par_chunks_mut(band)
            .enumerate()
            .map(|(i, part)| fill(i * band / cols, part))
            .reduce(|| true, |a, b| a && b)
    } else {
        fill(0, spare)
    };
    if !complete {
        let message = format!("a row gave fewer than its {cols} values");
        return Err(Error::operands("rows_into_vec", message));
    }
    // SAFETY: every one of the `len` slots lies in a row that was written completely (`complete`).
    unsafe { out.set_len(len) };
    Ok(())
}

/// The fewest rows of a band when a product splits into more bands than threads
/// ([`crate::CpuConfig::gemm_tiles_per_thread`]): each band packs the right operand again.
const TILE_MIN_ROWS: usize = 256;

/// Products summing over at least this many terms, and over more terms than they have rows, split
/// the sum instead of the rows (see [`product_depth_halves`]).
const DEPTH_SPLIT_MIN: usize = 1024;

/// The fewest multiply-adds of a product that sums in two halves.
const DEPTH_SPLIT_MIN_MACS: usize = 1 << 21;

/// Whether the `m×n` product summing over `k` terms sums each half of its terms apart (at least
/// 1024 terms, more terms than rows, and at least 2^21 multiply-adds; the session does not pair such
/// products). Fixed by the shape alone, on any number of threads and with any configuration: the
/// halves are part of what the product computes.
pub fn splits_depth(m: usize, k: usize, n: usize) -> bool {
    k >= DEPTH_SPLIT_MIN && k >= m && m.saturating_mul(n).saturating_mul(k) >= DEPTH_SPLIT_MIN_MACS
}

/// A deep product (the weight gradient `Xᵀ·dY` of a large batch: 300×2048·2048×300) as the sum of
/// two half-depth products, on one thread each when there are two: `c = a₀·b₀ + a₁·b₁`, where `a₀`, `b₀` hold
/// the first half of the batch rows and `a₁`, `b₁` the second. Each thread reads only its half of the
/// rows of both operands (the half its own bands of the forward and backward products and row-split
/// kernels wrote), where a split by output rows has each thread read and pack all of `b`. The second
/// half goes to a scratch matrix from the pool, added to `c` afterwards: one more rounding per
/// element than a single sum, at a split point fixed by the shape, on any number of threads.
///
/// # Safety
/// As [`product`]: with `accumulate`, every element of `c` must be initialized.
unsafe fn product_depth_halves<T: Float>(
    ctx: &Context<'_>,
    c: &mut [MaybeUninit<T>],
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    accumulate: bool,
    threads: usize,
    epilogue: Epilogue<'_, T>,
) -> Result<()> {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let half = k / 2;
    let (a0, b0) = (MatRef { cols: half, ..a }, MatRef { rows: half, ..b });
    let a1 = MatRef {
        data: a.data_from(half as isize * a.cs, "depth half")?,
        cols: k - half,
        ..a
    };
    let b1 = MatRef {
        data: b.data_from(half as isize * b.rs, "depth half")?,
        rows: k - half,
        ..b
    };
    let len = m * n;
    let mut scratch: Vec<T> = ctx.output_vec(len)?;
    let spare = spare_of_empty(&mut scratch, len, "gemm")?;
    let t0 = (threads / 2).max(1);
    let t1 = threads.saturating_sub(t0).max(1);
    // SAFETY: the caller's contract for `c`; `spare` is only written (no accumulation). Both
    // halves keep the shape checks of `product` (a half's depth is k/2 or k - k/2, at least 1).
    let mut first = || unsafe { product_parts(ctx, c, a0, b0, accumulate, t0, None) };
    // SAFETY: as above.
    let mut second = || unsafe { product_parts(ctx, spare, a1, b1, false, t1, None) };
    // The halves on two threads when there are, else one after the other: the same sums.
    let (r0, r1) = if threads > 1 {
        rayon::join(first, second)
    } else {
        (first(), second())
    };
    r0.and(r1)?;
    // SAFETY: both products returned Ok, so each wrote all `len` elements of its output: `c` is
    // initialized, and so are the first `len` slots of `scratch`.
    let c = unsafe { &mut *(c as *mut [MaybeUninit<T>] as *mut [T]) };
    // SAFETY: see above (the first `len` slots were written; the capacity is at least `len`).
    unsafe { scratch.set_len(len) };
    crate::parallel::zip_slices(ctx, c, &scratch, threads, |x, y| x + y);
    ctx.recycle(scratch);
    if let Some(f) = epilogue {
        f(0, c);
    }
    Ok(())
}

/// Runs `epilogue` over all of `c`, once the product has written it.
///
/// # Safety
/// Every element of `c` is initialized.
unsafe fn finish<T>(c: &mut [MaybeUninit<T>], epilogue: Epilogue<'_, T>) {
    if let Some(f) = epilogue {
        // SAFETY: the caller's contract.
        f(0, unsafe { &mut *(c as *mut [MaybeUninit<T>] as *mut [T]) });
    }
}

/// The product behind [`gemm`] and [`gemm_into_vec`]: writes every element of `c` (m×n, row-major)
/// when it returns `Ok`, having run `epilogue` over every row of it.
///
/// # Safety
/// With `accumulate`, every element of `c` must be initialized (the product reads them).
unsafe fn product<T: Float>(
    ctx: &Context<'_>,
    c: &mut [MaybeUninit<T>],
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    accumulate: bool,
    threads: usize,
    epilogue: Epilogue<'_, T>,
) -> Result<()> {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if b.rows != k || c.len() != m * n || !a.in_bounds() || !b.in_bounds() {
        let message = format!("shapes {m}x{k} · {}x{n} into {} elements", b.rows, c.len());
        return Err(Error::operands("gemm", message));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        if !accumulate {
            c.iter_mut().for_each(|v| {
                v.write(T::zero());
            });
        }
        // SAFETY: written just above, or initialized by the caller's contract.
        unsafe { finish(c, epilogue) };
        return Ok(());
    }
    if splits_depth(m, k, n) {
        // SAFETY: the caller's contract, passed on.
        return unsafe { product_depth_halves(ctx, c, a, b, accumulate, threads, epilogue) };
    }
    // SAFETY: the caller's contract, passed on.
    unsafe { product_parts(ctx, c, a, b, accumulate, threads, epilogue) }
}

/// [`product`] after the depth split: on several threads in row bands (or column halves, for few
/// rows), else in one piece. With our loop every part sums each element over the same depth blocks
/// as the whole product ([`packed::depth_block`]), so the result has the same bits on any number of
/// threads; a shape that the crate sends to one of its other kernels runs in one piece.
///
/// # Safety
/// As [`product`]; the shapes and bounds have been checked, and `m`, `k`, `n` are not zero.
unsafe fn product_parts<T: Float>(
    ctx: &Context<'_>,
    c: &mut [MaybeUninit<T>],
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    accumulate: bool,
    threads: usize,
    epilogue: Epilogue<'_, T>,
) -> Result<()> {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let config = ctx.config();
    let big = m.saturating_mul(n).saturating_mul(k) >= config.gemm_parallel_min_macs;
    let threads = if big { threads } else { 1 };
    let own = T::kernels().filter(|_| config.gemm_own);
    let whole_depth_block = own.and_then(|kernels| packed::depth_block(kernels, n, a, b));
    // One part of `c` (rows × cols at `c`, row stride n) on the calling thread.
    let part = |c: *mut T, a: MatRef<'_, T>, b: MatRef<'_, T>| -> Result<()> {
        match own {
            // SAFETY: a block of the caller's `c` that no other part touches, inside the checked
            // operands; initialized when accumulating (the caller's contract).
            Some(kernels) => unsafe {
                packed::product(ctx, kernels, c, n, a, b, accumulate, whole_depth_block)
            },
            None => {
                let none = gemm::Parallelism::None;
                // SAFETY: as above.
                unsafe { crate_product(c, n, a, b, accumulate, none) };
                Ok(())
            }
        }
    };
    let splits = threads > 1 && config.gemm_split && (own.is_none() || whole_depth_block.is_some());
    if splits && m >= config.gemm_band_min_rows {
        // One band of rows of c (and a) per thread, each a single-threaded product: for the tall,
        // narrow products of training (2048×300·300×300) this scales better than the crate's own
        // parallel loop.
        use rayon::prelude::*;
        let tiles = (threads * config.gemm_tiles_per_thread)
            .min(m / TILE_MIN_ROWS)
            .max(threads);
        let band = m.div_ceil(tiles);
        return c
            .par_chunks_mut(band * n)
            .enumerate()
            .map(|(i, c_band)| {
                let r0 = i * band;
                let rows = c_band.len() / n;
                let a_band = MatRef {
                    data: a.data_from(r0 as isize * a.rs, "band")?,
                    rows,
                    ..a
                };
                part(c_band.as_mut_ptr() as *mut T, a_band, b)?;
                if let Some(f) = epilogue {
                    // SAFETY: the band's product returned Ok, so it wrote every element.
                    f(r0, unsafe {
                        &mut *(c_band as *mut [MaybeUninit<T>] as *mut [T])
                    });
                }
                Ok(())
            })
            .collect::<Result<()>>();
    }
    if splits && own.is_some() && n >= 2 * 16 {
        // Fewer rows: one half of the columns of c (and b) per thread.
        let half = n / 2;
        let b1 = MatRef {
            data: b.data_from(half as isize * b.cs, "column half")?,
            cols: n - half,
            ..b
        };
        let b0 = MatRef { cols: half, ..b };
        let c0 = SendPtr(c.as_mut_ptr() as *mut T);
        let c1 = SendPtr(c0.0.wrapping_add(half));
        // The two halves are disjoint column blocks of `c` (row stride n), each written by one
        // thread only.
        let (r0, r1) = rayon::join(move || part(c0.get(), a, b0), move || part(c1.get(), a, b1));
        r0.and(r1)?;
    } else if threads > 1 && !config.gemm_split {
        let parallelism = gemm::Parallelism::Rayon(threads);
        // SAFETY: the bounds of a and b were checked; c is a distinct, exclusively borrowed m×n
        // row-major buffer, initialized when `accumulate` (the caller's contract).
        unsafe { crate_product(c.as_mut_ptr() as *mut T, n, a, b, accumulate, parallelism) };
    } else if let Some(kernels) = own {
        // SAFETY: bounds checked by `product`; `c` is an exclusively borrowed m×n row-major block,
        // initialized when `accumulate` (the caller's contract).
        unsafe {
            packed::product(
                ctx,
                kernels,
                c.as_mut_ptr() as *mut T,
                n,
                a,
                b,
                accumulate,
                None,
            )
        }?;
    } else {
        part(c.as_mut_ptr() as *mut T, a, b)?;
    }
    // SAFETY: the product returned Ok, so it wrote every element of `c`.
    unsafe { finish(c, epilogue) };
    Ok(())
}

/// `c = a·b` (or `c += a·b`) by the `gemm` crate's own driver; `c` is `m×n` with row stride `c_rs`.
///
/// # Safety
/// Every `(i, j)` of `a` and `b` lies inside its slice; `c` points at an `m×n` block with row stride
/// `c_rs ≥ n` that nothing else accesses meanwhile, initialized when `accumulate` (the crate reads
/// it only then; otherwise it writes every element).
unsafe fn crate_product<T: Microkernels>(
    c: *mut T,
    c_rs: usize,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    accumulate: bool,
    parallelism: gemm::Parallelism,
) {
    // SAFETY: the function's contract.
    unsafe {
        gemm::gemm(
            a.rows,
            b.cols,
            a.cols,
            c,
            1,
            c_rs as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs,
            a.rs,
            b.data.as_ptr(),
            b.cs,
            b.rs,
            if accumulate { T::ONE } else { T::ZERO },
            T::ONE,
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// A pointer into `c` handed to another thread (see the column halves in [`product_bands`]).
#[derive(Clone, Copy)]
struct SendPtr<T>(*mut T);
// SAFETY: used only for disjoint blocks of one exclusively borrowed output, each written by one
// thread while the borrow lasts.
unsafe impl<T> Send for SendPtr<T> {}
impl<T> SendPtr<T> {
    fn get(self) -> *mut T {
        self.0
    }
}

#[cfg(test)]
mod tests;
