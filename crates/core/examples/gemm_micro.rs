//! Per-shape timings of the matrix products a training step runs (the bands of the `deep` model's
//! forward, `dX` and `dW` products at batch 32, 256 and 2048): best of 5 rounds, one thread unless
//! a thread count is given. `FERROFLOW_GEMM_OWN=0` times the `gemm` crate's own driver instead of
//! ours, `FERROFLOW_GEMM_SWAP=0` ours without running few-row products with a transposed `b` as they
//! are (docs/performance.md). `FERROFLOW_MICRO_SETS=n` takes n copies of each product's operands
//! in turn, so that they come from memory rather than the core's cache, as in a training step.
//! `FERROFLOW_MICRO_AB=NAME=VALUE` (a switch of `ferroflow_core::tuning`) times each product in
//! rounds that alternate between the switch as it stands and the value, and prints the ratio of
//! the median times (`FERROFLOW_MICRO_AB_ROUNDS` rounds of each, default 15):
//!
//! ```text
//! cargo run --release -p ferroflow-core --example gemm_micro [threads [M K N TA TB]]
//! ```
use ferroflow_core::ops::gemm::{gemm, MatRef};
use ferroflow_core::tuning;
use std::time::Instant;
fn main() {
    let shapes: &[(usize, usize, usize, bool, bool, &str)] = &[
        (32, 100, 300, false, true, "book dX2 32"),
        (32, 10, 100, false, true, "book dX3 32"),
        (32, 10, 300, false, true, "deep dX12 32"),
        (256, 784, 300, false, false, "fwd X.W 256"),
        (256, 300, 300, false, false, "fwd 256"),
        (256, 300, 300, false, true, "dX 256"),
        (300, 256, 300, true, false, "dW 256"),
        (128, 784, 300, false, false, "fwd X.W band 256"),
        (128, 300, 300, false, false, "fwd band 256"),
        (128, 300, 784, false, true, "dX dY.Wt band"),
        (128, 300, 300, false, true, "dX 300 band"),
        (392, 256, 300, true, false, "dW Xt.dY 784 band"),
        (150, 256, 300, true, false, "dW 300 band"),
        (32, 784, 300, false, false, "fwd 32"),
        (32, 300, 300, false, false, "fwd 32 300"),
        (32, 300, 300, false, true, "dX 32"),
        (300, 32, 300, true, false, "dW 32"),
        (1024, 300, 300, false, false, "fwd band 2048"),
        (1024, 300, 300, false, true, "dX band 2048"),
        (300, 1024, 300, true, false, "dW half 2048"),
    ];
    let args: Vec<String> = std::env::args().collect();
    let threads = args.get(1).and_then(|t| t.parse().ok()).unwrap_or(1);
    // `gemm_micro THREADS M K N TA TB` times that one shape (TA, TB: 0 or 1).
    let one: Vec<usize> = args.iter().skip(2).filter_map(|v| v.parse().ok()).collect();
    let custom = [(
        one.first().copied().unwrap_or(0),
        one.get(1).copied().unwrap_or(0),
        one.get(2).copied().unwrap_or(0),
        one.get(3) == Some(&1),
        one.get(4) == Some(&1),
        "given",
    )];
    // FERROFLOW_MICRO_SETS=n: n copies of each product's operands, used in turn.
    let sets: usize = std::env::var("FERROFLOW_MICRO_SETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    // FERROFLOW_MICRO_AB=NAME=VALUE: rounds alternate between a switch as it stands and the
    // setting (FERROFLOW_MICRO_AB_ROUNDS of each, default 15), and the ratio of their median times
    // is printed: on a machine whose speed drifts, the comparison that holds still.
    let ab = std::env::var("FERROFLOW_MICRO_AB")
        .ok()
        .map(|t| tuning::parse_setting(&t).expect("FERROFLOW_MICRO_AB"));
    let ab_rounds: usize = std::env::var("FERROFLOW_MICRO_AB_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15)
        .max(1);
    let shapes = if one.len() == 5 { &custom[..] } else { shapes };
    for &(m, k, n, ta, tb, what) in shapes {
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7919) % 97) as f32 / 97.0 - 0.5)
            .collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i * 104729) % 89) as f32 / 89.0 - 0.5)
            .collect();
        let (ar, ac) = if ta { (k, m) } else { (m, k) };
        let (br, bc) = if tb { (n, k) } else { (k, n) };
        // Copies of the operands taken in turn, so that a product finds them in memory (or the
        // last-level cache) as in a training step, not in its own core's cache.
        let copies = sets.max(1);
        let a_sets: Vec<Vec<f32>> = (0..copies).map(|_| a.clone()).collect();
        let b_sets: Vec<Vec<f32>> = (0..copies).map(|_| b.clone()).collect();
        let mut c_sets: Vec<Vec<f32>> = (0..copies).map(|_| vec![0f32; m * n]).collect();
        let reps = (2e8 / (m * n * k) as f64).max(3.0) as usize * copies;
        let mut round = || {
            let t = Instant::now();
            for r in 0..reps {
                let s = r % copies;
                let av = MatRef::row_major(&a_sets[s], ar, ac, ta);
                let bv = MatRef::row_major(&b_sets[s], br, bc, tb);
                gemm(&mut c_sets[s], av, bv, false, threads).unwrap();
            }
            t.elapsed().as_secs_f64() / reps as f64
        };
        let gflops = |secs: f64| 2.0 * (m * n * k) as f64 / secs / 1e9;
        if let Some((switch, value)) = ab {
            // Rounds alternate between the switch as it stands (its variable, else its default)
            // and the setting; the ratio of the medians.
            let default = tuning::get(switch);
            let (mut off, mut on) = (Vec::new(), Vec::new());
            for _ in 0..ab_rounds {
                tuning::set(switch, default);
                off.push(round());
                tuning::set(switch, value);
                on.push(round());
            }
            tuning::set(switch, default);
            let (off, on) = (median(&mut off), median(&mut on));
            println!(
                "{what:22} {m}x{k}x{n}: as it stands {:6.1}, setting {:6.1} GFLOP/s; time ratio {:.3}",
                gflops(off),
                gflops(on),
                on / off
            );
            continue;
        }
        let best = (0..5).map(|_| round()).fold(f64::MAX, f64::min);
        println!(
            "{what:22} {m}x{k}x{n}: {:8.1} us {:6.1} GFLOP/s",
            best * 1e6,
            gflops(best)
        );
    }
}

/// The middle of the values (the upper one of an even count).
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
