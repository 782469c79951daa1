//! Reductions: golden values with their derivations, forward and gradient.

use crate::ops::test_support::{close, eval, grad, input};
use crate::Graph;

/// x = [[1, 2, 3], [4, 5, 6]]:
/// - sum over axis 0 = [5, 7, 9], over axis 1 with keepdims = [[6], [15]], over all = 21;
/// - mean over axis 1 = [2, 5]; its gradient spreads 1/3 to every element;
/// - max over axis 1 = [3, 6]; its gradient is 1 at the maximum of each row, 0 elsewhere;
/// - argmax over axis 0 = [1, 1, 1];
/// - L2Loss = (1 + 4 + 9 + 16 + 25 + 36) / 2 = 45.5, with gradient x itself.
#[test]
fn sums_means_maxima_argmax_and_l2() {
    let g = Graph::new();
    let (x, fx) = input(&g, &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let s0 = g.reduce_sum(x, Some(&[0]), false).unwrap();
    let s1 = g.reduce_sum(x, Some(&[1]), true).unwrap();
    let all = g.reduce_sum(x, None, false).unwrap();
    let mean = g.reduce_mean(x, Some(&[1]), false).unwrap();
    let max = g.reduce_max(x, Some(&[-1]), false).unwrap();
    let arg = g.argmax(x, 0).unwrap();
    let l2 = g.l2_loss(x).unwrap();
    let fetches = [
        s0,
        s1,
        all,
        mean,
        grad(&g, mean, x),
        max,
        grad(&g, max, x),
        arg,
        l2,
        grad(&g, l2, x),
    ];
    let out = eval(&g, &fetches, &[fx]);
    close(&out[0], &[5.0, 7.0, 9.0], 0.0, "sum axis 0");
    close(&out[1], &[6.0, 15.0], 0.0, "sum axis 1 keepdims");
    close(&out[2], &[21.0], 0.0, "sum");
    close(&out[3], &[2.0, 5.0], 0.0, "mean axis 1");
    close(&out[4], &[1.0 / 3.0; 6], 1e-15, "d mean");
    close(&out[5], &[3.0, 6.0], 0.0, "max");
    close(&out[6], &[0.0, 0.0, 1.0, 0.0, 0.0, 1.0], 0.0, "d max");
    close(&out[7], &[1.0, 1.0, 1.0], 0.0, "argmax");
    close(&out[8], &[45.5], 0.0, "l2_loss");
    close(&out[9], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 0.0, "d l2_loss");
}

/// An axis beyond the rank is refused when the node is added.
#[test]
fn an_axis_out_of_range_is_a_build_error() {
    let g = Graph::new();
    let (x, _) = input(&g, &[2, 3], &[0.0; 6]);
    let e = g.reduce_sum(x, Some(&[2]), false).unwrap_err().to_string();
    assert!(e.contains("axis") && e.contains('2'), "{e}");
}
