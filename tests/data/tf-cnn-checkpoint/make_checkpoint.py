"""A TensorFlow 1.x CNN checkpoint for ferroflow's restore test (tests/integration/tf_cnn_checkpoint.rs).

The network is the MNIST CNN's layout at 8×8×1 (the size of the bundled digits), built as
tf.compat.v1.layers builds it (Keras 3 removed those functions, so the same variables and ops are
made by hand under the layers' names):

    conv2d    = relu(conv2d(X, conv2d/kernel [3,3,1,8], SAME) + conv2d/bias)
    conv2d_1  = relu(conv2d(conv2d, conv2d_1/kernel [3,3,8,16], stride 2, SAME) + bias)   # 4×4
    pooled    = max_pool(conv2d_1, 2, 2, VALID)                                          # 2×2
    flat      = reshape(pooled, [-1, 64])
    dense     = relu(flat · dense/kernel [64,32] + dense/bias)
    logits    = dense · dense_1/kernel [32,10] + dense_1/bias

trained three Adam steps on random data, then saved with tf.compat.v1.train.Saver (format V2, with
the graph as `model.ckpt.meta`, a MetaGraphDef).
expected.json holds the probe inputs (4 images) and the logits TensorFlow computes for them.

    /tmp/tf/bin/python tests/data/tf-cnn-checkpoint/make_checkpoint.py tests/data/tf-cnn-checkpoint
"""
import json
import os
import sys

import numpy as np
import tensorflow as tf

tf1 = tf.compat.v1
tf1.disable_eager_execution()
out = sys.argv[1]
rng = np.random.default_rng(7)

g = tf.Graph()
with g.as_default():
    tf1.set_random_seed(3)
    X = tf1.placeholder(tf.float32, [None, 8, 8, 1], name="X")
    y = tf1.placeholder(tf.int64, [None], name="y")

    def conv(x, filters, stride, name):
        with tf1.variable_scope(name):
            k = tf1.get_variable("kernel", [3, 3, x.shape[-1], filters],
                                 initializer=tf1.glorot_uniform_initializer())
            b = tf1.get_variable("bias", [filters], initializer=tf1.random_normal_initializer(0, 0.1))
        with tf1.name_scope(name):
            return tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(x, k, [1, stride, stride, 1], "SAME"), b))

    def dense(x, units, activation, name):
        with tf1.variable_scope(name):
            k = tf1.get_variable("kernel", [x.shape[-1], units],
                                 initializer=tf1.glorot_uniform_initializer())
            b = tf1.get_variable("bias", [units], initializer=tf1.random_normal_initializer(0, 0.1))
        z = tf.nn.bias_add(tf.matmul(x, k), b)
        return activation(z) if activation else z

    c1 = conv(X, 8, 1, "conv2d")
    c2 = conv(c1, 16, 2, "conv2d_1")
    pooled = tf.nn.max_pool(c2, [1, 2, 2, 1], [1, 2, 2, 1], "VALID")
    flat = tf.reshape(pooled, [-1, 64])
    h = dense(flat, 32, tf.nn.relu, "dense")
    logits = dense(h, 10, None, "dense_1")
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
    model_vars = tf1.trainable_variables()
    train = tf1.train.AdamOptimizer(0.01).minimize(loss)
    saver = tf1.train.Saver(model_vars)
    with tf1.Session(graph=g) as sess:
        sess.run(tf1.global_variables_initializer())
        for _ in range(3):
            xb = rng.uniform(0, 16, (32, 8, 8, 1)).astype(np.float32)
            yb = rng.integers(0, 10, 32)
            sess.run(train, {X: xb, y: yb})
        saver.save(sess, os.path.join(out, "model.ckpt"))
        probe = rng.uniform(0, 16, (4, 8, 8, 1)).astype(np.float32)
        lv = sess.run(logits, {X: probe})

json.dump({
    "generator": "tensorflow %s (tf.compat.v1 graph mode): make_checkpoint.py" % tf.__version__,
    "variables": [v.op.name for v in model_vars],
    "probe_input": {"shape": list(probe.shape), "data": [float(v) for v in probe.ravel()]},
    "probe_logits": {"shape": list(lv.shape), "data": [float(v) for v in lv.ravel()]},
}, open(os.path.join(out, "expected.json"), "w"), indent=1)
