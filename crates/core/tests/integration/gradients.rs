//! Symbolic gradients: TF's checked behaviours (tf1-reference.md §3), fan-out, unconnected and
//! integer inputs, stop_gradient, naming of gradient ops, and second-order gradients.

use ferroflow_core::testing::check_gradients;
use ferroflow_core::{
    feed, DType, GradientOptions, Graph, Session, Shape, Tensor, UnconnectedGradients, Value,
};
use ndarray::{arr1, arr2};

fn scalar_ph(g: &Graph, name: &str) -> Tensor {
    g.named(name)
        .placeholder(DType::F64, Shape::scalar())
        .unwrap()
}

fn eval(g: &Graph, t: Tensor, feeds: &[(Tensor, Value)]) -> f64 {
    Session::new(g)
        .run_one(t, feeds)
        .unwrap()
        .scalar_value()
        .unwrap()
}

#[test]
fn tf_checked_scalar_gradients() {
    let g = Graph::new();
    let a = scalar_ph(&g, "a");
    // d(a² + 2a)/da at a = 3 is 2·3 + 2 = 8.
    let y = g
        .add(
            g.square(a).unwrap(),
            g.mul(g.scalar(DType::F64, 2.0).unwrap(), a).unwrap(),
        )
        .unwrap();
    let da = g.gradients(&[y], &[a]).unwrap()[0].unwrap();
    assert_eq!(eval(&g, da, &[feed(a, 3.0f64)]), 8.0);
    // With grad_ys = 10: 80.
    let ten = g.scalar(DType::F64, 10.0).unwrap();
    let da10 = g
        .gradients_with(
            &[y],
            &[a],
            GradientOptions {
                grad_ys: Some(vec![ten]),
                ..Default::default()
            },
        )
        .unwrap()[0]
        .unwrap();
    assert_eq!(eval(&g, da10, &[feed(a, 3.0f64)]), 80.0);
    // Several ys are summed: d(a·a)/da + d(3a)/da = 2a + 3 = 9 at a = 3.
    let aa = g.mul(a, a).unwrap();
    let a3 = g.mul(g.scalar(DType::F64, 3.0).unwrap(), a).unwrap();
    let both = g.gradients(&[aa, a3], &[a]).unwrap()[0].unwrap();
    assert_eq!(eval(&g, both, &[feed(a, 3.0f64)]), 9.0);
    // stop_gradient(a·a) + a gives 1.
    let s = g.add(g.stop_gradient(aa).unwrap(), a).unwrap();
    let ds = g.gradients(&[s], &[a]).unwrap()[0].unwrap();
    assert_eq!(eval(&g, ds, &[feed(a, 3.0f64)]), 1.0);
    // For stop_gradient(3a)·b, a gets None.
    let b = scalar_ph(&g, "b");
    let p = g.mul(g.stop_gradient(a3).unwrap(), b).unwrap();
    let gr = g.gradients(&[p], &[a, b]).unwrap();
    assert!(gr[0].is_none());
    assert_eq!(eval(&g, gr[1].unwrap(), &[feed(a, 3.0f64)]), 9.0);
}

#[test]
fn fan_out_is_summed_with_add_n() {
    let g = Graph::new();
    let x = scalar_ph(&g, "x");
    // y = exp(x) · x + exp(x): x and exp(x) each feed two consumers.
    let e = g.exp(x).unwrap();
    let y = g.add(g.mul(e, x).unwrap(), e).unwrap();
    let dx = g.gradients(&[y], &[x]).unwrap()[0].unwrap();
    // dy/dx = e·x + e + e = e^x (x + 2); at x = 0.5: e^0.5 · 2.5.
    let want = 0.5f64.exp() * 2.5;
    assert!((eval(&g, dx, &[feed(x, 0.5f64)]) - want).abs() < 1e-12);
    let ops: Vec<String> = g.operations().iter().map(|&o| g.op_type(o)).collect();
    assert!(ops.iter().filter(|t| *t == "AddN").count() >= 2, "{ops:?}");
}

#[test]
fn unconnected_and_integer_inputs() {
    let g = Graph::new();
    let x = scalar_ph(&g, "x");
    let z = scalar_ph(&g, "z");
    let i = g
        .named("i")
        .placeholder(DType::I64, Shape::scalar())
        .unwrap();
    let y = g.mul(x, g.cast(i, DType::F64).unwrap()).unwrap();
    let gr = g.gradients(&[y], &[x, z, i]).unwrap();
    assert!(gr[0].is_some());
    assert!(gr[1].is_none(), "z is not connected");
    assert!(gr[2].is_none(), "integer tensors get no gradient");
    let gz = g
        .gradients_with(
            &[y],
            &[z],
            GradientOptions {
                unconnected: UnconnectedGradients::Zero,
                ..Default::default()
            },
        )
        .unwrap()[0]
        .unwrap();
    assert_eq!(eval(&g, gz, &[feed(z, 5.0f64)]), 0.0);
}

#[test]
fn stop_gradients_list_blocks_flow() {
    let g = Graph::new();
    let x = scalar_ph(&g, "x");
    let h = g.mul(x, x).unwrap();
    let y = g.add(h, x).unwrap();
    let opts = GradientOptions {
        stop_gradients: vec![h],
        ..Default::default()
    };
    let dx = g.gradients_with(&[y], &[x], opts).unwrap()[0].unwrap();
    assert_eq!(eval(&g, dx, &[feed(x, 4.0f64)]), 1.0);
}

