//! A single-threaded blocked product that calls the `gemm` crate's microkernels (AVX-512 or FMA:
//! public API of `gemm-f32` / `gemm-f64`) around packing buffers owned by the calling thread: the
//! buffers grow to the largest product a thread has run and are reused by every later one, so a
//! product after warm-up allocates nothing (the crate's own driver allocates its packing workspace,
//! and a list of flags, inside every call, and takes none from the caller).
//!
//! The blocking follows the crate's single-threaded driver decision for decision (the same `kc`,
//! `mc`, `nc` from its public `kernel_params`, the same choice of which operand to pack, the same
//! microkernel for each tile, the same accumulation across depth blocks), so every element is summed
//! in the same order and the products equal the crate's bit for bit (tested against it). The small
//! shapes the crate sends to other kernels (horizontal kernels for at most 256 outputs, vector
//! products for a depth of at most 2, matrix-vector products), which allocate nothing, still go to
//! the crate. Two departures, with the same bits: a product of few rows with a transposed `b` runs
//! without the crate's transposition (see [`product`]), with the crate's depth blocks; and the `X`
//! of a weight gradient `Xᵀ·dY` is read in place after a prefetch into L2 instead of packed (see
//! [`warm_rows`]).
//!
//! Layout (in the crate's column-major terms, after it transposes a row-major product: the
//! kernel's `m` is our column count, its `n` our row count): the left operand is packed in panels of
//! `MR` = 4 vectors of rows, each depth step one `MR`-wide line; the right operand, when packed, in
//! panels of `NR` = 6 columns. A tile is `MR × NR` outputs held in 24 vector registers.
//!
//! Invariant (every function here): the caller has checked that `a` (`m×k`) and `b` (`k×n`) have
//! every `(i, j)` inside their slices, and that `c` points at an `m×n` block with row stride
//! `c_rs ≥ n` (column stride 1) that no other thread reads or writes while the product runs.

use super::pack::pack;
use super::MatRef;
use crate::context::Context;
use crate::error::{Error, Result};
use gemm_common::microkernel::MicroKernelFn;

/// Columns of a register tile in every x86 table of `gemm` 0.19 (a different layout in a later
/// version fails to compile here).
const NR: usize = 6;

/// One of the crate's microkernel tables: entry `[v - 1][c - 1]` computes a tile of `v` vectors of
/// rows × `c` columns; `lanes` values per vector.
#[derive(Clone, Copy)]
pub struct Kernels<T: 'static> {
    table: &'static [[MicroKernelFn<T>; NR]],
    lanes: usize,
}

/// Scalars with x86 microkernels in the `gemm` crates.
pub trait Microkernels: Copy + 'static {
    /// The table the crate itself would pick on this CPU (AVX-512F, else FMA), if any.
    fn kernels() -> Option<Kernels<Self>>;
    const ZERO: Self;
    const ONE: Self;
}

#[cfg(target_arch = "x86_64")]
mod tables {
    use super::{MicroKernelFn, NR};
    pub static F32_AVX512: [[MicroKernelFn<f32>; NR]; 4] = gemm_f32::microkernel::avx512f::f32::UKR;
    pub static F32_FMA: [[MicroKernelFn<f32>; NR]; 2] = gemm_f32::microkernel::fma::f32::UKR;
    pub static F64_AVX512: [[MicroKernelFn<f64>; NR]; 4] = gemm_f64::microkernel::avx512f::f64::UKR;
    pub static F64_FMA: [[MicroKernelFn<f64>; NR]; 2] = gemm_f64::microkernel::fma::f64::UKR;
}

