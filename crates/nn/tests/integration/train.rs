//! Optimizers against TF's update rules (written out below and checked step by step), clipping,
//! global step, schedules, freezing, and a deep MLP trained by each optimizer.

use ferroflow_core::{
    feed, keys, DType, Graph, Initializer, Operation, Session, Shape, Tensor, Value, VarOptions,
    Variable,
};
use ferroflow_nn::layers::{dense_with, Activation, DenseOptions};
use ferroflow_nn::{
    clip_by_global_norm, clip_by_norm, get_or_create_global_step, global_norm, losses, schedules,
    Optimizer,
};
use ndarray::{arr1, arr2};

const W0: [f64; 2] = [1.0, -2.0];
const C: [f64; 2] = [0.5, 3.0];

/// loss = Σ c·w², so g = 2·c·w.
fn quadratic(opt: &Optimizer, steps: usize) -> (Vec<Vec<f64>>, Graph, Session, Variable) {
    let g = Graph::new();
    let w = g
        .variable(
            "w",
            g.constant(Value::from(arr1(&W0).into_dyn())).unwrap(),
            true,
        )
        .unwrap();
    let c = g.constant(Value::from(arr1(&C).into_dyn())).unwrap();
    let loss = g
        .reduce_sum(g.mul(c, g.square(w.value()).unwrap()).unwrap(), None, false)
        .unwrap();
    let train = opt.minimize(&g, loss, None, None).unwrap();
    let sess = Session::new(&g);
    sess.run_targets(&[g.global_variables_initializer().unwrap()], &[])
        .unwrap();
    let mut traj = Vec::new();
    for _ in 0..steps {
        sess.run_targets(&[train], &[]).unwrap();
        traj.push(sess.variable_value(w).unwrap().to_f64_vec());
    }
    (traj, g, sess, w)
}

fn grad(w: &[f64]) -> Vec<f64> {
    w.iter().zip(C).map(|(w, c)| 2.0 * c * w).collect()
}

fn assert_traj(name: &str, got: &[Vec<f64>], want: &[Vec<f64>]) {
    for (s, (a, b)) in got.iter().zip(want).enumerate() {
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-6, "{name} step {}: {x} vs {y}", s + 1);
        }
    }
}

#[test]
fn gradient_descent_rule() {
    // Step 1: g = [1, -12]; w = [1 - 0.1·1, -2 + 0.1·12] = [0.9, -0.8].
    let (t, ..) = quadratic(&Optimizer::gradient_descent(0.1), 3);
    assert_traj("sgd", &t[..1], &[vec![0.9, -0.8]]);
    let mut w = W0.to_vec();
    let mut want = vec![];
    for _ in 0..3 {
        let gr = grad(&w);
        w = w.iter().zip(&gr).map(|(w, g)| w - 0.1 * g).collect();
        want.push(w.clone());
    }
    assert_traj("sgd", &t, &want);
}

fn momentum_ref(lr: f64, mu: f64, nesterov: bool, steps: usize) -> Vec<Vec<f64>> {
    let (mut w, mut a) = (W0.to_vec(), vec![0.0; 2]);
    let mut out = vec![];
    for _ in 0..steps {
        let gr = grad(&w);
        for i in 0..2 {
            a[i] = mu * a[i] + gr[i];
            w[i] -= if nesterov {
                lr * (gr[i] + mu * a[i])
            } else {
                lr * a[i]
            };
        }
        out.push(w.clone());
    }
    out
}

#[test]
fn momentum_and_nesterov_rules() {
    // Step 1 (plain): a = g = [1, -12]; w = [0.99, -1.88]. Step 1 (Nesterov): w -= 0.01·(g + 0.9·a) = [0.981, -1.772].
    let (t, g, ..) = quadratic(&Optimizer::momentum(0.01, 0.9, false), 4);
    assert_traj("momentum", &t[..1], &[vec![0.99, -1.88]]);
    assert_traj("momentum", &t, &momentum_ref(0.01, 0.9, false, 4));
    assert!(g.get_operation_by_name("w/Momentum").is_ok());
    let (t, ..) = quadratic(&Optimizer::momentum(0.01, 0.9, true), 4);
    assert_traj("nesterov", &t[..1], &[vec![0.981, -1.772]]);
    assert_traj("nesterov", &t, &momentum_ref(0.01, 0.9, true, 4));
}

