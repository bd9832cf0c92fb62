//! Stage 5b: a `log_prob` [`Kernel`] → its gradient kernel (reverse mode over the kernel
//! body). The gradient kernel computes the same log p(x) per row and adds Σ_rows ∂ log p/∂θ
//! to a gradient buffer of one entry per parameter: scalar parameters through
//! [`Inst::Accum`], dense weights through [`Inst::AccumDense`] (a matrix product over the
//! rows in the backends), and the adjoint of a dense layer's inputs through
//! [`Inst::DenseT`]. Partial derivatives of scalar ops come from the derivative rules of
//! `derive::diff`, emitted with sharing against the forward body (∂tanh reuses tanh's value).
//! A root-find x = f⁻¹(y; θ) is differentiated implicitly: ∂x/∂y = 1/f′(x) and
//! ∂x/∂θ = −(∂f/∂θ)/f′(x), with f and f′ at the root emitted inline. The built-in spline is
//! first written out in scalar ops (every bin's candidate, chosen by comparisons with the
//! knots), then differentiated like the rest.
//!
//! ```
//! let src = "bijector affine(x; shift: real, log_scale: real) = x * exp(log_scale) + shift;
//!            flow f(x: R^1) { base normal; elementwise(affine); }";
//! let (_, _, d) = flowc::cli::load_str("f.flow", src).unwrap();
//! let p = flowc::lower::lower(&d).unwrap();
//! let g = flowc::grad::gradient(p.kernel("f", flowc::lower::Kind::LogProb).unwrap()).unwrap();
//! // log p(x) = log N((x - t) e^(-s)) - s; at x = 1, t = 0, s = 0: ∂/∂t = x = 1, ∂/∂s = x² - 1 = 0
//! let mut grad = [0.0; 2];
//! flowc::lower::run_grad(&g, &[1.0], &[0.0, 0.0], &mut grad);
//! assert!((grad[0] - 1.0).abs() < 1e-15 && grad[1].abs() < 1e-15);
//! ```

use crate::derive::diff;
use crate::ir::expr::Expr;
use crate::ir::op::Math;
use crate::lower::{Emitter, Inst, Kernel, Kind, SubBody, Value};
use egg::{Id, Language, RecExpr, Symbol};
use std::collections::HashMap;

