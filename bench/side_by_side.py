#!/usr/bin/env python3
"""ferroflow against TensorFlow 1.x graph mode (and JAX, when given a Python that has it), side by
side on this machine: for each model and batch, rounds that run every engine once in turn, and the
median over rounds of the per-round ratios of steps per second, so that the machine's drift between
minutes cancels out.

    python3 bench/side_by_side.py --tf-python VENV/bin/python [--jax-python VENV/bin/python] \
        [--ferroflow "target/release/ferroflow bench"] [--models book,deep,deep_bn,cnn] \
        [--batches 32,256,2048] [--threads 2] [--seconds 2] [--rounds 3] [--busy N [--quiet-too]] \
        [--baseline "OTHER/ferroflow bench"] [--json out.json]

`--busy N` runs N competing busy processes (one spinning core each) while every engine measures;
with `--quiet-too` each round measures every engine without them as well, and the table shows the
share of its quiet speed each engine kept. `--baseline` adds another ferroflow binary (a build
before a change) as one more engine, to compare the two in the same sitting.
"""
import argparse
import contextlib
import json
import os
import shlex
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def one_line(cmd):
    out = subprocess.run(cmd, capture_output=True, text=True,
                         env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    rows = [json.loads(l) for l in out.stdout.splitlines() if l.startswith("{")]
    if out.returncode != 0 or len(rows) != 1:
        sys.exit("failed (%d): %s\n%s%s" % (out.returncode, " ".join(cmd), out.stdout[-1500:],
                                            out.stderr[-1500:]))
    return rows[0]["steps_per_s"]


@contextlib.contextmanager
def busy(n):
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for s in spinners:
            s.kill()
            s.wait()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tf-python", required=True)
    p.add_argument("--jax-python")
    p.add_argument("--baseline", help="another ferroflow bench command, compared as an engine")
    p.add_argument("--ferroflow", default="target/release/ferroflow bench")
    p.add_argument("--models", default="book,deep,deep_bn")
    p.add_argument("--batches", default="32,256,2048")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--busy", type=int, default=0, help="competing busy processes")
    p.add_argument("--quiet-too", action="store_true", help="with --busy: also measure without load")
    p.add_argument("--json")
    a = p.parse_args()

    def engines(model, batch):
        common = ["--threads", str(a.threads), "--models", model, "--batches", str(batch),
                  "--seconds", str(a.seconds)]
        e = {"ferroflow": shlex.split(a.ferroflow) + common,
             "tensorflow": [a.tf_python, os.path.join(HERE, "tf1_models.py")] + common}
        if a.jax_python:
            e["jax"] = [a.jax_python, os.path.join(HERE, "jax_models.py")] + common
        if a.baseline:
            e["baseline"] = shlex.split(a.baseline) + common
        return e

    loads = [("busy", a.busy)] + ([("quiet", 0)] if a.busy and a.quiet_too else [])
    if not a.busy:
        loads = [("quiet", 0)]
    results = []
    for model in a.models.split(","):
        for batch in (int(b) for b in a.batches.split(",")):
            cmds = engines(model, batch)
            rates = {(name, load): [] for name in cmds for load, _ in loads}
            for r in range(a.rounds):
                names = list(cmds)
                names = names[r % len(names):] + names[:r % len(names)]  # rotate who goes first
                for load, n in loads:
                    with busy(n):
                        for name in names:
                            rates[(name, load)].append(one_line(cmds[name]))
            row = {"model": model, "batch": batch, "busy": a.busy,
                   "steps_per_s": {"%s/%s" % k: statistics.median(v) for k, v in rates.items()}}
            load = loads[0][0]
            ff = rates[("ferroflow", load)]
            for other in [n for n in cmds if n != "ferroflow"]:
                row["ratio_" + other] = statistics.median(
                    f / o for f, o in zip(ff, rates[(other, load)]))
            if len(loads) == 2:
                for name in cmds:
                    row["kept_" + name] = statistics.median(
                        b / q for b, q in zip(rates[(name, "busy")], rates[(name, "quiet")]))
            results.append(row)
            print(json.dumps(row), flush=True)
    print()
    names = [n for n in ("tensorflow", "jax", "baseline") if "ratio_" + n in results[0]]
    head = "%-8s %6s" % ("model", "batch") + "".join(" %14s" % ("ff/" + n) for n in names)
    if len(loads) == 2:
        head += "".join(" %14s" % ("kept " + n) for n in ["ferroflow"] + names)
    print(head)
    for row in results:
        line = "%-8s %6d" % (row["model"], row["batch"]) + "".join(
            " %14.2f" % row["ratio_" + n] for n in names)
        if len(loads) == 2:
            line += "".join(" %14.2f" % row["kept_" + n] for n in ["ferroflow"] + names)
        print(line)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
