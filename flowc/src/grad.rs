//! Stage 5b: a `log_prob` [`Kernel`] → its gradient kernel (reverse mode over the kernel
//! body). The gradient kernel computes the same log p(x) per row and adds Σ_rows ∂ log p/∂θ
//! to a gradient buffer of one entry per parameter: scalar parameters through
//! [`Inst::Accum`], dense weights through [`Inst::AccumDense`] (a matrix product over the
//! rows in the backends), and the adjoint of a dense layer's inputs through
//! [`Inst::DenseT`]. Partial derivatives of scalar ops come from the derivative rules of
//! `derive::diff`, emitted with sharing against the forward body (∂tanh reuses tanh's value).
//! A root-find x = f⁻¹(y; θ) is differentiated implicitly: ∂x/∂y = 1/f′(x) and
//! ∂x/∂θ = −(∂f/∂θ)/f′(x), with f and f′ at the root emitted inline.
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
        if let Inst::Dense { inputs, weight, outputs, mask } = &inst {
            let Some(parts) = dense_adj.remove(&i) else { continue };
            let grads: Vec<Value> = (0..*outputs).map(|o| sum_or_zero(&mut em, &parts[o])).collect();
            let at = em.push(Inst::AccumDense { grads: grads.clone(), inputs: inputs.clone(), weight: *weight, mask: *mask, bias: None });
            accum_denses.push(at);
            if inputs.iter().any(|x| active[*x]) {
                let t = em.push(Inst::DenseT { grads, weight: *weight, inputs: inputs.len(), mask: *mask });
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
            Inst::Spline { .. } => {
                return Err("gradients through the built-in spline are not derived yet".into());
            }
            Inst::Input(_) | Inst::Const(_) | Inst::Seed => {}
            other => return Err(format!("no gradient through {other:?}")),
        }
    }
    for at in accum_denses {
        let Inst::AccumDense { grads, .. } = &em.body.insts[at] else { unreachable!("a weight gradient") };
        let grads = grads.clone();
        // Accum(b + o, grads[o]) for every output o: one bias
        let first = accums.iter().position(|(_, v)| *v == grads[0]);
        let Some(first) = first else { continue };
        let b = accums[first].0;
        let pos: Option<Vec<usize>> = grads.iter().enumerate().map(|(o, g)| accums.iter().position(|(p, v)| *p == b + o && v == g)).collect();
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
    Ok(Kernel { flow: k.flow.clone(), kind: Kind::Gradient, dim: k.dim, params: k.params.clone(), body: em.body, outputs: k.outputs.clone() })
}

/// Which values depend on a parameter (only they get adjoints).
fn active(insts: &[Inst]) -> Vec<bool> {
    let mut act = vec![false; insts.len()];
    for (i, inst) in insts.iter().enumerate() {
        act[i] = match inst {
            Inst::Param(_) | Inst::Dense { .. } | Inst::RootFind { .. } => true,
            Inst::Input(_) | Inst::Const(_) | Inst::Seed => false,
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
struct Rules {
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
    fn adjoint(&mut self, em: &mut Emitter, m: &Math, args: &[Value], f: Value, a: Value, want: &[bool]) -> Result<Vec<Option<Value>>, String> {
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
