//! Trains each benchmark model for four steps at batch 32, 256 and 2048, on one and two threads, and
//! prints a hash of the loss and every variable: a refactoring that must not change a result prints
//! the same 18 lines before and after (a change in thread scheduling must not either, except where
//! a product or pass splits its sums by the thread count, which the lines of one model then show).
//!
//! ```text
//! cargo run --release -p ferroflow-tools --example train_hashes > before.txt
//! ```
use ferroflow::prelude::*;
use ferroflow_tools::bench::build;
use std::hash::{Hash, Hasher};

fn main() -> ferroflow_tools::Result<()> {
    for model in ["book", "deep", "deep_bn"] {
        for batch in [32usize, 256, 2048] {
            for threads in [1usize, 2] {
                let m = build(model)?;
                let sess = Session::with_options(&m.graph, SessionOptions::with_threads(threads));
                sess.run_targets(&[m.graph.global_variables_initializer()?], &[])?;
                let xs: Vec<f32> = (0..batch * 784)
                    .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
                    .collect();
                let ys: Vec<i64> = (0..batch as i64).map(|i| (i * 7) % 10).collect();
                let feeds = [
                    feed(m.x, Value::from_f32(&[batch, 784], xs)?),
                    feed(m.y, Value::from_i64(&[batch], ys)?),
                ];
                for _ in 0..4 {
                    sess.run_targets(&[m.train], &feeds)?;
                }
                let loss = sess.run_one(m.loss, &feeds)?.to_f64_vec()[0];
                let mut h = std::collections::hash_map::DefaultHasher::new();
                loss.to_bits().hash(&mut h);
                for v in m.graph.global_variables() {
                    for x in sess.run_one(v.value(), &[])?.to_f64_vec() {
                        x.to_bits().hash(&mut h);
                    }
                }
                println!(
                    "{model} {batch} t{threads} loss={loss:.9} hash={:016x}",
                    h.finish()
                );
            }
        }
    }
    Ok(())
}