/// The gradient kernel of a `log_prob` kernel.
pub fn gradient(k: &Kernel) -> Result<Kernel, String> {
    if k.kind != Kind::LogProb {
        return Err(format!("gradients are taken of a log_prob kernel, not of `{}.{}`", k.flow, k.kind.name()));
    }
    let expanded;
    let k = if k.body.insts.iter().any(|i| matches!(i, Inst::Spline { .. })) {
        expanded = without_splines(k);
        &expanded
    } else {
        k
    };
    let n = k.body.insts.len();
    let active = active(&k.body.insts);
    let mut em = Emitter::from_body(k.body.clone());
    let mut adj: Vec<Vec<Value>> = vec![Vec::new(); n];
    // adjoints of a dense layer's outputs, by output
    let mut dense_adj: HashMap<Value, Vec<Vec<Value>>> = HashMap::new();
    let seed = em.push(Inst::Seed);
    let out = k.outputs[0];
    adj[out].push(seed);
    let mut rules = Rules::default();
    // parameter adjoints, emitted at the end: a dense layer's bias gradient (the sum of its
    // output adjoints) joins its weight-gradient product
    let mut accums: Vec<(usize, Value)> = Vec::new();
    let mut accum_denses: Vec<Value> = Vec::new();
    for i in (0..n).rev() {
        let inst = k.body.insts[i].clone();
        if let Inst::Dense { inputs, weight, outputs, mask, rows } = &inst {
            let Some(parts) = dense_adj.remove(&i) else { continue };
            let grads: Vec<Value> = (0..*outputs).map(|o| sum_or_zero(&mut em, &parts[o])).collect();
            let at = em.push(Inst::AccumDense {
                grads: grads.clone(),
                inputs: inputs.clone(),
                weight: *weight,
                mask: *mask,
                rows: *rows,
                bias: None,
            });
            accum_denses.push(at);
            if inputs.iter().any(|x| active[*x]) {
                let t = em.push(Inst::DenseT { grads, weight: *weight, inputs: inputs.len(), mask: *mask, rows: *rows });
                for (j, x) in inputs.iter().enumerate() {
                    if active[*x] {
                        let p = em.push(Inst::Part(t, j));
                        adj[*x].push(p);
                    }
                }
            }
            continue;
        }
        if !active[i] || adj[i].is_empty() {
            continue;
        }
        let a = sum(&mut em, &std::mem::take(&mut adj[i]));
        match inst {
            Inst::Param(j) => accums.push((j, a)),
            Inst::Op(m, args) => {
                let want: Vec<bool> = args.iter().map(|x| active[*x]).collect();
                for (x, c) in args.iter().zip(rules.adjoint(&mut em, &m, &args, i, a, &want)?) {
                    if let Some(c) = c {
                        adj[*x].push(c);
                    }
                }
            }
            Inst::Part(d, j) => {
                let outputs = match &k.body.insts[d] {
                    Inst::Dense { outputs, .. } => *outputs,
                    _ => return Err(format!("v{i} reads a part of v{d}, which is not a dense layer")),
                };
                dense_adj.entry(d).or_insert_with(|| vec![Vec::new(); outputs])[j].push(a);
            }
            Inst::RootFind { y, f, df, .. } => {
                let dfx = inline(&mut em, &df, i)?.1;
                let s = em.op(div(), vec![a, dfx]);
                if active[y] {
                    adj[y].push(s);
                }
                // ∂x/∂θ = −(∂f/∂θ)/f′(x): f at the root, differentiated with x held fixed
                let (vals, _) = inline(&mut em, &f, i)?;
                let minus = em.op(Math::Neg(Id::from(0usize)), vec![s]);
                let mut local: Vec<Vec<Value>> = vec![Vec::new(); f.insts.len()];
                local[f.result].push(minus);
                for (j, sub) in f.insts.iter().enumerate().rev() {
                    if local[j].is_empty() {
                        continue;
                    }
                    let la = sum(&mut em, &std::mem::take(&mut local[j]));
                    match sub {
                        Inst::Param(p) => {
                            em.push(Inst::Accum { param: *p, value: la });
                        }
                        Inst::Op(m, args) => {
                            let mapped: Vec<Value> = args.iter().map(|x| vals[*x]).collect();
                            let want = vec![true; args.len()];
                            for (x, c) in args.iter().zip(rules.adjoint(&mut em, m, &mapped, vals[j], la, &want)?) {
                                if let Some(c) = c {
                                    local[*x].push(c);
                                }
                            }
                        }
                        Inst::Input(_) | Inst::Const(_) => {}
                        other => return Err(format!("no gradient through {other:?} inside a root-find")),
                    }
                }
            }
            Inst::LogProd { terms, scale } => {
                // ∂/∂a of scale·p·ln a: scale·p/a
                for (v, p) in &terms {
                    if active[*v] {
                        let c = em.num(scale * *p as f64);
                        let t = em.op(Math::Mul([Id::from(0usize), Id::from(0usize)]), vec![a, c]);
                        let q = em.op(div(), vec![t, *v]);
                        adj[*v].push(q);
                    }
                }
            }
            Inst::Input(_) | Inst::Const(_) | Inst::Seed => {}
            other => return Err(format!("no gradient through {other:?}")),
        }
    }
    for at in accum_denses {
        let Inst::AccumDense { grads, rows, .. } = &em.body.insts[at] else { unreachable!("a weight gradient") };
        let (grads, rows) = (grads.clone(), *rows);
        // Accum(b + row(o), grads[o]) for every output o: one bias, at b
        let first = accums.iter().position(|(p, v)| *v == grads[0] && *p >= rows.row(0));
        let Some(first) = first else { continue };
        let b = accums[first].0 - rows.row(0);
        let pos: Option<Vec<usize>> =
            grads.iter().enumerate().map(|(o, g)| accums.iter().position(|(p, v)| *p == b + rows.row(o) && v == g)).collect();
        if let Some(mut pos) = pos {
            pos.sort_unstable();
            for p in pos.into_iter().rev() {
                accums.remove(p);
            }
            if let Inst::AccumDense { bias, .. } = &mut em.body.insts[at] {
                *bias = Some(b);
            }
        }
    }
    for (param, value) in accums {
        em.push(Inst::Accum { param, value });
    }
    Ok(Kernel {
        flow: k.flow.clone(),
        kind: Kind::Gradient,
        dim: k.dim,
        params: k.params.clone(),
        body: em.body,
        outputs: k.outputs.clone(),
    })
}

