"""The benchmark models of tf1_models.py trained with JAX on the CPU: the whole training step
(forward, gradients, clipping, optimizer update, batch-norm moving averages) is one `jax.jit`
function whose state is donated, run synchronously (the loss is waited for, as Session.run waits).

    python jax_models.py [--threads 2] [--models book,deep,deep_bn,cnn] [--batches 32,256,2048] [--seconds 3]

prints one JSON line per model and batch, the fields of `ferroflow bench`. XLA sizes its thread pool
to the CPUs the process may use; `--threads` below that pins the process to the first CPUs before
JAX starts. The optimizers are written out here with TensorFlow 1.x's update rules (Adam with its
bias-corrected step size and epsilon 1e-8; momentum `v = 0.9 v + g, w -= lr v`).
"""
import argparse
import json
import os
import sys
import time


def pin(threads):
    cpus = sorted(os.sched_getaffinity(0))
    if threads < len(cpus):
        os.sched_setaffinity(0, cpus[:threads])


SPECS = {"book": (5, 100, "elu"), "deep": (12, 300, "relu"), "deep_bn": (12, 300, "relu")}


def build(jax, jnp, model, seed=1):
    depth, width, act_name = SPECS[model]
    act = jax.nn.elu if act_name == "elu" else jax.nn.relu
    key = jax.random.PRNGKey(seed)
    sizes = [784] + [width] * depth + [10]
    params, bn_state = [], []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        key, sub = jax.random.split(key)
        std = (2.0 / n_in) ** 0.5 / 0.87962566103423978  # truncated normal within 2 std, as TF's
        kernel = std * jax.random.truncated_normal(sub, -2.0, 2.0, (n_in, n_out), jnp.float32)
        hidden = i < depth
        if model == "deep_bn" and hidden:
            params.append({"w": kernel, "gamma": jnp.ones(n_out), "beta": jnp.zeros(n_out)})
            bn_state.append({"mean": jnp.zeros(n_out), "var": jnp.ones(n_out)})
        else:
            params.append({"w": kernel, "b": jnp.zeros(n_out)})

    def forward(params, bn_state, x):
        h, new_state = x, []
        for i, p in enumerate(params):
            z = h @ p["w"]
            if i == len(params) - 1:
                return z + p["b"], new_state
            if model == "deep_bn":
                mean, var = z.mean(0), z.var(0)
                z = (z - mean) * jax.lax.rsqrt(var + 1e-3) * p["gamma"] + p["beta"]
                old = bn_state[i]
                new_state.append({"mean": old["mean"] - 0.1 * (old["mean"] - mean),
                                  "var": old["var"] - 0.1 * (old["var"] - var)})
            else:
                z = z + p["b"]
            h = act(z)

    def loss_fn(params, bn_state, x, y):
        logits, new_state = forward(params, bn_state, x)
        logp = jax.nn.log_softmax(logits)
        return -jnp.take_along_axis(logp, y[:, None], axis=1).mean(), new_state

    def adam(params, grads, opt, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
        t = opt["t"] + 1
        m = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, opt["m"], grads)
        v = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, opt["v"], grads)
        step = lr * jnp.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        params = jax.tree_util.tree_map(lambda p, m, v: p - step * m / (jnp.sqrt(v) + eps), params, m, v)
        return params, {"t": t, "m": m, "v": v}

    def momentum(params, grads, opt, lr=0.01, mu=0.9, clip=5.0):
        norm = jnp.sqrt(sum(jnp.sum(g * g) for g in jax.tree_util.tree_leaves(grads)))
        scale = clip / jnp.maximum(norm, clip)
        acc = jax.tree_util.tree_map(lambda a, g: mu * a + g * scale, opt["acc"], grads)
        params = jax.tree_util.tree_map(lambda p, a: p - lr * a, params, acc)
        return params, {"acc": acc}

    def zeros():  # a new set of buffers each time: donated state must not share one
        return jax.tree_util.tree_map(jnp.zeros_like, params)

    if model == "book":
        opt_state, update = {"t": jnp.zeros((), jnp.float32), "m": zeros(), "v": zeros()}, adam
    else:
        opt_state, update = {"acc": zeros()}, momentum

    def step(params, bn_state, opt_state, x, y):
        (loss, new_bn), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, bn_state, x, y)
        params, opt_state = update(params, grads, opt_state)
        return params, new_bn, opt_state, loss

    return jax.jit(step, donate_argnums=(0, 1, 2)), (params, bn_state, opt_state)


