//! 2-D convolution over NHWC data with HWIO filters, as matrix products: each output pixel's
//! receptive field is gathered into one row of a patch matrix (im2col), so that the convolution is
//! `patches · W` with `W` the filter seen as `(k_h·k_w·C) × O`. The backward passes are the two
//! products of that: `dPatches = dY · Wᵀ` scattered back onto the input's pixels (col2im), and
//! `dW = patchesᵀ · dY`. Pooling windows (submodule [`pooling`]) share the geometry.
//!
//! The patch matrix is built a fixed number of whole images at a time (at most
//! [`PATCH_CHUNK_ELEMENTS`] values, at least one image), into a scratch vector from the context's
//! pool, so its size does not grow with the batch and a step allocates nothing after warm-up. The
//! chunks depend on the shapes alone, so the filter gradient's sum over chunks is the same on any
//! number of threads. A 1×1 window with stride 1 and no padding needs no patches: the input is the
//! patch matrix.

use crate::context::Context;
use crate::error::{Error, Result};
use crate::gemm::{gemm, gemm_into_uninit, gemm_into_vec, MatRef};
use crate::math::Float;
use rayon::prelude::*;
use std::mem::MaybeUninit;

pub mod pooling;
#[cfg(test)]
mod tests;

/// The most values of one chunk of the patch matrix (4 MiB of f32).
pub const PATCH_CHUNK_ELEMENTS: usize = 1 << 20;

/// Where a sliding window (a filter or a pooling window) goes over an NHWC input: the input's
/// sizes, the window's, its strides and dilations, the padding before the first row and column,
/// and the output's spatial size. Output pixel `(oh, ow)`'s tap `(kh, kw)` reads input pixel
/// `(oh·stride_h + kh·dilation_h - pad_top, ow·stride_w + kw·dilation_w - pad_left)`, or nothing
/// (a zero for a convolution) when that lies outside the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window2d {
    pub batch: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub channels: usize,
    pub k_h: usize,
    pub k_w: usize,
    pub stride_h: usize,
    pub stride_w: usize,
    pub dilation_h: usize,
    pub dilation_w: usize,
    pub pad_top: usize,
    pub pad_left: usize,
    pub out_h: usize,
    pub out_w: usize,
}

impl Window2d {
    /// Values of the input (`batch·in_h·in_w·channels`).
    pub fn input_len(&self) -> Result<usize> {
        checked(&[self.batch, self.in_h, self.in_w, self.channels])
    }

    /// Output pixels over the batch (`batch·out_h·out_w`): the rows of the patch matrix.
    pub fn pixels(&self) -> Result<usize> {
        checked(&[self.batch, self.out_h, self.out_w])
    }

    /// Values in one patch (`k_h·k_w·channels`): the columns of the patch matrix.
    pub fn patch_len(&self) -> Result<usize> {
        checked(&[self.k_h, self.k_w, self.channels])
    }

    /// Whether the input itself is the patch matrix (a 1×1 window, stride 1, no padding).
    pub fn is_pointwise(&self) -> bool {
        self.k_h == 1
            && self.k_w == 1
            && self.stride_h == 1
            && self.stride_w == 1
            && self.pad_top == 0
            && self.pad_left == 0
            && self.out_h == self.in_h
            && self.out_w == self.in_w
    }

    /// The input row of tap `kh` of output row `oh`, if inside the input.
    #[inline]
    fn in_row(&self, oh: usize, kh: usize) -> Option<usize> {
        (oh * self.stride_h + kh * self.dilation_h)
            .checked_sub(self.pad_top)
            .filter(|&h| h < self.in_h)
    }

    /// The input column of tap `kw` of output column `ow`, if inside the input.
    #[inline]
    fn in_col(&self, ow: usize, kw: usize) -> Option<usize> {
        (ow * self.stride_w + kw * self.dilation_w)
            .checked_sub(self.pad_left)
            .filter(|&w| w < self.in_w)
    }

    /// Images per chunk of the patch matrix (see the module's documentation).
    fn images_per_chunk(&self) -> Result<usize> {
        let per_image = checked(&[self.out_h, self.out_w, self.patch_len()?])?;
        Ok((PATCH_CHUNK_ELEMENTS / per_image.max(1)).clamp(1, self.batch.max(1)))
    }

