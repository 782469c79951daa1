//! Products fused with the op that alone reads them (`plan::fuse_products`): a bias add (with its
//! `Relu`) in the forward pass and an activation gradient in the backward pass run over each band of
//! rows of the product as soon as it is computed. They must give the same bits as the separate steps,
//! on one thread and on two (row bands, column halves and paired products), with the fused pass off
//! (`SessionOptions::fuse_products`), and for operands the epilogue does not cover.

use ferroflow_core::{feed, DType, Graph, Session, SessionOptions, Tensor, Value};

/// Values in [-1, 1) that differ from element to element (and from seed to seed).
fn values(len: usize, seed: usize, scale: f64) -> Vec<f64> {
    (0..len)
        .map(|i| (((i * 7919 + seed * 104_729) % 997) as f64 / 498.5 - 1.0) * scale)
        .collect()
}

fn value(dtype: DType, shape: &[usize], seed: usize, scale: f64) -> Value {
    let v = values(shape.iter().product(), seed, scale);
    match dtype {
        DType::F32 => Value::from_f32(shape, v.iter().map(|&x| x as f32).collect()).unwrap(),
        _ => Value::from_f64(shape, v).unwrap(),
    }
}

/// A four-layer net on a batch of `rows` (width 300, wide enough for the products to run on two
/// threads): relu, elu, relu layers with biases, then a layer whose "bias" is a full matrix (a sum
/// the epilogue does not cover), and its loss's gradients for every parameter and for `x`.
struct Net {
    g: Graph,
    fetches: Vec<Tensor>,
    feeds: Vec<(Tensor, Value)>,
}

fn net(dtype: DType, rows: usize) -> Net {
    let width = 300;
    let g = Graph::new();
    let x = g
        .named("x")
        .placeholder(dtype, [Some(rows), Some(width)])
        .unwrap();
    let mut feeds = vec![(x, value(dtype, &[rows, width], 1, 1.0))];
    let mut params = vec![x];
    let mut h = x;
    for layer in 0..4 {
        let w = g
            .named(&format!("w{layer}"))
            .placeholder(dtype, [Some(width), Some(width)])
            .unwrap();
        let bias_shape = if layer == 3 {
            vec![rows, width]
        } else {
            vec![width]
        };
        let b = g
            .named(&format!("b{layer}"))
            .placeholder(
                dtype,
                bias_shape.iter().map(|&d| Some(d)).collect::<Vec<_>>(),
            )
            .unwrap();
        feeds.push((w, value(dtype, &[width, width], 10 + layer, 0.1)));
        feeds.push((b, value(dtype, &bias_shape, 20 + layer, 0.5)));
        params.extend([w, b]);
        let product = g.matmul(h, w).unwrap();
        // Layer 0's bias comes through a step after the product's (the fused step then takes the
        // add's place), as a variable's read does.
        let b = if layer == 0 {
            g.identity(b).unwrap()
        } else {
            b
        };
        let z = g.add(product, b).unwrap();
        h = match layer {
            1 => g.elu(z).unwrap(),
            3 => z,
            _ => g.relu(z).unwrap(),
        };
    }
    let loss = g.reduce_sum(g.mul(h, h).unwrap(), None, false).unwrap();
    let mut fetches = vec![h, loss];
    fetches.extend(
        g.gradients(&[loss], &params)
            .unwrap()
            .into_iter()
            .map(Option::unwrap),
    );
    Net { g, fetches, feeds }
}

/// The fetched values and each op type's number of calls in the run.
fn run(net: &Net, optimize: bool, threads: usize) -> (Vec<Value>, Vec<(String, u64)>) {
    run_with(net, optimize, threads, true)
}

fn run_with(
    net: &Net,
    optimize: bool,
    threads: usize,
    fuse_products: bool,
) -> (Vec<Value>, Vec<(String, u64)>) {
    let sess = Session::with_options(
        &net.g,
        SessionOptions {
            optimize,
            profile: true,
            fuse_products,
            ..SessionOptions::with_threads(threads)
        },
    );
    let feeds: Vec<_> = net.feeds.iter().map(|(t, v)| feed(*t, v.clone())).collect();
    let out = sess.run(&net.fetches, &feeds, &[]).unwrap();
    let mut calls: Vec<(String, u64)> = sess
        .profile()
        .iter()
        .filter(|o| o.op_type.starts_with("MatMul"))
        .map(|o| {
            (
                format!(
                    "{}{}",
                    o.op_type,
                    if o.gradient { " (gradient)" } else { "" }
                ),
                o.calls,
            )
        })
        .collect();
    calls.sort();
    (out, calls)
}

#[test]
fn fused_products_give_the_bits_of_separate_steps() {
    for (dtype, rows) in [
        (DType::F32, 1024),
        (DType::F32, 256),
        (DType::F32, 32),
        (DType::F64, 100),
    ] {
        let net = net(dtype, rows);
        let (separate, calls) = run(&net, false, 1);
        assert_eq!(
            calls,
            [
                ("MatMul".to_string(), 4),
                ("MatMul (gradient)".to_string(), 8)
            ]
        );
        let want = [
            ("MatMul (gradient)", 5),
            ("MatMul+AddV2", 2),
            ("MatMul+AddV2+Relu", 2),
            ("MatMul+EluGrad (gradient)", 1),
            ("MatMul+ReluGrad (gradient)", 2),
        ]
        .map(|(t, n)| (t.to_string(), n));
        for threads in [1, 2] {
            let (fused, calls) = run(&net, true, threads);
            assert_eq!(calls, want, "{dtype} batch {rows}, {threads} threads");
            for (k, (a, b)) in separate.iter().zip(&fused).enumerate() {
                assert_eq!(a, b, "fetch {k}, {dtype} batch {rows}, {threads} threads");
            }
        }
        // Not a trivial net: a positive loss, and gradients that reach the input.
        assert!(separate[1].to_f64_vec()[0] > 0.0);
        assert!(separate[2].to_f64_vec().iter().any(|&v| v != 0.0));
    }
    // Optimized plans without the fused steps: the same bits.
    let net = net(DType::F32, 1024);
    let (fused, _) = run(&net, true, 2);
    let (separate, calls) = run_with(&net, true, 2, false);
    assert_eq!(
        calls,
        [
            ("MatMul".to_string(), 4),
            ("MatMul (gradient)".to_string(), 8)
        ]
    );
    assert_eq!(fused, separate);
}
