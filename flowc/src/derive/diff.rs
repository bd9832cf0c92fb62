//! Symbolic differentiation: one rule per op, keyed by the op (a missing rule is an
//! error that names it).
//!
//! ```
//! use flowc::ir::{expr, parse_expr};
//! let f = parse_expr("(sinh x)");
//! let d = flowc::derive::diff::diff(&f, "x").unwrap();
//! assert_eq!(expr::to_infix(&d), "cosh(x)");
//! ```

use crate::ir::expr::{Builder, Expr};
use crate::ir::op::Math;
use egg::{Id, Language, Symbol};

/// Builds derivative terms, folding the trivial cases (`0 * a`, `1 * a`, `a + 0`) as it goes.
pub struct Terms<'a> {
    pub b: &'a mut Builder,
}

impl Terms<'_> {
    pub fn is_zero(&self, id: Id) -> bool {
        self.is(id, 0.0)
    }
    fn is(&self, id: Id, v: f64) -> bool {
        matches!(&self.b.expr[id], Math::Num(c) if c.get() == v)
    }
    pub fn num(&mut self, v: f64) -> Id {
        self.b.num(v)
    }
    pub fn add(&mut self, a: Id, c: Id) -> Id {
        if self.is(a, 0.0) {
            c
        } else if self.is(c, 0.0) {
            a
        } else {
            self.b.add(Math::Add([a, c]))
        }
    }
    pub fn sub(&mut self, a: Id, c: Id) -> Id {
        if self.is(c, 0.0) {
            a
        } else if self.is(a, 0.0) {
            self.neg(c)
        } else {
            self.b.add(Math::Sub([a, c]))
        }
    }
    pub fn mul(&mut self, a: Id, c: Id) -> Id {
        if self.is(a, 0.0) || self.is(c, 0.0) {
            self.num(0.0)
        } else if self.is(a, 1.0) {
            c
        } else if self.is(c, 1.0) {
            a
        } else {
            self.b.add(Math::Mul([a, c]))
        }
    }
    pub fn div(&mut self, a: Id, c: Id) -> Id {
        if self.is(a, 0.0) {
            self.num(0.0)
        } else if self.is(c, 1.0) {
            a
        } else {
            self.b.add(Math::Div([a, c]))
        }
    }
    pub fn neg(&mut self, a: Id) -> Id {
        if self.is(a, 0.0) {
            a
        } else {
            self.b.add(Math::Neg(a))
        }
    }
    pub fn op(&mut self, n: Math) -> Id {
        self.b.add(n)
    }
}

