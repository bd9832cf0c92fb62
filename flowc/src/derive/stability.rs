//! Measured accuracy: sample points (ordinary and extreme), the high-precision reference,
//! error in ulps and against the bound 16·ε·(|v| + |u·v'(u)| + 1), and the choice of the
//! candidate form with the least measured error.

use crate::ir::eval;
use crate::ir::expr::{op_count, Expr};
use crate::ir::hp;
use crate::ir::interval::Interval;
use egg::Symbol;

/// The error bound's multiplier: a value passes when |error| ≤ BOUND·ε·(|v| + |u v'| + 1).
pub const BOUND: f64 = 16.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    F64,
    F32,
}

impl Precision {
    pub fn eps(self) -> f64 {
        match self {
            Precision::F64 => f64::EPSILON / 2.0,
            Precision::F32 => f32::EPSILON as f64 / 2.0,
        }
    }
}

/// Sample inputs on a domain: ordinary points and the extreme-point group.
pub fn sample_points(domain: Interval) -> (Vec<f64>, Vec<f64>) {
    let mut ordinary = Vec::new();
    let mut extreme = Vec::new();
    let (lo, hi) = (domain.lo, domain.hi);
    let mags_ord = [0.03125, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0];
    let mags_ext = [1e-300, 1e-100, 1e-30, 1e-12, 1e-6, 20.0, 40.0, 100.0, 600.0, 1e4, 1e8, 1e15, 1e30, 1e100, 1e150, 1e300];
    if lo.is_infinite() && hi.is_infinite() {
        ordinary.push(0.0);
        for m in mags_ord {
            ordinary.push(m);
            ordinary.push(-m);
        }
        for m in mags_ext {
            extreme.push(m);
            extreme.push(-m);
        }
    } else if hi.is_infinite() {
        // (lo, inf): offsets from lo
        for m in mags_ord {
            ordinary.push(lo + m);
        }
        for m in mags_ext {
            extreme.push(lo + m);
        }
        extreme.push(lo + f64::MIN_POSITIVE.max(lo.abs() * f64::EPSILON));
    } else if lo.is_infinite() {
        for m in mags_ord {
            ordinary.push(hi - m);
        }
        for m in mags_ext {
            extreme.push(hi - m);
        }
    } else {
        let w = hi - lo;
        for i in 1..20 {
            ordinary.push(lo + w * (i as f64) / 20.0);
        }
        for t in [1e-300, 1e-100, 1e-30, 1e-12, 1e-6, 1e-3] {
            extreme.push(lo + w * t);
        }
        for t in [1e-12, 1e-6, 1e-3] {
            extreme.push(hi - w * t);
        }
        // the representable neighbours of the ends (the smallest normal number next to 0)
        extreme.push(if lo == 0.0 { f64::MIN_POSITIVE } else { next_toward(lo, hi) });
        extreme.push(if hi == 0.0 { -f64::MIN_POSITIVE } else { next_toward(hi, lo) });
    }
    let keep = |v: &f64| v.is_finite() && domain.contains(*v);
    ordinary.retain(keep);
    extreme.retain(keep);
    ordinary.dedup();
    extreme.dedup();
    (ordinary, extreme)
}

pub use runtime::rootfind::next_toward;

/// The spacing of f64 (or f32) numbers at `v`.
pub fn ulp(v: f64, p: Precision) -> f64 {
    match p {
        Precision::F64 => {
            let a = v.abs();
            if !a.is_finite() {
                return f64::NAN;
            }
            let next = f64::from_bits(a.to_bits() + 1);
            next - a
        }
        Precision::F32 => {
            let a = (v as f32).abs();
            let next = f32::from_bits(a.to_bits() + 1);
            (next - a) as f64
        }
    }
}

/// One point where a quantity is known exactly: parameter values, input `u`, the value `v`
/// rounded to f64, and the slope `v'(u)` that scales the bound.
#[derive(Debug, Clone)]
pub struct RefPoint {
    pub env: Vec<(Symbol, f64)>,
    pub input: Symbol,
    pub u: f64,
    pub value: f64,
    pub slope: f64,
}

impl RefPoint {
    pub fn lookup(&self, s: Symbol) -> f64 {
        if s == self.input {
            return self.u;
        }
        self.env.iter().find(|(n, _)| *n == s).map(|(_, v)| *v).unwrap_or(f64::NAN)
    }
}

