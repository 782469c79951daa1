//! Matrix products: golden values with their derivations, forward and gradient.

use crate::ops::test_support::{close, eval, grad, input};
use crate::Graph;

/// a = [[1, 2], [3, 4]], b = [[5, 6], [7, 8]]:
/// - a·b = [[1·5 + 2·7, 1·6 + 2·8], [3·5 + 4·7, 3·6 + 4·8]] = [[19, 22], [43, 50]];
/// - d sum(a·b)/da = ones·bᵀ = row sums of b per column of a: [[11, 15], [11, 15]];
/// - d sum(a·b)/db = aᵀ·ones = column sums of a per row of b: [[4, 4], [6, 6]];
/// - aᵀ·b (transpose_a) = [[1·5 + 3·7, 1·6 + 3·8], [2·5 + 4·7, 2·6 + 4·8]] = [[26, 30], [38, 44]];
/// - a·bᵀ (transpose_b) = [[1·5 + 2·6, 1·7 + 2·8], [3·5 + 4·6, 3·7 + 4·8]] = [[17, 23], [39, 53]].
#[test]
fn products_transposes_and_gradients() {
    let g = Graph::new();
    let (a, fa) = input(&g, &[2, 2], &[1.0, 2.0, 3.0, 4.0]);
    let (b, fb) = input(&g, &[2, 2], &[5.0, 6.0, 7.0, 8.0]);
    let ab = g.matmul(a, b).unwrap();
    let atb = g.matmul_t(a, b, true, false).unwrap();
    let abt = g.matmul_t(a, b, false, true).unwrap();
    let fetches = [
        ab,
        grad(&g, ab, a),
        grad(&g, ab, b),
        atb,
        abt,
        grad(&g, atb, a),
    ];
    let out = eval(&g, &fetches, &[fa, fb]);
    close(&out[0], &[19.0, 22.0, 43.0, 50.0], 0.0, "a·b");
    close(&out[1], &[11.0, 15.0, 11.0, 15.0], 0.0, "d/da");
    close(&out[2], &[4.0, 4.0, 6.0, 6.0], 0.0, "d/db");
    close(&out[3], &[26.0, 30.0, 38.0, 44.0], 0.0, "aᵀ·b");
    close(&out[4], &[17.0, 23.0, 39.0, 53.0], 0.0, "a·bᵀ");
    // d sum(aᵀ·b)/da = b·onesᵀ: row i of the gradient holds row i of b summed, in both columns.
    close(&out[5], &[11.0, 11.0, 15.0, 15.0], 0.0, "d(aᵀ·b)/da");
}

/// A product whose inner sizes disagree is refused when the node is added, naming both shapes.
#[test]
fn mismatched_inner_sizes_are_a_build_error() {
    let g = Graph::new();
    let (a, _) = input(&g, &[2, 3], &[0.0; 6]);
    let (b, _) = input(&g, &[2, 2], &[0.0; 4]);
    let e = g.matmul(a, b).unwrap_err().to_string();
    assert!(
        e.contains("MatMul") && e.contains('3') && e.contains('2'),
        "{e}"
    );
}
