//! Moments and batch normalization: golden values with their derivations, forward and gradient.

use crate::ops::test_support::{close, eval, grad, input};
use crate::Graph;

/// x = [[1, 10], [3, 20], [5, 60]] (3 rows, 2 channels): moments over axis 0 give mean = [3, 30]
/// and variance = ((1-3)² + 0 + (5-3)²)/3 = 8/3 and ((10-30)² + (20-30)² + (60-30)²)/3 = 1400/3.
/// batch_normalization with offset [0.5, -1], scale [2, 1], ε = 0:
/// y = scale·(x - mean)/√var + offset, first column 2·[-2, 0, 2]/√(8/3) + 0.5.
/// The total derivative of sum(y) through the batch statistics is zero for every x: the sum of a
/// normalized column does not depend on the data (its mean is the offset times the rows).
#[test]
fn moments_normalization_and_the_total_derivative() {
    let g = Graph::new();
    let (x, fx) = input(&g, &[3, 2], &[1.0, 10.0, 3.0, 20.0, 5.0, 60.0]);
    let (offset, fo) = input(&g, &[2], &[0.5, -1.0]);
    let (scale, fs) = input(&g, &[2], &[2.0, 1.0]);
    let (mean, var) = g.moments(x, &[0], false).unwrap();
    let y = g
        .batch_normalization(x, mean, var, Some(offset), Some(scale), 0.0)
        .unwrap();
    let fetches = [
        mean,
        var,
        y,
        grad(&g, y, x),
        grad(&g, y, offset),
        grad(&g, y, scale),
    ];
    let out = eval(&g, &fetches, &[fx, fo, fs]);
    close(&out[0], &[3.0, 30.0], 1e-15, "mean");
    close(&out[1], &[8.0 / 3.0, 1400.0 / 3.0], 1e-14, "variance");
    let (s0, s1) = ((8.0f64 / 3.0).sqrt(), (1400.0f64 / 3.0).sqrt());
    let want = [
        2.0 * -2.0 / s0 + 0.5,
        -20.0 / s1 - 1.0,
        0.5,
        -10.0 / s1 - 1.0,
        2.0 * 2.0 / s0 + 0.5,
        30.0 / s1 - 1.0,
    ];
    close(&out[2], &want, 1e-14, "batch_normalization");
    close(&out[3], &[0.0; 6], 1e-13, "d sum(y) / dx");
    // d sum(y) / d offset = rows; d sum(y) / d scale = Σ (x - mean)/√var = 0.
    close(&out[4], &[3.0, 3.0], 0.0, "d / d offset");
    close(&out[5], &[0.0, 0.0], 1e-14, "d / d scale");
}

/// The same normalization with the statistics passed through identities (so the gradient cannot
/// take the fused total derivative and goes through the mean and the variance separately) has
/// the same gradient as the fused path, for a weighted sum whose total derivative is not zero.
#[test]
fn statistics_from_elsewhere_give_the_same_total_derivative() {
    let g = Graph::new();
    let (x, fx) = input(&g, &[3, 2], &[1.0, 10.0, 3.0, 20.0, 5.0, 60.0]);
    let (w, fw) = input(&g, &[3, 2], &[1.0, -2.0, 0.5, 3.0, 2.0, 1.0]);
    let (scale, fs) = input(&g, &[2], &[2.0, 1.0]);
    let (mean, var) = g.moments(x, &[0], false).unwrap();
    let fused = g
        .batch_normalization(x, mean, var, None, Some(scale), 1e-3)
        .unwrap();
    let (m2, v2) = (g.identity(mean).unwrap(), g.identity(var).unwrap());
    let apart = g
        .batch_normalization(x, m2, v2, None, Some(scale), 1e-3)
        .unwrap();
    let loss = |y| g.reduce_sum(g.mul(w, y).unwrap(), None, false).unwrap();
    let fetches = [grad(&g, loss(fused), x), grad(&g, loss(apart), x)];
    let out = eval(&g, &fetches, &[fx, fw, fs]);
    close(
        &out[1],
        &out[0],
        1e-12,
        "d loss / dx through the statistics",
    );
}
