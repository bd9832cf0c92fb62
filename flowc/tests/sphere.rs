//! Flows on the sphere: the compiled closed forms (JIT, f64 and f32) of the normalized
//! translation, linear and affine maps against the generic volume ratio |det(T_yᵀ F_x T_x)|
//! (the ambient Jacobian of `runtime::manifold`'s independent general map, Householder tangent
//! bases) and against the compiled generic ratio (`flowc::ratio`) over 10⁵ random points per
//! kind; round trips that stay on the sphere.

use flowc::codegen::clif::Float;
use flowc::derive::dual::Gen;
use flowc::lower::{self, Kind};
use runtime::manifold::{sphere_tangent, volume_ratio, NormalizedAffine};

const KINDS: [&str; 3] = ["normalized_translation", "normalized_linear", "normalized_affine"];

/// Parameter sets per kind and points per set: 10⁵ points per kind.
const SETS: usize = 10;
const POINTS: usize = 10_000;

struct OneLayer {
    generic: flowc::jit::Compiled,
    forward: flowc::jit::Compiled,
    inverse: flowc::jit::Compiled,
    forward32: flowc::jit::Compiled,
    inverse32: flowc::jit::Compiled,
    slots: Vec<lower::ParamSlot>,
}

fn one_layer(kind: &str, n: usize) -> OneLayer {
    let src = format!("flow one(x: sphere({n})) {{ base uniform; {kind}; }}");
    let (_, _, d) = flowc::cli::load_str("one.flow", &src).unwrap_or_else(|f| panic!("{}", f.message));
    let p = lower::lower(&d).unwrap();
    let c = |k: Kind, prec: Float| flowc::jit::compile(p.kernel("one", k).unwrap(), prec).unwrap();
    let generic = flowc::ratio::generic(p.kernel("one", Kind::Forward).unwrap(), flowc::ir::Space::Sphere).unwrap();
    OneLayer {
        generic: flowc::jit::compile(&generic, Float::F64).unwrap(),
        forward: c(Kind::Forward, Float::F64),
        inverse: c(Kind::Inverse, Float::F64),
        forward32: c(Kind::Forward, Float::F32),
        inverse32: c(Kind::Inverse, Float::F32),
        slots: p.kernel("one", Kind::Forward).unwrap().params.clone(),
    }
}

