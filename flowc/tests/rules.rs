//! Every rewrite rule, twice: by name (its left side, instantiated, rewrites to its right
//! side under some domain facts) and numerically (left and right sides agree in high
//! precision at sampled points where the rule's guard holds).

use egg::{ENodeOrVar, Id, Language, PatternAst, RecExpr, Runner, Symbol};
use flowc::derive::analysis::Domains;
use flowc::derive::rules::{self, Rule};
use flowc::ir::{hp, Expr, Interval, Math};

const VARS: [&str; 5] = ["a", "b", "c", "d", "g"];

/// Instantiates a pattern: variable i becomes the symbol `VARS[i]`, or a number from `consts`.
fn instantiate(p: &PatternAst<Math>, vars: &[egg::Var], consts: Option<&[f64]>) -> Expr {
    instantiate_with(p, vars, consts, None)
}

/// As [`instantiate`], with variable `fixed.0` (among the non-`y` variables) set to the number `fixed.1`.
fn instantiate_with(p: &PatternAst<Math>, vars: &[egg::Var], consts: Option<&[f64]>, fixed: Option<(usize, f64)>) -> Expr {
    let mut e = RecExpr::default();
    let mut ids: Vec<Id> = Vec::new();
    for n in p.as_ref() {
        let id = match n {
            ENodeOrVar::Var(v) => {
                let i = vars.iter().filter(|w| w.to_string() != "?y").position(|w| w == v).unwrap_or(0);
                let name = if v.to_string() == "?y" { "y" } else { VARS[i] };
                match consts {
                    _ if fixed.map(|f| f.0 == i).unwrap_or(false) && v.to_string() != "?y" => {
                        e.add(Math::Num(flowc::ir::Const::new(fixed.unwrap().1).unwrap()))
                    }
                    Some(c) if v.to_string() != "?y" => e.add(Math::Num(flowc::ir::Const::new(c[i]).unwrap())),
                    _ => e.add(Math::Sym(Symbol::from(name))),
                }
            }
            ENodeOrVar::ENode(node) => e.add(node.clone().map_children(|c| ids[usize::from(c)])),
        };
        ids.push(id);
    }
    e
}

fn sides(r: &Rule) -> (&PatternAst<Math>, &PatternAst<Math>) {
    (r.searcher.get_pattern_ast().expect("pattern lhs"), r.applier.get_pattern_ast().expect("pattern rhs"))
}

fn vars_of(lhs: &PatternAst<Math>) -> Vec<egg::Var> {
    let mut v = Vec::new();
    for n in lhs.as_ref() {
        if let ENodeOrVar::Var(x) = n {
            if !v.contains(x) {
                v.push(*x);
            }
        }
    }
    v
}

/// Runs one rule once on `lhs`; true when `rhs` ends up equal to it.
fn fires(rule: &Rule, domains: Domains, lhs: &Expr, rhs: &Expr) -> bool {
    let mut runner = Runner::<Math, Domains>::new(domains).with_iter_limit(1).with_expr(lhs).with_expr(rhs);
    runner = runner.run(std::slice::from_ref(rule));
    let (a, b) = (runner.roots[0], runner.roots[1]);
    runner.egraph.find(a) == runner.egraph.find(b)
}

const SETTINGS: &[Interval] = &[
    Interval::POSITIVE,
    Interval::UNIT,
    Interval { lo: f64::NEG_INFINITY, hi: 0.0, lo_open: true, hi_open: true },
    Interval { lo: -1.0, hi: 1.0, lo_open: true, hi_open: true },
    Interval::REAL,
];

fn domains_all(i: Interval) -> Domains {
    let mut d = Domains::default().with("x", Interval::REAL).with("y", Interval::REAL);
    for v in VARS {
        d = d.with(v, i);
    }
    d
}

