//! The e-graph analysis: per e-class constant value, dependence on `x`, and a range
//! (interval) — the sound domain facts that guard rewrites.

use crate::ir::interval::Interval;
use crate::ir::op::{Const, Math};
use crate::ir::{eval, X};
use egg::{Analysis, DidMerge, EGraph, Id, Language, Symbol};
use std::collections::HashMap;

/// What is known about an e-class.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    /// Its value, when it is a constant.
    pub constant: Option<f64>,
    /// Whether it depends on the input `x` (false as soon as one member does not).
    pub has_x: bool,
    /// A range containing its values (the meet of its members' ranges).
    pub range: Interval,
    /// How often the range was narrowed by a merge; narrowing stops after
    /// [`MAX_REFINEMENTS`] so that ranges over cyclic e-graphs cannot narrow forever.
    pub refinements: u8,
}

/// See [`Facts::refinements`].
pub const MAX_REFINEMENTS: u8 = 6;

/// Ranges of the symbols (input, output, parameters).
#[derive(Debug, Clone, Default)]
pub struct Domains {
    pub symbols: HashMap<Symbol, Interval>,
}

impl Domains {
    pub fn with(mut self, name: &str, i: Interval) -> Self {
        self.symbols.insert(Symbol::from(name), i);
        self
    }
}

pub type Graph = EGraph<Math, Domains>;

impl Analysis<Math> for Domains {
    type Data = Facts;

    fn make(egraph: &mut Graph, enode: &Math, _id: Id) -> Facts {
        let d = |i: &Id| &egraph[*i].data;
        let x = Symbol::from(X);
        match enode {
            Math::Num(c) => Facts { constant: Some(c.get()), has_x: false, range: Interval::point(c.get()), refinements: 0 },
            Math::Sym(s) => {
                let constant = match s.as_str() {
                    "pi" => Some(std::f64::consts::PI),
                    "e" => Some(std::f64::consts::E),
                    _ => None,
                };
                let range =
                    constant.map(Interval::point).unwrap_or_else(|| egraph.analysis.symbols.get(s).copied().unwrap_or(Interval::REAL));
                Facts { constant: None, has_x: *s == x, range, refinements: 0 }
            }
            // the solution of f(x) = y lies in the domain of x and does not depend on x
            Math::Solve(_) => Facts {
                constant: None,
                has_x: false,
                range: egraph.analysis.symbols.get(&x).copied().unwrap_or(Interval::REAL),
                refinements: 0,
            },
            _ => {
                let ch = enode.children();
                let ranges: Vec<Interval> = ch.iter().map(|c| d(c).range).collect();
                let has_x = ch.iter().any(|c| d(c).has_x);
                let consts: Option<Vec<f64>> = ch.iter().map(|c| d(c).constant).collect();
                let constant = consts.and_then(|v| {
                    let r = eval::apply(enode, &v);
                    // fold only values that are exact enough to stand for the expression
                    (r.is_finite() && folds_exactly(enode, &v, r)).then_some(r)
                });
                let range = match constant {
                    Some(c) => Interval::point(c),
                    None => Interval::apply(enode, &ranges),
                };
                Facts { constant, has_x, range, refinements: 0 }
            }
        }
    }

    fn merge(&mut self, a: &mut Facts, b: Facts) -> DidMerge {
        let before = a.clone();
        if a.constant.is_none() {
            a.constant = b.constant;
        }
        a.has_x = a.has_x && b.has_x;
        if let Some(c) = a.constant {
            a.range = Interval::point(c);
        } else if a.refinements < MAX_REFINEMENTS {
            let m = a.range.meet(&b.range);
            if m != a.range {
                a.range = m;
                a.refinements += 1;
            }
        }
        DidMerge(*a != before, true)
    }

    fn modify(egraph: &mut Graph, id: Id) {
        if let Some(c) = egraph[id].data.constant {
            if let Some(c) = Const::new(c) {
                let n = egraph.add(Math::Num(c));
                egraph.union(id, n);
            }
        }
        // `solve(t, f)`: on the inverse's domain t is a value of f, so t lies in f's range
        let goals: Vec<(Id, Id)> =
            egraph[id].nodes.iter().filter_map(|n| if let Math::Solve([t, f]) = n { Some((*t, *f)) } else { None }).collect();
        for (t, f) in goals {
            let (t, f) = (egraph.find(t), egraph.find(f));
            let fr = egraph[f].data.range;
            let data = &mut egraph[t].data;
            if data.constant.is_none() && data.refinements < MAX_REFINEMENTS {
                let m = data.range.meet(&fr);
                if m != data.range {
                    data.range = m;
                    data.refinements += 1;
                }
            }
        }
    }
}

/// Constant folding is limited to results that are exact in f64 or rounded once from
/// exact arithmetic (so the folded constant is within half an ulp of the true value).
fn folds_exactly(node: &Math, args: &[f64], r: f64) -> bool {
    match node {
        Math::Add(_) | Math::Sub(_) | Math::Mul(_) | Math::Div(_) | Math::Neg(_) | Math::Sqrt(_) | Math::Abs(_) | Math::Sign(_) => true,
        Math::Pow(_) => args[1].fract() == 0.0 && args[1].abs() <= 64.0 && r != 0.0,
        // transcendental values are kept symbolic unless the result is exact
        _ => matches!(r, 0.0 | 1.0 | -1.0) && args.iter().all(|a| *a == 0.0 || *a == 1.0),
    }
}
