//! TensorFlow's own `.meta` (tests/data/tf-checkpoint/model.ckpt-3.meta, written by
//! `tf.compat.v1.train.Saver` with the checkpoint beside it): the inference part imports, the
//! checkpoint restores into it by the variables its `VariableDef`s register, and it computes
//! TensorFlow's logits; the training step's ops ferroflow lacks are refused, every type named.

use super::tf_probe;
use ferroflow::io::{import_tf_meta_graph, Saver, VarList};
use ferroflow::prelude::*;

fn dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tf-checkpoint")
}

/// The graph `outputs` need from the `.meta` at `meta`, initialized, then restored from the
/// checkpoint `prefix`.
fn import_and_restore(
    meta: &std::path::Path,
    prefix: &std::path::Path,
    outputs: &[&str],
) -> (Graph, Session) {
    let g = import_tf_meta_graph(meta, outputs).unwrap();
    let sess = Session::new(&g);
    sess.run_targets(&[g.global_variables_initializer().unwrap()], &[])
        .unwrap();
    Saver::new(&g, VarList::All)
        .unwrap()
        .restore(&sess, &prefix.to_string_lossy())
        .unwrap();
    (g, sess)
}

#[test]
fn a_tensorflow_meta_graph_imports_restores_and_gives_tensorflows_logits() {
    let exp = tf_probe::expected(&dir());
    let g = import_tf_meta_graph(
        &dir().join("model.ckpt-3.meta"),
        &["dnn/outputs/BiasAdd:0", "Mean"],
    )
    .unwrap();
    // The three layers' kernels and biases, registered as TF registers them; not the optimizer's.
    let vars: Vec<Variable> = g.get_collection(keys::GLOBAL_VARIABLES, None).unwrap();
    let mut names: Vec<String> = vars.iter().map(|v| v.name(&g)).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "hidden1/bias:0",
            "hidden1/kernel:0",
            "hidden2/bias:0",
            "hidden2/kernel:0",
            "outputs/bias:0",
            "outputs/kernel:0"
        ]
    );
    assert_eq!(g.trainable_variables().len(), 6);
    // Its initializers run (TF's random_uniform subgraphs and zeros).
    let sess = Session::new(&g);
    sess.run_targets(&[g.global_variables_initializer().unwrap()], &[])
        .unwrap();
    let kernel = sess.variable_value(vars[0]).unwrap().to_f64_vec();
    assert!(kernel.iter().any(|&w| w != 0.0) || names[0].ends_with("bias:0"));
    // Restored from TF's checkpoint, it gives TF's logits.
    Saver::new(&g, VarList::All)
        .unwrap()
        .restore(&sess, &dir().join("model.ckpt-3").to_string_lossy())
        .unwrap();
    let x = g.get_tensor_by_name("X:0").unwrap();
    let logits = g.get_tensor_by_name("dnn/outputs/BiasAdd:0").unwrap();
    tf_probe::assert_logits(&sess, x, logits, &exp, 1e-6);
}

#[test]
fn a_tensorflow_training_step_is_refused_naming_every_op_type_ferroflow_lacks() {
    let e = import_tf_meta_graph(&dir().join("model.ckpt-3.meta"), &["Adam"])
        .unwrap_err()
        .to_string();
    for op in ["ApplyAdam", "ReluGrad", "Shape", "Tile"] {
        assert!(e.contains(op), "{op} not named: {e}");
    }
    assert!(e.contains("(node 'gradients/"), "{e}");
    // The loss gradient reads the second output of TF's two-output cross-entropy op.
    assert!(
        e.contains("SparseSoftmaxCrossEntropyWithLogits:1 of a multi-output op"),
        "{e}"
    );
    // An output that is not in the graph is named.
    let e = import_tf_meta_graph(&dir().join("model.ckpt-3.meta"), &["nope:0"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("no node named 'nope'"), "{e}");
}

/// A CNN graph with TF2's resource variables (`VarHandleOp`, `ReadVariableOp`,
/// `AssignVariableOp`), from tests/data/tf-cnn-checkpoint (make_checkpoint.py there).
#[test]
fn a_tensorflow_cnn_meta_graph_with_resource_variables_gives_tensorflows_logits() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tf-cnn-checkpoint");
    let exp = tf_probe::expected(&dir);
    let (g, sess) = import_and_restore(
        &dir.join("model.ckpt.meta"),
        &dir.join("model.ckpt"),
        &["BiasAdd_1:0"],
    );
    let vars: Vec<Variable> = g.get_collection(keys::GLOBAL_VARIABLES, None).unwrap();
    assert_eq!(vars.len(), 8);
    let x = g.get_tensor_by_name("X:0").unwrap();
    let logits = g.get_tensor_by_name("BiasAdd_1:0").unwrap();
    tf_probe::assert_logits(&sess, x, logits, &exp, 1e-5);
}

