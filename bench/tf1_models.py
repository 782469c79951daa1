"""The benchmark models trained by TensorFlow's 1.x graph mode (tf.compat.v1, oneDNN kernels).

    python tf1_models.py [--threads 2] [--models book,deep,deep_bn,cnn] [--batches 32,256,2048] [--seconds 3]

prints one JSON line per model and batch, the same fields as `ferroflow bench`:
{"engine", "model", "batch", "threads", "steps_per_s", "samples_per_s"}.

The models (ferroflow's `crates/tools/src/bench.rs` builds the same graphs):
- book: 784 -> 5 hidden layers of 100 ELU -> 10 logits; Adam(1e-3) on the mean sparse softmax
  cross-entropy.
- deep: 784 -> 12 hidden layers of 300 ReLU -> 10; momentum SGD (lr 0.01, momentum 0.9) with the
  gradients clipped to a global norm of 5.
- deep_bn: deep, with each hidden layer's product (no bias) batch-normalized in training mode
  (tf.nn.moments over the batch, epsilon 1e-3, moving averages with momentum 0.9 updated through
  UPDATE_OPS every step) before its ReLU.
- cnn: the classic TF1 MNIST CNN on the 784 inputs as 28x28x1: conv 32 3x3 ReLU SAME -> conv 64 3x3
  stride 2 ReLU SAME -> max pool 2 -> flatten -> dense 64 ReLU -> dropout 0.5 -> 10; Adam(1e-3).
Every kernel is He-initialized (variance scaling 2.0, truncated normal), biases start at zero. The
input is one fixed batch of uniform floats and labels 0-9; 20 warm-up steps, then steps are counted
for the given time.
"""
import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402
import tensorflow.compat.v1 as tf  # noqa: E402

tf.disable_v2_behavior()

SPECS = {"book": (5, 100, tf.nn.elu), "deep": (12, 300, tf.nn.relu), "deep_bn": (12, 300, tf.nn.relu)}


def layer(inputs, units, scope, use_bias=True):
    with tf.variable_scope(scope):
        kernel = tf.get_variable("kernel", (int(inputs.shape[1]), units),
                                 initializer=tf.variance_scaling_initializer(scale=2.0))
        out = tf.matmul(inputs, kernel)
        if use_bias:
            out = out + tf.get_variable("bias", (units,), initializer=tf.zeros_initializer())
        return out


def normalized(z, scope, momentum=0.9, epsilon=1e-3):
    units = int(z.shape[1])
    with tf.variable_scope(scope):
        make = lambda name, init, trainable=True: tf.get_variable(  # noqa: E731
            name, (units,), initializer=init, trainable=trainable)
        gamma, beta = make("gamma", tf.ones_initializer()), make("beta", tf.zeros_initializer())
        moving_mean = make("moving_mean", tf.zeros_initializer(), False)
        moving_var = make("moving_variance", tf.ones_initializer(), False)
    mean, var = tf.nn.moments(z, [0])
    for moving, batch_stat in ((moving_mean, mean), (moving_var, var)):
        update = tf.assign_sub(moving, (1.0 - momentum) * (moving - batch_stat))
        tf.add_to_collection(tf.GraphKeys.UPDATE_OPS, update)
    return tf.nn.batch_normalization(z, mean, var, beta, gamma, epsilon)


def conv(inputs, filters, stride, scope):
    with tf.variable_scope(scope):
        kernel = tf.get_variable("kernel", (3, 3, int(inputs.shape[3]), filters),
                                 initializer=tf.variance_scaling_initializer(scale=2.0))
        bias = tf.get_variable("bias", (filters,), initializer=tf.zeros_initializer())
        return tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(inputs, kernel, [1, stride, stride, 1], "SAME"),
                                         bias))


def cnn_train_op():
    x = tf.placeholder(tf.float32, (None, 784), name="X")
    y = tf.placeholder(tf.int64, (None,), name="y")
    h = conv(conv(tf.reshape(x, (-1, 28, 28, 1)), 32, 1, "conv1"), 64, 2, "conv2")
    h = tf.reshape(tf.nn.max_pool(h, [1, 2, 2, 1], [1, 2, 2, 1], "VALID"), (-1, 7 * 7 * 64))
    h = tf.nn.dropout(tf.nn.relu(layer(h, 64, "fc1")), rate=0.5)
    logits = layer(h, 10, "outputs")
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
    return x, y, tf.train.AdamOptimizer(1e-3).minimize(loss)


def train_op(model):
    if model == "cnn":
        return cnn_train_op()
    depth, width, activation = SPECS[model]
    x = tf.placeholder(tf.float32, (None, 784), name="X")
    y = tf.placeholder(tf.int64, (None,), name="y")
    h = x
    for i in range(1, depth + 1):
        if model == "deep_bn":
            h = activation(normalized(layer(h, width, "hidden%d" % i, use_bias=False), "bn%d" % i))
        else:
            h = activation(layer(h, width, "hidden%d" % i))
    logits = layer(h, 10, "outputs")
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
    if model == "book":
        return x, y, tf.train.AdamOptimizer(1e-3).minimize(loss)
    optimizer = tf.train.MomentumOptimizer(0.01, 0.9)
    pairs = optimizer.compute_gradients(loss)
    clipped, _ = tf.clip_by_global_norm([g for g, _ in pairs], 5.0)
    with tf.control_dependencies(tf.get_collection(tf.GraphKeys.UPDATE_OPS)):
        return x, y, optimizer.apply_gradients(list(zip(clipped, [v for _, v in pairs])))


def steps_per_second(model, batch, threads, seconds):
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(1)
        x, y, train = train_op(model)
        init = tf.global_variables_initializer()
    rng = np.random.default_rng(1)
    feed = {x: rng.random((batch, 784), dtype=np.float32), y: rng.integers(0, 10, batch)}
    config = tf.ConfigProto(intra_op_parallelism_threads=threads, inter_op_parallelism_threads=1)
    with tf.Session(graph=graph, config=config) as sess:
        sess.run(init)
        for _ in range(20):
            sess.run(train, feed)
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            sess.run(train, feed)
            steps += 1
        return steps / (time.perf_counter() - start)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--models", default="book,deep,deep_bn")
    p.add_argument("--batches", default="32,256,2048")
    p.add_argument("--seconds", type=float, default=3.0)
    a = p.parse_args()
    for model in a.models.split(","):
        for batch in (int(b) for b in a.batches.split(",")):
            sps = steps_per_second(model, batch, a.threads, a.seconds)
            print(json.dumps({"engine": "tensorflow-v1-graph " + tf.__version__, "model": model,
                              "batch": batch, "threads": a.threads, "steps_per_s": round(sps, 2),
                              "samples_per_s": round(sps * batch, 1)}), flush=True)


if __name__ == "__main__":
    main()
