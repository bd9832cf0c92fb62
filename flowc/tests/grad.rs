//! Gradients of log p with respect to every parameter (`flowc::grad`): the derived gradient
//! kernel, interpreted, against Richardson-extrapolated central differences of the
//! independent interpreter's log p (`flowc::interp`), for every layer kind and composed
//! flows (sphere and simplex flows, user-written maps included); the JIT's gradient kernels (f64 and f32, tiled and not, with padding rows) against
//! the interpreted one.

mod common;

use flowc::codegen::clif::Float;
use flowc::derive::{Derivation, FlowDerivation};
use flowc::interp::{self, Params};
use flowc::ir::ParamKind;
use flowc::lower::{self, Kind};

const SRC: &str = "
bijector realnvp_affine(x; s: real, t: real) = x * exp(tanh(s)) + t;
bijector shift(x; t: real) = x + t;
bijector maf_affine(x; mu: real, a: real) = x * exp(tanh(a)) + mu;
bijector sas(x; eps: real, delta: positive) = sinh(delta * asinh(x) - eps);
bijector squash(x; a: unit, b: real) = x + a * tanh(x) + b where inverse = numeric;
bijector residual(x; c: real) = x + 0.5 * tanh(x + c) where inverse = numeric;

flow elementwise_sas(x: R^3) { base normal; elementwise(sas); elementwise(squash); elementwise(sas); }
flow numeric(x: R^2) { base normal; elementwise(residual); elementwise(sas); }
flow realnvp(x: R^4) {
    base normal;
    coupling(mask = [1, 1, 0, 0], bijector = realnvp_affine, net = mlp([8, 8], tanh));
    reverse;
    coupling(mask = [0, 1, 0, 1], bijector = realnvp_affine, net = mlp([8], sigmoid));
}
flow relu_softplus(x: R^3) {
    base normal;
    coupling(mask = [1, 0, 0], bijector = realnvp_affine, net = mlp([6], relu));
    coupling(mask = [0, 1, 1], bijector = sas, net = mlp([5], softplus));
}
flow nice(x: R^3) { base normal; coupling(mask = [1, 0, 1], bijector = shift, net = mlp([6], tanh)); }
flow glow(x: R^4) { base normal; actnorm; linear(lu); permute(seed = 3); coupling(mask = [1, 0, 1, 0], bijector = realnvp_affine, net = mlp([6], tanh)); }
flow maf(x: R^4) { base normal; autoregressive(bijector = maf_affine, net = made([7, 7], tanh)); reverse; autoregressive(bijector = sas, net = made([6], relu)); }
flow iaf(x: R^3) { base normal; inverse_autoregressive(bijector = maf_affine, net = made([5], tanh)); }
flow planar(x: R^3) { base normal; planar; planar; reverse; planar; }
flow radial(x: R^2) { base normal; radial; radial; }
flow composed(x: R^4) {
    base normal;
    elementwise(sas);
    planar;
    coupling(mask = [1, 0, 1, 0], bijector = realnvp_affine, net = mlp([6], tanh));
    actnorm;
    radial;
    autoregressive(bijector = maf_affine, net = made([6], softplus));
    linear(lu);
}
flow nsf(x: R^4) {
    base normal;
    coupling(mask = [1, 1, 0, 0], bijector = spline(bins = 5, bound = 3), net = mlp([8], tanh));
    reverse;
    autoregressive(bijector = spline(bins = 4, bound = 2.5), net = made([12], tanh));
}
flow iaf_spline(x: R^3) { base normal; inverse_autoregressive(bijector = spline(bins = 3, bound = 2), net = made([9], tanh)); }
flow iaf_wide(x: R^3) { base normal; inverse_autoregressive(bijector = maf_affine, net = made([70, 70], tanh)); }
flow sphere(x: sphere(3)) { base uniform; normalized_affine; normalized_translation; reverse; normalized_linear; }
flow sphere5(x: sphere(5)) { base vmf(2.5); normalized_affine; permute(seed = 2); normalized_affine; }
flow simplex(x: simplex(4)) { base dirichlet([1.5, 2, 1, 3]); calibration; generalized_calibration; reverse; calibration; }
map affine_s(x: sphere(n); M: matrix(n, n), b: vector(n)) = normalize(M * x + b) where inverse = numeric;
map temper(x: simplex(n); a: real, b: vector(n)) = softmax(exp(a) * log(x) + b)
    where inverse = softmax((log(y) - b) / exp(a));
