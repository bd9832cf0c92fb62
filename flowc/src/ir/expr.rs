//! The expression graph: a hash-consed `RecExpr<Math>` with a builder, and its text forms.

use super::op::{Const, Math};
use egg::{Id, Language, RecExpr, Symbol};
use std::collections::HashMap;

/// A scalar formula; nodes are in topological order and the root is the last node.
pub type Expr = RecExpr<Math>;

/// Builds an [`Expr`] with structural sharing: an identical node is added once.
#[derive(Default)]
pub struct Builder {
    pub expr: Expr,
    memo: HashMap<Math, Id>,
}

impl Builder {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn add(&mut self, node: Math) -> Id {
        if let Some(&id) = self.memo.get(&node) {
            return id;
        }
        let id = self.expr.add(node.clone());
        self.memo.insert(node, id);
        id
    }
    pub fn num(&mut self, v: f64) -> Id {
        let c = Const::new(v).expect("finite constant");
        self.add(Math::Num(c))
    }
    pub fn sym(&mut self, s: &str) -> Id {
        self.add(Math::Sym(Symbol::from(s)))
    }
    /// Copies the subtree of `src` rooted at `root` into this builder.
    pub fn import(&mut self, src: &Expr, root: Id) -> Id {
        let node = src[root].clone();
        let node = node.map_children(|c| self.import(src, c));
        self.add(node)
    }
    /// Copies `src` (whole) replacing symbol `from` by the subtree `to`.
    pub fn substitute(&mut self, src: &Expr, root: Id, from: Symbol, to: Id) -> Id {
        match &src[root] {
            Math::Sym(s) if *s == from => to,
            node => {
                let node = node.clone().map_children(|c| self.substitute(src, c, from, to));
                self.add(node)
            }
        }
    }
    /// Finishes with `root` as the root (nodes not reachable from it are dropped).
    pub fn finish(self, root: Id) -> Expr {
        let mut b = Builder::new();
        b.import(&self.expr, root);
        b.expr
    }
}

/// The root id of an expression.
pub fn root(e: &Expr) -> Id {
    Id::from(e.as_ref().len() - 1)
}

/// Whether symbol `s` occurs in `e`.
pub fn mentions(e: &Expr, s: Symbol) -> bool {
    e.as_ref().iter().any(|n| matches!(n, Math::Sym(t) if *t == s))
}

/// Number of operations (non-leaf nodes) reachable from the root, counting shared nodes once.
pub fn op_count(e: &Expr) -> usize {
    e.as_ref().iter().filter(|n| !n.is_leaf()).count()
}

/// Replaces symbols by constants and returns a new expression.
pub fn bind(e: &Expr, values: &[(Symbol, f64)]) -> Expr {
    let mut b = Builder::new();
    let mut ids: Vec<Id> = Vec::with_capacity(e.as_ref().len());
    for node in e.as_ref() {
        let id = match node {
            Math::Sym(s) => match values.iter().find(|(n, _)| n == s) {
                Some((_, v)) => b.num(*v),
                None => b.add(node.clone()),
            },
            _ => {
                let n = node.clone().map_children(|c| ids[usize::from(c)]);
                b.add(n)
            }
        };
        ids.push(id);
    }
    let r = *ids.last().unwrap();
    b.finish(r)
}

fn prec(n: &Math) -> u8 {
    match n {
        Math::Add(_) | Math::Sub(_) => 1,
        Math::Mul(_) | Math::Div(_) => 2,
        Math::Neg(_) => 3,
        Math::Num(c) if c.get() < 0.0 => 3,
        _ => 4,
    }
}

/// Infix text, e.g. `sinh(delta * asinh(x) - eps)`.
pub fn to_infix(e: &Expr) -> String {
    infix(e, root(e))
}

