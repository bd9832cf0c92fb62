//! Stage 3: [`Module`] → [`Derivation`]: inverses, log-determinants, domains and ranges,
//! and the most accurate form of each formula.
//!
//! ```
//! let src = "bijector sas(x; eps: real, delta: positive) = sinh(delta * asinh(x) - eps);";
//! let m = flowc::ir::build(&flowc::dsl::parse(src).unwrap()).unwrap();
//! let d = flowc::derive::derive(&m).unwrap();
//! let b = &d.bijectors[0];
//! assert!(b.inverse.is_closed_form());
//! ```

pub mod analysis;
pub mod diff;
pub mod dual;
pub mod fuse;
pub mod planar;
pub mod rootfind;
pub mod rules;
pub mod run;
pub mod simplex;
pub mod sphere;
pub mod stability;
pub mod usermap;

use crate::diag::{Diagnostic, Diagnostics};
use crate::ir::expr::{self, Builder, Expr};
use crate::ir::{eval, hp, Base, Bijector, Calibration, Interval, InverseHint, Layer, Math, Module, Net, Normalized, Param, Space, X, Y};
use analysis::Domains;
use egg::Symbol;
use run::{candidates, saturate, Limits, RunReport};
use stability::{choose, reference_points, Choice};
use std::time::Instant;

/// Direction of a monotone map, and how it was established.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Monotone {
    Increasing,
    Decreasing,
}

/// How a user-given inverse was confirmed.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proof {
    /// The e-graph showed it equal to `solve(y, f)`.
    Symbolic,
    /// Round trips at this many sample points agreed with the high-precision reference.
    Numeric(usize),
}

/// The derived inverse.
#[derive(Debug, Clone)]
pub enum Inverse {
    /// A closed form found by solving y = f(x).
    Closed(Choice),
    /// No closed form: bracketed root-find on the forward map.
    Numeric,
    /// The user's formula, confirmed.
    User(Choice, Proof),
}

impl Inverse {
    pub fn is_closed_form(&self) -> bool {
        !matches!(self, Inverse::Numeric)
    }
    pub fn choice(&self) -> Option<&Choice> {
        match self {
            Inverse::Closed(c) | Inverse::User(c, _) => Some(c),
            Inverse::Numeric => None,
        }
    }
    /// The formula used to invert (in `y`), when there is one.
    pub fn formula(&self) -> Option<&Expr> {
        self.choice().map(|c| &c.chosen.expr)
    }
}

/// Everything derived about one scalar bijector.
#[derive(Debug, Clone)]
pub struct BijectorDerivation {
    pub name: String,
    pub doc: String,
    pub params: Vec<Param>,
    pub domain: Interval,
    /// A range containing f(domain) (from the interval analysis).
    pub range: Interval,
    pub monotone: Monotone,
    /// Whether monotonicity was proven (interval analysis of f') or only sampled.
    pub monotone_proven: bool,
    pub forward: Choice,
    /// f'(x), simplified.
    pub derivative: Expr,
    pub inverse: Inverse,
    /// log |f'(x)|.
    pub log_det: Choice,
    /// log |f'(x)| at x = f⁻¹(y), written in `y` (−log|g'(y)| for the inverse g, simplified):
    /// present when it is as accurate as `log_det` of the computed inverse and cheaper to
    /// compute next to the inverse (the density direction then uses it).
    pub log_det_y: Option<Choice>,
    /// The built-in spline (its formulas live in `runtime::spline`; nothing is derived).
    pub spline: Option<crate::ir::layer::Spline>,
    /// f'(x) as differentiated (before simplification): the independent slope for checks.
    pub raw_derivative: Expr,
    /// log |f'(x)| as differentiated.
    pub raw_log_det: Expr,
    pub runs: Vec<RunReport>,
    pub millis: f64,
}

impl BijectorDerivation {
    /// Evaluates the chosen forward form and log-det at `x` (f64).
    pub fn forward_f64(&self, x: f64, params: &dyn Fn(Symbol) -> f64) -> (f64, f64) {
        let env = |s: Symbol| if s.as_str() == X { x } else { params(s) };
        (eval::eval_with(&self.forward.chosen.expr, &env), eval::eval_with(&self.log_det.chosen.expr, &env))
    }

    /// Evaluates the inverse at `y` (closed form or root-find) and the log-det of the
    /// forward map at the result (f64).
    pub fn inverse_f64(&self, y: f64, params: &dyn Fn(Symbol) -> f64) -> (f64, f64) {
        let x = match self.inverse.formula() {
            Some(g) => {
                let env = |s: Symbol| if s.as_str() == Y { y } else { params(s) };
                eval::eval_with(g, &env)
            }
            None => {
                let f = |x: f64| {
                    let env = |s: Symbol| if s.as_str() == X { x } else { params(s) };
                    eval::eval_with(&self.forward.chosen.expr, &env)
                };
                let df = |x: f64| {
                    let env = |s: Symbol| if s.as_str() == X { x } else { params(s) };
                    eval::eval_with(&self.derivative, &env)
                };
                rootfind::solve(&f, &df, y, self.domain, self.monotone == Monotone::Increasing).unwrap_or(f64::NAN)
            }
        };
        let env = |s: Symbol| if s.as_str() == X { x } else { params(s) };
        (x, eval::eval_with(&self.log_det.chosen.expr, &env))
    }
}

