//! After warm-up a training step makes no heap allocation: a counting global allocator watches
//! `Session::run` of each benchmark model's train op (the loop a TF1 user writes:
//! `sess.run(training_op, feed_dict)`), and the results still equal a session that reuses nothing.
//!
//! Matrix products run our own blocked loop around the `gemm` crate's microkernels, with packing
//! buffers kept in the session's workspaces, on every x86-64 CPU with FMA or AVX-512
//! (`crates/cpu/src/gemm/packed.rs`). On a CPU
//! without them the crate's own driver runs, which allocates its packing workspace inside every
//! call: there a traced step checks that every allocation left comes from the crate (its backtrace
//! passes through `gemm_common`).
//!
//! This file is a test binary of its own: its global allocator counts every allocation of the
//! process, so no other test may run beside it.

use ferroflow::prelude::*;
use ferroflow_tools::bench::build;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

struct Counting;

static ARMED: AtomicBool = AtomicBool::new(false);
static COUNT: AtomicUsize = AtomicUsize::new(0);
/// Classify each allocation by its backtrace (slow: one traced step only).
static TRACE: AtomicBool = AtomicBool::new(false);
static OUTSIDE_GEMM: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static IN_TRACE: Cell<bool> = const { Cell::new(false) };
}

fn note_allocation() {
    if !ARMED.load(Ordering::SeqCst) || IN_TRACE.with(|c| c.get()) {
        return;
    }
    COUNT.fetch_add(1, Ordering::SeqCst);
    if TRACE.load(Ordering::SeqCst) {
        IN_TRACE.with(|c| c.set(true));
        let trace = std::backtrace::Backtrace::force_capture().to_string();
        if !trace.contains("gemm_common") {
            let n = OUTSIDE_GEMM.fetch_add(1, Ordering::SeqCst);
            if n < 3 && std::env::var_os("FERROFLOW_ALLOC_CENSUS").is_none() {
                eprintln!("allocation outside the GEMM crate:\n{trace}");
            } else if std::env::var_os("FERROFLOW_ALLOC_CENSUS").is_some() {
                let at: Vec<&str> = trace
                    .lines()
                    .filter(|l| l.contains("ferroflow_core::") || l.contains("ferroflow::"))
                    .take(3)
                    .map(|l| l.trim())
                    .collect();
                eprintln!("outside GEMM: {}", at.join(" < "));
            }
        }
        IN_TRACE.with(|c| c.set(false));
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Per model: allocations of each of 5 training steps after 3 warm-up steps, allocations outside
/// the GEMM crate in one more (traced) step, and the loss after them.
fn allocations_per_step(
    model: &str,
    batch: usize,
    threads: usize,
    reuse_buffers: bool,
) -> (Vec<usize>, usize, f64) {
    let m = build(model).unwrap();
    let sess = Session::with_options(
        &m.graph,
        SessionOptions {
            threads,
            reuse_buffers,
            ..SessionOptions::default()
        },
    );
    sess.run_targets(&[m.graph.global_variables_initializer().unwrap()], &[])
        .unwrap();
    let xs: Vec<f32> = (0..batch * 784)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
        .collect();
    let ys: Vec<i64> = (0..batch as i64).map(|i| (i * 3) % 10).collect();
    let feeds = [
        feed(m.x, Value::from_f32(&[batch, 784], xs).unwrap()),
        feed(m.y, Value::from_i64(&[batch], ys).unwrap()),
    ];
    for _ in 0..3 {
        sess.run_targets(&[m.train], &feeds).unwrap();
    }
    let step = |trace: bool| {
        COUNT.store(0, Ordering::SeqCst);
        OUTSIDE_GEMM.store(0, Ordering::SeqCst);
        TRACE.store(trace, Ordering::SeqCst);
        ARMED.store(true, Ordering::SeqCst);
        let r = sess.run_targets(&[m.train], &feeds);
        ARMED.store(false, Ordering::SeqCst);
        TRACE.store(false, Ordering::SeqCst);
        r.unwrap();
        (
            COUNT.load(Ordering::SeqCst),
            OUTSIDE_GEMM.load(Ordering::SeqCst),
        )
    };
    let counts: Vec<usize> = (0..5).map(|_| step(false).0).collect();
    // Only the reusing session is traced (the plain one allocates everywhere, by design).
    let outside = step(reuse_buffers).1;
    let loss = sess
        .run_one(m.loss, &feeds)
        .unwrap()
        .scalar_value()
        .unwrap();
    (counts, outside, loss)
}

// One test function: the counters are global, and tests of one binary run in parallel.
#[test]
fn a_training_step_allocates_nothing_after_warm_up() {
    let mut one_thread_losses = Vec::new();
    for threads in [1, 2] {
        for (m, model) in ["book", "deep", "deep_bn", "cnn"].into_iter().enumerate() {
            let (counts, outside, loss) = allocations_per_step(model, 64, threads, true);
            // Two threads (split kernels, paired products) train exactly as one does.
            if threads == 1 {
                one_thread_losses.push(loss);
            } else {
                assert_eq!(loss.to_bits(), one_thread_losses[m].to_bits(), "{model}");
            }
            eprintln!(
                "{model}, {threads} threads: allocations per step {counts:?}, outside the GEMM crate {outside}"
            );
            assert_eq!(outside, 0, "{model}: allocations outside the GEMM crate");
            if ferroflow::cpu::gemm::products_reuse_their_workspace(
                &ferroflow::cpu::Context::serial(),
            ) {
                assert_eq!(counts, [0; 5], "{model}, {threads} threads");
            } else {
                // The same number every step (the crate's packing buffers: a few per product).
                assert!(
                    counts.windows(2).all(|w| w[0] == w[1]),
                    "{model}: {counts:?}"
                );
            }
            // Reuse changes where results are written, never what they are.
            let (plain_counts, _, plain_loss) = allocations_per_step(model, 64, threads, false);
            assert_eq!(loss.to_bits(), plain_loss.to_bits(), "{model}");
            assert!(plain_counts[0] > counts[0], "{model}: {plain_counts:?}");
        }
    }
}
