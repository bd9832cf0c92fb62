"""W4 (sphere3), DESIGN §9: a flow on the unit sphere S² in R³, flowc against an independent JAX implementation.

Setup (not part of the test dependencies):  pip install "jax[cpu]" numpy safetensors
Run from the repository root after `cargo build --release -p flowc`:
    python3 bench/w4_sphere3.py [--rows 1048576] [--threads 2] [--check-rows 2000] [--jax-only]

The flow: base uniform on S² (log density -log 4π), then 4 `normalized_affine` layers
y = (M x + b)/‖M x + b‖ with M = L U (L = I + strict lower part of `layers.K.lower` [3,3],
U = strict upper part of `layers.K.upper` [3,3] + diag(exp(`layers.K.log_diag` [3]))) and
b = M m, m = v/sqrt(1 + ‖v‖²) from the raw `layers.K.shift` [3] (so ‖M⁻¹b‖ < 1 and the map is
a bijection of the sphere). Parameters (seed 0): per layer A = I + N(0, 0.3²) (redrawn until its
LU decomposition without pivoting has a positive diagonal), lower = L, upper = U,
log_diag = log diag U; then v ~ N(0, 0.5²).

1. Correctness (f64): base points z uniform on S² (seed 1) pushed forward in JAX; the reference
   log p(x) = -log 4π - Σ log R_k with the volume ratio R_k = |det(T_yᵀ F T_x)| computed
   generically (F the ambient Jacobian by jacfwd, T_x, T_y orthonormal tangent bases by QR), checked
   against the closed form log|det M| + log(1 + xᵀm) - 3 log‖M x + b‖ (bar 1e-12). `flowc score`
   of x must match the reference and `flowc eval --direction forward` of z must match x and Σ log R
   (bar 1e-10).
2. Throughput: log_prob (data back to base: per layer w = M⁻¹y, x = s w - m with s > 0 solving
   ‖s w - m‖ = 1) — JAX `jit` of the closed form against `flowc bench --kernel log-prob`, f64 and
   f32, same threads; and the generic ratio as JAX computes it (jacfwd + QR per layer), f64.
   `--jax-only` skips every flowc call.
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
ap.add_argument("--jax-only", action="store_true", help="skip every flowc call (the JAX side alone)")
args = ap.parse_args()
os.environ["XLA_FLAGS"] = f"--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads={args.threads}"

import numpy as np  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

jax.config.update("jax_enable_x64", True)
FLOWC = "./target/release/flowc"
FLOW = "examples/flows/sphere3.flow"
K, D = 4, 3
LOG_AREA = np.log(4 * np.pi)


def doolittle(a):
    """LU without pivoting: a = l @ u, l unit lower triangular, u upper triangular."""
    n = a.shape[0]
    l, u = np.eye(n), np.zeros((n, n))
    for i in range(n):
        for j in range(i, n):
            u[i, j] = a[i, j] - l[i, :i] @ u[:i, j]
        for j in range(i + 1, n):
            l[j, i] = (a[j, i] - l[j, :i] @ u[:i, i]) / u[i, i]
    return l, u


def params(rng):
    p = {}
    for k in range(K):
        while True:
            a = np.eye(D) + rng.normal(0, 0.3, (D, D))
            with np.errstate(divide="ignore", invalid="ignore"):
                l, u = doolittle(a)
            if np.all(np.diag(u) > 0):
                break
        assert np.allclose(l @ u, a, rtol=0, atol=1e-13), "LU does not reproduce A"
        p[f"layers.{k}.lower"] = l
        p[f"layers.{k}.upper"] = u
        p[f"layers.{k}.log_diag"] = np.log(np.diag(u))
        p[f"layers.{k}.shift"] = rng.normal(0, 0.5, D)
    return p


def layer(p, k):
    """M, m = M⁻¹b and b of layer k (f64 numpy), from the stored tensors as flowc reads them."""
    l = np.eye(D) + np.tril(p[f"layers.{k}.lower"], -1)
    u = np.triu(p[f"layers.{k}.upper"], 1) + np.diag(np.exp(p[f"layers.{k}.log_diag"]))
    v = p[f"layers.{k}.shift"]
    M = l @ u
    m = v / np.sqrt(1.0 + v @ v)
    return M, m, M @ m


def uniform_sphere(rng, n):
    g = rng.standard_normal((n, D))
    return g / np.linalg.norm(g, axis=1, keepdims=True)


def forward(layers, z):
    """x = f(z) and the input of every layer."""
    xs, x = [], z
    for M, m, b in layers:
        xs.append(x)
        y = x @ M.T + b
        x = y / jnp.linalg.norm(y, axis=1, keepdims=True)
    return x, xs


def tangent_basis(x):
    """Orthonormal basis (3×2) of the tangent space at the unit point x: columns 1..2 of the full QR of
    [x | I - x xᵀ] (the first column is x, and the columns span R³)."""
    a = jnp.concatenate([x[:, None], jnp.eye(D) - jnp.outer(x, x)], axis=1)
    q, _ = jnp.linalg.qr(a, mode="complete")
    return q[:, 1:]


def log_ratio_generic(M, b, x):
    """log of the differential volume ratio of u ↦ (M u + b)/‖M u + b‖ on S² at x, from the ambient Jacobian."""
    def f(u):
        y = M @ u + b
        return y / jnp.linalg.norm(y)
    F = jax.jacfwd(f)(x)
    J = tangent_basis(f(x)).T @ F @ tangent_basis(x)
    return jnp.log(jnp.abs(jnp.linalg.det(J)))


def log_ratio_closed(M, m, b, x):
    # log(1 + xᵀm), not log1p: 1 + xᵀm >= 1 - ‖m‖ stays away from 0, and XLA's f64 log1p on CPU is ~60 ulp off
    return (np.log(abs(np.linalg.det(M))) + jnp.log(1.0 + x @ m)
            - 3.0 * jnp.log(jnp.linalg.norm(x @ M.T + b, axis=1)))


def prepare(layers, dt):
    """Parameter-only values, computed once per call (as flowc does): M⁻¹, m = M⁻¹b, log|det M|, 1 - ‖m‖²."""
    return [(jnp.asarray(np.linalg.inv(M), dt), jnp.asarray(m, dt), jnp.asarray(np.log(abs(np.linalg.det(M))), dt),
             jnp.asarray(1.0 - m @ m, dt)) for M, m, b in layers]


def invert_layer(Mi, m, c0, c):
    """One layer's closed-form inverse on columns c: x = s·M⁻¹y - m with s the positive root of
    q s² - 2 β s - (1 - ‖m‖²) = 0, (β + r)/q or, without cancellation when β < 0, (1 - ‖m‖²)/(r - β).
    Returns (x's columns, s)."""
    w = [Mi[i, 0] * c[0] + Mi[i, 1] * c[1] + Mi[i, 2] * c[2] for i in range(D)]
    beta = w[0] * m[0] + w[1] * m[1] + w[2] * m[2]
    q = w[0] * w[0] + w[1] * w[1] + w[2] * w[2]
    r = jnp.sqrt(beta * beta + q * c0)
    pos = beta >= 0
    s = jnp.where(pos, beta + r, c0) / jnp.where(pos, q, r - beta)
    return [s * w[i] - m[i] for i in range(D)], s


def log_prob(pre, y):
    """Closed-form log p(y), from the data back to the base, on columns (y0, y1, y2). One division and one
    log per row: Σ_k [log(1 + x_kᵀm_k) - 3 log s_k] = log(Π_k (1 + x_kᵀm_k)/s_k³), the products staying far
    from overflow (s_k lies between σ_min(M)(1 - ‖m‖) and σ_max(M)(1 + ‖m‖))."""
    c = [y[:, 0], y[:, 1], y[:, 2]]
    num, den, ldet_sum = 1.0, 1.0, 0.0
    for Mi, m, ldet, c0 in reversed(pre):
        c, s = invert_layer(Mi, m, c0, c)
        num = num * (1.0 + c[0] * m[0] + c[1] * m[1] + c[2] * m[2])
        den = den * (s * s * s)
        ldet_sum = ldet_sum + ldet
    return -LOG_AREA - ldet_sum - jnp.log(num / den)


def log_prob_generic(layers_j, pre, y):
    """log p(y) with every layer's ratio generic (jacfwd of the ambient map, tangent bases by QR, a 2×2
    determinant) at the layer inputs the closed-form inverse recovers: the cost of the generic ratio."""
    c = [y[:, 0], y[:, 1], y[:, 2]]
    total = 0.0
    for (M, b), (Mi, m, ldet, c0) in zip(reversed(layers_j), reversed(pre)):
        c, _ = invert_layer(Mi, m, c0, c)
        x = jnp.stack(c, axis=1)
        total = total + jax.vmap(lambda u, M=M, b=b: log_ratio_generic(M, b, u))(x)
    return -LOG_AREA - total


def rel(a, b):
    return np.max(np.abs(a - b) / np.maximum(1.0, np.abs(b)))


def verdict(d, bar):
    global ok
    ok = ok and d <= bar
    return "PASS" if d <= bar else "FAIL"


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(r.stderr)
    return r.stdout


print(f"W4 sphere3: {args.rows} rows, {args.threads} threads, jax {jax.__version__}")
ok = True
p = params(np.random.default_rng(0))
layers = [layer(p, k) for k in range(K)]
with tempfile.TemporaryDirectory() as tmp:
    pf = os.path.join(tmp, "p.safetensors")
    save_file({k: np.ascontiguousarray(v) for k, v in p.items()}, pf)
    z = uniform_sphere(np.random.default_rng(1), args.check_rows)
    x_ref, xs = forward(layers, jnp.asarray(z))
    lr_gen = [jax.vmap(lambda u, M=M, b=b: log_ratio_generic(jnp.asarray(M), jnp.asarray(b), u))(xk)
              for (M, m, b), xk in zip(layers, xs)]
    lr_closed = [log_ratio_closed(M, m, b, xk) for (M, m, b), xk in zip(layers, xs)]
    x_ref = np.asarray(x_ref)
    lr_ref = np.asarray(sum(lr_gen))
    lp_ref = -LOG_AREA - lr_ref
    d = max(rel(np.asarray(c), np.asarray(g)) for c, g in zip(lr_closed, lr_gen))
    print(f"log R per layer, closed form vs generic (tangent-basis det of jacfwd), f64, {args.check_rows} points: "
          f"max relative difference {d:.2e} (bar 1e-12) {verdict(d, 1e-12)}")
    d = rel(np.asarray(log_prob(prepare(layers, jnp.float64), jnp.asarray(x_ref))), lp_ref)
    print(f"log p(x), JAX closed-form inverse (the timed one) vs generic: max relative difference {d:.2e} "
          f"(bar 1e-12) {verdict(d, 1e-12)}")

    if not args.jax_only:
        zf, xf, ef, sf = (os.path.join(tmp, n) for n in ("z.npy", "x.npy", "e.npy", "s.npy"))
        np.save(xf, x_ref)
        run([FLOWC, "score", FLOW, "--name", "sphere3", "--params", pf, "--input", xf, "--output", sf])
        lp = np.load(sf).reshape(-1)
        d = rel(lp, lp_ref)
        print(f"log p(x) by flowc score vs JAX generic reference: max relative difference {d:.2e} (bar 1e-10) "
              f"{verdict(d, 1e-10)}")
        np.save(zf, z)
        run([FLOWC, "eval", FLOW, "--name", "sphere3", "--params", pf, "--input", zf, "--direction", "forward",
             "--output", ef])
        ours = np.load(ef)
        dx, dl = rel(ours[:, :D], x_ref), rel(ours[:, D], lr_ref)
        print(f"forward by flowc eval vs JAX: max relative difference x {dx:.2e}, sum log R {dl:.2e} (bar 1e-10) "
              f"{verdict(max(dx, dl), 1e-10)}")

    res = {}
    if not args.jax_only:
        out = run(["taskset", "-c", f"0-{args.threads - 1}", FLOWC, "bench", FLOW, "--name", "sphere3", "--params", pf,
                   "--rows", str(args.rows), "--kernel", "log-prob"])
        for line in out.splitlines()[2:]:
            q = line.split()
            if len(q) >= 5 and q[1].isdigit() and int(q[1]) == args.threads:
                res[q[0]] = (float(q[3]), float(q[2]))
    xb64, _ = forward(layers, jnp.asarray(uniform_sphere(np.random.default_rng(2), args.rows)))
    for prec, dt in [("f64", jnp.float64), ("f32", jnp.float32)]:
        pre = prepare(layers, dt)
        f = jax.jit(log_prob)
        xb = jnp.asarray(xb64, dt)
        jax.block_until_ready(f(pre, xb))
        ts = []
        for i in range(5):
            t0 = time.perf_counter()
            jax.block_until_ready(f(pre, xb))
            ts.append(time.perf_counter() - t0)
        jax_pps = args.rows / sorted(ts)[2]
        ours_pps, comp = res.get(prec, (float("nan"), float("nan")))
        print(f"  log-prob {prec}: jax {jax_pps:.3e} rows/s | flowc {ours_pps:.3e} rows/s (compile {comp:.1f} ms) | ratio {ours_pps / jax_pps:.2f}")
        if prec == "f64":
            # the generic ratio as the peers would compute it (jacfwd + QR), on a smaller batch
            rows_g = min(args.rows, 1 << 12)
            layers_j = [(jnp.asarray(M, dt), jnp.asarray(b, dt)) for M, m, b in layers]
            g = jax.jit(lambda pre, y: log_prob_generic(layers_j, pre, y))
            yg = xb[:rows_g]
            jax.block_until_ready(g(pre, yg))
            ts = []
            for i in range(3):
                t0 = time.perf_counter()
                jax.block_until_ready(g(pre, yg))
                ts.append(time.perf_counter() - t0)
            gen_pps = rows_g / sorted(ts)[1]
            d = rel(np.asarray(g(pre, yg)), np.asarray(f(pre, yg)))
            print(f"  log-prob f64 with the generic ratio in JAX (jacfwd + QR, {rows_g} rows): {gen_pps:.3e} rows/s "
                  f"(agrees with the closed form within {d:.1e}); JAX closed / generic {jax_pps / gen_pps:.1f}, "
                  f"flowc closed / JAX generic {ours_pps / gen_pps:.1f}")
if not ok:
    sys.exit("W4 sphere3: a check failed")