/// What a layer does, structurally.
#[derive(Debug, Clone, PartialEq)]
pub enum LayerKind {
    /// The bijector on every coordinate; its free parameters are per-coordinate vectors.
    Elementwise,
    /// `mask[i]`: coordinate i is kept; the others are transformed, their bijector's free
    /// parameters (param-major: all coordinates of the first parameter, then the next) are
    /// the outputs of `net` on the kept coordinates.
    Coupling {
        mask: Vec<bool>,
        net: Net,
    },
    /// Autoregressive (MADE conditioner); `inverse`: IAF.
    Autoregressive {
        net: Net,
        inverse: bool,
    },
    LinearLu,
    Permute {
        perm: Vec<usize>,
    },
    /// y = z + û·tanh(wᵀz + b) (see [`planar`]).
    Planar,
    /// y = z + β(z − z0)/(α + ‖z − z0‖).
    Radial,
    /// A normalized map of the sphere (see [`Normalized`]).
    Normalized(Normalized),
    /// A calibration map of the simplex (see [`Calibration`]).
    Calibration(Calibration),
    /// A user-written map of the sphere or the simplex (see [`usermap`]).
    Map(Box<crate::ir::map::Map>),
}

/// One layer of a flow, with its bound constants.
#[derive(Debug, Clone)]
pub struct LayerDerivation {
    pub kind: LayerKind,
    /// Index into [`Derivation::bijectors`] of the scalar bijector the layer applies.
    pub bijector: Option<usize>,
    pub bound: Vec<(String, f64)>,
    /// The bijector's parameters left free (set per coordinate, or by the network).
    pub free: Vec<Param>,
}

impl LayerDerivation {
    /// Learnable tensors of layer `k` on R^`dim`: name and shape (PyTorch-style, [out, in]).
    pub fn tensors(&self, k: usize, dim: usize) -> Vec<(String, Vec<usize>)> {
        let net_tensors = |net: &Net, inputs: usize, outputs: usize| -> Vec<(String, Vec<usize>)> {
            net.shapes(inputs, outputs)
                .into_iter()
                .flat_map(|(j, o, i)| [(format!("layers.{k}.net.{j}.weight"), vec![o, i]), (format!("layers.{k}.net.{j}.bias"), vec![o])])
                .collect()
        };
        match &self.kind {
            LayerKind::Elementwise => self.free.iter().map(|p| (format!("layers.{k}.{}", p.name), vec![dim])).collect(),
            LayerKind::Coupling { mask, net } => {
                let kept = mask.iter().filter(|m| **m).count();
                net_tensors(net, kept, (dim - kept) * self.free.len())
            }
            LayerKind::Autoregressive { net, .. } => net_tensors(net, dim, dim * self.free.len()),
            LayerKind::LinearLu => vec![
                (format!("layers.{k}.lower"), vec![dim, dim]),
                (format!("layers.{k}.upper"), vec![dim, dim]),
                (format!("layers.{k}.log_diag"), vec![dim]),
            ],
            LayerKind::Permute { .. } => vec![],
            LayerKind::Planar => {
                vec![(format!("layers.{k}.u"), vec![dim]), (format!("layers.{k}.w"), vec![dim]), (format!("layers.{k}.b"), vec![1])]
            }
            LayerKind::Radial => {
                vec![(format!("layers.{k}.z0"), vec![dim]), (format!("layers.{k}.alpha"), vec![1]), (format!("layers.{k}.beta"), vec![1])]
            }
            LayerKind::Calibration(Calibration::Scalar) => {
                vec![(format!("layers.{k}.log_scale"), vec![1]), (format!("layers.{k}.bias"), vec![dim])]
            }
            LayerKind::Calibration(Calibration::Generalized) => {
                let m = dim - 1;
                vec![
                    (format!("layers.{k}.lower"), vec![m, m]),
                    (format!("layers.{k}.upper"), vec![m, m]),
                    (format!("layers.{k}.log_diag"), vec![m]),
                    (format!("layers.{k}.bias"), vec![dim]),
                ]
            }
            LayerKind::Map(m) => m.params.iter().map(|p| (format!("layers.{k}.{}", p.name), p.shape.dims(dim))).collect(),
            LayerKind::Normalized(n) => {
                let mut t = Vec::new();
                if n.multiplies() {
                    t.push((format!("layers.{k}.lower"), vec![dim, dim]));
                    t.push((format!("layers.{k}.upper"), vec![dim, dim]));
                    t.push((format!("layers.{k}.log_diag"), vec![dim]));
                }
                if n.translates() {
                    t.push((format!("layers.{k}.shift"), vec![dim]));
                }
                t
            }
        }
    }
}

