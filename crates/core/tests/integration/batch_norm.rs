//! The fused batch-norm ops (`Graph::moments`, `Graph::batch_normalization`): forward values against
//! a direct f64 computation, gradients against central differences and against TF's composite
//! formula built from primitive ops, the total-derivative path with other consumers of the batch
//! statistics, and results independent of the thread count.

use ferroflow_core::testing::check_gradients;
use ferroflow_core::{DType, Graph, Session, SessionOptions, Shape, Tensor, Value};
use rand::{Rng, SeedableRng};

fn random(shape: &[usize], seed: u64, lo: f64, hi: f64) -> Value {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let n = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| rng.gen_range(lo..hi)).collect();
    Value::from_f64(shape, v).unwrap()
}

fn ph(g: &Graph, name: &str, dtype: DType, shape: &[usize]) -> Tensor {
    g.named(name)
        .placeholder(dtype, Shape::known(shape))
        .unwrap()
}

/// TF's composite `tf.nn.moments` + `tf.nn.batch_normalization` from primitive ops.
fn composite(
    g: &Graph,
    x: Tensor,
    beta: Tensor,
    gamma: Tensor,
    eps: f64,
) -> (Tensor, Tensor, Tensor) {
    let rank = g.shape(x).unwrap().rank().unwrap() as i64;
    let axes: Vec<i64> = (0..rank - 1).collect();
    let mean = g.reduce_mean(x, Some(&axes), false).unwrap();
    let var = g
        .reduce_mean(
            g.squared_difference(x, g.stop_gradient(mean).unwrap())
                .unwrap(),
            Some(&axes),
            false,
        )
        .unwrap();
    let inv = g
        .mul(
            g.div(
                g.scalar_like(x, 1.0).unwrap(),
                g.sqrt(g.add(var, g.scalar_like(x, eps).unwrap()).unwrap())
                    .unwrap(),
            )
            .unwrap(),
            gamma,
        )
        .unwrap();
    let y = g
        .add(
            g.mul(x, inv).unwrap(),
            g.sub(beta, g.mul(mean, inv).unwrap()).unwrap(),
        )
        .unwrap();
    (y, mean, var)
}

fn fused(g: &Graph, x: Tensor, beta: Tensor, gamma: Tensor, eps: f64) -> (Tensor, Tensor, Tensor) {
    let rank = g.shape(x).unwrap().rank().unwrap() as i64;
    let axes: Vec<i64> = (0..rank - 1).collect();
    let (mean, var) = g.moments(x, &axes, false).unwrap();
    let y = g
        .batch_normalization(x, mean, var, Some(beta), Some(gamma), eps)
        .unwrap();
    (y, mean, var)
}

fn max_diff(a: &Value, b: &Value) -> f64 {
    assert_eq!(a.shape(), b.shape());
    a.to_f64_vec()
        .iter()
        .zip(b.to_f64_vec())
        .map(|(x, y)| (x - y).abs() / y.abs().max(1.0))
        .fold(0.0, f64::max)
}

#[test]
fn forward_matches_a_direct_computation() {
    // 85 channels: a block of 64 columns, one of 16 and 5 more (the kernels' three loop widths).
    let (n, c, eps) = (37, 85, 1e-3);
    let g = Graph::new();
    let x = ph(&g, "x", DType::F64, &[n, c]);
    let beta = ph(&g, "beta", DType::F64, &[c]);
    let gamma = ph(&g, "gamma", DType::F64, &[c]);
    let (y, mean, var) = fused(&g, x, beta, gamma, eps);
    assert_eq!(g.op_type(y), "BatchNormalization");
    assert_eq!(g.op_type(var), "MomentsVariance");
    assert_eq!(g.op_name(mean), "moments/mean");
    assert_eq!(g.op_name(var), "moments/variance");
    let (xv, bv, gv) = (
        random(&[n, c], 1, -3.0, 5.0),
        random(&[c], 2, -1.0, 1.0),
        random(&[c], 3, 0.5, 2.0),
    );
    let out = Session::new(&g)
        .run(
            &[y, mean, var],
            &[(x, xv.clone()), (beta, bv.clone()), (gamma, gv.clone())],
            &[],
        )
        .unwrap();
    let (xs, bs, gs) = (xv.to_f64_vec(), bv.to_f64_vec(), gv.to_f64_vec());
    let ys = out[0].to_f64_vec();
    for ch in 0..c {
        let col: Vec<f64> = (0..n).map(|r| xs[r * c + ch]).collect();
        let m = col.iter().sum::<f64>() / n as f64;
        let v = col.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n as f64;
        assert!((out[1].to_f64_vec()[ch] - m).abs() < 1e-12);
        assert!((out[2].to_f64_vec()[ch] - v).abs() < 1e-12);
        for r in 0..n {
            let want = (xs[r * c + ch] - m) / (v + eps).sqrt() * gs[ch] + bs[ch];
            assert!(
                (ys[r * c + ch] - want).abs() < 1e-12,
                "row {r} channel {ch}"
            );
        }
    }
    // The normalized output has mean beta and standard deviation about gamma per channel.
    let col0: Vec<f64> = (0..n).map(|r| ys[r * c]).collect();
    let m0 = col0.iter().sum::<f64>() / n as f64;
    assert!((m0 - bs[0]).abs() < 1e-12);
}

