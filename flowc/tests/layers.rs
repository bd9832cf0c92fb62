//! Structural layers (coupling, autoregressive, linear(lu), permutations, actnorm): round
//! trips, log|det J| against an independent Jacobian (Richardson-extrapolated central
//! differences, then a determinant by Gaussian elimination), the kernels and the JIT against
//! the reference interpreter, in f64 and f32.

mod common;

use flowc::codegen::clif::Float;
use flowc::derive::{Derivation, FlowDerivation};
use flowc::interp::{self, Params};
use flowc::lower::{self, Kind};

const SRC: &str = "
/// RealNVP's affine map: the log-scale goes through tanh to stay moderate.
bijector realnvp_affine(x; s: real, t: real) = x * exp(tanh(s)) + t;
bijector shift(x; t: real) = x + t;
bijector maf_affine(x; mu: real, a: real) = x * exp(tanh(a)) + mu;
bijector maf_affine_inv(x; mu: real, a: real) = (x - mu) * exp(-tanh(a));
bijector sas(x; eps: real, delta: positive) = sinh(delta * asinh(x) - eps);

flow realnvp(x: R^4) {
    base normal;
    coupling(mask = [1, 1, 0, 0], bijector = realnvp_affine, net = mlp([8, 8], tanh));
    reverse;
    coupling(mask = [0, 1, 0, 1], bijector = realnvp_affine, net = mlp([8], sigmoid));
    actnorm;
    linear(lu);
    permute(seed = 3);
}
flow realnvp_relu(x: R^4) { base normal; coupling(mask = [1, 1, 0, 0], bijector = realnvp_affine, net = mlp([8], relu)); }
flow nice(x: R^3) { base normal; coupling(mask = [1, 0, 1], bijector = shift, net = mlp([6], softplus)); }
flow spline_like(x: R^3) { base normal; coupling(mask = [0, 1, 0], bijector = sas, net = mlp([5], sigmoid)); }
flow maf(x: R^4) { base normal; autoregressive(bijector = maf_affine, net = made([7, 7], softplus)); reverse; autoregressive(bijector = sas, net = made([6], tanh)); }
flow maf_relu(x: R^3) { base normal; autoregressive(bijector = maf_affine, net = made([8, 8], relu)); }
flow maf_big(x: R^4) { base normal; autoregressive(bijector = maf_affine, net = made([70, 70], tanh)); }
flow iaf_big(x: R^4) { base normal; inverse_autoregressive(bijector = maf_affine, net = made([70, 70], softplus)); }
flow iaf(x: R^4) { base normal; inverse_autoregressive(bijector = maf_affine, net = made([5], tanh)); }
flow maf1(x: R^4) { base normal; autoregressive(bijector = maf_affine, net = made([9, 9], tanh)); }
flow nsf(x: R^4) {
    base normal;
    coupling(mask = [1, 1, 0, 0], bijector = spline(bins = 5, bound = 3), net = mlp([8], tanh));
    reverse;
    autoregressive(bijector = spline(bins = 4, bound = 2.5), net = made([12], tanh));
    inverse_autoregressive(bijector = spline(bins = 3, bound = 2), net = made([9], tanh));
}
flow planar3(x: R^3) { base normal; planar; planar; reverse; planar; }
flow radial3(x: R^3) { base normal; radial; radial; planar; radial; }
flow radial1(x: R^1) { base normal; radial; radial; }
flow planar_coupled(x: R^4) { base normal; planar; coupling(mask = [1, 0, 1, 0], bijector = realnvp_affine, net = mlp([6], tanh)); planar; }
flow iaf1(x: R^4) { base normal; inverse_autoregressive(bijector = maf_affine_inv, net = made([9, 9], tanh)); }
";

fn setup() -> Derivation {
    let (_, _, d) = flowc::cli::load_str("layers.flow", SRC).unwrap_or_else(|f| panic!("{}", f.message));
    d
}

/// Deterministic random parameters: every tensor entry ~ scale · U(-1, 1)·√3.
fn random_params(d: &Derivation, f: &FlowDerivation, seed: u64, scale: f64) -> Params {
    let mut p = Params::defaults(d, f);
    for (i, (_, v)) in p.values.iter_mut().enumerate() {
        let r = common::spread(v.len(), seed + i as u64 * 7920, 2.0 * 3f64.sqrt() * scale);
        v.copy_from_slice(&r);
    }
    p
}

