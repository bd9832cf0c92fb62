//! Stage 4: numeric verification of a [`Derivation`] against independent references.
//!
//! For each bijector, at ordinary and extreme points of its domain and several parameter
//! sets, in f64 and f32:
//! - **forward**: the chosen form against the high-precision value of the formula as written;
//! - **inverse**: round trip: x ↦ y = f(x) (exact, rounded) ↦ g(y), compared with x;
//! - **log-det**: the chosen form against the high-precision log|f'(x)|;
//! - **derivative**: the symbolic f'(x) against a high-precision central difference of f
//!   (independent of the derivative rules).
//!
//! Each row's bound is 16·ε·(|v| + |u·v'(u)| + 1), v the quantity and u its input.
//!
//! For a flow (`check --name FLOW`): its bijectors as above with the layers' bound values,
//! then the whole flow at seeded parameters (the standard initialization, seeds 1–3) on
//! seeded base points: the round trip z → x → z (within 1e-10 relative), and log|det J|
//! against the log-determinant of an independent Jacobian (Richardson-extrapolated central
//! differences of the forward map, then Gaussian elimination; within 1e-7 relative). On the
//! sphere and the simplex the log volume ratio against the generic |det(T_xᵀ F T_z)| of that
//! Jacobian F, with orthonormal tangent bases T at z and at x; and the compiled forward
//! kernel's closed forms against its generic ratio ([`crate::ratio`], forward-mode Jacobian),
//! within 1e-10.
//!
//! ```
//! let src = "bijector softplus_b(x) = softplus(x);";
//! let m = flowc::ir::build(&flowc::dsl::parse(src).unwrap()).unwrap();
//! let d = flowc::derive::derive(&m).unwrap();
//! let report = flowc::check::check(&d, None);
//! assert!(report.passed());
//! ```

use crate::derive::stability::{self, measure, measure_with, reference_points, Error, Precision, RefPoint};
use crate::derive::{param_sets, rootfind, BijectorDerivation, Derivation, Monotone};
use crate::ir::{eval, hp, X, Y};
use egg::Symbol;

/// One line of the check table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    pub bijector: String,
    pub quantity: String,
    pub precision: Precision,
    pub error: Error,
    pub passed: bool,
    /// Why a failure is expected, when it is.
    pub note: Option<String>,
}

/// The outcome of `check`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub rows: Vec<Row>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.rows.iter().all(|r| r.passed || r.note.is_some())
    }

    /// The table as text.
    pub fn render(&self) -> String {
        let mut out = format!(
            "{:<22} {:<10} {:<5} {:>6} {:>12} {:>12} {:>12}  {}\n",
            "bijector", "quantity", "prec", "points", "max ulps", "max/bound", "worst at", "status"
        );
        for r in &self.rows {
            let status = if r.passed {
                "ok".to_string()
            } else if let Some(n) = &r.note {
                format!("expected failure: {n}")
            } else {
                "FAIL".to_string()
            };
            out.push_str(&format!(
                "{:<22} {:<10} {:<5} {:>6} {:>12} {:>12} {:>12}  {}\n",
                r.bijector,
                r.quantity,
                match r.precision {
                    Precision::F64 => "f64",
                    Precision::F32 => "f32",
                },
                r.error.points,
                fmt_num(r.error.max_ulps),
                fmt_num(r.error.max_ratio / stability::BOUND),
                if r.error.max_ratio > 0.0 { format!("{:e}", r.error.worst_u) } else { "-".into() },
                status
            ));
        }
        out
    }
}

fn fmt_num(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.is_infinite() {
        "inf".into()
    } else if !(1e-3..1e6).contains(&v) {
        format!("{v:.2e}")
    } else {
        format!("{v:.3}")
    }
}

fn lookup(env: &[(Symbol, f64)], s: Symbol) -> f64 {
    env.iter().find(|(n, _)| *n == s).map(|(_, v)| *v).unwrap_or(f64::NAN)
}

/// A row; a quantity measured at no point at all fails (nothing was checked).
fn row(b: &BijectorDerivation, quantity: &str, precision: Precision, error: Error) -> Row {
    Row { bijector: b.name.clone(), quantity: quantity.into(), precision, passed: error.passes() && error.points > 0, error, note: None }
}

