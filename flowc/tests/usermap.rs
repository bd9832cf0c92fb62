//! User-written maps of the sphere and the simplex (`map NAME(x: sphere(n); ...) = EXPR`):
//! their compiled kernels (JIT, f64 and f32), whose volume ratio is the generic one and whose
//! inverse is Newton's method or the author's formula, against independent implementations of
//! the same maps — the built-in layers' closed forms (`normalized_affine`, `calibration`,
//! derived separately, with stated lemmas) — and against the reference interpreter (dual
//! numbers, Householder tangent bases); round trips; unconverged Newton refused as NaN.

use flowc::codegen::clif::Float;
use flowc::derive::dual::Gen;
use flowc::lower::{self, Kind};

const SRC: &str = "
map affine_s(x: sphere(n); M: matrix(n, n), b: vector(n)) = normalize(M * x + b)
    where inverse = numeric;
map temper(x: simplex(n); a: real, b: vector(n)) = softmax(exp(a) * log(x) + b)
    where inverse = softmax((log(y) - b) / exp(a));
map temper_newton(x: simplex(n); a: real, b: vector(n)) = softmax(exp(a) * log(x) + b)
    where inverse = numeric;
flow user_s3(x: sphere(3)) { base uniform; affine_s; }
flow built_s3(x: sphere(3)) { base uniform; normalized_affine; }
flow user_s5(x: sphere(5)) { base vmf(2); affine_s; }
flow built_s5(x: sphere(5)) { base vmf(2); normalized_affine; }
flow user_c4(x: simplex(4)) { base dirichlet([1.5, 2, 0.7, 1]); temper; }
flow newton_c4(x: simplex(4)) { base dirichlet([1.5, 2, 0.7, 1]); temper_newton; }
flow built_c4(x: simplex(4)) { base dirichlet([1.5, 2, 0.7, 1]); calibration; }
";

struct Kernels {
    program: lower::Program,
    derivation: flowc::derive::Derivation,
}

fn kernels() -> Kernels {
    let (_, _, d) = flowc::cli::load_str("maps.flow", SRC).unwrap_or_else(|f| panic!("{}", f.message));
    Kernels { program: lower::lower(&d).unwrap(), derivation: d }
}

impl Kernels {
    fn run(&self, flow: &str, kind: Kind, rows: &[f64], params: &[f64], outs: usize) -> Vec<f64> {
        let c = flowc::jit::compile(self.program.kernel(flow, kind).unwrap(), Float::F64).unwrap();
        let mut out = vec![0.0; rows.len() / self.dim(flow) * outs];
        c.run_f64(rows, params, &mut out).unwrap();
        out
    }
    fn run32(&self, flow: &str, kind: Kind, rows: &[f64], params: &[f64], outs: usize) -> Vec<f32> {
        let c = flowc::jit::compile(self.program.kernel(flow, kind).unwrap(), Float::F32).unwrap();
        let r: Vec<f32> = rows.iter().map(|v| *v as f32).collect();
        let p: Vec<f32> = params.iter().map(|v| *v as f32).collect();
        let mut out = vec![0.0; rows.len() / self.dim(flow) * outs];
        c.run_f32(&r, &p, &mut out).unwrap();
        out
    }
    fn dim(&self, flow: &str) -> usize {
        self.program.kernel(flow, Kind::Forward).unwrap().dim
    }
    fn slots(&self, flow: &str) -> &[lower::ParamSlot] {
        &self.program.kernel(flow, Kind::Forward).unwrap().params
    }
    /// Flat parameters of `flow` from named tensors.
    fn flat(&self, flow: &str, tensors: &[(&str, Vec<f64>)]) -> Vec<f64> {
        let slots = self.slots(flow);
        let mut flat = vec![0.0; slots.iter().map(|s| s.len).sum()];
        for (name, v) in tensors {
            let s = slots.iter().find(|s| s.name == *name).unwrap_or_else(|| panic!("no {name}"));
            assert_eq!(s.len, v.len(), "{name}");
            flat[s.offset..s.offset + s.len].copy_from_slice(v);
        }
        flat
    }
}