/// The crate's choice of kernels, in its order: AVX-512F when the CPU has it, else FMA (`lanes` is
/// the vector width in elements of 4 or 8 bytes).
#[allow(unused_variables)]
fn pick<T>(
    avx512: &'static [[MicroKernelFn<T>; NR]],
    fma: &'static [[MicroKernelFn<T>; NR]],
    bytes: usize,
) -> Option<Kernels<T>> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            return Some(Kernels {
                table: avx512,
                lanes: 64 / bytes,
            });
        }
        if std::is_x86_feature_detected!("fma") {
            return Some(Kernels {
                table: fma,
                lanes: 32 / bytes,
            });
        }
    }
    None
}

/// `Microkernels` for a float type from its two tables.
macro_rules! microkernels {
    ($t:ty, $avx512:ident, $fma:ident) => {
        impl Microkernels for $t {
            const ZERO: $t = 0.0;
            const ONE: $t = 1.0;
            fn kernels() -> Option<Kernels<$t>> {
                #[cfg(target_arch = "x86_64")]
                return pick(&tables::$avx512, &tables::$fma, std::mem::size_of::<$t>());
                #[cfg(not(target_arch = "x86_64"))]
                None
            }
        }
    };
}
microkernels!(f32, F32_AVX512, F32_FMA);
microkernels!(f64, F64_AVX512, F64_FMA);

/// Elements of `T` rounded up to whole cache lines.
fn lines_for<T>(elems: usize) -> usize {
    (elems * std::mem::size_of::<T>()).div_ceil(64)
}

/// A strided operand in the kernel's terms: element `(i, j)` at `ptr + i·rs + j·cs`.
#[derive(Clone, Copy)]
struct Operand<T> {
    ptr: *const T,
    rs: isize,
    cs: isize,
}

impl<T> Operand<T> {
    fn at(&self, i: usize, j: usize) -> *const T {
        self.ptr
            .wrapping_offset(i as isize * self.rs + j as isize * self.cs)
    }
}

/// The product in the crate's (column-major) terms, after its transposition of a row-major one.
struct Problem<T> {
    m: usize,
    n: usize,
    k: usize,
    dst: *mut T,
    dst_rs: isize,
    dst_cs: isize,
    lhs: Operand<T>,
    rhs: Operand<T>,
}

/// The product in the kernel's terms, both ways: transposed as the crate first does to a row-major
/// destination of row stride `c_rs` > 1 (the kernel's `m` is our column count), and as is.
fn problems<T>(c: *mut T, c_rs: usize, a: MatRef<'_, T>, b: MatRef<'_, T>) -> [Problem<T>; 2] {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let c_rs = c_rs as isize;
    let transposed = Problem {
        m: n,
        n: m,
        k,
        dst: c,
        dst_rs: 1,
        dst_cs: c_rs,
        lhs: Operand {
            ptr: b.data.as_ptr(),
            rs: b.cs,
            cs: b.rs,
        },
        rhs: Operand {
            ptr: a.data.as_ptr(),
            rs: a.cs,
            cs: a.rs,
        },
    };
    let as_is = Problem {
        m,
        n,
        k,
        dst: c,
        dst_rs: c_rs,
        dst_cs: 1,
        lhs: Operand {
            ptr: a.data.as_ptr(),
            rs: a.rs,
            cs: a.cs,
        },
        rhs: Operand {
            ptr: b.data.as_ptr(),
            rs: b.rs,
            cs: b.cs,
        },
    };
    [transposed, as_is]
}

/// The depth block (`kc`) with which [`product`] sums the `m×n` product `a·b` written with row
/// stride `c_rs`, or `None` when the crate sends that shape to one of its other kernels. A part of
/// the product (a band of rows, a block of columns) run with this depth block sums every element
/// in the same order as the whole: how a product is split across threads never changes its bits.
pub fn depth_block<T: Microkernels>(
    kernels: Kernels<T>,
    c_rs: usize,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
) -> Option<usize> {
    let [transposed, as_is] = problems(std::ptr::null_mut(), c_rs, a, b);
    let p = if 1 < c_rs { transposed } else { as_is };
    if sent_elsewhere_by_the_crate(&p) {
        return None;
    }
    Some(blocking::<T>(&p, kernels.table.len() * kernels.lanes).0)
}

