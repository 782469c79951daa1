//! The one place with `unsafe`: calls into the `gemm` crate's strided matrix multiply.
//!
//! Invariant (checked before every call): `a` is `m×k`, `b` is `k×n` and `c` is `m×n`, each given as a
//! slice with row/column strides (in elements) such that every index `i·rs + j·cs` for `i < rows`,
//! `j < cols` lies inside its slice; `c` does not alias `a` or `b` (it is a separate `&mut`).

use super::kernels::Float;

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

    fn in_bounds(&self) -> bool {
        if self.rows == 0 || self.cols == 0 {
            return true;
        }
        let last = (self.rows as isize - 1) * self.rs + (self.cols as isize - 1) * self.cs;
        self.rs >= 0 && self.cs >= 0 && (last as usize) < self.data.len()
    }
}

/// `c = alpha·c + a·b` (`alpha` 0 overwrites `c`; 1 accumulates), with `threads` threads.
/// Returns an error on mismatched shapes or out-of-bounds strides instead of touching memory.
pub fn gemm<T: Float>(
    c: &mut [T],
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    accumulate: bool,
    threads: usize,
) -> Result<(), String> {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if b.rows != k || c.len() != m * n || !a.in_bounds() || !b.in_bounds() {
        return Err(format!(
            "gemm: shapes {m}x{k} · {}x{n} into {} elements",
            b.rows,
            c.len()
        ));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        if !accumulate {
            c.iter_mut().for_each(|v| *v = T::zero());
        }
        return Ok(());
    }
    let parallelism = if threads > 1 && m * n * k >= 64 * 64 * 64 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the bounds of a and b were checked above for every (row, col) the kernel reads; c is a
    // distinct, exclusively borrowed m×n row-major buffer (row stride n, column stride 1).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs,
            a.rs,
            b.data.as_ptr(),
            b.cs,
            b.rs,
            if accumulate { T::one() } else { T::zero() },
            T::one(),
            false,
            false,
            false,
            parallelism,
        );
    }
    Ok(())
}
