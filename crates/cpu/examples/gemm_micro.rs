//! Per-shape timings of the matrix products a training step runs (the bands of the `deep` model's
//! forward, `dX` and `dW` products at batch 32, 256 and 2048): best of 5 rounds.
//!
//! ```text
//! cargo run --release -p ferroflow-cpu --example gemm_micro -- [--threads N] [--sets N]
//!     [--shape M K N TA TB] [--set KEY=VALUE]... [--ab KEY=VALUE [--rounds N]]
//! ```
//!
//! `--threads` (default 1) threads per product; `--sets N` takes N copies of each product's operands
//! in turn, so that they come from memory rather than the core's cache, as in a training step;
//! `--shape` times one shape (TA, TB: 0 or 1); `--set` changes a field of the `CpuConfig` (for
//! example `gemm_own=0`, the `gemm` crate's own driver); `--ab KEY=VALUE` times each product in
//! rounds that alternate between the configuration and that setting (`--rounds` of each, default
//! 15) and prints the ratio of the median times: on a machine whose speed drifts, the comparison
//! that holds still.
use ferroflow_cpu::gemm::{gemm, MatRef};
use ferroflow_cpu::{Context, CpuConfig};
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
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut threads, mut sets, mut ab_rounds) = (1usize, 1usize, 15usize);
    let (mut config, mut ab, mut one) = (CpuConfig::default(), None, Vec::new());
    let mut it = args.iter();
    let number = |v: Option<&String>, flag: &str| -> usize {
        v.and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("{flag} needs a whole number"))
    };
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--threads" => threads = number(it.next(), flag),
            "--sets" => sets = number(it.next(), flag).max(1),
            "--rounds" => ab_rounds = number(it.next(), flag).max(1),
            "--shape" => one = (0..5).map(|_| number(it.next(), flag)).collect(),
            "--set" => config
                .apply(it.next().map(String::as_str).unwrap_or(""))
                .unwrap_or_else(|e| panic!("--set: {e}")),
            "--ab" => {
                let mut other = config.clone();
                other
                    .apply(it.next().map(String::as_str).unwrap_or(""))
                    .unwrap_or_else(|e| panic!("--ab: {e}"));
                ab = Some(other);
            }
            _ => panic!("unknown argument {flag:?} (see the example's doc comment)"),
        }
    }
    let custom = [(
        one.first().copied().unwrap_or(0),
        one.get(1).copied().unwrap_or(0),
        one.get(2).copied().unwrap_or(0),
        one.get(3) == Some(&1),
        one.get(4) == Some(&1),
        "given",
    )];
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
        let mut round = |config: &CpuConfig| {
            let ctx = Context::new(config, threads);
            let t = Instant::now();
            for r in 0..reps {
                let s = r % copies;
                let av = MatRef::row_major(&a_sets[s], ar, ac, ta);
                let bv = MatRef::row_major(&b_sets[s], br, bc, tb);
                gemm(&ctx, &mut c_sets[s], av, bv, false).unwrap();
            }
            t.elapsed().as_secs_f64() / reps as f64
        };
        let gflops = |secs: f64| 2.0 * (m * n * k) as f64 / secs / 1e9;
        if let Some(other) = &ab {
            let (mut off, mut on) = (Vec::new(), Vec::new());
            for _ in 0..ab_rounds {
                off.push(round(&config));
                on.push(round(other));
            }
            let (off, on) = (median(&mut off), median(&mut on));
            println!(
                "{what:22} {m}x{k}x{n}: as configured {:6.1}, setting {:6.1} GFLOP/s; time ratio {:.3}",
                gflops(off),
                gflops(on),
                on / off
            );
            continue;
        }
        let best = (0..5).map(|_| round(&config)).fold(f64::MAX, f64::min);
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
