//! Equality saturation runs with explicit limits, the cost models, and extraction.

use super::analysis::{Domains, Graph};
use super::rules::Rule;
use crate::ir::expr::Expr;
use crate::ir::op::Math;
use egg::{CostFunction, Extractor, Id, Language, Runner, StopReason};
use std::time::Duration;

/// The limits of one e-graph run.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub iterations: usize,
    pub nodes: usize,
    pub time: Duration,
}

/// Iteration and node limits decide where a run stops (so results do not depend on the
/// machine's speed); the time limit is a safety net.
impl Default for Limits {
    fn default() -> Self {
        Limits { iterations: 14, nodes: 4_000, time: Duration::from_secs(2) }
    }
}

/// What a run did and why it stopped.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunReport {
    pub purpose: String,
    pub iterations: usize,
    pub nodes: usize,
    pub classes: usize,
    /// `saturated`, `iteration limit`, `node limit`, `time limit`, or another reason.
    pub stop: String,
    pub millis: f64,
}

impl RunReport {
    /// Whether the run stopped at a limit (the result is then the best found so far).
    pub fn hit_limit(&self) -> bool {
        self.stop != "saturated"
    }
}

/// Runs `rules` on a graph seeded with `roots`; returns the graph, the roots' ids and the report.
pub fn saturate(purpose: &str, domains: Domains, roots: &[&Expr], rules: &[Rule], limits: Limits) -> (Graph, Vec<Id>, RunReport) {
    let mut runner =
        Runner::<Math, Domains>::new(domains).with_iter_limit(limits.iterations).with_node_limit(limits.nodes).with_time_limit(limits.time);
    for r in roots {
        runner = runner.with_expr(r);
    }
    let start = std::time::Instant::now();
    let runner = runner.run(rules);
    let stop = match &runner.stop_reason {
        Some(StopReason::Saturated) => "saturated".to_string(),
        Some(StopReason::IterationLimit(_)) => "iteration limit".to_string(),
        Some(StopReason::NodeLimit(_)) => "node limit".to_string(),
        Some(StopReason::TimeLimit(_)) => "time limit".to_string(),
        Some(StopReason::Other(s)) => s.clone(),
        None => "unknown".to_string(),
    };
    let report = RunReport {
        purpose: purpose.to_string(),
        iterations: runner.iterations.len(),
        nodes: runner.egraph.total_number_of_nodes(),
        classes: runner.egraph.number_of_classes(),
        stop,
        millis: start.elapsed().as_secs_f64() * 1e3,
    };
    let roots = runner.roots.iter().map(|r| runner.egraph.find(*r)).collect();
    (runner.egraph, roots, report)
}

/// Cost = operation count weighted by latency, plus `risk` times a numerical-risk score
/// (overflow-prone exponentials, cancellation-prone subtraction, logs of sums). `risk = 0`
/// is the cheapest form; larger values prefer the stable primitives.
pub struct OpCost<'g> {
    pub risk: f64,
    /// The graph, when known: a product of two unbounded factors adds overflow risk.
    pub graph: Option<&'g Graph>,
}

impl OpCost<'_> {
    pub fn latency(node: &Math) -> f64 {
        match node {
            Math::Num(_) | Math::Sym(_) => 0.0,
            Math::Neg(_) => 0.5,
            Math::Add(_) | Math::Sub(_) | Math::Mul(_) | Math::Abs(_) | Math::Sign(_) => 1.0,
            Math::Div(_) | Math::Sqrt(_) => 4.0,
            Math::Cbrt(_) => 12.0,
            Math::Exp(_) | Math::Expm1(_) | Math::Log(_) | Math::Log1p(_) => 10.0,
            Math::Sigmoid(_) | Math::Softplus(_) | Math::Logit(_) | Math::LogCosh(_) => 14.0,
            Math::Sin(_) | Math::Cos(_) | Math::Tan(_) | Math::Atan(_) => 16.0,
            Math::Sinh(_) | Math::Cosh(_) | Math::Tanh(_) | Math::Asinh(_) | Math::Acosh(_) | Math::Atanh(_) => 16.0,
            Math::Pow(_) => 24.0,
            Math::Hypot(_) => 8.0,
            Math::PowRecip(_) => 30.0,
            Math::IfPos(_) => 2.0,
            Math::Solve(_) => f64::INFINITY,
        }
    }
    pub fn risk_of(node: &Math) -> f64 {
        match node {
            Math::Exp(_) | Math::Cosh(_) | Math::Sinh(_) | Math::Pow(_) => 8.0,
            Math::Log(_) => 4.0,
            Math::Sub(_) => 3.0,
            Math::Div(_) | Math::Mul(_) => 0.5,
            Math::Tan(_) => 2.0,
            _ => 0.0,
        }
    }
}

