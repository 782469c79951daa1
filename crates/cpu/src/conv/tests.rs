//! Convolution and pooling kernels against sums written out by hand, and against a direct
//! (seven-loop) convolution on shapes that exercise padding, strides, dilations and chunks.

use super::pooling::{avg_pool, avg_pool_grad, max_pool, max_pool_grad};
use super::*;
use crate::CpuConfig;

/// A window with equal strides and dilations along both axes (`step` = (stride, dilation)).
fn window(
    batch: usize,
    hw: (usize, usize),
    c: usize,
    k: (usize, usize),
    step: (usize, usize),
    pad: (usize, usize),
    out: (usize, usize),
) -> Window2d {
    Window2d {
        batch,
        in_h: hw.0,
        in_w: hw.1,
        channels: c,
        k_h: k.0,
        k_w: k.1,
        stride_h: step.0,
        stride_w: step.0,
        dilation_h: step.1,
        dilation_w: step.1,
        pad_top: pad.0,
        pad_left: pad.1,
        out_h: out.0,
        out_w: out.1,
    }
}

/// The convolution straight from its definition, in f64.
fn direct(g: &Window2d, x: &[f64], w: &[f64], oc: usize) -> Vec<f64> {
    let mut y = vec![0.0; g.batch * g.out_h * g.out_w * oc];
    for n in 0..g.batch {
        for oh in 0..g.out_h {
            for ow in 0..g.out_w {
                for o in 0..oc {
                    let mut s = 0.0;
                    for kh in 0..g.k_h {
                        for kw in 0..g.k_w {
                            let (Some(ih), Some(iw)) = (g.in_row(oh, kh), g.in_col(ow, kw)) else {
                                continue;
                            };
                            for ci in 0..g.channels {
                                s += x[((n * g.in_h + ih) * g.in_w + iw) * g.channels + ci]
                                    * w[((kh * g.k_w + kw) * g.channels + ci) * oc + o];
                            }
                        }
                    }
                    y[((n * g.out_h + oh) * g.out_w + ow) * oc + o] = s;
                }
            }
        }
    }
    y
}