/// Random built-in normalized-affine parameters (L, U, log_diag, v in ±`spread`, v times 3)
/// and the M = L·U, b = M·v/√(1 + ‖v‖²) they stand for.
type Tensors = Vec<(&'static str, Vec<f64>)>;

fn affine(n: usize, g: &mut Gen, spread: f64) -> (Tensors, Vec<f64>, Vec<f64>) {
    let mut r = |k: usize, s: f64| (0..k).map(|_| s * g.uniform()).collect::<Vec<f64>>();
    let (lo, up, dg, v) = (r(n * n, spread), r(n * n, spread), r(n, spread), r(n, 3.0 * spread));
    let m = runtime::manifold::lu_product(&lo, &up, &dg, n);
    let s = 1.0 / (1.0 + v.iter().map(|a| a * a).sum::<f64>()).sqrt();
    let b: Vec<f64> = (0..n).map(|i| (0..n).map(|j| m[i * n + j] * v[j] * s).sum()).collect();
    let built = vec![("layers.0.lower", lo), ("layers.0.upper", up), ("layers.0.log_diag", dg), ("layers.0.shift", v)];
    (built, m, b)
}

/// The largest |a − b| (infinite when either side has a NaN).
fn max_abs(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| if (x - y).is_nan() { f64::INFINITY } else { (x - y).abs() }).fold(0.0, f64::max)
}

/// The user's `normalize(M * x + b)` with Newton's inverse and the generic ratio, against the
/// built-in normalized affine layer (quadratic-root inverse, matrix-determinant-lemma ratio)
/// at the same M and b: log-densities, images and log-ratios over 2·10⁴ points per dimension.
#[test]
fn sphere_map_matches_the_built_in_closed_form() {
    let k = kernels();
    for (user, built, n) in [("user_s3", "built_s3", 3), ("user_s5", "built_s5", 5)] {
        let mut g = Gen(7 + n as u64);
        let (mut lp_err, mut fwd_err, mut lp32_err, mut nans) = (0.0f64, 0.0f64, 0.0f64, 0);
        for set in 0..4 {
            let (bt, m, b) = affine(n, &mut g, 0.3);
            let pb = k.flat(built, &bt);
            let pu = k.flat(user, &[("layers.0.M", m), ("layers.0.b", b)]);
            let xs = runtime::sample::sphere_rows(set + 1, 0, 5000, n);
            let (lu, lb) = (k.run(user, Kind::LogProb, &xs, &pu, 1), k.run(built, Kind::LogProb, &xs, &pb, 1));
            nans += lu.iter().filter(|v| v.is_nan()).count();
            lp_err = lp_err.max(max_abs(&lu, &lb));
            let (fu, fb) = (k.run(user, Kind::Forward, &xs, &pu, n + 1), k.run(built, Kind::Forward, &xs, &pb, n + 1));
            fwd_err = fwd_err.max(max_abs(&fu, &fb));
            let l32 = k.run32(user, Kind::LogProb, &xs, &pu, 1);
            lp32_err = lp32_err.max(max_abs(&l32.iter().map(|v| *v as f64).collect::<Vec<_>>(), &lb));
        }
        eprintln!("{user}: log_prob vs built-in {lp_err:.1e}, forward {fwd_err:.1e}, f32 log_prob {lp32_err:.1e}");
        assert_eq!(nans, 0, "{user}: Newton refused points of an invertible map");
        assert!(lp_err < 1e-12, "{user}: log_prob differs from the closed form by {lp_err:e}");
        assert!(fwd_err < 1e-13, "{user}: forward differs by {fwd_err:e}");
        assert!(lp32_err < 2e-4, "{user}: f32 log_prob differs by {lp32_err:e}");
    }
}

/// The calibration map written by hand (given inverse, and Newton's in log coordinates)
/// against the built-in `calibration` at the same a and b.
#[test]
fn simplex_map_matches_the_built_in_calibration() {
    let k = kernels();
    let n = 4;
    let alpha = [1.5, 2.0, 0.7, 1.0];
    let mut g = Gen(11);
    let (mut given, mut newton, mut fwd) = (0.0f64, 0.0f64, 0.0f64);
    for set in 0..4 {
        let a = vec![0.5 * g.uniform()];
        let b: Vec<f64> = (0..n).map(|_| g.uniform()).collect();
        let pb = k.flat("built_c4", &[("layers.0.log_scale", a.clone()), ("layers.0.bias", b.clone())]);
        let pu = k.flat("user_c4", &[("layers.0.a", a.clone()), ("layers.0.b", b.clone())]);
        let pn = k.flat("newton_c4", &[("layers.0.a", a), ("layers.0.b", b)]);
        let xs = runtime::sample::dirichlet_rows(set + 1, 0, 5000, &alpha);
        let lb = k.run("built_c4", Kind::LogProb, &xs, &pb, 1);
        given = given.max(max_abs(&k.run("user_c4", Kind::LogProb, &xs, &pu, 1), &lb));
        newton = newton.max(max_abs(&k.run("newton_c4", Kind::LogProb, &xs, &pn, 1), &lb));
        fwd = fwd.max(max_abs(&k.run("user_c4", Kind::Forward, &xs, &pu, n + 1), &k.run("built_c4", Kind::Forward, &xs, &pb, n + 1)));
    }
    eprintln!("simplex: log_prob given inverse {given:.1e}, Newton {newton:.1e}; forward {fwd:.1e}");
    assert!(given < 1e-12 && newton < 1e-11 && fwd < 1e-12, "{given:e} {newton:e} {fwd:e}");
}

