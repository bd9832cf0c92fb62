//! Cross-layer fusion: a run of consecutive elementwise layers is one scalar map per
//! coordinate, x ↦ f_K(…f_1(x)…), so it is derived as one bijector. Equality saturation over
//! the whole chain finds identities between layers that no per-layer derivation can see: a
//! chain of sinh-arcsinh layers collapses because asinh(sinh u) = u, leaving one asinh and one
//! sinh per coordinate instead of K of each.
//!
//! The composite's parameters are named after the layers' parameter slots (`layers.K.NAME`),
//! so parameter files and `--param` are unchanged. A run is fused only when the composite
//! derivation succeeds with a closed-form inverse, its chosen forms fail no more f64 measurement
//! points than the layers' own, and it is cheaper (summed op latencies of forward, inverse and
//! log-det) than the layers one by one; otherwise the layers stay separate and a note says why.

use super::run::{extract, saturate, Limits, OpCost};
use super::{derive_bijector, rules, BijectorDerivation, FlowDerivation, Inverse};
use crate::ir::expr::{Builder, Expr};
use crate::ir::{Bijector, Interval, InverseHint, Math, Module, Param, ParamKind, X};
use egg::{Id, Language, Symbol};
use std::collections::HashMap;

/// Layers `start..end` of a flow derived as one bijector.
#[derive(Debug, Clone)]
pub struct FusedRun {
    pub start: usize,
    pub end: usize,
    /// The composite, with parameters named `layers.K.NAME`.
    pub derivation: BijectorDerivation,
    /// The composite before simplification (layer formulas substituted into each other).
    pub composite: Expr,
    /// The simplified composite, in the layers' parameters.
    pub simplified: Expr,
    /// Parameter-only subexpressions of the simplified composite, named `k0`, `k1`, …: the
    /// derivation sees `sinh(k0 * asinh(x) - k1)`; kernels compute them once per call.
    pub defs: Vec<(String, Expr)>,
    /// Summed op latencies of forward + inverse + log-det: fused, and layer by layer.
    pub cost: f64,
    pub unfused_cost: f64,
}

/// The symbol of layer `k`'s parameter `name` inside a fused composite.
pub fn param_symbol(k: usize, name: &str) -> String {
    format!("layers.{k}.{name}")
}

/// Summed latency of every op node of `e` (shared nodes once).
pub fn latency(e: &Expr) -> f64 {
    e.as_ref().iter().map(OpCost::latency).sum()
}

/// Summed latency of the op nodes of `e` that depend on `var` (shared nodes once): the work
/// per row when everything else is computed once per call.
pub fn row_latency(e: &Expr, var: Symbol) -> f64 {
    let mut dep = vec![false; e.as_ref().len()];
    let mut total = 0.0;
    for (i, n) in e.as_ref().iter().enumerate() {
        dep[i] = matches!(n, Math::Sym(s) if *s == var) || n.children().iter().any(|c| dep[usize::from(*c)]);
        if dep[i] {
            total += OpCost::latency(n);
        }
    }
    total
}

fn derivation_cost(b: &BijectorDerivation) -> f64 {
    latency(&b.forward.chosen.expr) + b.inverse.formula().map(latency).unwrap_or(f64::INFINITY) + latency(&b.log_det.chosen.expr)
}

/// Measurement points over the error bound in f64, summed over forward, inverse and log-det.
fn failing(b: &BijectorDerivation) -> usize {
    b.forward.chosen.error.failing + b.inverse.choice().map(|c| c.chosen.error.failing).unwrap_or(0) + b.log_det.chosen.error.failing
}

/// Copies `src` into `bld`, mapping each symbol through `map` (unmapped symbols stay).
fn rebuild(bld: &mut Builder, src: &Expr, map: &dyn Fn(&mut Builder, Symbol) -> Option<Id>) -> Id {
    let mut ids: Vec<Id> = Vec::with_capacity(src.as_ref().len());
    for node in src.as_ref() {
        let id = match node {
            Math::Sym(s) => match map(bld, *s) {
                Some(id) => id,
                None => bld.add(node.clone()),
            },
            _ => {
                let n = node.clone().map_children(|c| ids[usize::from(c)]);
                bld.add(n)
            }
        };
        ids.push(id);
    }
    *ids.last().expect("non-empty expression")
}

