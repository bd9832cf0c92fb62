//! Flows on the simplex: the compiled closed forms (JIT, f64 and f32) of the calibration and
//! generalized calibration maps against the generic volume ratio |det(Tᵀ F_x T)| of the
//! general map softmax(A·log x + b) computed in 256-bit arithmetic (T an orthonormal basis of
//! 1^⊥), over 10⁵ points per kind uniform on the simplex; round trips that stay on the
//! simplex, also against `runtime::manifold`'s independent general map.

use astro_float::{BigFloat, Consts, RoundingMode};
use flowc::codegen::clif::Float;
use flowc::derive::dual::Gen;
use flowc::lower::{self, Kind};
use runtime::manifold::{helmert, simplex_tangent, Calibration};

const KINDS: [&str; 2] = ["calibration", "generalized_calibration"];

struct OneLayer {
    kernels: [flowc::jit::Compiled; 5],
    slots: Vec<lower::ParamSlot>,
}

fn one_layer(kind: &str, n: usize) -> OneLayer {
    let src = format!("flow one(x: simplex({n})) {{ base uniform; {kind}; }}");
    let (_, _, d) = flowc::cli::load_str("one.flow", &src).unwrap_or_else(|f| panic!("{}", f.message));
    let p = lower::lower(&d).unwrap();
    let c = |k: Kind, prec: Float| flowc::jit::compile(p.kernel("one", k).unwrap(), prec).unwrap();
    OneLayer {
        kernels: [
            c(Kind::Forward, Float::F64),
            c(Kind::Inverse, Float::F64),
            c(Kind::Forward, Float::F32),
            c(Kind::Inverse, Float::F32),
            flowc::jit::compile(
                &flowc::ratio::generic(p.kernel("one", Kind::Forward).unwrap(), flowc::ir::Space::Simplex).unwrap(),
                Float::F64,
            )
            .unwrap(),
        ],
        slots: p.kernel("one", Kind::Forward).unwrap().params.clone(),
    }
}

const P: usize = 256;
const RM: RoundingMode = RoundingMode::ToEven;

/// The generic ratio |det(Tᵀ F_x T)| of y = softmax(A·log x + b), in 256-bit arithmetic (in
/// f64 it loses digits where coordinates are far apart: F's rows scale with y, its columns
/// with 1/x), F_x = (diag y − y yᵀ)·A·diag(1/x) (the derivative of the map as written), T an
/// orthonormal basis of 1^⊥.
fn generic_log_ratio(a: &[f64], b: &[f64], x: &[f64], cc: &mut Consts) -> f64 {
    generic_log_ratio_at(a, b, x, cc, P)
}

/// [`generic_log_ratio`] in `P`-bit arithmetic: points with coordinates far below 1 need more
/// than 256 bits (1 − y_i is formed inside diag y − y yᵀ).
fn generic_log_ratio_at(a: &[f64], b: &[f64], x: &[f64], cc: &mut Consts, bits: usize) -> f64 {
    let n = x.len();
    let f = |v: f64| BigFloat::from_f64(v, bits);
    let lx: Vec<BigFloat> = x.iter().map(|v| f(*v).ln(bits, RM, cc)).collect();
    let z: Vec<BigFloat> =
        (0..n).map(|i| (0..n).fold(f(b[i]), |acc, j| acc.add(&f(a[i * n + j]).mul(&lx[j], bits, RM), bits, RM))).collect();
    let e: Vec<BigFloat> = z.iter().map(|v| v.exp(bits, RM, cc)).collect();
    let total = e.iter().fold(f(0.0), |acc, v| acc.add(v, bits, RM));
    let y: Vec<BigFloat> = e.iter().map(|v| v.div(&total, bits, RM)).collect();
    // F = (diag y − y yᵀ) A diag(1/x)
    let mut jac = vec![f(0.0); n * n];
    for i in 0..n {
        for k in 0..n {
            let mut s = f(0.0);
            for l in 0..n {
                let d = if i == l { y[i].clone() } else { f(0.0) };
                let c = d.sub(&y[i].mul(&y[l], bits, RM), bits, RM);
                s = s.add(&c.mul(&f(a[l * n + k]), bits, RM), bits, RM);
            }
            jac[i * n + k] = s.div(&f(x[k]), bits, RM);
        }
    }
    let t = simplex_tangent(n);
    let m = n - 1;
    // Tᵀ F T, then its determinant by elimination
    let mut g = vec![f(0.0); m * m];
    for r in 0..m {
        for c in 0..m {
            let mut s = f(0.0);
            for i in 0..n {
                for k in 0..n {
                    s = s.add(&f(t[i * m + r]).mul(&jac[i * n + k], bits, RM).mul(&f(t[k * m + c]), bits, RM), bits, RM);
                }
            }
            g[r * m + c] = s;
        }
    }
    let mut det = f(1.0);
    for c in 0..m {
        let p = (c..m).max_by(|i, j| g[i * m + c].abs().partial_cmp(&g[j * m + c].abs()).unwrap()).unwrap();
        if p != c {
            for j in 0..m {
                g.swap(p * m + j, c * m + j);
            }
        }
        let d = g[c * m + c].clone();
        det = det.mul(&d, bits, RM);
        for r in c + 1..m {
            let q = g[r * m + c].div(&d, bits, RM);
            for j in c..m {
                let v = g[r * m + j].sub(&q.mul(&g[c * m + j], bits, RM), bits, RM);
                g[r * m + j] = v;
            }
        }
    }
    let ld = det.abs().ln(bits, RM, cc);
    let s = format!("{ld}");
    s.parse::<f64>().unwrap_or_else(|_| panic!("{s}"))
}