/// `c = a·b` (or `c += a·b` with `accumulate`) on the calling thread; `c` is `m×n` with row stride
/// `c_rs`. Uses the crate's microkernels with packing buffers from the context's workspaces, or the
/// crate for the shapes it sends to kernels that allocate nothing. A part of a larger product passes
/// the whole's [`depth_block`] as `part_of`: it then always runs the blocked loop, with that depth
/// block. Fails only when the workspace cannot grow.
///
/// # Safety
/// The module invariant; with `accumulate` every element of the `m×n` block of `c` is initialized.
#[allow(clippy::too_many_arguments)]
pub unsafe fn product<T: Microkernels>(
    ctx: &Context<'_>,
    kernels: Kernels<T>,
    c: *mut T,
    c_rs: usize,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    accumulate: bool,
    part_of: Option<usize>,
) -> Result<()> {
    let m = a.rows;
    let [transposed, as_is] = problems(c, c_rs, a, b);
    // The crate's own first step: a row-major destination is computed as its transpose.
    let crate_transposes = 1 < c_rs;
    let p = if crate_transposes {
        &transposed
    } else {
        &as_is
    };
    if part_of.is_none() && sent_elsewhere_by_the_crate(p) {
        // SAFETY: the module invariant; `c` is initialized when `accumulate`.
        unsafe { super::crate_product(c, c_rs, a, b, accumulate, gemm::Parallelism::None) };
        return Ok(());
    }
    // The crate's depth blocks, whichever way the product runs: the same sums in the same order.
    let mr = kernels.table.len() * kernels.lanes;
    let (kc, mc, nc) = blocking::<T>(p, mr);
    let crate_blocks = (part_of.unwrap_or(kc), mc, nc);
    let k = a.cols;
    // A transposed `b` with few rows of `c`: the crate packs all of `b` (a gather, each depth step
    // from a different row) for these few rows. Run as is instead: the rows of `b`'s transpose are
    // read in place, six at a time, and only `a` (few rows) is packed.
    let (p, blocks) = if crate_transposes
        && transposed.lhs.rs != 1
        && m <= SWAP_MAX_ROWS
        && k >= SWAP_MIN_DEPTH
        && ctx.config().gemm_swap
    {
        let (_, mc, nc) = blocking::<T>(&as_is, mr);
        (&as_is, (crate_blocks.0, mc, nc))
    } else {
        (p, crate_blocks)
    };
    // SAFETY: passed on (the module invariant; `p` is the same product in the kernel's terms).
    unsafe { blocked(ctx, kernels, p, blocks, accumulate) }
}

/// Products of at most this many rows, summing over at least this many terms, run as they are when
/// the crate would pack all of a transposed `b` (see [`product`]). Measured on one thread
/// (`examples/gemm_micro.rs`): 32×300·(300×300)ᵀ 0.72-0.76 of the crate's time, 32×100·(300×100)ᵀ
/// 0.94-0.95; but 32×10·(100×10)ᵀ 1.9-2.4 (the stores of a tile that is not column-contiguous then
/// outweigh the packing saved).
const SWAP_MAX_ROWS: usize = 48;
const SWAP_MIN_DEPTH: usize = 64;

/// The crate's blocking `(kc, mc, nc)` for `p` with `mr` rows per tile (`gemm_basic_generic`:
/// a fixed rule for at most 64×64 outputs, else its `kernel_params`; `nc` of 0 means one block).
fn blocking<T>(p: &Problem<T>, mr: usize) -> (usize, usize, usize) {
    let size = std::mem::size_of::<T>();
    let (m, n, k) = (p.m, p.n, p.k);
    let (kc, mc, nc) = if m <= 64 && n <= 64 {
        let kc = k.min(512);
        let l2 = gemm_common::cache::CACHE_INFO[1].cache_bytes / size;
        (kc, (l2 / kc.max(1)) / mr * mr, n.next_multiple_of(NR))
    } else {
        let params = gemm_common::cache::kernel_params(m, n, k, mr, NR, size);
        (params.kc, params.mc, params.nc)
    };
    (kc, mc, if nc > 0 { nc } else { 128 * NR })
}