/// The derivative rule of each op: given the node (with children already imported into
/// the builder as `a`, `b`), the children's derivatives `da`, `db`, and the node itself
/// `f`, returns d(node). `Err` names an op without a rule.
fn rule(t: &mut Terms, node: &Math, f: Id, args: &[Id], ds: &[Id]) -> Result<Id, String> {
    let (a, b) = (args.first().copied().unwrap_or(f), args.get(1).copied().unwrap_or(f));
    let (da, db) = (ds.first().copied().unwrap_or(f), ds.get(1).copied().unwrap_or(f));
    Ok(match node {
        Math::Add(_) => t.add(da, db),
        Math::Sub(_) => t.sub(da, db),
        // ;; d(a b) = a' b + a b'
        Math::Mul(_) => {
            let l = t.mul(da, b);
            let r = t.mul(a, db);
            t.add(l, r)
        }
        // ;; d(a / b) = (a' - f b') / b
        Math::Div(_) => {
            let fb = t.mul(f, db);
            let n = t.sub(da, fb);
            t.div(n, b)
        }
        Math::Neg(_) => t.neg(da),
        // ;; d(a^b) = b a^(b-1) a' + a^b log(a) b'
        Math::Pow(_) => {
            let one = t.num(1.0);
            let bm1 = t.sub(b, one);
            let p = t.op(Math::Pow([a, bm1]));
            let l0 = t.mul(b, p);
            let l = t.mul(l0, da);
            let r = if t.is(db, 0.0) {
                t.num(0.0)
            } else {
                let la = t.op(Math::Log(a));
                let r0 = t.mul(f, la);
                t.mul(r0, db)
            };
            t.add(l, r)
        }
        // ;; d sqrt(a) = a' / (2 sqrt a)
        Math::Sqrt(_) => {
            let two = t.num(2.0);
            let d = t.mul(two, f);
            t.div(da, d)
        }
        // ;; d cbrt(a) = a' / (3 cbrt(a)^2)
        Math::Cbrt(_) => {
            let three = t.num(3.0);
            let sq = t.mul(f, f);
            let d = t.mul(three, sq);
            t.div(da, d)
        }
        Math::Exp(_) => t.mul(f, da),
        // ;; d expm1(a) = exp(a) a'
        Math::Expm1(_) => {
            let e = t.op(Math::Exp(a));
            t.mul(e, da)
        }
        Math::Log(_) => t.div(da, a),
        Math::Log1p(_) => {
            let one = t.num(1.0);
            let d = t.add(one, a);
            t.div(da, d)
        }
        Math::Sin(_) => {
            let c = t.op(Math::Cos(a));
            t.mul(c, da)
        }
        Math::Cos(_) => {
            let s = t.op(Math::Sin(a));
            let m = t.mul(s, da);
            t.neg(m)
        }
        // ;; d tan(a) = a' / cos(a)^2
        Math::Tan(_) => {
            let c = t.op(Math::Cos(a));
            let c2 = t.mul(c, c);
            t.div(da, c2)
        }
        // ;; d atan(a) = a' / (1 + a^2)
        Math::Atan(_) => {
            let one = t.num(1.0);
            let a2 = t.mul(a, a);
            let d = t.add(one, a2);
            t.div(da, d)
        }
        Math::Sinh(_) => {
            let c = t.op(Math::Cosh(a));
            t.mul(c, da)
        }
        Math::Cosh(_) => {
            let s = t.op(Math::Sinh(a));
            t.mul(s, da)
        }
        // ;; d tanh(a) = (1 - tanh(a)^2) a'
        Math::Tanh(_) => {
            let one = t.num(1.0);
            let f2 = t.mul(f, f);
            let s = t.sub(one, f2);
            t.mul(s, da)
        }
        // ;; d asinh(a) = a' / sqrt(1 + a^2)
        Math::Asinh(_) => {
            let one = t.num(1.0);
            let a2 = t.mul(a, a);
            let s = t.add(one, a2);
            let r = t.op(Math::Sqrt(s));
            t.div(da, r)
        }
        // ;; d acosh(a) = a' / sqrt(a^2 - 1)
        Math::Acosh(_) => {
            let one = t.num(1.0);
            let a2 = t.mul(a, a);
            let s = t.sub(a2, one);
            let r = t.op(Math::Sqrt(s));
            t.div(da, r)
        }
        // ;; d atanh(a) = a' / (1 - a^2)
        Math::Atanh(_) => {
            let one = t.num(1.0);
            let a2 = t.mul(a, a);
            let s = t.sub(one, a2);
            t.div(da, s)
        }
        // ;; d sigmoid(a) = sigmoid(a) (1 - sigmoid(a)) a'
        Math::Sigmoid(_) => {
            let one = t.num(1.0);
            let c = t.sub(one, f);
            let s = t.mul(f, c);
            t.mul(s, da)
        }
        // ;; d logit(a) = a' / (a (1 - a))
        Math::Logit(_) => {
            let one = t.num(1.0);
            let c = t.sub(one, a);
            let d = t.mul(a, c);
            t.div(da, d)
        }
        // ;; d softplus(a) = sigmoid(a) a'
        Math::Softplus(_) => {
            let s = t.op(Math::Sigmoid(a));
            t.mul(s, da)
        }
        // ;; d |a| = sign(a) a'
        Math::Abs(_) => {
            let s = t.op(Math::Sign(a));
            t.mul(s, da)
        }
        // ;; d sign(a) = 0 away from 0
        Math::Sign(_) => t.num(0.0),
        // ;; d logcosh(a) = tanh(a) a'
        Math::LogCosh(_) => {
            let s = t.op(Math::Tanh(a));
            t.mul(s, da)
        }
        // ;; d hypot(a, b) = (a a' + b b') / hypot(a, b)
        Math::Hypot(_) => {
            let l = t.mul(a, da);
            let r = t.mul(b, db);
            let n = t.add(l, r);
            t.div(n, f)
        }
        // ;; d ifpos(c, a, b) = ifpos(c, a', b') (away from c = 0)
        // ;; d a^(1/d) = f a' / (d a) - f log(a) d' / d^2
        Math::PowRecip(_) => {
            let da_ = t.mul(b, a);
            let l0 = t.div(f, da_);
            let l = t.mul(l0, da);
            let r = if t.is_zero(db) {
                t.num(0.0)
            } else {
                let la = t.op(Math::Log(a));
                let fl = t.mul(f, la);
                let d2 = t.mul(b, b);
                let q = t.div(fl, d2);
                let q = t.mul(q, db);
                t.neg(q)
            };
            t.add(l, r)
        }
        Math::IfPos(_) => t.op(Math::IfPos([args[0], ds[1], ds[2]])),
        Math::Num(_) => t.num(0.0),
        Math::Sym(_) => t.num(0.0),
        Math::Solve(_) => return Err(node.to_string()),
    })
}

/// d e / d var, as a new expression. `Err(op)` names an op that has no derivative rule.
pub fn diff(e: &Expr, var: &str) -> Result<Expr, String> {
    let mut b = Builder::new();
    let d = diff_into(&mut b, e, var)?;
    Ok(b.finish(d))
}

/// Differentiates `e` into builder `b` (which also receives `e`'s nodes); returns the root of d e.
pub fn diff_into(b: &mut Builder, e: &Expr, var: &str) -> Result<Id, String> {
    let var = Symbol::from(var);
    let nodes = e.as_ref();
    let mut ids: Vec<Id> = Vec::with_capacity(nodes.len());
    let mut ds: Vec<Id> = Vec::with_capacity(nodes.len());
    let mut has: Vec<bool> = Vec::with_capacity(nodes.len());
    for node in nodes {
        let ch = node.children();
        let h = match node {
            Math::Sym(s) => *s == var,
            _ => ch.iter().any(|c| has[usize::from(*c)]),
        };
        let mapped = node.clone().map_children(|c| ids[usize::from(c)]);
        let id = b.add(mapped.clone());
        let d = if !h {
            if let Math::Solve(_) = node {
                return Err(node.to_string());
            }
            b.num(0.0)
        } else if matches!(node, Math::Sym(_)) {
            b.num(1.0)
        } else {
            let args: Vec<Id> = ch.iter().map(|c| ids[usize::from(*c)]).collect();
            let dargs: Vec<Id> = ch.iter().map(|c| ds[usize::from(*c)]).collect();
            let mut t = Terms { b };
            rule(&mut t, &mapped, id, &args, &dargs)?
        };
        ids.push(id);
        ds.push(d);
        has.push(h);
    }
    Ok(*ds.last().unwrap())
}
