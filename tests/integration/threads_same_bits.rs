//! How a step's work is spread over threads changes where it runs, never what it computes: the
//! benchmark models at batch 256 (row bands, paired weight and input gradients, kernels split in
//! halves) and 2048 (weight gradients summed in two halves of the batch) train to the same bits on
//! one thread, on two, on three, and on two with pairing off. A session that picks its thread count
//! from run to run (`adapt_threads`, the default) therefore trains as any fixed count does.

use ferroflow::prelude::*;
use ferroflow_tools::bench::build;

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
        same_bits_on_any_thread_count(model, 256);
    }
}

/// The CNN: convolutions as chunked products, col2im and pooling split by images.
#[test]
fn two_threads_train_the_cnn_as_one() {
    same_bits_on_any_thread_count("cnn", 64);
}

#[test]
fn two_threads_train_as_one_at_batch_2048() {
    for model in ["book", "deep"] {
        same_bits_on_any_thread_count(model, 2048);
    }
}

fn same_bits_on_any_thread_count(model: &str, batch: usize) {
    let fixed = |threads| SessionOptions {
        adapt_threads: false,
        ..SessionOptions::with_threads(threads)
    };
    let one = train_with(model, batch, fixed(1));
    assert!(one.0 != 0 && one.1.len() >= 8, "{model}");
    for threads in [2, 3] {
        let many = train_with(model, batch, fixed(threads));
        assert!(
            one == many,
            "{model}/{batch}: {threads} threads differ from 1"
        );
    }
    // The products of a layer's backward pass as a pair (the default at batch 256) and one after
    // the other in row bands: the same bits.
    let mut options = fixed(2);
    options.cpu.pair_products = false;
    let unpaired = train_with(model, batch, options);
    assert!(one == unpaired, "{model}/{batch}: unpaired products differ");
}