/// Random flat parameters of spread `s` and the general map they stand for.
fn random_map(l: &OneLayer, n: usize, g: &mut Gen, s: f64) -> (Vec<f64>, Calibration, Vec<f64>, Vec<f64>) {
    let len: usize = l.slots.iter().map(|s| s.len).sum();
    let mut flat = vec![0.0; len];
    for slot in &l.slots {
        for v in &mut flat[slot.offset..slot.offset + slot.len] {
            *v = s * g.uniform();
        }
    }
    let get = |name: &str| -> Vec<f64> {
        let slot = l.slots.iter().find(|x| x.name.ends_with(&format!(".{name}"))).unwrap();
        flat[slot.offset..slot.offset + slot.len].to_vec()
    };
    let b = get("bias");
    let a: Vec<f64> = if l.slots.iter().any(|x| x.name.ends_with(".log_scale")) {
        let a = get("log_scale")[0].exp();
        (0..n * n).map(|e| if e / n == e % n { a } else { 0.0 }).collect()
    } else {
        let m = n - 1;
        let (lo, up, dg) = (get("lower"), get("upper"), get("log_diag"));
        let bm: Vec<f64> = (0..m * m)
            .map(|e| {
                let (i, j) = (e / m, e % m);
                (0..m)
                    .map(|t| {
                        let lv = if i == t {
                            1.0
                        } else if t < i {
                            lo[i * m + t]
                        } else {
                            0.0
                        };
                        let uv = if t == j {
                            dg[t].exp()
                        } else if j > t {
                            up[t * m + j]
                        } else {
                            0.0
                        };
                        lv * uv
                    })
                    .sum()
            })
            .collect();
        let q = helmert(n);
        (0..n * n)
            .map(|e| {
                let (i, j) = (e / n, e % n);
                (0..m).map(|r| (0..m).map(|c| q[i * m + r] * bm[r * m + c] * q[j * m + c]).sum::<f64>()).sum::<f64>() + 1.0 / n as f64
            })
            .collect()
    };
    (flat, Calibration::new(n, a.clone(), b.clone()).unwrap(), a, b)
}

