#!/usr/bin/env python3
"""The scaling model of docs/distributed.md: the efficiency of synchronous data-parallel training
on p workers when each step computes for t_compute seconds and then all-reduces the gradients with
a ring: 2(p-1)/p * bytes / bandwidth + 2(p-1) * latency. The first figure adds the two (the
all-reduce does not hide behind the backward pass); in parentheses, the bound with full overlap.

usage: scaling_model.py T_COMPUTE_S GRADIENT_BYTES [LATENCY_S]
"""
import sys


def allreduce_s(p, nbytes, gbit_s, latency_s):
    if p == 1:
        return 0.0
    return 2 * (p - 1) / p * nbytes / (gbit_s * 1e9 / 8) + 2 * (p - 1) * latency_s


def main():
    t_compute = float(sys.argv[1])
    nbytes = float(sys.argv[2])
    latency = float(sys.argv[3]) if len(sys.argv) > 3 else 25e-6
    workers = [1, 2, 4, 8, 16, 32, 64]
    print(f"t_compute = {t_compute * 1e3:.1f} ms, gradients = {nbytes / 1e6:.2f} MB, latency = {latency * 1e6:.0f} us")
    print("| network | " + " | ".join(f"p={p}" for p in workers) + " |")
    print("|---|" + "---|" * len(workers))
    for gbit in (10, 25, 100):
        cells = []
        for p in workers:
            t_ar = allreduce_s(p, nbytes, gbit, latency)
            serial = t_compute / (t_compute + t_ar)
            overlapped = t_compute / max(t_compute, t_ar)
            cells.append(f"{100 * serial:.1f}% ({100 * overlapped:.0f}%)")
        print(f"| {gbit} Gb/s | " + " | ".join(cells) + " |")
    # The knee: the per-worker compute time at which the all-reduce takes as long as the compute
    # (50% efficiency without overlap), at 16 workers.
    for gbit in (10, 25, 100):
        t_ar = allreduce_s(16, nbytes, gbit, latency)
        print(f"knee at 16 workers, {gbit} Gb/s: compute per step = all-reduce = {t_ar * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
