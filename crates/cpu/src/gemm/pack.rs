//! Packing an operand's lines into the microkernels' panels.
//!
//! A pack copies `count` lines of a strided operand, over `depth` steps, into panels of `width`
//! lines `stride` elements apart: in a panel, depth step `d` holds the panel's lines at
//! `d·width ..`, and a last panel of fewer than `width` lines is padded with zeros. Line `l` at
//! depth `d` is `src[l·along + d·step]`.
//!
//! Packing only moves values, so neither its order nor its instructions change a result. Three
//! cases:
//! - lines contiguous (`along` 1: a weight matrix as the forward product reads it): panel by panel,
//!   each depth step's lines one fixed-size copy (the crate's order);
//! - depth contiguous (`step` 1: the transposed weight matrix of the gradient `dY·Wᵀ`): f32 in
//!   blocks of 16 lines × 16 depth steps on AVX-512 (8 × 8 on AVX2), each block 16 vector loads, a
//!   transpose in registers and 16 vector stores, where the crate gathers one value at a time; a
//!   last block of fewer lines loads only those and stores the zeros of the padding with them;
//! - otherwise: one value at a time, a depth step at a time across a panel's lines (the crate's
//!   order).

use super::packed::Microkernels;
use crate::simd::{vectorized_with, Isa};

/// Packs `count` lines (see the module docs), with loops compiled for `isa`.
///
/// # Safety
/// Every `src[l·along + d·step]` for `l < count`, `d < depth` lies inside the operand; `dst` has room
/// for `ceil(count / width)` panels of `stride ≥ depth·width` elements; the CPU has `isa`.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn pack<T: Microkernels>(
    isa: Isa,
    dst: *mut T,
    stride: usize,
    width: usize,
    count: usize,
    depth: usize,
    src: *const T,
    along: isize,
    step: isize,
) {
    let p = Pack {
        isa,
        dst,
        stride,
        width,
        count,
        depth,
        src,
        along,
        step,
    };
    // SAFETY (every arm): the function's contract, passed on.
    unsafe {
        if along == 1 {
            // The panel widths of the crate's tables (NR; 1, 2 or 4 vectors of 4, 8 or 16 lanes),
            // each with its own loop so that whole lines are fixed-size copies.
            match width {
                6 => p.by_panels::<6>(),
                8 => p.by_panels::<8>(),
                16 => p.by_panels::<16>(),
                32 => p.by_panels::<32>(),
                64 => p.by_panels::<64>(),
                _ => p.gather_from(0),
            }
        } else if step == 1 {
            p.by_lines()
        } else {
            p.gather_from(0)
        }
    }
}

/// The arguments of one [`pack`].
#[derive(Clone, Copy)]
struct Pack<T> {
    isa: Isa,
    dst: *mut T,
    stride: usize,
    width: usize,
    count: usize,
    depth: usize,
    src: *const T,
    along: isize,
    step: isize,
}

impl<T: Microkernels> Pack<T> {
    /// Where line `l`'s value at depth `d` goes.
    fn slot(&self, l: usize, d: usize) -> *mut T {
        self.dst
            .wrapping_add(l / self.width * self.stride + d * self.width + l % self.width)
    }

    /// Where line `l`'s value at depth `d` comes from.
    fn source(&self, l: usize, d: usize) -> *const T {
        self.src
            .wrapping_offset(l as isize * self.along + d as isize * self.step)
    }

    /// Lines contiguous (`along` 1, `width` `W`): panel by panel, each depth step's `W` lines (side by
    /// side in the operand) one fixed-size copy, and the last panel's lines past `count` zeros.
    ///
    /// # Safety
    /// As [`pack`], with `along` 1 and `width` `W`.
    unsafe fn by_panels<const W: usize>(self) {
        vectorized_with(
            self.isa,
            #[inline(always)]
            || {
                let full = self.count / W;
                let rest = self.count % W;
                for panel in 0..full {
                    for d in 0..self.depth {
                        let from = self.source(panel * W, d);
                        let to = self.slot(panel * W, d);
                        // SAFETY: `W` lines of this depth step inside the operand (the contract);
                        // one line of a panel inside `dst`.
                        unsafe {
                            (to as *mut [T; W])
                                .write_unaligned((from as *const [T; W]).read_unaligned())
                        };
                    }
                }
                if rest > 0 {
                    for d in 0..self.depth {
                        let from = self.source(full * W, d);
                        let to = self.slot(full * W, d);
                        // SAFETY: the last `rest` lines of this depth step inside the operand; one
                        // line (`W` slots) of the last panel inside `dst`.
                        unsafe {
                            std::ptr::copy_nonoverlapping(from, to, rest);
                            for l in rest..W {
                                *to.add(l) = T::ZERO;
                            }
                        }
                    }
                }
            },
        )
    }

