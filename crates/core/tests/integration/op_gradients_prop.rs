//! Every differentiable op passes the finite-difference checker (central differences, f64) over
//! random shapes and values.

use ferroflow_core::testing::check_gradients;
use ferroflow_core::{DType, Graph, Shape, Tensor, Value};
use proptest::prelude::*;

/// Values bounded away from every kink (0 for relu/abs/..., 6 for relu6) and positive when `positive`.
fn values(n: usize, positive: bool) -> impl Strategy<Value = Vec<f64>> {
    proptest::collection::vec((0.1f64..2.0, any::<bool>()), n).prop_map(move |v| {
        v.into_iter()
            .map(|(m, s)| if s && !positive { -m } else { m })
            .collect()
    })
}

fn shape_strategy() -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(1usize..4, 1..4)
}

fn check(build: impl Fn(&Graph, Tensor) -> Tensor, shape: &[usize], data: Vec<f64>) {
    let g = Graph::new();
    let x = g
        .named("x")
        .placeholder(DType::F64, Shape::known(shape))
        .unwrap();
    let y = build(&g, x);
    let r = check_gradients(&g, y, &[(x, Value::from_f64(shape, data).unwrap())], 1e-6).unwrap();
    assert!(r.max_rel_err < 1e-6, "{} {:?}: {r:?}", g.op_type(y), shape);
}

type UnaryBuilder = fn(&Graph, Tensor) -> Tensor;