/// Checks one bijector with the given parameter sets.
pub fn check_bijector(b: &BijectorDerivation, psets: &[Vec<(Symbol, f64)>]) -> Vec<Row> {
    let (ord, ext) = stability::sample_points(b.domain);
    let inputs: Vec<f64> = ord.iter().chain(&ext).copied().collect();
    let mut rows = Vec::new();

    // forward
    let written = &b.forward.naive.expr;
    let fwd_pts = reference_points(&[written, &b.forward.chosen.expr], &b.raw_derivative, X, &inputs, psets);
    // in f32 an input that rounds onto an end of the domain is left out
    let in_domain32 =
        |pts: &[RefPoint]| -> Vec<RefPoint> { pts.iter().filter(|p| b.domain.contains(p.u as f32 as f64)).cloned().collect() };
    rows.push(row(b, "forward", Precision::F64, measure(&b.forward.chosen.expr, &fwd_pts, Precision::F64)));
    rows.push(row(b, "forward", Precision::F32, measure(&b.forward.chosen.expr, &in_domain32(&fwd_pts), Precision::F32)));

    // inverse: round trip against the exact x; an output that rounds onto (or past) an end
    // of the exact range has no inverse in the domain and is left out
    let mut inv_pts: Vec<RefPoint> = Vec::new();
    // (parameter set, lower end, upper end) of the exact range
    type Range = (Vec<(Symbol, f64)>, f64, f64);
    let mut ranges: Vec<Range> = Vec::new();
    for env in psets {
        let end = |x: f64| hp::eval_with(written, &|s: Symbol| if s.as_str() == X { x } else { lookup(env, s) }).unwrap_or(f64::NAN);
        let lo_x = if b.domain.lo.is_finite() { stability::next_toward(b.domain.lo, b.domain.hi) } else { f64::MIN };
        let hi_x = if b.domain.hi.is_finite() { stability::next_toward(b.domain.hi, b.domain.lo) } else { f64::MAX };
        // the exact ends of the range at these parameters (the analysed range where an end
        // cannot be evaluated)
        let (e0, e1) = (end(lo_x), end(hi_x));
        let (rlo, rhi) = if e0.is_nan() || e1.is_nan() { (b.range.lo, b.range.hi) } else { (e0.min(e1), e0.max(e1)) };
        ranges.push((env.clone(), rlo, rhi));
        for &x in &inputs {
            let look = |s: Symbol| if s.as_str() == X { x } else { lookup(env, s) };
            let Some(y) = hp::eval_with(written, &look) else { continue };
            // the slope only scales the bound: the simplified f' in f64 where the raw one
            // cannot be evaluated
            let d = hp::eval_with(&b.raw_derivative, &look).unwrap_or_else(|| eval::eval_with(&b.derivative, &look));
            if !y.is_finite() || d == 0.0 || !(y > rlo && y < rhi) {
                continue;
            }
            inv_pts.push(RefPoint { env: env.clone(), input: Symbol::from(Y), u: y, value: x, slope: 1.0 / d });
        }
    }
    let ranges_of = |p: &RefPoint| ranges.iter().find(|(e, _, _)| *e == p.env).map(|(_, lo, hi)| (*lo, *hi));
    rows.push(row(b, "inverse", Precision::F64, measure_with(&inv_pts, Precision::F64, |pt| invert(b, pt, Precision::F64))));
    let inv32: Vec<RefPoint> = inv_pts
        .iter()
        .filter(|p| ranges_of(p).map(|(lo, hi)| p.u as f32 as f64 > lo && (p.u as f32 as f64) < hi).unwrap_or(false))
        .cloned()
        .collect();
    rows.push(row(b, "inverse", Precision::F32, measure_with(&inv32, Precision::F32, |pt| invert(b, pt, Precision::F32))));

    // log-det
    let ld_slope = crate::derive::diff::diff(&b.raw_log_det, X).unwrap_or_else(|_| b.raw_log_det.clone());
    let ld_pts = reference_points(&[&b.raw_log_det, &b.log_det.chosen.expr], &ld_slope, X, &inputs, psets);
    rows.push(row(b, "log-det", Precision::F64, measure(&b.log_det.chosen.expr, &ld_pts, Precision::F64)));
    rows.push(row(b, "log-det", Precision::F32, measure(&b.log_det.chosen.expr, &in_domain32(&ld_pts), Precision::F32)));

    // the symbolic derivative against an independent central difference (ordinary and
    // extreme points)
    let mut worst = 0.0f64;
    let mut worst_u = 0.0;
    let mut failing = 0;
    let mut points = 0;
    for env in psets {
        for &x in &inputs {
            let look = |s: Symbol| if s.as_str() == X { x } else { lookup(env, s) };
            let Some(sym) = hp::eval_with(&b.raw_derivative, &look) else { continue };
            if !sym.is_finite() || sym == 0.0 {
                continue;
            }
            let fd = hp::central_difference(written, X, x, &look);
            points += 1;
            let rel = (sym - fd).abs() / (sym.abs().max(f64::MIN_POSITIVE));
            if rel > 1e-12 {
                failing += 1;
            }
            if rel > worst {
                worst = rel;
                worst_u = x;
            }
        }
    }
    let err = Error {
        max_ulps: worst / f64::EPSILON,
        max_ratio: worst / f64::EPSILON,
        worst_u,
        failing,
        points,
        mean_bits: stability::bits(worst / f64::EPSILON),
    };
    rows.push(Row {
        bijector: b.name.clone(),
        quantity: "f' vs FD".into(),
        precision: Precision::F64,
        passed: failing == 0,
        error: err,
        note: None,
    });
    rows
}