#[test]
fn rule_names_are_unique_kebab_case() {
    let all = rules::all_rules();
    let mut names: Vec<String> = all.iter().map(|r| r.name.to_string()).collect();
    for n in &names {
        assert!(n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'), "{n}");
    }
    names.sort();
    let before = names.len();
    names.dedup();
    assert_eq!(before, names.len(), "duplicate rule names");
}

#[test]
fn every_rule_fires_by_name() {
    for rule in rules::all_rules() {
        let (l, r) = sides(&rule);
        let vars = vars_of(l);
        let lhs = instantiate(l, &vars, None);
        let rhs = instantiate(r, &vars, None);
        let mut ok = SETTINGS.iter().any(|s| fires(&rule, domains_all(*s), &lhs, &rhs));
        if !ok {
            // guards on constants (e.g. an odd integer exponent)
            let c = [3.0; 5];
            let (lc, rc) = (instantiate(l, &vars, Some(&c)), instantiate(r, &vars, Some(&c)));
            ok = SETTINGS.iter().any(|s| fires(&rule, domains_all(*s), &lc, &rc));
        }
        assert!(ok, "rule `{}` never rewrote {} to {}", rule.name, lhs, rhs);
    }
}

const VALUES: [f64; 8] = [-2.75, -0.8, -0.3, 0.2, 0.45, 0.9, 1.7, 4.25];

/// Every assignment of sample values to `n` variables (bounded).
fn assignments(n: usize) -> Vec<Vec<f64>> {
    let mut out = vec![vec![]];
    for k in 0..n {
        let vals: Vec<f64> = if k < 2 { VALUES.to_vec() } else { vec![VALUES[1], VALUES[4], VALUES[6]] };
        out = out.into_iter().flat_map(|a| vals.iter().map(move |v| [a.clone(), vec![*v]].concat())).collect();
    }
    out
}

fn point_domains(vals: &[f64]) -> Domains {
    let mut d = Domains::default().with("x", Interval::REAL).with("y", Interval::REAL);
    for (i, v) in vals.iter().enumerate() {
        d = d.with(VARS[i], Interval::point(*v));
    }
    d
}

fn env<'a>(vals: &'a [f64], y: f64) -> impl Fn(Symbol) -> f64 + 'a {
    move |s: Symbol| match s.as_str() {
        "y" => y,
        "x" => 0.6180339887498949,
        n => VARS.iter().position(|v| *v == n).map(|i| vals[i]).unwrap_or(f64::NAN),
    }
}

fn close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-13 * a.abs().max(b.abs()).max(1e-300)
}

#[test]
fn every_rule_holds_numerically() {
    let solve: Vec<String> = rules::solve().iter().map(|r| r.name.to_string()).collect();
    for rule in rules::all_rules() {
        let name = rule.name.to_string();
        let (l, r) = sides(&rule);
        let vars = vars_of(l);
        let nvars = vars.iter().filter(|v| v.to_string() != "?y").count();
        let mut checked = 0;
        // first with symbols only, then with the last variable a small odd integer
        for fixed in [None, Some((nvars.saturating_sub(1), 3.0))] {
            if checked > 0 {
                break;
            }
            let lhs = instantiate_with(l, &vars, None, fixed);
            let rhs = instantiate_with(r, &vars, None, fixed);
            for vals in assignments(nvars) {
                if !fires(&rule, point_domains(&vals), &lhs, &rhs) {
                    continue;
                }
                if solve.contains(&name) {
                    // (solve y F[a]) => (solve G[y] a) or => y: G(F(a)) = a, checked through the
                    // first argument of each side
                    let (Math::Solve([ly, lf]), rhs_root) = (&lhs[flowc::ir::expr::root(&lhs)], &rhs[flowc::ir::expr::root(&rhs)]) else {
                        panic!("{name}")
                    };
                    let _ = ly;
                    let fexpr: Expr = subtree(&lhs, *lf);
                    let Some(yv) = hp::eval_with(&fexpr, &env(&vals, 0.0)) else { continue };
                    if !yv.is_finite() {
                        continue;
                    }
                    let (g, target) = match rhs_root {
                        Math::Solve([gy, ga]) => (subtree(&rhs, *gy), subtree(&rhs, *ga)),
                        _ => (rhs.clone(), subtree(&lhs, *lf)),
                    };
                    let (Some(gv), Some(tv)) = (hp::eval_with(&g, &env(&vals, yv)), hp::eval_with(&target, &env(&vals, 0.0))) else {
                        continue;
                    };
                    if !gv.is_finite() || !tv.is_finite() {
                        continue;
                    }
                    if matches!(rhs_root, Math::Solve(_)) {
                        // y' = G(y) must satisfy target(a) = y'
                        assert!(close(gv, tv), "{name} at {vals:?}: {gv} vs {tv}");
                    }
                    checked += 1;
                } else {
                    let (Some(a), Some(b)) = (hp::eval_with(&lhs, &env(&vals, 0.0)), hp::eval_with(&rhs, &env(&vals, 0.0))) else {
                        continue;
                    };
                    if !a.is_finite() || !b.is_finite() {
                        continue;
                    }
                    assert!(close(a, b), "rule `{name}` at {vals:?}: lhs {a} != rhs {b}");
                    checked += 1;
                }
            }
        }
        assert!(checked > 0 || name == "solve-x", "rule `{name}` was never checked numerically");
    }
}

fn subtree(e: &Expr, id: Id) -> Expr {
    let mut b = flowc::ir::Builder::new();
    let r = b.import(e, id);
    b.finish(r)
}