    /// The size checks every kernel makes before touching memory: strides and dilations of at
    /// least one, and slices of the lengths the shapes give.
    fn check(&self, kernel: &'static str, lens: &[(&str, usize, usize)]) -> Result<()> {
        if self.stride_h == 0 || self.stride_w == 0 || self.dilation_h == 0 || self.dilation_w == 0
        {
            return Err(Error::operands(
                kernel,
                "strides and dilations must be at least 1",
            ));
        }
        for &(what, got, want) in lens {
            if got != want {
                let message = format!("{what} holds {got} values, the window needs {want}");
                return Err(Error::operands(kernel, message));
            }
        }
        Ok(())
    }
}

/// The product of `dims`, or an error when it overflows.
fn checked(dims: &[usize]) -> Result<usize> {
    dims.iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| Error::operands("conv2d", "a size overflows"))
}

/// Writes `src` into the uninitialized `dst` (of the same length).
#[inline(always)]
fn write_copy<T: Copy>(dst: &mut [MaybeUninit<T>], src: &[T]) {
    for (d, s) in dst.iter_mut().zip(src) {
        d.write(*s);
    }
}

/// Writes zeros into `dst`.
#[inline(always)]
fn write_zeros<T: Float>(dst: &mut [MaybeUninit<T>]) {
    for d in dst {
        d.write(T::zero());
    }
}

impl Window2d {
    /// The input column of tap 0 of output column `ow`, when the window's `k_w` taps lie inside
    /// the input next to each other (dilation 1): their `k_w·channels` values are then one
    /// contiguous run of the input row.
    #[inline]
    fn run_start(&self, ow: usize) -> Option<usize> {
        (ow * self.stride_w)
            .checked_sub(self.pad_left)
            .filter(|&w| self.dilation_w == 1 && w + self.k_w <= self.in_w)
    }
}

/// Writes the patches of output line `q` (image `q / out_h`, output row `q % out_h`): `out_w`
/// patches of `patch_len` slots, every slot written (a tap outside the input as zeros). `k > 0`.
#[inline]
fn patch_line<T: Float>(g: &Window2d, x: &[T], q: usize, dst: &mut [MaybeUninit<T>]) {
    let c = g.channels;
    let image_len = g.in_h * g.in_w * c;
    let (n, oh) = (q / g.out_h, q % g.out_h);
    let image = &x[n * image_len..(n + 1) * image_len];
    let seg = g.k_w * c;
    for (ow, patch) in dst.chunks_exact_mut(g.k_h * seg).enumerate() {
        let run = g.run_start(ow);
        for (kh, d) in patch.chunks_exact_mut(seg).enumerate() {
            match (g.in_row(oh, kh), run) {
                (Some(ih), Some(iw)) => {
                    let at = (ih * g.in_w + iw) * c;
                    write_copy(d, &image[at..at + seg]);
                }
                (Some(ih), None) => {
                    for (kw, d) in d.chunks_exact_mut(c).enumerate() {
                        match g.in_col(ow, kw) {
                            Some(iw) => {
                                let at = (ih * g.in_w + iw) * c;
                                write_copy(d, &image[at..at + c]);
                            }
                            None => write_zeros(d),
                        }
                    }
                }
                (None, _) => write_zeros(d),
            }
        }
    }
}

/// The patch matrix of output pixels `first..first + rows` (whole output lines) into the empty
/// `out`, split across the context's threads in bands of lines.
fn patches<T: Float>(
    ctx: &Context<'_>,
    g: &Window2d,
    x: &[T],
    first: usize,
    rows: usize,
    out: &mut Vec<T>,
) -> Result<()> {
    let k = g.patch_len()?;
    let len = checked(&[rows, k])?;
    out.clear();
    let spare = crate::gemm::spare_of_empty(out, len, "conv2d")?;
    if len > 0 {
        let line = g.out_w * k;
        let (q0, lines) = (first / g.out_w, rows / g.out_w);
        let fill = |l0: usize, part: &mut [MaybeUninit<T>]| {
            ctx.vectorized(
                #[inline(always)]
                || {
                    for (i, dst) in part.chunks_exact_mut(line).enumerate() {
                        patch_line(g, x, q0 + l0 + i, dst);
                    }
                },
            )
        };
        if ctx.threads() > 1 && ctx.parallel(len) {
            let band = lines.div_ceil(ctx.threads()) * line;
            spare
                .par_chunks_mut(band)
                .enumerate()
                .for_each(|(i, part)| fill(i * band / line, part));
        } else {
            fill(0, spare);
        }
    }
    // SAFETY: `len > 0` means `out_w·k > 0`: the `len` slots are `lines` lines of `out_w` patches
    // of `k` slots, and `patch_line` wrote every slot of each. With `len == 0` nothing is exposed.
    unsafe { out.set_len(len) };
    Ok(())
}