/// The crate's tests, in its order, for the shapes that skip its blocked driver (`gemm_basic_generic`:
/// horizontal kernels, `gevv`, the four `gemv` cases).
fn sent_elsewhere_by_the_crate<T>(p: &Problem<T>) -> bool {
    let (l, r) = (&p.lhs, &p.rhs);
    (l.cs == 1 && r.rs == 1 && p.m * p.n <= 16 * 16)
        || p.k <= 2
        || (p.n <= 1 && l.rs == 1 && p.dst_rs == 1)
        || (p.n <= 1 && l.cs == 1 && r.rs == 1)
        || (p.m <= 1 && r.cs == 1 && p.dst_cs == 1)
        || (p.m <= 1 && r.rs == 1 && l.cs == 1)
}

/// The crate's single-threaded blocked loop (`gemm_basic_generic` with `Parallelism::None`), with
/// the blocking `(kc, mc, nc)` of [`blocking`] and the packing buffers taken from the context's
/// workspaces.
///
/// # Safety
/// As [`product`].
unsafe fn blocked<T: Microkernels>(
    ctx: &Context<'_>,
    kernels: Kernels<T>,
    p: &Problem<T>,
    (kc, mc, nc): (usize, usize, usize),
    accumulate: bool,
) -> Result<()> {
    let lanes = kernels.lanes;
    let mr = kernels.table.len() * lanes;
    let isa = ctx.isa();
    let (m, n, k) = (p.m, p.n, p.k);
    if kc == 0 || mc == 0 {
        let message = format!("no blocking for {m}x{k}·{k}x{n} (kc {kc}, mc {mc})");
        return Err(Error::operands("gemm", message));
    }
    let (lhs, rhs) = (p.lhs, p.rhs);
    let crate_packs_rhs = (rhs.rs.unsigned_abs() != 1 && m > 2 * mr)
        || (rhs.rs.unsigned_abs() == 1 && m > gemm_common::gemm::get_rhs_packing_threshold() * mr);
    // A right operand whose columns are contiguous and whose depth steps are rows apart: `X` of a
    // weight gradient `Xᵀ·dY`, whose pack copies six values from each row of `X`. The microkernels
    // read it in place instead, each depth block's rows first brought into L2 in order (see
    // [`warm_rows`]). The kernels compute the same sums either way.
    let warm_rhs =
        crate_packs_rhs && rhs.cs == 1 && rhs.rs.unsigned_abs() != 1 && ctx.config().gemm_in_place;
    let pack_rhs = crate_packs_rhs && !warm_rhs;
    let prepack_lhs = m <= 2 * mc && (m % lanes != 0 || lhs.rs != 1);
    let lhs_stride = kc * mr;
    let rhs_stride = kc * NR;

    let rhs_lines = if pack_rhs {
        lines_for::<T>(rhs_stride * (nc / NR))
    } else {
        0
    };
    let lhs_lines = if prepack_lhs {
        lines_for::<T>(lhs_stride * m.next_multiple_of(mr) / mr)
    } else {
        lines_for::<T>(lhs_stride * (mc / mr))
    };
    ctx.with_workspace(rhs_lines + lhs_lines, |work| {
        let packed_rhs = work as *mut T;
        let packed_lhs = work.wrapping_add(rhs_lines) as *mut T;
        let threshold = gemm_common::gemm::get_lhs_packing_threshold_single_thread();
        let mut col_outer = 0;
        while col_outer != n {
            let n_chunk = nc.min(n - col_outer);
            let mut alpha_status = u8::from(accumulate);
            let mut depth_outer = 0;
            while depth_outer != k {
                let k_chunk = kc.min(k - depth_outer);
                if pack_rhs {
                    // SAFETY: the source lies inside the operand (module invariant); the panels
                    // `ceil(n_chunk / NR) · rhs_stride ≤ rhs_lines` fit the workspace.
                    unsafe {
                        pack(
                            isa,
                            packed_rhs,
                            rhs_stride,
                            NR,
                            n_chunk,
                            k_chunk,
                            rhs.at(depth_outer, col_outer),
                            rhs.cs,
                            rhs.rs,
                        )
                    };
                }
                if warm_rhs {
                    warm_rows(rhs.at(depth_outer, col_outer), rhs.rs, k_chunk, n_chunk);
                }
                if prepack_lhs {
                    // SAFETY: as above, `ceil(m / mr)` panels of `lhs_stride`.
                    unsafe {
                        pack(
                            isa,
                            packed_lhs,
                            lhs_stride,
                            mr,
                            m,
                            k_chunk,
                            lhs.at(0, depth_outer),
                            lhs.rs,
                            lhs.cs,
                        )
                    };
                }
                let col_tiles = n_chunk.div_ceil(NR);
                let mut row_outer = 0;
                while row_outer != m {
                    let mut m_chunk = mc.min(m - row_outer);
                    if m_chunk > lanes && !prepack_lhs {
                        m_chunk = m_chunk / lanes * lanes;
                    }
                    let row_tiles = m_chunk.div_ceil(mr);
                    let pack_lhs = !prepack_lhs
                        && (m_chunk % lanes != 0 || lhs.rs != 1 || n_chunk > threshold * NR);
                    let lhs_cs = if prepack_lhs || pack_lhs {
                        mr as isize
                    } else {
                        lhs.cs
                    };
                    let (rhs_rs, rhs_cs) = if pack_rhs {
                        (NR as isize, 1)
                    } else {
                        (rhs.rs, rhs.cs)
                    };
                    for j in 0..col_tiles {
                        let col_inner = NR * j;
                        let n_tile = NR.min(n_chunk - col_inner);
                        for i in 0..row_tiles {
                            let row_inner = mr * i;
                            let m_tile = mr.min(m_chunk - row_inner);
                            let row = row_outer + row_inner;
                            // The crate packs each row panel at its first column tile (`j == 0`)
                            // and reuses it for the others.
                            let lhs_tile = if pack_lhs {
                                let panel = packed_lhs.wrapping_add(i * lhs_stride);
                                if j == 0 {
                                    // SAFETY: one panel of `m_tile ≤ mr` rows inside the operand;
                                    // `mc / mr` panels fit the workspace.
                                    unsafe {
                                        pack(
                                            isa,
                                            panel,
                                            lhs_stride,
                                            mr,
                                            m_tile,
                                            k_chunk,
                                            lhs.at(row, depth_outer),
                                            lhs.rs,
                                            lhs.cs,
                                        )
                                    };
                                }
                                panel as *const T
                            } else if prepack_lhs {
                                packed_lhs.wrapping_add((i + row_outer / mr) * lhs_stride)
                                    as *const T
                            } else {
                                lhs.at(row, depth_outer)
                            };
                            let rhs_tile = if pack_rhs {
                                packed_rhs.wrapping_add(j * rhs_stride) as *const T
                            } else {
                                rhs.at(depth_outer, col_outer + col_inner)
                            };
                            let dst = p.dst.wrapping_offset(
                                row as isize * p.dst_rs
                                    + (col_outer + col_inner) as isize * p.dst_cs,
                            );
                            let kernel = kernels.table[m_tile.div_ceil(lanes) - 1][n_tile - 1];
                            // SAFETY: the tile's operands are packed panels in the workspace or
                            // lie inside the operands; `dst` is a `m_tile × n_tile` block of `c`
                            // (initialized when `alpha_status` is 1: accumulation, or a later
                            // depth block after the first wrote it). The CPU has the kernel's
                            // features (checked by `pick`).
                            unsafe {
                                kernel(
                                    m_tile,
                                    n_tile,
                                    k_chunk,
                                    dst,
                                    lhs_tile,
                                    rhs_tile,
                                    p.dst_cs,
                                    p.dst_rs,
                                    lhs_cs,
                                    rhs_rs,
                                    rhs_cs,
                                    if alpha_status == 0 { T::ZERO } else { T::ONE },
                                    T::ONE,
                                    alpha_status,
                                    false,
                                    false,
                                    false,
                                    std::ptr::null(),
                                )
                            };
                        }
                    }
                    row_outer += m_chunk;
                }
                alpha_status = 1;
                depth_outer += k_chunk;
            }
            col_outer += n_chunk;
        }
    })
}