#[test]
fn adagrad_rule() {
    // acc = 0.1 + g²; step 1: w = 1 - 0.1·1/√1.1 = 0.904654, -2 + 0.1·12/√144.1 = -1.900035.
    let (t, ..) = quadratic(&Optimizer::adagrad(0.1), 3);
    assert_traj(
        "adagrad",
        &t[..1],
        &[vec![
            1.0 - 0.1 / 1.1f64.sqrt(),
            -2.0 + 1.2 / 144.1f64.sqrt(),
        ]],
    );
    let (mut w, mut acc) = (W0.to_vec(), vec![0.1; 2]);
    let mut want = vec![];
    for _ in 0..3 {
        let gr = grad(&w);
        for i in 0..2 {
            acc[i] += gr[i] * gr[i];
            w[i] -= 0.1 * gr[i] / acc[i].sqrt();
        }
        want.push(w.clone());
    }
    assert_traj("adagrad", &t, &want);
}

fn rmsprop_ref(
    lr: f64,
    decay: f64,
    mu: f64,
    eps: f64,
    centered: bool,
    steps: usize,
) -> Vec<Vec<f64>> {
    let (mut w, mut ms, mut mg, mut mom) = (W0.to_vec(), vec![1.0; 2], vec![0.0; 2], vec![0.0; 2]);
    let mut out = vec![];
    for _ in 0..steps {
        let gr = grad(&w);
        for i in 0..2 {
            ms[i] = decay * ms[i] + (1.0 - decay) * gr[i] * gr[i];
            mg[i] = decay * mg[i] + (1.0 - decay) * gr[i];
            let denom = if centered {
                ms[i] - mg[i] * mg[i]
            } else {
                ms[i]
            };
            mom[i] = mu * mom[i] + lr * gr[i] / (denom + eps).sqrt();
            w[i] -= mom[i];
        }
        out.push(w.clone());
    }
    out
}

#[test]
fn rmsprop_plain_momentum_and_centered_rules() {
    // ms starts at 1: step 1, ms = 0.9 + 0.1·g² = [1.0, 15.3]; w = [1 - 0.01/√1.0, -2 + 0.12/√15.3].
    let (t, g, ..) = quadratic(&Optimizer::rmsprop(0.01), 3);
    assert_traj(
        "rmsprop",
        &t[..1],
        &[vec![0.99, -2.0 + 0.12 / 15.3f64.sqrt()]],
    );
    assert_traj("rmsprop", &t, &rmsprop_ref(0.01, 0.9, 0.0, 1e-10, false, 3));
    assert!(
        g.get_operation_by_name("w/RMSProp").is_ok()
            && g.get_operation_by_name("w/RMSProp_1").is_ok()
    );
    let (t, ..) = quadratic(&Optimizer::rmsprop_with(0.01, 0.9, 0.5, 1e-10, false), 4);
    assert_traj(
        "rmsprop+momentum",
        &t,
        &rmsprop_ref(0.01, 0.9, 0.5, 1e-10, false, 4),
    );
    let (t, ..) = quadratic(&Optimizer::rmsprop_with(0.01, 0.9, 0.5, 1e-10, true), 4);
    assert_traj(
        "centered rmsprop",
        &t,
        &rmsprop_ref(0.01, 0.9, 0.5, 1e-10, true, 4),
    );
}