/// The compiled kernels against the reference interpreter (f64 evaluation of the map, its
/// Jacobian by dual numbers, explicit tangent bases, Newton to convergence).
#[test]
fn kernels_match_the_reference_interpreter() {
    let k = kernels();
    let d = &k.derivation;
    let f = d.flow("user_s5").unwrap();
    let mut p = flowc::interp::Params::defaults(d, f);
    let mut g = Gen(3);
    let (_, m, b) = affine(5, &mut g, 0.4);
    p.set_all("layers.0.M", &m).unwrap();
    p.set_all("layers.0.b", &b).unwrap();
    let flat = k.flat("user_s5", &[("layers.0.M", m), ("layers.0.b", b)]);
    let xs = runtime::sample::sphere_rows(5, 0, 500, 5);
    let lp = k.run("user_s5", Kind::LogProb, &xs, &flat, 1);
    let fw = k.run("user_s5", Kind::Forward, &xs, &flat, 6);
    let mut err = 0.0f64;
    for (r, x) in xs.chunks(5).enumerate() {
        err = err.max((flowc::interp::log_prob(d, f, &p, x) - lp[r]).abs());
        let mut y = [0.0; 5];
        let ld = flowc::interp::forward(d, f, &p, x, &mut y);
        err = err.max(max_abs(&y, &fw[r * 6..r * 6 + 5])).max((ld - fw[r * 6 + 5]).abs());
    }
    assert!(err < 1e-12, "JIT vs reference interpreter: {err:e}");
}

/// Round trips through Newton's inverse at harder parameters: every point either comes back
/// within 1e-12 or is refused (NaN) — never a wrong point — and on the sphere to rounding.
#[test]
fn newton_round_trips_or_refuses() {
    let k = kernels();
    let n = 3;
    let mut g = Gen(19);
    let (mut worst, mut refused, mut off) = (0.0f64, 0usize, 0.0f64);
    for set in 0..6 {
        let spread = 0.3 + 0.1 * set as f64;
        let (_, m, b) = affine(n, &mut g, spread);
        let flat = k.flat("user_s3", &[("layers.0.M", m), ("layers.0.b", b)]);
        let zs = runtime::sample::sphere_rows(30 + set, 0, 5000, n);
        let fw = k.run("user_s3", Kind::Forward, &zs, &flat, n + 1);
        let ys: Vec<f64> = fw.chunks(n + 1).flat_map(|r| r[..n].to_vec()).collect();
        let back = k.run("user_s3", Kind::Inverse, &ys, &flat, n + 1);
        for (z, b) in zs.chunks(n).zip(back.chunks(n + 1)) {
            if b[0].is_nan() {
                refused += 1;
                continue;
            }
            worst = worst.max(max_abs(z, &b[..n]));
            off = off.max((b[..n].iter().map(|v| v * v).sum::<f64>().sqrt() - 1.0).abs());
        }
    }
    eprintln!("Newton round trips: worst {worst:.1e}, refused {refused} of 30000, off the sphere {off:.1e}");
    assert!(worst < 1e-12 && off < 1e-15, "{worst:e} {off:e}");
    assert!(refused < 30, "{refused} refused");
}