/// Adds the patch-matrix rows `dp` (the rows of whole images `n0..n0 + images`) onto the input
/// pixels they were gathered from, in `dx` (all of the input): col2im, one image per task.
fn scatter_patches<T: Float>(
    ctx: &Context<'_>,
    g: &Window2d,
    dp: &[T],
    n0: usize,
    images: usize,
    dx: &mut [T],
) -> Result<()> {
    let (k, c) = (g.patch_len()?, g.channels);
    let image_in = checked(&[g.in_h, g.in_w, c])?;
    let image_rows = g.out_h * g.out_w;
    if image_in == 0 || image_rows == 0 || k == 0 {
        return Ok(());
    }
    let seg = g.k_w * c;
    let add = |d: &mut [T], s: &[T]| {
        for (d, s) in d.iter_mut().zip(s) {
            *d = *d + *s;
        }
    };
    let one = |(dxi, dpi): (&mut [T], &[T])| {
        ctx.vectorized(
            #[inline(always)]
            || {
                for (p, row) in dpi.chunks_exact(k).enumerate() {
                    let (oh, ow) = (p / g.out_w, p % g.out_w);
                    let run = g.run_start(ow);
                    for (kh, src) in row.chunks_exact(seg).enumerate() {
                        match (g.in_row(oh, kh), run) {
                            (Some(ih), Some(iw)) => {
                                let at = (ih * g.in_w + iw) * c;
                                add(&mut dxi[at..at + seg], src);
                            }
                            (Some(ih), None) => {
                                for (kw, src) in src.chunks_exact(c).enumerate() {
                                    if let Some(iw) = g.in_col(ow, kw) {
                                        let at = (ih * g.in_w + iw) * c;
                                        add(&mut dxi[at..at + c], src);
                                    }
                                }
                            }
                            (None, _) => {}
                        }
                    }
                }
            },
        )
    };
    let dx = &mut dx[n0 * image_in..(n0 + images) * image_in];
    if ctx.threads() > 1 && images > 1 {
        dx.par_chunks_mut(image_in)
            .zip(dp.par_chunks(image_rows * k))
            .for_each(one);
    } else {
        dx.chunks_mut(image_in)
            .zip(dp.chunks(image_rows * k))
            .for_each(one);
    }
    Ok(())
}

/// One chunk of the patch matrix: its first image, how many images, and its rows (output pixels)
/// `r0..r0 + rows`.
#[derive(Clone, Copy)]
struct Chunk {
    n0: usize,
    images: usize,
    r0: usize,
    rows: usize,
}

/// Runs `body` over the chunks of whole images (see the module's documentation), in order, with a
/// scratch vector from the pool that can hold one chunk's patch matrix.
fn for_each_chunk<T: Float>(
    ctx: &Context<'_>,
    g: &Window2d,
    mut body: impl FnMut(Chunk, &mut Vec<T>) -> Result<()>,
) -> Result<()> {
    let per = g.images_per_chunk()?;
    let image_rows = g.out_h * g.out_w;
    let mut scratch: Vec<T> = ctx.try_vec(checked(&[per, image_rows, g.patch_len()?])?)?;
    let mut n0 = 0;
    while n0 < g.batch {
        let images = per.min(g.batch - n0);
        let chunk = Chunk {
            n0,
            images,
            r0: n0 * image_rows,
            rows: images * image_rows,
        };
        body(chunk, &mut scratch)?;
        n0 += images;
    }
    ctx.recycle(scratch);
    Ok(())
}

/// The empty vector `v` made `len` zeros, fallibly (`what` names it in the out-of-memory error).
fn zeros<T: Float>(v: &mut Vec<T>, len: usize, what: &'static str) -> Result<()> {
    v.clear();
    v.try_reserve_exact(len)
        .map_err(|_| Error::out_of_memory::<T>(what, len))?;
    v.resize(len, T::zero());
    Ok(())
}

