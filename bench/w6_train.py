"""W6 (train_realnvp8), DESIGN §9: `flowc train` against an independent JAX training loop.

Setup (not part of the test dependencies):  pip install "jax[cpu]" numpy safetensors
Run from the repository root after `cargo build --release -p flowc`:
    python3 bench/w6_train.py [--threads 2] [--steps 1000] [--batch 4096]

Both sides start from the same parameters (W1's, PyTorch naming, ~ N(0, 0.1²), seed 0) and
the same 2^16 points (a mixture of two unit-variance Gaussians at ±2 along all 8 axes), and
take `--steps` Adam steps (lr 1e-3, β 0.9/0.999, ε 1e-8) on the mean NLL of minibatches of
`--batch` rows, in f64 and in f32, on the same threads. Each side draws its own minibatch
order. Reported: steps/s of each (JAX: `jit` of the whole step — value_and_grad and the Adam
update — timed after a warm-up step; flowc: its own steps/s, compile time excluded), and the
final mean NLL over all points of both trained parameter sets, evaluated by this script's
JAX log_prob in f64 (the bar: within 0.05 nats).
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=os.cpu_count())
ap.add_argument("--steps", type=int, default=1000)
ap.add_argument("--batch", type=int, default=4096)
args = ap.parse_args()
os.environ["XLA_FLAGS"] = f"--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads={args.threads}"
os.sched_setaffinity(0, range(args.threads))

import numpy as np  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from safetensors.numpy import save_file, load_file  # noqa: E402

jax.config.update("jax_enable_x64", True)
FLOWC = "./target/release/flowc"
FLOW = "examples/flows/realnvp8.flow"
LOG2PI = np.log(2 * np.pi)


def init_params(rng):
    p = {}
    for k in range(4):
        sizes = [4, 64, 64, 8]
        for j in range(3):
            p[f"layers.{k}.net.{2 * j}.weight"] = rng.normal(0, 0.1, (sizes[j + 1], sizes[j]))
            p[f"layers.{k}.net.{2 * j}.bias"] = rng.normal(0, 0.1, sizes[j + 1])
    return p


def split(k):
    return (slice(0, 4), slice(4, 8)) if k % 2 == 0 else (slice(4, 8), slice(0, 4))


def log_prob(p, x):
    ld = jnp.zeros(x.shape[0], x.dtype)
    for k in reversed(range(4)):
        a, b = split(k)
        h = x[:, a]
        for j in range(3):
            h = h @ p[f"layers.{k}.net.{2 * j}.weight"].T + p[f"layers.{k}.net.{2 * j}.bias"]
            if j < 2:
                h = jnp.tanh(h)
        s = jnp.tanh(h[:, :4])
        x = x.at[:, b].set((x[:, b] - h[:, 4:]) * jnp.exp(-s))
        ld = ld + s.sum(axis=1)
    return jnp.sum(-0.5 * x * x - 0.5 * LOG2PI, axis=1) - ld


def nll(p, x):
    return -jnp.mean(log_prob(p, x))


B1, B2, EPS, LR = 0.9, 0.999, 1e-8, 1e-3


@jax.jit
def step(p, m, v, t, data, idx):
    loss, g = jax.value_and_grad(nll)(p, data[idx])
    m = jax.tree.map(lambda a, b: B1 * a + (1 - B1) * b, m, g)
    v = jax.tree.map(lambda a, b: B2 * a + (1 - B2) * b * b, v, g)
    c1, c2 = 1 - B1 ** t, 1 - B2 ** t
    p = jax.tree.map(lambda q, a, b: q - LR * (a / c1) / (jnp.sqrt(b / c2) + EPS), p, m, v)
    return p, m, v, loss


def jax_train(p0, data, dtype, seed):
    p = {k: jnp.asarray(v, dtype) for k, v in p0.items()}
    m = jax.tree.map(jnp.zeros_like, p)
    v = jax.tree.map(jnp.zeros_like, p)
    data = jnp.asarray(data, dtype)
    rng = np.random.default_rng(seed)
    n = data.shape[0]
    per_epoch = n // args.batch
    batches = []
    while len(batches) < args.steps:
        perm = rng.permutation(n)
        batches += [perm[i * args.batch:(i + 1) * args.batch] for i in range(per_epoch)]
    batches = [jnp.asarray(b) for b in batches[:args.steps]]
    # warm-up: compile (its step is not counted in the time)
    p, m, v, loss = step(p, m, v, jnp.asarray(1.0, dtype), data, batches[0])
    loss.block_until_ready()
    t0 = time.perf_counter()
    for t in range(1, args.steps):
        p, m, v, loss = step(p, m, v, jnp.asarray(t + 1.0, dtype), data, batches[t])
    loss.block_until_ready()
    secs = time.perf_counter() - t0
    return {k: np.asarray(a, np.float64) for k, a in p.items()}, (args.steps - 1) / secs


def flowc_train(pf, xf, out, precision):
    r = subprocess.run([FLOWC, "train", FLOW, "--name", "realnvp8", "--data", xf, "--params", pf, "--steps", str(args.steps),
                        "--batch", str(args.batch), "--lr", str(LR), "--threads", str(args.threads), "--precision", precision,
                        "--out", out, "--quiet"], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(r.stderr)
    rate = float(re.search(r"\(([0-9.]+) steps/s", r.stdout).group(1))
    return load_file(out), rate


def main():
    rng = np.random.default_rng(0)
    n = 1 << 16
    sign = rng.integers(0, 2, size=n) * 2 - 1
    data = rng.standard_normal((n, 8)) + 2.0 * sign[:, None]
    p0 = init_params(rng)
    full = jax.jit(nll)
    with tempfile.TemporaryDirectory() as tmp:
        pf, xf = os.path.join(tmp, "init.safetensors"), os.path.join(tmp, "data.npy")
        save_file(p0, pf)
        np.save(xf, data)
        print(f"W6 train_realnvp8: {args.steps} Adam steps, batch {args.batch}, {n} points, {args.threads} threads; "
              f"initial NLL {float(full(p0, data)):.4f}")
        print(f"{'precision':>9} {'JAX steps/s':>12} {'flowc steps/s':>14} {'ratio':>6} {'JAX NLL':>9} {'flowc NLL':>10} {'diff':>7}")
        for prec, dtype in [("f64", jnp.float64), ("f32", jnp.float32)]:
            pj, rj = jax_train(p0, data, dtype, 1)
            pc, rc = flowc_train(pf, xf, os.path.join(tmp, f"out_{prec}.safetensors"), prec)
            nj, nc = float(full(pj, data)), float(full(pc, data))
            print(f"{prec:>9} {rj:>12.1f} {rc:>14.1f} {rc / rj:>6.2f} {nj:>9.4f} {nc:>10.4f} {nc - nj:>+7.4f}")


main()