/// A flow: its layers in the generative direction (base first).
#[derive(Debug, Clone)]
pub struct FlowDerivation {
    pub name: String,
    pub doc: String,
    pub dim: usize,
    pub space: Space,
    pub base: Base,
    pub layers: Vec<LayerDerivation>,
    /// Runs of layers derived as one bijector (cross-layer fusion), in layer order.
    pub fused: Vec<fuse::FusedRun>,
    /// Why candidate runs were left separate.
    pub fusion_notes: Vec<String>,
}

impl FlowDerivation {
    /// The fused run starting at layer `k`, if any.
    pub fn fused_at(&self, k: usize) -> Option<&fuse::FusedRun> {
        self.fused.iter().find(|r| r.start == k)
    }
}

/// The output of the derive stage.
#[derive(Debug, Clone)]
pub struct Derivation {
    pub bijectors: Vec<BijectorDerivation>,
    pub flows: Vec<FlowDerivation>,
    /// The planar layer's scalar parts, when a flow has planar layers.
    pub planar: Option<planar::PlanarDerivation>,
    /// The normalized sphere maps the flows use, per kind and dimension.
    pub sphere: Vec<sphere::SphereDerivation>,
    /// The simplex's calibration maps the flows use, per kind and dimension.
    pub simplex: Vec<simplex::SimplexDerivation>,
    /// The user-written maps the flows use, per map and dimension.
    pub maps: Vec<usermap::MapDerivation>,
    pub millis: f64,
}

impl Derivation {
    /// What deriving user map `name` at dimension `dim` found.
    pub fn map(&self, name: &str, dim: usize) -> Option<&usermap::MapDerivation> {
        self.maps.iter().find(|m| m.name == name && m.dim == dim)
    }
}

impl Derivation {
    pub fn bijector(&self, name: &str) -> Option<&BijectorDerivation> {
        self.bijectors.iter().find(|b| b.name == name)
    }
    pub fn flow(&self, name: &str) -> Option<&FlowDerivation> {
        self.flows.iter().find(|f| f.name == name)
    }
}

/// Values at which parameters are sampled for measurements: up to three sets, each
/// parameter cycling through its kind's samples; bound parameters keep their value.
pub fn param_sets(params: &[Param], bound: &[(String, f64)]) -> Vec<Vec<(Symbol, f64)>> {
    let free: Vec<&Param> = params.iter().filter(|p| !bound.iter().any(|(n, _)| *n == p.name)).collect();
    let fixed: Vec<(Symbol, f64)> = bound.iter().map(|(n, v)| (Symbol::from(n.as_str()), *v)).collect();
    if free.is_empty() {
        return vec![fixed];
    }
    (0..3)
        .map(|i| {
            let mut env = fixed.clone();
            for (j, p) in free.iter().enumerate() {
                let s = p.kind.samples();
                env.push((Symbol::from(p.name.as_str()), s[(i + j) % s.len()]));
            }
            env
        })
        .collect()
}

fn domains_of(b: &Bijector) -> Domains {
    let mut d = Domains::default().with(X, b.domain);
    for p in &b.params {
        d = d.with(&p.name, p.kind.interval());
    }
    d
}

/// `log(abs(e))`
fn log_abs(e: &Expr) -> Expr {
    let mut bld = Builder::new();
    let r = bld.import(e, expr::root(e));
    let a = bld.add(Math::Abs(r));
    let l = bld.add(Math::Log(a));
    bld.finish(l)
}

/// `solve(y, f)`
fn solve_goal(f: &Expr) -> Expr {
    let mut bld = Builder::new();
    let y = bld.sym(Y);
    let r = bld.import(f, expr::root(f));
    let s = bld.add(Math::Solve([y, r]));
    bld.finish(s)
}

fn diff_or_diag(e: &Expr, var: &str, b: &Bijector, what: &str) -> Result<Expr, Diagnostic> {
    diff::diff(e, var).map_err(|op| {
        Diagnostic::error(b.body_span, format!("cannot differentiate `{op}` while deriving the {what} of `{}`", b.name))
            .help(format!("`{op}` has no derivative rule; rewrite the formula without it"))
    })
}