#[test]
fn gradients_match_central_differences_and_the_composite() {
    let eps = 1e-3;
    for shape in [vec![9usize, 5], vec![3, 4, 6], vec![4, 85]] {
        let c = *shape.last().unwrap();
        let points = [
            random(&shape, 11, -2.0, 3.0),
            random(&[c], 12, -1.0, 1.0),
            random(&[c], 13, 0.5, 1.5),
        ];
        let mut grads = Vec::new();
        for build in [fused, composite] {
            let g = Graph::new();
            let x = ph(&g, "x", DType::F64, &shape);
            let beta = ph(&g, "beta", DType::F64, &[c]);
            let gamma = ph(&g, "gamma", DType::F64, &[c]);
            let (y, _, _) = build(&g, x, beta, gamma, eps);
            // Squaring makes the loss depend on the output nonlinearly (a plain weighted sum of a
            // normalized column has a zero x-gradient along the constant direction only).
            let y = g.square(y).unwrap();
            let feeds: Vec<(Tensor, Value)> = [x, beta, gamma]
                .into_iter()
                .zip(points.iter().cloned())
                .collect();
            let report = check_gradients(&g, y, &feeds, 1e-6).unwrap();
            assert!(
                report.max_rel_err < 1e-6,
                "{shape:?}: gradient check {report:?}"
            );
            let loss = g.reduce_sum(y, None, false).unwrap();
            let gs = g.gradients(&[loss], &[x, beta, gamma]).unwrap();
            let gs: Vec<Tensor> = gs.into_iter().map(|t| t.unwrap()).collect();
            grads.push(Session::new(&g).run(&gs, &feeds, &[]).unwrap());
        }
        for (a, b) in grads[0].iter().zip(&grads[1]) {
            assert!(max_diff(a, b) < 1e-10, "{shape:?}: fused vs composite");
        }
    }
}

#[test]
fn the_fused_backward_is_two_kernels_and_other_consumers_still_count() {
    let (n, c, eps) = (8, 3, 1e-3);
    let g = Graph::new();
    let x = ph(&g, "x", DType::F64, &[n, c]);
    let beta = ph(&g, "beta", DType::F64, &[c]);
    let gamma = ph(&g, "gamma", DType::F64, &[c]);
    let (y, mean, var) = fused(&g, x, beta, gamma, eps);
    let dx = g
        .gradients(
            &[g.reduce_sum(g.square(y).unwrap(), None, false).unwrap()],
            &[x],
        )
        .unwrap()[0]
        .unwrap();
    assert_eq!(g.op_type(dx), "BatchNormGradInput");
    // A loss that also reads the batch statistics directly: their gradients reach x through Mean and
    // MomentsVariance as well as through the fused node.
    let extra = g
        .add(
            g.reduce_sum(g.square(y).unwrap(), None, false).unwrap(),
            g.reduce_sum(g.mul(mean, var).unwrap(), None, false)
                .unwrap(),
        )
        .unwrap();
    let feeds = [
        (x, random(&[n, c], 21, -2.0, 2.0)),
        (beta, random(&[c], 22, -1.0, 1.0)),
        (gamma, random(&[c], 23, 0.5, 1.5)),
    ];
    let report = check_gradients(&g, extra, &feeds, 1e-6).unwrap();
    // The variance's own gradient treats the mean as a constant (stop_gradient, as in TF's moments),
    // which is exact because Σ(x - mean) = 0.
    assert!(report.max_rel_err < 1e-6, "{report:?}");
}

