"""A TensorFlow 2 object-based checkpoint (`tf.train.Checkpoint`), for ferroflow's reader test
(tests/integration/tf_checkpoint.rs): a Keras model (5 -> Dense 8 ReLU -> Dense 3) and its Adam
optimizer after one training step, saved as `tf.train.Checkpoint(model=..., optimizer=...)` does.
Its keys are the first object path that reaches each variable (with Keras 3 the model's variables
are first reached through the optimizer: `optimizer/_trainable_variables/0/.ATTRIBUTES/VARIABLE_VALUE`
is the first layer's kernel), and its `_CHECKPOINTABLE_OBJECT_GRAPH` entry holds the
serialized object graph. expected.json lists every key with its dtype and shape, each node's
children and attribute keys as TF's own proto decoder reads them, the object paths of each key (see
below), the first kernel's values, and a probe input with the model's output for it.

    /tmp/tf/bin/python tests/data/tf2-object-checkpoint/make_checkpoint.py tests/data/tf2-object-checkpoint
"""
import json
import os
import sys

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import trackable_object_graph_pb2

out = sys.argv[1]
tf.keras.utils.set_random_seed(3)
model = tf.keras.Sequential([tf.keras.Input((5,)), tf.keras.layers.Dense(8, activation="relu"),
                             tf.keras.layers.Dense(3)])
opt = tf.keras.optimizers.Adam(0.01)
x = np.linspace(-1, 1, 20, dtype=np.float32).reshape(4, 5)
y = np.array([0, 1, 2, 1])
with tf.GradientTape() as tape:
    loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(y, model(x), from_logits=True))
opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
prefix = tf.train.Checkpoint(model=model, optimizer=opt).write(os.path.join(out, "obj.ckpt"))

reader = tf.train.load_checkpoint(prefix)
keys = {name: {"shape": shape, "dtype": reader.get_variable_to_dtype_map()[name].name}
        for name, shape in tf.train.list_variables(prefix)}
graph = trackable_object_graph_pb2.TrackableObjectGraph()
graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
nodes = [{"children": [[c.node_id, c.local_name] for c in n.children],
          "attributes": [[a.name, a.checkpoint_key] for a in n.attributes],
          "slot_variables": [[s.original_variable_node_id, s.slot_name, s.slot_variable_node_id]
                             for s in n.slot_variables]}
         for n in graph.nodes]
# The object paths of each attribute's key: a breadth-first walk from the root (node 0) that expands
# each node once, from the first path that reaches it; every edge into a node adds a path to it.
first = {0: ""}
into = {}
queue = [0]
while queue:
    i = queue.pop(0)
    for child, name in ((c.node_id, c.local_name) for c in graph.nodes[i].children):
        path = (first[i] + "/" + name).lstrip("/")
        into.setdefault(child, []).append(path)
        if child not in first:
            first[child] = path
            queue.append(child)
paths = {a.checkpoint_key: into.get(i, []) for i, n in enumerate(graph.nodes) for a in n.attributes}
probe = np.linspace(-2, 2, 10, dtype=np.float32).reshape(2, 5)
json.dump({"generator": "tensorflow %s: make_checkpoint.py" % tf.__version__,
           "prefix": os.path.basename(prefix), "keys": keys, "nodes": nodes,
           "paths": paths, "kernel0": model.layers[0].kernel.numpy().ravel().tolist(),
           "probe_input": probe.tolist(), "probe_output": model(probe).numpy().tolist()},
          open(os.path.join(out, "expected.json"), "w"), indent=1)