/// Derives one bijector.
pub fn derive_bijector(b: &Bijector, limits: Limits) -> Result<BijectorDerivation, Diagnostic> {
    let start = Instant::now();
    let domains = domains_of(b);
    let rules = rules::simplify_rules();
    let mut runs = Vec::new();

    // forward: candidate forms and the range
    let (g, ids, rep) = saturate("forward", domains.clone(), &[&b.forward], &rules, limits);
    runs.push(rep);
    let range = g[ids[0]].data.range.meet(&Interval::REAL);
    let fwd_cands = candidates(&g, ids[0]);
    drop(g);

    // derivative and monotonicity
    let raw_d = diff_or_diag(&b.forward, X, b, "derivative")?;
    let (gd, idd, rep) = saturate("derivative", domains.clone(), &[&raw_d], &rules, limits);
    runs.push(rep);
    let mut d_range = gd[idd[0]].data.range;
    let derivative = run::extract(&gd, idd[0], 0.0).map(|(_, e)| e).unwrap_or_else(|| raw_d.clone());
    drop(gd);
    if !d_range.excludes_zero() {
        // second attempt with the expansive rules
        let mut more = rules::simplify_rules();
        more.extend(rules::expansions());
        let (gd, idd, rep) = saturate("derivative (expanded)", domains.clone(), &[&raw_d], &more, limits);
        runs.push(rep);
        d_range = gd[idd[0]].data.range;
    }
    let (ord, ext) = stability::sample_points(b.domain);
    let psets = param_sets(&b.params, &[]);
    let (monotone, proven) = if d_range.is_positive() {
        (Monotone::Increasing, true)
    } else if d_range.is_negative() {
        (Monotone::Decreasing, true)
    } else if !matches!(b.inverse, InverseHint::Derive) {
        // the user vouches for invertibility; confirm the sign at every sample point
        let mut signs = (0usize, 0usize);
        for env in &psets {
            for &x in ord.iter().chain(&ext) {
                let look =
                    |s: Symbol| if s.as_str() == X { x } else { env.iter().find(|(n, _)| *n == s).map(|(_, v)| *v).unwrap_or(f64::NAN) };
                match hp::eval_with(&raw_d, &look) {
                    Some(v) if v > 0.0 => signs.0 += 1,
                    Some(v) if v < 0.0 => signs.1 += 1,
                    _ => {}
                }
            }
        }
        match signs {
            (p, 0) if p > 0 => (Monotone::Increasing, false),
            (0, n) if n > 0 => (Monotone::Decreasing, false),
            _ => {
                return Err(Diagnostic::error(
                    b.body_span,
                    format!("`{}` is not monotone: its derivative changes sign on the domain", b.name),
                )
                .help(format!("f'(x) = {}; a bijector must be strictly increasing or decreasing", expr::to_infix(&derivative))))
            }
        }
    } else {
        return Err(Diagnostic::error(b.body_span, format!("cannot prove that `{}` is invertible on {}", b.name, b.domain)).help(format!(
            "its derivative {} was not shown to keep one sign (interval analysis gives {}); if the map is monotone, add `where inverse = numeric` to check it numerically and invert by root-finding, or narrow the input's domain, e.g. `(x: positive; ...)`",
            expr::to_infix(&derivative),
            d_range
        )));
    };

    // log |f'|
    let raw_ld = log_abs(&raw_d);
    let (gl, idl, rep) = saturate("log-det", domains.clone(), &[&raw_ld], &rules, limits);
    runs.push(rep);
    let ld_cands = candidates(&gl, idl[0]);
    drop(gl);

    // inverse
    let inv_domains = domains.clone().with(Y, range);
    let mut solve_rules = rules::simplify_rules();
    solve_rules.extend(rules::solve());
    let all_rules = rules::all_rules();
    let goal = solve_goal(&b.forward);
    let inverse_cands: Option<(Vec<Expr>, Option<Proof>)> = match &b.inverse {
        InverseHint::Numeric => None,
        InverseHint::Derive => {
            let inv_limits = Limits { iterations: limits.iterations.max(expr::op_count(&b.forward) + 4), ..limits };
            let (gi, idi, rep) = saturate("inverse", inv_domains.clone(), &[&goal], &solve_rules, inv_limits);
            let mut hit = rep.hit_limit();
            runs.push(rep);
            let mut c = candidates(&gi, idi[0]);
            if c.is_empty() {
                // second attempt with the expansive rules
                let (gi, idi, rep) = saturate("inverse (expanded)", inv_domains, &[&goal], &all_rules, inv_limits);
                hit = rep.hit_limit();
                runs.push(rep);
                c = candidates(&gi, idi[0]);
            }
            if c.is_empty() {
                let why = if hit { " (the e-graph search stopped at its limit)" } else { "" };
                return Err(Diagnostic::error(b.body_span, format!("no closed-form inverse found for `{}`{why}", b.name)).help(
                    "add `where inverse = numeric` to invert by a bracketed root-find, or give it: `where inverse = EXPR` in terms of `y`",
                ));
            }
            Some((c, None))
        }
        InverseHint::Given(given, span) => {
            let inv_limits = Limits { iterations: limits.iterations.max(expr::op_count(&b.forward) + 4), ..limits };
            let (gi, idi, rep) = saturate("inverse", inv_domains, &[&goal, given], &solve_rules, inv_limits);
            runs.push(rep);
            let symbolic = gi.find(idi[0]) == gi.find(idi[1]);
            let proof = if symbolic {
                Proof::Symbolic
            } else {
                // numeric: g(f(x)) = x at every sample point, in high precision
                let mut bld = Builder::new();
                let fx = bld.import(&b.forward, expr::root(&b.forward));
                let gf = bld.substitute(given, expr::root(given), Symbol::from(Y), fx);
                let rt = bld.finish(gf);
                let mut n = 0;
                for env in &psets {
                    for &x in &ord {
                        let look = |s: Symbol| {
                            if s.as_str() == X {
                                x
                            } else {
                                env.iter().find(|(n, _)| *n == s).map(|(_, v)| *v).unwrap_or(f64::NAN)
                            }
                        };
                        let back = hp::eval_with(&rt, &look).unwrap_or(f64::NAN);
                        if !(back.is_finite() && (back - x).abs() <= 1e-12 * (1.0 + x.abs())) {
                            return Err(Diagnostic::error(*span, format!("the given inverse of `{}` is wrong", b.name)).help(format!(
                                "at x = {x}{}: f(x) = {}, but the inverse maps it back to {back}; remove the clause to derive the inverse, or fix it",
                                env.iter().map(|(n, v)| format!(", {n} = {v}")).collect::<String>(),
                                hp::eval_with(&b.forward, &look).unwrap_or(f64::NAN),
                            )));
                        }
                        n += 1;
                    }
                }
                Proof::Numeric(n)
            };
            let mut c = vec![given.clone()];
            c.extend(candidates(&gi, idi[1]));
            Some((c, Some(proof)))
        }
    };

    // measure and choose
    let inputs: Vec<f64> = ord.iter().chain(&ext).copied().collect();
    let refs = |first: &Expr, rest: &[Expr]| -> Vec<Expr> { std::iter::once(first.clone()).chain(rest.iter().cloned()).collect() };
    let fwd_refs = refs(&b.forward, &fwd_cands);
    let fwd_marked = stability::reference_points_marked(&fwd_refs.iter().collect::<Vec<_>>(), &raw_d, X, &inputs, &psets);
    let fwd_pts: Vec<stability::RefPoint> = fwd_marked.iter().map(|(p, _)| p.clone()).collect();
    // when no form meets the bound everywhere, search again with the expansive rules
    let mut retry = |what: &str, naive: &Expr, cands: Vec<Expr>, pts: &[stability::RefPoint]| -> Choice {
        let c = choose(naive, cands.clone(), pts);
        if c.chosen.score().0 == 0 {
            return c;
        }
        let mut more = rules::simplify_rules();
        more.extend(rules::expansions());
        let (g, ids, rep) = saturate(&format!("{what} (expanded)"), domains.clone(), &[naive], &more, limits);
        runs.push(rep);
        let mut all = cands;
        all.extend(candidates(&g, ids[0]));
        let c2 = choose(naive, all, pts);
        if c2.chosen.score() < c.chosen.score() {
            c2
        } else {
            c
        }
    };
    let forward = retry("forward", &b.forward, fwd_cands, &fwd_pts);
    let ld_slope = diff_or_diag(&raw_ld, X, b, "log-determinant")?;
    let ld_refs = refs(&raw_ld, &ld_cands);
    let ld_pts = reference_points(&ld_refs.iter().collect::<Vec<_>>(), &ld_slope, X, &inputs, &psets);
    let log_det = retry("log-det", &raw_ld, ld_cands, &ld_pts);
    let mut inv_pts = Vec::new();
    let inverse = match inverse_cands {
        None => Inverse::Numeric,
        Some((cands, proof)) => {
            let naive = cands[0].clone();
            let slope = diff::diff(&naive, Y).unwrap_or_else(|_| naive.clone());
            // f(x) at every measurement point: the forward references, already computed
            let ys = psets
                .iter()
                .map(|env| fwd_marked.iter().filter(|(p, first)| *first && p.env == *env).map(|(p, _)| p.value).collect::<Vec<f64>>());
            let mut pts = Vec::new();
            for (env, ys) in psets.iter().zip(ys) {
                pts.extend(reference_points(&cands.iter().collect::<Vec<_>>(), &slope, Y, &ys, std::slice::from_ref(env)));
            }
            let c = choose(&naive, cands, &pts);
            inv_pts = pts;
            match proof {
                None => Inverse::Closed(c),
                Some(p) => Inverse::User(c, p),
            }
        }
    };
    let log_det_y = match inverse.choice() {
        Some(inv) => log_det_in_y(inv, &log_det, &inv_pts, domains.clone().with(Y, range), limits, &mut runs),
        None => None,
    };
    Ok(BijectorDerivation {
        name: b.name.clone(),
        doc: b.doc.clone(),
        params: b.params.clone(),
        domain: b.domain,
        range,
        monotone,
        monotone_proven: proven,
        forward,
        derivative,
        inverse,
        log_det,
        log_det_y,
        spline: None,
        raw_derivative: raw_d,
        raw_log_det: raw_ld,
        runs,
        millis: start.elapsed().as_secs_f64() * 1e3,
    })
}

