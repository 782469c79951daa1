"""The MNIST CNN of `cargo run --release --example mnist_cnn`, trained by TensorFlow 1.x graph mode
with the same settings, for comparing the accuracy the network reaches:

    python scripts/tf_mnist_cnn.py [--seeds 3] [--epochs 14] [--learning-rate 0.001]
        [--decay-per-epoch 0.8] [--batch-size 32] [--data crates/data/data/mnist]

conv 32 3x3 ReLU SAME -> conv 64 3x3 stride 2 ReLU SAME -> max pool 2 -> flatten -> dense 64 ReLU ->
dropout 0.5 -> 10; Adam with tf.train.exponential_decay over the global step (one decay per epoch);
glorot-uniform kernels and zero biases (tf.layers' defaults); the last 5,000 training images held
out for validation. Prints the test accuracy of each seed and their mean and sample std.
"""
import argparse
import gzip
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402
import tensorflow.compat.v1 as tf  # noqa: E402

tf.disable_v2_behavior()


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def layer(x, units, name, activation=None):
    with tf.variable_scope(name):
        k = tf.get_variable("kernel", (int(x.shape[-1]), units), initializer=tf.glorot_uniform_initializer())
        b = tf.get_variable("bias", (units,), initializer=tf.zeros_initializer())
    z = tf.nn.bias_add(tf.matmul(x, k), b)
    return activation(z) if activation else z


def conv(x, filters, stride, name):
    with tf.variable_scope(name):
        k = tf.get_variable("kernel", (3, 3, int(x.shape[-1]), filters),
                            initializer=tf.glorot_uniform_initializer())
        b = tf.get_variable("bias", (filters,), initializer=tf.zeros_initializer())
    return tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(x, k, [1, stride, stride, 1], "SAME"), b))


def run(seed, data, a):
    (xtr, ytr), (xva, yva), (xte, yte) = data
    g = tf.Graph()
    with g.as_default():
        tf.set_random_seed(seed)
        x = tf.placeholder(tf.float32, (None, 784))
        y = tf.placeholder(tf.int64, (None,))
        training = tf.placeholder_with_default(False, ())
        h = conv(conv(tf.reshape(x, (-1, 28, 28, 1)), 32, 1, "conv2d"), 64, 2, "conv2d_1")
        h = tf.reshape(tf.nn.max_pool(h, [1, 2, 2, 1], [1, 2, 2, 1], "VALID"), (-1, 7 * 7 * 64))
        h = layer(h, 64, "dense", tf.nn.relu)
        h = tf.cond(training, lambda: tf.nn.dropout(h, rate=0.5), lambda: h)
        logits = layer(h, 10, "dense_1")
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        step = tf.train.get_or_create_global_step()
        per_epoch = -(-len(xtr) // a.batch_size)
        lr = tf.train.exponential_decay(a.learning_rate, step, per_epoch, a.decay_per_epoch)
        train = tf.train.AdamOptimizer(lr).minimize(loss, global_step=step)
        correct = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1), y), tf.float32))
        init = tf.global_variables_initializer()
    rng = np.random.default_rng(seed)
    with tf.Session(graph=g) as sess:
        sess.run(init)
        for _ in range(a.epochs):
            order = rng.permutation(len(xtr))
            for i in range(0, len(xtr), a.batch_size):
                b = order[i:i + a.batch_size]
                sess.run(train, {x: xtr[b], y: ytr[b], training: True})
        valid = sess.run(correct, {x: xva, y: yva})
        return sess.run(correct, {x: xte, y: yte}), valid


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=14)
    p.add_argument("--learning-rate", type=float, default=0.001)
    p.add_argument("--decay-per-epoch", type=float, default=0.8)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "crates", "data", "data", "mnist"))
    a = p.parse_args()
    load = lambda n: idx(os.path.join(a.data, n))  # noqa: E731
    images = load("train-images-idx3-ubyte.gz").reshape(-1, 784).astype(np.float32) / 255.0
    labels = load("train-labels-idx1-ubyte.gz").astype(np.int64)
    test = (load("t10k-images-idx3-ubyte.gz").reshape(-1, 784).astype(np.float32) / 255.0,
            load("t10k-labels-idx1-ubyte.gz").astype(np.int64))
    data = ((images[:-5000], labels[:-5000]), (images[-5000:], labels[-5000:]), test)
    accs = []
    for s in range(a.seeds):
        t0 = time.perf_counter()
        acc, valid = run(42 + s, data, a)
        accs.append(acc)
        print("seed %d: test accuracy %.2f%%, validation %.2f%% (%.1fs)"
              % (42 + s, 100 * acc, 100 * valid, time.perf_counter() - t0), flush=True)
    sd = np.std(accs, ddof=1) if len(accs) > 1 else 0.0
    print("mean test accuracy %.2f%% ± %.2f over %d seeds" % (100 * np.mean(accs), 100 * sd, len(accs)))


if __name__ == "__main__":
    main()
