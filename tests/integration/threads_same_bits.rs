//! How a step's work is spread over threads changes where it runs, never what it computes: the
//! benchmark models at batch 256 (row bands, paired weight and input gradients, kernels split in
//! halves) train to the same bits on one thread, on two, and on two with pairing off.

use ferroflow::prelude::*;
use ferroflow_tools::bench::build;

/// The loss and every trainable variable after three training steps.
fn train(model: &str, batch: usize, threads: usize) -> (u64, Vec<Vec<u32>>) {
    train_with(model, batch, SessionOptions::with_threads(threads))
}

fn train_with(model: &str, batch: usize, options: SessionOptions) -> (u64, Vec<Vec<u32>>) {
    let m = build(model).unwrap();
    let sess = Session::with_options(&m.graph, options);
    sess.run_targets(&[m.graph.global_variables_initializer().unwrap()], &[])
        .unwrap();
    let xs: Vec<f32> = (0..batch * 784)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
        .collect();
    let ys: Vec<i64> = (0..batch as i64).map(|i| (i * 7) % 10).collect();
    let feeds = [
        feed(m.x, Value::from_f32(&[batch, 784], xs).unwrap()),
        feed(m.y, Value::from_i64(&[batch], ys).unwrap()),
    ];
    for _ in 0..3 {
        sess.run_targets(&[m.train], &feeds).unwrap();
    }
    let loss = sess
        .run_one(m.loss, &feeds)
        .unwrap()
        .scalar_value()
        .unwrap();
    let vars = m
        .graph
        .trainable_variables()
        .into_iter()
        .map(|v| {
            let t = v.value();
            let value = sess.run_one(t, &[]).unwrap();
            value
                .to_f64_vec()
                .iter()
                .map(|&x| (x as f32).to_bits())
                .collect()
        })
        .collect();
    (loss.to_bits(), vars)
}

#[test]
fn two_threads_train_as_one_at_batch_256() {
    for model in ["deep", "deep_bn"] {
        let one = train(model, 256, 1);
        let two = train(model, 256, 2);
        assert!(one.0 != 0 && one.1.len() > 10, "{model}");
        assert!(one == two, "{model}: 2 threads differ from 1");
        // The products of a layer's backward pass as a pair (the default at this size) and one
        // after the other in row bands: the same bits.
        let mut options = SessionOptions::with_threads(2);
        options.cpu.pair_products = false;
        let unpaired = train_with(model, 256, options);
        assert!(one == unpaired, "{model}: unpaired products differ");
    }
}