/// Forms of the log-det in y measured (the best under each cost model).
const LOG_DET_Y_CANDIDATES: usize = 24;

/// log|f'(x)| at x = g(y) written in `y`: −log|g'(y)| of the inverse g as first derived,
/// simplified. In the density direction the log-det follows the inverse, and its form in `x`
/// often undoes the inverse's last step (sinh-arcsinh: asinh(x) of x = sinh(w) is w), so the
/// form in `y` can share the inverse's work. Kept when it fails no more measurement points
/// (f64 and f32, at the inverse's points) than log|f'| of the computed inverse, is not more
/// than a quarter bit worse on average, and the two together cost less latency per row.
fn log_det_in_y(
    inv: &Choice,
    log_det: &Choice,
    pts: &[stability::RefPoint],
    domains: Domains,
    limits: Limits,
    runs: &mut Vec<RunReport>,
) -> Option<Choice> {
    // a log-det that does not depend on x costs nothing after the inverse
    if pts.is_empty() || !expr::mentions(&log_det.chosen.expr, Symbol::from(X)) {
        return None;
    }
    let g = &inv.naive.expr;
    let dg = diff::diff(g, Y).ok()?;
    let (x, y) = (Symbol::from(X), Symbol::from(Y));
    let rename = |e: &Expr, from: Symbol, to: Symbol| {
        let mut bld = Builder::new();
        let t = bld.add(Math::Sym(to));
        let r = bld.substitute(e, expr::root(e), from, t);
        bld.finish(r)
    };
    let raw = {
        let mut bld = Builder::new();
        let l = log_abs(&dg);
        let r = bld.import(&l, expr::root(&l));
        let n = bld.add(Math::Neg(r));
        bld.finish(n)
    };
    // saturated in x's name, so the extraction by per-row latency sees what depends on it
    let range = domains.symbols.get(&y).copied().unwrap_or(Interval::REAL);
    let (gl, idl, rep) = saturate("log-det in y", domains.with(X, range), &[&rename(&raw, y, x)], &rules::simplify_rules(), limits);
    runs.push(rep);
    let (cost, cheap) = egg::Extractor::new(&gl, fuse::RowCost { g: &gl }).find_best(idl[0]);
    if !cost.is_finite() {
        return None;
    }
    // what the density direction computes without it: log|f'| at the computed inverse
    let composed = {
        let mut bld = Builder::new();
        let x = bld.import(&inv.chosen.expr, expr::root(&inv.chosen.expr));
        let ld = bld.substitute(&log_det.chosen.expr, expr::root(&log_det.chosen.expr), Symbol::from(X), x);
        bld.finish(ld)
    };
    let pair = |ld: &Expr| {
        let mut bld = Builder::new();
        let x = bld.import(&inv.chosen.expr, expr::root(&inv.chosen.expr));
        let l = bld.import(ld, expr::root(ld));
        let both = bld.add(Math::Add([x, l]));
        fuse::row_latency(&bld.finish(both), y)
    };
    let cheap = rename(&cheap, x, y);
    // nothing to measure when even the cheapest form in y costs more next to the inverse
    if pair(&cheap) >= pair(&composed) {
        return None;
    }
    // the best forms under each cost model (not their one-node variations: few are needed here)
    let mut cands: Vec<Expr> = candidates(&gl, idl[0]).into_iter().take(LOG_DET_Y_CANDIDATES).map(|e| rename(&e, x, y)).collect();
    drop(gl);
    if !cands.contains(&cheap) {
        cands.push(cheap);
    }
    // the reference: the same log-det at the exact preimage, the forms in y as fallbacks
    let slope = diff::diff(&raw, Y).ok()?;
    let refs: Vec<&Expr> = std::iter::once(&raw).chain(&cands).collect();
    let mut envs: Vec<Vec<(Symbol, f64)>> = Vec::new();
    for p in pts {
        if !envs.contains(&p.env) {
            envs.push(p.env.clone());
        }
    }
    let mut ref_pts = Vec::new();
    for env in &envs {
        let ys: Vec<f64> = pts.iter().filter(|p| p.env == *env).map(|p| p.u).collect();
        ref_pts.extend(reference_points(&refs, &slope, Y, &ys, std::slice::from_ref(env)));
    }
    let base = stability::Candidate::measure(&composed, &ref_pts);
    let mut c = choose(&raw, cands, &ref_pts);
    // among the forms as accurate as the most accurate one, the cheapest next to the inverse
    let (fbest, bbest) = c.chosen.score();
    let as_good = |k: &stability::Candidate| k.score().0 <= fbest && k.score().1 <= bbest + 0.25;
    let key = |k: &stability::Candidate| (pair(&k.expr), k.ops);
    if let Some(k) =
        c.candidates.iter().filter(|k| as_good(k)).min_by(|a, b| key(a).partial_cmp(&key(b)).unwrap_or(std::cmp::Ordering::Equal))
    {
        if key(k) < key(&c.chosen) {
            c.chosen = k.clone();
        }
    }
    let (fy, by) = c.chosen.score();
    let (fx, bx) = base.score();
    let accurate = fy <= fx && by <= bx + 0.25;
    (accurate && pair(&c.chosen.expr) < pair(&composed)).then_some(c)
}

