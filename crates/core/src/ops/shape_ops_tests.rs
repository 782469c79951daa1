//! Shape ops: golden values, forward and gradient.

use crate::ops::test_support::{close, eval, grad, input};
use crate::{DType, Graph};

/// x = [[1, 2, 3], [4, 5, 6]] (2×3):
/// - reshape to [3, -1] gives 3×2 with the same row-major data, and its gradient is ones of x's shape;
/// - transpose [1, 0] = [[1, 4], [2, 5], [3, 6]]; the gradient of sum(transpose · w) for
///   w = [[1, 2], [3, 4], [5, 6]] is wᵀ = [[1, 3, 5], [2, 4, 6]];
/// - expand_dims at 0 then squeeze it gives x back; cast to int64 truncates 2.7 to 2 and -1.5 to -1.
#[test]
fn reshape_transpose_expand_squeeze_cast() {
    let g = Graph::new();
    let (x, fx) = input(&g, &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let (w, fw) = input(&g, &[3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let (f, ff) = input(&g, &[2], &[2.7, -1.5]);
    let r = g.reshape(x, &[3, -1]).unwrap();
    let t = g.transpose(x, &[1, 0]).unwrap();
    let tw = g.mul(t, w).unwrap();
    let back = g.squeeze(g.expand_dims(x, 0).unwrap(), &[0]).unwrap();
    let c = g.cast(f, DType::I64).unwrap();
    assert_eq!(g.shape(r).unwrap().dims(), Some(&[Some(3), Some(2)][..]));
    let fetches = [r, grad(&g, r, x), t, grad(&g, tw, x), back, c];
    let out = eval(&g, &fetches, &[fx, fw, ff]);
    close(&out[0], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 0.0, "reshape");
    close(&out[1], &[1.0; 6], 0.0, "d reshape");
    close(&out[2], &[1.0, 4.0, 2.0, 5.0, 3.0, 6.0], 0.0, "transpose");
    close(&out[3], &[1.0, 3.0, 5.0, 2.0, 4.0, 6.0], 0.0, "d transpose");
    close(
        &out[4],
        &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        0.0,
        "squeeze(expand_dims)",
    );
    close(&out[5], &[2.0, -1.0], 0.0, "cast");
}

/// A reshape to a different element count, or with two -1s, is refused at build time.
#[test]
fn impossible_reshapes_are_build_errors() {
    let g = Graph::new();
    let (x, _) = input(&g, &[2, 3], &[0.0; 6]);
    assert!(g.reshape(x, &[4, -1]).is_err());
    assert!(g.reshape(x, &[-1, -1]).is_err());
    assert!(g.reshape(x, &[7]).is_err());
}
