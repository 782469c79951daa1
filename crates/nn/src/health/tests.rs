//! The monitor's numbers against a direct computation on the same batch, and each finding on
//! snapshots built by hand.

use super::*;
use crate::layers::{dense, Activation};
use crate::{losses, Optimizer};
use ferroflow_core::{feed, DType, Graph, Session, SessionOptions};

struct Net {
    g: Graph,
    x: Tensor,
    y: Tensor,
    loss: Tensor,
    acts: Vec<Tensor>,
}

/// Four layers with four kinds of activation: sigmoid (bounded), ReLU (dead units), ELU (plateau),
/// tanh (bounded); the kernels drawn N(0, 3) so that some outputs saturate and some units die.
fn net() -> Net {
    let g = Graph::new();
    g.set_random_seed(7);
    let x = g
        .named("X")
        .placeholder(DType::F32, [None, Some(6)])
        .unwrap();
    let y = g.named("y").placeholder(DType::I64, [None]).unwrap();
    let mut h = x;
    let mut acts = Vec::new();
    for (i, a) in [
        Activation::Sigmoid,
        Activation::Relu,
        Activation::Elu,
        Activation::Tanh,
    ]
    .into_iter()
    .enumerate()
    {
        h = crate::layers::dense_with(
            &g,
            h,
            5,
            crate::DenseOptions {
                activation: Some(a),
                kernel_initializer: Some(crate::Initializer::RandomNormal {
                    mean: 0.0,
                    stddev: 3.0,
                    seed: None,
                }),
                name: Some(format!("hidden{}", i + 1)),
                ..Default::default()
            },
        )
        .unwrap();
        acts.push(h);
    }
    let logits = dense(&g, h, 3, None, "outputs").unwrap();
    let loss = losses::sparse_softmax_cross_entropy(&g, y, logits).unwrap();
    Net {
        g,
        x,
        y,
        loss,
        acts,
    }
}

/// A batch of `rows` inputs spread over [-2, 2] and labels 0, 1, 2, 0, ...
fn feeds(n: &Net, rows: usize) -> Vec<(Tensor, Value)> {
    let xs: Vec<f32> = (0..rows * 6)
        .map(|i| (i * 37 % 101) as f32 / 25.0 - 2.0)
        .collect();
    let ys: Vec<i64> = (0..rows).map(|i| (i % 3) as i64).collect();
    vec![
        feed(n.x, Value::from_f32(&[rows, 6], xs).unwrap()),
        feed(n.y, Value::from_i64(&[rows], ys).unwrap()),
    ]
}

fn l2(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-5 * (1.0 + b.abs())
}