#[test]
fn statistics_from_elsewhere_get_their_own_gradients() {
    // Inference-style: the mean and variance are inputs of their own (moving averages), so the
    // backward is g·inv for x and the mean and variance receive gradients.
    let (n, c, eps) = (6, 4, 1e-3);
    let g = Graph::new();
    let x = ph(&g, "x", DType::F64, &[n, c]);
    let mean = ph(&g, "mean", DType::F64, &[c]);
    let var = ph(&g, "var", DType::F64, &[c]);
    let beta = ph(&g, "beta", DType::F64, &[c]);
    let gamma = ph(&g, "gamma", DType::F64, &[c]);
    let y = g
        .batch_normalization(x, mean, var, Some(beta), Some(gamma), eps)
        .unwrap();
    let feeds = [
        (x, random(&[n, c], 31, -2.0, 2.0)),
        (mean, random(&[c], 32, -1.0, 1.0)),
        (var, random(&[c], 33, 0.5, 2.0)),
        (beta, random(&[c], 34, -1.0, 1.0)),
        (gamma, random(&[c], 35, 0.5, 1.5)),
    ];
    let report = check_gradients(&g, g.square(y).unwrap(), &feeds, 1e-6).unwrap();
    assert!(report.max_rel_err < 1e-6, "{report:?}");
    // Without offset and scale: TF's defaults 0 and 1.
    let y0 = g
        .batch_normalization(x, mean, var, None, None, eps)
        .unwrap();
    let out = Session::new(&g).run_one(y0, &feeds).unwrap().to_f64_vec();
    let (xs, ms, vs) = (
        feeds[0].1.to_f64_vec(),
        feeds[1].1.to_f64_vec(),
        feeds[2].1.to_f64_vec(),
    );
    for (i, o) in out.iter().enumerate() {
        let ch = i % c;
        assert!((o - (xs[i] - ms[ch]) / (vs[ch] + eps).sqrt()).abs() < 1e-12);
    }
}

#[test]
fn keep_dims_and_other_axes_use_the_composite() {
    let g = Graph::new();
    let x = ph(&g, "x", DType::F64, &[4, 3]);
    let (m, v) = g.moments(x, &[1], true).unwrap();
    assert_eq!(g.shape(m).unwrap(), Shape::known(&[4, 1]));
    let (m2, v2) = g.moments(x, &[1], false).unwrap();
    assert_eq!(g.shape(v2).unwrap(), Shape::known(&[4]));
    let xv = random(&[4, 3], 41, -1.0, 1.0);
    let out = Session::new(&g)
        .run(&[m, v, m2, v2], &[(x, xv.clone())], &[])
        .unwrap();
    let xs = xv.to_f64_vec();
    for r in 0..4 {
        let row = &xs[r * 3..r * 3 + 3];
        let mean = row.iter().sum::<f64>() / 3.0;
        let var = row.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / 3.0;
        assert!((out[0].to_f64_vec()[r] - mean).abs() < 1e-12);
        assert!((out[1].to_f64_vec()[r] - var).abs() < 1e-12);
        assert!((out[3].to_f64_vec()[r] - var).abs() < 1e-12);
    }
    // A per-row (not per-channel) statistic cannot use the fused op: the composite broadcasts.
    let y = g.batch_normalization(x, m, v, None, None, 1e-3).unwrap();
    assert_ne!(g.op_type(y), "BatchNormalization");
}

#[test]
fn f32_results_do_not_depend_on_the_thread_count() {
    // 1024 × 300 values: above the parallel threshold, so two threads split the work.
    let (n, c) = (1024, 300);
    let g = Graph::new();
    let x = ph(&g, "x", DType::F32, &[n, c]);
    let beta = ph(&g, "beta", DType::F32, &[c]);
    let gamma = ph(&g, "gamma", DType::F32, &[c]);
    let (y, mean, var) = fused(&g, x, beta, gamma, 1e-3);
    let loss = g.reduce_sum(g.square(y).unwrap(), None, false).unwrap();
    let gs = g.gradients(&[loss], &[x, beta, gamma]).unwrap();
    let mut fetches = vec![y, mean, var];
    fetches.extend(gs.into_iter().map(|t| t.unwrap()));
    let feeds = [
        (x, random(&[n, c], 51, -2.0, 4.0).cast(DType::F32)),
        (beta, random(&[c], 52, -1.0, 1.0).cast(DType::F32)),
        (gamma, random(&[c], 53, 0.5, 1.5).cast(DType::F32)),
    ];
    let run = |threads| {
        Session::with_options(&g, SessionOptions::with_threads(threads))
            .run(&fetches, &feeds, &[])
            .unwrap()
    };
    let (one, two, four) = (run(1), run(2), run(4));
    assert_eq!(one, two);
    assert_eq!(one, four);
    // And the f32 result agrees with an f64 run of the same graph.
    let g64 = Graph::new();
    let x64 = ph(&g64, "x", DType::F64, &[n, c]);
    let b64 = ph(&g64, "beta", DType::F64, &[c]);
    let gm64 = ph(&g64, "gamma", DType::F64, &[c]);
    let (y64, _, _) = fused(&g64, x64, b64, gm64, 1e-3);
    let f64feeds: Vec<(Tensor, Value)> = [x64, b64, gm64]
        .into_iter()
        .zip(feeds.iter().map(|(_, v)| v.cast(DType::F64)))
        .collect();
    let want = Session::new(&g64).run_one(y64, &f64feeds).unwrap();
    assert!(max_diff(&one[0], &want) < 1e-5);
}

