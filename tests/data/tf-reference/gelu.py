"""Reference values of tf.nn.gelu(x, approximate=False) for ferroflow's unary tests: the output, the
gradient of sum(y * upstream) with respect to x, and the gradient of sum(dx * upstream2) with respect
to x (the second derivative through the first gradient). Float32, TensorFlow's 1.x graph mode.

    python3 -m venv /tmp/tf && /tmp/tf/bin/pip install tensorflow-cpu
    /tmp/tf/bin/python tests/data/tf-reference/gelu.py > tests/data/tf-reference/gelu.json
"""
import json

import numpy as np
import tensorflow as tf

tf1 = tf.compat.v1
tf1.disable_eager_execution()

xs = np.array([-6.0, -3.5, -2.0, -1.2, -0.7, -0.25, -1e-3, 0.0, 1e-3, 0.3, 0.8, 1.5, 2.2, 3.0, 5.0, 9.0],
              dtype=np.float32)
up = np.linspace(-1.3, 1.7, xs.size).astype(np.float32)
up2 = np.linspace(0.9, -0.6, xs.size).astype(np.float32)

g = tf.Graph()
with g.as_default():
    x = tf1.placeholder(tf.float32, [xs.size])
    y = tf.nn.gelu(x, approximate=False)
    (dx,) = tf.gradients(y, [x], grad_ys=[tf.constant(up)])
    (ddx,) = tf.gradients(dx, [x], grad_ys=[tf.constant(up2)])
    with tf1.Session() as s:
        yv, dxv, ddxv = s.run([y, dx, ddx], {x: xs})

print(json.dumps({
    "generator": "tensorflow %s (tf.compat.v1 graph mode), tf.nn.gelu(x, approximate=False)" % tf.__version__,
    "x": xs.tolist(), "upstream": up.tolist(), "upstream2": up2.tolist(),
    "y": yv.tolist(), "dx": dxv.tolist(), "ddx": ddxv.tolist(),
}, indent=1))
