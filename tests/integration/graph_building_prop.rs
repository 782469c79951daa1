//! Property test of the panic audit: random sequences of public graph-building calls (placeholders,
//! constants and variables of random dtypes and shapes, including absurd ones; name and variable
//! scopes with arbitrary names; unary, binary, shape, reduction, nn and convolution ops on random earlier tensors;
//! gradients; collection queries with arbitrary regexes; check-numerics ops), followed by sessions that
//! run random fetches with random feeds, never panic. Each call may fail with an error. The same
//! interpreter (`ferroflow_tools::fuzzing::graph_ops`) is the `graph_ops` fuzz target.

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn random_graph_building_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        ferroflow_tools::fuzzing::graph_ops(&bytes);
    }

    /// Biased towards valid programs: small dims only, so that more calls succeed and go deeper.
    #[test]
    fn mostly_valid_graphs_never_panic(bytes in proptest::collection::vec(0u8..250, 0..400)) {
        ferroflow_tools::fuzzing::graph_ops(&bytes);
    }
}

/// The interpreter really builds and runs graphs (the properties above are not vacuous): this program
/// makes a placeholder [3, ?], a variable `a` [3, 2], their matmul, a relu, a sum and its gradient,
/// then initializes and runs the graph with a [3, 3] feed.
#[test]
fn the_interpreter_builds_real_graphs() {
    #[rustfmt::skip]
    let program = [
        0, 2, 3, 0, 0,          // placeholder f32 [3, ?]
        2, 1, 0, 2, 3, 2, 0,    // get_variable "a" [3, 2] f32
        19, 0, 1, 6,            // matmul(placeholder, a)
        7, 2, 7,                // relu
        27, 3, 0, 0, 0, 0,      // reduce_sum(all)
        34, 4, 1,               // gradients(sum, a)
        40,                     // run: passes on, numerics off, feed [3, 3], fetch
        0, 0, 1, 2, 3, 3, 9, 9, 9, 9, 9, 9, 9, 9, 9, 0, 4,
    ];
    let built = ferroflow_tools::fuzzing::graph_ops_count(&program);
    // Five graph calls, and at least one session run that succeeded.
    assert!(built >= 6, "only {built} calls succeeded");
}

/// The convolution calls build too: a max pooling and a convolution of new 4-D constants, their
/// sum's gradient, then a run.
#[test]
fn the_interpreter_builds_cnn_graphs() {
    #[rustfmt::skip]
    let program = [
        39,                                  // CNN op on a new 4-D constant:
        1, 4, 4, 1,                          //   dims [1, 4, 4, 1]
        0, 16, 32, 48, 64, 80, 96, 112,      //   16 values
        128, 144, 160, 176, 192, 208, 224, 240,
        0, 0, 1, 1, 0, 1,                    //   strides 1, ksize 2, SAME, max_pool
        39, 0, 1,                            // CNN op on the constant:
        0, 0, 0, 0, 1, 0,                    //   strides 1, ksize 1, VALID, conv2d with
        0, 0, 2, 2, 1, 3,                    //   a new [2, 2, 1, 3] filter
        10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120,
        0,                                   //   dilation 1
        27, 2, 0, 0, 0, 0,                   // reduce_sum of the convolution
        34, 3, 0,                            // gradients(sum, constant)
        40,                                  // run
        0, 0, 0, 0, 0, 2, 1, 2, 3,
    ];
    let built = ferroflow_tools::fuzzing::graph_ops_count(&program);
    assert!(built >= 5, "only {built} calls succeeded");
}