/// `k` with each built-in spline written out in scalar ops (so that it is differentiated
/// like any formula): every bin's candidate, its position clamped into the bin so that the
/// bins not taken stay finite, chosen by comparisons with the knots.
fn without_splines(k: &Kernel) -> Kernel {
    let mut em = Emitter::new();
    let mut map: Vec<Value> = Vec::with_capacity(k.body.insts.len());
    for inst in &k.body.insts {
        let v = match inst {
            Inst::Spline { x, raw, bins, bound, inverse, log_det } => {
                let raw: Vec<Value> = raw.iter().map(|r| map[*r]).collect();
                SplineOps { em: &mut em }.spline(map[*x], &raw, *bins, *bound, *inverse, *log_det)
            }
            other => em.push(crate::lower::remap_inst(other, &|v| map[v])),
        };
        map.push(v);
    }
    Kernel { body: em.body, outputs: k.outputs.iter().map(|o| map[*o]).collect(), ..k.clone() }
}

/// Emits the rational-quadratic spline of `runtime::spline` in scalar ops.
struct SplineOps<'a> {
    em: &'a mut Emitter,
}

impl SplineOps<'_> {
    fn c(&mut self, v: f64) -> Value {
        self.em.num(v)
    }
    fn bin(&mut self, m: fn([Id; 2]) -> Math, a: Value, b: Value) -> Value {
        let z = Id::from(0usize);
        self.em.op(m([z, z]), vec![a, b])
    }
    fn add(&mut self, a: Value, b: Value) -> Value {
        self.bin(Math::Add, a, b)
    }
    fn sub(&mut self, a: Value, b: Value) -> Value {
        self.bin(Math::Sub, a, b)
    }
    fn mul(&mut self, a: Value, b: Value) -> Value {
        self.bin(Math::Mul, a, b)
    }
    fn div(&mut self, a: Value, b: Value) -> Value {
        self.bin(Math::Div, a, b)
    }
    fn un(&mut self, m: fn(Id) -> Math, a: Value) -> Value {
        self.em.op(m(Id::from(0usize)), vec![a])
    }
    /// `then` where c > 0, else `otherwise`.
    fn ifpos(&mut self, c: Value, then: Value, otherwise: Value) -> Value {
        let z = Id::from(0usize);
        self.em.op(Math::IfPos([z, z, z]), vec![c, then, otherwise])
    }
    fn clamp(&mut self, v: Value, lo: Value, hi: Value) -> Value {
        let below = self.sub(lo, v);
        let v = self.ifpos(below, lo, v);
        let above = self.sub(v, hi);
        self.ifpos(above, hi, v)
    }

    /// The `bins + 1` knots from unconstrained sizes (softmax, each at least MIN_BIN).
    fn knots(&mut self, raw: &[Value], bins: usize, bound: f64) -> Vec<Value> {
        let mut m = raw[0];
        for r in &raw[1..bins] {
            let d = self.sub(*r, m);
            m = self.ifpos(d, *r, m);
        }
        let e: Vec<Value> = raw[..bins]
            .iter()
            .map(|r| {
                let d = self.sub(*r, m);
                self.un(Math::Exp, d)
            })
            .collect();
        let mut total = e[0];
        for v in &e[1..] {
            total = self.add(total, *v);
        }
        let min = self.c(runtime::spline::MIN_BIN);
        let scale = self.c(1.0 - runtime::spline::MIN_BIN * bins as f64);
        let two_b = self.c(2.0 * bound);
        let b = self.c(bound);
        let nb = self.c(-bound);
        let mut out = vec![nb];
        let mut cum = self.c(0.0);
        for (k, ek) in e.iter().enumerate() {
            let frac = self.div(*ek, total);
            let sz = self.mul(scale, frac);
            let sz = self.add(min, sz);
            cum = self.add(cum, sz);
            out.push(if k + 1 == bins {
                b
            } else {
                let p = self.mul(two_b, cum);
                self.sub(p, b)
            });
        }
        out
    }

    fn spline(&mut self, v: Value, raw: &[Value], bins: usize, bound: f64, inverse: bool, log_det: bool) -> Value {
        let xs = self.knots(&raw[..bins], bins, bound);
        let ys = self.knots(&raw[bins..2 * bins], bins, bound);
        let one = self.c(1.0);
        let two = self.c(2.0);
        let zero = self.c(0.0);
        let d: Vec<Value> = (0..=bins)
            .map(|k| {
                if k == 0 || k == bins {
                    one
                } else {
                    let sp = self.un(Math::Softplus, raw[2 * bins + k - 1]);
                    let min = self.c(runtime::spline::MIN_DERIVATIVE);
                    self.add(min, sp)
                }
            })
            .collect();
        let mut chosen = zero;
        for k in 0..bins {
            let w = self.sub(xs[k + 1], xs[k]);
            let h = self.sub(ys[k + 1], ys[k]);
            let s = self.div(h, w);
            let (d0, d1) = (d[k], d[k + 1]);
            let dsum = self.add(d0, d1);
            let two_s = self.mul(two, s);
            let q = self.sub(dsum, two_s);
            let xi = if inverse {
                // a ξ² + b ξ + c = 0 for the offset clamped into the bin
                let dy = self.sub(v, ys[k]);
                let dy = self.clamp(dy, zero, h);
                let sd = self.sub(s, d0);
                let hsd = self.mul(h, sd);
                let dyq = self.mul(dy, q);
                let a = self.add(hsd, dyq);
                let hd = self.mul(h, d0);
                let b = self.sub(hd, dyq);
                let sdy = self.mul(s, dy);
                let c = self.un(Math::Neg, sdy);
                let bb = self.mul(b, b);
                let ac = self.mul(a, c);
                let four = self.c(4.0);
                let ac4 = self.mul(four, ac);
                let disc = self.sub(bb, ac4);
                let disc = self.ifpos(disc, disc, zero);
                let r = self.un(Math::Sqrt, disc);
                let nb = self.un(Math::Neg, b);
                let den = self.sub(nb, r);
                let num = self.mul(two, c);
                let xi = self.div(num, den);
                self.clamp(xi, zero, one)
            } else {
                let dx = self.sub(v, xs[k]);
                let xi = self.div(dx, w);
                self.clamp(xi, zero, one)
            };
            let omx = self.sub(one, xi);
            let t = self.mul(xi, omx);
            let qt = self.mul(q, t);
            let den = self.add(s, qt);
            let value = if log_det {
                // log dy/dx = log(s² (d1 ξ² + 2 s t + d0 (1−ξ)²)) − 2 log(den)
                let xi2 = self.mul(xi, xi);
                let a = self.mul(d1, xi2);
                let st = self.mul(two_s, t);
                let om2 = self.mul(omx, omx);
                let b = self.mul(d0, om2);
                let inner = self.add(a, st);
                let inner = self.add(inner, b);
                let s2 = self.mul(s, s);
                let num = self.mul(s2, inner);
                let ln = self.un(Math::Log, num);
                let ld = self.un(Math::Log, den);
                let ld2 = self.mul(two, ld);
                self.sub(ln, ld2)
            } else if inverse {
                let xw = self.mul(xi, w);
                self.add(xs[k], xw)
            } else {
                let xi2 = self.mul(xi, xi);
                let sx = self.mul(s, xi2);
                let dt = self.mul(d0, t);
                let num = self.add(sx, dt);
                let hn = self.mul(h, num);
                let f = self.div(hn, den);
                self.add(ys[k], f)
            };
            chosen = if k == 0 {
                value
            } else {
                let along = if inverse { ys[k] } else { xs[k] };
                let past = self.sub(v, along);
                self.ifpos(past, value, chosen)
            };
        }
        // tails: the identity (log-derivative 0)
        let b = self.c(bound);
        let nb = self.c(-bound);
        let tail = if log_det { zero } else { v };
        let above = self.sub(v, b);
        let below = self.sub(nb, v);
        let inner = self.ifpos(below, tail, chosen);
        self.ifpos(above, tail, inner)
    }
}