fn flat(f: &FlowDerivation, p: &Params) -> Vec<f64> {
    let slots = lower::param_slots(f);
    let mut out = vec![0.0; slots.iter().map(|s| s.len).sum()];
    for s in &slots {
        out[s.offset..s.offset + s.len].copy_from_slice(&p.values[&s.name]);
    }
    out
}

/// The Jacobian of the forward map at z (finite differences; `flowc::check::jacobian`).
fn jacobian(d: &Derivation, f: &FlowDerivation, p: &Params, z: &[f64]) -> Vec<Vec<f64>> {
    let fwd = |zz: &[f64]| {
        let mut x = vec![0.0; zz.len()];
        interp::forward(d, f, p, zz, &mut x);
        x
    };
    flowc::check::jacobian(&fwd, z)
}

use flowc::check::log_abs_det;

/// A stencil ten times narrower than [`jacobian`]'s.
fn small_step_jacobian(d: &Derivation, f: &FlowDerivation, p: &Params, z: &[f64]) -> Vec<Vec<f64>> {
    let fwd = |zz: &[f64]| {
        let mut x = vec![0.0; zz.len()];
        interp::forward(d, f, p, zz, &mut x);
        x
    };
    flowc::check::jacobian_with_step(&fwd, z, 1e-4)
}

fn rows(dim: usize, n: usize, seed: u64) -> Vec<Vec<f64>> {
    common::spread(dim * n, seed, 4.0).chunks(dim).map(|r| r.to_vec()).collect()
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / (1.0 + a.abs().max(b.abs()))
}

#[test]
fn round_trip_and_log_det_against_an_independent_jacobian() {
    let d = setup();
    for f in &d.flows {
        for seed in [1, 2, 3] {
            let p = random_params(&d, f, seed * 101, 0.4);
            for z in rows(f.dim, 20, seed) {
                let mut x = vec![0.0; f.dim];
                let ld = interp::forward(&d, f, &p, &z, &mut x);
                let mut back = vec![0.0; f.dim];
                let ld_inv = interp::inverse(&d, f, &p, &x, &mut back);
                for i in 0..f.dim {
                    assert!(rel(back[i], z[i]) < 1e-12, "{}: round trip {z:?} -> {x:?} -> {back:?}", f.name);
                }
                assert!(rel(ld, ld_inv) < 1e-12, "{}: log-det forward {ld} vs at the recovered point {ld_inv}", f.name);
                if f.name.contains("relu") {
                    continue; // kinks: central differences are not a reference there
                }
                // splines are C¹ with jumps in f'' at the knots, where the extrapolated wide
                // stencil loses its order: plain central differences with a small step there
                let jac = if f.name.starts_with("nsf") { small_step_jacobian(&d, f, &p, &z) } else { jacobian(&d, f, &p, &z) };
                let want = log_abs_det(jac);
                assert!(rel(ld, want) < 1e-9, "{} at {z:?}: log|det J| {ld}, independent Jacobian {want}", f.name);
            }
        }
    }
}

#[test]
fn additive_coupling_is_volume_preserving() {
    let d = setup();
    let f = d.flow("nice").unwrap();
    let p = random_params(&d, f, 7, 1.0);
    let k = lower::lower(&d).unwrap();
    let fk = k.kernel("nice", Kind::Forward).unwrap();
    for z in rows(3, 10, 9) {
        let out = lower::run(fk, &z, &flat(f, &p));
        assert_eq!(out[3], 0.0, "log|det J| of an additive coupling is exactly 0");
    }
    let text = flowc::report::flow_text(&d, f);
    assert!(text.contains("log|det J| = 0   [additive coupling"), "{text}");
}

#[test]
fn maf_and_iaf_are_each_others_inverse() {
    // an IAF layer with the inverse map is the MAF layer run backwards, with the same weights
    let d = setup();
    let (maf, iaf) = (d.flow("maf1").unwrap(), d.flow("iaf1").unwrap());
    let p = random_params(&d, maf, 11, 0.5);
    let mut q = Params::defaults(&d, iaf);
    for (k, v) in &p.values {
        q.set_all(k, v).unwrap();
    }
    for x in rows(4, 20, 12) {
        let mut u1 = vec![0.0; 4];
        let ld1 = interp::inverse(&d, maf, &p, &x, &mut u1);
        let mut u2 = vec![0.0; 4];
        let ld2 = interp::forward(&d, iaf, &q, &x, &mut u2);
        for i in 0..4 {
            assert!(rel(u1[i], u2[i]) < 1e-13, "{u1:?} vs {u2:?}");
        }
        assert!(rel(ld1, -ld2) < 1e-12, "{ld1} vs {}", -ld2);
    }
}