/// Reference points for a quantity at the given inputs and parameter sets. `refs` are
/// equal formulas in `input`, the formula as written first: where it cannot be evaluated
/// even in high precision (1 - tanh(x)^2 at x = 1e300 needs about 10^300 bits), the next
/// equal form (found by the e-graph) gives the value. `slope` is d quantity / d input.
/// Points whose exact value is not a finite f64 are left out.
pub fn reference_points(refs: &[&Expr], slope: &Expr, input: &str, inputs: &[f64], params: &[Vec<(Symbol, f64)>]) -> Vec<RefPoint> {
    reference_points_marked(refs, slope, input, inputs, params).into_iter().map(|(p, _)| p).collect()
}

/// [`reference_points`], each marked with whether its value is the first reference's (the
/// others are fallbacks where the first fails).
pub fn reference_points_marked(
    refs: &[&Expr],
    slope: &Expr,
    input: &str,
    inputs: &[f64],
    params: &[Vec<(Symbol, f64)>],
) -> Vec<(RefPoint, bool)> {
    use rayon::prelude::*;
    let input = Symbol::from(input);
    // each point is independent (and costly in high precision): measured on all cores, in order
    let jobs: Vec<(&Vec<(Symbol, f64)>, f64)> = params.iter().flat_map(|env| inputs.iter().map(move |&u| (env, u))).collect();
    let point = |&(env, u): &(&Vec<(Symbol, f64)>, f64)| -> Option<(RefPoint, bool)> {
        let mut p = RefPoint { env: env.clone(), input, u, value: 0.0, slope: 0.0 };
        let look = |s: Symbol| p.lookup(s);
        let first = refs.first().and_then(|r| hp::eval_with(r, &look)).filter(|v| v.is_finite());
        let primary = first.is_some();
        let v = first.or_else(|| refs.iter().skip(1).find_map(|r| hp::eval_up_to(r, &look, 512).filter(|v| v.is_finite())))?;
        // the slope only scales the bound: f64 suffices unless it is not finite there
        let d64 = eval::eval_with(slope, &look);
        let d = if d64.is_finite() { d64 } else { hp::eval_with(slope, &look).unwrap_or(f64::INFINITY) };
        p.value = v;
        p.slope = d;
        Some((p, primary))
    };
    jobs.par_iter().map(point).collect::<Vec<_>>().into_iter().flatten().collect()
}

/// Measured error of a formula over a set of points.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Error {
    /// Largest error in ulps of the exact value.
    pub max_ulps: f64,
    /// Largest |error| / (ε·(|v| + |u·v'| + 1)); the bound is [`BOUND`].
    pub max_ratio: f64,
    /// Where the largest ratio occurred.
    pub worst_u: f64,
    /// Points over the bound.
    pub failing: usize,
    pub points: usize,
    /// Mean of log2(1 + ulps) over the points (bits of error, as in Herbie; 64 for inf/NaN).
    pub mean_bits: f64,
}

/// Bits of error of one value: log2(1 + ulps), capped at 64.
pub fn bits(ulps: f64) -> f64 {
    if ulps.is_finite() {
        (1.0 + ulps).log2().min(64.0)
    } else {
        64.0
    }
}

impl Error {
    pub fn passes(&self) -> bool {
        self.failing == 0
    }
    /// Points over the bound first, then the mean bits of error.
    pub fn score(&self) -> (usize, f64) {
        (self.failing, self.mean_bits)
    }
}

/// The ratio of one computed value to the bound's unit, and its ulps.
pub fn point_error(computed: f64, p: &RefPoint, prec: Precision) -> (f64, f64) {
    let v = p.value;
    if computed == v {
        return (0.0, 0.0);
    }
    if !computed.is_finite() {
        return (f64::INFINITY, f64::INFINITY);
    }
    let err = (computed - v).abs();
    let scale = v.abs() + (p.u * p.slope).abs() + 1.0;
    let ratio = if scale.is_finite() { err / (prec.eps() * scale) } else { 0.0 };
    let ulps = err / ulp(v, prec).max(f64::MIN_POSITIVE);
    (ratio, ulps)
}

/// Measures `e` (evaluated in `prec`) against the reference points.
pub fn measure(e: &Expr, pts: &[RefPoint], prec: Precision) -> Error {
    measure_with(pts, prec, |p| {
        let look = |s: Symbol| p.lookup(s);
        match prec {
            Precision::F64 => eval::eval_with(e, &look),
            Precision::F32 => eval::eval_f32(e, &look) as f64,
        }
    })
}