/// Which values depend on a parameter (only they get adjoints).
fn active(insts: &[Inst]) -> Vec<bool> {
    let mut act = vec![false; insts.len()];
    for (i, inst) in insts.iter().enumerate() {
        act[i] = match inst {
            Inst::Param(_) | Inst::Dense { .. } | Inst::RootFind { .. } => true,
            Inst::Input(_) | Inst::Const(_) | Inst::Seed | Inst::Detach(_) => false,
            other => other.args().iter().any(|a| act[*a]),
        };
    }
    act
}

fn div() -> Math {
    Math::Div([Id::from(0usize), Id::from(0usize)])
}

fn sum(em: &mut Emitter, terms: &[Value]) -> Value {
    let mut acc = terms[0];
    for t in &terms[1..] {
        acc = em.op(Math::Add([Id::from(0usize), Id::from(0usize)]), vec![acc, *t]);
    }
    acc
}

fn sum_or_zero(em: &mut Emitter, terms: &[Value]) -> Value {
    if terms.is_empty() {
        em.num(0.0)
    } else {
        sum(em, terms)
    }
}

/// Emits a root-find's sub-program with its input bound to the root `x`: every
/// instruction's value, and the result.
fn inline(em: &mut Emitter, sb: &SubBody, x: Value) -> Result<(Vec<Value>, Value), String> {
    let mut vals: Vec<Value> = Vec::with_capacity(sb.insts.len());
    for inst in &sb.insts {
        let v = match inst {
            Inst::Input(_) => x,
            Inst::Param(p) => em.push(Inst::Param(*p)),
            Inst::Const(c) => em.num(*c),
            Inst::Op(m, args) => em.op(m.clone(), args.iter().map(|a| vals[*a]).collect()),
            other => return Err(format!("{other:?} inside a root-find")),
        };
        vals.push(v);
    }
    let r = vals[sb.result];
    Ok((vals, r))
}