    /// Depth contiguous (`step` 1): f32 in blocks of lines along their whole depth, transposed in
    /// registers (16 lines with AVX-512, 8 with AVX2); the rest of the last panel, and every line
    /// elsewhere, by [`Self::gather_from`].
    ///
    /// # Safety
    /// As [`pack`], with `step` 1.
    unsafe fn by_lines(self) {
        // SAFETY: passed on.
        unsafe { self.by_lines_with(self.isa) }
    }

    /// [`Self::by_lines`] with the instruction set `isa`, which the CPU has.
    ///
    /// # Safety
    /// As [`pack`], with `step` 1; the CPU supports `isa`.
    unsafe fn by_lines_with(self, isa: Isa) {
        #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
        let mut done = 0;
        #[cfg(target_arch = "x86_64")]
        if std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>() {
            let fits = |block: usize| self.width.is_multiple_of(block) && self.depth >= block;
            if isa == Isa::Avx512 && fits(16) {
                let blocks = self.count.div_ceil(16);
                // SAFETY: `T` is f32 (checked above), so the pointers are to f32; the CPU has
                // AVX-512F (the caller's contract); the blocks lie inside the operand and panels.
                unsafe { x86::transpose_blocks_16(self.cast(), blocks) };
                done = blocks * 16;
            } else if isa >= Isa::Avx2 && fits(8) {
                let blocks = self.count.div_ceil(8);
                // SAFETY: as above, with AVX (which AVX2 implies).
                unsafe { x86::transpose_blocks_8(self.cast(), blocks) };
                done = blocks * 8;
            }
        }
        let _ = isa;
        // SAFETY: passed on.
        unsafe { self.gather_from(done) }
    }

    /// The same pack over f32 pointers (only called when `T` is f32).
    #[cfg(target_arch = "x86_64")]
    fn cast(self) -> Pack<f32> {
        Pack {
            isa: self.isa,
            dst: self.dst as *mut f32,
            src: self.src as *const f32,
            stride: self.stride,
            width: self.width,
            count: self.count,
            depth: self.depth,
            along: self.along,
            step: self.step,
        }
    }