/// The inverse at a point in the given precision (closed form, or the root-find on the forward map).
fn invert(b: &BijectorDerivation, pt: &RefPoint, p: Precision) -> f64 {
    let env = |s: Symbol| lookup(&pt.env, s);
    match (b.inverse.formula(), p) {
        (Some(g), Precision::F64) => eval::eval_with(g, &|s| if s.as_str() == Y { pt.u } else { env(s) }),
        (Some(g), Precision::F32) => eval::eval_f32(g, &|s| if s.as_str() == Y { pt.u } else { env(s) }) as f64,
        (None, prec) => {
            let f = |x: f64| {
                let e = |s: Symbol| if s.as_str() == X { x } else { env(s) };
                match prec {
                    Precision::F64 => eval::eval_with(&b.forward.chosen.expr, &e),
                    Precision::F32 => eval::eval_f32(&b.forward.chosen.expr, &e) as f64,
                }
            };
            let df = |x: f64| eval::eval_with(&b.derivative, &|s| if s.as_str() == X { x } else { env(s) });
            let y = match prec {
                Precision::F64 => pt.u,
                Precision::F32 => pt.u as f32 as f64,
            };
            let x = rootfind::solve(&f, &df, y, b.domain, b.monotone == Monotone::Increasing).unwrap_or(f64::NAN);
            match prec {
                Precision::F64 => x,
                Precision::F32 => x as f32 as f64,
            }
        }
    }
}

/// Checks every bijector (or only `name`, a bijector or a flow: then its layers with their
/// bound values).
pub fn check(d: &Derivation, name: Option<&str>) -> Report {
    let mut rows = Vec::new();
    for b in d.bijectors.iter().filter(|b| b.spline.is_none()) {
        if name.is_none() || name == Some(b.name.as_str()) {
            rows.extend(check_bijector(b, &param_sets(&b.params, &[])));
        }
    }
    for f in &d.flows {
        if name == Some(f.name.as_str()) {
            for l in &f.layers {
                let Some(bi) = l.bijector else { continue };
                let b = &d.bijectors[bi];
                if b.spline.is_some() {
                    continue; // checked with the whole flow
                }
                let mut r = check_bijector(b, &param_sets(&b.params, &l.bound));
                for row in &mut r {
                    if !l.bound.is_empty() {
                        let binds: Vec<String> = l.bound.iter().map(|(n, v)| format!("{n}={v}")).collect();
                        row.bijector = format!("{}({})", b.name, binds.join(","));
                    }
                }
                rows.extend(r);
            }
            rows.extend(check_flow(d, f));
        }
    }
    Report { rows }
}

/// log|det A| by Gaussian elimination with partial pivoting.
pub fn log_abs_det(mut a: Vec<Vec<f64>>) -> f64 {
    let n = a.len();
    let mut ld = 0.0;
    for c in 0..n {
        let p = (c..n).max_by(|i, j| a[*i][c].abs().total_cmp(&a[*j][c].abs())).unwrap_or(c);
        a.swap(c, p);
        let piv = a[c][c];
        ld += piv.abs().ln();
        for r in c + 1..n {
            let m = a[r][c] / piv;
            let (top, bottom) = a.split_at_mut(r);
            for (x, y) in bottom[0][c..].iter_mut().zip(&top[c][c..]) {
                *x -= m * y;
            }
        }
    }
    ld
}

/// The Jacobian of `f` at `z` by central differences, Richardson-extrapolated (error O(h⁴)).
pub fn jacobian(f: &dyn Fn(&[f64]) -> Vec<f64>, z: &[f64]) -> Vec<Vec<f64>> {
    jacobian_with_step(f, z, 1e-3)
}

/// [`jacobian`] with steps `step·(1 + |z_c|)` and half that (a narrower stencil for maps
/// that are only C¹, such as splines at their knots).
pub fn jacobian_with_step(f: &dyn Fn(&[f64]) -> Vec<f64>, z: &[f64], step: f64) -> Vec<Vec<f64>> {
    let n = z.len();
    let mut jac = vec![vec![0.0; n]; n];
    for c in 0..n {
        let central = |h: f64| {
            let (mut a, mut b) = (z.to_vec(), z.to_vec());
            a[c] += h;
            b[c] -= h;
            let (fa, fb) = (f(&a), f(&b));
            (0..n).map(|r| (fa[r] - fb[r]) / (2.0 * h)).collect::<Vec<_>>()
        };
        let h = step * (1.0 + z[c].abs());
        let (d1, d2) = (central(h), central(h / 2.0));
        for r in 0..n {
            jac[r][c] = (4.0 * d2[r] - d1[r]) / 3.0;
        }
    }
    jac
}