/// The partial derivatives of each op, from `derive::diff`'s rules (cached by op shape).
#[derive(Default)]
pub(crate) struct Rules {
    partials: HashMap<String, Vec<Expr>>,
}

/// Names of an op's operands in its partial derivatives.
const OPERANDS: [&str; 3] = ["__grad_a", "__grad_b", "__grad_c"];

impl Rules {
    /// ∂op/∂operand as expressions in the operands (`OPERANDS`).
    fn partials(&mut self, m: &Math) -> Result<&Vec<Expr>, String> {
        let shape = m.clone().map_children(|_| Id::from(0usize));
        let key = format!("{shape:?}");
        if !self.partials.contains_key(&key) {
            let arity = m.children().len();
            let mut e: Expr = RecExpr::default();
            let ids: Vec<Id> = (0..arity).map(|j| e.add(Math::Sym(Symbol::from(OPERANDS[j])))).collect();
            let mut c = 0;
            e.add(shape.map_children(|_| {
                c += 1;
                ids[c - 1]
            }));
            let ds = (0..arity).map(|j| diff::diff(&e, OPERANDS[j])).collect::<Result<Vec<_>, _>>()?;
            self.partials.insert(key.clone(), ds);
        }
        Ok(&self.partials[&key])
    }

    /// The contributions `a · ∂op/∂operand_j` of adjoint `a` of `op(args)` (value `f`) to
    /// the operands that `want` one.
    pub(crate) fn adjoint(
        &mut self,
        em: &mut Emitter,
        m: &Math,
        args: &[Value],
        f: Value,
        a: Value,
        want: &[bool],
    ) -> Result<Vec<Option<Value>>, String> {
        let z = Id::from(0usize);
        // the linear ops directly
        match m {
            Math::Add(_) => return Ok(want.iter().map(|w| w.then_some(a)).collect()),
            Math::Sub(_) => {
                let n = want[1].then(|| em.op(Math::Neg(z), vec![a]));
                return Ok(vec![want[0].then_some(a), n]);
            }
            Math::Neg(_) => return Ok(vec![want[0].then(|| em.op(Math::Neg(z), vec![a]))]),
            Math::Mul(_) => {
                let l = want[0].then(|| em.op(Math::Mul([z, z]), vec![a, args[1]]));
                let r = want[1].then(|| em.op(Math::Mul([z, z]), vec![a, args[0]]));
                return Ok(vec![l, r]);
            }
            Math::Exp(_) => return Ok(vec![want[0].then(|| em.op(Math::Mul([z, z]), vec![a, f]))]),
            // a branch's adjoint goes to the branch taken (none to the condition)
            Math::IfPos(_) => {
                let zero = em.num(0.0);
                let l = want[1].then(|| em.op(Math::IfPos([z, z, z]), vec![args[0], a, zero]));
                let r = want[2].then(|| em.op(Math::IfPos([z, z, z]), vec![args[0], zero, a]));
                return Ok(vec![None, l, r]);
            }
            _ => {}
        }
        let partials = self.partials(m)?.clone();
        let mut out = Vec::with_capacity(args.len());
        for (j, d) in partials.iter().enumerate() {
            if !want[j] {
                out.push(None);
                continue;
            }
            let bind = |_: &mut Emitter, s: Symbol| OPERANDS.iter().position(|o| *o == s.as_str()).map(|p| args[p]);
            let p = em.expr(d, &bind)?;
            let zero = matches!(em.body.insts[p], Inst::Const(c) if c == 0.0);
            out.push(if zero {
                None
            } else if matches!(em.body.insts[p], Inst::Const(c) if c == 1.0) {
                Some(a)
            } else {
                Some(em.op(Math::Mul([z, z]), vec![a, p]))
            });
        }
        Ok(out)
    }
}