/// ferroflow's own export imports back (`export_tf_meta_graph`, then `import_tf_meta_graph`): the
/// same outputs from the same variable values.
#[test]
fn an_exported_graph_imports_back_to_the_same_outputs() {
    use ferroflow::nn::layers::{dense, Activation};
    let g = Graph::new();
    let x = g
        .named("X")
        .placeholder(DType::F32, [None, Some(16)])
        .unwrap();
    let images = g.reshape(x, &[-1, 4, 4, 1]).unwrap();
    let k = g
        .constant(
            Value::from_f32(
                &[2, 2, 1, 3],
                (0..12).map(|i| i as f32 / 6.0 - 1.0).collect(),
            )
            .unwrap(),
        )
        .unwrap();
    let pooled = g
        .max_pool(
            g.conv2d(images, k, &[1, 1], "SAME").unwrap(),
            &[2, 2],
            &[2, 2],
            "VALID",
        )
        .unwrap();
    let flat = g.reshape(pooled, &[-1, 12]).unwrap();
    let h = dense(&g, flat, 5, Some(Activation::Elu), "hidden").unwrap();
    let out = g
        .log_softmax(dense(&g, h, 3, None, "out").unwrap())
        .unwrap();
    let path = std::env::temp_dir().join(format!("ff-roundtrip-{}.meta", std::process::id()));
    ferroflow::io::export_tf_meta_graph(&g, &path, &[out]).unwrap();
    let g2 = import_tf_meta_graph(&path, &[&format!("{}:0", g.op_name(out))]).unwrap();
    std::fs::remove_file(&path).unwrap();
    let (s1, s2) = (Session::new(&g), Session::new(&g2));
    s1.run_targets(&[g.global_variables_initializer().unwrap()], &[])
        .unwrap();
    s2.run_targets(&[g2.global_variables_initializer().unwrap()], &[])
        .unwrap();
    let vars2: Vec<Variable> = g2.get_collection(keys::GLOBAL_VARIABLES, None).unwrap();
    for v in g
        .get_collection::<Variable>(keys::GLOBAL_VARIABLES, None)
        .unwrap()
    {
        let twin = vars2.iter().find(|w| w.name(&g2) == v.name(&g)).unwrap();
        s2.set_variable_value(*twin, s1.variable_value(v).unwrap())
            .unwrap();
    }
    let input =
        Value::from_f32(&[2, 16], (0..32).map(|i| (i as f32 * 0.37).sin()).collect()).unwrap();
    let want = s1.run_one(out, &[feed(x, input.clone())]).unwrap();
    let x2 = g2.get_tensor_by_name("X:0").unwrap();
    let out2 = g2
        .get_tensor_by_name(&format!("{}:0", g.op_name(out)))
        .unwrap();
    assert_eq!(s2.run_one(out2, &[feed(x2, input)]).unwrap(), want);
}