/// Infix text of the subtree at `id`.
pub fn infix(e: &Expr, id: Id) -> String {
    let n = &e[id];
    let wrap = |child: Id, min: u8| {
        let s = infix(e, child);
        if prec(&e[child]) < min {
            format!("({s})")
        } else {
            s
        }
    };
    match n {
        Math::Num(c) => c.to_string(),
        Math::Sym(s) => s.to_string(),
        Math::Add([a, b]) => format!("{} + {}", wrap(*a, 1), wrap(*b, 2)),
        Math::Sub([a, b]) => format!("{} - {}", wrap(*a, 1), wrap(*b, 2)),
        Math::Mul([a, b]) => format!("{} * {}", wrap(*a, 2), wrap(*b, 3)),
        Math::Div([a, b]) => format!("{} / {}", wrap(*a, 2), wrap(*b, 3)),
        Math::Neg(a) => format!("-{}", wrap(*a, 3)),
        other => {
            let args: Vec<String> = other.children().iter().map(|c| infix(e, *c)).collect();
            format!("{}({})", other, args.join(", "))
        }
    }
}

/// LaTeX text of the whole expression.
pub fn to_latex(e: &Expr) -> String {
    latex(e, root(e))
}

fn latex_sym(s: &str) -> String {
    const GREEK: &[&str] = &[
        "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "kappa", "lambda", "mu", "nu", "xi", "rho", "sigma", "tau",
        "phi", "chi", "psi", "omega",
    ];
    if s == "eps" {
        return "\\varepsilon".into();
    }
    if GREEK.contains(&s) {
        return format!("\\{s}");
    }
    if s.chars().count() == 1 {
        return s.to_string();
    }
    format!("\\mathrm{{{}}}", s.replace('_', "\\_"))
}

fn latex(e: &Expr, id: Id) -> String {
    let n = &e[id];
    let wrap = |child: Id, min: u8| {
        let s = latex(e, child);
        if prec(&e[child]) < min {
            format!("\\left({s}\\right)")
        } else {
            s
        }
    };
    let f = |name: &str, a: Id| format!("\\{name}\\left({}\\right)", latex(e, a));
    let op = |name: &str, a: Id| format!("\\operatorname{{{name}}}\\left({}\\right)", latex(e, a));
    match n {
        Math::Num(c) => c.to_string(),
        Math::Sym(s) => latex_sym(s.as_str()),
        Math::Add([a, b]) => format!("{} + {}", wrap(*a, 1), wrap(*b, 2)),
        Math::Sub([a, b]) => format!("{} - {}", wrap(*a, 1), wrap(*b, 2)),
        Math::Mul([a, b]) => format!("{} \\cdot {}", wrap(*a, 2), wrap(*b, 3)),
        Math::Div([a, b]) => format!("\\frac{{{}}}{{{}}}", latex(e, *a), latex(e, *b)),
        Math::Neg(a) => format!("-{}", wrap(*a, 3)),
        Math::Pow([a, b]) => format!("{{{}}}^{{{}}}", wrap(*a, 4), latex(e, *b)),
        Math::Sqrt(a) => format!("\\sqrt{{{}}}", latex(e, *a)),
        Math::Cbrt(a) => format!("\\sqrt[3]{{{}}}", latex(e, *a)),
        Math::Exp(a) => f("exp", *a),
        Math::Log(a) => f("log", *a),
        Math::Sin(a) => f("sin", *a),
        Math::Cos(a) => f("cos", *a),
        Math::Tan(a) => f("tan", *a),
        Math::Atan(a) => f("arctan", *a),
        Math::Sinh(a) => f("sinh", *a),
        Math::Cosh(a) => f("cosh", *a),
        Math::Tanh(a) => f("tanh", *a),
        Math::Abs(a) => format!("\\left|{}\\right|", latex(e, *a)),
        other => {
            let args: Vec<String> = other.children().iter().map(|c| latex(e, *c)).collect();
            if args.len() == 1 {
                op(&other.to_string(), other.children()[0])
            } else {
                format!("\\operatorname{{{}}}\\left({}\\right)", other, args.join(", "))
            }
        }
    }
}