#[test]
fn adam_rule_slots_and_powers() {
    // Step 1: m = 0.1g, v = 0.001g², lr_t = 0.1·√0.001/0.1; w -= lr_t·m/(√v + ε) ≈ 0.1·sign(g).
    let (t, g, sess, _) = quadratic(&Optimizer::adam(0.1), 5);
    let (mut w, mut m, mut v) = (W0.to_vec(), vec![0.0; 2], vec![0.0; 2]);
    let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8);
    let mut want = vec![];
    for step in 1..=5 {
        let gr = grad(&w);
        let lr_t = 0.1 * (1.0 - b2.powi(step)).sqrt() / (1.0 - b1.powi(step));
        for i in 0..2 {
            m[i] = b1 * m[i] + (1.0 - b1) * gr[i];
            v[i] = b2 * v[i] + (1.0 - b2) * gr[i] * gr[i];
            w[i] -= lr_t * m[i] / (v[i].sqrt() + eps);
        }
        want.push(w.clone());
    }
    assert!((t[0][0] - 0.9).abs() < 1e-6 && (t[0][1] + 1.9).abs() < 1e-6);
    assert_traj("adam", &t, &want);
    let names: Vec<String> = g.global_variables().iter().map(|v| v.op_name(&g)).collect();
    assert_eq!(
        names,
        ["w", "beta1_power", "beta2_power", "w/Adam", "w/Adam_1"]
    );
    let trainable: Vec<Variable> = g.get_collection(keys::TRAINABLE_VARIABLES, None).unwrap();
    assert_eq!(trainable.len(), 1, "slots are not trainable");
    let b1p = g.global_variables()[1];
    assert!(
        (sess.variable_value(b1p).unwrap().scalar_value().unwrap() - 0.9f64.powi(6)).abs() < 1e-6
    );
}

#[test]
fn global_step_and_none_gradients() {
    let g = Graph::new();
    let gs = get_or_create_global_step(&g).unwrap();
    assert_eq!(gs.name(&g), "global_step:0");
    assert_eq!(get_or_create_global_step(&g).unwrap(), gs);
    assert_eq!(gs.dtype(&g), DType::I64);
    let w = g.variable("w", g.constant(2.0f32).unwrap(), true).unwrap();
    let unused = g
        .variable("unused", g.constant(2.0f32).unwrap(), true)
        .unwrap();
    let loss = g.square(w.value()).unwrap();
    let opt = Optimizer::gradient_descent(0.25);
    let gv = opt.compute_gradients(&g, loss, None).unwrap();
    assert!(gv[0].0.is_some() && gv[1].0.is_none());
    let train = opt.apply_gradients(&g, &gv, Some(gs)).unwrap();
    assert_eq!(g.op_name(train), "GradientDescent");
    let sess = Session::new(&g);
    sess.run_targets(&[g.global_variables_initializer().unwrap()], &[])
        .unwrap();
    for _ in 0..3 {
        sess.run_targets(&[train], &[]).unwrap();
    }
    assert_eq!(sess.variable_value(gs).unwrap().scalar_value(), Some(3.0));
    // w: 2 → 1 → 0.5 → 0.25 (w -= 0.25·2w).
    assert_eq!(sess.variable_value(w).unwrap().scalar_value(), Some(0.25));
    let e = opt
        .apply_gradients(&g, &[(None, unused)], None)
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("No gradients provided for any variable"),
        "{e}"
    );
    assert!(opt
        .minimize(&g, g.square(unused.value()).unwrap(), Some(&[w]), None)
        .is_err());
    assert_eq!(
        g.op_name(
            Optimizer::gradient_descent(0.1)
                .minimize(&g, loss, None, None)
                .unwrap()
        ),
        "GradientDescent_1"
    );
}