/// Derives every bijector and flow of the module, collecting every error.
pub fn derive(m: &Module) -> Result<Derivation, Diagnostics> {
    derive_with(m, Limits::default())
}

/// [`derive`] with explicit e-graph limits.
pub fn derive_with(m: &Module, limits: Limits) -> Result<Derivation, Diagnostics> {
    derive_configured(m, limits, true)
}

/// [`derive`] with explicit e-graph limits, and cross-layer fusion on or off.
pub fn derive_configured(m: &Module, limits: Limits, fuse: bool) -> Result<Derivation, Diagnostics> {
    let start = Instant::now();
    let mut diags = Diagnostics::new();
    let mut flows = m
        .flows
        .iter()
        .map(|f| FlowDerivation {
            name: f.name.clone(),
            doc: f.doc.clone(),
            dim: f.dim,
            space: f.space,
            base: f.base.clone(),
            layers: f
                .layers
                .iter()
                .map(|l| {
                    let kind = match l {
                        Layer::Elementwise { .. } => LayerKind::Elementwise,
                        Layer::Coupling { mask, net, .. } => LayerKind::Coupling { mask: mask.clone(), net: net.clone() },
                        Layer::Autoregressive { net, inverse, .. } => LayerKind::Autoregressive { net: net.clone(), inverse: *inverse },
                        Layer::LinearLu { .. } => LayerKind::LinearLu,
                        Layer::Permute { perm, .. } => LayerKind::Permute { perm: perm.clone() },
                        Layer::Planar { .. } => LayerKind::Planar,
                        Layer::Radial { .. } => LayerKind::Radial,
                        Layer::Normalized { kind, .. } => LayerKind::Normalized(*kind),
                        Layer::Calibration { kind, .. } => LayerKind::Calibration(*kind),
                        Layer::Map { map, .. } => LayerKind::Map(Box::new(m.maps[*map].clone())),
                    };
                    let bound = match l {
                        Layer::Elementwise { bound, .. } | Layer::Coupling { bound, .. } | Layer::Autoregressive { bound, .. } => {
                            bound.clone()
                        }
                        _ => vec![],
                    };
                    let free = match l.bijector() {
                        Some(b) => m.bijectors[b].params.iter().filter(|p| !bound.iter().any(|(n, _)| *n == p.name)).cloned().collect(),
                        None => vec![],
                    };
                    LayerDerivation { kind, bijector: l.bijector(), bound, free }
                })
                .collect(),
            fused: Vec::new(),
            fusion_notes: Vec::new(),
        })
        .collect::<Vec<FlowDerivation>>();
    // bijectors are independent: derive them on all cores (results keep the source order);
    // the flows' fusion needs only the bijectors the flows use, so it starts as soon as those
    // are derived, alongside the others
    // (diagnostics of this stage carry no token spans, so they cross threads as parts)
    let mut used = vec![false; m.bijectors.len()];
    for f in &flows {
        for l in &f.layers {
            if let Some(b) = l.bijector {
                used[b] = true;
            }
        }
    }
    let derive_some = |want: bool| -> Vec<(usize, Derived)> {
        let idx: Vec<usize> = (0..m.bijectors.len()).filter(|i| used[*i] == want).collect();
        let results = parallel_map(&idx, |i| {
            let b = &m.bijectors[*i];
            if b.spline.is_some() {
                // a built-in spline: its formulas are `runtime::spline`'s
                return Ok(placeholder(b));
            }
            derive_bijector(b, limits).map_err(|d| (d.span, d.message, d.help))
        });
        idx.into_iter().zip(results).collect()
    };
    // the planar layer's scalar parts, when a flow has planar layers (alongside the rest)
    let has_planar = flows.iter().any(|f| f.layers.iter().any(|l| l.kind == LayerKind::Planar));
    let ((in_flows, fusion), (others, planar)) = rayon::join(
        || {
            let derived = derive_some(true);
            if !fuse || flows.is_empty() || derived.iter().any(|(_, r)| r.is_err()) {
                return (derived, None);
            }
            // the table fusion reads: the flows' bijectors (the others are not looked at)
            let mut table: Vec<BijectorDerivation> = m.bijectors.iter().map(placeholder).collect();
            for (i, r) in &derived {
                table[*i] = r.as_ref().expect("checked").clone();
            }
            let fusion = parallel_map(&flows, |f| fuse::fuse_flow(m, &table, f, limits));
            (derived, Some(fusion))
        },
        || rayon::join(|| derive_some(false), || has_planar.then(|| planar::derive_planar(limits))),
    );
    let mut results: Vec<Option<Derived>> = (0..m.bijectors.len()).map(|_| None).collect();
    for (i, r) in in_flows.into_iter().chain(others) {
        results[i] = Some(r);
    }
    let mut bijectors = Vec::new();
    for (b, r) in m.bijectors.iter().zip(results) {
        match r.expect("every bijector derived") {
            Ok(d) => bijectors.push(d),
            Err((span, message, help)) => {
                let mut d = Diagnostic::unlocated(message);
                d.span = span;
                d.help = help;
                diags.push(d);
                // keep indices aligned with the module; a placeholder is never returned
                bijectors.push(placeholder(b));
            }
        }
    }
    if let (Some(fusion), false) = (fusion, diags.has_errors()) {
        for (f, (runs, notes)) in flows.iter_mut().zip(fusion) {
            f.fused = runs;
            f.fusion_notes = notes;
        }
    }
    let planar = match planar {
        Some(Ok(p)) => Some(p),
        Some(Err(e)) => {
            diags.push(Diagnostic::unlocated(format!("the planar layer did not derive: {e}")));
            None
        }
        None => None,
    };
    // the manifold maps' lemmas, each kind and dimension once, checked against the generic ratio
    let sphere =
        manifold_maps(&flows, |k| if let LayerKind::Normalized(n) = k { Some(*n) } else { None }, sphere::derive_sphere, &mut diags);
    let simplex =
        manifold_maps(&flows, |k| if let LayerKind::Calibration(c) = k { Some(*c) } else { None }, simplex::derive_simplex, &mut diags);
    // the user maps, each once per dimension, checked
    let mut maps: Vec<usermap::MapDerivation> = Vec::new();
    for f in &flows {
        for l in &f.layers {
            if let LayerKind::Map(mp) = &l.kind {
                if maps.iter().any(|d| d.name == mp.name && d.dim == f.dim) {
                    continue;
                }
                match usermap::derive_map(mp, f.dim) {
                    Ok(d) => maps.push(d),
                    Err(e) => {
                        let mut d = Diagnostic::unlocated(e);
                        d.span = Some(mp.span);
                        diags.push(d);
                    }
                }
            }
        }
    }
    diags.into_result(Derivation { bijectors, flows, planar, sphere, simplex, maps, millis: start.elapsed().as_secs_f64() * 1e3 })
}

