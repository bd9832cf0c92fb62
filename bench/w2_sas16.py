"""W2 (DESIGN §9): sas16 log_prob throughput, flowc JIT vs JAX jit, in one run.

Setup (not part of the test dependencies):  pip install "jax[cpu]" numpy
Run from the repository root after `cargo build --release -p flowc`:
    python3 bench/w2_sas16.py [--rows 262144] [--threads 2]

Parameters: 8 layers; per layer eps ~ N(0, 0.3^2) and delta = softplus(r), r ~ N(0.5, 0.2^2)
(seed 0), shared by the 16 coordinates of a layer (flowc's CLI sets one value per layer until
parameter files arrive). Both sides evaluate the same log-density of the same points.
"""
import argparse
import os
import subprocess
import sys
import time

ap = argparse.ArgumentParser()
ap.add_argument("--rows", type=int, default=1 << 18)
ap.add_argument("--threads", type=int, default=os.cpu_count())
args = ap.parse_args()

# pin threads for every contender before importing JAX
os.environ["XLA_FLAGS"] = f"--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads={args.threads}"
for v in ["OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"]:
    os.environ[v] = str(args.threads)

import numpy as np  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

K, D = 8, 16
rng = np.random.default_rng(0)
eps = rng.normal(0.0, 0.3, K)
delta = np.log1p(np.exp(rng.normal(0.5, 0.2, K)))

# data: base samples pushed through the flow (numpy, f64)
z = rng.standard_normal((args.rows, D))
x = z.copy()
for k in range(K):
    x = np.sinh(delta[k] * np.arcsinh(x) - eps[k])


def log_prob(x, eps, delta):
    # inverse pass, last layer first; log|f'| of each layer at the recovered point
    ld = jnp.zeros(x.shape[0], x.dtype)
    y = x
    for k in reversed(range(K)):
        u = (jnp.arcsinh(y) + eps[k]) / delta[k]
        z = jnp.sinh(u)
        ld = ld + jnp.sum(jnp.log(delta[k]) + jnp.log(jnp.cosh(delta[k] * jnp.arcsinh(z) - eps[k])) - 0.5 * jnp.log1p(z * z), axis=1)
        y = z
    return jnp.sum(-0.5 * y * y - 0.5 * jnp.log(2 * jnp.pi), axis=1) - ld


def time_jax(dtype):
    jax.config.update("jax_enable_x64", dtype == np.float64)
    f = jax.jit(log_prob)
    xs, e, d = jnp.asarray(x, dtype), jnp.asarray(eps, dtype), jnp.asarray(delta, dtype)
    t0 = time.perf_counter()
    f(xs, e, d).block_until_ready()
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        f(xs, e, d).block_until_ready()
        times.append(time.perf_counter() - t0)
    return sorted(times)[2], compile_s


print(f"W2 sas16: {args.rows} rows x {D}, {args.threads} threads, jax {jax.__version__}")
params = []
for k in range(K):
    params += ["--param", f"layers.{k}.eps={float(eps[k])!r}", "--param", f"layers.{k}.delta={float(delta[k])!r}"]


def run_flowc(extra):
    out = subprocess.run(
        ["taskset", "-c", f"0-{args.threads - 1}", "./target/release/flowc", "bench", "bench/sas16.flow", "--name", "sas16",
         "--rows", str(args.rows)] + params + extra,
        capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(out.stderr)
    res = {}
    for line in out.stdout.splitlines()[2:]:
        p = line.split()
        if len(p) == 5 and int(p[1]) == args.threads:
            res[p[0]] = (float(p[3]), float(p[2]))
    return res


fused = run_flowc([])
unfused = run_flowc(["--no-fuse"])
for name, dt in [("f64", np.float64), ("f32", np.float32)]:
    med, comp = time_jax(dt)
    jax_pps = args.rows / med
    f, fc = fused.get(name, (float("nan"), float("nan")))
    u, uc = unfused.get(name, (float("nan"), float("nan")))
    print(f"{name}: jax {jax_pps:.3e} points/s (compile {comp * 1e3:.0f} ms) | "
          f"flowc {f:.3e} points/s (compile {fc:.1f} ms), ratio {f / jax_pps:.2f} | "
          f"flowc --no-fuse {u:.3e} points/s (compile {uc:.1f} ms), ratio {u / jax_pps:.2f}")