#[test]
fn clipping_values() {
    let g = Graph::new();
    let t = g
        .constant(Value::from(arr1(&[3.0f32, -4.0, 0.5]).into_dyn()))
        .unwrap();
    let v = g.clip_by_value(t, -1.0, 1.0).unwrap();
    let m = g
        .constant(Value::from(arr2(&[[1.0f32, 2.0], [2.0, 0.0]]).into_dyn()))
        .unwrap();
    let n1 = clip_by_norm(&g, m, 1.0, Some(&[1])).unwrap();
    let big = clip_by_norm(&g, m, 10.0, None).unwrap();
    let zero = clip_by_norm(&g, g.zeros_like(m).unwrap(), 1.0, None).unwrap();
    let a = g
        .constant(Value::from(arr1(&[1.0f32, 2.0]).into_dyn()))
        .unwrap();
    let b = g
        .constant(Value::from(arr1(&[3.0f32, 4.0, 1.0]).into_dyn()))
        .unwrap();
    let (clipped, gn) = clip_by_global_norm(&g, &[Some(a), None, Some(b)], 2.0).unwrap();
    assert!(clipped[1].is_none());
    let inf = g
        .constant(Value::from(arr1(&[f32::INFINITY, 1.0]).into_dyn()))
        .unwrap();
    let (nan_list, _) = clip_by_global_norm(&g, &[Some(inf), Some(a)], 2.0).unwrap();
    let s = Session::new(&g);
    assert_eq!(s.run_one(v, &[]).unwrap().to_f64_vec(), [1.0, -1.0, 0.5]);
    let r = s.run_one(n1, &[]).unwrap().to_f64_vec();
    for (x, y) in r.iter().zip([0.447214, 0.894427, 1.0, 0.0]) {
        assert!((x - y).abs() < 1e-6);
    }
    assert_eq!(
        s.run_one(big, &[]).unwrap().to_f64_vec(),
        [1.0, 2.0, 2.0, 0.0]
    );
    assert_eq!(s.run_one(zero, &[]).unwrap().to_f64_vec(), [0.0; 4]);
    // Global norm √(1+4+9+16+1) = √31 = 5.567764; scale 2/√31.
    let gnv = s.run_one(gn, &[]).unwrap().scalar_value().unwrap();
    assert!((gnv - 31f64.sqrt()).abs() < 1e-5);
    let ca = s.run_one(clipped[0].unwrap(), &[]).unwrap().to_f64_vec();
    assert!((ca[1] - 2.0 * 2.0 / 31f64.sqrt()).abs() < 1e-6);
    assert!(s
        .run_one(nan_list[1].unwrap(), &[])
        .unwrap()
        .to_f64_vec()
        .iter()
        .all(|x| x.is_nan()));
    let gn2 = global_norm(&g, &[Some(a)]).unwrap();
    assert!((s.run_one(gn2, &[]).unwrap().scalar_value().unwrap() - 5f64.sqrt()).abs() < 1e-6);
}

#[test]
fn schedules_follow_the_global_step() {
    let g = Graph::new();
    let gs = get_or_create_global_step(&g).unwrap();
    let exp = schedules::exponential_decay(&g, 0.1, gs, 10.0, 0.5, false).unwrap();
    let stair = schedules::exponential_decay(&g, 0.1, gs, 10.0, 0.5, true).unwrap();
    let inv = schedules::inverse_time_decay(&g, 0.1, gs, 10.0, 0.5, false).unwrap();
    let poly = schedules::polynomial_decay(&g, 0.1, gs, 10.0, 0.01, 2.0).unwrap();
    let pw = schedules::piecewise_constant(&g, gs, &[5, 10], &[1.0, 0.5, 0.1]).unwrap();
    let s = Session::new(&g);
    let at = |step: i64, t: Tensor| {
        s.run_one(t, &[feed(gs.value(), step)])
            .unwrap()
            .scalar_value()
            .unwrap()
    };
    assert!((at(15, exp) - 0.1 * 0.5f64.powf(1.5)).abs() < 1e-7);
    assert!((at(15, stair) - 0.05).abs() < 1e-7);
    assert!((at(15, inv) - 0.1 / 1.75).abs() < 1e-7);
    assert!((at(5, poly) - (0.09 * 0.25 + 0.01)).abs() < 1e-7);
    assert!((at(20, poly) - 0.01).abs() < 1e-7);
    assert_eq!(
        [at(5, pw), at(6, pw), at(10, pw), at(11, pw)].map(|x| (x * 10.0).round()),
        [10.0, 5.0, 5.0, 1.0]
    );
}