/// TF's `Conv2D`: `x` (NHWC, as `g` says) with the filter `w` (`k_h × k_w × channels × out_c`,
/// HWIO) into the empty `out` (`batch × out_h × out_w × out_c`).
pub fn conv2d<T: Float>(
    ctx: &Context<'_>,
    g: &Window2d,
    x: &[T],
    w: &[T],
    out_c: usize,
    out: &mut Vec<T>,
) -> Result<()> {
    let (k, pixels) = (g.patch_len()?, g.pixels()?);
    g.check(
        "conv2d",
        &[
            ("the input", x.len(), g.input_len()?),
            ("the filter", w.len(), checked(&[k, out_c])?),
        ],
    )?;
    let wm = MatRef::row_major(w, k, out_c, false);
    if g.is_pointwise() {
        return gemm_into_vec(ctx, out, MatRef::row_major(x, pixels, k, false), wm);
    }
    let len = checked(&[pixels, out_c])?;
    out.clear();
    let spare = crate::gemm::spare_of_empty(out, len, "conv2d")?;
    for_each_chunk(ctx, g, |c, scratch| {
        patches(ctx, g, x, c.r0, c.rows, scratch)?;
        let rows = &mut spare[c.r0 * out_c..(c.r0 + c.rows) * out_c];
        gemm_into_uninit(ctx, rows, MatRef::row_major(scratch, c.rows, k, false), wm)
    })?;
    // SAFETY: the chunks cover the images `0..batch`, whose output rows are all `len` slots, and
    // each chunk's product returned Ok, having written all of its rows.
    unsafe { out.set_len(len) };
    Ok(())
}

/// TF's `Conv2DBackpropInput`: the gradient of [`conv2d`] with respect to its input, from the
/// output's gradient `dy` and the filter `w`, into the empty `dx` (the input's shape).
pub fn conv2d_backprop_input<T: Float>(
    ctx: &Context<'_>,
    g: &Window2d,
    dy: &[T],
    w: &[T],
    out_c: usize,
    dx: &mut Vec<T>,
) -> Result<()> {
    let (k, pixels) = (g.patch_len()?, g.pixels()?);
    g.check(
        "conv2d_backprop_input",
        &[
            ("the output gradient", dy.len(), checked(&[pixels, out_c])?),
            ("the filter", w.len(), checked(&[k, out_c])?),
        ],
    )?;
    let wt = MatRef::row_major(w, k, out_c, true);
    if g.is_pointwise() {
        return gemm_into_vec(ctx, dx, MatRef::row_major(dy, pixels, out_c, false), wt);
    }
    zeros(dx, g.input_len()?, "an input gradient")?;
    for_each_chunk(ctx, g, |c, scratch| {
        scratch.clear();
        let dy = &dy[c.r0 * out_c..(c.r0 + c.rows) * out_c];
        gemm_into_vec(
            ctx,
            scratch,
            MatRef::row_major(dy, c.rows, out_c, false),
            wt,
        )?;
        scatter_patches(ctx, g, scratch, c.n0, c.images, dx)
    })
}

/// TF's `Conv2DBackpropFilter`: the gradient of [`conv2d`] with respect to its filter, from the
/// input `x` and the output's gradient `dy`, into the empty `dw` (`k_h × k_w × channels × out_c`):
/// the sum over chunks of `patchesᵀ · dY`.
pub fn conv2d_backprop_filter<T: Float>(
    ctx: &Context<'_>,
    g: &Window2d,
    x: &[T],
    dy: &[T],
    out_c: usize,
    dw: &mut Vec<T>,
) -> Result<()> {
    let (k, pixels) = (g.patch_len()?, g.pixels()?);
    g.check(
        "conv2d_backprop_filter",
        &[
            ("the input", x.len(), g.input_len()?),
            ("the output gradient", dy.len(), checked(&[pixels, out_c])?),
        ],
    )?;
    if g.is_pointwise() {
        let xt = MatRef::row_major(x, pixels, k, true);
        return gemm_into_vec(ctx, dw, xt, MatRef::row_major(dy, pixels, out_c, false));
    }
    zeros(dw, checked(&[k, out_c])?, "a filter gradient")?;
    for_each_chunk(ctx, g, |c, scratch| {
        patches(ctx, g, x, c.r0, c.rows, scratch)?;
        let pt = MatRef::row_major(scratch, c.rows, k, true);
        let dy = &dy[c.r0 * out_c..(c.r0 + c.rows) * out_c];
        gemm(
            ctx,
            dw,
            pt,
            MatRef::row_major(dy, c.rows, out_c, false),
            c.n0 > 0,
        )
    })
}
