"""Reference values of TensorFlow's convolution and pooling ops for ferroflow's conv tests:
for each case the op's inputs, its output, an upstream gradient, and the gradients of
sum(output * upstream) with respect to each input. Float32, TensorFlow's 1.x graph mode (CPU).

The cases cover kernels 1, 3 and 5, strides 1 and 2, SAME and VALID, dilations 1 and 2, odd
sizes, batch 1 and 3, input channels 1, 3 and 8; max pooling over integer-valued inputs (tied
maxima) and average pooling with SAME windows that hang over the edge.

    python3 -m venv /tmp/tf && /tmp/tf/bin/pip install tensorflow-cpu
    /tmp/tf/bin/python tests/data/tf-reference/conv.py > tests/data/tf-reference/conv.json
"""
import itertools
import json

import numpy as np
import tensorflow as tf

tf1 = tf.compat.v1
tf1.disable_eager_execution()
rng = np.random.default_rng(20261207)


def rounded(a):
    # Six significant digits survive the trip through JSON exactly enough for 1e-5 comparisons.
    return [float("%.7g" % v) for v in a.ravel()]


def run(build, inputs):
    g = tf.Graph()
    with g.as_default():
        phs = {k: tf1.placeholder(tf.float32, v.shape) for k, v in inputs.items()}
        y = build(**phs)
        up = rng.uniform(-1, 1, y.shape.as_list()).astype(np.float32)
        names = list(inputs)
        grads = tf.gradients(y, [phs[k] for k in names], grad_ys=[tf.constant(up)])
        with tf1.Session() as s:
            out = s.run([y] + [gr for gr in grads if gr is not None],
                        {phs[k]: v for k, v in inputs.items()})
    result = {"inputs": {k: {"shape": list(v.shape), "data": rounded(v)} for k, v in inputs.items()},
              "output": {"shape": list(out[0].shape), "data": rounded(out[0])},
              "upstream": {"shape": list(up.shape), "data": rounded(up)}, "grads": {}}
    it = iter(out[1:])
    for k, gr in zip(names, grads):
        v = next(it) if gr is not None else None
        result["grads"][k] = None if v is None else {"shape": list(v.shape), "data": rounded(v)}
    return result


cases = []
# Convolutions: every kernel × stride × padding, with dilation, batch, channels and the (odd)
# spatial sizes cycling through their values; dilation 2 only with stride 1 (TF's CPU kernel has no
# dilated strided convolution).
sizes = [(7, 6), (9, 5), (5, 8), (6, 9)]
for i, (k, s, pad) in enumerate(itertools.product([1, 3, 5], [1, 2], ["SAME", "VALID"])):
    for d in ([1, 2] if s == 1 else [1]):
        n = [1, 3][i % 2]
        c = [1, 3, 8][(i + d) % 3]
        o = [2, 4][i % 2]
        h, w = sizes[(i + d) % len(sizes)]
        if pad == "VALID" and (k - 1) * d + 1 > min(h, w):
            continue
        x = rng.uniform(-1, 1, (n, h, w, c)).astype(np.float32)
        f = rng.uniform(-1, 1, (k, k, c, o)).astype(np.float32)
        r = run(lambda x, filter: tf.nn.conv2d(x, filter, [1, s, s, 1], pad, dilations=[1, d, d, 1]),
                {"x": x, "filter": f})
        r.update(name="conv2d_k%d_s%d_d%d_%s_n%d_c%d" % (k, s, d, pad.lower(), n, c), op="conv2d",
                 attrs={"strides": [s, s], "dilations": [d, d], "padding": pad})
        cases.append(r)
# A non-square filter with unequal strides.
x = rng.uniform(-1, 1, (2, 9, 7, 3)).astype(np.float32)
f = rng.uniform(-1, 1, (3, 2, 3, 5)).astype(np.float32)
r = run(lambda x, filter: tf.nn.conv2d(x, filter, [1, 2, 1, 1], "SAME"), {"x": x, "filter": f})
r.update(name="conv2d_k3x2_s2x1_same", op="conv2d",
         attrs={"strides": [2, 1], "dilations": [1, 1], "padding": "SAME"})
cases.append(r)

# Pooling: max over small integers (ties inside windows), average over uniform values.
for op, k, s, pad in itertools.product(["max_pool", "avg_pool"], [2, 3], [1, 2], ["SAME", "VALID"]):
    shape = (2, 7, 5, 3) if k == 3 else (1, 6, 7, 2)
    if op == "max_pool":
        x = rng.integers(-3, 4, shape).astype(np.float32)
    else:
        x = rng.uniform(-1, 1, shape).astype(np.float32)
    fn = getattr(tf.nn, op)
    r = run(lambda x: fn(x, [1, k, k, 1], [1, s, s, 1], pad), {"x": x})
    r.update(name="%s_k%d_s%d_%s" % (op, k, s, pad.lower()), op=op,
             attrs={"ksize": [k, k], "strides": [s, s], "padding": pad})
    cases.append(r)

x = rng.uniform(-1, 1, (2, 3, 4, 5)).astype(np.float32)
b = rng.uniform(-1, 1, (5,)).astype(np.float32)
r = run(lambda x, bias: tf.nn.bias_add(x, bias), {"x": x, "bias": b})
r.update(name="bias_add_nhwc", op="bias_add", attrs={})
cases.append(r)

print(json.dumps({
    "generator": "tensorflow %s (tf.compat.v1 graph mode, CPU): conv.py" % tf.__version__,
    "convention": "grads[k] = d(sum(output * upstream)) / d(inputs[k]); float32, row-major",
    "cases": cases,
}))