/// A small deep MLP on synthetic data: returns (graph, loss, train op, X, y, data).
fn mlp(
    opt: &Optimizer,
    var_list_scope: Option<&str>,
) -> (Graph, Tensor, Operation, Tensor, Tensor) {
    let g = Graph::new();
    g.set_random_seed(0);
    let x = g
        .named("X")
        .placeholder(DType::F32, [None, Some(4)])
        .unwrap();
    let y = g.named("y").placeholder(DType::I64, [None]).unwrap();
    let mut h = x;
    for i in 1..=4 {
        h = dense_with(
            &g,
            h,
            16,
            DenseOptions {
                activation: Some(Activation::Elu),
                kernel_initializer: Some(Initializer::he_normal()),
                name: Some(format!("hidden{i}")),
                ..Default::default()
            },
        )
        .unwrap();
    }
    let logits = dense_with(
        &g,
        h,
        3,
        DenseOptions {
            name: Some("outputs".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let loss = losses::sparse_softmax_cross_entropy(&g, y, logits).unwrap();
    let vars: Option<Vec<Variable>> = var_list_scope.map(|s| {
        g.get_collection(keys::TRAINABLE_VARIABLES, Some(s))
            .unwrap()
    });
    let train = opt.minimize(&g, loss, vars.as_deref(), None).unwrap();
    (g, loss, train, x, y)
}

fn data() -> (Value, Value) {
    // 30 points in 3 separable clusters.
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    for i in 0..30 {
        let c = i % 3;
        let j = (i / 3) as f32 * 0.05;
        xs.extend([c as f32 + j, -(c as f32) + j, (c as f32) * 0.5 - j, 1.0 - j]);
        ys.push(c as i64);
    }
    (
        Value::from_f32(&[30, 4], xs).unwrap(),
        Value::from_i64(&[30], ys).unwrap(),
    )
}

#[test]
fn each_optimizer_trains_a_deep_mlp_to_near_zero_loss() {
    let (xv, yv) = data();
    let opts = [
        (Optimizer::gradient_descent(0.1), 600),
        (Optimizer::momentum(0.05, 0.9, false), 300),
        (Optimizer::momentum(0.05, 0.9, true), 300),
        (Optimizer::adagrad(0.1), 600),
        (Optimizer::rmsprop(0.003), 300),
        (Optimizer::adam(0.01), 300),
    ];
    for (opt, steps) in opts {
        let (g, loss, train, x, y) = mlp(&opt, None);
        let s = Session::new(&g);
        s.run_targets(&[g.global_variables_initializer().unwrap()], &[])
            .unwrap();
        let feeds = [feed(x, xv.clone()), feed(y, yv.clone())];
        let before = s.run_one(loss, &feeds).unwrap().scalar_value().unwrap();
        for _ in 0..steps {
            s.run_targets(&[train], &feeds).unwrap();
        }
        let after = s.run_one(loss, &feeds).unwrap().scalar_value().unwrap();
        assert!(
            after < 0.02 && after < before / 20.0,
            "{}: loss {before} → {after}",
            opt.name
        );
    }
}

#[test]
fn freezing_lower_layers_leaves_them_bit_identical() {
    let (xv, yv) = data();
    let (g, _loss, train, x, y) = mlp(&Optimizer::adam(0.01), Some("hidden[34]|outputs"));
    let s = Session::new(&g);
    s.run_targets(&[g.global_variables_initializer().unwrap()], &[])
        .unwrap();
    let all = g.trainable_variables();
    let before: Vec<Value> = all.iter().map(|v| s.variable_value(*v).unwrap()).collect();
    for _ in 0..20 {
        s.run_targets(&[train], &[feed(x, xv.clone()), feed(y, yv.clone())])
            .unwrap();
    }
    for (v, b) in all.iter().zip(&before) {
        let now = s.variable_value(*v).unwrap();
        let name = v.op_name(&g);
        if name.starts_with("hidden1") || name.starts_with("hidden2") {
            assert_eq!(&now, b, "{name} must stay bit-identical");
        } else {
            assert_ne!(&now, b, "{name} must train");
        }
    }
    // stop_gradient gives the same: nothing below it gets a gradient.
    let g2 = Graph::new();
    let x2 = g2.placeholder(DType::F32, [None, Some(2)]).unwrap();
    let w1 = g2
        .get_variable_with("w1", &[2, 2], DType::F32, VarOptions::default())
        .unwrap();
    let w2 = g2.get_variable("w2", &[2, 1], DType::F32).unwrap();
    let h = g2.stop_gradient(g2.matmul(x2, w1).unwrap()).unwrap();
    let l = g2
        .reduce_sum(g2.matmul(h, w2).unwrap(), None, false)
        .unwrap();
    let gv = Optimizer::gradient_descent(0.1)
        .compute_gradients(&g2, l, None)
        .unwrap();
    assert!(gv[0].0.is_none() && gv[1].0.is_some());
    let _ = Shape::scalar();
}

/// `apply_gradients` of `clip_by_global_norm`'s output multiplies each gradient by the clip scale
/// inside the update (no separate `Mul` pass) and trains to the same bits as the unfused graph (the
/// clipped gradients passed through an Identity), for every update rule, with a clip that bites.
#[test]
fn clip_scale_fused_into_the_update_changes_no_bit() {
    let train = |opt: &Optimizer, fused: bool| {
        let g = Graph::new();
        g.set_random_seed(11);
        let x = g
            .constant(Value::from(
                ndarray::Array2::from_shape_fn((8, 5), |(i, j)| ((i * 5 + j) as f32 * 0.37).sin())
                    .into_dyn(),
            ))
            .unwrap();
        let init = Initializer::RandomNormal {
            mean: 0.0,
            stddev: 1.0,
            seed: Some(3),
        };
        let h = dense_with(
            &g,
            x,
            4,
            DenseOptions {
                activation: Some(Activation::Elu),
                kernel_initializer: Some(init),
                ..Default::default()
            },
        )
        .unwrap();
        let y = dense_with(&g, h, 1, DenseOptions::default()).unwrap();
        let loss = g.reduce_sum(g.square(y).unwrap(), None, false).unwrap();
        let gv = opt.compute_gradients(&g, loss, None).unwrap();
        let grads: Vec<Option<Tensor>> = gv.iter().map(|p| p.0).collect();
        let (clipped, _) = clip_by_global_norm(&g, &grads, 0.05).unwrap();
        let pairs: Vec<(Option<Tensor>, Variable)> = clipped
            .iter()
            .zip(&gv)
            .map(|(c, p)| {
                (
                    c.map(|c| if fused { c } else { g.identity(c).unwrap() }),
                    p.1,
                )
            })
            .collect();
        let step = opt.apply_gradients(&g, &pairs, None).unwrap();
        let sess = Session::with_options(
            &g,
            ferroflow_core::SessionOptions {
                profile: true,
                ..Default::default()
            },
        );
        sess.run_targets(&[g.global_variables_initializer().unwrap()], &[])
            .unwrap();
        for _ in 0..5 {
            sess.run_targets(&[step], &[]).unwrap();
        }
        let muls: u64 = sess
            .profile()
            .iter()
            .filter(|p| p.op_type == "Mul")
            .map(|p| p.calls)
            .sum();
        let bits: Vec<Vec<u64>> = gv
            .iter()
            .map(|p| {
                let v = sess.variable_value(p.1).unwrap().to_f64_vec();
                v.iter().map(|x| x.to_bits()).collect()
            })
            .collect();
        (bits, muls)
    };
    for opt in [
        Optimizer::gradient_descent(0.1),
        Optimizer::momentum(0.1, 0.9, false),
        Optimizer::momentum(0.1, 0.9, true),
        Optimizer::adagrad(0.1),
        Optimizer::rmsprop(0.01),
        Optimizer::adam(0.01),
    ] {
        let (fused, fused_muls) = train(&opt, true);
        let (plain, plain_muls) = train(&opt, false);
        assert_eq!(fused, plain, "{opt:?}");
        // Four gradients: the unfused graph multiplies each by the scale in every one of 5 steps.
        assert!(
            plain_muls >= fused_muls + 20,
            "{opt:?}: {plain_muls} vs {fused_muls}"
        );
        let (start, _) = {
            let g0 = Optimizer::gradient_descent(0.0);
            train(&g0, true)
        };
        assert_ne!(fused, start, "{opt:?} did not train");
    }
}