/// `flowc derive` says how each user map was handled: the generic ratio, the inverse, checks.
#[test]
fn derive_text_names_the_generic_ratio_and_the_inverse() {
    let k = kernels();
    let d = &k.derivation;
    let text = flowc::report::flow_text(d, d.flow("user_s3").unwrap());
    assert!(text.contains("y = normalize(M * x + b)"), "{text}");
    assert!(text.contains("generic: F_x by forward mode"), "{text}");
    assert!(text.contains("numeric: Newton in the tangent space"), "{text}");
    let text = flowc::report::flow_text(d, d.flow("user_c4").unwrap());
    assert!(text.contains("x = softmax((log(y) - b) / exp(a))   [given; round trip within"), "{text}");
}

/// A map that is not a bijection (‖M⁻¹b‖ > 1: some points have two preimages, others none):
/// Newton's inverse returns NaN or a true preimage (its image is the row), never a wrong point.
#[test]
fn newton_never_returns_a_wrong_preimage() {
    let k = kernels();
    let n = 3;
    let m = vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
    let flat = k.flat("user_s3", &[("layers.0.M", m), ("layers.0.b", vec![1.5, 0.3, 0.0])]);
    let ys = runtime::sample::sphere_rows(77, 0, 20_000, n);
    let back = k.run("user_s3", Kind::Inverse, &ys, &flat, n + 1);
    let xs: Vec<f64> = back.chunks(n + 1).flat_map(|r| r[..n].to_vec()).collect();
    let again = k.run("user_s3", Kind::Forward, &xs, &flat, n + 1);
    let (mut refused, mut worst) = (0, 0.0f64);
    for (y, f) in ys.chunks(n).zip(again.chunks(n + 1)) {
        if f[0].is_nan() {
            refused += 1;
        } else {
            worst = worst.max(max_abs(y, &f[..n]));
        }
    }
    eprintln!("not a bijection: {refused} of 20000 refused, the others' images within {worst:.1e}");
    assert!(worst < 1e-9, "a returned point's image is {worst:e} from the row");
    assert!(refused > 1000, "points without a preimage must be refused ({refused})");
}

/// The shipped example derives, checks, and its derivations and kernels are as reviewed.
#[test]
fn example_file_derives_checks_and_is_snapshotted() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/flows/user_maps.flow");
    let src = std::fs::read_to_string(path).unwrap();
    let (_, _, d) = flowc::cli::load_str("user_maps.flow", &src).unwrap_or_else(|f| panic!("{}", f.message));
    let report = flowc::check::check(&d, None);
    assert!(report.passed(), "{}", report.render());
    let p = lower::lower(&d).unwrap();
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../../snapshots/derive");
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| {
        for f in &d.flows {
            insta::assert_snapshot!(format!("user_map_flow_{}", f.name), flowc::report::flow_text(&d, f));
        }
        // the simplex flow's density kernel: the given inverse, then the generic ratio
        insta::assert_snapshot!("user_map_kernel_c3_log_prob", p.kernel("c3", Kind::LogProb).unwrap().to_string());
    });
}

/// Coordinates down to 1e-300: the user map's generic ratio (in log coordinates) and Newton's
/// inverse (in log coordinates) keep the built-in calibration's log-density to ~1e-15 relative.
#[test]
fn simplex_maps_at_extreme_coordinates() {
    let k = kernels();
    let (a, b) = (vec![0.3], vec![0.5, -0.2, 0.1, 0.7]);
    let pb = k.flat("built_c4", &[("layers.0.log_scale", a.clone()), ("layers.0.bias", b.clone())]);
    let pu = k.flat("user_c4", &[("layers.0.a", a.clone()), ("layers.0.b", b.clone())]);
    let pn = k.flat("newton_c4", &[("layers.0.a", a), ("layers.0.b", b)]);
    let pts: Vec<[f64; 4]> =
        vec![[1e-300, 0.3, 0.3, 0.4], [1e-200, 1e-100, 0.5, 0.5], [0.999999, 5e-7, 3e-7, 2e-7], [1e-30, 1e-30, 1e-30, 1.0]];
    let rows: Vec<f64> = pts.concat();
    let lb = k.run("built_c4", Kind::LogProb, &rows, &pb, 1);
    let lu = k.run("user_c4", Kind::LogProb, &rows, &pu, 1);
    let ln = k.run("newton_c4", Kind::LogProb, &rows, &pn, 1);
    for (r, x) in pts.iter().enumerate() {
        for (what, l) in [("given inverse", lu[r]), ("Newton", ln[r])] {
            let err = (l - lb[r]).abs() / (1.0 + lb[r].abs());
            assert!(err < 1e-13, "{what} at {x:?}: {l} vs {} ({err:e})", lb[r]);
        }
    }
}
