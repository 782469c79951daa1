#!/usr/bin/env python3
"""Reads the event files that `cargo run --example tensorboard -- LOGDIR` wrote, with the tensorboard
package's own reader, and checks tags, steps and values. Exit status 0 when everything matches."""
import sys
from tensorboard.backend.event_processing import event_accumulator

logdir = sys.argv[1]
ea = event_accumulator.EventAccumulator(logdir, size_guidance={"scalars": 0, "histograms": 0})
ea.Reload()
tags = ea.Tags()
assert "train/loss" in tags["scalars"], tags
loss = [(e.step, round(e.value, 6)) for e in ea.Scalars("train/loss")]
assert loss == [(0, 1.0), (1, 0.5), (2, 0.25)], loss
assert "hidden1/kernel_hist" in tags["histograms"], tags
h = ea.Histograms("hidden1/kernel_hist")[-1]
assert h.step == 2 and h.histogram_value.num == 6, h
assert tags["graph"], "no graph"
g = ea.Graph()
names = [n.name for n in g.node]
assert "dnn/hidden1/MatMul" in names and any(n.op == "MatMul" for n in g.node), names[:20]
print("tensorboard check: %d scalars, %d histograms, graph with %d nodes: ok" % (len(loss), len(tags["histograms"]), len(names)))