/// Asks the CPU to bring `rows` rows of `cols` values, `row_step` elements apart from `first` on,
/// into L2 (a prefetch of every cache line they touch, row by row). `X` in a weight gradient's
/// product otherwise arrives a line at a time as the kernels walk down its rows six values wide, a
/// stride the hardware prefetchers do not follow. A prefetch never faults, so the addresses need not
/// be valid; these are (the caller's operand).
fn warm_rows<T>(first: *const T, row_step: isize, rows: usize, cols: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        let bytes = cols * std::mem::size_of::<T>();
        for r in 0..rows {
            let row = first.wrapping_offset(r as isize * row_step) as *const i8;
            // Every 64 bytes from the row's start, and its last byte (its last line, when the row
            // does not start on a line boundary).
            let last = bytes.checked_sub(1).into_iter();
            for offset in (0..bytes).step_by(64).chain(last) {
                // SAFETY: a prefetch only hints; it reads nothing and cannot fault.
                #[allow(unused_unsafe)]
                unsafe {
                    std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T1 }>(
                        row.wrapping_add(offset),
                    )
                };
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (first, row_step, rows, cols);
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    /// The FMA kernels (what a CPU without AVX-512 gets; the tests elsewhere compare the AVX-512
    /// path with the crate bit for bit) give the exact product within rounding, over blocked,
    /// packed and partial-tile shapes and every transpose combination.
    #[test]
    fn fma_kernels_compute_the_product() {
        if !std::is_x86_feature_detected!("fma") {
            return;
        }
        let kernels = Kernels {
            table: &tables::F32_FMA,
            lanes: 8,
        };
        for (m, k, n) in [
            (37, 1030, 45),
            (300, 64, 100),
            (20, 700, 400),
            (64, 300, 10),
        ] {
            let (a, b) = super::super::tests::test_operands::<f32>(m, k, n);
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let (ar, ac) = if ta { (k, m) } else { (m, k) };
                let (br, bc) = if tb { (n, k) } else { (k, n) };
                let av = MatRef::row_major(&a, ar, ac, ta);
                let bv = MatRef::row_major(&b, br, bc, tb);
                let mut c = vec![1.0f32; m * n];
                // SAFETY: valid row-major views; `c` is m×n, initialized, exclusively ours.
                unsafe {
                    product(
                        &Context::serial(),
                        kernels,
                        c.as_mut_ptr(),
                        n,
                        av,
                        bv,
                        true,
                        None,
                    )
                }
                .unwrap();
                for i in 0..m {
                    for j in 0..n {
                        let exact: f64 = (0..k)
                            .map(|p| {
                                let x = if ta { a[p * m + i] } else { a[i * k + p] };
                                let y = if tb { b[j * k + p] } else { b[p * n + j] };
                                x as f64 * y as f64
                            })
                            .sum();
                        let got = c[i * n + j] as f64 - 1.0;
                        assert!(
                            (got - exact).abs() < 1e-3,
                            "{m}x{k}x{n} {ta} {tb} ({i},{j})"
                        );
                    }
                }
            }
        }
    }
}