fn values(n: usize, seed: u64) -> Vec<f64> {
    // A fixed, irregular sequence in [-1, 1).
    (0..n)
        .map(|i| (((i as u64 * 2654435761 + seed * 97) % 1000) as f64) / 500.0 - 1.0)
        .collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn a_3x3_same_convolution_sums_the_neighbourhood() {
    // One 3×3 single-channel image 1..9 and an all-ones 3×3 filter, SAME padding (1 on each
    // side): each output is the sum of the pixel's in-bounds neighbours. Corner (0,0): 1+2+4+5 =
    // 12; centre: 45; edge (0,1): 1+2+3+4+5+6 = 21.
    let g = window(1, (3, 3), 1, (3, 3), (1, 1), (1, 1), (3, 3));
    let x: Vec<f32> = (1..=9).map(|v| v as f32).collect();
    let w = vec![1.0f32; 9];
    let ctx = Context::serial();
    let mut y = Vec::new();
    conv2d(&ctx, &g, &x, &w, 1, &mut y).unwrap();
    assert_eq!(y, [12.0, 21.0, 16.0, 27.0, 45.0, 33.0, 24.0, 39.0, 28.0]);
}

#[test]
fn convolutions_match_the_definition_and_their_adjoints() {
    // Cases: (batch, in, channels, kernel, stride, dilation, pad, out, out channels). The output
    // sizes are TF's: VALID ⌈(in - (k-1)·d) / s⌉, SAME ⌈in / s⌉ with the padding split low.
    let cases = [
        (2, (5, 4), 3, (3, 3), 1, 1, (1, 1), (5, 4), 2),
        (1, (7, 6), 2, (3, 2), 2, 1, (1, 0), (4, 3), 3),
        (3, (6, 6), 1, (3, 3), 1, 2, (0, 0), (2, 2), 4),
        (2, (4, 4), 5, (1, 1), 1, 1, (0, 0), (4, 4), 3),
        (2, (5, 5), 2, (1, 1), 2, 1, (0, 0), (3, 3), 2),
        (2, (8, 3), 1, (5, 3), 2, 1, (2, 1), (4, 2), 1),
    ];
    for threads in [1, 2] {
        let config = CpuConfig::default();
        let ctx = Context::new(&config, threads);
        for (i, &(b, hw, c, k, s, d, pad, out, oc)) in cases.iter().enumerate() {
            let g = window(b, hw, c, k, (s, d), pad, out);
            let x = values(g.input_len().unwrap(), i as u64);
            let w = values(g.patch_len().unwrap() * oc, i as u64 + 7);
            let want = direct(&g, &x, &w, oc);
            let mut y = Vec::new();
            conv2d(&ctx, &g, &x, &w, oc, &mut y).unwrap();
            for (a, e) in y.iter().zip(&want) {
                assert!((a - e).abs() < 1e-12, "case {i}: {a} vs {e}");
            }
            // The backward kernels are the adjoints of the forward one: for any dY,
            // <dY, conv(x, w)> = <BackpropInput(dY, w), x> = <BackpropFilter(x, dY), w>.
            let dy = values(y.len(), i as u64 + 13);
            let (mut dx, mut dw) = (Vec::new(), Vec::new());
            conv2d_backprop_input(&ctx, &g, &dy, &w, oc, &mut dx).unwrap();
            conv2d_backprop_filter(&ctx, &g, &x, &dy, oc, &mut dw).unwrap();
            let lhs = dot(&dy, &want);
            assert!(
                (dot(&dx, &x) - lhs).abs() < 1e-10,
                "case {i}: input adjoint"
            );
            assert!(
                (dot(&dw, &w) - lhs).abs() < 1e-10,
                "case {i}: filter adjoint"
            );
        }
    }
}

#[test]
fn the_filter_gradient_sums_over_chunks_of_images() {
    // Images of 16×16×4 with a 3×3 window: 256·36 = 9216 patch values per image, so a chunk of
    // 2^20 values holds 113 images, and 300 images make three chunks (113, 113, 74).
    let g = window(300, (16, 16), 4, (3, 3), (1, 1), (1, 1), (16, 16));
    assert_eq!(g.images_per_chunk().unwrap(), 113);
    let x = values(g.input_len().unwrap(), 1);
    let dy = values(g.pixels().unwrap() * 2, 2);
    let w = values(g.patch_len().unwrap() * 2, 3);
    let config = CpuConfig::default();
    let mut results = Vec::new();
    for threads in [1, 2, 3] {
        let ctx = Context::new(&config, threads);
        let (mut dw, mut dx) = (Vec::new(), Vec::new());
        conv2d_backprop_filter(&ctx, &g, &x, &dy, 2, &mut dw).unwrap();
        conv2d_backprop_input(&ctx, &g, &dy, &w, 2, &mut dx).unwrap();
        let want = dot(&dy, &direct(&g, &x, &w, 2));
        assert!((dot(&dw, &w) - want).abs() < 1e-8 * want.abs().max(1.0));
        assert!((dot(&dx, &x) - want).abs() < 1e-8 * want.abs().max(1.0));
        results.push((dw, dx));
    }
    // The chunks are fixed by the shapes: the same bits on any number of threads.
    assert!(results.windows(2).all(|r| r[0] == r[1]));
}

#[test]
fn pooling_over_a_padded_window() {
    // A 3×3 image 1..9 (one channel), 2×2 windows with stride 2 and SAME padding: TF pads 0 before
    // and 1 after, so the windows are {1,2,4,5}, {3,6}, {7,8}, {9}.
    let g = window(1, (3, 3), 1, (2, 2), (2, 1), (0, 0), (2, 2));
    let x: Vec<f32> = (1..=9).map(|v| v as f32).collect();
    let ctx = Context::serial();
    let mut y = Vec::new();
    max_pool(&ctx, &g, &x, &mut y).unwrap();
    assert_eq!(y, [5.0, 6.0, 8.0, 9.0]);
    avg_pool(&ctx, &g, &x, &mut y).unwrap();
    // Means over the taps inside: 12/4, 9/2, 15/2, 9/1.
    assert_eq!(y, [3.0, 4.5, 7.5, 9.0]);
    let dy = [1.0f32, 2.0, 3.0, 4.0];
    let mut dx = Vec::new();
    max_pool_grad(&ctx, &g, &x, &dy, &mut dx).unwrap();
    assert_eq!(dx, [0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 0.0, 3.0, 4.0]);
    avg_pool_grad(&ctx, &g, &dy, &mut dx).unwrap();
    // Window 0 gives 1/4 to each of 1,2,4,5; window 1 gives 2/2 to 3 and 6; window 2 3/2 to 7
    // and 8; window 3 4 to 9.
    assert_eq!(dx, [0.25, 0.25, 1.0, 0.25, 0.25, 1.0, 1.5, 1.5, 4.0]);
}

#[test]
fn a_tied_maximum_sends_its_gradient_to_the_first_tap() {
    // One 2×2 window over equal values in two channels: channel 0 all 1, channel 1 [0, 3, 3, 0].
    // The gradient goes to the first tap in row-major order holding the maximum.
    let g = window(1, (2, 2), 2, (2, 2), (2, 1), (0, 0), (1, 1));
    let x = [1.0f32, 0.0, 1.0, 3.0, 1.0, 3.0, 1.0, 0.0];
    let ctx = Context::serial();
    let mut dx = Vec::new();
    max_pool_grad(&ctx, &g, &x, &[10.0, 20.0], &mut dx).unwrap();
    assert_eq!(dx, [10.0, 0.0, 0.0, 20.0, 0.0, 0.0, 0.0, 0.0]);
}

#[test]
fn mismatched_slices_and_zero_strides_are_errors() {
    let g = window(1, (3, 3), 1, (3, 3), (1, 1), (1, 1), (3, 3));
    let ctx = Context::serial();
    let mut y = Vec::new();
    let e = conv2d(&ctx, &g, &[0.0f32; 8], &[0.0; 9], 1, &mut y).unwrap_err();
    assert!(
        e.to_string()
            .contains("the input holds 8 values, the window needs 9"),
        "{e}"
    );
    let bad = Window2d { stride_h: 0, ..g };
    assert!(max_pool(&ctx, &bad, &[0.0f32; 9], &mut y).is_err());
}