def build_cnn(jax, jnp, seed=1):
    """tf1_models.py's cnn: conv 32 3x3 ReLU SAME -> conv 64 3x3 stride 2 ReLU SAME -> max pool 2 ->
    dense 64 ReLU -> dropout 0.5 -> 10, Adam(1e-3); the dropout key is part of the state."""
    key = jax.random.PRNGKey(seed)
    shapes = [(3, 3, 1, 32), (3, 3, 32, 64), (7 * 7 * 64, 64), (64, 10)]
    params = []
    for shape in shapes:
        key, sub = jax.random.split(key)
        fan_in = 1
        for d in shape[:-1]:
            fan_in *= d
        std = (2.0 / fan_in) ** 0.5 / 0.87962566103423978
        params.append({"w": std * jax.random.truncated_normal(sub, -2.0, 2.0, shape, jnp.float32),
                       "b": jnp.zeros(shape[-1])})

    def conv(x, p, stride):
        y = jax.lax.conv_general_dilated(x, p["w"], (stride, stride), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return jax.nn.relu(y + p["b"])

    def loss_fn(params, key, x, y):
        h = conv(conv(x.reshape(-1, 28, 28, 1), params[0], 1), params[1], 2)
        h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
        h = jax.nn.relu(h.reshape(h.shape[0], -1) @ params[2]["w"] + params[2]["b"])
        keep = jax.random.bernoulli(key, 0.5, h.shape)
        h = jnp.where(keep, h / 0.5, 0.0)
        logits = h @ params[3]["w"] + params[3]["b"]
        logp = jax.nn.log_softmax(logits)
        return -jnp.take_along_axis(logp, y[:, None], axis=1).mean()

    def zeros():
        return jax.tree_util.tree_map(jnp.zeros_like, params)

    opt_state = {"t": jnp.zeros((), jnp.float32), "m": zeros(), "v": zeros()}

    def step(params, key, opt_state, x, y, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
        key, sub = jax.random.split(key)
        loss, grads = jax.value_and_grad(loss_fn)(params, sub, x, y)
        t = opt_state["t"] + 1
        m = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, opt_state["m"], grads)
        v = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, opt_state["v"], grads)
        size = lr * jnp.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        params = jax.tree_util.tree_map(lambda p, m, v: p - size * m / (jnp.sqrt(v) + eps),
                                        params, m, v)
        return params, key, {"t": t, "m": m, "v": v}, loss

    return jax.jit(step, donate_argnums=(0, 1, 2)), (params, key, opt_state)


def steps_per_second(jax, jnp, np, model, batch, seconds):
    if model == "cnn":
        step, (params, bn_state, opt_state) = build_cnn(jax, jnp)
    else:
        step, (params, bn_state, opt_state) = build(jax, jnp, model)
    rng = np.random.default_rng(1)
    x = jax.device_put(rng.random((batch, 784), dtype=np.float32))
    y = jax.device_put(rng.integers(0, 10, batch).astype(np.int32))
    for _ in range(20):
        params, bn_state, opt_state, loss = step(params, bn_state, opt_state, x, y)
        loss.block_until_ready()
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        params, bn_state, opt_state, loss = step(params, bn_state, opt_state, x, y)
        loss.block_until_ready()
        steps += 1
    return steps / (time.perf_counter() - start)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--models", default="book,deep,deep_bn")
    p.add_argument("--batches", default="32,256,2048")
    p.add_argument("--seconds", type=float, default=3.0)
    a = p.parse_args()
    pin(a.threads)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax
    import jax.numpy as jnp
    import numpy as np
    for model in a.models.split(","):
        for batch in (int(b) for b in a.batches.split(",")):
            sps = steps_per_second(jax, jnp, np, model, batch, a.seconds)
            print(json.dumps({"engine": "jax-jit " + jax.__version__, "model": model, "batch": batch,
                              "threads": a.threads, "steps_per_s": round(sps, 2),
                              "samples_per_s": round(sps * batch, 1)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
