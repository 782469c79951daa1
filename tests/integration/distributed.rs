//! The benchmark models trained data-parallel by ranks that are threads (`LocalGroup`), each on
//! its shard of one global batch per step, against one process on the whole batch. `mpi.rs` runs
//! the same code over MPI (the `mpi` feature).
//!
//! `book` (Adam, ELU) stays within 1e-5 of one process for 20 steps in float32. `deep_bn` (12 ReLU
//! layers, momentum, clipping at 5) amplifies float rounding so much that in float32 one process
//! trained on the same batches with their halves swapped (the same sums in another order) is 0.5
//! of a variable's scale away after 20 steps: in float32 its ranks must be within 1e-5 of one
//! process after a step and no further than twice that reordering after 20; in float64, where
//! rounding is 2⁻⁵³ rather than 2⁻²⁴, within 1e-5 after 20 steps.

use ferroflow::{DType, LocalGroup};
use ferroflow_tools::bench::Distribution;
use ferroflow_tools::distributed::{global_batch, train, Rank};
use std::sync::Arc;
use std::time::Duration;

pub const BATCH: usize = 64;

/// Every variable's values after training, by name.
pub type Weights = Vec<(String, Vec<f64>)>;

/// The global batches of `steps` steps.
pub fn batches(steps: u64) -> Vec<(Vec<f32>, Vec<i64>)> {
    (0..steps).map(|s| global_batch(BATCH, s)).collect()
}

/// The same batches with their two halves swapped: the same examples, summed in another order.
fn swapped(batches: &[(Vec<f32>, Vec<i64>)]) -> Vec<(Vec<f32>, Vec<i64>)> {
    batches
        .iter()
        .map(|(x, y)| {
            let (hx, hy) = (x.len() / 2, y.len() / 2);
            ([&x[hx..], &x[..hx]].concat(), [&y[hy..], &y[..hy]].concat())
        })
        .collect()
}

/// Each rank's weights after training on `size` thread ranks.
fn on_ranks(
    model: &str,
    dtype: DType,
    size: usize,
    sync_batch_norm: bool,
    steps: u64,
) -> Vec<Weights> {
    let ranks = LocalGroup::ranks(size, Duration::from_secs(300));
    let batches = batches(steps);
    std::thread::scope(|s| {
        let handles: Vec<_> = ranks
            .into_iter()
            .map(|comm| {
                let batches = &batches;
                s.spawn(move || {
                    let rank = Rank {
                        comm: Arc::new(comm),
                        distribution: Distribution {
                            sync_batch_norm,
                            ..Distribution::default()
                        },
                    };
                    train(model, dtype, batches, 1, Some(&rank)).unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// The largest difference of a variable's values from the expected, relative to its largest
/// expected value, over the variables whose name `selects`; and that variable's name.
pub fn worst(got: &Weights, want: &Weights, selects: impl Fn(&str) -> bool) -> (f64, String) {
    assert_eq!(got.len(), want.len());
    let mut worst = (0.0, String::new());
    for ((name, a), (name_b, b)) in got.iter().zip(want) {
        assert_eq!(name, name_b);
        if !selects(name) {
            continue;
        }
        let scale = b.iter().fold(1e-30f64, |m, y| m.max(y.abs()));
        let diff = a
            .iter()
            .zip(b)
            .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()));
        if diff / scale > worst.0 {
            worst = (diff / scale, name.clone());
        }
    }
    worst
}

/// Whether a variable is a batch normalization's moving statistic.
pub fn moving(name: &str) -> bool {
    name.contains("moving_")
}

/// Asserts that every rank holds the same bits as rank 0.
fn same_on_every_rank(what: &str, ranks: &[Weights]) {
    for (r, w) in ranks.iter().enumerate() {
        assert!(w == &ranks[0], "{what}: rank {r} differs from rank 0");
    }
}

#[test]
fn book_on_two_and_four_ranks_matches_one_process_on_the_global_batch() {
    let single = train("book", DType::F32, &batches(20), 1, None).unwrap();
    for size in [2, 4] {
        let ranks = on_ranks("book", DType::F32, size, false, 20);
        same_on_every_rank(&format!("book, {size} ranks"), &ranks);
        let (err, name) = worst(&ranks[0], &single, |_| true);
        assert!(err <= 1e-5, "book, {size} ranks: {name} off by {err:e}");
    }
}

#[test]
fn synchronized_batch_norm_matches_one_process_as_closely_as_rounding_allows() {
    for steps in [1, 20] {
        let single = train("deep_bn", DType::F32, &batches(steps), 1, None).unwrap();
        let reordered = train("deep_bn", DType::F32, &swapped(&batches(steps)), 1, None).unwrap();
        let (floor, _) = worst(&reordered, &single, |_| true);
        let bound = (2.0 * floor).max(1e-5);
        for size in [2, 4] {
            let ranks = on_ranks("deep_bn", DType::F32, size, true, steps);
            same_on_every_rank(&format!("deep_bn, {size} ranks"), &ranks);
            let (err, name) = worst(&ranks[0], &single, |_| true);
            println!("deep_bn, {size} ranks, {steps} steps: {err:e} from one process, reordering {floor:e}");
            assert!(
                err <= bound,
                "deep_bn, {size} ranks, {steps} steps: {name} off by {err:e}, reordering alone {floor:e}"
            );
        }
    }
}

#[test]
fn synchronized_batch_norm_in_float64_matches_one_process_for_20_steps() {
    let single = train("deep_bn", DType::F64, &batches(20), 1, None).unwrap();
    for size in [2, 4] {
        let ranks = on_ranks("deep_bn", DType::F64, size, true, 20);
        same_on_every_rank(&format!("deep_bn in float64, {size} ranks"), &ranks);
        let (err, name) = worst(&ranks[0], &single, |_| true);
        println!("deep_bn in float64, {size} ranks, 20 steps: {err:e} from one process");
        assert!(
            err <= 1e-5,
            "deep_bn in float64, {size} ranks: {name} off by {err:e}"
        );
    }
}

#[test]
fn per_rank_batch_norm_keeps_the_ranks_equal_but_follows_each_shard() {
    // Each rank normalizes by its own shard's statistics: the averaged gradients keep every rank's
    // trainable weights identical, but each rank's moving statistics follow its own shard, and the
    // weights leave the global batch's path from the first step.
    let single = train("deep_bn", DType::F32, &batches(1), 1, None).unwrap();
    let ranks = on_ranks("deep_bn", DType::F32, 2, false, 1);
    let (err, name) = worst(&ranks[1], &ranks[0], |n| !moving(n));
    assert_eq!(err, 0.0, "{name}");
    let (apart, _) = worst(&ranks[1], &ranks[0], moving);
    let (trained, _) = worst(&ranks[0], &single, |n| !moving(n));
    assert!(
        apart > 1e-3,
        "moving statistics of the ranks {apart:e} apart"
    );
    assert!(
        trained > 1e-3,
        "weights {trained:e} from one process after a step"
    );
}