/// Whole-flow rows: round trip and log|det J| against an independent Jacobian.
fn check_flow(d: &Derivation, f: &crate::derive::FlowDerivation) -> Vec<Row> {
    use crate::interp;
    let (mut trip, mut det, mut generic) = (Vec::new(), Vec::new(), Vec::new());
    // on a manifold: the compiled forward kernel's closed forms against its generic ratio
    let kernels = (f.space != crate::ir::Space::Real)
        .then(|| {
            let program = crate::lower::lower(d).ok()?;
            let fk = program.kernel(&f.name, crate::lower::Kind::Forward)?.clone();
            let gk = crate::ratio::generic(&fk, f.space).ok()?;
            Some((fk, gk))
        })
        .flatten();
    for seed in 1..=3u64 {
        let p = crate::params::init(d, f, seed);
        if let Some((fk, gk)) = &kernels {
            let flat = crate::params::flat(f, &p);
            for z in interp::base_rows(f, seed, 0, 16).chunks(f.dim) {
                let (a, b) = (crate::lower::run(fk, z, &flat), crate::lower::run(gk, z, &flat));
                generic.push(((a[f.dim] - b[f.dim]).abs() / (1.0 + b[f.dim].abs()), z[0]));
            }
        }
        let zs = interp::base_rows(f, seed, 0, 16);
        for z in zs.chunks(f.dim) {
            let mut x = vec![0.0; f.dim];
            let ld = interp::forward(d, f, &p, z, &mut x);
            let mut back = vec![0.0; f.dim];
            interp::inverse(d, f, &p, &x, &mut back);
            let e = z.iter().zip(&back).map(|(a, b)| (a - b).abs() / (1.0 + a.abs())).fold(0.0, f64::max);
            trip.push((e, z[0]));
            let fwd = |zz: &[f64]| {
                let mut xx = vec![0.0; zz.len()];
                interp::forward(d, f, &p, zz, &mut xx);
                xx
            };
            let want = match f.space {
                crate::ir::Space::Real => log_abs_det(jacobian(&fwd, z)),
                // on the sphere: the generic volume ratio |det(T_xᵀ F T_z)| of the ambient
                // Jacobian F (the maps are defined off the sphere too)
                crate::ir::Space::Sphere => {
                    let jac: Vec<f64> = jacobian(&fwd, z).concat();
                    let (tz, tx) = (runtime::manifold::sphere_tangent(z), runtime::manifold::sphere_tangent(&x));
                    runtime::manifold::volume_ratio(&jac, &tz, &tx, f.dim).ln()
                }
                // on the simplex: the same with T = an orthonormal basis of 1^⊥, steps relative
                // to each coordinate (which may be small)
                crate::ir::Space::Simplex => {
                    let logs: Vec<f64> = z.iter().map(|v| v.ln()).collect();
                    let in_logs = |l: &[f64]| fwd(&l.iter().map(|v| v.exp()).collect::<Vec<f64>>());
                    // F = J_log · diag(1/z)
                    let jl = jacobian_with_step(&in_logs, &logs, 1e-3);
                    let jac: Vec<f64> = (0..f.dim).flat_map(|r| (0..f.dim).map(|c| jl[r][c] / z[c]).collect::<Vec<_>>()).collect();
                    let t = runtime::manifold::simplex_tangent(f.dim);
                    runtime::manifold::volume_ratio(&jac, &t, &t, f.dim).ln()
                }
            };
            det.push(((ld - want).abs() / (1.0 + want.abs()), z[0]));
        }
    }
    let row = |quantity: &str, errs: &[(f64, f64)], tol: f64| {
        let (worst, at) = errs.iter().copied().fold((0.0, 0.0), |a, b| if b.0 > a.0 || b.0.is_nan() { b } else { a });
        let failing = errs.iter().filter(|(e, _)| e.is_nan() || *e > tol).count();
        Row {
            bijector: format!("flow {}", f.name),
            quantity: quantity.into(),
            precision: Precision::F64,
            error: Error {
                max_ulps: worst / f64::EPSILON,
                max_ratio: worst / tol * stability::BOUND,
                worst_u: at,
                failing,
                points: errs.len(),
                mean_bits: 0.0,
            },
            passed: failing == 0,
            note: None,
        }
    };
    let mut rows = vec![row("round trip", &trip, 1e-10), row("log|det J|", &det, 1e-7)];
    if !generic.is_empty() {
        rows.push(row("log R generic", &generic, 1e-10));
    }
    rows
}