fn unary_ops() -> Vec<(&'static str, UnaryBuilder, bool)> {
    vec![
        ("neg", |g, x| g.neg(x).unwrap(), false),
        ("square", |g, x| g.square(x).unwrap(), false),
        ("sqrt", |g, x| g.sqrt(x).unwrap(), true),
        ("exp", |g, x| g.exp(x).unwrap(), false),
        ("log", |g, x| g.log(x).unwrap(), true),
        ("abs", |g, x| g.abs(x).unwrap(), false),
        ("reciprocal", |g, x| g.reciprocal(x).unwrap(), false),
        ("sigmoid", |g, x| g.sigmoid(x).unwrap(), false),
        ("tanh", |g, x| g.tanh(x).unwrap(), false),
        ("relu", |g, x| g.relu(x).unwrap(), false),
        ("relu6", |g, x| g.relu6(x).unwrap(), false),
        ("leaky_relu", |g, x| g.leaky_relu(x, 0.2).unwrap(), false),
        ("elu", |g, x| g.elu(x).unwrap(), false),
        ("selu", |g, x| g.selu(x).unwrap(), false),
        ("softplus", |g, x| g.softplus(x).unwrap(), false),
        ("softmax", |g, x| g.softmax(x).unwrap(), false),
        ("log_softmax", |g, x| g.log_softmax(x).unwrap(), false),
        (
            "reduce_sum",
            |g, x| g.reduce_sum(x, Some(&[0]), false).unwrap(),
            false,
        ),
        (
            "reduce_mean",
            |g, x| g.reduce_mean(x, Some(&[-1]), true).unwrap(),
            false,
        ),
        (
            "reduce_max",
            |g, x| g.reduce_max(x, None, false).unwrap(),
            false,
        ),
        (
            "reduce_min",
            |g, x| g.reduce_min(x, Some(&[0]), true).unwrap(),
            false,
        ),
        ("l2_loss", |g, x| g.l2_loss(x).unwrap(), false),
        ("reshape", |g, x| g.reshape(x, &[-1]).unwrap(), false),
        ("expand_dims", |g, x| g.expand_dims(x, 0).unwrap(), false),
        ("identity", |g, x| g.identity(x).unwrap(), false),
        (
            "clip_by_value",
            |g, x| g.clip_by_value(x, -1.0, 1.05).unwrap(),
            false,
        ),
        (
            "pow",
            |g, x| g.pow(x, g.scalar(DType::F64, 3.0).unwrap()).unwrap(),
            true,
        ),
        (
            "pow_exponent",
            |g, x| g.pow(g.scalar(DType::F64, 1.7).unwrap(), x).unwrap(),
            false,
        ),
        (
            "concat",
            |g, x| g.concat(&[x, g.square(x).unwrap()], 0).unwrap(),
            false,
        ),
        (
            "slice",
            |g, x| {
                let r = g.shape(x).unwrap().rank().unwrap();
                g.slice(x, &vec![0; r], &vec![-1; r]).unwrap()
            },
            false,
        ),
        (
            "transpose",
            |g, x| {
                let r = g.shape(x).unwrap().rank().unwrap();
                let perm: Vec<usize> = (0..r).rev().collect();
                g.transpose(x, &perm).unwrap()
            },
            false,
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn unary_and_shape_ops(shape in shape_strategy(), data in values(27, false)) {
        let n: usize = shape.iter().product();
        for (_, build, positive) in unary_ops() {
            let d: Vec<f64> = data[..n].iter().map(|v| if positive { v.abs() } else { *v }).collect();
            check(build, &shape, d);
        }
    }

    #[test]
    fn binary_ops_with_broadcasting(rows in 1usize..4, cols in 1usize..4, a in values(16, false), b in values(16, true)) {
        type B = fn(&Graph, Tensor, Tensor) -> Tensor;
        let ops: Vec<B> = vec![
            |g, x, y| g.add(x, y).unwrap(),
            |g, x, y| g.sub(x, y).unwrap(),
            |g, x, y| g.mul(x, y).unwrap(),
            |g, x, y| g.div(x, y).unwrap(),
            |g, x, y| g.maximum(x, y).unwrap(),
            |g, x, y| g.minimum(x, y).unwrap(),
            |g, x, y| g.squared_difference(x, y).unwrap(),
            |g, x, y| g.pow(y, x).unwrap(),
            |g, x, y| g.select(g.greater(x, y).unwrap(), x, y).unwrap(),
        ];
        for op in ops {
            let g = Graph::new();
            let x = g.placeholder(DType::F64, [Some(rows), Some(cols)]).unwrap();
            let y = g.placeholder(DType::F64, [Some(cols)]).unwrap();
            let out = op(&g, x, y);
            // Keep x and y apart so max/min/select have no ties.
            let xv = Value::from_f64(&[rows, cols], a[..rows * cols].iter().map(|v| v + 5.0).collect()).unwrap();
            let yv = Value::from_f64(&[cols], b[..cols].to_vec()).unwrap();
            let r = check_gradients(&g, out, &[(x, xv), (y, yv)], 1e-6).unwrap();
            prop_assert!(r.max_rel_err < 1e-6, "{}: {:?}", g.op_type(out), r);
        }
    }

    #[test]
    fn matmul_with_transposes(m in 1usize..4, k in 1usize..4, n in 1usize..4, ta: bool, tb: bool, a in values(9, false), b in values(9, false)) {
        let g = Graph::new();
        let sa = if ta { [k, m] } else { [m, k] };
        let sb = if tb { [n, k] } else { [k, n] };
        let x = g.placeholder(DType::F64, Shape::known(&sa)).unwrap();
        let y = g.placeholder(DType::F64, Shape::known(&sb)).unwrap();
        let out = g.matmul_t(x, y, ta, tb).unwrap();
        let r = check_gradients(&g, out, &[
            (x, Value::from_f64(&sa, a[..m * k].to_vec()).unwrap()),
            (y, Value::from_f64(&sb, b[..k * n].to_vec()).unwrap()),
        ], 1e-6).unwrap();
        prop_assert!(r.max_rel_err < 1e-6, "{r:?}");
    }

    #[test]
    fn cross_entropies_and_gather(n in 1usize..4, c in 2usize..5, logits in values(16, false), labels in proptest::collection::vec(0i64..2, 4), probs in values(16, true)) {
        let g = Graph::new();
        let x = g.placeholder(DType::F64, [Some(n), Some(c)]).unwrap();
        let lab = g.constant(Value::from_i64(&[n], labels[..n].to_vec()).unwrap()).unwrap();
        // Label rows are distributions: TF's gradient softmax - labels assumes each row sums to 1.
        let mut p = probs[..n * c].to_vec();
        for row in p.chunks_mut(c) {
            let s: f64 = row.iter().sum();
            row.iter_mut().for_each(|v| *v /= s);
        }
        let dense = g.constant(Value::from_f64(&[n, c], p).unwrap()).unwrap();
        let xv = Value::from_f64(&[n, c], logits[..n * c].to_vec()).unwrap();
        let outs = [
            g.sparse_softmax_cross_entropy_with_logits(lab, x).unwrap(),
            g.softmax_cross_entropy_with_logits(dense, x).unwrap(),
            g.sigmoid_cross_entropy_with_logits(dense, x).unwrap(),
            g.gather(x, g.constant(Value::from_i64(&[n], labels[..n].iter().map(|&l| l.min(n as i64 - 1)).collect()).unwrap()).unwrap()).unwrap(),
        ];
        for out in outs {
            let r = check_gradients(&g, out, &[(x, xv.clone())], 1e-6).unwrap();
            prop_assert!(r.max_rel_err < 1e-6, "{}: {:?}", g.op_type(out), r);
        }
    }
}
