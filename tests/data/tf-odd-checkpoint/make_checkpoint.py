"""A TensorFlow checkpoint with unusual entries, for ferroflow's reader test
(tests/integration/tf_checkpoint.rs): float16 and bfloat16 variables, int32, int16, int8 and uint8
ones, a string
variable, a variable split into two partitions, and an ordinary float32 one. Written by
tf.compat.v1.train.Saver (format V2); expected.json holds each variable's values as TF reads them.

    /tmp/tf/bin/python tests/data/tf-odd-checkpoint/make_checkpoint.py tests/data/tf-odd-checkpoint
"""
import json
import os
import sys

import numpy as np
import tensorflow as tf

tf1 = tf.compat.v1
tf1.disable_eager_execution()
out = sys.argv[1]
g = tf.Graph()
with g.as_default():
    plain = tf1.get_variable("plain", initializer=np.arange(6, dtype=np.float32).reshape(2, 3) / 4)
    half = tf1.get_variable("half", initializer=np.array([0.5, -1.25, 3.0e-3, 65504.0], np.float16))
    bf = tf1.get_variable("bf16", initializer=tf.constant([1.0, -2.5, 0.1, 300.0], tf.bfloat16))
    i32 = tf1.get_variable("count", initializer=np.array([7, -3, 2147483647], np.int32))
    i16 = tf1.get_variable("i16", initializer=np.array([-32768, 300, 32767], np.int16))
    i8 = tf1.get_variable("i8", initializer=np.array([-128, -1, 127], np.int8))
    u8 = tf1.get_variable("u8", initializer=np.array([0, 200, 255], np.uint8))
    text = tf1.get_variable("note", initializer=tf.constant("hello"), dtype=tf.string)
    parts = tf1.get_variable("split", shape=[4, 2], initializer=tf1.random_uniform_initializer(seed=1),
                             partitioner=tf1.fixed_size_partitioner(2))
    saver = tf1.train.Saver()
    with tf1.Session(graph=g) as sess:
        sess.run(tf1.global_variables_initializer())
        prefix = saver.save(sess, os.path.join(out, "odd.ckpt"), write_meta_graph=False)
reader = tf.train.load_checkpoint(prefix)
values = {}
for name, shape in tf.train.list_variables(prefix):
    v = reader.get_tensor(name)
    if isinstance(v, bytes):
        values[name] = {"dtype": "string", "value": v.decode()}
    else:
        values[name] = {"dtype": str(v.dtype), "shape": list(v.shape),
                        "data": [float(x) for x in np.asarray(v, np.float64).ravel()]}
json.dump({"generator": "tensorflow %s: make_checkpoint.py" % tf.__version__, "variables": values},
          open(os.path.join(out, "expected.json"), "w"), indent=1)