/// [closed vs generic (relative), round trip (relative to each coordinate), |Σy − 1|,
/// f32 |Σy − 1|, f32 log R and round trip against f64, and the compiled generic ratio
/// (`flowc::ratio`, f64) against the 256-bit one].
fn sweep(kind: &str, n: usize, spread: f64, sets: usize, points: usize) -> [f64; 6] {
    let l = one_layer(kind, n);
    let mut g = Gen(0x5e7 ^ (n as u64) << 8 ^ kind.len() as u64);
    let mut worst = [0.0f64; 6];
    let mut cc = Consts::new().unwrap();
    for set in 0..sets {
        let (flat, map, a, b) = random_map(&l, n, &mut g, spread);
        let xs = runtime::sample::dirichlet_rows(set as u64 + 1, 0, points, &vec![1.0; n]);
        let mut fwd = vec![0.0; points * (n + 1)];
        l.kernels[0].run_f64(&xs, &flat, &mut fwd).unwrap();
        let ys: Vec<f64> = fwd.chunks(n + 1).flat_map(|r| r[..n].to_vec()).collect();
        let mut inv = vec![0.0; points * (n + 1)];
        l.kernels[1].run_f64(&ys, &flat, &mut inv).unwrap();
        let mut gen = vec![0.0; points * (n + 1)];
        l.kernels[4].run_f64(&xs, &flat, &mut gen).unwrap();
        for (r, x) in xs.chunks(n).enumerate() {
            let out = &fwd[r * (n + 1)..(r + 1) * (n + 1)];
            let generic = generic_log_ratio(&a, &b, x, &mut cc);
            let rel = ((out[n] - generic).exp() - 1.0).abs();
            let back = &inv[r * (n + 1)..(r + 1) * (n + 1)];
            let trip = x.iter().zip(&back[..n]).map(|(a, b)| (a - b).abs() / a).fold(0.0, f64::max);
            let rel_inv = ((back[n] - generic).exp() - 1.0).abs();
            worst[5] = worst[5].max(((gen[r * (n + 1) + n] - generic).exp() - 1.0).abs());
            // the general map of `runtime::manifold` (its own inverse and ratio) agrees too
            let back_ref = map.inverse(&out[..n]);
            worst[1] = worst[1].max(x.iter().zip(&back_ref).map(|(a, b)| (a - b).abs() / a).fold(0.0, f64::max));
            worst[0] = worst[0].max(rel).max(rel_inv);
            worst[1] = worst[1].max(trip);
            worst[2] = worst[2].max((out[..n].iter().sum::<f64>() - 1.0).abs());
            assert!(rel.is_finite() && trip.is_finite(), "{kind} at {x:?}: {out:?}");
        }
        let xs32: Vec<f32> = xs.iter().map(|v| *v as f32).collect();
        let p32: Vec<f32> = flat.iter().map(|v| *v as f32).collect();
        let mut fwd32 = vec![0.0f32; points * (n + 1)];
        l.kernels[2].run_f32(&xs32, &p32, &mut fwd32).unwrap();
        let ys32: Vec<f32> = fwd32.chunks(n + 1).flat_map(|r| r[..n].to_vec()).collect();
        let mut inv32 = vec![0.0f32; points * (n + 1)];
        l.kernels[3].run_f32(&ys32, &p32, &mut inv32).unwrap();
        for r in 0..points {
            let y = &fwd32[r * (n + 1)..r * (n + 1) + n];
            worst[3] = worst[3].max((y.iter().map(|v| *v as f64).sum::<f64>() - 1.0).abs());
            worst[4] = worst[4].max((fwd32[r * (n + 1) + n] as f64 - fwd[r * (n + 1) + n]).abs());
            let x = &xs[r * n..(r + 1) * n];
            let back = &inv32[r * (n + 1)..(r + 1) * (n + 1)];
            worst[4] = worst[4].max(x.iter().zip(&back[..n]).map(|(a, b)| (a - *b as f64).abs() / a).fold(0.0, f64::max));
        }
    }
    worst
}

#[test]
fn closed_forms_match_the_generic_ratio_and_round_trip_on_the_simplex() {
    for kind in KINDS {
        let [rel, trip, on, on32, err32, compiled] = sweep(kind, 3, 0.5, 10, 10_000);
        println!("{kind} on simplex(3): 100000 points, closed vs generic {rel:.1e}, round trip {trip:.1e}, |Σy − 1| {on:.1e}; f32: |Σy − 1| {on32:.1e}, vs f64 {err32:.1e}; the compiled f64 generic vs the 256-bit one {compiled:.1e}");
        assert!(rel <= 1e-12, "{kind}: closed form vs generic ratio {rel:e}");
        assert!(trip <= 1e-12, "{kind}: round trip {trip:e}");
        assert!(on <= 4.0 * f64::EPSILON, "{kind}: |Σy − 1| = {on:e}");
        assert!(on32 <= 4.0 * f32::EPSILON as f64, "{kind} f32: |Σy − 1| = {on32:e}");
        assert!(err32 <= 5e-5, "{kind} f32: {err32:e} from f64");
        // the compiled generic ratio works in log coordinates (∂ log y/∂ log x: well scaled
        // however far apart the coordinates; the ambient Jacobian lost 5.7e-5 near 1e-6)
        assert!(compiled <= 1e-12, "{kind}: the compiled generic ratio {compiled:e} from the 256-bit one");
    }
}

