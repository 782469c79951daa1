//! Concat, slice, gather and one-hot: golden values, forward and gradient.

use crate::ops::test_support::{close, eval, grad, input};
use crate::{DType, Graph, Value};

/// a = [[1, 2], [3, 4]], b = [[5, 6]]:
/// - concat on axis 0 = [[1, 2], [3, 4], [5, 6]]; the gradient of sum(concat · w) for
///   w = [[1, 2], [3, 4], [5, 6]] splits w back: d/db = [[5, 6]];
/// - slice(concat, [1, 0], [2, -1]) = rows 1-2 = [[3, 4], [5, 6]]; its gradient is 1 inside the
///   slice and 0 elsewhere;
/// - gather(concat, [2, 0, 2]) = [[5, 6], [1, 2], [5, 6]]; its gradient adds the repeated row:
///   [[1, 1], [0, 0], [2, 2]];
/// - one_hot([2, 0], 3) = [[0, 0, 1], [1, 0, 0]].
#[test]
fn concat_slice_gather_one_hot() {
    let g = Graph::new();
    let (a, fa) = input(&g, &[2, 2], &[1.0, 2.0, 3.0, 4.0]);
    let (b, fb) = input(&g, &[1, 2], &[5.0, 6.0]);
    let (w, fw) = input(&g, &[3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let c = g.concat(&[a, b], 0).unwrap();
    let cw = g.mul(c, w).unwrap();
    let s = g.slice(c, &[1, 0], &[2, -1]).unwrap();
    let idx = g
        .constant(Value::from_i64(&[3], vec![2, 0, 2]).unwrap())
        .unwrap();
    let gathered = g.gather(c, idx).unwrap();
    let labels = g
        .constant(Value::from_i64(&[2], vec![2, 0]).unwrap())
        .unwrap();
    let hot = g.cast(g.one_hot(labels, 3).unwrap(), DType::F64).unwrap();
    let fetches = [
        c,
        grad(&g, cw, b),
        s,
        grad(&g, s, c),
        gathered,
        grad(&g, gathered, c),
        hot,
    ];
    let out = eval(&g, &fetches, &[fa, fb, fw]);
    close(&out[0], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 0.0, "concat");
    close(&out[1], &[5.0, 6.0], 0.0, "d concat / db");
    close(&out[2], &[3.0, 4.0, 5.0, 6.0], 0.0, "slice");
    close(&out[3], &[0.0, 0.0, 1.0, 1.0, 1.0, 1.0], 0.0, "d slice");
    close(&out[4], &[5.0, 6.0, 1.0, 2.0, 5.0, 6.0], 0.0, "gather");
    close(&out[5], &[1.0, 1.0, 0.0, 0.0, 2.0, 2.0], 0.0, "d gather");
    close(&out[6], &[0.0, 0.0, 1.0, 1.0, 0.0, 0.0], 0.0, "one_hot");
}

/// An index outside the params is a run-time error naming the node, not a panic.
#[test]
fn a_gather_index_out_of_range_is_an_error() {
    let g = Graph::new();
    let (p, fp) = input(&g, &[2, 2], &[0.0; 4]);
    let idx = g.constant(Value::from_i64(&[1], vec![5]).unwrap()).unwrap();
    let out = g.gather(p, idx).unwrap();
    let e = crate::Session::new(&g)
        .run(&[out], &[fp], &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("Gather") && e.contains('5'), "{e}");
}
