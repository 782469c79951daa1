//! Data-parallel training on ranks that are threads (`LocalGroup`): two or four ranks, each on its
//! shard of one global batch, end with the weights one process gets on the whole batch; frozen
//! variables are not communicated; the broadcast gives every rank rank 0's weights.

use ferroflow_core::{
    feed, keys, DType, Graph, LocalGroup, Operation, Session, SessionOptions, Tensor, Value,
    Variable,
};
use ferroflow_nn::layers::{dense, Activation};
use ferroflow_nn::{
    broadcast_global_variables, clip_by_global_norm, losses, DistributedOptimizer, Optimizer,
};
use rand::{Rng, SeedableRng};
use std::sync::Arc;
use std::time::Duration;

const BATCH: usize = 24;
const FEATURES: usize = 8;
const STEPS: usize = 20;

/// One global batch per step, the same in every rank and in the single process.
fn batches() -> Vec<(Vec<f32>, Vec<i64>)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    (0..STEPS)
        .map(|_| {
            let x = (0..BATCH * FEATURES)
                .map(|_| rng.gen_range(-1.0..1.0))
                .collect();
            let y = (0..BATCH).map(|_| rng.gen_range(0..3)).collect();
            (x, y)
        })
        .collect()
}

struct Model {
    g: Graph,
    x: Tensor,
    y: Tensor,
    train: Operation,
    broadcast: Option<Operation>,
}

/// An MLP (8 → 16 → 16 → 3, ReLU): its inputs, labels and loss.
fn mlp(g: &Graph) -> (Tensor, Tensor, Tensor) {
    let x = g
        .placeholder(DType::F32, vec![None, Some(FEATURES)])
        .unwrap();
    let y = g.placeholder(DType::I64, vec![None]).unwrap();
    let h1 = dense(g, x, 16, Some(Activation::Relu), "hidden1").unwrap();
    let h2 = dense(g, h1, 16, Some(Activation::Relu), "hidden2").unwrap();
    let logits = dense(g, h2, 3, None, "logits").unwrap();
    (
        x,
        y,
        losses::sparse_softmax_cross_entropy(g, y, logits).unwrap(),
    )
}

/// [`mlp`] trained by `opt` with the gradients clipped to a global norm of 1; with `ranks`, its
/// gradients are averaged over them; with `frozen`, hidden1 is not trained.
fn model(ranks: bool, frozen: bool, seed: u64, opt: &Optimizer) -> Model {
    let g = Graph::new();
    g.set_random_seed(seed);
    let (x, y, loss) = mlp(&g);
    let var_list: Option<Vec<Variable>> = frozen.then(|| {
        g.get_collection(keys::TRAINABLE_VARIABLES, Some("hidden[2]|logits"))
            .unwrap()
    });
    let gv = if ranks {
        DistributedOptimizer::new(opt.clone())
            .compute_gradients(&g, loss, var_list.as_deref())
            .unwrap()
    } else {
        opt.compute_gradients(&g, loss, var_list.as_deref())
            .unwrap()
    };
    let grads: Vec<Option<Tensor>> = gv.iter().map(|p| p.0).collect();
    let (clipped, _) = clip_by_global_norm(&g, &grads, 1.0).unwrap();
    let gv: Vec<_> = clipped.into_iter().zip(gv.iter().map(|p| p.1)).collect();
    let train = opt.apply_gradients(&g, &gv, None).unwrap();
    let broadcast = ranks.then(|| broadcast_global_variables(&g, 0).unwrap());
    Model {
        g,
        x,
        y,
        train,
        broadcast,
    }
}

/// The trainable weights after each step, rows `lo..hi` of each global batch.
fn train(m: &Model, sess: &Session, lo: usize, hi: usize) -> Vec<Vec<f64>> {
    sess.run_targets(&[m.g.global_variables_initializer().unwrap()], &[])
        .unwrap();
    if let Some(b) = m.broadcast {
        sess.run_targets(&[b], &[]).unwrap();
    }
    let vars: Vec<Variable> = m.g.get_collection(keys::TRAINABLE_VARIABLES, None).unwrap();
    let mut after = Vec::new();
    for (x, y) in batches() {
        let xs = Value::from_f32(
            &[hi - lo, FEATURES],
            x[lo * FEATURES..hi * FEATURES].to_vec(),
        );
        let ys = Value::from_i64(&[hi - lo], y[lo..hi].to_vec());
        sess.run_targets(
            &[m.train],
            &[feed(m.x, xs.unwrap()), feed(m.y, ys.unwrap())],
        )
        .unwrap();
        let w: Vec<f64> = vars
            .iter()
            .flat_map(|v| sess.variable_value(*v).unwrap().to_f64_vec())
            .collect();
        after.push(w);
    }
    after
}

