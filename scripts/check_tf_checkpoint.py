"""Reads a checkpoint that ferroflow wrote in TensorFlow's V2 format with Python TensorFlow itself.

Usage: python check_tf_checkpoint.py OUT_DIR   (OUT_DIR as given to `cargo run --example tf_export`)

1. tf.train.list_variables / load_checkpoint: every key ferroflow saved is there, with the sum
   ferroflow computed.
2. The same network built with tf.compat.v1 (tf.layers.dense's names: hidden1/kernel, ...) and restored
   with tf.compat.v1.train.Saver gives ferroflow's logits on the probe inputs within 1e-4.
3. The same for the CNN (cnn_probe.json): tf.layers.conv2d's names conv2d/kernel, conv2d_1/...,
   tf.nn.conv2d, max_pool, dense and dense_1.
4. For both: the inference graph ferroflow exported as a MetaGraphDef (PREFIX-inference.meta), and
   the MetaGraphDef the Saver wrote beside the checkpoint (PREFIX.meta: all of the graph TF can
   represent, the optimizer's variables included), load with tf.compat.v1.train.import_meta_graph, its variables' initializers run, a
   tf.compat.v1.train.Saver() built from its `variables` collection restores the checkpoint, and
   running the logits tensor by its name gives ferroflow's logits within 1e-4.
5. Every op that ferroflow writes as a TensorFlow node (ops-inference.meta, ops_probe.json): the
   imported graph computes each output as ferroflow did, within 1e-5 (relative, plus 1e-6).
Exits non-zero on any mismatch.
"""
import json
import sys

import numpy as np
import tensorflow as tf

out = sys.argv[1]
probe = json.load(open(f"{out}/probe.json"))
prefix = probe["prefix"]

reader = tf.train.load_checkpoint(prefix)
listed = dict(tf.train.list_variables(prefix))
missing = sorted(set(probe["sums"]) - set(listed))
assert not missing, f"keys missing in TensorFlow's view: {missing}"
for key, want in probe["sums"].items():
    got = float(np.sum(reader.get_tensor(key).astype(np.float64)))
    assert abs(got - want) <= 1e-4 * max(1.0, abs(want)), f"{key}: sum {got} vs ferroflow {want}"
print(f"tf.train.load_checkpoint: {len(probe['sums'])} keys, sums match")

tf.compat.v1.disable_eager_execution()
g = tf.Graph()
with g.as_default():
    X = tf.compat.v1.placeholder(tf.float32, [None, 64], name="X")

    def dense(x, units, activation, name):
        # tf.compat.v1.layers.dense's variables (Keras 3 removed the function itself).
        with tf.compat.v1.variable_scope(name):
            w = tf.compat.v1.get_variable("kernel", [x.shape[1], units])
            b = tf.compat.v1.get_variable("bias", [units])
        z = tf.matmul(x, w) + b
        return activation(z) if activation else z

    with tf.compat.v1.name_scope("dnn"):
        h1 = dense(X, 50, tf.nn.elu, "hidden1")
        h2 = dense(h1, 30, tf.nn.relu, "hidden2")
        logits = dense(h2, 10, None, "outputs")
    saver = tf.compat.v1.train.Saver(tf.compat.v1.global_variables())
    with tf.compat.v1.Session(graph=g) as sess:
        saver.restore(sess, prefix)
        got = sess.run(logits, {X: np.array(probe["inputs"], np.float32)})
want = np.array(probe["logits"], np.float32)
err = float(np.max(np.abs(got - want)))
assert err <= 1e-4 * max(1.0, float(np.max(np.abs(want)))), f"logits differ by {err}"
print(f"tf.compat.v1.train.Saver.restore: logits of {len(want)} probes match ferroflow's (max diff {err:.2e})")