/// A `Saver` saving in TensorFlow's format writes TF's `MetaGraphDef` beside the checkpoint: the
/// model, its initializers and the optimizer's variables, without ferroflow's gradient and update
/// ops; `import_meta_graph` reads it back with a saver of all its variables.
#[test]
fn a_tf_format_saver_writes_a_meta_graph_both_read() {
    use ferroflow::io::{import_meta_graph, SaveFormat};
    use ferroflow::nn::layers::{dense, Activation};
    use ferroflow::nn::{losses, Optimizer};
    let g = Graph::new();
    let x = g
        .named("X")
        .placeholder(DType::F32, [None, Some(4)])
        .unwrap();
    let y = g.named("y").placeholder(DType::I64, [None]).unwrap();
    let h = dense(&g, x, 6, Some(Activation::Relu), "hidden").unwrap();
    let logits = dense(&g, h, 3, None, "out").unwrap();
    let loss = losses::sparse_softmax_cross_entropy(&g, y, logits).unwrap();
    let train = Optimizer::adam(0.01)
        .minimize(&g, loss, None, None)
        .unwrap();
    let sess = Session::new(&g);
    sess.run_targets(&[g.global_variables_initializer().unwrap()], &[])
        .unwrap();
    let xv = Value::from_f32(&[2, 4], vec![0.5, -1.0, 2.0, 0.0, 1.5, 0.25, -0.5, 1.0]).unwrap();
    let yv = Value::from_i64(&[2], vec![2, 0]).unwrap();
    sess.run_targets(&[train], &[feed(x, xv.clone()), feed(y, yv)])
        .unwrap();
    let want = sess.run_one(logits, &[feed(x, xv.clone())]).unwrap();
    let dir = std::env::temp_dir().join(format!("ff-tfmeta-saver-{}", std::process::id()));
    let prefix = Saver::new(&g, VarList::All)
        .unwrap()
        .format(SaveFormat::TensorFlow)
        .save(&sess, &dir.join("model.ckpt").to_string_lossy(), Some(1))
        .unwrap();
    let meta = std::path::PathBuf::from(format!("{prefix}.meta"));
    // TensorFlow's format: no ferroflow magic, a protobuf the TF importer reads.
    assert_ne!(&std::fs::read(&meta).unwrap()[..6], b"FFMETA");
    let (g2, saver) = import_meta_graph(&meta).unwrap();
    let gradient_nodes = |g: &Graph| {
        g.operations()
            .iter()
            .filter(|o| g.node(o.index()).unwrap().name.starts_with("gradients/"))
            .count()
    };
    assert!(gradient_nodes(&g) > 0);
    assert_eq!(gradient_nodes(&g2), 0);
    let names: Vec<String> = g2
        .get_collection::<Variable>(keys::GLOBAL_VARIABLES, None)
        .unwrap()
        .iter()
        .map(|v| v.name(&g2))
        .collect();
    assert!(
        names.contains(&"hidden/kernel/Adam:0".to_string()),
        "{names:?}"
    );
    let s2 = Session::new(&g2);
    saver.unwrap().restore(&s2, &prefix).unwrap();
    let x2 = g2.get_tensor_by_name("X:0").unwrap();
    let logits2 = g2
        .get_tensor_by_name(&format!("{}:0", g.op_name(logits)))
        .unwrap();
    assert_eq!(s2.run_one(logits2, &[feed(x2, xv)]).unwrap(), want);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A batch-normalized network as TF1 code builds it (`tf.nn.moments`, `tf.nn.batch_normalization`,
/// moving averages through `UPDATE_OPS`), from tests/data/tf-bn-checkpoint (make_checkpoint.py
/// there): its logits in training mode (batch statistics) are TensorFlow's, and a moving mean
/// (not trainable) restores as TF left it.
#[test]
fn a_tensorflow_batch_norm_graph_gives_tensorflows_logits() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tf-bn-checkpoint");
    let exp = tf_probe::expected(&dir);
    let (g, sess) = import_and_restore(
        &dir.join("model.ckpt.meta"),
        &dir.join("model.ckpt"),
        &["logits:0", "bn1/moving_mean/read:0"],
    );
    let x = g.get_tensor_by_name("X:0").unwrap();
    let logits = g.get_tensor_by_name("logits:0").unwrap();
    tf_probe::assert_logits(&sess, x, logits, &exp, 1e-5);
    let mm: Vec<Variable> = g
        .get_collection(keys::GLOBAL_VARIABLES, Some("bn1/moving_mean"))
        .unwrap();
    let want: Vec<f64> = exp["bn1_moving_mean"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let got = sess.variable_value(mm[0]).unwrap().to_f64_vec();
    for (a, b) in got.iter().zip(&want) {
        assert!((a - b).abs() <= 1e-6, "{got:?} vs {want:?}");
    }
}