/// Each rank's weights after each step; rank r builds its graph with seed `seed + r` (the
/// broadcast must make them start equal) and trains on its shard of every batch.
fn on_ranks(size: usize, frozen: bool, seed: u64, opt: &Optimizer) -> Vec<Vec<Vec<f64>>> {
    let ranks = LocalGroup::ranks(size, Duration::from_secs(120));
    std::thread::scope(|s| {
        let handles: Vec<_> = ranks
            .into_iter()
            .enumerate()
            .map(|(r, comm)| {
                s.spawn(move || {
                    let m = model(true, frozen, seed + r as u64, opt);
                    let options = SessionOptions {
                        communicator: Some(Arc::new(comm)),
                        ..SessionOptions::with_threads(1)
                    };
                    let sess = Session::with_options(&m.g, options);
                    let per = BATCH / size;
                    train(&m, &sess, r * per, (r + 1) * per)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// The names of the graph's all-reduce nodes (the starts of the overlapped ones).
fn all_reduces(g: &Graph) -> Vec<String> {
    g.operations()
        .into_iter()
        .filter(|&op| {
            ["HorovodAllreduce", "HorovodAllreduceStart"].contains(&g.op_type(op).as_str())
        })
        .map(|op| g.op_name(op))
        .collect()
}

/// Every weight within `tol` of the expected one, relative to the largest expected weight of that
/// step (a weight near zero carries the rounding of the others' scale).
fn assert_close(what: &str, got: &[Vec<f64>], want: &[Vec<f64>], tol: f64) {
    assert_eq!(got.len(), want.len());
    for (step, (a, b)) in got.iter().zip(want).enumerate() {
        let scale = b.iter().fold(0.0f64, |m, y| m.max(y.abs()));
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= tol * scale,
                "{what}, step {}, weight {i}: {x} against {y} (largest weight {scale})",
                step + 1
            );
        }
    }
}

#[test]
fn ranks_on_shards_of_each_batch_end_with_the_weights_of_one_process_on_the_whole_batch() {
    let single = {
        let m = model(false, false, 7, &Optimizer::adam(0.01));
        train(
            &m,
            &Session::with_options(&m.g, SessionOptions::with_threads(1)),
            0,
            BATCH,
        )
    };
    for size in [2, 4] {
        let ranks = on_ranks(size, false, 7, &Optimizer::adam(0.01));
        for (r, weights) in ranks.iter().enumerate() {
            // Every rank holds the same bits after every step.
            assert_eq!(
                weights, &ranks[0],
                "{size} ranks: rank {r} differs from rank 0"
            );
        }
        // The mean of the shards' mean gradients is the whole batch's mean gradient, up to the
        // order of the float additions.
        assert_close(&format!("{size} ranks"), &ranks[0], &single, 1e-5);
    }
}

#[test]
fn frozen_layers_are_neither_trained_nor_communicated() {
    let m = model(true, true, 1, &Optimizer::adam(0.01));
    let all_reduced = all_reduces(&m.g);
    // One fused buffer: hidden2's and logits' kernels and biases, not hidden1's.
    assert_eq!(all_reduced.len(), 1, "{all_reduced:?}");
    let ranks = on_ranks(2, true, 1, &Optimizer::adam(0.01));
    assert_eq!(ranks[0], ranks[1]);
    let single = {
        let m = model(false, true, 1, &Optimizer::adam(0.01));
        train(
            &m,
            &Session::with_options(&m.g, SessionOptions::with_threads(1)),
            0,
            BATCH,
        )
    };
    assert_close("frozen hidden1", &ranks[0], &single, 1e-5);
    // hidden1's kernel and bias (the first 8·16 + 16 weights) never moved.
    let first = &ranks[0][0][..FEATURES * 16 + 16];
    assert!(ranks[0].iter().all(|w| &w[..FEATURES * 16 + 16] == first));
}

#[test]
fn fusion_packs_gradients_up_to_the_threshold_and_reduces_larger_ones_alone() {
    // Gradients (last variable first): logits bias 3, kernel 48, hidden2 bias 16, kernel 256,
    // hidden1 bias 16, kernel 128 floats (×4 bytes). With 300 bytes: [12+192+64] [1024] [64]
    // [512], four all-reduces; with 0, one per gradient; with the default, one.
    for (threshold, count) in [
        (300, 4),
        (0, 6),
        (ferroflow_nn::DEFAULT_FUSION_THRESHOLD, 1),
    ] {
        let g = Graph::new();
        let (_, _, loss) = mlp(&g);
        DistributedOptimizer::new(Optimizer::gradient_descent(0.1))
            .fusion_threshold(threshold)
            .compute_gradients(&g, loss, None)
            .unwrap();
        assert_eq!(all_reduces(&g).len(), count, "threshold {threshold}");
    }
}

#[test]
fn every_update_rule_trains_the_same_on_two_ranks_as_on_one_process() {
    let rules = [
        ("gradient descent", Optimizer::gradient_descent(0.1)),
        ("momentum", Optimizer::momentum(0.05, 0.9, true)),
        ("adagrad", Optimizer::adagrad(0.1)),
        ("rmsprop", Optimizer::rmsprop(0.01)),
        ("adam", Optimizer::adam(0.01)),
    ];
    for (name, opt) in rules {
        let single = {
            let m = model(false, false, 5, &opt);
            train(
                &m,
                &Session::with_options(&m.g, SessionOptions::with_threads(1)),
                0,
                BATCH,
            )
        };
        let ranks = on_ranks(2, false, 5, &opt);
        assert_eq!(ranks[0], ranks[1], "{name}: the ranks differ");
        assert_close(name, &ranks[0], &single, 1e-5);
    }
}
