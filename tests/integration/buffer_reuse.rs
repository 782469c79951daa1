//! Buffer forwarding (`SessionOptions::reuse_buffers`: elementwise kernels writing over a dying input)
//! and the compiler passes change no result: the three benchmark models (ELU + Adam, ReLU + momentum +
//! global-norm clipping, batch norm) train bit for bit the same with and without them.

use ferroflow::prelude::*;
use rand::{Rng, SeedableRng};

fn train(model: &str, options: SessionOptions) -> (Vec<f32>, Vec<Value>) {
    let m = ferroflow_tools::bench::build(model).unwrap();
    let sess = Session::with_options(&m.graph, options);
    sess.run_targets(&[m.graph.global_variables_initializer().unwrap()], &[])
        .unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let batch = 24;
    let xs: Vec<f32> = (0..batch * 784).map(|_| rng.gen::<f32>()).collect();
    let ys: Vec<i64> = (0..batch).map(|_| rng.gen_range(0..10)).collect();
    let feeds = [
        feed(m.x, Value::from_f32(&[batch, 784], xs).unwrap()),
        feed(m.y, Value::from_i64(&[batch], ys).unwrap()),
    ];
    let mut losses = Vec::new();
    for _ in 0..4 {
        sess.run_targets(&[m.train], &feeds).unwrap();
        let l = sess.run_one(m.loss, &feeds).unwrap();
        losses.push(l.scalar_value().unwrap() as f32);
    }
    let vars = m
        .graph
        .global_variables()
        .into_iter()
        .map(|v| sess.variable_value(v).unwrap())
        .collect();
    (losses, vars)
}

#[test]
fn reuse_and_passes_change_no_result() {
    for model in ["book", "deep", "deep_bn"] {
        let base = train(
            model,
            SessionOptions {
                reuse_buffers: false,
                optimize: false,
                ..SessionOptions::default()
            },
        );
        let fast = train(model, SessionOptions::default());
        assert_eq!(base.0, fast.0, "{model}: losses differ");
        assert!(base.0[3] < base.0[0], "{model} did not train: {:?}", base.0);
        assert_eq!(base.1.len(), fast.1.len());
        for (i, (a, b)) in base.1.iter().zip(&fast.1).enumerate() {
            assert_eq!(a, b, "{model}: variable {i} differs");
        }
    }
}

/// The forwarding really happens: in a training step of `deep` with its products kept apart from
/// the ops after them (`SessionOptions::fuse_products` off), every ReLU (fused with its bias add into
/// one step), ReLU gradient and bias add writes over its dying input (the profile counts them), and
/// none does with reuse off. With the products fused (the default), the bias adds, ReLUs and ReLU
/// gradients run inside the products' steps instead.
#[test]
fn elementwise_ops_run_in_place() {
    let m = ferroflow_tools::bench::build("deep").unwrap();
    let count = |reuse: bool, fuse_products: bool| {
        let sess = Session::with_options(
            &m.graph,
            SessionOptions {
                reuse_buffers: reuse,
                fuse_products,
                profile: true,
                ..SessionOptions::default()
            },
        );
        sess.run_targets(&[m.graph.global_variables_initializer().unwrap()], &[])
            .unwrap();
        let feeds = [
            feed(m.x, Value::filled(DType::F32, &[8, 784], 0.5).unwrap()),
            feed(m.y, Value::from_i64(&[8], vec![1; 8]).unwrap()),
        ];
        sess.run_targets(&[m.train], &feeds).unwrap();
        sess.profile()
    };
    let get = |p: &[ferroflow::OpProfile], t: &str| {
        p.iter()
            .find(|o| o.op_type == t)
            .map(|o| (o.calls, o.in_place))
    };
    let fused = count(true, true);
    assert_eq!(get(&fused, "MatMul+AddV2+Relu"), Some((12, 0)));
    assert_eq!(get(&fused, "MatMul+AddV2"), Some((1, 0)));
    assert_eq!(get(&fused, "MatMul+ReluGrad"), Some((12, 0)));
    for apart in ["AddV2+Relu", "Relu", "ReluGrad"] {
        assert_eq!(get(&fused, apart), None, "{apart}");
    }
    let on = count(true, false);
    let off = count(false, false);
    // Each hidden layer's bias add and ReLU run as one fused step, over the product's buffer.
    assert_eq!(get(&on, "AddV2+Relu"), Some((12, 12)));
    assert!(on.iter().all(|o| o.op_type != "Relu"));
    assert_eq!(get(&on, "ReluGrad"), Some((12, 12)));
    let (adds, in_place_adds) = get(&on, "AddV2").unwrap();
    assert!(
        in_place_adds >= 1 && in_place_adds <= adds,
        "{in_place_adds} of {adds}"
    );
    assert!(off.iter().all(|o| o.in_place == 0));
}