map temper_newton(x: simplex(n); a: real, b: vector(n)) = softmax(exp(a) * log(x) + b) where inverse = numeric;
flow user_sphere(x: sphere(3)) { base vmf(1.5); affine_s; reverse; affine_s; }
flow user_simplex(x: simplex(3)) { base dirichlet([1.5, 2, 1]); temper; temper_newton; }
flow wide(x: R^4) { base normal; coupling(mask = [1, 1, 0, 0], bijector = realnvp_affine, net = mlp([80, 80], tanh)); reverse; autoregressive(bijector = maf_affine, net = made([70, 70], tanh)); }
";

fn setup() -> Derivation {
    let (_, _, d) = flowc::cli::load_str("grad.flow", SRC).unwrap_or_else(|f| panic!("{}", f.message));
    d
}

fn flow<'a>(d: &'a Derivation, name: &str) -> &'a FlowDerivation {
    d.flows.iter().find(|f| f.name == name).expect("flow")
}

/// Deterministic random parameters (flat, in the kernels' order): entries ~ scale·U(−√3, √3),
/// moved into (0.5, ∞) for `positive` and around 0.5 for `unit` parameters.
fn random_flat(f: &FlowDerivation, seed: u64, scale: f64) -> Vec<f64> {
    let slots = lower::param_slots(f);
    let len: usize = slots.iter().map(|s| s.len).sum();
    let mut v = common::spread(len, seed, 2.0 * 3f64.sqrt() * scale);
    for s in &slots {
        for x in &mut v[s.offset..s.offset + s.len] {
            *x = match s.kind {
                ParamKind::Real => *x,
                ParamKind::Positive => 0.5 + x.abs(),
                ParamKind::Unit => 0.5 + 0.5 * x.tanh(),
            };
        }
    }
    // user maps: near their identity-like defaults, so that they are bijections
    if f.layers.iter().any(|l| matches!(l.kind, flowc::derive::LayerKind::Map(_))) {
        v.iter_mut().for_each(|x| *x *= 0.4);
        for s in slots.iter().filter(|s| s.shape.len() == 2 && s.shape[0] == s.shape[1]) {
            for i in 0..s.shape[0] {
                v[s.offset + i * s.shape[0] + i] += 1.0;
            }
        }
    }
    v
}

fn params_of(d: &Derivation, f: &FlowDerivation, flat: &[f64]) -> Params {
    let mut p = Params::defaults(d, f);
    for s in lower::param_slots(f) {
        p.values.insert(s.name.clone(), flat[s.offset..s.offset + s.len].to_vec());
    }
    p
}

fn rows(dim: usize, n: usize, seed: u64) -> Vec<Vec<f64>> {
    common::spread(dim * n, seed, 3.0).chunks(dim).map(|r| r.to_vec()).collect()
}

/// Rows in the flow's space: on the unit sphere for sphere flows, softmax of the rows on the
/// simplex.
fn rows_of(f: &FlowDerivation, n: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut xs = rows(f.dim, n, seed);
    match f.space {
        flowc::ir::Space::Real => {}
        flowc::ir::Space::Sphere => {
            for x in &mut xs {
                let r = x.iter().map(|v| v * v).sum::<f64>().sqrt();
                x.iter_mut().for_each(|v| *v /= r);
            }
        }
        flowc::ir::Space::Simplex => {
            for x in &mut xs {
                *x = runtime::manifold::softmax(x);
            }
        }
    }
    xs
}

