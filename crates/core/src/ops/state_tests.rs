//! Constants, placeholders, identity, stop_gradient, check_numerics: golden values.

use crate::ops::test_support::{close, eval, grad, input};
use crate::{feed, DType, Graph, Session, Value};

/// identity passes x and its gradient; stop_gradient passes x and blocks the gradient (so d(x +
/// stop_gradient(x))/dx = 1); a placeholder_with_default gives its default unless fed.
#[test]
fn identity_stop_gradient_and_defaults() {
    let g = Graph::new();
    let (x, fx) = input(&g, &[2], &[3.0, -4.0]);
    let id = g.identity(x).unwrap();
    let both = g.add(x, g.stop_gradient(x).unwrap()).unwrap();
    let d = g
        .placeholder_with_default(
            g.constant(Value::from_f64(&[2], vec![7.0, 8.0]).unwrap())
                .unwrap(),
            [Some(2)],
        )
        .unwrap();
    let out = eval(
        &g,
        &[id, grad(&g, id, x), both, grad(&g, both, x), d],
        &[fx],
    );
    close(&out[0], &[3.0, -4.0], 0.0, "identity");
    close(&out[1], &[1.0, 1.0], 0.0, "d identity");
    close(&out[2], &[6.0, -8.0], 0.0, "x + stop_gradient(x)");
    close(&out[3], &[1.0, 1.0], 0.0, "d (x + stop_gradient(x))");
    close(&out[4], &[7.0, 8.0], 0.0, "default");
    let fed = Session::new(&g)
        .run_one(
            d,
            &[feed(d, Value::from_f64(&[2], vec![1.0, 2.0]).unwrap())],
        )
        .unwrap();
    assert_eq!(fed.to_f64_vec(), [1.0, 2.0]);
}

/// check_numerics passes finite values and stops a run at a NaN, naming its message.
#[test]
fn check_numerics_stops_at_nan() {
    let g = Graph::new();
    let x = g.placeholder(DType::F64, [Some(2)]).unwrap();
    let c = g.check_numerics(x, "after the layer").unwrap();
    let sess = Session::new(&g);
    let ok = sess.run_one(
        c,
        &[feed(x, Value::from_f64(&[2], vec![1.0, 2.0]).unwrap())],
    );
    assert_eq!(ok.unwrap().to_f64_vec(), [1.0, 2.0]);
    let e = sess
        .run_one(
            c,
            &[feed(x, Value::from_f64(&[2], vec![1.0, f64::NAN]).unwrap())],
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("after the layer") && e.contains("NaN"), "{e}");
}