cnn = json.load(open(f"{out}/cnn_probe.json"))
g = tf.Graph()
with g.as_default():
    X = tf.compat.v1.placeholder(tf.float32, [None, 64], name="X")

    def conv(x, filters, stride, name):
        with tf.compat.v1.variable_scope(name):
            k = tf.compat.v1.get_variable("kernel", [3, 3, x.shape[-1], filters])
            b = tf.compat.v1.get_variable("bias", [filters])
        return tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(x, k, [1, stride, stride, 1], "SAME"), b))

    h = conv(conv(tf.reshape(X, [-1, 8, 8, 1]), 8, 1, "conv2d"), 16, 2, "conv2d_1")
    h = tf.reshape(tf.nn.max_pool(h, [1, 2, 2, 1], [1, 2, 2, 1], "VALID"), [-1, 64])
    logits = dense(dense(h, 32, tf.nn.relu, "dense"), 10, None, "dense_1")
    saver = tf.compat.v1.train.Saver(tf.compat.v1.global_variables())
    with tf.compat.v1.Session(graph=g) as sess:
        saver.restore(sess, cnn["prefix"])
        got = sess.run(logits, {X: np.array(cnn["inputs"], np.float32)})
want = np.array(cnn["logits"], np.float32)
err = float(np.max(np.abs(got - want)))
assert err <= 1e-4 * max(1.0, float(np.max(np.abs(want)))), f"CNN logits differ by {err}"
print(f"tf.compat.v1.train.Saver.restore: the CNN's logits of {len(want)} probes match ferroflow's (max diff {err:.2e})")
for probe_file, suffix in [(f, s) for f in ["probe.json", "cnn_probe.json"] for s in ["-inference.meta", ".meta"]]:
    p = json.load(open(f"{out}/{probe_file}"))
    g = tf.Graph()
    with g.as_default():
        tf.compat.v1.train.import_meta_graph(f"{p['prefix']}{suffix}")
        names = sorted(v.name for v in tf.compat.v1.global_variables())
        trainable = sorted(v.name for v in tf.compat.v1.trainable_variables())
        # The inference graph has the model's variables; the Saver's .meta the optimizer's too.
        assert trainable and set(trainable) <= set(names), f"collections: {names} vs {trainable}"
        assert suffix == ".meta" or names == trainable, f"collections: {names} vs {trainable}"
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session(graph=g) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            saver.restore(sess, p["prefix"])
            got = sess.run(p["logits_tensor"], {"X:0": np.array(p["inputs"], np.float32)})
    want = np.array(p["logits"], np.float32)
    err = float(np.max(np.abs(got - want)))
    assert err <= 1e-4 * max(1.0, float(np.max(np.abs(want)))), f"{probe_file}: imported graph's logits differ by {err}"
    print(f"tf.compat.v1.train.import_meta_graph({suffix}): {len(names)} variables, {p['logits_tensor']} of {len(want)} probes matches ferroflow's (max diff {err:.2e})")
zoo = json.load(open(f"{out}/ops_probe.json"))
g = tf.Graph()
with g.as_default():
    tf.compat.v1.train.import_meta_graph(zoo["meta"])
    names = list(zoo["outputs"])
    with tf.compat.v1.Session(graph=g) as sess:
        got = sess.run(names, {"X:0": np.array(zoo["inputs"], np.float32),
                               "labels:0": np.array(zoo["labels"], np.int64)})
worst = 0.0
for name, value in zip(names, got):
    want = np.array(zoo["outputs"][name], np.float64)
    value = np.asarray(value, np.float64).ravel()
    assert value.shape == want.shape, f"{name}: {value.shape} values vs ferroflow's {want.shape}"
    err = np.abs(value - want) - 1e-5 * np.abs(want)
    assert float(np.max(err)) <= 1e-6, f"{name}: differs by {float(np.max(np.abs(value - want)))}"
    worst = max(worst, float(np.max(np.abs(value - want))))
print(f"tf.compat.v1.train.import_meta_graph: {len(names)} ops compute ferroflow's outputs (max diff {worst:.2e})")
print("OK: TensorFlow reads ferroflow's checkpoints and inference graphs")