/// Measures any evaluator against the reference points.
pub fn measure_with(pts: &[RefPoint], prec: Precision, f: impl Fn(&RefPoint) -> f64) -> Error {
    let mut err = Error::default();
    for p in pts {
        if prec == Precision::F32 && !representable_f32(p) {
            continue;
        }
        err.points += 1;
        let (ratio, ulps) = point_error(f(p), p, prec);
        if ratio > BOUND {
            err.failing += 1;
        }
        if ratio > err.max_ratio || (ratio.is_infinite() && err.max_ratio.is_finite()) {
            err.max_ratio = ratio;
            err.worst_u = p.u;
        }
        err.max_ulps = err.max_ulps.max(ulps);
        err.mean_bits += bits(ulps);
    }
    if err.points > 0 {
        err.mean_bits /= err.points as f64;
    }
    err
}

/// Whether a point's input, parameters and value are normal f32 numbers.
pub fn representable_f32(p: &RefPoint) -> bool {
    let ok = |v: f64| v == 0.0 || (v.abs() >= f32::MIN_POSITIVE as f64 && v.abs() <= f32::MAX as f64);
    ok(p.u) && ok(p.value) && p.env.iter().all(|(_, v)| ok(*v)) && (p.u as f32 as f64 == p.u || p.u.abs() > 1e-30)
}

/// One candidate form and its measured error.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub expr: Expr,
    pub ops: usize,
    /// Measured in f64.
    pub error: Error,
    /// Measured in f32 (at the points representable in f32).
    pub error32: Error,
}

impl Candidate {
    /// Measures `e` in both precisions.
    pub fn measure(e: &Expr, pts: &[RefPoint]) -> Candidate {
        Candidate { expr: e.clone(), ops: op_count(e), error: measure(e, pts, Precision::F64), error32: measure(e, pts, Precision::F32) }
    }
    /// Points over the bound in either precision, then the mean bits of error in f64.
    pub fn score(&self) -> (usize, f64) {
        (self.error.failing + self.error32.failing, self.error.mean_bits)
    }
}

/// The outcome of choosing among candidate forms.
#[derive(Debug, Clone)]
pub struct Choice {
    /// The form as written (or as first derived).
    pub naive: Candidate,
    /// The form with the least measured error (ties: fewer operations).
    pub chosen: Candidate,
    /// Every candidate that was measured.
    pub candidates: Vec<Candidate>,
}

impl Choice {
    pub fn rewritten(&self) -> bool {
        self.naive.expr != self.chosen.expr
    }
}

/// Per-point (bound ratio, ulps) of `e` (f64).
fn ratios(e: &Expr, pts: &[RefPoint]) -> Vec<(f64, f64)> {
    pts.iter()
        .map(|p| {
            let look = |s: Symbol| p.lookup(s);
            point_error(eval::eval_with(e, &look), p, Precision::F64)
        })
        .collect()
}

