"""W1 (realnvp8) and W3 (maf16), DESIGN §9: flowc against an independent JAX implementation.

Setup (not part of the test dependencies):  pip install "jax[cpu]" numpy safetensors
Run from the repository root after `cargo build --release -p flowc`:
    python3 bench/w1_w3.py [--rows 65536] [--threads 2] [--check-rows 2000]

1. Correctness: this script writes the parameters (PyTorch naming, [out, in] weights, all
   ~ N(0, 0.1²), seed 0) to safetensors, computes log p(x) with its own JAX code in f64 on
   points sampled from the flow, runs `flowc score` with the same file on the same points,
   and prints the largest relative difference (the bar is 1e-10).
2. Throughput: JAX `jit` log_prob (and, for W3, sampling: 5 layers x 16 sequential MADE
   evaluations) in f64 and f32 against `flowc bench` on the same thread count.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

ap = argparse.ArgumentParser()
ap.add_argument("--rows", type=int, default=1 << 16)
ap.add_argument("--threads", type=int, default=os.cpu_count())
ap.add_argument("--check-rows", type=int, default=2000)
args = ap.parse_args()
os.environ["XLA_FLAGS"] = f"--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads={args.threads}"

import numpy as np  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

jax.config.update("jax_enable_x64", True)
FLOWC = "./target/release/flowc"
LOG2PI = np.log(2 * np.pi)


def linear_params(rng, prefix, sizes):
    p = {}
    for j in range(len(sizes) - 1):
        p[f"{prefix}.net.{2 * j}.weight"] = rng.normal(0, 0.1, (sizes[j + 1], sizes[j]))
        p[f"{prefix}.net.{2 * j}.bias"] = rng.normal(0, 0.1, sizes[j + 1])
    return p


def mlp(p, prefix, h, n_layers, act):
    for j in range(n_layers):
        h = h @ p[f"{prefix}.net.{2 * j}.weight"].T + p[f"{prefix}.net.{2 * j}.bias"]
        if j + 1 < n_layers:
            h = act(h)
    return h


# ---------------- W1: realnvp8 ----------------
def w1_params(rng):
    p = {}
    for k in range(4):
        p.update(linear_params(rng, f"layers.{k}", [4, 64, 64, 8]))
    return p


def w1_split(k):
    return (slice(0, 4), slice(4, 8)) if k % 2 == 0 else (slice(4, 8), slice(0, 4))


def w1_forward_np(p, z):
    x = z.copy()
    for k in range(4):
        a, b = w1_split(k)
        o = mlp(p, f"layers.{k}", x[:, a], 3, np.tanh)
        x[:, b] = x[:, b] * np.exp(np.tanh(o[:, :4])) + o[:, 4:]
    return x


def w1_log_prob(p, x):
    ld = jnp.zeros(x.shape[0], x.dtype)
    for k in reversed(range(4)):
        a, b = w1_split(k)
        o = mlp(p, f"layers.{k}", x[:, a], 3, jnp.tanh)
        s = jnp.tanh(o[:, :4])
        x = x.at[:, b].set((x[:, b] - o[:, 4:]) * jnp.exp(-s))
        ld = ld + s.sum(axis=1)
    return jnp.sum(-0.5 * x * x - 0.5 * LOG2PI, axis=1) - ld


# ---------------- W3: maf16 ----------------
D, H = 16, 128


def made_masks():
    d_in = np.arange(D) + 1
    m_h = (np.arange(H) % (D - 1)) + 1
    d_out = (np.arange(2 * D) % D) + 1
    return [(m_h[:, None] >= d_in[None, :]).astype(float), (m_h[:, None] >= m_h[None, :]).astype(float), (d_out[:, None] > m_h[None, :]).astype(float)]


MASKS = made_masks()


def w3_params(rng):
    p = {}
    for k in range(0, 9, 2):
        p.update(linear_params(rng, f"layers.{k}", [D, H, H, 2 * D]))
    return p


def made(p, k, x, xp):
    h = x
    for j in range(3):
        w = p[f"layers.{k}.net.{2 * j}.weight"] * MASKS[j]
        h = h @ w.T + p[f"layers.{k}.net.{2 * j}.bias"]
        if j < 2:
            h = xp.maximum(h, 0)
    return h[:, :D], xp.tanh(h[:, D:])


def w3_log_prob(p, x):
    ld = jnp.zeros(x.shape[0], x.dtype)
    for k in reversed(range(9)):
        if k % 2 == 1:  # reverse
            x = x[:, ::-1]
            continue
        mu, a = made(p, k, x, jnp)
        x = (x - mu) * jnp.exp(-a)
        ld = ld + a.sum(axis=1)
    return jnp.sum(-0.5 * x * x - 0.5 * LOG2PI, axis=1) - ld


def w3_sample(p, z):
    x = z
    for k in range(9):
        if k % 2 == 1:
            x = x[:, ::-1]
            continue
        u = x
        x = jnp.zeros_like(u)
        for i in range(D):
            mu, a = made(p, k, x, jnp)
            x = x.at[:, i].set(u[:, i] * jnp.exp(a[:, i]) + mu[:, i])
    return x


def w3_sample_np(p, z):
    x = z.copy()
    for k in range(9):
        if k % 2 == 1:
            x = x[:, ::-1].copy()
            continue
        u = x
        x = np.zeros_like(u)
        for i in range(D):
            mu, a = made(p, k, x, np)
            x[:, i] = u[:, i] * np.exp(a[:, i]) + mu[:, i]
    return x


def median_time(f, *a):
    f(*a).block_until_ready()
    ts = []
    for _ in range(5):
        t0 = time.perf_counter()
        f(*a).block_until_ready()
        ts.append(time.perf_counter() - t0)
    return sorted(ts)[2]


def flowc_bench(flow_file, name, params_file, kernel):
    out = subprocess.run(["taskset", "-c", f"0-{args.threads - 1}", FLOWC, "bench", flow_file, "--name", name, "--params", params_file,
                          "--rows", str(args.rows), "--kernel", kernel], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(out.stderr)
    res = {}
    for line in out.stdout.splitlines()[2:]:
        q = line.split()
        if len(q) >= 5 and q[1].isdigit() and int(q[1]) == args.threads:
            res[q[0]] = (float(q[3]), float(q[2]))
    return res


def run(name, flow_file, params, forward_np, log_prob, sample=None):
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as tmp:
        pf = os.path.join(tmp, "p.safetensors")
        save_file({k: np.ascontiguousarray(v) for k, v in params.items()}, pf)
        z = rng.standard_normal((args.check_rows, 8 if name == "realnvp8" else D))
        x = forward_np(params, z)
        xf = os.path.join(tmp, "x.npy")
        np.save(xf, x)
        sf = os.path.join(tmp, "lp.npy")
        r = subprocess.run([FLOWC, "score", flow_file, "--name", name, "--params", pf, "--input", xf, "--output", sf], capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(r.stderr)
        ours = np.load(sf).reshape(-1)
        ref = np.asarray(jax.jit(log_prob)({k: jnp.asarray(v) for k, v in params.items()}, jnp.asarray(x)))
        rel = np.max(np.abs(ours - ref) / np.maximum(1.0, np.abs(ref)))
        print(f"{name}: log p(x) flowc vs JAX (f64, {args.check_rows} points sampled from the flow): max relative difference {rel:.2e}")
        kernels = [("log-prob", log_prob)] + ([("sample", sample)] if sample else [])
        for kernel, fn in kernels:
            fl = flowc_bench(flow_file, name, pf, kernel)
            for prec, dt in [("f64", np.float64), ("f32", np.float32)]:
                pj = {k: jnp.asarray(v, dt) for k, v in params.items()}
                data = jnp.asarray(rng.standard_normal((args.rows, z.shape[1])), dt)
                t = median_time(jax.jit(fn), pj, data)
                jax_pps = args.rows / t
                ours_pps, comp = fl.get(prec, (float("nan"), float("nan")))
                print(f"  {kernel} {prec}: jax {jax_pps:.3e} rows/s | flowc {ours_pps:.3e} rows/s (compile {comp:.0f} ms) | ratio {ours_pps / jax_pps:.2f}")


print(f"{args.rows} rows, {args.threads} threads, jax {jax.__version__}")
run("realnvp8", "examples/flows/realnvp8.flow", w1_params(np.random.default_rng(0)), w1_forward_np, w1_log_prob)
run("maf16", "examples/flows/maf16.flow", w3_params(np.random.default_rng(0)), w3_sample_np, w3_log_prob, w3_sample)