#[test]
fn every_number_matches_a_direct_computation() {
    let n = net();
    let g = &n.g;
    let m = Monitor::new(g, n.loss, MonitorOptions::default()).unwrap();
    let names: Vec<&str> = m.layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(
        names,
        ["hidden1", "hidden2", "hidden3", "hidden4", "outputs"]
    );
    let found: Vec<Option<String>> = m
        .layers
        .iter()
        .map(|l| l.activation.as_ref().map(|a| a.2.clone()))
        .collect();
    assert_eq!(
        found,
        [
            Some("Sigmoid"),
            Some("Relu"),
            Some("Elu"),
            Some("Tanh"),
            None
        ]
        .map(|s| s.map(String::from))
    );
    let sess = Session::new(g);
    sess.run_targets(&[g.global_variables_initializer().unwrap()], &[])
        .unwrap();
    let f = feeds(&n, 16);
    let snap = m.measure(&sess, 0, &f).unwrap();

    // The reference: each kernel's gradient and each activation fetched whole, reduced here in f64.
    let kernels: Vec<Variable> = m.layers.iter().map(|l| l.kernel).collect();
    let grads: Vec<Tensor> = g
        .gradients(
            &[n.loss],
            &kernels.iter().map(|k| k.var_tensor()).collect::<Vec<_>>(),
        )
        .unwrap()
        .into_iter()
        .map(Option::unwrap)
        .collect();
    let mut fetch = grads.clone();
    fetch.extend(&n.acts);
    let vals = sess.run(&fetch, &f, &[]).unwrap();
    let mut global = 0.0;
    for (i, l) in snap.layers.iter().enumerate() {
        let gn = l2(&vals[i].to_f64_vec());
        global += gn * gn;
        assert!(
            close(l.grad_norm, gn),
            "{}: {} vs {gn}",
            l.name,
            l.grad_norm
        );
        let w = l2(&sess.variable_value(kernels[i]).unwrap().to_f64_vec());
        assert!(
            close(l.weight_norm, w),
            "{}: {} vs {w}",
            l.name,
            l.weight_norm
        );
    }
    assert!(close(snap.global_grad_norm, global.sqrt()));
    for (k, a) in n.acts.iter().enumerate() {
        let v = vals[grads.len() + k].to_f64_vec();
        let stats = snap.layers[k].activation.as_ref().unwrap();
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
        assert!(
            close(stats.mean, mean) && close(stats.std, std),
            "{k}: {stats:?}"
        );
        let frac =
            |p: &dyn Fn(f64) -> bool| v.iter().filter(|x| p(**x)).count() as f64 / v.len() as f64;
        match k {
            0 => assert!(close(
                stats.saturated.unwrap(),
                frac(&|x| !(0.01..=0.99).contains(&x))
            )),
            1 => {
                // Units (columns of [16, 5]) that are zero in every row.
                let units = g.shape(*a).unwrap().dims().unwrap()[1].unwrap_or(5);
                let dead = (0..units)
                    .filter(|&u| v.iter().skip(u).step_by(units).all(|x| *x <= 0.0))
                    .count() as f64
                    / units as f64;
                assert_eq!(stats.dead.unwrap(), dead);
                assert_eq!(stats.saturated, None);
            }
            2 => assert!(close(stats.saturated.unwrap(), frac(&|x| x < -0.99))),
            _ => assert!(close(stats.saturated.unwrap(), frac(&|x| x.abs() > 0.99))),
        }
    }
    // The histograms hold the kernels and activations themselves.
    let h = m.histograms(&sess, &f).unwrap();
    assert_eq!(h[0].0, "health/hidden1/kernel");
    assert_eq!(
        h[0].1,
        sess.variable_value(kernels[0]).unwrap().to_f64_vec()
    );
    assert_eq!(h[1].0, "health/hidden1/activation");
    assert_eq!(h[1].1, vals[grads.len()].to_f64_vec());
    assert_eq!(
        h.len(),
        4 * 2 + 1,
        "four layers with activations, outputs without"
    );
    // N(0, 3) kernels on inputs in [-2, 2] push sigmoid and tanh into their bounds.
    let sat = snap.layers[0]
        .activation
        .as_ref()
        .unwrap()
        .saturated
        .unwrap();
    assert!(sat > 0.2, "sigmoid saturated fraction {sat}");
}

#[test]
fn activations_named_explicitly_replace_the_ones_found() {
    // hidden4's tanh output named as outputs' activation, and hidden1's as hidden2's: the stats
    // follow the named tensors and their op types.
    let n = net();
    let g = &n.g;
    let m = Monitor::new(
        g,
        n.loss,
        MonitorOptions {
            variables: None,
            activations: vec![("outputs".into(), n.acts[3]), ("hidden2".into(), n.acts[0])],
        },
    )
    .unwrap();
    let types: Vec<Option<&str>> = m
        .layers
        .iter()
        .map(|l| l.activation.as_ref().map(|a| a.2.as_str()))
        .collect();
    assert_eq!(
        types,
        [
            Some("Sigmoid"),
            Some("Sigmoid"),
            Some("Elu"),
            Some("Tanh"),
            Some("Tanh")
        ]
    );
    let sess = Session::new(g);
    sess.run_targets(&[g.global_variables_initializer().unwrap()], &[])
        .unwrap();
    let snap = m.measure(&sess, 0, &feeds(&n, 16)).unwrap();
    assert_eq!(snap.layers[1].activation, snap.layers[0].activation);
    assert_eq!(snap.layers[4].activation, snap.layers[3].activation);
}

#[test]
fn the_update_ratio_is_the_step_over_the_weights() {
    // Plain gradient descent moves W by lr·∂L/∂W, so ‖ΔW‖/‖W‖ = lr·‖∂L/∂W‖ / ‖W after‖, where the
    // gradient norm is the one the same run fetched (before the update).
    let n = net();
    let g = &n.g;
    let m = Monitor::new(g, n.loss, MonitorOptions::default()).unwrap();
    let lr = 0.05;
    let train = Optimizer::gradient_descent(lr)
        .minimize(g, n.loss, None, None)
        .unwrap();
    let sess = Session::new(g);
    sess.run_targets(&[g.global_variables_initializer().unwrap()], &[])
        .unwrap();
    let f = feeds(&n, 16);
    let snap = m.train_step(&sess, train, 0, &f).unwrap();
    for (l, probe) in snap.layers.iter().zip(&m.layers) {
        let after = l2(&sess.variable_value(probe.kernel).unwrap().to_f64_vec());
        let expected = lr * l.grad_norm / after;
        let got = l.update_ratio.unwrap();
        assert!(
            (got - expected).abs() <= 1e-4 * expected,
            "{}: {got} vs {expected}",
            l.name
        );
    }
    // The probes saw the weights before the step: the next measurement differs.
    let next = m.measure(&sess, 1, &f).unwrap();
    assert_ne!(next.layers[0].weight_norm, snap.layers[0].weight_norm);
}