/// Regime inference: when no single form meets the bound everywhere, the best split of
/// the input's magnitude into two regimes, each with its own form:
/// `ifpos(|u| - t, large, small)`. Returns `None` when no split fails fewer points.
fn regimes(all: &[Candidate], pts: &[RefPoint], current: (usize, f64)) -> Option<Expr> {
    if pts.len() < 4 || all.len() < 2 {
        return None;
    }
    let mut order: Vec<usize> = (0..pts.len()).collect();
    order.sort_by(|&i, &j| pts[i].u.abs().partial_cmp(&pts[j].u.abs()).unwrap());
    // prefix sums along increasing |u| of (failures, bits of error), per candidate
    let prefix: Vec<Vec<(usize, f64)>> = all
        .iter()
        .map(|c| {
            let e = ratios(&c.expr, pts);
            let mut pre = vec![(0usize, 0.0f64); pts.len() + 1];
            for (k, &i) in order.iter().enumerate() {
                let (r, u) = e[i];
                let p = &pts[i];
                let fail32 = representable_f32(p) && {
                    let look = |s: Symbol| p.lookup(s);
                    point_error(eval::eval_f32(&c.expr, &look) as f64, p, Precision::F32).0 > BOUND
                };
                pre[k + 1] = (pre[k].0 + (r > BOUND) as usize + fail32 as usize, pre[k].1 + bits(u));
            }
            pre
        })
        .collect();
    let n = pts.len();
    let mut best: Option<((usize, f64), usize, usize, usize)> = None; // (score, small, large, split)
    for (a, fa) in prefix.iter().enumerate() {
        for (b, fb) in prefix.iter().enumerate() {
            if a == b {
                continue;
            }
            for k in 1..n {
                let (u0, u1) = (pts[order[k - 1]].u.abs(), pts[order[k]].u.abs());
                if u0 == u1 {
                    continue;
                }
                let f = (fa[k].0 + (fb[n].0 - fb[k].0), fa[k].1 + (fb[n].1 - fb[k].1));
                if best.map(|(bf, ..)| f.0 < bf.0 || (f.0 == bf.0 && f.1 < bf.1)).unwrap_or(true) {
                    best = Some((f, a, b, k));
                }
            }
        }
    }
    let (f, a, b, k) = best?;
    let mean = f.1 / n as f64;
    // worth a branch only if it fails fewer points, or saves at least one bit on average
    if !(f.0 < current.0 || (f.0 == current.0 && mean < current.1 - 1.0)) {
        return None;
    }
    let (u0, u1) = (pts[order[k - 1]].u.abs(), pts[order[k]].u.abs());
    let t = if u0 > 0.0 { (u0.sqrt() * u1.sqrt()).clamp(u0, u1) } else { u1 / 2.0 };
    let t = if t <= u0 || t >= u1 { u0 + (u1 - u0) / 2.0 } else { t };
    let mut bld = crate::ir::expr::Builder::new();
    let input = bld.add(crate::ir::Math::Sym(pts[0].input));
    let abs = bld.add(crate::ir::Math::Abs(input));
    let tc = bld.num(t);
    let cond = bld.add(crate::ir::Math::Sub([abs, tc]));
    let small = bld.import(&all[a].expr, crate::ir::expr::root(&all[a].expr));
    let large = bld.import(&all[b].expr, crate::ir::expr::root(&all[b].expr));
    let r = bld.add(crate::ir::Math::IfPos([cond, large, small]));
    Some(bld.finish(r))
}

/// Measures the naive form and every candidate, and picks the most accurate (with two
/// regimes when that meets the bound at more points).
pub fn choose(naive: &Expr, candidates: Vec<Expr>, pts: &[RefPoint]) -> Choice {
    let mut c = choose_one(naive, candidates, pts);
    // the best any single form does: a branch must beat it
    let single = c.candidates.iter().map(|k| k.score()).fold((usize::MAX, f64::INFINITY), |a, b| {
        if b.0 < a.0 || (b.0 == a.0 && b.1 < a.1) {
            b
        } else {
            a
        }
    });
    if c.chosen.score().0 > 0 || c.chosen.error.mean_bits > 1.0 {
        if let Some(e) = regimes(&c.candidates, pts, single) {
            let cand = Candidate::measure(&e, pts);
            if cand.score() < c.chosen.score() {
                c.candidates.push(cand.clone());
                c.chosen = cand;
            }
        }
    }
    c
}

fn choose_one(naive: &Expr, candidates: Vec<Expr>, pts: &[RefPoint]) -> Choice {
    let measure_one = |e: &Expr| Candidate::measure(e, pts);
    let naive_c = measure_one(naive);
    let mut all = vec![naive_c.clone()];
    for c in candidates {
        if all.iter().any(|a| a.expr == c) {
            continue;
        }
        all.push(measure_one(&c));
    }
    let best = all
        .iter()
        .min_by(|a, b| {
            let (fa, ra) = a.score();
            let (fb, rb) = b.score();
            // errors within a factor of 2 of each other count as equal; then prefer fewer ops
            fa.cmp(&fb)
                .then_with(|| {
                    let (qa, qb) = (bucket(ra), bucket(rb));
                    qa.partial_cmp(&qb).unwrap_or(std::cmp::Ordering::Equal)
                })
                .then(a.ops.cmp(&b.ops))
                .then(a.error.mean_bits.partial_cmp(&b.error.mean_bits).unwrap_or(std::cmp::Ordering::Equal))
        })
        .cloned()
        .unwrap();
    Choice { naive: naive_c, chosen: best, candidates: all }
}

/// Mean bits of error within a quarter bit count as equal.
fn bucket(bits: f64) -> f64 {
    (bits * 4.0).round()
}
