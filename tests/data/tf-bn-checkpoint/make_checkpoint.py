"""A TensorFlow 1.x batch-normalized network's graph and checkpoint, for ferroflow's
`import_tf_meta_graph` test (tests/integration/tf_meta_import.rs).

Three hidden layers of 16 units, each product batch-normalized in training mode with
`tf.nn.moments` and `tf.nn.batch_normalization` (epsilon 1e-3) before its ReLU, moving averages
updated through UPDATE_OPS with momentum 0.9, as the benchmark's `deep_bn` (bench/tf1_models.py)
and the lecture build it; 10 logits. Trained three Adam steps on random data, then saved with
tf.compat.v1.train.Saver (format V2, with `model.ckpt.meta`). expected.json holds the probe
inputs (6 rows of 20) and the logits TensorFlow computes for them in training mode (batch
statistics), and the moving means after training.

    /tmp/tf/bin/python tests/data/tf-bn-checkpoint/make_checkpoint.py tests/data/tf-bn-checkpoint
"""
import json
import os
import sys

import numpy as np
import tensorflow as tf

tf1 = tf.compat.v1
tf1.disable_eager_execution()
out = sys.argv[1]
rng = np.random.default_rng(5)

g = tf.Graph()
with g.as_default():
    tf1.set_random_seed(4)
    X = tf1.placeholder(tf.float32, [None, 20], name="X")
    y = tf1.placeholder(tf.int64, [None], name="y")

    def normalized(z, scope, momentum=0.9, epsilon=1e-3):
        units = int(z.shape[1])
        with tf1.variable_scope(scope):
            make = lambda name, init, trainable=True: tf1.get_variable(  # noqa: E731
                name, (units,), initializer=init, trainable=trainable, use_resource=False)
            gamma, beta = make("gamma", tf1.ones_initializer()), make("beta", tf1.zeros_initializer())
            moving_mean = make("moving_mean", tf1.zeros_initializer(), False)
            moving_var = make("moving_variance", tf1.ones_initializer(), False)
        mean, var = tf.nn.moments(z, [0])
        for moving, batch_stat in ((moving_mean, mean), (moving_var, var)):
            update = tf1.assign_sub(moving, (1.0 - momentum) * (moving - batch_stat))
            tf1.add_to_collection(tf1.GraphKeys.UPDATE_OPS, update)
        return tf.nn.batch_normalization(z, mean, var, beta, gamma, epsilon)

    h = X
    for i in range(1, 4):
        with tf1.variable_scope("hidden%d" % i):
            k = tf1.get_variable("kernel", (int(h.shape[1]), 16), use_resource=False,
                                 initializer=tf1.variance_scaling_initializer(scale=2.0))
        h = tf.nn.relu(normalized(tf.matmul(h, k), "bn%d" % i))
    with tf1.variable_scope("outputs"):
        k = tf1.get_variable("kernel", (16, 10), use_resource=False)
        b = tf1.get_variable("bias", (10,), initializer=tf1.zeros_initializer(), use_resource=False)
    logits = tf.nn.bias_add(tf.matmul(h, k), b, name="logits")
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
    with tf1.control_dependencies(tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)):
        train = tf1.train.AdamOptimizer(0.01).minimize(loss)
    saver = tf1.train.Saver()
    with tf1.Session(graph=g) as sess:
        sess.run(tf1.global_variables_initializer())
        for _ in range(3):
            sess.run(train, {X: rng.normal(size=(32, 20)).astype(np.float32),
                             y: rng.integers(0, 10, 32)})
        saver.save(sess, os.path.join(out, "model.ckpt"))
        probe = rng.normal(size=(6, 20)).astype(np.float32)
        lv = sess.run(logits, {X: probe})
        moving = sess.run(g.get_tensor_by_name("bn1/moving_mean:0"))

json.dump({
    "generator": "tensorflow %s (tf.compat.v1 graph mode): make_checkpoint.py" % tf.__version__,
    "probe_input": {"shape": list(probe.shape), "data": [float(v) for v in probe.ravel()]},
    "probe_logits": {"shape": list(lv.shape), "data": [float(v) for v in lv.ravel()]},
    "bn1_moving_mean": [float(v) for v in moving],
}, open(os.path.join(out, "expected.json"), "w"), indent=1)
