//! A CNN trained by TensorFlow (tests/data/tf-cnn-checkpoint, written by make_checkpoint.py there)
//! restores by name into the same network built with ferroflow's conv layers, which then computes
//! TensorFlow's logits.

use super::tf_probe;
use ferroflow::io::{Saver, VarList};
use ferroflow::nn::layers::{dense, Activation};
use ferroflow::nn::{conv2d, flatten, max_pooling2d};
use ferroflow::prelude::*;

#[test]
fn a_tensorflow_cnn_restores_and_gives_tensorflows_logits() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tf-cnn-checkpoint");
    let exp = tf_probe::expected(&dir);
    let g = Graph::new();
    let x = g
        .named("X")
        .placeholder(DType::F32, [None, Some(8), Some(8), Some(1)])
        .unwrap();
    let relu = Some(Activation::Relu);
    let c1 = conv2d(&g, x, 8, [3, 3], [1, 1], "same", relu, "conv2d").unwrap();
    let c2 = conv2d(&g, c1, 16, [3, 3], [2, 2], "same", relu, "conv2d_1").unwrap();
    let pooled = max_pooling2d(&g, c2, [2, 2], [2, 2], "valid", None).unwrap();
    let flat = flatten(&g, pooled, None).unwrap();
    assert_eq!(g.shape(flat).unwrap().dims().unwrap(), &[None, Some(64)]);
    let h = dense(&g, flat, 32, relu, "dense").unwrap();
    let logits = dense(&g, h, 10, None, "dense_1").unwrap();
    assert_eq!(g.op_name(pooled.op()), "max_pooling2d/MaxPool");
    assert_eq!(g.op_name(flat.op()), "flatten/Reshape");
    assert_eq!(g.op_type(c1.op()), "Relu");

    // The variables ferroflow made are the ones TensorFlow saved, in the same order.
    let vars: Vec<Variable> = g.get_collection(keys::GLOBAL_VARIABLES, None).unwrap();
    let names: Vec<String> = vars.iter().map(|v| v.op_name(&g)).collect();
    let want: Vec<&str> = exp["variables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(names, want);

    let sess = Session::new(&g);
    let prefix = dir.join("model.ckpt").to_string_lossy().into_owned();
    Saver::new(&g, VarList::All)
        .unwrap()
        .restore(&sess, &prefix)
        .unwrap();
    tf_probe::assert_logits(&sess, x, logits, &exp, 1e-5);
}