    /// Lines `first..` one value at a time, a depth step at a time across each panel's lines (the
    /// order of the crate's packing), and zeros in the last panel's slots past `count`.
    ///
    /// # Safety
    /// As [`pack`].
    unsafe fn gather_from(self, first: usize) {
        let end = self.count.next_multiple_of(self.width);
        let mut l0 = first;
        while l0 < end {
            let panel_end = (l0 / self.width + 1) * self.width;
            let lines = self.count.min(panel_end).saturating_sub(l0);
            for d in 0..self.depth {
                let from = self.source(l0, d);
                let to = self.slot(l0, d);
                // SAFETY: the lines `l0..l0 + lines` (below `count`) at depth `d` inside the
                // operand; the slots `l0..panel_end` of one panel inside `dst`.
                unsafe {
                    for l in 0..lines {
                        *to.add(l) = *from.offset(l as isize * self.along);
                    }
                    for l in lines..panel_end - l0 {
                        *to.add(l) = T::ZERO;
                    }
                }
            }
            l0 = panel_end;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Pack;
    use std::arch::x86_64::*;

    /// The lines of `p` in `blocks` blocks of `B` (depth contiguous, `width` a multiple of `B`, depth
    /// at least `B`), each `B` depth steps at a time: `B` vector loads, `transpose`, `B` vector
    /// stores. A last block of fewer lines writes zeros in the slots past `count` (the panel's
    /// padding), and the depth steps past the last multiple of `B` come from one more step block,
    /// overlapping the one before it. Inlined into functions compiled for the vectors' features.
    ///
    /// # Safety
    /// As `pack`, with `blocks · B` at most `count` rounded up to `width`; `load` and `store` read
    /// and write `B` values at a pointer.
    #[inline(always)]
    unsafe fn transpose_blocks<V: Copy, const B: usize>(
        p: Pack<f32>,
        blocks: usize,
        zero: V,
        load: impl Fn(*const f32) -> V,
        transpose: impl Fn([V; B]) -> [V; B],
        store: impl Fn(*mut f32, V),
    ) {
        let last = p.depth - B;
        for b in 0..blocks {
            let l0 = b * B;
            let present = p.count.saturating_sub(l0).min(B);
            let mut d0 = 0;
            loop {
                let d = d0.min(last);
                let mut rows = [zero; B];
                for (i, row) in rows.iter_mut().enumerate().take(present) {
                    // `B` values of line `l0 + i < count` from depth `d` (`d + B ≤ depth`).
                    *row = load(p.source(l0 + i, d));
                }
                for (j, col) in transpose(rows).into_iter().enumerate() {
                    // The `B` slots of lines `l0..l0 + B` (one panel: `B` divides the width) at
                    // depth `d + j`.
                    store(p.slot(l0, d + j), col);
                }
                if d == last {
                    break;
                }
                d0 += B;
            }
        }
    }

    /// [`transpose_blocks`] in blocks of 16 lines, AVX-512.
    ///
    /// # Safety
    /// As [`transpose_blocks`]; the CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn transpose_blocks_16(p: Pack<f32>, blocks: usize) {
        // SAFETY: the contract, passed on; the loads and stores take 16 values.
        unsafe {
            transpose_blocks::<__m512, 16>(
                p,
                blocks,
                _mm512_setzero_ps(),
                |at| _mm512_loadu_ps(at),
                |r| transpose_16(r),
                |at, v| _mm512_storeu_ps(at, v),
            )
        }
    }

    /// [`transpose_blocks`] in blocks of 8 lines, AVX.
    ///
    /// # Safety
    /// As [`transpose_blocks`]; the CPU has AVX.
    #[target_feature(enable = "avx")]
    pub(super) unsafe fn transpose_blocks_8(p: Pack<f32>, blocks: usize) {
        // SAFETY: the contract, passed on; the loads and stores take 8 values.
        unsafe {
            transpose_blocks::<__m256, 8>(
                p,
                blocks,
                _mm256_setzero_ps(),
                |at| _mm256_loadu_ps(at),
                |r| transpose_8(r),
                |at, v| _mm256_storeu_ps(at, v),
            )
        }
    }

    /// The transpose of the 16×16 block whose rows are `r`: element `j` of result `i` is element
    /// `i` of `r[j]`.
    #[target_feature(enable = "avx512f")]
    fn transpose_16(r: [__m512; 16]) -> [__m512; 16] {
        // Pairs of rows interleaved: t[2g], t[2g + 1] hold rows 2g and 2g + 1 by column pairs.
        let mut t = [_mm512_setzero_ps(); 16];
        for g in 0..8 {
            t[2 * g] = _mm512_unpacklo_ps(r[2 * g], r[2 * g + 1]);
            t[2 * g + 1] = _mm512_unpackhi_ps(r[2 * g], r[2 * g + 1]);
        }
        // Groups of four rows: u[4q + s] holds, in each 128-bit lane k, column 4k + s of rows
        // 4q .. 4q + 4.
        let mut u = [_mm512_setzero_ps(); 16];
        for q in 0..4 {
            let (a, b, c, d) = (t[4 * q], t[4 * q + 1], t[4 * q + 2], t[4 * q + 3]);
            let pd = _mm512_castps_pd;
            let ps = _mm512_castpd_ps;
            u[4 * q] = ps(_mm512_unpacklo_pd(pd(a), pd(c)));
            u[4 * q + 1] = ps(_mm512_unpackhi_pd(pd(a), pd(c)));
            u[4 * q + 2] = ps(_mm512_unpacklo_pd(pd(b), pd(d)));
            u[4 * q + 3] = ps(_mm512_unpackhi_pd(pd(b), pd(d)));
        }
        // Lanes gathered: v[8h + s] holds lanes 0 and 2 (v[8h + 4 + s]: lanes 1 and 3) of the
        // row groups 2h and 2h + 1.
        let mut v = [_mm512_setzero_ps(); 16];
        for h in 0..2 {
            for s in 0..4 {
                let (a, b) = (u[8 * h + s], u[8 * h + 4 + s]);
                v[8 * h + s] = _mm512_shuffle_f32x4::<0x88>(a, b);
                v[8 * h + 4 + s] = _mm512_shuffle_f32x4::<0xdd>(a, b);
            }
        }
        // Column 4k + s: lane k of each of the four row groups.
        let mut out = [_mm512_setzero_ps(); 16];
        for s in 0..4 {
            out[s] = _mm512_shuffle_f32x4::<0x88>(v[s], v[8 + s]);
            out[8 + s] = _mm512_shuffle_f32x4::<0xdd>(v[s], v[8 + s]);
            out[4 + s] = _mm512_shuffle_f32x4::<0x88>(v[4 + s], v[12 + s]);
            out[12 + s] = _mm512_shuffle_f32x4::<0xdd>(v[4 + s], v[12 + s]);
        }
        out
    }

    /// The transpose of the 8×8 block whose rows are `r` (as [`transpose_16`]).
    #[target_feature(enable = "avx")]
    fn transpose_8(r: [__m256; 8]) -> [__m256; 8] {
        // Pairs of rows interleaved, as in `transpose_16`.
        let mut t = [_mm256_setzero_ps(); 8];
        for g in 0..4 {
            t[2 * g] = _mm256_unpacklo_ps(r[2 * g], r[2 * g + 1]);
            t[2 * g + 1] = _mm256_unpackhi_ps(r[2 * g], r[2 * g + 1]);
        }
        // u[4q + s] holds column s of rows 4q .. 4q + 4 in its low 128-bit lane, column 4 + s in
        // its high one.
        let mut u = [_mm256_setzero_ps(); 8];
        for q in 0..2 {
            let (a, b, c, d) = (t[4 * q], t[4 * q + 1], t[4 * q + 2], t[4 * q + 3]);
            u[4 * q] = _mm256_shuffle_ps::<0x44>(a, c);
            u[4 * q + 1] = _mm256_shuffle_ps::<0xee>(a, c);
            u[4 * q + 2] = _mm256_shuffle_ps::<0x44>(b, d);
            u[4 * q + 3] = _mm256_shuffle_ps::<0xee>(b, d);
        }
        let mut out = [_mm256_setzero_ps(); 8];
        for s in 0..4 {
            out[s] = _mm256_permute2f128_ps::<0x20>(u[s], u[4 + s]);
            out[4 + s] = _mm256_permute2f128_ps::<0x31>(u[s], u[4 + s]);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::detected;

    /// Every order gives the panels of the plain definition (value `src[l·along + d·step]` at
    /// `panel·stride + d·width + l % width`, zeros past `count`), for contiguous lines, contiguous
    /// depth (transposed blocks with every instruction set this CPU has, overlapping last blocks,
    /// partial last blocks) and neither.
    #[test]
    fn packs_equal_the_definition() {
        let isas: Vec<Isa> = [Isa::Baseline, Isa::Avx2, Isa::Avx512]
            .into_iter()
            .filter(|&isa| isa <= detected())
            .collect();
        for &(width, count, depth) in &[
            (64usize, 300usize, 300usize),
            (64, 44, 37),
            (64, 128, 16),
            (16, 50, 70),
            (16, 13, 9),
            (32, 31, 5),
            (6, 256, 33),
            (6, 7, 300),
            (8, 300, 17),
        ] {
            // Lines contiguous, depth contiguous, both strided.
            for (along, step, len) in [
                (1isize, count as isize + 3, (count + 3) * depth + count),
                (depth as isize + 5, 1, count * (depth + 5)),
                (
                    2,
                    2 * count as isize + 1,
                    (2 * count + 1) * depth + 2 * count,
                ),
            ] {
                let src: Vec<f32> = (0..len).map(|i| i as f32 * 0.5 - 7.0).collect();
                let stride = depth * width + 3;
                let panels = count.div_ceil(width);
                let p = |got: &mut Vec<f32>| Pack {
                    isa: detected(),
                    dst: got.as_mut_ptr(),
                    stride,
                    width,
                    count,
                    depth,
                    src: src.as_ptr(),
                    along,
                    step,
                };
                // The dispatch, then (depth contiguous) each instruction set's transposes.
                let mut runs: Vec<Option<Isa>> = vec![None];
                if step == 1 {
                    runs.extend(isas.iter().map(|&isa| Some(isa)));
                }
                for run in runs {
                    let mut got = vec![f32::NAN; panels * stride];
                    let q = p(&mut got);
                    // SAFETY: every line and depth step lies inside `src` (its length above);
                    // `got` holds `panels` panels of `stride`; the CPU has `isa` (filtered above).
                    unsafe {
                        match run {
                            None => pack(
                                q.isa, q.dst, q.stride, q.width, q.count, q.depth, q.src, q.along,
                                q.step,
                            ),
                            Some(isa) => q.by_lines_with(isa),
                        }
                    };
                    for l in 0..panels * width {
                        for d in 0..depth {
                            let want = if l < count {
                                src[(l as isize * along + d as isize * step) as usize]
                            } else {
                                0.0
                            };
                            let at = l / width * stride + d * width + l % width;
                            assert_eq!(
                                got[at].to_bits(),
                                want.to_bits(),
                                "{run:?} width {width} count {count} depth {depth} along {along} \
                                 step {step}: line {l} depth {d}"
                            );
                        }
                    }
                }
            }
        }
    }
}
