//! Comparisons, logic and `select`: golden values.

use crate::ops::test_support::{close, eval, grad, input};
use crate::Graph;

/// x = [1, 2, 3], y = [3, 2, 1]: less = [T, F, F], equal = [F, T, F], greater_equal = [F, T, T];
/// not(less) and (x ≠ y) = [F, F, T]; select(less, x, y) = [1, 2, 1] with d/dx = [1, 0, 0] (the
/// gradient flows only through the chosen entries) and d/dy = [0, 1, 1].
#[test]
fn comparisons_logic_and_select() {
    let g = Graph::new();
    let (x, fx) = input(&g, &[3], &[1.0, 2.0, 3.0]);
    let (y, fy) = input(&g, &[3], &[3.0, 2.0, 1.0]);
    let less = g.less(x, y).unwrap();
    let eq = g.equal(x, y).unwrap();
    let ge = g.greater_equal(x, y).unwrap();
    let both = g
        .logical_and(g.logical_not(less).unwrap(), g.not_equal(x, y).unwrap())
        .unwrap();
    let pick = g.select(less, x, y).unwrap();
    let fetches = [
        less,
        eq,
        ge,
        both,
        pick,
        grad(&g, pick, x),
        grad(&g, pick, y),
    ];
    let out = eval(&g, &fetches, &[fx, fy]);
    close(&out[0], &[1.0, 0.0, 0.0], 0.0, "less");
    close(&out[1], &[0.0, 1.0, 0.0], 0.0, "equal");
    close(&out[2], &[0.0, 1.0, 1.0], 0.0, "greater_equal");
    close(&out[3], &[0.0, 0.0, 1.0], 0.0, "not(less) and not_equal");
    close(&out[4], &[1.0, 2.0, 1.0], 0.0, "select");
    close(&out[5], &[1.0, 0.0, 0.0], 0.0, "d select / dx");
    close(&out[6], &[0.0, 1.0, 1.0], 0.0, "d select / dy");
}