#[test]
fn higher_dimensions() {
    for kind in KINDS {
        let [rel, trip, on, _, _, _] = sweep(kind, 6, 0.5, 2, 5000);
        println!("{kind} on simplex(6): closed vs generic {rel:.1e}, round trip {trip:.1e}, |Σy − 1| {on:.1e}");
        assert!(rel <= 1e-12 && trip <= 1e-12 && on <= 6.0 * f64::EPSILON, "{kind} on simplex(6): {rel:e} {trip:e} {on:e}");
    }
}

#[test]
fn densities_integrate_to_one_over_the_simplex() {
    // midpoint rule on a grid of (x0, x1), x2 = 1 − x0 − x1; the simplex's area element is
    // √3·dx0·dx1 (the convention of the Dirichlet base and of the volume ratio)
    let src = "flow c(x: simplex(3)) { base dirichlet([2.5, 3, 2]); calibration; generalized_calibration; reverse; calibration; }";
    let (_, _, d) = flowc::cli::load_str("c.flow", src).unwrap_or_else(|f| panic!("{}", f.message));
    let f = d.flow("c").unwrap();
    let flat = flowc::params::flat(f, &flowc::params::init(&d, f, 3));
    let p = lower::lower(&d).unwrap();
    let lp = flowc::jit::compile(p.kernel("c", Kind::LogProb).unwrap(), Float::F64).unwrap();
    let m = 2000usize;
    let h = 1.0 / m as f64;
    let mut rows = Vec::new();
    for i in 0..m {
        for j in 0..m - i {
            // cells below the diagonal: whole squares, and the diagonal's half squares
            let (x0, x1) = ((i as f64 + 0.5) * h, (j as f64 + 0.5) * h);
            if x0 + x1 < 1.0 {
                rows.extend([x0, x1, 1.0 - x0 - x1]);
            }
        }
    }
    let mut out = vec![0.0; rows.len() / 3];
    lp.run_f64(&rows, &flat, &mut out).unwrap();
    let total: f64 = out.iter().map(|l| l.exp()).sum::<f64>() * h * h * 3f64.sqrt();
    println!("simplex: ∫ p dA = {total}");
    assert!((total - 1.0).abs() < 1e-5, "∫ p dA = {total}");
}

#[test]
fn extreme_coordinates() {
    // coordinates down to 1e-300: the closed forms stay within 1e-12 of the generic ratio in
    // 8192-bit arithmetic, and points round-trip (relative to each coordinate)
    let mut cc = Consts::new().unwrap();
    for kind in KINDS {
        let l = one_layer(kind, 3);
        let mut g = Gen(77);
        let (flat, _, a, b) = random_map(&l, 3, &mut g, 0.5);
        let pts: Vec<[f64; 3]> =
            vec![[1e-300, 0.5, 0.5], [1e-200, 1e-100, 1.0 - 1e-100], [0.999999, 5e-7, 5e-7], [1e-30, 1e-30, 1.0], [0.2, 0.3, 0.5]];
        for x in pts {
            let mut out = [0.0; 4];
            l.kernels[0].run_f64(&x, &flat, &mut out).unwrap();
            let generic = generic_log_ratio_at(&a, &b, &x, &mut cc, 8192);
            let rel = ((out[3] - generic).exp() - 1.0).abs();
            assert!(rel < 1e-12, "{kind} at {x:?}: log R {} vs {generic} ({rel:e})", out[3]);
            // the compiled generic ratio too, in log coordinates
            let mut gen = [0.0; 4];
            l.kernels[4].run_f64(&x, &flat, &mut gen).unwrap();
            let rel = ((gen[3] - generic).exp() - 1.0).abs();
            if out[..3].iter().all(|v| *v >= f64::MIN_POSITIVE) {
                assert!(rel < 1e-12, "{kind} at {x:?}: compiled generic log R {} vs {generic} ({rel:e})", gen[3]);
            }
            let mut back = [0.0; 4];
            l.kernels[1].run_f64(&out[..3], &flat, &mut back).unwrap();
            // an image coordinate below f64's normal range (subnormal) carries fewer digits, and
            // the way back can recover no more than those
            let normal = out[..3].iter().all(|v| *v >= f64::MIN_POSITIVE);
            let bar = if normal { 1e-12 } else { 1e-6 };
            for i in 0..3 {
                assert!((back[i] - x[i]).abs() <= bar * x[i], "{kind} at {x:?}: back {back:?} (image {out:?})");
            }
        }
    }
}
