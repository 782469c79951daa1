//! Softmax and the cross-entropies: golden values with their derivations, forward and gradient.

use crate::ops::test_support::{close, eval, grad, input};
use crate::{Graph, Value};

/// logits = [[0, ln 2, ln 5]]: e^logits = [1, 2, 5], softmax = [1/8, 2/8, 5/8].
/// With label 2 the sparse cross-entropy is -ln(5/8) = 0.4700036292457356, and its gradient with
/// respect to the logits is softmax - one_hot = [1/8, 2/8, -3/8]. The dense cross-entropy with the
/// same one-hot labels gives the same loss. log_softmax = ln(softmax).
#[test]
fn softmax_and_cross_entropies() {
    let g = Graph::new();
    let (z, fz) = input(&g, &[1, 3], &[0.0, 2f64.ln(), 5f64.ln()]);
    let labels = g.constant(Value::from_i64(&[1], vec![2]).unwrap()).unwrap();
    let dense = g
        .constant(Value::from_f64(&[1, 3], vec![0.0, 0.0, 1.0]).unwrap())
        .unwrap();
    let sm = g.softmax(z).unwrap();
    let logsm = g.log_softmax(z).unwrap();
    let sparse = g
        .sparse_softmax_cross_entropy_with_logits(labels, z)
        .unwrap();
    let full = g.softmax_cross_entropy_with_logits(dense, z).unwrap();
    let fetches = [
        sm,
        logsm,
        sparse,
        grad(&g, sparse, z),
        full,
        grad(&g, full, z),
    ];
    let out = eval(&g, &fetches, &[fz]);
    close(&out[0], &[0.125, 0.25, 0.625], 1e-15, "softmax");
    close(
        &out[1],
        &[0.125f64.ln(), 0.25f64.ln(), 0.625f64.ln()],
        1e-15,
        "log_softmax",
    );
    close(&out[2], &[0.470_003_629_245_735_6], 1e-15, "sparse xent");
    close(&out[3], &[0.125, 0.25, -0.375], 1e-15, "d sparse xent");
    close(&out[4], &[0.470_003_629_245_735_6], 1e-15, "dense xent");
    close(&out[5], &[0.125, 0.25, -0.375], 1e-15, "d dense xent");
}

/// sigmoid_cross_entropy_with_logits(labels, x) = max(x, 0) - x·labels + ln(1 + e^-|x|): at x = 0
/// and label 1 it is ln 2, at x = 3 and label 0 it is 3 + ln(1 + e^-3) = 3.048587351573742. A label
/// outside [0, classes) of the sparse cross-entropy is a run-time error naming it.
#[test]
fn sigmoid_cross_entropy_and_bad_labels() {
    let g = Graph::new();
    let (x, fx) = input(&g, &[2], &[0.0, 3.0]);
    let (l, fl) = input(&g, &[2], &[1.0, 0.0]);
    let s = g.sigmoid_cross_entropy_with_logits(l, x).unwrap();
    let out = eval(&g, &[s], &[fx, fl]);
    close(
        &out[0],
        &[2f64.ln(), 3.048_587_351_573_742],
        1e-15,
        "sigmoid xent",
    );
    let (z, fz) = input(&g, &[1, 3], &[0.0; 3]);
    let bad = g.constant(Value::from_i64(&[1], vec![7]).unwrap()).unwrap();
    let loss = g.sparse_softmax_cross_entropy_with_logits(bad, z).unwrap();
    let e = crate::Session::new(&g)
        .run(&[loss], &[fz], &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains('7'), "{e}");
}
