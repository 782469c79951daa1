//! Max and average pooling over NHWC data and their gradients, TF's `MaxPool`, `MaxPoolGrad`,
//! `AvgPool` and `AvgPoolGrad`. A window's taps outside the input (SAME padding) take no part: the
//! maximum is over the taps inside, and the average divides by how many taps are inside. The
//! gradient of a maximum goes to the first tap in row-major window order that holds it, as TF's
//! CPU kernel resolves ties. Each image is one task: images never share input pixels.

use super::{checked, zeros, Window2d};
use crate::context::Context;
use crate::error::Result;
use crate::math::Float;
use rayon::prelude::*;

/// Channels whose running maxima `max_pool_grad` keeps on the stack at once.
const CHANNEL_BLOCK: usize = 64;

/// Runs `f(n, image n's part of out)` for every image `n` (`out_image` values each), in parallel
/// when the context has threads and the work is large.
fn per_image<B: Send>(
    ctx: &Context<'_>,
    out: &mut [B],
    out_image: usize,
    work: usize,
    f: impl Fn(usize, &mut [B]) + Sync + Send,
) {
    if out_image == 0 {
        return;
    }
    if ctx.threads() > 1 && ctx.parallel(work) {
        out.par_chunks_mut(out_image)
            .enumerate()
            .for_each(|(n, o)| f(n, o));
    } else {
        out.chunks_mut(out_image)
            .enumerate()
            .for_each(|(n, o)| f(n, o));
    }
}

/// The taps of output pixel `(oh, ow)` inside the input, as offsets of their first channel within
/// one image, in row-major window order.
fn taps(g: &Window2d, oh: usize, ow: usize) -> impl Iterator<Item = usize> + '_ {
    (0..g.k_h)
        .filter_map(move |kh| g.in_row(oh, kh))
        .flat_map(move |ih| {
            (0..g.k_w)
                .filter_map(move |kw| g.in_col(ow, kw))
                .map(move |iw| (ih * g.in_w + iw) * g.channels)
        })
}

/// Sizes of one image's input and output, after checking the slices: each of `lens` is a slice's
/// name, its length, and whether it is input-shaped (else output-shaped).
fn image_sizes(
    g: &Window2d,
    kernel: &'static str,
    lens: &[(&str, usize, bool)],
) -> Result<(usize, usize)> {
    let in_image = checked(&[g.in_h, g.in_w, g.channels])?;
    let out_image = checked(&[g.out_h, g.out_w, g.channels])?;
    g.check(kernel, &[])?;
    for &(what, got, is_input) in lens {
        let want = checked(&[g.batch, if is_input { in_image } else { out_image }])?;
        g.check(kernel, &[(what, got, want)])?;
    }
    Ok((in_image, out_image))
}

/// TF's `MaxPool` of `x` into the empty `out`. A window with no tap inside the input gives -∞
/// (VALID and SAME padding never make one).
pub fn max_pool<T: Float>(
    ctx: &Context<'_>,
    g: &Window2d,
    x: &[T],
    out: &mut Vec<T>,
) -> Result<()> {
    let (in_image, out_image) = image_sizes(g, "max_pool", &[("the input", x.len(), true)])?;
    zeros(out, checked(&[g.batch, out_image])?, "a pooling output")?;
    let c = g.channels;
    per_image(ctx, out, out_image, x.len(), |n, oi| {
        let xi = &x[n * in_image..(n + 1) * in_image];
        ctx.vectorized(
            #[inline(always)]
            || {
                for (p, o) in oi.chunks_exact_mut(c).enumerate() {
                    o.fill(T::neg_infinity());
                    for at in taps(g, p / g.out_w, p % g.out_w) {
                        for (o, &v) in o.iter_mut().zip(&xi[at..at + c]) {
                            *o = if v > *o { v } else { *o };
                        }
                    }
                }
            },
        )
    });
    Ok(())
}

/// Calls `f(j, at)` for channel `c0 + j` (`j < w`) of output pixel `p`: `at` is the offset, within
/// the image `xi`, of the first tap in row-major window order that holds the window's maximum
/// (none for a window with no tap inside the input).
#[inline(always)]
fn for_each_argmax<T: Float>(
    g: &Window2d,
    xi: &[T],
    p: usize,
    c0: usize,
    w: usize,
    mut f: impl FnMut(usize, usize),
) {
    let mut best = [T::neg_infinity(); CHANNEL_BLOCK];
    let mut from = [usize::MAX; CHANNEL_BLOCK];
    for at in taps(g, p / g.out_w, p % g.out_w) {
        let at = at + c0;
        for (j, &v) in xi[at..at + w].iter().enumerate() {
            if v > best[j] || from[j] == usize::MAX {
                best[j] = v;
                from[j] = at + j;
            }
        }
    }
    for (j, &at) in from[..w].iter().enumerate() {
        if at != usize::MAX {
            f(j, at);
        }
    }
}