#[test]
fn kernels_and_jit_match_the_interpreter() {
    let d = setup();
    let program = lower::lower(&d).unwrap();
    for f in &d.flows {
        let p = random_params(&d, f, 5, 0.4);
        let fl = flat(f, &p);
        let zs = rows(f.dim, 37, 21);
        let xs: Vec<Vec<f64>> = zs
            .iter()
            .map(|z| {
                let mut x = vec![0.0; f.dim];
                interp::forward(&d, f, &p, z, &mut x);
                x
            })
            .collect();
        for kind in [Kind::Forward, Kind::Inverse, Kind::LogProb] {
            let k = program.kernel(&f.name, kind).unwrap();
            let inputs = if kind == Kind::Forward { &zs } else { &xs };
            let want: Vec<Vec<f64>> = inputs
                .iter()
                .map(|r| match kind {
                    Kind::Forward => {
                        let mut x = vec![0.0; f.dim];
                        let ld = interp::forward(&d, f, &p, r, &mut x);
                        x.into_iter().chain([ld]).collect()
                    }
                    Kind::Inverse => {
                        let mut z = vec![0.0; f.dim];
                        let ld = interp::inverse(&d, f, &p, r, &mut z);
                        z.into_iter().chain([ld]).collect()
                    }
                    Kind::LogProb | Kind::Gradient | Kind::Ratio => vec![interp::log_prob(&d, f, &p, r)],
                })
                .collect();
            let c64 = flowc::jit::compile(k, Float::F64).unwrap();
            let c32 = flowc::jit::compile(k, Float::F32).unwrap();
            let flat_in: Vec<f64> = inputs.concat();
            let mut out = vec![0.0; inputs.len() * c64.outputs];
            c64.run_f64(&flat_in, &fl, &mut out).unwrap();
            let in32: Vec<f32> = flat_in.iter().map(|v| *v as f32).collect();
            let p32: Vec<f32> = fl.iter().map(|v| *v as f32).collect();
            let mut out32 = vec![0.0f32; inputs.len() * c32.outputs];
            c32.run_f32(&in32, &p32, &mut out32).unwrap();
            for (r, w) in want.iter().enumerate() {
                let got = lower::run(k, &inputs[r], &fl);
                for j in 0..w.len() {
                    let what = format!("{}.{} row {r} output {j}", f.name, kind.name());
                    assert!(rel(got[j], w[j]) < 1e-12, "{what}: kernel {} vs interpreter {}", got[j], w[j]);
                    let jit = out[r * c64.outputs + j];
                    assert!(rel(jit, w[j]) < 1e-12, "{what}: JIT f64 {jit} vs interpreter {}", w[j]);
                    let j32 = out32[r * c32.outputs + j] as f64;
                    assert!(rel(j32, w[j]) < 2e-3, "{what}: JIT f32 {j32} vs interpreter {}", w[j]);
                }
            }
        }
    }
}

#[test]
fn bad_layers_are_reported_with_their_place() {
    let cases = [
        ("flow f(x: R^2) { coupling(mask = [1, 0, 1], bijector = s, net = mlp([4], tanh)); }", "the mask has 3 entries"),
        ("flow f(x: R^2) { coupling(mask = [1, 1], bijector = s, net = mlp([4], tanh)); }", "must keep some coordinates"),
        ("flow f(x: R^2) { coupling(mask = [1, 0], bijector = s, net = mlp([4], tanhh)); }", "did you mean `tanh`"),
        ("flow f(x: R^2) { coupling(mask = [1, 0], bijector = s); }", "needs a mask, a bijector and a network"),
        ("flow f(x: R^2) { coupling(mask = [1, 0], bijector = s, net = made([4], tanh)); }", "unknown network `made` here"),
        ("flow f(x: R^2) { autoregressive(bijector = s, net = made([4], relu), mask = [1]); }", "has no argument `mask`"),
        ("flow f(x: R^1) { autoregressive(bijector = s, net = made([4], relu)); }", "needs at least 2 dimensions"),
        ("flow f(x: R^2) { linear(qr); }", "write `linear(lu)`"),
        ("flow f(x: R^2) { permute; }", "needs a seed"),
        ("flow f(x: R^2) { coupling(mask = [1, 0], bijector = fixed, net = mlp([4], tanh)); }", "no free parameter"),
        ("flow f(x: R^2) { reverse(1); }", "takes no arguments"),
        ("flow f(x: R^2) { coupling(mask = [1, 0], bijector = s, net = mlp([0], tanh)); }", "at least one unit"),
        ("flow f(x: R^2) { planar(u = 1); }", "`planar` takes no arguments"),
        ("flow f(x: R^2) { radial(2); }", "`radial` takes no arguments"),
        ("flow f(x: R^2) { coupling(mask = [1, 0], bijector = spline(bins = 0, bound = 3), net = mlp([4], tanh)); }", "1 to 64 bins"),
        ("flow f(x: R^2) { coupling(mask = [1, 0], bijector = spline(bins = 4, bound = -1), net = mlp([4], tanh)); }", "positive number"),
        (
            "flow f(x: R^2) { coupling(mask = [1, 0], bijector = spline(bins = 4), net = mlp([4], tanh)); }",
            "needs a number of bins and a bound",
        ),
        ("flow f(x: R^2) { elementwise(spline(bins = 4, bound = 3)); }", "a bijector of `coupling`, `autoregressive`"),
    ];
    for (flow, want) in cases {
        let src = format!("bijector s(x; t: real) = x + t;\nbijector fixed(x) = 2 * x;\n{flow}");
        let err = match flowc::cli::load_str("bad.flow", &src) {
            Ok(_) => panic!("accepted: {flow}"),
            Err(e) => e,
        };
        assert_eq!(err.code, 1);
        assert!(err.message.contains(want), "{flow}: {}", err.message);
        assert!(err.message.contains("bad.flow:3:"), "{flow}: no location in {}", err.message);
    }
}