#[test]
fn shape_errors_name_the_op() {
    let g = Graph::new();
    let x = ph(&g, "x", DType::F32, &[4, 3]);
    let wrong = ph(&g, "wrong", DType::F32, &[5]);
    let ok = ph(&g, "ok", DType::F32, &[3]);
    // A [5] mean against 3 channels broadcasts to nothing: the composite refuses it at build time.
    assert!(g
        .batch_normalization(x, wrong, ok, None, None, 1e-3)
        .is_err());
    // At run time, a fed input whose last dimension disagrees with the parameters is an error naming
    // the node and op.
    let xd = g
        .named("xd")
        .placeholder(DType::F32, Shape::new(vec![None, None]))
        .unwrap();
    let y = g
        .batch_normalization(xd, ok, ok, Some(ok), Some(ok), 1e-3)
        .unwrap();
    let err = Session::new(&g)
        .run_one(
            y,
            &[
                (xd, Value::from_f32(&[2, 4], vec![0.0; 8]).unwrap()),
                (ok, Value::from_f32(&[3], vec![1.0; 3]).unwrap()),
            ],
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("expected [4]") || err.contains("shape"),
        "{err}"
    );
}

/// Empty tensors (no channels, or no rows) run through the fused kernels and their gradients without
/// an error: empty outputs, and NaN statistics over zero rows as in TensorFlow's mean of nothing.
#[test]
fn empty_inputs_give_empty_outputs() {
    for (n, c) in [(3usize, 0usize), (0, 4)] {
        let g = Graph::new();
        let x = ph(&g, "x", DType::F32, &[n, c]);
        let beta = ph(&g, "beta", DType::F32, &[c]);
        let gamma = ph(&g, "gamma", DType::F32, &[c]);
        let (y, mean, var) = fused(&g, x, beta, gamma, 1e-3);
        let loss = g.reduce_sum(y, None, false).unwrap();
        let gs: Vec<Tensor> = g
            .gradients(&[loss], &[x, beta, gamma])
            .unwrap()
            .into_iter()
            .map(|t| t.unwrap())
            .collect();
        let feeds = [
            (x, Value::from_f32(&[n, c], vec![]).unwrap()),
            (beta, Value::from_f32(&[c], vec![0.5; c]).unwrap()),
            (gamma, Value::from_f32(&[c], vec![2.0; c]).unwrap()),
        ];
        let mut fetches = vec![y, mean, var];
        fetches.extend(gs);
        let out = Session::new(&g).run(&fetches, &feeds, &[]).unwrap();
        assert_eq!(out[0].shape(), &[n, c]);
        assert_eq!(out[3].shape(), &[n, c]);
        assert!(out[1].to_f64_vec().iter().all(|m| m.is_nan()));
    }
}