impl CostFunction<Math> for OpCost<'_> {
    type Cost = f64;
    fn cost<C>(&mut self, enode: &Math, mut costs: C) -> f64
    where
        C: FnMut(Id) -> f64,
    {
        let mut risk = Self::risk_of(enode);
        if let (Some(g), Math::Mul([a, b])) = (self.graph, enode) {
            let unbounded = |i: &Id| {
                let r = g[*i].data.range;
                r.lo.is_infinite() || r.hi.is_infinite()
            };
            if unbounded(a) && unbounded(b) {
                risk += 8.0;
            }
        }
        let own = Self::latency(enode) + self.risk * risk;
        enode.fold(own, |acc, id| acc + costs(id))
    }
}

/// The best expression of class `id` under cost `risk`, or `None` if it still contains `solve`.
pub fn extract(g: &Graph, id: Id, risk: f64) -> Option<(f64, Expr)> {
    let ex = Extractor::new(g, OpCost { risk, graph: Some(g) });
    let (cost, e) = ex.find_best(id);
    if cost.is_finite() && !e.as_ref().iter().any(|n| matches!(n, Math::Solve(_))) {
        Some((cost, e))
    } else {
        None
    }
}

/// Most candidates measured per formula.
pub const MAX_CANDIDATES: usize = 160;

/// Candidate forms of class `id`: the best under several cost models, then every
/// one-node variation of those (one e-class of the best tree takes another of its
/// e-nodes, everything else stays best), deduplicated and capped at [`MAX_CANDIDATES`].
pub fn candidates(g: &Graph, id: Id) -> Vec<Expr> {
    let mut out: Vec<Expr> = Vec::new();
    let push = |e: Expr, out: &mut Vec<Expr>| {
        if out.len() < MAX_CANDIDATES && !e.as_ref().iter().any(|n| matches!(n, Math::Solve(_))) && !out.iter().any(|o| o == &e) {
            out.push(e);
        }
    };
    let risks = [0.0, 0.5, 2.0, 8.0, 32.0];
    for risk in risks {
        if let Some((_, e)) = extract(g, id, risk) {
            push(e, &mut out);
        }
    }
    if out.is_empty() {
        return out;
    }
    for risk in [0.0, 8.0] {
        let ex = Extractor::new(g, OpCost { risk, graph: Some(g) });
        // classes of the best tree, top-down
        let mut classes: Vec<Id> = Vec::new();
        let mut stack = vec![g.find(id)];
        while let Some(c) = stack.pop() {
            if classes.contains(&c) || classes.len() > 64 {
                continue;
            }
            classes.push(c);
            for ch in ex.find_best_node(c).children() {
                stack.push(g.find(*ch));
            }
        }
        for &c in &classes {
            for node in &g[c].nodes {
                let mut b = crate::ir::expr::Builder::new();
                if let Some(root) = build_with(g, &ex, g.find(id), c, node, &mut b, 0) {
                    push(b.finish(root), &mut out);
                }
            }
        }
    }
    out
}

/// Builds the best tree of `class`, except that class `at` uses `node`.
fn build_with(
    g: &Graph,
    ex: &Extractor<OpCost<'_>, Math, super::analysis::Domains>,
    class: Id,
    at: Id,
    node: &Math,
    b: &mut crate::ir::expr::Builder,
    depth: usize,
) -> Option<Id> {
    if depth > 48 {
        return None;
    }
    let class = g.find(class);
    let n = if class == at { node.clone() } else { ex.find_best_node(class).clone() };
    if matches!(n, Math::Solve(_)) {
        return None;
    }
    let mut kids = Vec::new();
    for ch in n.children() {
        kids.push(build_with(g, ex, *ch, at, node, b, depth + 1)?);
    }
    let mut i = 0;
    let n = n.map_children(|_| {
        i += 1;
        kids[i - 1]
    });
    Some(b.add(n))
}