#[test]
fn check_verifies_whole_flows() {
    let d = setup();
    for name in ["realnvp", "nice", "maf", "iaf_big", "planar3", "planar_coupled", "radial3", "nsf"] {
        let r = flowc::check::check(&d, Some(name));
        assert!(r.passed(), "{}", r.render());
        assert!(r.rows.iter().any(|row| row.bijector == format!("flow {name}") && row.quantity == "log|det J|"));
    }
}

#[test]
fn planar_and_radial_inverses_are_accurate_at_extremes() {
    // backward error: forward(inverse(y)) = y to rounding, also where the layer is nearly
    // singular (ûᵀw → −1, β → −α) and at far-away points
    let d = setup();
    let program = lower::lower(&d).unwrap();
    for (name, sets) in [
        ("planar3", vec![("u", 0.3), ("w", 0.8), ("b", 0.1)]),
        ("planar3", vec![("u", -30.0), ("w", 1.0), ("b", -0.2)]),
        ("planar3", vec![("u", 40.0), ("w", 0.05), ("b", 2.0)]),
        ("radial3", vec![("z0", 0.5), ("alpha", -3.0), ("beta", -20.0)]),
        ("radial3", vec![("z0", -1.0), ("alpha", 4.0), ("beta", 30.0)]),
    ] {
        let f = d.flow(name).unwrap();
        let mut p = Params::defaults(&d, f);
        for (k, l) in f.layers.iter().enumerate() {
            if matches!(l.kind, flowc::derive::LayerKind::Planar | flowc::derive::LayerKind::Radial) {
                for (t, v) in &sets {
                    let key = format!("layers.{k}.{t}");
                    if p.values.contains_key(&key) {
                        p.set(&key, *v).unwrap();
                    }
                }
            }
        }
        let fl = flat(f, &p);
        let inv = program.kernel(name, Kind::Inverse).unwrap();
        let fwd = program.kernel(name, Kind::Forward).unwrap();
        let mut ys: Vec<Vec<f64>> = rows(3, 10, 4);
        for m in [1e-300, 1e-8, 1.0, 1e3, 1e8, 1e15] {
            ys.push(vec![m, -m, 0.5 * m]);
            ys.push(vec![-m, 0.0, m]);
        }
        for y in ys {
            let z = lower::run(inv, &y, &fl);
            let back = lower::run(fwd, &z[..3], &fl);
            for i in 0..3 {
                let tol = 1e-12 * (1.0 + y.iter().map(|v| v.abs()).fold(0.0, f64::max));
                assert!((back[i] - y[i]).abs() <= tol, "{name} {sets:?}: y {y:?} -> z {z:?} -> {back:?}");
            }
            assert!(z[3].is_finite(), "{name}: log-det at {y:?}");
            let mut zi = vec![0.0; 3];
            let ld = interp::inverse(&d, f, &p, &y, &mut zi);
            assert!(rel(ld, z[3]) < 1e-9, "{name} {sets:?} at {y:?}: log-det kernel {} vs interpreter {ld}", z[3]);
        }
    }
}