/// Σ_rows log p by the independent interpreter.
fn total_log_prob(d: &Derivation, f: &FlowDerivation, flat: &[f64], xs: &[Vec<f64>]) -> f64 {
    let p = params_of(d, f, flat);
    xs.iter().map(|x| interp::log_prob(d, f, &p, x)).sum()
}

/// ∂/∂θ_j by central differences, Richardson-extrapolated (error O(h⁴)).
fn finite_difference(d: &Derivation, f: &FlowDerivation, flat: &[f64], xs: &[Vec<f64>], j: usize) -> f64 {
    let central = |h: f64| {
        let mut p = flat.to_vec();
        p[j] = flat[j] + h;
        let up = total_log_prob(d, f, &p, xs);
        p[j] = flat[j] - h;
        let down = total_log_prob(d, f, &p, xs);
        (up - down) / (2.0 * h)
    };
    let h = 1e-3 * (1.0 + flat[j].abs());
    (4.0 * central(h / 2.0) - central(h)) / 3.0
}

fn interpreted_gradient(g: &lower::Kernel, flat: &[f64], xs: &[Vec<f64>]) -> (f64, Vec<f64>) {
    let mut grad = vec![0.0; flat.len()];
    let mut total = 0.0;
    for x in xs {
        total += lower::run_grad(g, x, flat, &mut grad)[0];
    }
    (total, grad)
}

const ALL: [&str; 20] = [
    "elementwise_sas",
    "numeric",
    "realnvp",
    "relu_softplus",
    "nice",
    "glow",
    "maf",
    "iaf",
    "planar",
    "radial",
    "composed",
    "nsf",
    "iaf_spline",
    "iaf_wide",
    "wide",
    "sphere",
    "sphere5",
    "simplex",
    "user_sphere",
    "user_simplex",
];

