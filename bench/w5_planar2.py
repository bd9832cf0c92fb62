"""W5 (planar2), DESIGN §9: flowc sampling with density against an independent JAX implementation.

Setup (not part of the test dependencies):  pip install "jax[cpu]" numpy safetensors
Run from the repository root after `cargo build --release -p flowc`:
    python3 bench/w5_planar2.py [--rows 1048576] [--threads 2] [--check-rows 2000]

1. Correctness: parameters u, w, b ~ N(0, 0.1²) (seed 0) written to safetensors (names
   `layers.K.u` [2], `layers.K.w` [2], `layers.K.b` [1]); JAX pushes base points z through
   the 16 layers in f64 and sums the log-determinants; `flowc eval --direction forward` does the
   same on the same z; and `flowc score` of those x (the inverse, by root-find along w) must
   give back log N(z) − Σ log|det J|. Prints the largest relative differences (bar 1e-10).
2. Throughput: sampling with density (x = f(z) and log q(x) from base points z drawn
   beforehand) — JAX `jit` against `flowc bench --kernel sample` (the forward kernel on base
   points), f64 and f32, same threads.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

ap = argparse.ArgumentParser()
ap.add_argument("--rows", type=int, default=1 << 20)
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
FLOW = "examples/flows/planar2.flow"
K, D = 16, 2


def params(rng):
    p = {}
    for k in range(K):
        p[f"layers.{k}.u"] = rng.normal(0, 0.1, D)
        p[f"layers.{k}.w"] = rng.normal(0, 0.1, D)
        p[f"layers.{k}.b"] = rng.normal(0, 0.1, 1)
    return p


def forward(p, z):
    """x = f(z) and Σ log|det J| (the textbook planar flow with the û reparametrization)."""
    x, ld = z, jnp.zeros(z.shape[0], z.dtype)
    for k in range(K):
        u, w, b = p[f"layers.{k}.u"], p[f"layers.{k}.w"], p[f"layers.{k}.b"][0]
        wu = jnp.dot(w, u)
        m = -1.0 + jax.nn.softplus(wu)
        uh = u + (m - wu) * w / jnp.dot(w, w)
        a = x @ w + b
        h = jnp.tanh(a)
        x = x + h[:, None] * uh[None, :]
        ld = ld + jnp.log(jnp.abs(1.0 + (1.0 - h * h) * jnp.dot(uh, w)))
    return x, ld


def sample_with_density(p, z):
    # base points drawn beforehand on both sides: `flowc bench --kernel sample` times the
    # forward kernel on given base points too
    x, ld = forward(p, z)
    return x, jnp.sum(-0.5 * z * z - 0.5 * np.log(2 * np.pi), axis=1) - ld


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(r.stderr)
    return r.stdout


print(f"W5 planar2: {args.rows} rows, {args.threads} threads, jax {jax.__version__}")
p = params(np.random.default_rng(0))
with tempfile.TemporaryDirectory() as tmp:
    pf = os.path.join(tmp, "p.safetensors")
    save_file({k: np.ascontiguousarray(v) for k, v in p.items()}, pf)
    z = np.random.default_rng(1).standard_normal((args.check_rows, D))
    zf, ef, sf = (os.path.join(tmp, n) for n in ("z.npy", "e.npy", "s.npy"))
    np.save(zf, z)
    run([FLOWC, "eval", FLOW, "--name", "planar2", "--params", pf, "--input", zf, "--direction", "forward", "--output", ef])
    ours = np.load(ef)
    x_ref, ld_ref = forward({k: jnp.asarray(v) for k, v in p.items()}, jnp.asarray(z))
    x_ref, ld_ref = np.asarray(x_ref), np.asarray(ld_ref)
    rel_x = np.max(np.abs(ours[:, :D] - x_ref) / np.maximum(1.0, np.abs(x_ref)))
    rel_ld = np.max(np.abs(ours[:, D] - ld_ref) / np.maximum(1.0, np.abs(ld_ref)))
    print(f"forward vs JAX (f64, {args.check_rows} points): max relative difference x {rel_x:.2e}, log|det J| {rel_ld:.2e}")
    xf = os.path.join(tmp, "x.npy")
    np.save(xf, x_ref)
    run([FLOWC, "score", FLOW, "--name", "planar2", "--params", pf, "--input", xf, "--output", sf])
    lp = np.load(sf).reshape(-1)
    lq = np.sum(-0.5 * z * z - 0.5 * np.log(2 * np.pi), axis=1) - ld_ref
    print(f"log p(x) by flowc's inverse (root-find) vs log N(z) - sum log|det J| from JAX: max relative difference "
          f"{np.max(np.abs(lp - lq) / np.maximum(1.0, np.abs(lq))):.2e}")

    out = run(["taskset", "-c", f"0-{args.threads - 1}", FLOWC, "bench", FLOW, "--name", "planar2", "--params", pf,
               "--rows", str(args.rows), "--kernel", "sample"])
    res = {}
    for line in out.splitlines()[2:]:
        q = line.split()
        if len(q) >= 5 and q[1].isdigit() and int(q[1]) == args.threads:
            res[q[0]] = (float(q[3]), float(q[2]))
    for prec, dt in [("f64", jnp.float64), ("f32", jnp.float32)]:
        pj = {k: jnp.asarray(v, dt) for k, v in p.items()}
        f = jax.jit(sample_with_density)
        zb = jnp.asarray(np.random.default_rng(2).standard_normal((args.rows, D)), dt)
        jax.block_until_ready(f(pj, zb))
        ts = []
        for i in range(5):
            t0 = time.perf_counter()
            jax.block_until_ready(f(pj, zb))
            ts.append(time.perf_counter() - t0)
        jax_pps = args.rows / sorted(ts)[2]
        ours_pps, comp = res.get(prec, (float("nan"), float("nan")))
        print(f"  sample-with-density {prec}: jax {jax_pps:.3e} rows/s | flowc {ours_pps:.3e} rows/s (compile {comp:.1f} ms) | ratio {ours_pps / jax_pps:.2f}")