/// `BatchNormalization` written into a new buffer (its input is still needed) and over its dying input
/// give the same bits, on one and two threads, for 300 channels (coefficients per row) and for 1100
/// (more than the row pass keeps on the stack: a copy, then the in-place pass).
#[test]
fn out_of_place_and_in_place_forward_agree_bit_for_bit() {
    for c in [300, 1100] {
        let n = 600;
        let g = Graph::new();
        let x = ph(&g, "x", DType::F32, &[n, c]);
        let beta = ph(&g, "beta", DType::F32, &[c]);
        let gamma = ph(&g, "gamma", DType::F32, &[c]);
        // `z` is made in the run and read by nothing after the batch norm unless it is fetched.
        let z = g.mul(x, g.scalar_like(x, 1.5).unwrap()).unwrap();
        let (y, _, _) = fused(&g, z, beta, gamma, 1e-3);
        let feeds = [
            (x, random(&[n, c], 61, -2.0, 4.0).cast(DType::F32)),
            (beta, random(&[c], 62, -1.0, 1.0).cast(DType::F32)),
            (gamma, random(&[c], 63, 0.5, 1.5).cast(DType::F32)),
        ];
        let run = |threads, fetches: &[Tensor]| {
            let sess = Session::with_options(
                &g,
                SessionOptions {
                    profile: true,
                    ..SessionOptions::with_threads(threads)
                },
            );
            let out = sess.run(fetches, &feeds, &[]).unwrap();
            let bn = sess
                .profile()
                .into_iter()
                .find(|p| p.op_type == "BatchNormalization")
                .unwrap();
            assert_eq!(bn.calls, 1);
            (out.into_iter().next().unwrap(), bn.in_place)
        };
        for threads in [1, 2] {
            let (in_place, forwarded) = run(threads, &[y]);
            let (out_of_place, kept) = run(threads, &[y, z]);
            assert_eq!((forwarded, kept), (1, 0), "{c} channels, {threads} threads");
            assert_eq!(in_place, out_of_place, "{c} channels, {threads} threads");
        }
    }
}

/// A `Relu` that alone reads a batch norm's output runs inside the batch norm's step (the plan
/// compiler's fusion, on with `optimize`): the values and gradients are the same bits as the two
/// separate steps, on one and two threads, over a dying input (in place) and a kept one; when the
/// batch norm's output is also fetched, the `Relu` stays a step of its own.
#[test]
fn relu_after_batch_norm_fuses_into_its_step() {
    let (n, c) = (300, 40);
    let g = Graph::new();
    let x = ph(&g, "x", DType::F32, &[n, c]);
    let beta = ph(&g, "beta", DType::F32, &[c]);
    let gamma = ph(&g, "gamma", DType::F32, &[c]);
    // Kept: the batch-norm backward reads `x`. Dying: `z` is read by the batch norm only.
    let z = g.mul(x, g.scalar_like(x, 1.5).unwrap()).unwrap();
    let (y_kept, _, _) = fused(&g, x, beta, gamma, 1e-3);
    let (y_dying, _, _) = fused(&g, z, beta, gamma, 1e-3);
    let a_kept = g.relu(y_kept).unwrap();
    let a_dying = g.relu(y_dying).unwrap();
    let loss = g
        .reduce_sum(g.mul(a_kept, a_kept).unwrap(), None, false)
        .unwrap();
    let grads: Vec<Tensor> = g
        .gradients(&[loss], &[x, beta, gamma])
        .unwrap()
        .into_iter()
        .map(Option::unwrap)
        .collect();
    let feeds = [
        (x, random(&[n, c], 71, -2.0, 2.0).cast(DType::F32)),
        (beta, random(&[c], 72, -1.0, 1.0).cast(DType::F32)),
        (gamma, random(&[c], 73, 0.5, 1.5).cast(DType::F32)),
    ];
    let run = |optimize: bool, threads: usize, fetches: &[Tensor]| {
        let sess = Session::with_options(
            &g,
            SessionOptions {
                optimize,
                profile: true,
                ..SessionOptions::with_threads(threads)
            },
        );
        let out = sess.run(fetches, &feeds, &[]).unwrap();
        let calls = |t: &str| {
            sess.profile()
                .iter()
                .find(|p| p.op_type == t)
                .map_or(0, |p| p.calls)
        };
        (out, calls("BatchNormalization+Relu"), calls("Relu"))
    };
    let mut fetches = vec![a_kept, a_dying];
    fetches.extend(&grads);
    for threads in [1, 2] {
        let (separate, fused_steps, relus) = run(false, threads, &fetches);
        assert_eq!((fused_steps, relus), (0, 2));
        let (together, fused_steps, relus) = run(true, threads, &fetches);
        assert_eq!((fused_steps, relus), (2, 0), "{threads} threads");
        for (s, t) in separate.iter().zip(&together) {
            assert_eq!(s, t, "{threads} threads");
        }
        assert!(together[0].to_f64_vec().iter().all(|&v| v >= 0.0));
        assert!(together[0].to_f64_vec().iter().any(|&v| v > 0.0));
        // The batch norm's own output fetched: no fusion for it, the other still fused.
        let (out, fused_steps, relus) = run(true, threads, &[a_kept, y_kept, a_dying]);
        assert_eq!((fused_steps, relus), (1, 1));
        assert_eq!(out[0], separate[0]);
        assert_eq!(out[2], separate[1]);
    }
}