/// The derivations of the manifold maps the flows use (the kinds `pick` selects), once per kind
/// and dimension; failures become diagnostics.
fn manifold_maps<K: Copy + PartialEq, D>(
    flows: &[FlowDerivation],
    pick: impl Fn(&LayerKind) -> Option<K>,
    derive: impl Fn(K, usize) -> Result<D, String>,
    diags: &mut Diagnostics,
) -> Vec<D> {
    let mut out = Vec::new();
    let mut tried: Vec<(K, usize)> = Vec::new();
    for f in flows {
        for kind in f.layers.iter().filter_map(|l| pick(&l.kind)) {
            if !tried.contains(&(kind, f.dim)) {
                tried.push((kind, f.dim));
                match derive(kind, f.dim) {
                    Ok(d) => out.push(d),
                    Err(e) => diags.push(Diagnostic::unlocated(e)),
                }
            }
        }
    }
    out
}

/// A bijector's derivation, or its diagnostic as parts (span, message, help).
type Derived = Result<BijectorDerivation, (Option<crate::diag::Span>, String, Option<String>)>;

/// Maps `f` over `items` on all available cores (rayon's pool, shared with the measurements
/// inside), keeping the order.
fn parallel_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync + Send) -> Vec<R> {
    use rayon::prelude::*;
    items.par_iter().map(f).collect()
}

fn placeholder(b: &Bijector) -> BijectorDerivation {
    let c = stability::choose(&b.forward, vec![], &[]);
    BijectorDerivation {
        name: b.name.clone(),
        doc: b.doc.clone(),
        params: b.params.clone(),
        domain: b.domain,
        range: Interval::REAL,
        monotone: Monotone::Increasing,
        monotone_proven: false,
        forward: c.clone(),
        derivative: b.forward.clone(),
        inverse: Inverse::Numeric,
        log_det: c,
        log_det_y: None,
        spline: b.spline,
        raw_derivative: b.forward.clone(),
        raw_log_det: b.forward.clone(),
        runs: vec![],
        millis: 0.0,
    }
}