/// TF's `MaxPoolGrad`: `dy` (the output's gradient) routed to the tap that gave each maximum of
/// `x`'s windows, into the empty `dx` (the input's shape).
pub fn max_pool_grad<T: Float>(
    ctx: &Context<'_>,
    g: &Window2d,
    x: &[T],
    dy: &[T],
    dx: &mut Vec<T>,
) -> Result<()> {
    let (in_image, out_image) = image_sizes(
        g,
        "max_pool_grad",
        &[
            ("the input", x.len(), true),
            ("the output gradient", dy.len(), false),
        ],
    )?;
    zeros(dx, checked(&[g.batch, in_image])?, "a pooling gradient")?;
    let c = g.channels;
    per_image(ctx, dx, in_image, x.len(), |n, dxi| {
        let xi = &x[n * in_image..(n + 1) * in_image];
        let dyi = &dy[n * out_image..(n + 1) * out_image];
        ctx.vectorized(
            #[inline(always)]
            || {
                for (p, gy) in dyi.chunks_exact(c).enumerate() {
                    // The channels in blocks that keep each one's best value and its tap on the
                    // stack; the taps are walked once per block.
                    for c0 in (0..c).step_by(CHANNEL_BLOCK) {
                        let w = CHANNEL_BLOCK.min(c - c0);
                        for_each_argmax(g, xi, p, c0, w, |j, at| {
                            if let (Some(d), Some(&gv)) = (dxi.get_mut(at), gy.get(c0 + j)) {
                                *d = *d + gv;
                            }
                        });
                    }
                }
            },
        )
    });
    Ok(())
}

/// TF's `MaxPoolGradGrad`: the gradient of `MaxPoolGrad` with respect to its output gradient. For
/// an input-shaped `ddx`, each pooled output takes `ddx` at the tap that gave its window's
/// maximum of `x`, into the empty `out` (the pooled shape).
pub fn max_pool_grad_grad<T: Float>(
    ctx: &Context<'_>,
    g: &Window2d,
    x: &[T],
    ddx: &[T],
    out: &mut Vec<T>,
) -> Result<()> {
    let (in_image, out_image) = image_sizes(
        g,
        "max_pool_grad_grad",
        &[
            ("the input", x.len(), true),
            ("the input-shaped gradient", ddx.len(), true),
        ],
    )?;
    zeros(out, checked(&[g.batch, out_image])?, "a pooling gradient")?;
    let c = g.channels;
    per_image(ctx, out, out_image, x.len(), |n, oi| {
        let xi = &x[n * in_image..(n + 1) * in_image];
        let gi = &ddx[n * in_image..(n + 1) * in_image];
        for (p, o) in oi.chunks_exact_mut(c).enumerate() {
            for c0 in (0..c).step_by(CHANNEL_BLOCK) {
                let w = CHANNEL_BLOCK.min(c - c0);
                for_each_argmax(g, xi, p, c0, w, |j, at| {
                    if let (Some(o), Some(&v)) = (o.get_mut(c0 + j), gi.get(at)) {
                        *o = v;
                    }
                });
            }
        }
    });
    Ok(())
}

/// TF's `AvgPool` of `x` into the empty `out`: each window's mean over its taps inside the input.
pub fn avg_pool<T: Float>(
    ctx: &Context<'_>,
    g: &Window2d,
    x: &[T],
    out: &mut Vec<T>,
) -> Result<()> {
    let (in_image, out_image) = image_sizes(g, "avg_pool", &[("the input", x.len(), true)])?;
    zeros(out, checked(&[g.batch, out_image])?, "a pooling output")?;
    let c = g.channels;
    per_image(ctx, out, out_image, x.len(), |n, oi| {
        let xi = &x[n * in_image..(n + 1) * in_image];
        for (p, o) in oi.chunks_exact_mut(c).enumerate() {
            let mut count = 0usize;
            for at in taps(g, p / g.out_w, p % g.out_w) {
                count += 1;
                for (o, &v) in o.iter_mut().zip(&xi[at..at + c]) {
                    *o = *o + v;
                }
            }
            let inv = T::from_f64(count.max(1) as f64);
            o.iter_mut().for_each(|o| *o = *o / inv);
        }
    });
    Ok(())
}

/// TF's `AvgPoolGrad`: each output gradient shared equally among its window's taps inside the
/// input, into the empty `dx` (the input's shape).
pub fn avg_pool_grad<T: Float>(
    ctx: &Context<'_>,
    g: &Window2d,
    dy: &[T],
    dx: &mut Vec<T>,
) -> Result<()> {
    let (in_image, out_image) = image_sizes(
        g,
        "avg_pool_grad",
        &[("the output gradient", dy.len(), false)],
    )?;
    zeros(dx, checked(&[g.batch, in_image])?, "a pooling gradient")?;
    let c = g.channels;
    per_image(ctx, dx, in_image, g.batch * in_image, |n, dxi| {
        let dyi = &dy[n * out_image..(n + 1) * out_image];
        for (p, gy) in dyi.chunks_exact(c).enumerate() {
            let (oh, ow) = (p / g.out_w, p % g.out_w);
            let count = T::from_f64(taps(g, oh, ow).count().max(1) as f64);
            for at in taps(g, oh, ow) {
                for (d, &v) in dxi[at..at + c].iter_mut().zip(gy) {
                    *d = *d + v / count;
                }
            }
        }
    });
    Ok(())
}