/// Random flat parameters (entries of `lower`/`upper` in ±`spread`, log_diag in ±`spread`,
/// shift in ±3·`spread`) and the general map they stand for: M = L·U, b = M·m,
/// m = v/√(1 + ‖v‖²).
fn random_map(l: &OneLayer, n: usize, g: &mut Gen, spread: f64) -> (Vec<f64>, NormalizedAffine) {
    let len: usize = l.slots.iter().map(|s| s.len).sum();
    let mut flat = vec![0.0; len];
    let mut m: Vec<f64> = (0..n * n).map(|i| f64::from(u8::from(i / n == i % n))).collect();
    let mut shift = vec![0.0; n];
    let (mut lo, mut up, mut dg) = (vec![0.0; n * n], vec![0.0; n * n], vec![0.0; n]);
    for s in &l.slots {
        let vals: Vec<f64> = (0..s.len).map(|_| spread * g.uniform()).collect();
        flat[s.offset..s.offset + s.len].copy_from_slice(&vals);
        match s.name.rsplit('.').next().unwrap() {
            "lower" => lo = vals,
            "upper" => up = vals,
            "log_diag" => dg = vals,
            _ => {
                let v: Vec<f64> = vals.iter().map(|x| 3.0 * x).collect();
                flat[s.offset..s.offset + s.len].copy_from_slice(&v);
                let r = 1.0 / (1.0 + v.iter().map(|x| x * x).sum::<f64>()).sqrt();
                shift = v.iter().map(|x| x * r).collect();
            }
        }
    }
    if l.slots.iter().any(|s| s.name.ends_with(".lower")) {
        for i in 0..n {
            for j in 0..n {
                m[i * n + j] = (0..n)
                    .map(|t| {
                        let lv = if i == t {
                            1.0
                        } else if t < i {
                            lo[i * n + t]
                        } else {
                            0.0
                        };
                        let uv = if t == j {
                            dg[t].exp()
                        } else if j > t {
                            up[t * n + j]
                        } else {
                            0.0
                        };
                        lv * uv
                    })
                    .sum();
            }
        }
    }
    let b: Vec<f64> = (0..n).map(|i| (0..n).map(|j| m[i * n + j] * shift[j]).sum()).collect();
    (flat, NormalizedAffine::new(n, m, b).unwrap())
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// Closed form vs generic ratio, round trips, f32, on S^(n−1) with parameters of `spread`:
/// returns the largest relative ratio difference, round-trip error and |‖y‖ − 1| (f64), and
/// |‖y‖ − 1| and the largest log-ratio difference to f64 (f32); and the largest relative
/// difference between the closed form and the compiled generic ratio (`flowc::ratio`).
fn sweep(kind: &str, n: usize, spread: f64, sets: usize, points: usize) -> [f64; 6] {
    let l = one_layer(kind, n);
    let mut g = Gen(0x51e4e ^ (n as u64) << 8 ^ kind.len() as u64);
    let mut worst = [0.0f64; 6];
    for set in 0..sets {
        let (flat, map) = random_map(&l, n, &mut g, spread);
        let xs = runtime::sample::sphere_rows(set as u64 + 1, 0, points, n);
        let mut fwd = vec![0.0; points * (n + 1)];
        l.forward.run_f64(&xs, &flat, &mut fwd).unwrap();
        let ys: Vec<f64> = fwd.chunks(n + 1).flat_map(|r| r[..n].to_vec()).collect();
        let mut inv = vec![0.0; points * (n + 1)];
        l.inverse.run_f64(&ys, &flat, &mut inv).unwrap();
        let mut gen = vec![0.0; points * (n + 1)];
        l.generic.run_f64(&xs, &flat, &mut gen).unwrap();
        for (a, b) in fwd.chunks(n + 1).zip(gen.chunks(n + 1)) {
            worst[5] = worst[5].max(((a[n] - b[n]).exp() - 1.0).abs());
        }
        for (r, x) in xs.chunks(n).enumerate() {
            let out = &fwd[r * (n + 1)..(r + 1) * (n + 1)];
            let (y, log_r) = (&out[..n], out[n]);
            // the generic ratio of the independent general map at x
            let y_ref = map.forward(x);
            let generic = volume_ratio(&map.jacobian(x), &sphere_tangent(x), &sphere_tangent(&y_ref), n);
            let rel = ((log_r - generic.ln()).exp() - 1.0).abs();
            let back = &inv[r * (n + 1)..(r + 1) * (n + 1)];
            let trip = x.iter().zip(&back[..n]).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            // the inverse kernel reports the forward layer's log R at the recovered point
            let rel_inv = ((back[n] - generic.ln()).exp() - 1.0).abs();
            worst[0] = worst[0].max(rel).max(rel_inv);
            worst[1] = worst[1].max(trip);
            worst[2] = worst[2].max((norm(y) - 1.0).abs());
            assert!(rel.is_finite() && trip.is_finite(), "{kind} at {x:?}: {out:?}");
        }
        // f32: on the sphere to a few f32 ulps, and log R near the f64 value
        let xs32: Vec<f32> = xs.iter().map(|v| *v as f32).collect();
        let f32p: Vec<f32> = flat.iter().map(|v| *v as f32).collect();
        let mut fwd32 = vec![0.0f32; points * (n + 1)];
        l.forward32.run_f32(&xs32, &f32p, &mut fwd32).unwrap();
        let mut inv32 = vec![0.0f32; points * (n + 1)];
        let ys32: Vec<f32> = fwd32.chunks(n + 1).flat_map(|r| r[..n].to_vec()).collect();
        l.inverse32.run_f32(&ys32, &f32p, &mut inv32).unwrap();
        for r in 0..points {
            let y: Vec<f64> = fwd32[r * (n + 1)..r * (n + 1) + n].iter().map(|v| *v as f64).collect();
            worst[3] = worst[3].max((norm(&y) - 1.0).abs());
            worst[4] = worst[4].max((fwd32[r * (n + 1) + n] as f64 - fwd[r * (n + 1) + n]).abs());
            let back = &inv32[r * (n + 1)..(r + 1) * (n + 1)];
            let x = &xs[r * n..(r + 1) * n];
            let trip = x.iter().zip(&back[..n]).map(|(a, b)| (a - *b as f64).abs()).fold(0.0, f64::max);
            worst[4] = worst[4].max(trip);
        }
    }
    worst
}

#[test]
fn closed_forms_match_the_generic_ratio_and_round_trip_on_the_sphere() {
    for kind in KINDS {
        let [rel, trip, on, on32, err32, compiled] = sweep(kind, 3, 0.5, SETS, POINTS);
        println!("{kind} on S²: {} points, closed vs generic {rel:.1e} (vs the compiled generic {compiled:.1e}), round trip {trip:.1e}, |‖y‖ − 1| {on:.1e}; f32: |‖y‖ − 1| {on32:.1e}, vs f64 {err32:.1e}", SETS * POINTS);
        assert!(compiled <= 1e-12, "{kind}: closed form vs the compiled generic ratio {compiled:e}");
        assert!(rel <= 1e-12, "{kind}: closed form vs generic ratio {rel:e}");
        assert!(trip <= 1e-12, "{kind}: round trip {trip:e}");
        assert!(on <= 4.0 * f64::EPSILON, "{kind}: |‖y‖ − 1| = {on:e}");
        assert!(on32 <= 4.0 * f32::EPSILON as f64, "{kind} f32: |‖y‖ − 1| = {on32:e}");
        assert!(err32 <= 2e-5, "{kind} f32: {err32:e} from f64");
    }
}

#[test]
fn higher_dimensions_and_harder_parameters() {
    // S⁴ in R⁵, and on S² matrices with singular values spread over e^±4 and translations
    // with ‖m‖ up to 1 − 6e-3
    for kind in KINDS {
        let [rel, trip, on, _, _, _] = sweep(kind, 5, 0.5, 2, 5000);
        assert!(rel <= 1e-12 && trip <= 1e-12 && on <= 4.0 * f64::EPSILON, "{kind} on S⁴: {rel:e} {trip:e} {on:e}");
        let [rel, trip, on, _, _, _] = sweep(kind, 3, 4.0, 4, 5000);
        println!("{kind} on S², spread 4: closed vs generic {rel:.1e}, round trip {trip:.1e}, |‖y‖ − 1| {on:.1e}");
        assert!(rel <= 1e-10 && trip <= 1e-9 && on <= 4.0 * f64::EPSILON, "{kind} spread 4: {rel:e} {trip:e} {on:e}");
    }
}

/// ∫ p dA over S² by the midpoint rule on a longitude–latitude grid (cell areas exact):
/// the flow's log p from the compiled log_prob kernel.
fn integral_on_s2(src: &str, name: &str, seed: u64) -> f64 {
    let (_, _, d) = flowc::cli::load_str("i.flow", src).unwrap_or_else(|f| panic!("{}", f.message));
    let f = d.flow(name).unwrap();
    let flat = flowc::params::flat(f, &flowc::params::init(&d, f, seed));
    let p = lower::lower(&d).unwrap();
    let lp = flowc::jit::compile(p.kernel(name, Kind::LogProb).unwrap(), Float::F64).unwrap();
    let (nl, nt) = (1600usize, 800usize);
    let mut rows = Vec::with_capacity(nl * nt * 3);
    let mut areas = Vec::with_capacity(nl * nt);
    let dl = 2.0 * std::f64::consts::PI / nl as f64;
    for j in 0..nt {
        // latitude band [a, b]: area dl·(sin b − sin a)
        let a = -std::f64::consts::FRAC_PI_2 + j as f64 * std::f64::consts::PI / nt as f64;
        let b = a + std::f64::consts::PI / nt as f64;
        let lat = 0.5 * (a + b);
        for i in 0..nl {
            let lon = (i as f64 + 0.5) * dl;
            rows.extend([lat.cos() * lon.cos(), lat.cos() * lon.sin(), lat.sin()]);
            areas.push(dl * (b.sin() - a.sin()));
        }
    }
    let mut out = vec![0.0; nl * nt];
    lp.run_f64(&rows, &flat, &mut out).unwrap();
    out.iter().zip(&areas).map(|(l, a)| l.exp() * a).sum()
}

#[test]
fn densities_integrate_to_one_over_the_sphere() {
    // the uniform and von Mises–Fisher bases (surface measure), pushed through the maps
    for (src, name) in [
        ("flow s(x: sphere(3)) { base uniform; normalized_affine; reverse; normalized_translation; normalized_linear; }", "s"),
        ("flow v(x: sphere(3)) { base vmf(3); normalized_affine; normalized_affine; }", "v"),
    ] {
        let total = integral_on_s2(src, name, 4);
        println!("{name}: ∫ p dA = {total}");
        assert!((total - 1.0).abs() < 1e-5, "{name}: ∫ p dA = {total}");
    }
}

#[test]
fn translation_near_its_antipode() {
    // m = v/√(1 + ‖v‖²) along e_z with ‖m‖ → 1: at x = −e_z both 1 + xᵀm and ‖x + m‖ are
    // 1 − ‖m‖ = κ/(1 + ‖m‖) (κ = 1/(1 + ‖v‖²)), so log R = −2·log(κ/(1 + ‖m‖)) exactly; the
    // inverse takes the small root t = κ/(s − β) without cancellation
    let l = one_layer("normalized_translation", 3);
    for v in [30.0f64, 1e4, 1e7] {
        let flat = [0.0, 0.0, v];
        let kappa = 1.0 / (1.0 + v * v);
        let m = v * kappa.sqrt();
        let want = -2.0 * (kappa / (1.0 + m)).ln();
        let mut out = [0.0; 4];
        l.forward.run_f64(&[0.0, 0.0, -1.0], &flat, &mut out).unwrap();
        assert!((out[3] - want).abs() <= 1e-12 * want.abs(), "v = {v}: log R {} vs {want}", out[3]);
        assert!(out[0] == 0.0 && out[1] == 0.0 && (out[2] + 1.0).abs() <= 2.0 * f64::EPSILON, "v = {v}: {out:?}");
        let mut back = [0.0; 4];
        l.inverse.run_f64(&out[..3], &flat, &mut back).unwrap();
        assert!((back[2] + 1.0).abs() <= 4.0 * f64::EPSILON && back[0] == 0.0 && back[1] == 0.0, "v = {v}: {back:?}");
        assert!((back[3] - want).abs() <= 1e-12 * want.abs(), "v = {v}: inverse's log R {} vs {want}", back[3]);
        // a point near the antipode: on the sphere after the round trip
        let x = {
            let p: [f64; 3] = [1e-9, -2e-9, -1.0];
            let r = (p[0] * p[0] + p[1] * p[1] + p[2] * p[2]).sqrt();
            [p[0] / r, p[1] / r, p[2] / r]
        };
        l.forward.run_f64(&x, &flat, &mut out).unwrap();
        l.inverse.run_f64(&out[..3], &flat, &mut back).unwrap();
        let err = x.iter().zip(&back).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(err <= 1e-12 && out[3].is_finite(), "v = {v}: {x:?} → {out:?} → {back:?}");
    }
}

#[test]
fn zero_shift_is_the_identity() {
    // v = 0: m = 0, the unit direction m̂ = v/‖v‖ is undefined and must not leak into the
    // rows (the near regime takes none of it): y = x and log R = 0 to rounding (x is on the
    // sphere to an ulp), f64 and f32, on the AVX-512 code and on Cranelift's
    let l = one_layer("normalized_translation", 3);
    let flat = [0.0; 3];
    let mut g = Gen(5);
    for _ in 0..100 {
        let p = [g.uniform(), g.uniform(), g.uniform()];
        let r = norm(&p);
        let x = [p[0] / r, p[1] / r, p[2] / r];
        let mut out = [0.0; 4];
        l.forward.run_f64(&x, &flat, &mut out).unwrap();
        assert!(out[3].abs() <= 4.0 * f64::EPSILON, "log R at {x:?}: {}", out[3]);
        let err = x.iter().zip(&out).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(err <= 2.0 * f64::EPSILON, "{x:?} → {out:?}");
        let x32 = [x[0] as f32, x[1] as f32, x[2] as f32];
        let mut out32 = [0.0f32; 4];
        l.forward32.run_f32(&x32, &[0.0; 3], &mut out32).unwrap();
        assert!(out32.iter().all(|v| v.is_finite()) && out32[3].abs() <= 4.0 * f32::EPSILON, "f32 at {x32:?}: {out32:?}");
    }
    let c = flowc::jit::compile_with(
        &lower::lower(&flowc::cli::load_str("one.flow", "flow one(x: sphere(3)) { base uniform; normalized_translation; }").unwrap().2)
            .unwrap()
            .kernel("one", Kind::Forward)
            .unwrap()
            .clone(),
        Float::F64,
        flowc::codegen::clif::Options { backend: flowc::codegen::clif::Backend::Cranelift, ..Default::default() },
    )
    .unwrap();
    let mut out = [0.0; 4];
    c.run_f64(&[0.6, 0.0, 0.8], &flat, &mut out).unwrap();
    assert!(
        out[3].abs() <= 4.0 * f64::EPSILON && (out[0] - 0.6).abs() <= 2.0 * f64::EPSILON && (out[2] - 0.8).abs() <= 2.0 * f64::EPSILON,
        "{out:?}"
    );
}