#[test]
fn gradients_match_finite_differences_of_the_independent_interpreter() {
    let d = setup();
    let p = lower::lower(&d).unwrap();
    for name in ALL {
        let f = flow(&d, name);
        let g = flowc::grad::gradient(p.kernel(name, Kind::LogProb).unwrap()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let flat = random_flat(f, 11, 0.4);
        let xs = rows_of(f, 5, 3);
        let (total, grad) = interpreted_gradient(&g, &flat, &xs);
        let reference = total_log_prob(&d, f, &flat, &xs);
        assert!((total - reference).abs() <= 1e-10 * (1.0 + reference.abs()), "{name}: log p {total} vs {reference}");
        // every entry of small flows; a spread of entries (first and last of each tensor) of wide ones
        let mut entries: Vec<usize> = Vec::new();
        for s in lower::param_slots(f) {
            if s.len <= 40 {
                entries.extend(s.offset..s.offset + s.len);
            } else {
                entries.extend((0..40).map(|i| s.offset + i * (s.len - 1) / 39));
            }
        }
        let scale = grad.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        for j in entries {
            let fd = finite_difference(&d, f, &flat, &xs, j);
            let err = (grad[j] - fd).abs() / scale;
            assert!(
                err < 1e-7,
                "{name}: ∂/∂θ[{j}] derived {} vs differences {fd} (relative to the largest entry {scale}: {err:.1e})",
                grad[j]
            );
        }
    }
}

#[test]
fn nice_scale_free_gradients_have_no_log_det_part() {
    // additive coupling: log|det J| = 0, so the conditioner's gradient comes only through the
    // base density: ∂/∂θ Σ log N(z) with z = x − t(x_a; θ) — checked against the explicit form
    let d = setup();
    let p = lower::lower(&d).unwrap();
    let f = flow(&d, "nice");
    let g = flowc::grad::gradient(p.kernel("nice", Kind::LogProb).unwrap()).unwrap();
    let flat = random_flat(f, 5, 0.5);
    let xs = rows(3, 4, 9);
    let (_, grad) = interpreted_gradient(&g, &flat, &xs);
    // the output layer's bias b_j shifts t_j: ∂ log p/∂b_j = Σ_rows z_j (for the transformed coordinate j)
    let params = params_of(&d, f, &flat);
    let slots = lower::param_slots(f);
    let bias = slots.iter().find(|s| s.name == "layers.0.net.2.bias").expect("output bias");
    let mut expected = vec![0.0; bias.len];
    for x in &xs {
        let mut z = vec![0.0; 3];
        interp::inverse(&d, f, &params, x, &mut z);
        // mask [1, 0, 1]: coordinate 1 is transformed, its shift is network output 0
        expected[0] += z[1];
    }
    assert!((grad[bias.offset] - expected[0]).abs() < 1e-12, "{} vs {}", grad[bias.offset], expected[0]);
}

#[test]
fn jit_gradient_kernels_match_the_interpreted_ones() {
    let d = setup();
    let p = lower::lower(&d).unwrap();
    for name in ALL {
        let f = flow(&d, name);
        let g = flowc::grad::gradient(p.kernel(name, Kind::LogProb).unwrap()).unwrap();
        let flat = random_flat(f, 17, 0.4);
        // 300 rows: two whole tiles of 128 and a partial one (padding lanes must not count)
        let xs = rows_of(f, 300, 21);
        let (total, grad) = interpreted_gradient(&g, &flat, &xs);
        let scale = grad.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        let flat_rows: Vec<f64> = xs.concat();
        let k = flowc::jit::compile(&g, Float::F64).unwrap_or_else(|e| panic!("{name}: {}", e.0));
        let mut out = vec![0.0; xs.len()];
        let mut jgrad = vec![0.0; flat.len()];
        k.run_grad_f64(&flat_rows, &flat, &mut out, &mut jgrad).unwrap();
        let jtotal: f64 = out.iter().sum();
        assert!((jtotal - total).abs() <= 1e-10 * (1.0 + total.abs()), "{name}: JIT log p {jtotal} vs {total}");
        for (j, (a, b)) in jgrad.iter().zip(&grad).enumerate() {
            assert!((a - b).abs() <= 1e-10 * scale, "{name} f64: ∂/∂θ[{j}] JIT {a} vs interpreted {b}");
        }
        let k32 = flowc::jit::compile(&g, Float::F32).unwrap();
        let rows32: Vec<f32> = flat_rows.iter().map(|v| *v as f32).collect();
        let params32: Vec<f32> = flat.iter().map(|v| *v as f32).collect();
        let mut out32 = vec![0.0f32; xs.len()];
        let mut grad32 = vec![0.0f32; flat.len()];
        k32.run_grad_f32(&rows32, &params32, &mut out32, &mut grad32).unwrap();
        for (j, (a, b)) in grad32.iter().zip(&grad).enumerate() {
            assert!((*a as f64 - b).abs() <= 2e-3 * scale, "{name} f32: ∂/∂θ[{j}] JIT {a} vs interpreted {b}");
        }
    }
}

#[test]
fn gradient_kernels_refuse_the_wrong_call() {
    let d = setup();
    let p = lower::lower(&d).unwrap();
    let g = flowc::grad::gradient(p.kernel("nice", Kind::LogProb).unwrap()).unwrap();
    let k = flowc::jit::compile(&g, Float::F64).unwrap();
    let err = k.run_f64(&[0.0; 3], &vec![0.0; g.param_len()], &mut [0.0]).unwrap_err();
    assert!(err.0.contains("run_grad"), "{}", err.0);
    let err = k.run_grad_f64(&[0.0; 3], &vec![0.0; g.param_len()], &mut [0.0], &mut [0.0; 2]).unwrap_err();
    assert!(err.0.contains("gradient takes"), "{}", err.0);
    assert!(flowc::grad::gradient(p.kernel("nice", Kind::Forward).unwrap()).is_err());
}