#[test]
fn gradient_ops_are_named_under_gradients_scope() {
    let g = Graph::new();
    let x = scalar_ph(&g, "x");
    let y = g.named("y").mul(x, x).unwrap();
    let d1 = g.gradients(&[y], &[x]).unwrap()[0].unwrap();
    let d2 = g.gradients(&[y], &[x]).unwrap()[0].unwrap();
    assert!(g.op_name(d1).starts_with("gradients/"), "{}", g.op_name(d1));
    assert!(
        g.op_name(d2).starts_with("gradients_1/"),
        "{}",
        g.op_name(d2)
    );
    assert!(g.get_operation_by_name("gradients/y_grad/Mul").is_ok());
    assert!(g.get_operation_by_name("gradients/grad_ys_0").is_ok());
}

#[test]
fn second_order_gradients() {
    let g = Graph::new();
    let x = scalar_ph(&g, "x");
    // d²(x³)/dx² = 6x.
    let y = g.mul(g.mul(x, x).unwrap(), x).unwrap();
    let d1 = g.gradients(&[y], &[x]).unwrap()[0].unwrap();
    let d2 = g.gradients(&[d1], &[x]).unwrap()[0].unwrap();
    assert!((eval(&g, d2, &[feed(x, 1.5f64)]) - 9.0).abs() < 1e-12);
    // d²tanh/dx² = -2 tanh (1 - tanh²).
    let t = g.tanh(x).unwrap();
    let t1 = g.gradients(&[t], &[x]).unwrap()[0].unwrap();
    let t2 = g.gradients(&[t1], &[x]).unwrap()[0].unwrap();
    let th = 0.3f64.tanh();
    assert!((eval(&g, t2, &[feed(x, 0.3f64)]) + 2.0 * th * (1.0 - th * th)).abs() < 1e-12);
}

#[test]
fn second_order_through_matmul_softmax_and_reductions_matches_finite_differences() {
    // The gradient of a small network is itself differentiable: check d(dL/dx)/d(x, W) numerically.
    let g = Graph::new();
    let x = g
        .named("x")
        .placeholder(DType::F64, [Some(3), Some(4)])
        .unwrap();
    let w = g
        .named("w")
        .placeholder(DType::F64, [Some(4), Some(2)])
        .unwrap();
    let h = g
        .softmax(g.sigmoid(g.matmul(x, w).unwrap()).unwrap())
        .unwrap();
    let loss = g
        .reduce_mean(g.reduce_max(h, Some(&[1]), false).unwrap(), None, false)
        .unwrap();
    let dx = g.gradients(&[loss], &[x]).unwrap()[0].unwrap();
    let xv = Value::from(
        arr2(&[
            [0.1, -0.2, 0.3, 0.4],
            [0.5, 0.6, -0.7, 0.8],
            [-0.9, 1.0, 1.1, -1.2],
        ])
        .into_dyn(),
    );
    let wv = Value::from(arr2(&[[0.3, -0.1], [0.2, 0.5], [-0.4, 0.1], [0.25, -0.3]]).into_dyn());
    let r = check_gradients(&g, dx, &[(x, xv), (w, wv)], 1e-5).unwrap();
    assert!(r.max_rel_err < 1e-7, "{r:?}");
}

#[test]
fn gradients_reduce_broadcasts_back_to_input_shapes() {
    // [2,1] + [1,3] summed: d = [[3],[3]] and [[2,2,2]]; a bias [4] added to [2,4] gets column sums.
    let g = Graph::new();
    let a = g.placeholder(DType::F64, [Some(2), Some(1)]).unwrap();
    let b = g.placeholder(DType::F64, [Some(1), Some(3)]).unwrap();
    let s = g.reduce_sum(g.add(a, b).unwrap(), None, false).unwrap();
    let gr = g.gradients(&[s], &[a, b]).unwrap();
    let sess = Session::new(&g);
    let feeds = [
        feed(a, arr2(&[[1.0], [2.0]]).into_dyn()),
        feed(b, arr2(&[[1.0, 2.0, 3.0]]).into_dyn()),
    ];
    assert_eq!(
        sess.run_one(gr[0].unwrap(), &feeds).unwrap().to_f64_vec(),
        [3.0, 3.0]
    );
    assert_eq!(
        sess.run_one(gr[1].unwrap(), &feeds).unwrap().to_f64_vec(),
        [2.0, 2.0, 2.0]
    );
    let x = g.placeholder(DType::F64, [None, Some(4)]).unwrap();
    let bias = g.placeholder(DType::F64, [Some(4)]).unwrap();
    let y = g.mul(g.add(x, bias).unwrap(), x).unwrap();
    let db = g.gradients(&[y], &[bias]).unwrap()[0].unwrap();
    let xv = arr2(&[[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]]).into_dyn();
    let out = sess
        .run_one(db, &[feed(x, xv), feed(bias, arr1(&[0.0; 4]).into_dyn())])
        .unwrap();
    assert_eq!(out.to_f64_vec(), [6.0, 8.0, 10.0, 12.0]);
}