#[test]
fn unfetched_probes_cost_nothing() {
    // The session prunes what no fetch needs: a train step with and without a monitor in the
    // graph runs the same number of steps in its plan.
    let n = net();
    let g = &n.g;
    let train = Optimizer::gradient_descent(0.1)
        .minimize(g, n.loss, None, None)
        .unwrap();
    let f = feeds(&n, 8);
    let kernels_run = || {
        let sess = Session::with_options(
            g,
            SessionOptions {
                profile: true,
                ..Default::default()
            },
        );
        sess.run_targets(&[g.global_variables_initializer().unwrap()], &[])
            .unwrap();
        sess.reset_profile();
        sess.run_targets(&[train], &f).unwrap();
        sess.profile().iter().map(|p| p.calls).sum::<u64>()
    };
    let without = kernels_run();
    let m = Monitor::new(g, n.loss, MonitorOptions::default()).unwrap();
    assert!(m.fetches().len() > 10);
    assert_eq!(kernels_run(), without);
}

fn layer(name: &str, grad: f64) -> LayerStats {
    LayerStats {
        name: name.into(),
        grad_norm: grad,
        weight_norm: 1.0,
        update_ratio: Some(1e-3),
        activation: None,
    }
}

fn snap(step: i64, layers: Vec<LayerStats>) -> Snapshot {
    let global = layers
        .iter()
        .map(|l| l.grad_norm.powi(2))
        .sum::<f64>()
        .sqrt();
    Snapshot {
        step,
        layers,
        global_grad_norm: global,
    }
}

#[test]
fn each_finding_at_its_threshold() {
    let t = Thresholds::default();
    let healthy = snap(0, vec![layer("h1", 0.5), layer("h2", 1.0)]);
    assert_eq!(diagnose(std::slice::from_ref(&healthy), &t), []);
    // Vanishing: 1e-3 is not below 1e-3; 9e-4 is.
    let at = snap(0, vec![layer("h1", 1e-3), layer("h2", 1.0)]);
    assert_eq!(diagnose(&[at], &t), []);
    let below = snap(0, vec![layer("h1", 9e-4), layer("h2", 1.0)]);
    assert_eq!(
        diagnose(&[below], &t),
        [Finding::Vanishing {
            lowest: "h1".into(),
            highest: "h2".into(),
            ratio: 9e-4
        }]
    );
    // Exploding: the global norm from √(0.5²+1²) to 10× that within the window.
    let big = snap(5, vec![layer("h1", 5.0), layer("h2", 10.0)]);
    let found = diagnose(&[healthy.clone(), big], &t);
    assert!(
        matches!(found.as_slice(), [Finding::Exploding { growth, .. }] if (growth - 10.0).abs() < 1e-12),
        "{found:?}"
    );
    // Non-finite.
    let nan = snap(6, vec![layer("h1", f64::NAN), layer("h2", 1.0)]);
    assert_eq!(
        diagnose(&[nan], &t),
        [Finding::NonFinite {
            layers: vec!["h1".into()]
        }]
    );
    // Growth of 10× that ends below a norm of 1 is not an explosion.
    let small = snap(0, vec![layer("h1", 0.01)]);
    let grown = snap(1, vec![layer("h1", 0.5)]);
    assert_eq!(diagnose(&[small, grown], &t), []);
    // Saturated, dead, stalled.
    let mut l = layer("h1", 0.5);
    l.activation = Some(ActivationStats {
        op_type: "Sigmoid".into(),
        mean: 0.5,
        std: 0.5,
        saturated: Some(0.51),
        dead: None,
    });
    let mut r = layer("h2", 1.0);
    r.activation = Some(ActivationStats {
        op_type: "Relu".into(),
        mean: 0.1,
        std: 0.2,
        saturated: None,
        dead: Some(0.6),
    });
    r.update_ratio = Some(5e-6);
    let names: Vec<&str> = diagnose(&[snap(7, vec![l, r])], &t)
        .iter()
        .map(Finding::name)
        .collect();
    assert_eq!(names, ["saturated", "dead ReLUs", "stalled"]);
}
