//! The scalar parts of the planar layer y = z + û·h(wᵀz + b), h = tanh, derived once per
//! module: by the matrix determinant lemma det(I + û h'(a) wᵀ) = 1 + h'(a)·ûᵀw, and the
//! reparametrization makes ûᵀw = m(wᵀu) = −1 + softplus(wᵀu) > −1, so
//! log|det J| = log|1 + m·h'(a)| with a = wᵀz + b: h' by differentiation, the form chosen by
//! measured error (in `x` for a, and `m`). The inverse reduces to one scalar equation along
//! w: with α = wᵀz + b, wᵀy + b = α + m·h(α), increasing in α since m·h' > −1; solved by the
//! bracketed root-find, then z = y − û·h(α).

use super::analysis::Domains;
use super::run::{candidates, extract, saturate, Limits, RunReport};
use super::stability::{choose, reference_points, sample_points, Choice};
use super::{diff, log_abs, rules};
use crate::ir::expr::{self, Builder, Expr};
use crate::ir::{Interval, Math, X};
use egg::Symbol;

/// The symbol of ûᵀw in the scalar formulas.
pub const M: &str = "m";

/// Everything derived about the planar layer's scalar parts.
#[derive(Debug, Clone)]
pub struct PlanarDerivation {
    /// h(x) = tanh(x)
    pub h: Expr,
    /// log|1 + m·h'(x)|, chosen by measured error.
    pub log_det: Choice,
    /// g(x) = x + m·h(x): wᵀy + b as a function of α = x.
    pub g: Expr,
    /// g'(x), simplified.
    pub dg: Expr,
    pub runs: Vec<RunReport>,
}

fn parse(s: &str) -> Expr {
    s.parse().expect("a valid formula")
}

/// Derives the planar layer's scalar parts.
pub fn derive_planar(limits: Limits) -> Result<PlanarDerivation, String> {
    let x = Symbol::from(X);
    let h = parse("(tanh x)");
    let dh = diff::diff(&h, X).map_err(|op| format!("cannot differentiate `{op}`"))?;
    let mut bld = Builder::new();
    let one = bld.num(1.0);
    let m = bld.sym(M);
    let d = bld.import(&dh, expr::root(&dh));
    let md = bld.add(Math::Mul([m, d]));
    let s = bld.add(Math::Add([one, md]));
    let raw = log_abs(&bld.finish(s));
    let domains = Domains::default().with(X, Interval::REAL).with(M, Interval::open(-1.0, f64::INFINITY));
    let rules = rules::simplify_rules();
    let mut runs = Vec::new();
    let (g0, ids, rep) = saturate("planar log-det", domains.clone(), &[&raw], &rules, limits);
    runs.push(rep);
    let cands = candidates(&g0, ids[0]);
    drop(g0);
    let slope = diff::diff(&raw, X).map_err(|op| format!("cannot differentiate `{op}`"))?;
    let (ord, ext) = sample_points(Interval::REAL);
    let inputs: Vec<f64> = ord.iter().chain(&ext).copied().collect();
    let ms = Symbol::from(M);
    let envs: Vec<Vec<(Symbol, f64)>> = [-0.99, -0.5, -0.1, 0.25, 1.0, 7.5, 1e3].iter().map(|v| vec![(ms, *v)]).collect();
    let refs: Vec<&Expr> = std::iter::once(&raw).chain(&cands).collect();
    let pts = reference_points(&refs, &slope, X, &inputs, &envs);
    let log_det = choose(&raw, cands, &pts);
    // g and g'
    let mut bld = Builder::new();
    let xs = bld.add(Math::Sym(x));
    let m = bld.sym(M);
    let hh = bld.import(&h, expr::root(&h));
    let mh = bld.add(Math::Mul([m, hh]));
    let gr = bld.add(Math::Add([xs, mh]));
    let g = bld.finish(gr);
    let dg_raw = diff::diff(&g, X).map_err(|op| format!("cannot differentiate `{op}`"))?;
    let (g1, ids, rep) = saturate("planar g'", domains, &[&dg_raw], &rules, limits);
    runs.push(rep);
    let dg = extract(&g1, ids[0], 0.0).map(|(_, e)| e).unwrap_or(dg_raw);
    Ok(PlanarDerivation { h, log_det, g, dg, runs })
}
