//! The momentum update (`ApplyMomentum`, with a gradient scale) over `variables` variables of
//! `elements` each, one after the other as a training step runs them: best of 200 sweeps, with the
//! data warm in the caches (docs/performance.md compares it with the update's time in a step):
//!
//! ```text
//! cargo run --release -p ferroflow-core --example apply_micro [threads [elements [variables]]]
//! ```
use ferroflow_core::ops::apply::ApplyRule;
use std::time::Instant;
fn main() {
    let arg = |i: usize, default: usize| -> usize {
        std::env::args()
            .nth(i)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (threads, n, vars) = (arg(1, 2), arg(2, 90000), arg(3, 12));
    let workers = ferroflow_cpu::Workers::new(threads).expect("worker threads");
    let config = ferroflow_core::CpuConfig::default();
    let ctx = ferroflow_cpu::Context::new(&config, threads);
    let rule = ApplyRule::Momentum {
        momentum: 0.9,
        nesterov: false,
    };
    let mut w: Vec<Vec<f32>> = (0..vars).map(|_| vec![1.0; n]).collect();
    let mut a: Vec<Vec<f32>> = (0..vars).map(|_| vec![0.5; n]).collect();
    let g: Vec<Vec<f32>> = (0..vars).map(|_| vec![0.1; n]).collect();
    let best = workers.install(|| {
        let mut best = f64::MAX;
        for _ in 0..200 {
            let t = Instant::now();
            for v in 0..vars {
                rule.apply(&ctx, &mut w[v], &mut [&mut a[v][..]], &g[v], 0.01, 0.5)
                    .unwrap();
            }
            best = best.min(t.elapsed().as_secs_f64());
        }
        best
    });
    println!(
        "{vars} x {n}: {:.1} us per sweep, {:.1} us per var, {:.1} GB/s",
        best * 1e6,
        best * 1e6 / vars as f64,
        (vars * n * 20) as f64 / best / 1e9
    );
}