/// The maximal runs of ≥ 2 consecutive layers that may be fused: every member's inverse is
/// in closed form (derived, not given or numeric) and every member after the first accepts
/// all reals.
fn candidate_runs(m: &Module, bijectors: &[BijectorDerivation], f: &FlowDerivation) -> Vec<(usize, usize)> {
    let ok = |k: usize| {
        let l = &f.layers[k];
        match (l.kind == super::LayerKind::Elementwise, l.bijector) {
            (true, Some(b)) => matches!(bijectors[b].inverse, Inverse::Closed(_)) && matches!(m.bijectors[b].inverse, InverseHint::Derive),
            _ => false,
        }
    };
    let mut runs = Vec::new();
    let mut k = 0;
    while k < f.layers.len() {
        if !ok(k) {
            k += 1;
            continue;
        }
        let start = k;
        k += 1;
        while k < f.layers.len() && ok(k) && m.bijectors[f.layers[k].bijector.expect("elementwise")].domain == Interval::REAL {
            k += 1;
        }
        if k - start >= 2 {
            runs.push((start, k));
        }
    }
    runs
}

/// Fuses what can be fused in flow `f`; returns the fused runs and a note per run left
/// separate.
pub fn fuse_flow(m: &Module, bijectors: &[BijectorDerivation], f: &FlowDerivation, limits: Limits) -> (Vec<FusedRun>, Vec<String>) {
    let mut fused = Vec::new();
    let mut notes = Vec::new();
    for (start, end) in candidate_runs(m, bijectors, f) {
        match fuse_run(m, bijectors, f, start, end, limits) {
            Ok(r) => fused.push(r),
            Err(why) => notes.push(format!("layers {start}..{} kept separate: {why}", end - 1)),
        }
    }
    (fused, notes)
}

fn fuse_run(
    m: &Module,
    bijectors: &[BijectorDerivation],
    f: &FlowDerivation,
    start: usize,
    end: usize,
    limits: Limits,
) -> Result<FusedRun, String> {
    // the composite: each layer's own formula, bound constants in, parameters renamed
    let mut bld = Builder::new();
    let mut cur = bld.sym(X);
    let mut params: Vec<Param> = Vec::new();
    for k in start..end {
        let l = &f.layers[k];
        let src = &m.bijectors[l.bijector.expect("elementwise")];
        let x_id = cur;
        cur = rebuild(&mut bld, &src.forward, &|b: &mut Builder, s: Symbol| {
            if s.as_str() == X {
                return Some(x_id);
            }
            if let Some((_, v)) = l.bound.iter().find(|(n, _)| n.as_str() == s.as_str()) {
                return Some(b.num(*v));
            }
            if src.param(s.as_str()).is_some() {
                return Some(b.sym(&param_symbol(k, s.as_str())));
            }
            None
        });
        for p in &l.free {
            params.push(Param { name: param_symbol(k, &p.name), kind: p.kind });
        }
    }
    let composite = bld.finish(cur);
    let first = &m.bijectors[f.layers[start].bijector.expect("elementwise")];

    // simplify the chain as a whole; the simplest form is what the derivation starts from
    let mut domains = super::analysis::Domains::default().with(X, first.domain);
    for p in &params {
        domains = domains.with(&p.name, p.kind.interval());
    }
    let (g, ids, _) = saturate("fusion", domains, &[&composite], &rules::simplify_rules(), limits);
    // per-row work counts, parameter-only work (computed once per call) nearly not
    let simplified = {
        let (cost, e) = egg::Extractor::new(&g, RowCost { g: &g }).find_best(ids[0]);
        if cost.is_finite() {
            e
        } else {
            extract(&g, ids[0], 0.0).map(|(_, e)| e).unwrap_or_else(|| composite.clone())
        }
    };
    drop(g);

    let kinds: HashMap<String, ParamKind> = params.iter().map(|p| (p.name.clone(), p.kind)).collect();
    let (shape, defs, shape_params) = abstract_params(&simplified, &kinds, first.domain);
    let params = shape_params;
    let name = format!("{}.layers[{start}..{}]", f.name, end - 1);
    let b = Bijector {
        name: name.clone(),
        doc: format!("layers {start} to {} of flow `{}`, fused", end - 1, f.name),
        span: first.span,
        body_span: first.body_span,
        domain: first.domain,
        params,
        forward: shape,
        inverse: InverseHint::Derive,
        spline: None,
    };
    crate::dump("fusion", || format!("{} = {}", b.name, crate::ir::expr::to_infix(&b.forward)));
    let d = derive_bijector(&b, limits).map_err(|e| format!("the composite did not derive ({})", e.message))?;
    if !d.inverse.is_closed_form() {
        return Err("no closed-form inverse of the composite".into());
    }
    let members: Vec<&BijectorDerivation> = (start..end).map(|k| &bijectors[f.layers[k].bijector.expect("elementwise")]).collect();
    let unfused_cost: f64 = members.iter().map(|b| derivation_cost(b)).sum();
    let cost = derivation_cost(&d);
    let member_failing: usize = members.iter().map(|b| failing(b)).sum();
    crate::dump("fusion", || crate::report::bijector_text(&d, true));
    if failing(&d) > member_failing {
        return Err(format!("the composite's forms fail {} measurement points, the layers' {member_failing}", failing(&d)));
    }
    if cost >= unfused_cost {
        return Err(format!("no cheaper: {cost:.0} vs {unfused_cost:.0} (summed op latencies)"));
    }
    Ok(FusedRun { start, end, derivation: d, composite, simplified, defs, cost, unfused_cost })
}

