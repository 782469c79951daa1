//! Binary arithmetic: golden values with their derivations, forward and gradient.

use crate::ops::test_support::{close, eval, grad, input};
use crate::Graph;

/// x = [[1, 2, 3], [4, 5, 6]], b = [10, 20, 30] broadcast over the rows:
/// - x + b = [[11, 22, 33], [14, 25, 36]]; d sum / d b = column sums of ones = [2, 2, 2].
/// - x · b = [[10, 40, 90], [40, 100, 180]]; d sum / d x = b per row, d sum / d b = x's column sums
///   [5, 7, 9].
/// - x / b: d sum / d b = -Σ_rows x / b² = [-5/100, -7/400, -9/900].
#[test]
fn broadcast_arithmetic_and_its_gradients() {
    let g = Graph::new();
    let (x, fx) = input(&g, &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let (b, fb) = input(&g, &[3], &[10.0, 20.0, 30.0]);
    let add = g.add(x, b).unwrap();
    let mul = g.mul(x, b).unwrap();
    let div = g.div(x, b).unwrap();
    let fetches = [
        add,
        grad(&g, add, b),
        mul,
        grad(&g, mul, x),
        grad(&g, mul, b),
        grad(&g, div, b),
    ];
    let out = eval(&g, &fetches, &[fx, fb]);
    close(&out[0], &[11.0, 22.0, 33.0, 14.0, 25.0, 36.0], 0.0, "x + b");
    close(&out[1], &[2.0, 2.0, 2.0], 0.0, "d(x + b)/db");
    close(
        &out[2],
        &[10.0, 40.0, 90.0, 40.0, 100.0, 180.0],
        0.0,
        "x · b",
    );
    close(
        &out[3],
        &[10.0, 20.0, 30.0, 10.0, 20.0, 30.0],
        0.0,
        "d(x · b)/dx",
    );
    close(&out[4], &[5.0, 7.0, 9.0], 0.0, "d(x · b)/db");
    close(&out[5], &[-0.05, -7.0 / 400.0, -0.01], 1e-15, "d(x / b)/db");
}

/// pow(x, 3) at x = 2: 8, d/dx = 3x² = 12; maximum(x, y) routes the gradient to the larger input
/// (x = [1, 5], y = [3, 2]: max = [3, 5], d/dx = [0, 1], d/dy = [1, 0]); squared_difference(x, y) =
/// (x - y)² = [4, 9], d/dx = 2(x - y) = [-4, 6]; add_n([x, x, y]) = [5, 12].
#[test]
fn pow_maximum_squared_difference_add_n() {
    let g = Graph::new();
    let (x, fx) = input(&g, &[2], &[1.0, 5.0]);
    let (y, fy) = input(&g, &[2], &[3.0, 2.0]);
    let (t, ft) = input(&g, &[], &[2.0]);
    let cube = g.pow(t, g.scalar(crate::DType::F64, 3.0).unwrap()).unwrap();
    let max = g.maximum(x, y).unwrap();
    let sq = g.squared_difference(x, y).unwrap();
    let n = g.add_n(&[x, x, y]).unwrap();
    let fetches = [
        cube,
        grad(&g, cube, t),
        max,
        grad(&g, max, x),
        grad(&g, max, y),
        sq,
        grad(&g, sq, x),
        n,
    ];
    let out = eval(&g, &fetches, &[fx, fy, ft]);
    close(&out[0], &[8.0], 1e-15, "2³");
    close(&out[1], &[12.0], 1e-15, "d 2³");
    close(&out[2], &[3.0, 5.0], 0.0, "maximum");
    close(&out[3], &[0.0, 1.0], 0.0, "d maximum / dx");
    close(&out[4], &[1.0, 0.0], 0.0, "d maximum / dy");
    close(&out[5], &[4.0, 9.0], 0.0, "squared_difference");
    close(&out[6], &[-4.0, 6.0], 0.0, "d squared_difference / dx");
    close(&out[7], &[5.0, 12.0], 0.0, "add_n");
}
