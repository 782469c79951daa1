//! `SessionOptions::memory_limit`: a run whose tensors would pass the limit fails before the
//! kernel allocates, with TF's OOM error naming the node; runs within it give the unlimited
//! results, and a refused run leaves the session usable.

use ferroflow_core::Value;
use ferroflow_core::{DType, Graph, Initializer, Session, SessionOptions, VarOptions};

fn limited(g: &Graph, bytes: usize) -> Session {
    Session::with_options(
        g,
        SessionOptions {
            memory_limit: Some(bytes),
            ..Default::default()
        },
    )
}

#[test]
fn a_run_that_would_pass_the_memory_limit_is_an_oom_error_naming_the_node() {
    // w: 1000 x 1000 f32 = 4,000,000 bytes. y = relu(x·w) for x of [n, 1000].
    let g = Graph::new();
    let x = g.placeholder(DType::F32, [None, Some(1000)]).unwrap();
    let w = g
        .get_variable_with(
            "w",
            &[1000, 1000],
            DType::F32,
            VarOptions::init(Initializer::Constant(0.001)),
        )
        .unwrap();
    let y = g.relu(g.named("product").matmul(x, w).unwrap()).unwrap();
    let init = g.global_variables_initializer().unwrap();
    let free = Session::new(&g);
    let sess = limited(&g, 8_500_000);
    for s in [&free, &sess] {
        s.run(&[], &[], &[init]).unwrap();
    }
    let feed = |rows: usize| Value::filled(DType::F32, &[rows, 1000], 1.0).unwrap();
    // 10 rows: w (4 MB) + x (40 kB) + the product (40 kB) + relu (40 kB) fit in 8.5 MB, and the
    // result is the unlimited one (each entry 1000 · 0.001 = 1).
    let small = sess.run(&[y], &[(x, feed(10))], &[]).unwrap();
    assert_eq!(small, free.run(&[y], &[(x, feed(10))], &[]).unwrap());
    assert!((small[0].to_f64_vec()[0] - 1.0).abs() < 1e-5);
    // 1000 rows: w and x hold 8,000,000 bytes; the product's 4,000,000 more do not fit.
    let e = sess
        .run(&[y], &[(x, feed(1000))], &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("'product'")
            && e.contains("OOM when allocating a tensor of 4000000 bytes")
            && e.contains("holds 8000000 bytes")
            && e.contains("memory limit of 8500000"),
        "{e}"
    );
    // The refused run changed nothing: the next small run still works.
    assert_eq!(sess.run(&[y], &[(x, feed(10))], &[]).unwrap(), small);
}

#[test]
fn an_initializer_beyond_the_memory_limit_fails_without_allocating() {
    // A random-normal initializer of 2^28 f32 (1 GiB) under a 64 MiB limit: refused before the
    // sampler allocates, naming the initializer.
    let g = Graph::new();
    g.get_variable_with(
        "big",
        &[1 << 20, 256],
        DType::F32,
        VarOptions::init(Initializer::RandomNormal {
            mean: 0.0,
            stddev: 1.0,
            seed: Some(1),
        }),
    )
    .unwrap();
    let init = g.global_variables_initializer().unwrap();
    let e = limited(&g, 64 << 20)
        .run(&[], &[], &[init])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("big/Initializer")
            && e.contains("OOM when allocating a tensor of 1073741824 bytes"),
        "{e}"
    );
}