/// Op latency of the work done per row: nodes that do not depend on x cost a thousandth.
pub(crate) struct RowCost<'g> {
    pub(crate) g: &'g super::analysis::Graph,
}

impl egg::CostFunction<Math> for RowCost<'_> {
    type Cost = f64;
    fn cost<C: FnMut(Id) -> f64>(&mut self, enode: &Math, mut costs: C) -> f64 {
        let per_row = matches!(enode, Math::Sym(s) if s.as_str() == X) || enode.children().iter().any(|c| self.g[*c].data.has_x);
        let own = OpCost::latency(enode) * if per_row { 1.0 } else { 1e-3 };
        enode.fold(own, |acc, c| acc + costs(c))
    }
}

/// Replaces each maximal parameter-only subexpression (an operation not depending on x) of
/// `e` by a fresh symbol `k0`, `k1`, … whose kind follows from its range (positive, unit or
/// real). Returns the new expression, the definitions, and the parameters it uses.
fn abstract_params(e: &Expr, kinds: &HashMap<String, ParamKind>, domain: Interval) -> (Expr, Vec<(String, Expr)>, Vec<Param>) {
    let nodes = e.as_ref();
    let mut has_x = vec![false; nodes.len()];
    let mut range = vec![Interval::REAL; nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        let (hx, r) = match n {
            Math::Num(c) => (false, Interval::point(c.get())),
            Math::Sym(s) if s.as_str() == X => (true, domain),
            Math::Sym(s) => (false, kinds.get(s.as_str()).map(|k| k.interval()).unwrap_or(Interval::REAL)),
            other => {
                let ch: Vec<usize> = other.children().iter().map(|c| usize::from(*c)).collect();
                let args: Vec<Interval> = ch.iter().map(|c| range[*c]).collect();
                (ch.iter().any(|c| has_x[*c]), Interval::apply(other, &args))
            }
        };
        has_x[i] = hx;
        range[i] = r;
    }
    let mut bld = Builder::new();
    let mut defs: Vec<(String, Expr)> = Vec::new();
    let mut params: Vec<Param> = Vec::new();
    let mut memo: HashMap<String, String> = HashMap::new();
    #[allow(clippy::too_many_arguments)]
    fn walk(
        e: &Expr,
        id: Id,
        has_x: &[bool],
        range: &[Interval],
        kinds: &HashMap<String, ParamKind>,
        bld: &mut Builder,
        defs: &mut Vec<(String, Expr)>,
        params: &mut Vec<Param>,
        memo: &mut HashMap<String, String>,
    ) -> Id {
        let i = usize::from(id);
        let node = &e[id];
        match node {
            Math::Sym(s) if s.as_str() != X => {
                if let Some(k) = kinds.get(s.as_str()) {
                    if !params.iter().any(|p| p.name == s.as_str()) {
                        params.push(Param { name: s.to_string(), kind: *k });
                    }
                }
                bld.add(node.clone())
            }
            n if !n.is_leaf() && !has_x[i] => {
                let mut sub = Builder::new();
                let r = sub.import(e, id);
                let def = sub.finish(r);
                let key = crate::ir::expr::to_infix(&def);
                let name = match memo.get(&key) {
                    Some(n) => n.clone(),
                    None => {
                        let name = format!("k{}", defs.len());
                        let r = range[i];
                        let kind = if r.is_positive() && r.hi <= 1.0 && r.hi_open {
                            ParamKind::Unit
                        } else if r.is_positive() {
                            ParamKind::Positive
                        } else {
                            ParamKind::Real
                        };
                        params.push(Param { name: name.clone(), kind });
                        defs.push((name.clone(), def));
                        memo.insert(key, name.clone());
                        name
                    }
                };
                bld.sym(&name)
            }
            n => {
                let n = n.clone().map_children(|c| walk(e, c, has_x, range, kinds, bld, defs, params, memo));
                bld.add(n)
            }
        }
    }
    let root = walk(e, crate::ir::expr::root(e), &has_x, &range, kinds, &mut bld, &mut defs, &mut params, &mut memo);
    (bld.finish(root), defs, params)
}
