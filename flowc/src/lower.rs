//! Stage 5: [`Derivation`] → [`Program`]: backend-neutral kernels, one straight-line SSA
//! body per row of a flow (all layers fused), with common subexpressions shared.
//!
//! Each kernel reads one row of `dim` inputs and a flat parameter buffer and writes its
//! outputs: `forward` (z → x, then Σ log|det J|), `inverse` (x → z, then Σ log|det J| of the
//! forward layers at the recovered points) and `log_prob` (x → log p(x)). The JIT and the
//! Rust backend translate the same program; [`run`] interprets it (the reference for both).
//!
//! ```
//! let src = "bijector affine(x; shift: real, log_scale: real) = x * exp(log_scale) + shift;
//!            flow f(x: R^2) { base normal; elementwise(affine(log_scale = 0)); }";
//! let (_, _, d) = flowc::cli::load_str("f.flow", src).unwrap();
//! let p = flowc::lower::lower(&d).unwrap();
//! let k = p.kernel("f", flowc::lower::Kind::Forward).unwrap();
//! let params = [1.0, 2.0]; // layers.0.shift for both coordinates
//! let out = flowc::lower::run(k, &[0.5, 0.5], &params);
//! assert_eq!(out, vec![1.5, 2.5, 0.0]);
//! ```

use crate::derive::fuse::FusedRun;
use crate::derive::{BijectorDerivation, Derivation, FlowDerivation, LayerDerivation, LayerKind, Monotone};
use crate::diag::{Diagnostic, Diagnostics};
use crate::ir::expr::Expr;
use crate::ir::layer::made_connected;
use crate::ir::{eval, Interval, Math, X, Y};
use crate::ir::{Activation, Net, ParamKind};
use egg::{Id, Language, Symbol};
use std::collections::HashMap;
use std::fmt;

/// Which map a kernel computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Forward,
    Inverse,
    LogProb,
    /// log_prob, and Σ over rows of ∂ log p / ∂θ accumulated ([`crate::grad`]).
    Gradient,
    /// A manifold flow's forward map with the generic volume ratio instead of the closed
    /// forms ([`crate::ratio`]).
    Ratio,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Forward => "forward",
            Kind::Inverse => "inverse",
            Kind::LogProb => "log_prob",
            Kind::Gradient => "gradient",
            Kind::Ratio => "generic_ratio",
        }
    }
}

/// An SSA value: the index of the instruction that defines it.
pub type Value = usize;

/// One instruction of a kernel body.
#[derive(Debug, Clone, PartialEq)]
pub enum Inst {
    /// Coordinate `i` of the input row.
    Input(usize),
    /// Entry `i` of the flat parameter buffer.
    Param(usize),
    Const(f64),
    /// A scalar op of the IR (its children replaced by values).
    Op(Math, Vec<Value>),
    /// W·inputs for the weight matrix W ([outputs, inputs] row-major) at `weight` in the
    /// parameter buffer; with `mask`, the MADE-masked entries are zero. A tuple of `outputs`
    /// values, read with [`Inst::Part`]. Backends may compute it for many rows at once (GEMM).
    /// With `rows` other than [`Rows::ALL`], output o is row `rows.row(o)` of a larger W.
    Dense {
        inputs: Vec<Value>,
        weight: usize,
        outputs: usize,
        mask: Option<MadeMask>,
        rows: Rows,
    },
    /// Entry `1` of the [`Inst::Dense`] value `0`.
    Part(Value, usize),
    /// The built-in rational-quadratic spline (`runtime::spline`) at `x`, its `3·bins − 1`
    /// parameters `raw`: the image (`inverse`: the preimage), or with `log_det` the
    /// log-derivative of the forward map there.
    Spline {
        x: Value,
        raw: Vec<Value>,
        bins: usize,
        bound: f64,
        inverse: bool,
        log_det: bool,
    },
    /// The x in `domain` with f(x) = y, by the bracketed root-find: `f` and its derivative
    /// are sub-programs of one input (instruction `Input(0)`), sharing this kernel's params.
    RootFind {
        y: Value,
        f: Box<SubBody>,
        df: Box<SubBody>,
        domain: Interval,
        increasing: bool,
    },
    /// The weight of this row in a gradient's sum over rows: 1 (0 for a backend's padding
    /// rows past the end of the batch).
    Seed,
    /// Wᵀ·grads for the weight W [grads.len() × inputs] at `weight` (MADE-masked entries
    /// zero): a tuple of `inputs` values, read with [`Inst::Part`]. The backward product of
    /// an [`Inst::Dense`].
    DenseT {
        grads: Vec<Value>,
        weight: usize,
        inputs: usize,
        mask: Option<MadeMask>,
        rows: Rows,
    },
    /// Adds Σ_rows grads ⊗ inputs to the gradient of the weight W [grads.len() ×
    /// inputs.len()] at `weight` (masked entries get nothing), and with `bias` Σ_rows grads
    /// to the gradient at `bias + rows.row(o)`. Defines no value.
    AccumDense {
        grads: Vec<Value>,
        inputs: Vec<Value>,
        weight: usize,
        mask: Option<MadeMask>,
        rows: Rows,
        bias: Option<usize>,
    },
    /// Adds Σ_rows `value` to the gradient of parameter `param`. Defines no value.
    Accum {
        param: usize,
        value: Value,
    },
    /// log|det A| of the n × n matrix A whose entries (row-major) are `entries`, by
    /// elimination with partial pivoting (in f64 whatever the kernel's precision).
    LogAbsDet {
        n: usize,
        entries: Vec<Value>,
    },
    /// scale·Σ p·ln(a) over `terms` (a, p): a sum of logarithms, which backends may compute
    /// with one logarithm of a product (exponents tracked apart, so nothing overflows).
    LogProd {
        terms: Vec<(Value, i32)>,
        scale: f64,
    },
    /// The value `0`, through which gradients do not flow: the intermediate steps of a
    /// converged iteration, whose last step alone is differentiated (at a fixed point this is
    /// the implicit derivative).
    Detach(Value),
}

/// Which rows of a weight matrix a product uses: rows `first`, `first + step`, ...
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rows {
    pub first: usize,
    pub step: usize,
}

impl Rows {
    /// Every row, in order.
    pub const ALL: Rows = Rows { first: 0, step: 1 };
    /// The weight row of output `o`.
    pub fn row(&self, o: usize) -> usize {
        self.first + o * self.step
    }
}

/// The MADE mask of linear layer `layer` of `layers` in a network on `dim` inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MadeMask {
    pub layer: usize,
    pub layers: usize,
    pub dim: usize,
}

impl MadeMask {
    pub fn connected(&self, out: usize, inp: usize) -> bool {
        made_connected(self.layer, self.layers, out, inp, self.dim)
    }
}

/// The arguments of an instruction (the values it reads).
pub fn args_of(inst: &Inst) -> Vec<Value> {
    inst.args()
}

impl Inst {
    /// The values this instruction reads (a root-find's sub-programs have their own).
    pub fn args(&self) -> Vec<Value> {
        match self {
            Inst::Op(_, args) => args.clone(),
            Inst::RootFind { y, .. } => vec![*y],
            Inst::Dense { inputs, .. } => inputs.clone(),
            Inst::Part(d, _) => vec![*d],
            Inst::Spline { x, raw, .. } => std::iter::once(*x).chain(raw.iter().copied()).collect(),
            Inst::DenseT { grads, .. } => grads.clone(),
            Inst::AccumDense { grads, inputs, .. } => grads.iter().chain(inputs).copied().collect(),
            Inst::Accum { value, .. } => vec![*value],
            Inst::LogAbsDet { entries, .. } => entries.clone(),
            Inst::LogProd { terms, .. } => terms.iter().map(|(v, _)| *v).collect(),
            Inst::Detach(v) => vec![*v],
            _ => vec![],
        }
    }
}

/// A sub-program of one input (`Input(0)`) and the value it returns.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SubBody {
    pub insts: Vec<Inst>,
    pub result: Value,
}

/// A straight-line body.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Body {
    pub insts: Vec<Inst>,
}

/// One parameter vector of a flow and where it starts in the parameter buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSlot {
    /// `layers.K.NAME`
    pub name: String,
    pub offset: usize,
    pub len: usize,
    /// Row-major shape (`[out, in]` for weights); its product is `len`.
    pub shape: Vec<usize>,
    /// The values' domain: an elementwise bijector's `positive` and `unit` parameters are
    /// stored as themselves (> 0, in (0, 1)); everything else is `real`.
    pub kind: ParamKind,
}

/// A kernel: one row in, `outputs` values out.
#[derive(Debug, Clone, PartialEq)]
pub struct Kernel {
    pub flow: String,
    pub kind: Kind,
    pub dim: usize,
    pub params: Vec<ParamSlot>,
    pub body: Body,
    /// The values written to the output row, in order.
    pub outputs: Vec<Value>,
}

impl Kernel {
    /// Length of the flat parameter buffer.
    pub fn param_len(&self) -> usize {
        self.params.iter().map(|p| p.len).sum()
    }
}

/// Every kernel of every flow.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Program {
    pub kernels: Vec<Kernel>,
}

impl Program {
    pub fn kernel(&self, flow: &str, kind: Kind) -> Option<&Kernel> {
        self.kernels.iter().find(|k| k.flow == flow && k.kind == kind)
    }
}

/// Emits instructions with structural sharing (CSE) and constant reuse.
pub(crate) struct Emitter {
    pub(crate) body: Body,
    memo: HashMap<String, Value>,
}

impl Emitter {
    pub(crate) fn new() -> Self {
        Emitter { body: Body::default(), memo: HashMap::new() }
    }
    /// An emitter that continues `body` (sharing its instructions).
    pub(crate) fn from_body(body: Body) -> Self {
        let mut em = Emitter::new();
        for inst in body.insts {
            em.push_new(inst);
        }
        em
    }
    /// The sharing key of an instruction (`None`: never shared).
    fn key(inst: &Inst) -> Option<String> {
        match inst {
            // effects, and root-finds (never shared)
            Inst::RootFind { .. } | Inst::Accum { .. } | Inst::AccumDense { .. } => None,
            Inst::Const(c) => Some(format!("c{:x}", c.to_bits())),
            other => Some(format!("{other:?}")),
        }
    }
    /// Appends `inst` even when an equal one exists (keeps the first for sharing).
    fn push_new(&mut self, inst: Inst) -> Value {
        let key = Self::key(&inst);
        self.body.insts.push(inst);
        let v = self.body.insts.len() - 1;
        if let Some(key) = key {
            self.memo.entry(key).or_insert(v);
        }
        v
    }
    pub(crate) fn push(&mut self, inst: Inst) -> Value {
        let key = Self::key(&inst);
        if let Some(k) = &key {
            if let Some(&v) = self.memo.get(k) {
                return v;
            }
        }
        self.body.insts.push(inst);
        let v = self.body.insts.len() - 1;
        if let Some(k) = key {
            self.memo.insert(k, v);
        }
        v
    }
    pub(crate) fn op(&mut self, m: Math, args: Vec<Value>) -> Value {
        if matches!(m, Math::Pow(_) | Math::PowRecip(_)) && !self.memo.contains_key(&format!("{:?}", Inst::Op(m.clone(), args.clone()))) {
            // a^(-b) next to a^b (both halves of a sinh or cosh written with powers): one
            // power and its reciprocal (half an ulp more, and no second log and exp)
            if let Some(p) = self.reciprocal_power(&m, &args) {
                let one = self.num(1.0);
                return self.push(Inst::Op(Math::Div([Id::from(0usize), Id::from(0usize)]), vec![one, p]));
            }
        }
        if let Math::IfPos(_) = m {
            // ifpos(c, f(x), f(y)) = f(ifpos(c, x, y)) for a unary f: one f, whichever branch
            // each row takes (a two-regime formula pays for its regimes' arguments only)
            if let (Inst::Op(fa, xa), Inst::Op(fb, xb)) = (&self.body.insts[args[1]], &self.body.insts[args[2]]) {
                let unary = xa.len() == 1 && xb.len() == 1 && fa.children().len() == 1;
                if unary && fa == fb && xa[0] != xb[0] {
                    let (f, x, y) = (fa.clone(), xa[0], xb[0]);
                    let z = Id::from(0usize);
                    let sel = self.op(Math::IfPos([z, z, z]), vec![args[0], x, y]);
                    return self.op(f, vec![sel]);
                }
            }
        }
        self.push(Inst::Op(m, args))
    }
    fn lookup(&self, inst: &Inst) -> Option<Value> {
        self.memo.get(&format!("{inst:?}")).copied()
    }
    /// The already emitted power `m(a, -e)` for `m(a, e)`, when there is one.
    fn reciprocal_power(&self, m: &Math, args: &[Value]) -> Option<Value> {
        let (a, e) = (args[0], args[1]);
        let neg = |v: Value| Inst::Op(Math::Neg(Id::from(0usize)), vec![v]);
        // e = -b, and a^b was emitted
        if let Inst::Op(Math::Neg(_), b) = &self.body.insts[e] {
            if let Some(p) = self.lookup(&Inst::Op(m.clone(), vec![a, b[0]])) {
                return Some(p);
            }
        }
        // -e was emitted, and a^(-e)
        let ne = self.lookup(&neg(e))?;
        self.lookup(&Inst::Op(m.clone(), vec![a, ne]))
    }
    pub(crate) fn num(&mut self, c: f64) -> Value {
        self.push(Inst::Const(c))
    }
    /// Emits `e` with symbols bound by `sym` (returns `None` for an unbound symbol).
    pub(crate) fn expr(&mut self, e: &Expr, sym: &dyn Fn(&mut Emitter, Symbol) -> Option<Value>) -> Result<Value, String> {
        let mut vals: Vec<Value> = Vec::with_capacity(e.as_ref().len());
        for node in e.as_ref() {
            let v = match node {
                Math::Num(c) => self.num(c.get()),
                Math::Sym(s) => match eval::constant(*s) {
                    Some(c) => self.num(c),
                    None => sym(self, *s).ok_or_else(|| format!("unbound symbol `{s}`"))?,
                },
                Math::Solve(_) => return Err("`solve` left in a formula".into()),
                other => {
                    let args: Vec<Value> = other.children().iter().map(|c| vals[usize::from(*c)]).collect();
                    let shape = other.clone().map_children(|_| Id::from(0usize));
                    self.op(shape, args)
                }
            };
            vals.push(v);
        }
        Ok(*vals.last().expect("non-empty expression"))
    }
}

/// Parameter slots of a flow: every free parameter of every layer, one entry per coordinate.
pub fn param_slots(f: &FlowDerivation) -> Vec<ParamSlot> {
    let mut slots = Vec::new();
    let mut offset = 0;
    for (k, l) in f.layers.iter().enumerate() {
        for (name, shape) in l.tensors(k, f.dim) {
            let len = shape.iter().product();
            let kind = match l.kind {
                LayerKind::Elementwise => {
                    let pname = name.rsplit('.').next().unwrap_or_default();
                    l.free.iter().find(|q| q.name == pname).map(|q| q.kind).unwrap_or(ParamKind::Real)
                }
                _ => ParamKind::Real,
            };
            slots.push(ParamSlot { name, offset, len, shape, kind });
            offset += len;
        }
    }
    slots
}

fn slot_offset(slots: &[ParamSlot], name: &str) -> Result<usize, String> {
    slots.iter().find(|s| s.name == name).map(|s| s.offset).ok_or_else(|| format!("no parameter `{name}`"))
}

/// One step of a kernel: a layer, or a fused run of layers derived as one bijector.
#[derive(Clone, Copy)]
enum Stage<'a> {
    Layer(usize),
    Fused(&'a FusedRun),
}

impl<'a> Stage<'a> {
    fn bijector(self, d: &'a Derivation, f: &'a FlowDerivation) -> &'a BijectorDerivation {
        match self {
            Stage::Layer(k) => &d.bijectors[f.layers[k].bijector.expect("an elementwise stage")],
            Stage::Fused(r) => &r.derivation,
        }
    }
}

/// The stages of a flow in the generative direction (fused runs replace their layers).
fn stages<'a>(f: &'a FlowDerivation) -> Vec<Stage<'a>> {
    let mut out = Vec::new();
    let mut k = 0;
    while k < f.layers.len() {
        match f.fused_at(k) {
            Some(r) => {
                out.push(Stage::Fused(r));
                k = r.end;
            }
            None => {
                out.push(Stage::Layer(k));
                k += 1;
            }
        }
    }
    out
}

/// Binds a stage's symbols for coordinate `i`: the variable, bound constants, parameters.
fn binder<'a>(
    f: &'a FlowDerivation,
    slots: &'a [ParamSlot],
    stage: Stage<'a>,
    i: usize,
    var: &'a str,
    value: Value,
) -> impl Fn(&mut Emitter, Symbol) -> Option<Value> + 'a {
    move |em: &mut Emitter, s: Symbol| {
        if s.as_str() == var {
            return Some(value);
        }
        let slot_name = match stage {
            Stage::Layer(k) => {
                let l = &f.layers[k];
                if let Some((_, c)) = l.bound.iter().find(|(n, _)| n.as_str() == s.as_str()) {
                    return Some(em.num(*c));
                }
                format!("layers.{k}.{s}")
            }
            // a fused composite names its parameters after the slots, constants already in;
            // its parameter-only subexpressions are computed from those
            Stage::Fused(r) => {
                if let Some((_, def)) = r.defs.iter().find(|(n, _)| n.as_str() == s.as_str()) {
                    return em.expr(def, &binder(f, slots, stage, i, var, value)).ok();
                }
                s.as_str().to_string()
            }
        };
        let slot = slots.iter().find(|p| p.name == slot_name)?;
        Some(em.push(Inst::Param(slot.offset + i)))
    }
}

/// A sub-program of one input for the root-find: `e` in `x`, the stage's params bound.
fn sub_body(e: &Expr, f: &FlowDerivation, slots: &[ParamSlot], stage: Stage<'_>, i: usize) -> Result<SubBody, String> {
    let mut em = Emitter::new();
    let x = em.push(Inst::Input(0));
    let result = em.expr(e, &binder(f, slots, stage, i, X, x))?;
    Ok(SubBody { insts: em.body.insts, result })
}

/// y = f(x) and log|f'(x)| of one stage at one coordinate.
fn stage_forward(
    em: &mut Emitter,
    b: &BijectorDerivation,
    f: &FlowDerivation,
    slots: &[ParamSlot],
    stage: Stage<'_>,
    i: usize,
    x: Value,
) -> Result<(Value, Value), String> {
    let y = em.expr(&b.forward.chosen.expr, &binder(f, slots, stage, i, X, x))?;
    let ld = em.expr(&b.log_det.chosen.expr, &binder(f, slots, stage, i, X, x))?;
    Ok((y, ld))
}

/// x = f^-1(y) and log|f'(x)| of one stage at one coordinate.
fn stage_inverse(
    em: &mut Emitter,
    b: &BijectorDerivation,
    f: &FlowDerivation,
    slots: &[ParamSlot],
    stage: Stage<'_>,
    i: usize,
    y: Value,
) -> Result<(Value, Value), String> {
    let x = match b.inverse.formula() {
        Some(g) => em.expr(g, &binder(f, slots, stage, i, Y, y))?,
        None => {
            let fb = sub_body(&b.forward.chosen.expr, f, slots, stage, i)?;
            let db = sub_body(&b.derivative, f, slots, stage, i)?;
            em.push(Inst::RootFind {
                y,
                f: Box::new(fb),
                df: Box::new(db),
                domain: b.domain,
                increasing: b.monotone == Monotone::Increasing,
            })
        }
    };
    let ld = match &b.log_det_y {
        Some(c) => em.expr(&c.chosen.expr, &binder(f, slots, stage, i, Y, y))?,
        None => em.expr(&b.log_det.chosen.expr, &binder(f, slots, stage, i, X, x))?,
    };
    Ok((x, ld))
}

/// Emits a layer applied as a whole (coupling, autoregressive, linear, permutation) in the
/// generative direction (`forward`) or the density direction; `cur` holds the row, and the
/// log|det J| terms are added to `lds` (per coordinate), or as (a, p) with the term ½·p·ln a
/// to `logs` (summed with one [`Inst::LogProd`] at the end of the kernel).
#[allow(clippy::too_many_arguments)]
#[allow(clippy::needless_range_loop)] // triangular index ranges read clearer as indices
fn structural(
    em: &mut Emitter,
    d: &Derivation,
    f: &FlowDerivation,
    slots: &[ParamSlot],
    k: usize,
    forward: bool,
    cur: &mut [Value],
    lds: &mut [Vec<Value>],
    logs: &mut Vec<(Value, i32)>,
) -> Result<(), String> {
    let l = &f.layers[k];
    let n = f.dim;
    let add = |em: &mut Emitter, a: Value, b: Value| em.op(Math::Add([Id::from(0usize), Id::from(0usize)]), vec![a, b]);
    let sub = |em: &mut Emitter, a: Value, b: Value| em.op(Math::Sub([Id::from(0usize), Id::from(0usize)]), vec![a, b]);
    let mul = |em: &mut Emitter, a: Value, b: Value| em.op(Math::Mul([Id::from(0usize), Id::from(0usize)]), vec![a, b]);
    match &l.kind {
        LayerKind::Elementwise => unreachable!("emitted per coordinate"),
        LayerKind::Permute { perm } => {
            let old = cur.to_vec();
            if forward {
                for (i, &j) in perm.iter().enumerate() {
                    cur[i] = old[j];
                }
            } else {
                for (i, &j) in perm.iter().enumerate() {
                    cur[j] = old[i];
                }
            }
        }
        LayerKind::LinearLu => {
            let (v, log_diag) = lu_map(em, slots, k, n, cur, forward)?;
            cur.copy_from_slice(&v);
            for (ld, l) in lds.iter_mut().zip(log_diag) {
                ld.push(l);
            }
        }
        LayerKind::Calibration(kind) => {
            let id0 = Id::from(0usize);
            let un = |em: &mut Emitter, m: Math, v: Value| em.op(m, vec![v]);
            let m = n - 1;
            let q = runtime::manifold::helmert(n);
            let bo = slot_offset(slots, &format!("layers.{k}.bias"))?;
            let bias: Vec<Value> = (0..n).map(|i| em.push(Inst::Param(bo + i))).collect();
            // Q·v (n values) or, `transposed`, Qᵀ·u (n − 1 values), with Helmert's constants
            let q_mul = |em: &mut Emitter, v: &[Value], transposed: bool| -> Vec<Value> {
                let (rows, cols) = if transposed { (m, n) } else { (n, m) };
                (0..rows)
                    .map(|r| {
                        let t: Vec<Value> = (0..cols)
                            .filter_map(|c| {
                                let qv = if transposed { q[c * m + r] } else { q[r * m + c] };
                                (qv != 0.0).then(|| {
                                    let k = em.num(qv);
                                    mul(em, k, v[c])
                                })
                            })
                            .collect();
                        sum(em, &t)
                    })
                    .collect()
            };
            // log softmax(z): z_i − logsumexp(z), the largest z subtracted first
            let log_softmax = |em: &mut Emitter, z: &[Value]| -> Vec<Value> {
                let mut top = z[0];
                for zi in &z[1..] {
                    let d = sub(em, *zi, top);
                    top = em.op(Math::IfPos([id0, id0, id0]), vec![d, *zi, top]);
                }
                let e: Vec<Value> = z
                    .iter()
                    .map(|zi| {
                        let d = sub(em, *zi, top);
                        un(em, Math::Exp(id0), d)
                    })
                    .collect();
                let s_ = sum(em, &e);
                let ls = un(em, Math::Log(id0), s_);
                let lse = add(em, top, ls);
                z.iter().map(|zi| sub(em, *zi, lse)).collect()
            };
            let logs: Vec<Value> = cur.iter().map(|c| un(em, Math::Log(id0), *c)).collect();
            // (log_det of B, the other side's logs)
            let (log_det, out_logs) = match (kind, forward) {
                (crate::ir::Calibration::Scalar, _) => {
                    let ls = em.push(Inst::Param(slot_offset(slots, &format!("layers.{k}.log_scale"))?));
                    let mf = em.num(m as f64);
                    let det = mul(em, mf, ls);
                    let z: Vec<Value> = if forward {
                        // z = a·log x + b
                        let a = un(em, Math::Exp(id0), ls);
                        logs.iter()
                            .zip(&bias)
                            .map(|(l, b)| {
                                let t = mul(em, a, *l);
                                add(em, t, *b)
                            })
                            .collect()
                    } else {
                        // (log y − b)/a
                        let nls = un(em, Math::Neg(id0), ls);
                        let ra = un(em, Math::Exp(id0), nls);
                        logs.iter()
                            .zip(&bias)
                            .map(|(l, b)| {
                                let t = sub(em, *l, *b);
                                mul(em, t, ra)
                            })
                            .collect()
                    };
                    (det, log_softmax(em, &z))
                }
                (crate::ir::Calibration::Generalized, _) => {
                    let z: Vec<Value> = if forward {
                        // z = Q B Qᵀ log x + b
                        let v = q_mul(em, &logs, true);
                        let (w, _) = lu_map(em, slots, k, m, &v, true)?;
                        let u = q_mul(em, &w, false);
                        u.iter().zip(&bias).map(|(ui, b)| add(em, *ui, *b)).collect()
                    } else {
                        // Q B⁻¹ Qᵀ (log y − b)
                        let d: Vec<Value> = logs.iter().zip(&bias).map(|(l, b)| sub(em, *l, *b)).collect();
                        let v = q_mul(em, &d, true);
                        let (w, _) = lu_map(em, slots, k, m, &v, false)?;
                        q_mul(em, &w, false)
                    };
                    let dg = slot_offset(slots, &format!("layers.{k}.log_diag"))?;
                    let ld: Vec<Value> = (0..m).map(|i| em.push(Inst::Param(dg + i))).collect();
                    (sum(em, &ld), log_softmax(em, &z))
                }
            };
            // log R = log|det B| + Σ log y − Σ log x (forward: `logs` are log x; inverse: log y)
            let s_in = sum(em, &logs);
            let s_out = sum(em, &out_logs);
            let (sy, sx) = if forward { (s_out, s_in) } else { (s_in, s_out) };
            let t = add(em, log_det, sy);
            lds[0].push(sub(em, t, sx));
            for (c, l) in cur.iter_mut().zip(&out_logs) {
                *c = un(em, Math::Exp(id0), *l);
            }
        }
        LayerKind::Map(map) => user_map(em, map, f.space, slots, k, forward, cur, lds)?,
        LayerKind::Normalized(kind) => {
            let id0 = Id::from(0usize);
            let div = |em: &mut Emitter, a: Value, b: Value| em.op(Math::Div([id0, id0]), vec![a, b]);
            let un = |em: &mut Emitter, m: Math, v: Value| em.op(m, vec![v]);
            let dot = |em: &mut Emitter, a: &[Value], b: &[Value]| {
                let t: Vec<Value> = a.iter().zip(b).map(|(x, y)| mul(em, *x, *y)).collect();
                sum(em, &t)
            };
            // parameter-only (computed once per call): m = v/√(1 + ‖v‖²) and
            // κ = 1 − ‖m‖² = 1/(1 + ‖v‖²), without the cancellation of 1 − ‖m‖²
            let shift = if kind.translates() {
                let so = slot_offset(slots, &format!("layers.{k}.shift"))?;
                let v: Vec<Value> = (0..n).map(|i| em.push(Inst::Param(so + i))).collect();
                let vv = dot(em, &v, &v);
                let one = em.num(1.0);
                let q = add(em, one, vv);
                let kappa = div(em, one, q);
                let r = un(em, Math::Sqrt(id0), kappa);
                let m: Vec<Value> = v.iter().map(|x| mul(em, *x, r)).collect();
                Some((m, kappa, v, vv, r))
            } else {
                None
            };
            if forward {
                // w = x + m (translation), then M·w (linear part); y = w/‖w‖ once. The ratio
                // log R = log(1 + xᵀm) + Σ log_diag − (n/2)·log‖w‖² (the normalizations in
                // between cancel), its logarithms in the kernel's one logarithm of a product
                let mut w: Vec<Value> = cur.to_vec();
                if let Some((m, kappa, v, vv, r)) = &shift {
                    // With ‖m‖ > ½, near the antipode x ≈ −m̂ both x + m and 1 + xᵀm cancel;
                    // there, with m̂ = v/‖v‖ and δ = 1 − ‖m‖ = κ/(1 + ‖m‖) (no cancellation):
                    // a = x + m̂ (exact near −m̂), w = a − δ·m̂, 1 + xᵀm = ‖a‖²/2 − δ·xᵀm̂ (a
                    // sum of positive terms where xᵀm̂ < 0). With ‖m‖ ≤ ½, 1 + xᵀm ≥ ½ and
                    // ‖x + m‖ ≥ ½: a = x, w = x + m, 1 + xᵀm = ‖x‖²/2 + ½ + xᵀm. The regime is
                    // a parameter's: one formula, w = (x + A) − B and
                    // 1 + xᵀm = ‖x + A‖²/2 + e − xᵀB, with the regime's parameter-only A, B, e
                    // (A = m̂, B = δ·m̂, e = 0, or A = 0, B = −m, e = ½), so each row computes
                    // one regime.
                    let nv = un(em, Math::Sqrt(id0), *vv);
                    let norm_m = mul(em, nv, *r);
                    let half = em.num(0.5);
                    let far = sub(em, norm_m, half);
                    let (one, zero) = (em.num(1.0), em.num(0.0));
                    let pick =
                        |em: &mut Emitter, far_v: Value, near_v: Value| em.op(Math::IfPos([id0, id0, id0]), vec![far, far_v, near_v]);
                    let inv_nv = div(em, one, nv);
                    let one_m = add(em, one, norm_m);
                    let delta = div(em, *kappa, one_m);
                    let e = pick(em, zero, half);
                    let mut ab = Vec::with_capacity(n);
                    for (vi, mi) in v.iter().zip(m) {
                        let h = mul(em, *vi, inv_nv);
                        let dh = mul(em, delta, h);
                        let neg_m = em.op(Math::Neg(id0), vec![*mi]);
                        ab.push((pick(em, h, zero), pick(em, dh, neg_m)));
                    }
                    let a: Vec<Value> = cur.iter().zip(&ab).map(|(x, (ai, _))| add(em, *x, *ai)).collect();
                    let bs: Vec<Value> = ab.iter().map(|(_, bi)| *bi).collect();
                    let aa = dot(em, &a, &a);
                    let half_aa = mul(em, half, aa);
                    let g = add(em, half_aa, e);
                    let xb = dot(em, cur, &bs);
                    let one_xm = sub(em, g, xb);
                    logs.push((one_xm, 2));
                    w = a.iter().zip(&bs).map(|(ai, bi)| sub(em, *ai, *bi)).collect();
                }
                if kind.multiplies() {
                    let (u, log_diag) = lu_map(em, slots, k, n, &w, true)?;
                    lds[0].push(sum(em, &log_diag));
                    w = u;
                }
                let q = dot(em, &w, &w);
                logs.push((q, -(n as i32)));
                let t = un(em, Math::Sqrt(id0), q);
                let one = em.num(1.0);
                let rt = div(em, one, t);
                for (c, wi) in cur.iter_mut().zip(&w) {
                    *c = mul(em, *wi, rt);
                }
            } else {
                // w = M⁻¹y (w = y without a linear part); a point off the sphere by rounding is
                // projected radially (every formula below is invariant to scaling y)
                let yy = dot(em, cur, cur);
                let (w, q) = if kind.multiplies() {
                    let (w, log_diag) = lu_map(em, slots, k, n, cur, false)?;
                    lds[0].push(sum(em, &log_diag));
                    let q = dot(em, &w, &w);
                    (w, q)
                } else {
                    (cur.to_vec(), yy)
                };
                if let Some((m, kappa, ..)) = &shift {
                    // x = τ·w − m with τ > 0 the root of ‖τ·w − m‖ = 1: qτ² − 2βτ − κ = 0,
                    // β = wᵀm, q = ‖w‖²; with r = √(β² + κq), τ = (β + r)/q, or κ/(r − β) when
                    // β ≤ 0 (no cancellation): one division of the selected parts. In terms of
                    // the unit point w/√q (t = τ√q, s = r/√q: 1 + xᵀm = t·s, ‖x + m‖ = t) the
                    // ratio is log R = log|det M| + (n/2)·log(q/‖y‖²) + log s − (n − 1)·log t,
                    // where the powers of q cancel: log|det M| + log r − (n − 1)·log τ
                    // − (n/2)·log‖y‖². No square root of q, no normalizing division.
                    let beta = dot(em, &w, m);
                    let b2 = mul(em, beta, beta);
                    let kq = mul(em, *kappa, q);
                    let disc = add(em, b2, kq);
                    let r = un(em, Math::Sqrt(id0), disc);
                    let pos = add(em, beta, r);
                    let neg = sub(em, r, beta);
                    let pick = |em: &mut Emitter, a: Value, b: Value| em.op(Math::IfPos([id0, id0, id0]), vec![beta, a, b]);
                    let num = pick(em, pos, *kappa);
                    let den = pick(em, q, neg);
                    let tau = div(em, num, den);
                    logs.push((yy, -(n as i32)));
                    logs.push((r, 2));
                    logs.push((tau, -2 * (n as i32 - 1)));
                    for (c, (wi, mi)) in cur.iter_mut().zip(w.iter().zip(m)) {
                        let tw = mul(em, tau, *wi);
                        *c = sub(em, tw, *mi);
                    }
                } else {
                    // x = w/‖w‖; ‖Mx‖ = ‖y‖/‖w‖, so log R = log|det M| + (n/2)·log(q/‖y‖²)
                    let t = un(em, Math::Sqrt(id0), q);
                    logs.push((q, n as i32));
                    logs.push((yy, -(n as i32)));
                    let one = em.num(1.0);
                    let rt = div(em, one, t);
                    for (c, wi) in cur.iter_mut().zip(&w) {
                        *c = mul(em, *wi, rt);
                    }
                }
            }
        }
        LayerKind::Planar => {
            let pd = d.planar.as_ref().ok_or("the planar layer was not derived")?;
            let (uo, wo, bo) = (
                slot_offset(slots, &format!("layers.{k}.u"))?,
                slot_offset(slots, &format!("layers.{k}.w"))?,
                slot_offset(slots, &format!("layers.{k}.b"))?,
            );
            // m = ûᵀw = −1 + softplus(wᵀu): once per call here, and inside the root-find's
            // sub-programs (which read only parameters and their own input)
            let emit_m = |em: &mut Emitter| -> (Vec<Value>, Value, Value) {
                let w: Vec<Value> = (0..n).map(|i| em.push(Inst::Param(wo + i))).collect();
                let mut wu = None;
                for (i, wi) in w.iter().enumerate() {
                    let ui = em.push(Inst::Param(uo + i));
                    let t = mul(em, *wi, ui);
                    wu = Some(match wu {
                        None => t,
                        Some(acc) => add(em, acc, t),
                    });
                }
                let wu = wu.expect("dim ≥ 1");
                let sp = em.op(Math::Softplus(Id::from(0usize)), vec![wu]);
                let one = em.num(1.0);
                let m = sub(em, sp, one);
                (w, wu, m)
            };
            let (w, wu, m) = emit_m(em);
            let bind = |var: Value, m: Value| {
                move |_: &mut Emitter, s: Symbol| -> Option<Value> {
                    match s.as_str() {
                        X => Some(var),
                        crate::derive::planar::M => Some(m),
                        _ => None,
                    }
                }
            };
            // û = u + c·w, c = (m − wᵀu)/‖w‖² (0 when w = 0: the layer is a translation)
            let ww = {
                let sq: Vec<Value> = w.iter().map(|wi| mul(em, *wi, *wi)).collect();
                sum(em, &sq)
            };
            let q = {
                let t = sub(em, m, wu);
                em.op(Math::Div([Id::from(0usize), Id::from(0usize)]), vec![t, ww])
            };
            let zero = em.num(0.0);
            let c = em.op(Math::IfPos([Id::from(0usize), Id::from(0usize), Id::from(0usize)]), vec![ww, q, zero]);
            let uh: Vec<Value> = (0..n)
                .map(|i| {
                    let ui = em.push(Inst::Param(uo + i));
                    let cw = mul(em, c, w[i]);
                    add(em, ui, cw)
                })
                .collect();
            let b = em.push(Inst::Param(bo));
            let proj = |em: &mut Emitter, v: &[Value]| {
                let t: Vec<Value> = w.iter().zip(v).map(|(wi, vi)| mul(em, *wi, *vi)).collect();
                let s = sum(em, &t);
                add(em, s, b)
            };
            let a = if forward {
                proj(em, cur)
            } else {
                let t = proj(em, cur);
                let sub_program = |e: &Expr| -> Result<SubBody, String> {
                    let mut se = Emitter::new();
                    let x = se.push(Inst::Input(0));
                    let (_, _, m) = emit_m(&mut se);
                    let result = se.expr(e, &bind(x, m))?;
                    Ok(SubBody { insts: se.body.insts, result })
                };
                let (fb, db) = (sub_program(&pd.g)?, sub_program(&pd.dg)?);
                em.push(Inst::RootFind { y: t, f: Box::new(fb), df: Box::new(db), domain: Interval::REAL, increasing: true })
            };
            let h = em.expr(&pd.h, &bind(a, m))?;
            for (ci, ui) in cur.iter_mut().zip(&uh) {
                let s = mul(em, *ui, h);
                *ci = if forward { add(em, *ci, s) } else { sub(em, *ci, s) };
            }
            // the determinant 1 + m h'(a) joins the kernel's one logarithm of a product as the
            // root-find's derived derivative g'(a) (> 0: m > −1, 0 < h' ≤ 1), sharing h's
            // tanh: in a sum of logarithms its error counts in absolute terms, an ulp of 1 per
            // layer, so the log1p form chosen for log|det J| on its own is not needed there
            let det = em.expr(&pd.dg, &bind(a, m))?;
            logs.push((det, 2));
        }
        LayerKind::Radial => {
            let (zo, ao, bo) = (
                slot_offset(slots, &format!("layers.{k}.z0"))?,
                slot_offset(slots, &format!("layers.{k}.alpha"))?,
                slot_offset(slots, &format!("layers.{k}.beta"))?,
            );
            let un = |em: &mut Emitter, m: Math, v: Value| em.op(m, vec![v]);
            let div = |em: &mut Emitter, a: Value, b: Value| em.op(Math::Div([Id::from(0usize), Id::from(0usize)]), vec![a, b]);
            let id0 = Id::from(0usize);
            // α = softplus(alpha), β = softplus(beta) − α: once per call
            let ar = em.push(Inst::Param(ao));
            let a = un(em, Math::Softplus(id0), ar);
            let br = em.push(Inst::Param(bo));
            let sb = un(em, Math::Softplus(id0), br);
            let be = sub(em, sb, a);
            let z0: Vec<Value> = (0..n).map(|i| em.push(Inst::Param(zo + i))).collect();
            let e: Vec<Value> = cur.iter().zip(&z0).map(|(c, z)| sub(em, *c, *z)).collect();
            let sq: Vec<Value> = e.iter().map(|v| mul(em, *v, *v)).collect();
            let ss = sum(em, &sq);
            let norm = un(em, Math::Sqrt(id0), ss);
            let r = if forward {
                norm
            } else {
                // ρ = r (1 + β/(α + r)): r² + (α + β − ρ) r − αρ = 0, positive root without
                // cancellation: 2αρ/(B + s) for B = α + β − ρ > 0, else (s − B)/2,
                // s = √(B² + 4αρ) as a hypot (no overflow)
                let ab = add(em, a, be);
                let bq = sub(em, ab, norm);
                let arho = mul(em, a, norm);
                let sq = un(em, Math::Sqrt(id0), arho);
                let two = em.num(2.0);
                let half = em.num(0.5);
                let t = mul(em, two, sq);
                let s = em.op(Math::Hypot([id0, id0]), vec![bq, t]);
                let num = mul(em, two, arho);
                let den = add(em, bq, s);
                let pos = div(em, num, den);
                let diff = sub(em, s, bq);
                let neg = mul(em, half, diff);
                em.op(Math::IfPos([id0, id0, id0]), vec![bq, pos, neg])
            };
            let q = add(em, a, r);
            let bh = div(em, be, q);
            // log|det J| = (n − 1)·log1p(β/(α + r)) + log1p(βα/(α + r)²)
            let l1 = un(em, Math::Log1p(id0), bh);
            let nm1 = em.num((n - 1) as f64);
            let t1 = mul(em, nm1, l1);
            let q2 = mul(em, q, q);
            let ba = mul(em, be, a);
            let f2 = div(em, ba, q2);
            let l2 = un(em, Math::Log1p(id0), f2);
            let ld = add(em, t1, l2);
            if forward {
                for (ci, ei) in cur.iter_mut().zip(&e) {
                    let s = mul(em, bh, *ei);
                    *ci = add(em, *ci, s);
                }
            } else {
                let one = em.num(1.0);
                let scale = add(em, one, bh);
                for ((ci, ei), zi) in cur.iter_mut().zip(&e).zip(&z0) {
                    let s = div(em, *ei, scale);
                    *ci = add(em, *zi, s);
                }
            }
            lds[0].push(ld);
        }
        LayerKind::Coupling { mask, net } => {
            let b = &d.bijectors[l.bijector.expect("coupling has a bijector")];
            let kept: Vec<Value> = (0..n).filter(|i| mask[*i]).map(|i| cur[i]).collect();
            let moved: Vec<usize> = (0..n).filter(|i| !mask[*i]).collect();
            let mut ne = NetEmitter::new(slots, k, net, kept.iter().map(|v| Some(*v)).collect(), moved.len() * l.free.len(), n)?;
            for (t, &i) in moved.iter().enumerate() {
                let theta = conditioned(em, &mut ne, l, t, moved.len())?;
                let (v, ld) = apply_conditioned(em, b, l, &theta, cur[i], forward)?;
                cur[i] = v;
                lds[i].push(ld);
            }
        }
        LayerKind::Autoregressive { net, inverse } => {
            let b = &d.bijectors[l.bijector.expect("autoregressive has a bijector")];
            // sequential when the conditioner reads the values being computed: MAF forward,
            // IAF inverse; each hidden unit is emitted once, when its inputs are known
            let sequential = forward != *inverse;
            let inputs: Vec<Option<Value>> = if sequential { vec![None; n] } else { cur.iter().map(|v| Some(*v)).collect() };
            let mut ne = NetEmitter::new(slots, k, net, inputs, n * l.free.len(), n)?;
            for i in 0..n {
                let theta = conditioned(em, &mut ne, l, i, n)?;
                let (v, ld) = apply_conditioned(em, b, l, &theta, cur[i], forward)?;
                if sequential {
                    ne.set_input(i, v);
                }
                cur[i] = v;
                lds[i].push(ld);
            }
        }
    }
    Ok(())
}

/// Networks up to this many multiply-adds are emitted unit by unit in sequential directions.
pub const MAX_UNIT_BY_UNIT: usize = 4096;

/// A conditioner network emitted on demand: a unit is emitted when first needed, from the
/// units it is connected to (MADE masks are structural: masked weights are never read).
struct NetEmitter<'a> {
    net: &'a Net,
    dim: usize,
    /// per linear layer: (weight offset, bias offset, outputs, inputs)
    layers: Vec<(usize, usize, usize, usize)>,
    inputs: Vec<Option<Value>>,
    units: Vec<Vec<Option<Value>>>,
    /// Whole layers as [`Inst::Dense`]. Otherwise unit by unit, each when first needed: in a
    /// sequential direction that is one network evaluation in all, but the code grows with
    /// the network, so it is used for small networks only; larger ones are evaluated whole at
    /// each step, unknown inputs as 0 (the mask makes them irrelevant), as other libraries do.
    dense: bool,
    dense_of: Vec<Option<Value>>,
    /// A MADE evaluated in a sequential direction: each layer's units in groups of equal
    /// connectivity (rows `first + k·step` of the weight), each group one product computed
    /// once, when its inputs are known: one network evaluation in all.
    grouped: bool,
    /// Per layer: unit → (its group's product, its index in the group).
    group_of: Vec<HashMap<usize, (Value, usize)>>,
}

impl<'a> NetEmitter<'a> {
    fn new(slots: &[ParamSlot], k: usize, net: &'a Net, inputs: Vec<Option<Value>>, outputs: usize, dim: usize) -> Result<Self, String> {
        let mut layers = Vec::new();
        for (j, o, i) in net.shapes(inputs.len(), outputs) {
            let w = slot_offset(slots, &format!("layers.{k}.net.{j}.weight"))?;
            let b = slot_offset(slots, &format!("layers.{k}.net.{j}.bias"))?;
            layers.push((w, b, o, i));
        }
        let units = layers.iter().map(|(_, _, o, _)| vec![None; *o]).collect();
        let macs: usize = layers.iter().map(|(_, _, o, i)| o * i).sum();
        let known = inputs.iter().all(|v| v.is_some());
        let dense = known || macs > MAX_UNIT_BY_UNIT;
        let grouped = dense && !known && net.made;
        let dense_of = vec![None; layers.len()];
        let group_of = vec![HashMap::new(); layers.len()];
        Ok(NetEmitter { net, dim, layers, inputs, units, dense, dense_of, grouped, group_of })
    }

    /// A network input became known (sequential directions): whole-layer products computed
    /// before it are stale.
    fn set_input(&mut self, i: usize, v: Value) {
        self.inputs[i] = Some(v);
        if self.dense && !self.grouped {
            self.dense_of.iter_mut().for_each(|d| *d = None);
            self.units.iter_mut().for_each(|u| u.iter_mut().for_each(|x| *x = None));
        }
    }

    /// Unit `u` of linear layer `j` (after its activation, except for the last layer).
    fn unit(&mut self, em: &mut Emitter, j: usize, u: usize) -> Result<Value, String> {
        if let Some(v) = self.units[j][u] {
            return Ok(v);
        }
        let (w, b, outs, ins) = self.layers[j];
        let mut acc = em.push(Inst::Param(b + u));
        if self.grouped {
            if let Some(part) = self.group_unit(em, j, u)? {
                acc = em.op(Math::Add([Id::from(0usize), Id::from(0usize)]), vec![part, acc]);
                return self.activate(em, j, u, acc);
            }
        }
        if self.dense {
            let d = match self.dense_of[j] {
                Some(d) => d,
                None => {
                    let inputs: Vec<Value> = (0..ins)
                        .map(|v| if j == 0 { Ok(self.inputs[v].unwrap_or_else(|| em.num(0.0))) } else { self.unit(em, j - 1, v) })
                        .collect::<Result<_, String>>()?;
                    let mask = self.net.made.then_some(MadeMask { layer: j, layers: self.layers.len(), dim: self.dim });
                    let d = em.push(Inst::Dense { inputs, weight: w, outputs: outs, mask, rows: Rows::ALL });
                    self.dense_of[j] = Some(d);
                    d
                }
            };
            let part = em.push(Inst::Part(d, u));
            acc = em.op(Math::Add([Id::from(0usize), Id::from(0usize)]), vec![part, acc]);
        }
        for v in 0..if self.dense { 0 } else { ins } {
            if self.net.made && !made_connected(j, self.layers.len(), u, v, self.dim) {
                continue;
            }
            let h = if j == 0 {
                self.inputs[v].ok_or_else(|| format!("network input {v} read before it is known"))?
            } else {
                self.unit(em, j - 1, v)?
            };
            let wv = em.push(Inst::Param(w + u * ins + v));
            let m = em.op(Math::Mul([Id::from(0usize), Id::from(0usize)]), vec![wv, h]);
            acc = em.op(Math::Add([Id::from(0usize), Id::from(0usize)]), vec![acc, m]);
        }
        self.activate(em, j, u, acc)
    }

    /// Unit `u` of layer `j` from its pre-activation value (the last layer has none).
    fn activate(&mut self, em: &mut Emitter, j: usize, u: usize, acc: Value) -> Result<Value, String> {
        let out = if j + 1 == self.layers.len() {
            acc
        } else {
            let z = Id::from(0usize);
            match self.net.act {
                Activation::Tanh => em.op(Math::Tanh(z), vec![acc]),
                Activation::Sigmoid => em.op(Math::Sigmoid(z), vec![acc]),
                Activation::Softplus => em.op(Math::Softplus(z), vec![acc]),
                Activation::Relu => {
                    let zero = em.num(0.0);
                    em.op(Math::IfPos([z, z, z]), vec![acc, acc, zero])
                }
            }
        };
        self.units[j][u] = Some(out);
        Ok(out)
    }

    /// W·x of unit `u` of layer `j` from its group's product (emitted with the first unit of
    /// the group asked for); `None` when the layer's groups are not evenly spaced rows.
    fn group_unit(&mut self, em: &mut Emitter, j: usize, u: usize) -> Result<Option<Value>, String> {
        if let Some(&(d, idx)) = self.group_of[j].get(&u) {
            return Ok(Some(em.push(Inst::Part(d, idx))));
        }
        let (w, _, outs, ins) = self.layers[j];
        let layers = self.layers.len();
        let conn = |o: usize| -> Vec<bool> { (0..ins).map(|v| made_connected(j, layers, o, v, self.dim)).collect() };
        let mine = conn(u);
        let group: Vec<usize> = (0..outs).filter(|o| conn(*o) == mine).collect();
        let step = if group.len() > 1 { group[1] - group[0] } else { 1 };
        if group.iter().enumerate().any(|(i, o)| *o != group[0] + i * step) {
            return Ok(None);
        }
        let zero = em.num(0.0);
        let mut inputs = Vec::with_capacity(ins);
        for (v, on) in mine.iter().enumerate() {
            inputs.push(if !on {
                zero
            } else if j == 0 {
                self.inputs[v].ok_or_else(|| format!("network input {v} read before it is known"))?
            } else {
                self.unit(em, j - 1, v)?
            });
        }
        let mask = Some(MadeMask { layer: j, layers, dim: self.dim });
        let d = em.push(Inst::Dense { inputs, weight: w, outputs: group.len(), mask, rows: Rows { first: group[0], step } });
        for (idx, o) in group.iter().enumerate() {
            self.group_of[j].insert(*o, (d, idx));
        }
        let idx = (u - group[0]) / step;
        Ok(Some(em.push(Inst::Part(d, idx))))
    }
}

/// The free parameters of the bijector for transformed coordinate `t` of `n`: network
/// outputs (param-major), mapped into each parameter's kind.
fn conditioned(em: &mut Emitter, ne: &mut NetEmitter<'_>, l: &LayerDerivation, t: usize, n: usize) -> Result<Vec<(String, Value)>, String> {
    let last = ne.layers.len() - 1;
    let mut out = Vec::new();
    for (j, p) in l.free.iter().enumerate() {
        let raw = ne.unit(em, last, j * n + t)?;
        let z = Id::from(0usize);
        let v = match p.kind {
            ParamKind::Real => raw,
            ParamKind::Positive => em.op(Math::Softplus(z), vec![raw]),
            ParamKind::Unit => em.op(Math::Sigmoid(z), vec![raw]),
        };
        out.push((p.name.clone(), v));
    }
    Ok(out)
}

/// The bijector at one coordinate with parameters given as values: (image, log|f'|) forward,
/// (preimage, log|f'| at the preimage) in the density direction.
fn apply_conditioned(
    em: &mut Emitter,
    b: &BijectorDerivation,
    l: &LayerDerivation,
    theta: &[(String, Value)],
    v: Value,
    forward: bool,
) -> Result<(Value, Value), String> {
    let bind = |var: &'static str, value: Value| {
        move |em: &mut Emitter, s: Symbol| -> Option<Value> {
            if s.as_str() == var {
                return Some(value);
            }
            if let Some((_, c)) = l.bound.iter().find(|(n, _)| n.as_str() == s.as_str()) {
                return Some(em.num(*c));
            }
            theta.iter().find(|(n, _)| n.as_str() == s.as_str()).map(|(_, v)| *v)
        }
    };
    if let Some(sp) = b.spline {
        let raw = b
            .params
            .iter()
            .map(|p| {
                theta.iter().find(|(n, _)| *n == p.name).map(|(_, v)| *v).ok_or_else(|| format!("spline parameter `{}` unset", p.name))
            })
            .collect::<Result<Vec<Value>, String>>()?;
        let mut at =
            |log_det: bool| em.push(Inst::Spline { x: v, raw: raw.clone(), bins: sp.bins, bound: sp.bound, inverse: !forward, log_det });
        let (y, ld) = (at(false), at(true));
        return Ok((y, ld));
    }
    if forward {
        let y = em.expr(&b.forward.chosen.expr, &bind(X, v))?;
        let ld = em.expr(&b.log_det.chosen.expr, &bind(X, v))?;
        Ok((y, ld))
    } else {
        let Some(g) = b.inverse.formula() else {
            return Err(format!("`{}` has a numeric inverse, which conditioned layers do not support yet", b.name));
        };
        let x = em.expr(g, &bind(Y, v))?;
        let ld = match &b.log_det_y {
            Some(c) => em.expr(&c.chosen.expr, &bind(Y, v))?,
            None => em.expr(&b.log_det.chosen.expr, &bind(X, x))?,
        };
        Ok((x, ld))
    }
}

/// M·v (`forward`) or M⁻¹·v for M = L·U of layer `k` (L unit lower triangular from
/// `lower`, U upper from `upper` with diagonal exp(log_diag)), and the log_diag values
/// (Σ = log|det M|). The inverse by forward then back substitution.
#[allow(clippy::needless_range_loop)] // triangular index ranges read clearer as indices
fn lu_map(
    em: &mut Emitter,
    slots: &[ParamSlot],
    k: usize,
    n: usize,
    v: &[Value],
    forward: bool,
) -> Result<(Vec<Value>, Vec<Value>), String> {
    let id0 = Id::from(0usize);
    let add = |em: &mut Emitter, a: Value, b: Value| em.op(Math::Add([id0, id0]), vec![a, b]);
    let sub = |em: &mut Emitter, a: Value, b: Value| em.op(Math::Sub([id0, id0]), vec![a, b]);
    let mul = |em: &mut Emitter, a: Value, b: Value| em.op(Math::Mul([id0, id0]), vec![a, b]);
    let (lo, up, dg) = (
        slot_offset(slots, &format!("layers.{k}.lower"))?,
        slot_offset(slots, &format!("layers.{k}.upper"))?,
        slot_offset(slots, &format!("layers.{k}.log_diag"))?,
    );
    let p = |em: &mut Emitter, off: usize| em.push(Inst::Param(off));
    let log_diag: Vec<Value> = (0..n).map(|i| p(em, dg + i)).collect();
    // the diagonal, or its reciprocal exp(−log_diag) for the inverse (computed once per call,
    // a product per row instead of a division)
    let diag: Vec<Value> = log_diag
        .iter()
        .map(|l| {
            let e = if forward { *l } else { em.op(Math::Neg(id0), vec![*l]) };
            em.op(Math::Exp(id0), vec![e])
        })
        .collect();
    let mut out = v.to_vec();
    if forward {
        // t = U v, out = L t
        let mut t = Vec::with_capacity(n);
        for i in 0..n {
            let mut acc = mul(em, diag[i], v[i]);
            for j in i + 1..n {
                let w = p(em, up + i * n + j);
                let m = mul(em, w, v[j]);
                acc = add(em, acc, m);
            }
            t.push(acc);
        }
        for i in 0..n {
            let mut acc = t[i];
            for (j, tj) in t.iter().enumerate().take(i) {
                let w = p(em, lo + i * n + j);
                let m = mul(em, w, *tj);
                acc = add(em, acc, m);
            }
            out[i] = acc;
        }
    } else {
        let mut t: Vec<Value> = Vec::with_capacity(n);
        for i in 0..n {
            let mut acc = v[i];
            for (j, tj) in t.iter().enumerate().take(i) {
                let w = p(em, lo + i * n + j);
                let m = mul(em, w, *tj);
                acc = sub(em, acc, m);
            }
            t.push(acc);
        }
        for i in (0..n).rev() {
            let mut acc = t[i];
            for j in i + 1..n {
                let w = p(em, up + i * n + j);
                let m = mul(em, w, out[j]);
                acc = sub(em, acc, m);
            }
            out[i] = mul(em, acc, diag[i]);
        }
    }
    Ok((out, log_diag))
}

fn sum(em: &mut Emitter, terms: &[Value]) -> Value {
    let mut acc = terms[0];
    for t in &terms[1..] {
        acc = em.op(Math::Add([Id::from(0usize), Id::from(0usize)]), vec![acc, *t]);
    }
    acc
}

fn lower_kernel(d: &Derivation, f: &FlowDerivation, kind: Kind) -> Result<Kernel, String> {
    let slots = param_slots(f);
    let mut em = Emitter::new();
    let mut cur: Vec<Value> = (0..f.dim).map(|i| em.push(Inst::Input(i))).collect();
    if f.space == crate::ir::Space::Sphere && !(kind != Kind::Forward && scale_invariant_inverse(f)) {
        // rows on the sphere to rounding (or within `interp::MANIFOLD_TOL`, which callers check)
        // are projected onto it: x/‖x‖
        let id0 = Id::from(0usize);
        let sq: Vec<Value> = cur.iter().map(|v| em.op(Math::Mul([id0, id0]), vec![*v, *v])).collect();
        let ss = sum(&mut em, &sq);
        let norm = em.op(Math::Sqrt(id0), vec![ss]);
        let one = em.num(1.0);
        let r = em.op(Math::Div([id0, id0]), vec![one, norm]);
        for c in cur.iter_mut() {
            *c = em.op(Math::Mul([id0, id0]), vec![*c, r]);
        }
    }
    if f.space == crate::ir::Space::Simplex {
        // rows on the simplex to rounding (or within `interp::MANIFOLD_TOL`) are projected
        // onto it: x/Σx
        let id0 = Id::from(0usize);
        let total = sum(&mut em, &cur);
        let one = em.num(1.0);
        let r = em.op(Math::Div([id0, id0]), vec![one, total]);
        for c in cur.iter_mut() {
            *c = em.op(Math::Mul([id0, id0]), vec![*c, r]);
        }
    }
    // log|det J| terms per coordinate, so that each coordinate's work is contiguous; and
    // logarithms summed at the end with one logarithm ((a, p): ½·p·ln a)
    let mut lds: Vec<Vec<Value>> = vec![Vec::new(); f.dim];
    let mut logs: Vec<(Value, i32)> = Vec::new();
    let two = Id::from(0usize);
    let mut stages = stages(f);
    if kind != Kind::Forward {
        stages.reverse();
    }
    for stage in stages {
        if let Stage::Layer(k) = stage {
            if f.layers[k].kind != LayerKind::Elementwise {
                structural(&mut em, d, f, &slots, k, kind == Kind::Forward, &mut cur, &mut lds, &mut logs)?;
                continue;
            }
        }
        let b = stage.bijector(d, f);
        for (i, c) in cur.iter_mut().enumerate() {
            let (v, ld) = match kind {
                Kind::Forward | Kind::Ratio => stage_forward(&mut em, b, f, &slots, stage, i, *c)?,
                Kind::Inverse | Kind::LogProb | Kind::Gradient => stage_inverse(&mut em, b, f, &slots, stage, i, *c)?,
            };
            *c = v;
            lds[i].push(ld);
        }
    }
    if !logs.is_empty() {
        let l = em.push(Inst::LogProd { terms: std::mem::take(&mut logs), scale: 0.5 });
        lds[0].push(l);
    }
    let zero = em.num(0.0);
    // per coordinate: Σ_k log|det J_k|, then (log_prob) the base term minus it
    let per: Vec<Value> = lds.iter().map(|t| if t.is_empty() { zero } else { sum(&mut em, t) }).collect();
    let (outputs, roots) = match kind {
        Kind::Forward | Kind::Inverse | Kind::Ratio => {
            let total = sum(&mut em, &per);
            (cur.iter().copied().chain([total]).collect::<Vec<_>>(), interleave(&cur, &per, total))
        }
        Kind::LogProb | Kind::Gradient if matches!(f.base, crate::ir::Base::Dirichlet(_)) => {
            // on the simplex: log Γ(Σα) − Σ log Γ(α_i) − ½ log n + Σ (α_i − 1) log z_i − Σ_k log R_k
            let crate::ir::Base::Dirichlet(alpha) = &f.base else { unreachable!("matched") };
            let mut terms = vec![em.num(runtime::base::dirichlet_log_norm(alpha))];
            for (z, a) in cur.iter().zip(alpha) {
                if *a != 1.0 {
                    let l = em.op(Math::Log(two), vec![*z]);
                    let c = em.num(a - 1.0);
                    terms.push(em.op(Math::Mul([two, two]), vec![c, l]));
                }
            }
            let base = sum(&mut em, &terms);
            let ld = sum(&mut em, &per);
            let total = em.op(Math::Sub([two, two]), vec![base, ld]);
            (vec![total], vec![total])
        }
        Kind::LogProb | Kind::Gradient if matches!(f.base, crate::ir::Base::Vmf(_)) => {
            // von Mises–Fisher: log C_n(κ) + κ·z_n − Σ_k log R_k
            let crate::ir::Base::Vmf(kappa) = f.base else { unreachable!("matched") };
            let c = em.num(runtime::base::vmf_log_norm(f.dim, kappa));
            let k = em.num(kappa);
            let last = *cur.last().expect("a point");
            let kz = em.op(Math::Mul([two, two]), vec![k, last]);
            let base = em.op(Math::Add([two, two]), vec![c, kz]);
            let ld = sum(&mut em, &per);
            let total = em.op(Math::Sub([two, two]), vec![base, ld]);
            (vec![total], vec![total])
        }
        Kind::LogProb | Kind::Gradient if f.base == crate::ir::Base::Uniform => {
            // on the sphere: −log|S^(n−1)| − Σ_k log R_k
            let c = em.num(runtime::base::sphere_uniform_log_pdf(f.dim));
            let ld = sum(&mut em, &per);
            let total = em.op(Math::Sub([two, two]), vec![c, ld]);
            (vec![total], vec![total])
        }
        Kind::LogProb | Kind::Gradient => {
            // Σ_i (-z_i²/2 - log(2π)/2 - Σ_k log|det J_k|_i)
            let half = em.num(-0.5);
            let c = em.num(-0.5 * runtime::base::LN_2PI);
            let mut terms = Vec::new();
            for (z, ld) in cur.iter().zip(&per) {
                let z2 = em.op(Math::Mul([two, two]), vec![*z, *z]);
                let h = em.op(Math::Mul([two, two]), vec![half, z2]);
                let b = em.op(Math::Add([two, two]), vec![h, c]);
                terms.push(em.op(Math::Sub([two, two]), vec![b, *ld]));
            }
            let total = sum(&mut em, &terms);
            (vec![total], terms.into_iter().chain([total]).collect())
        }
    };
    // elementwise flows: coordinate by coordinate (few live values); with structural layers
    // the emission order is kept (layer by layer: one layer's units live at a time)
    let (body, outputs) = if f.layers.iter().all(|l| l.kind == LayerKind::Elementwise) {
        schedule(em.body, &roots, &outputs)
    } else {
        prune(em.body, &outputs)
    };
    Ok(Kernel { flow: f.name.clone(), kind, dim: f.dim, params: slots, body, outputs })
}

/// Gaussian elimination with partial pivoting written in kernel ops (vectorized with the rows,
/// differentiable, no host calls): for the n × n row-major `a` and right-hand side `rhs`,
/// the pivots' absolute values (Σ log|pivot| = log|det A|) and, with `rhs`, A⁻¹·rhs. The
/// pivot row is chosen by pairwise comparisons of |a_rc| (selects, `ifpos`).
pub(crate) fn eliminate(em: &mut Emitter, n: usize, a: &[Value], rhs: Option<&[Value]>) -> (Vec<Value>, Option<Vec<Value>>) {
    let z = Id::from(0usize);
    let mut m = a.to_vec();
    let mut b: Option<Vec<Value>> = rhs.map(|r| r.to_vec());
    let mut pivots = Vec::with_capacity(n);
    for c in 0..n {
        for r in c + 1..n {
            let ar = em.op(Math::Abs(z), vec![m[r * n + c]]);
            let ac = em.op(Math::Abs(z), vec![m[c * n + c]]);
            let swap = em.op(Math::Sub([z, z]), vec![ar, ac]);
            let sel = |em: &mut Emitter, p: Value, q: Value| {
                (em.op(Math::IfPos([z, z, z]), vec![swap, q, p]), em.op(Math::IfPos([z, z, z]), vec![swap, p, q]))
            };
            for j in c..n {
                let (top, low) = sel(em, m[c * n + j], m[r * n + j]);
                m[c * n + j] = top;
                m[r * n + j] = low;
            }
            if let Some(b) = b.as_mut() {
                let (top, low) = sel(em, b[c], b[r]);
                b[c] = top;
                b[r] = low;
            }
        }
        let d = m[c * n + c];
        pivots.push(em.op(Math::Abs(z), vec![d]));
        let one = em.num(1.0);
        let inv = em.op(Math::Div([z, z]), vec![one, d]);
        for r in c + 1..n {
            let q = em.op(Math::Mul([z, z]), vec![m[r * n + c], inv]);
            for j in c + 1..n {
                let t = em.op(Math::Mul([z, z]), vec![q, m[c * n + j]]);
                m[r * n + j] = em.op(Math::Sub([z, z]), vec![m[r * n + j], t]);
            }
            if let Some(b) = b.as_mut() {
                let t = em.op(Math::Mul([z, z]), vec![q, b[c]]);
                b[r] = em.op(Math::Sub([z, z]), vec![b[r], t]);
            }
        }
    }
    let x = b.map(|mut b| {
        for c in (0..n).rev() {
            let mut s = b[c];
            for j in c + 1..n {
                let t = em.op(Math::Mul([z, z]), vec![m[c * n + j], b[j]]);
                s = em.op(Math::Sub([z, z]), vec![s, t]);
            }
            b[c] = em.op(Math::Div([z, z]), vec![s, m[c * n + c]]);
        }
        b
    });
    (pivots, x)
}

/// Newton's residual for f(x) = y: y − f(x) (sphere), or the centred log f(x) − log y
/// (simplex; `log_y` its logarithms).
fn newton_residual(em: &mut Emitter, simplex: bool, y: &[Value], log_y: &[Value], fx: &[Value]) -> Vec<Value> {
    let z = Id::from(0usize);
    if simplex {
        let g: Vec<Value> = fx
            .iter()
            .zip(log_y)
            .map(|(f, ly)| {
                let lf = em.op(Math::Log(z), vec![*f]);
                em.op(Math::Sub([z, z]), vec![lf, *ly])
            })
            .collect();
        let tot = sum(em, &g);
        let inv_n = em.num(1.0 / g.len() as f64);
        let mean = em.op(Math::Mul([z, z]), vec![tot, inv_n]);
        g.iter().map(|v| em.op(Math::Sub([z, z]), vec![*v, mean])).collect()
    } else {
        y.iter().zip(fx).map(|(a, b)| em.op(Math::Sub([z, z]), vec![*a, *b])).collect()
    }
}

/// Newton's step from x (f(x) = `fx`, residual `r`): on the sphere A⁻¹ r_t (r_t the tangent
/// part of r at f(x), a unit vector), on the simplex −B⁻¹ g in log coordinates (see
/// `user_map`). With `detach`, the matrix is held constant for gradients (at the solution
/// the step's derivative does not depend on it).
fn newton_direction(
    em: &mut Emitter,
    space: crate::ir::Space,
    x: &[Value],
    fx: &[Value],
    r: &[Value],
    detach: bool,
) -> Result<Vec<Value>, String> {
    let n = x.len();
    let z = Id::from(0usize);
    let bin = |em: &mut Emitter, m: Math, a: Value, b: Value| em.op(m, vec![a, b]);
    let (entries, rhs) = if space == crate::ir::Space::Simplex {
        let entries = crate::ratio::simplex_matrix(em, x, fx)?;
        (entries, r.iter().map(|v| em.op(Math::Neg(z), vec![*v])).collect::<Vec<_>>())
    } else {
        let entries = crate::ratio::tangent_matrix(em, x, fx, space)?;
        // the residual's tangent part at f(x) (its normal part would flip x)
        let prods: Vec<Value> = r.iter().zip(fx).map(|(a, b)| bin(em, Math::Mul([z, z]), *a, *b)).collect();
        let rn = sum(em, &prods);
        let rt = r
            .iter()
            .zip(fx)
            .map(|(a, b)| {
                let t = bin(em, Math::Mul([z, z]), rn, *b);
                bin(em, Math::Sub([z, z]), *a, t)
            })
            .collect();
        (entries, rt)
    };
    let entries: Vec<Value> = if detach { entries.iter().map(|v| em.push(Inst::Detach(*v))).collect() } else { entries };
    Ok(eliminate(em, n, &entries, Some(&rhs)).1.expect("a right-hand side"))
}

/// x moved by the Newton step d, its length capped at `cap`: normalize(x + s·d) on the
/// sphere, x·exp(s·d) renormalized on the simplex.
fn newton_retract(em: &mut Emitter, simplex: bool, x: &[Value], d: &[Value], cap: Option<f64>) -> Vec<Value> {
    let z = Id::from(0usize);
    let bin = |em: &mut Emitter, m: Math, a: Value, b: Value| em.op(m, vec![a, b]);
    let step: Vec<Value> = match cap {
        Some(c) => {
            let sq: Vec<Value> = d.iter().map(|v| bin(em, Math::Mul([z, z]), *v, *v)).collect();
            let len2 = sum(em, &sq);
            let len = em.op(Math::Sqrt(z), vec![len2]);
            let cap = em.num(c);
            let over = bin(em, Math::Sub([z, z]), len, cap);
            let shrink = bin(em, Math::Div([z, z]), cap, len);
            let one = em.num(1.0);
            let s = em.op(Math::IfPos([z, z, z]), vec![over, shrink, one]);
            d.iter().map(|v| bin(em, Math::Mul([z, z]), s, *v)).collect()
        }
        None => d.to_vec(),
    };
    let moved: Vec<Value> = step
        .iter()
        .zip(x)
        .map(|(t, xi)| {
            if simplex {
                let e = em.op(Math::Exp(z), vec![*t]);
                bin(em, Math::Mul([z, z]), *xi, e)
            } else {
                bin(em, Math::Add([z, z]), *xi, *t)
            }
        })
        .collect();
    let scale = if simplex {
        sum(em, &moved)
    } else {
        let sq: Vec<Value> = moved.iter().map(|v| bin(em, Math::Mul([z, z]), *v, *v)).collect();
        let ss = sum(em, &sq);
        em.op(Math::Sqrt(z), vec![ss])
    };
    moved.iter().map(|v| bin(em, Math::Div([z, z]), *v, scale)).collect()
}

/// Kernel instructions as the arithmetic of a user map ([`crate::ir::map::Arith`]).
struct MapArith<'a>(&'a mut Emitter);

impl crate::ir::map::Arith for MapArith<'_> {
    type V = Value;
    fn num(&mut self, c: f64) -> Value {
        self.0.num(c)
    }
    fn bin(&mut self, op: crate::dsl::BinOp, a: Value, b: Value) -> Value {
        let z = Id::from(0usize);
        let m = match op {
            crate::dsl::BinOp::Add => Math::Add([z, z]),
            crate::dsl::BinOp::Sub => Math::Sub([z, z]),
            crate::dsl::BinOp::Mul => Math::Mul([z, z]),
            crate::dsl::BinOp::Div => Math::Div([z, z]),
        };
        self.0.op(m, vec![a, b])
    }
    fn neg(&mut self, a: Value) -> Value {
        self.0.op(Math::Neg(Id::from(0usize)), vec![a])
    }
    fn elem(&mut self, f: crate::ir::map::ElemFn, a: Value) -> Value {
        let (_, make) = crate::ir::op::function(f.name()).expect("a map's functions are the language's");
        let m = make(&[Id::from(0usize)]);
        self.0.op(m, vec![a])
    }
    fn hypot(&mut self, a: Value, b: Value) -> Value {
        let z = Id::from(0usize);
        self.0.op(Math::Hypot([z, z]), vec![a, b])
    }
    fn max(&mut self, a: Value, b: Value) -> Value {
        let z = Id::from(0usize);
        let d = self.0.op(Math::Sub([z, z]), vec![a, b]);
        self.0.op(Math::IfPos([z, z, z]), vec![d, a, b])
    }
    fn solve(&mut self, n: usize, a: &[Value], b: &[Value]) -> Vec<Value> {
        eliminate(self.0, n, a, Some(b)).1.expect("a right-hand side")
    }
}

/// A user map (layer `k`): forward, its image and the generic log ratio; backward, the
/// given inverse or Newton's method in the tangent space ([`crate::derive::usermap`]), then
/// the ratio at the recovered point.
#[allow(clippy::too_many_arguments)]
fn user_map(
    em: &mut Emitter,
    map: &crate::ir::map::Map,
    space: crate::ir::Space,
    slots: &[ParamSlot],
    k: usize,
    forward: bool,
    cur: &mut [Value],
    lds: &mut [Vec<Value>],
) -> Result<(), String> {
    use crate::derive::usermap::{MAX_LOG_STEP, MAX_STEP, NEWTON_STEPS, RESIDUAL_TOL};
    use crate::ir::map::{self, MapInverse};
    let n = cur.len();
    let z = Id::from(0usize);
    let mut params: Vec<Vec<Value>> = Vec::new();
    for p in &map.params {
        let off = slot_offset(slots, &format!("layers.{k}.{}", p.name))?;
        let len: usize = p.shape.dims(n).iter().product();
        params.push((0..len).map(|i| em.push(Inst::Param(off + i))).collect());
    }
    let apply = |em: &mut Emitter, x: &[Value]| map::eval_shaped(&map.body, &map.params, &mut MapArith(em), x, &params);
    // the point x, the image y = f(x) and (backward) the point written out
    let (x, y, out) = if forward {
        let x = cur.to_vec();
        let y = apply(em, &x)?;
        (x, y.clone(), y)
    } else {
        let y = cur.to_vec();
        match &map.inverse {
            MapInverse::Given(e) => {
                let x = map::eval_shaped(e, &map.params, &mut MapArith(em), &y, &params)?;
                let fx = apply(em, &x)?;
                (x.clone(), fx, x)
            }
            MapInverse::Numeric => {
                // Newton from x = y (as `usermap::inverse`). Sphere: δ = A⁻¹r with r the
                // tangent part of y − f(x) at f(x), A = F P + n_y n_xᵀ, then
                // x ← normalize(x + s·δ). Simplex, in log coordinates: g = log f(x) − log y
                // centred, B = centred D_f⁻¹ F (D_x − x xᵀ) + 11ᵀ/n, δ = −B⁻¹g,
                // x ← x·exp(s·δ) renormalized. s shortens the step to MAX_STEP (MAX_LOG_STEP).
                // Gradients flow through the last step only (the others detached): at the
                // solution that is the implicit derivative −A⁻¹ ∂f/∂θ.
                let simplex = space == crate::ir::Space::Simplex;
                let log_y: Vec<Value> = if simplex { y.iter().map(|v| em.op(Math::Log(z), vec![*v])).collect() } else { Vec::new() };
                let mut x = y.clone();
                if simplex {
                    // from the centre instead when f(y) underflows in a coordinate (a map with
                    // large exponents at an extreme y): Newton's log residual needs f > 0
                    let fy = apply(em, &y)?;
                    let mut m = fy[0];
                    for v in &fy[1..] {
                        let d = em.op(Math::Sub([z, z]), vec![m, *v]);
                        m = em.op(Math::IfPos([z, z, z]), vec![d, *v, m]);
                    }
                    let centre = em.num(1.0 / n as f64);
                    x = y.iter().map(|v| em.op(Math::IfPos([z, z, z]), vec![m, *v, centre])).collect();
                }
                for _ in 0..NEWTON_STEPS {
                    let fx = apply(em, &x)?;
                    let r = newton_residual(em, simplex, &y, &log_y, &fx);
                    let d = newton_direction(em, space, &x, &fx, &r, false)?;
                    x = newton_retract(em, simplex, &x, &d, Some(if simplex { MAX_LOG_STEP } else { MAX_STEP }));
                }
                let xd: Vec<Value> = x.iter().map(|v| em.push(Inst::Detach(*v))).collect();
                let fx = apply(em, &xd)?;
                let r = newton_residual(em, simplex, &y, &log_y, &fx);
                let sq: Vec<Value> = r.iter().map(|v| em.op(Math::Mul([z, z]), vec![*v, *v])).collect();
                let res = sum(em, &sq);
                let d = newton_direction(em, space, &xd, &fx, &r, true)?;
                let x = newton_retract(em, simplex, &xd, &d, None);
                let fx = apply(em, &x)?;
                // refused (NaN, also for a NaN residual) unless converged: ‖r‖ ≤ RESIDUAL_TOL,
                // or 1e-4 in f32 kernels (told apart by (1 + 2⁻³⁰) − 1, zero in f32 only)
                let one = em.num(1.0);
                let tiny = em.num(2f64.powi(-30));
                let probe = em.op(Math::Add([z, z]), vec![one, tiny]);
                let probe = em.op(Math::Sub([z, z]), vec![probe, one]);
                let (t64, t32) = (em.num(RESIDUAL_TOL * RESIDUAL_TOL), em.num(1e-8));
                let tol = em.op(Math::IfPos([z, z, z]), vec![probe, t64, t32]);
                let good = em.op(Math::Sub([z, z]), vec![tol, res]);
                let nan = em.num(f64::NAN);
                let out = x.iter().map(|v| em.op(Math::IfPos([z, z, z]), vec![good, *v, nan])).collect();
                (x, fx, out)
            }
        }
    };
    // log R at x: Σ log|pivot| of F P + n_y n_xᵀ (sphere), or of B in log coordinates plus
    // Σ log y − Σ log x (simplex; see `ratio`), as one sum of logarithms
    let ld = if space == crate::ir::Space::Simplex {
        let b = crate::ratio::simplex_matrix(em, &x, &y)?;
        let (pivots, _) = eliminate(em, n, &b, None);
        let terms = pivots.iter().map(|p| (*p, 2)).chain(y.iter().map(|v| (*v, 2))).chain(x.iter().map(|v| (*v, -2))).collect();
        em.push(Inst::LogProd { terms, scale: 0.5 })
    } else {
        let a = crate::ratio::tangent_matrix(em, &x, &y, space)?;
        let (pivots, _) = eliminate(em, n, &a, None);
        em.push(Inst::LogProd { terms: pivots.iter().map(|p| (*p, 2)).collect(), scale: 0.5 })
    };
    lds[0].push(ld);
    cur.copy_from_slice(&out);
    Ok(())
}

/// Whether the density direction of sphere flow `f` reads its input row only up to scale
/// (the data-side layer, past permutations, divides by a norm before anything else: the
/// inverse of a normalized linear or affine map), so that projecting the row is redundant.
fn scale_invariant_inverse(f: &FlowDerivation) -> bool {
    match f.layers.iter().rev().find(|l| !matches!(l.kind, LayerKind::Permute { .. })) {
        Some(l) => matches!(l.kind, LayerKind::Normalized(n) if n.multiplies()),
        None => false,
    }
}

/// Scheduling roots for forward/inverse: each coordinate's output, then its log-det sum.
fn interleave(cur: &[Value], per: &[Value], total: Value) -> Vec<Value> {
    cur.iter().zip(per).flat_map(|(a, b)| [*a, *b]).chain([total]).collect()
}

/// `body` without the instructions no output reads (in order); returns it and `outputs`
/// renumbered.
pub(crate) fn prune(body: Body, outputs: &[Value]) -> (Body, Vec<Value>) {
    let n = body.insts.len();
    let mut live = vec![false; n];
    for o in outputs {
        live[*o] = true;
    }
    for i in (0..n).rev() {
        if live[i] || matches!(body.insts[i], Inst::Accum { .. } | Inst::AccumDense { .. }) {
            live[i] = true;
            for a in body.insts[i].args() {
                live[a] = true;
            }
        }
    }
    let mut new_index = vec![usize::MAX; n];
    let mut kept = 0;
    for (i, l) in live.iter().enumerate() {
        if *l {
            new_index[i] = kept;
            kept += 1;
        }
    }
    let remap = |v: Value| new_index[v];
    let insts = body.insts.iter().enumerate().filter(|(i, _)| live[*i]).map(|(_, inst)| remap_inst(inst, &remap)).collect();
    (Body { insts }, outputs.iter().map(|v| remap(*v)).collect())
}

/// Roots whose depth-first schedules are interleaved.
const INTERLEAVE: usize = 4;

/// Reorders a body depth-first from `roots` (in order), so each root's work is contiguous and
/// few values are live at once; unreachable instructions are dropped. Returns the body and
/// `outputs` renumbered.
fn schedule(body: Body, roots: &[Value], outputs: &[Value]) -> (Body, Vec<Value>) {
    let n = body.insts.len();
    let mut new_index: Vec<Option<Value>> = vec![None; n];
    let mut order: Vec<usize> = Vec::with_capacity(n);
    // inputs first, in their order (loads are cheap and keep the text form readable)
    for (j, inst) in body.insts.iter().enumerate() {
        if matches!(inst, Inst::Input(_)) {
            new_index[j] = Some(order.len());
            order.push(j);
        }
    }
    // roots in groups of INTERLEAVE: each root's work depth-first, the group's lists merged
    // round-robin, so independent chains (a call's latency, a division's) overlap
    let mut taken = vec![false; n];
    for group in roots.chunks(INTERLEAVE) {
        let lists: Vec<Vec<usize>> = group
            .iter()
            .map(|&r| {
                // iterative post-order DFS
                let mut list = Vec::new();
                let mut stack: Vec<(usize, bool)> = vec![(r, false)];
                while let Some((j, expanded)) = stack.pop() {
                    if taken[j] || new_index[j].is_some() {
                        continue;
                    }
                    if expanded {
                        taken[j] = true;
                        list.push(j);
                        continue;
                    }
                    stack.push((j, true));
                    for a in body.insts[j].args().into_iter().rev() {
                        if !taken[a] && new_index[a].is_none() {
                            stack.push((a, false));
                        }
                    }
                }
                list
            })
            .collect();
        // a list reads only its own and earlier lists' values: the first is always ready
        let mut next = vec![0usize; lists.len()];
        let mut left: usize = lists.iter().map(Vec::len).sum();
        while left > 0 {
            for (l, list) in lists.iter().enumerate() {
                if let Some(&j) = list.get(next[l]) {
                    if body.insts[j].args().iter().all(|a| new_index[*a].is_some()) {
                        new_index[j] = Some(order.len());
                        order.push(j);
                        next[l] += 1;
                        left -= 1;
                    }
                }
            }
        }
    }
    let remap = |v: Value| new_index[v].expect("scheduled");
    let insts = order.iter().map(|&j| remap_inst(&body.insts[j], &remap)).collect();
    (Body { insts }, outputs.iter().map(|v| remap(*v)).collect())
}

/// `inst` with every value it reads renamed by `remap`.
pub(crate) fn remap_inst(inst: &Inst, remap: &dyn Fn(Value) -> Value) -> Inst {
    {
        match inst {
            Inst::Op(m, a) => Inst::Op(m.clone(), a.iter().map(|v| remap(*v)).collect()),
            Inst::RootFind { y, f, df, domain, increasing } => {
                Inst::RootFind { y: remap(*y), f: f.clone(), df: df.clone(), domain: *domain, increasing: *increasing }
            }
            Inst::Dense { inputs, weight, outputs, mask, rows } => Inst::Dense {
                inputs: inputs.iter().map(|v| remap(*v)).collect(),
                weight: *weight,
                outputs: *outputs,
                mask: *mask,
                rows: *rows,
            },
            Inst::Part(d, j) => Inst::Part(remap(*d), *j),
            Inst::Spline { x, raw, bins, bound, inverse, log_det } => Inst::Spline {
                x: remap(*x),
                raw: raw.iter().map(|v| remap(*v)).collect(),
                bins: *bins,
                bound: *bound,
                inverse: *inverse,
                log_det: *log_det,
            },
            Inst::DenseT { grads, weight, inputs, mask, rows } => Inst::DenseT {
                grads: grads.iter().map(|v| remap(*v)).collect(),
                weight: *weight,
                inputs: *inputs,
                mask: *mask,
                rows: *rows,
            },
            Inst::AccumDense { grads, inputs, weight, mask, rows, bias } => Inst::AccumDense {
                grads: grads.iter().map(|v| remap(*v)).collect(),
                inputs: inputs.iter().map(|v| remap(*v)).collect(),
                weight: *weight,
                mask: *mask,
                rows: *rows,
                bias: *bias,
            },
            Inst::Accum { param, value } => Inst::Accum { param: *param, value: remap(*value) },
            Inst::LogAbsDet { n, entries } => Inst::LogAbsDet { n: *n, entries: entries.iter().map(|v| remap(*v)).collect() },
            Inst::LogProd { terms, scale } => Inst::LogProd { terms: terms.iter().map(|(v, p)| (remap(*v), *p)).collect(), scale: *scale },
            Inst::Detach(v) => Inst::Detach(remap(*v)),
            other => other.clone(),
        }
    }
}

/// The forward and inverse kernels of one bijector on its own (a one-dimensional flow of one
/// layer, every parameter free: parameter `i` is `params[i]`). The forward kernel's outputs
/// are y and log|f'(x)|; the inverse kernel's x and log|f'(x)| at that x.
pub fn lower_bijector(d: &Derivation, name: &str) -> Result<[Kernel; 2], Diagnostics> {
    let Some(bi) = d.bijectors.iter().position(|b| b.name == name) else {
        return Err(Diagnostic::unlocated(format!("internal: no bijector `{name}`")).into());
    };
    let b = &d.bijectors[bi];
    let f = FlowDerivation {
        name: b.name.clone(),
        doc: b.doc.clone(),
        dim: 1,
        space: crate::ir::Space::Real,
        base: crate::ir::Base::Normal,
        layers: vec![crate::derive::LayerDerivation {
            kind: LayerKind::Elementwise,
            bijector: Some(bi),
            bound: Vec::new(),
            free: b.params.clone(),
        }],
        fused: Vec::new(),
        fusion_notes: Vec::new(),
    };
    let lower = |kind: Kind| {
        lower_kernel(d, &f, kind).map_err(|e| {
            Diagnostics::from(Diagnostic::unlocated(format!("internal: cannot lower the {} kernel of `{name}`: {e}", kind.name())))
        })
    };
    Ok([lower(Kind::Forward)?, lower(Kind::Inverse)?])
}

/// For each instruction, the `ifpos` branch it belongs to exclusively: `Some((ifpos, then?))`.
/// A backend computes those instructions only when some row takes that branch. Inputs,
/// `invariant` values (computed once per call), outputs, root-finds and nested `ifpos` stay
/// outside (computed before the branch).
pub fn branch_sets(k: &Kernel, invariant: &[bool]) -> Vec<Option<(usize, bool)>> {
    let n = k.body.insts.len();
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut is_output = vec![false; n];
    for (i, inst) in k.body.insts.iter().enumerate() {
        for a in inst.args() {
            users[a].push(i);
        }
    }
    for o in &k.outputs {
        is_output[*o] = true;
    }
    let mut deferred: Vec<Option<(usize, bool)>> = vec![None; n];
    for (p, inst) in k.body.insts.iter().enumerate() {
        let Inst::Op(Math::IfPos(_), args) = inst else { continue };
        for (side, root) in [(true, args[1]), (false, args[2])] {
            let movable = |j: usize| {
                !invariant[j]
                    && !is_output[j]
                    && !matches!(
                        k.body.insts[j],
                        Inst::Input(_)
                            | Inst::Op(Math::IfPos(_), _)
                            | Inst::RootFind { .. }
                            | Inst::Dense { .. }
                            | Inst::Part(..)
                            | Inst::Spline { .. }
                            | Inst::Seed
                            | Inst::DenseT { .. }
                            | Inst::AccumDense { .. }
                            | Inst::Accum { .. }
                    )
            };
            if !movable(root) || users[root].iter().any(|u| *u != p) || deferred[root].is_some() || args[0] == root {
                continue;
            }
            let mut member = vec![false; n];
            member[root] = true;
            for j in (0..root).rev() {
                if movable(j) && deferred[j].is_none() && !users[j].is_empty() && users[j].iter().all(|u| member[*u]) {
                    member[j] = true;
                }
            }
            for (j, m) in member.iter().enumerate() {
                if *m {
                    deferred[j] = Some((p, side));
                }
            }
        }
    }
    deferred
}

/// Lowers every flow of the derivation to its three kernels.
pub fn lower(d: &Derivation) -> Result<Program, Diagnostics> {
    let mut diags = Diagnostics::new();
    let mut kernels = Vec::new();
    for f in &d.flows {
        for kind in [Kind::Forward, Kind::Inverse, Kind::LogProb] {
            match lower_kernel(d, f, kind) {
                Ok(k) => kernels.push(k),
                Err(e) => {
                    diags.push(Diagnostic::unlocated(format!("internal: cannot lower the {} kernel of `{}`: {e}", kind.name(), f.name)))
                }
            }
        }
    }
    crate::dump("kernel", || kernels.iter().map(|k| k.to_string()).collect::<Vec<_>>().join("\n"));
    diags.into_result(Program { kernels })
}

/// W·x for a [`Inst::Dense`] (masked entries skipped), summed in input order; `w` from the
/// weight's start.
fn dense_f64<T: runtime::Real>(inputs: &[T], w: &[T], outputs: usize, mask: &Option<MadeMask>, rows: Rows) -> Vec<T> {
    let n = inputs.len();
    (0..outputs)
        .map(|o| {
            let r = rows.row(o);
            let mut acc = T::from_f64(0.0);
            for (i, x) in inputs.iter().enumerate() {
                if mask.map(|m| m.connected(r, i)).unwrap_or(true) {
                    acc = acc + w[r * n + i] * *x;
                }
            }
            acc
        })
        .collect()
}

fn run_insts(insts: &[Inst], inputs: &[f64], params: &[f64], grad: &mut [f64]) -> Vec<f64> {
    let mut vals: Vec<f64> = Vec::with_capacity(insts.len());
    let mut tuples: HashMap<usize, Vec<f64>> = HashMap::new();
    for (n, inst) in insts.iter().enumerate() {
        let v = match inst {
            Inst::Dense { inputs: xs, weight, outputs, mask, rows } => {
                let x: Vec<f64> = xs.iter().map(|v| vals[*v]).collect();
                tuples.insert(n, dense_f64(&x, &params[*weight..], *outputs, mask, *rows));
                f64::NAN
            }
            Inst::Part(d, j) => tuples[d][*j],
            Inst::Input(i) => inputs[*i],
            Inst::Param(i) => params[*i],
            Inst::Const(c) => *c,
            Inst::Op(m, args) => {
                let a: Vec<f64> = args.iter().map(|v| vals[*v]).collect();
                eval::apply(m, &a)
            }
            Inst::RootFind { y, f, df, domain, increasing } => {
                let fx = |x: f64| run_insts(&f.insts, &[x], params, &mut [])[f.result];
                let dfx = |x: f64| run_insts(&df.insts, &[x], params, &mut [])[df.result];
                crate::derive::rootfind::solve(&fx, &dfx, vals[*y], *domain, *increasing).unwrap_or(f64::NAN)
            }
            Inst::Spline { x, raw, bins, bound, inverse, log_det } => {
                let r: Vec<f64> = raw.iter().map(|v| vals[*v]).collect();
                spline_value(vals[*x], &r, *bins, *bound, *inverse, *log_det)
            }
            Inst::Seed => 1.0,
            Inst::DenseT { grads, weight, inputs: k, mask, rows } => {
                let g: Vec<f64> = grads.iter().map(|v| vals[*v]).collect();
                tuples.insert(n, dense_t(&g, &params[*weight..], *k, mask, *rows));
                f64::NAN
            }
            Inst::AccumDense { grads, inputs: xs, weight, mask, rows, bias } => {
                accum_dense(grads.iter().map(|v| vals[*v]), xs.iter().map(|v| vals[*v]), &mut grad[*weight..], mask, *rows);
                if let Some(b) = bias {
                    for (o, g) in grads.iter().enumerate() {
                        grad[b + rows.row(o)] += vals[*g];
                    }
                }
                f64::NAN
            }
            Inst::Accum { param, value } => {
                grad[*param] += vals[*value];
                f64::NAN
            }
            Inst::LogAbsDet { n: m, entries } => {
                let mut a: Vec<f64> = entries.iter().map(|v| vals[*v]).collect();
                log_abs_det(&mut a, *m)
            }
            Inst::LogProd { terms, scale } => scale * terms.iter().map(|(v, p)| *p as f64 * vals[*v].ln()).sum::<f64>(),
            Inst::Detach(v) => vals[*v],
        };
        vals.push(v);
    }
    vals
}

/// log|det A| of the n × n row-major `a` (overwritten), by elimination with partial pivoting:
/// Σ log|pivot| (−inf when A is singular). The value of [`Inst::LogAbsDet`].
pub fn log_abs_det(a: &mut [f64], n: usize) -> f64 {
    let mut ld = 0.0;
    for c in 0..n {
        let p = (c..n).max_by(|x, y| a[x * n + c].abs().total_cmp(&a[y * n + c].abs())).unwrap_or(c);
        if p != c {
            for j in 0..n {
                a.swap(p * n + j, c * n + j);
            }
        }
        let d = a[c * n + c];
        ld += d.abs().ln();
        if d == 0.0 {
            return ld;
        }
        for r in c + 1..n {
            let q = a[r * n + c] / d;
            for j in c..n {
                a[r * n + j] -= q * a[c * n + j];
            }
        }
    }
    ld
}

/// One output of [`Inst::Spline`] (f64 or f32).
fn spline_value<T: runtime::Real>(x: T, raw: &[T], bins: usize, bound: f64, inverse: bool, log_det: bool) -> T {
    let (y, ld) = if inverse { runtime::spline::inverse(x, raw, bins, bound) } else { runtime::spline::forward(x, raw, bins, bound) };
    if log_det {
        ld
    } else {
        y
    }
}

/// Wᵀ·g for W [g.len() × k] (masked entries skipped), summed in output order.
fn dense_t<T: runtime::Real>(g: &[T], w: &[T], k: usize, mask: &Option<MadeMask>, rows: Rows) -> Vec<T> {
    (0..k)
        .map(|i| {
            let mut acc = T::from_f64(0.0);
            for (o, go) in g.iter().enumerate() {
                let r = rows.row(o);
                if mask.map(|m| m.connected(r, i)).unwrap_or(true) {
                    acc = acc + w[r * k + i] * *go;
                }
            }
            acc
        })
        .collect()
}

/// gw[o·k + i] += g[o]·x[i] for the connected entries.
fn accum_dense<T: runtime::Real>(
    g: impl Iterator<Item = T>,
    x: impl Iterator<Item = T> + Clone,
    gw: &mut [T],
    mask: &Option<MadeMask>,
    rows: Rows,
) {
    let xs: Vec<T> = x.collect();
    let k = xs.len();
    for (o, go) in g.enumerate() {
        let r = rows.row(o);
        for (i, xi) in xs.iter().enumerate() {
            if mask.map(|m| m.connected(r, i)).unwrap_or(true) {
                gw[r * k + i] = gw[r * k + i] + go * *xi;
            }
        }
    }
}

fn run_insts_f32(insts: &[Inst], inputs: &[f32], params: &[f32], grad: &mut [f32]) -> Vec<f32> {
    let mut vals: Vec<f32> = Vec::with_capacity(insts.len());
    let mut tuples: HashMap<usize, Vec<f32>> = HashMap::new();
    for (n, inst) in insts.iter().enumerate() {
        let v = match inst {
            Inst::Dense { inputs: xs, weight, outputs, mask, rows } => {
                let x: Vec<f32> = xs.iter().map(|v| vals[*v]).collect();
                tuples.insert(n, dense_f64(&x, &params[*weight..], *outputs, mask, *rows));
                f32::NAN
            }
            Inst::Part(d, j) => tuples[d][*j],
            Inst::Input(i) => inputs[*i],
            Inst::Param(i) => params[*i],
            Inst::Const(c) => *c as f32,
            Inst::Op(Math::IfPos(_), args) => {
                if vals[args[0]] > 0.0 {
                    vals[args[1]]
                } else {
                    vals[args[2]]
                }
            }
            Inst::Op(m, args) => {
                let a: Vec<f32> = args.iter().map(|v| vals[*v]).collect();
                eval::apply_f32(m, &a)
            }
            Inst::RootFind { y, f, df, domain, increasing } => {
                let fx = |x: f64| run_insts_f32(&f.insts, &[x as f32], params, &mut [])[f.result] as f64;
                let dfx = |x: f64| run_insts_f32(&df.insts, &[x as f32], params, &mut [])[df.result] as f64;
                use crate::derive::rootfind::{solve_on, Grid};
                solve_on(Grid::F32, &fx, &dfx, vals[*y] as f64, *domain, *increasing).unwrap_or(f64::NAN) as f32
            }
            Inst::Spline { x, raw, bins, bound, inverse, log_det } => {
                let r: Vec<f32> = raw.iter().map(|v| vals[*v]).collect();
                spline_value(vals[*x], &r, *bins, *bound, *inverse, *log_det)
            }
            Inst::Seed => 1.0,
            Inst::DenseT { grads, weight, inputs: k, mask, rows } => {
                let g: Vec<f32> = grads.iter().map(|v| vals[*v]).collect();
                tuples.insert(n, dense_t(&g, &params[*weight..], *k, mask, *rows));
                f32::NAN
            }
            Inst::AccumDense { grads, inputs: xs, weight, mask, rows, bias } => {
                accum_dense(grads.iter().map(|v| vals[*v]), xs.iter().map(|v| vals[*v]), &mut grad[*weight..], mask, *rows);
                if let Some(b) = bias {
                    for (o, g) in grads.iter().enumerate() {
                        grad[b + rows.row(o)] += vals[*g];
                    }
                }
                f32::NAN
            }
            Inst::Accum { param, value } => {
                grad[*param] += vals[*value];
                f32::NAN
            }
            Inst::LogAbsDet { n: m, entries } => {
                let mut a: Vec<f64> = entries.iter().map(|v| vals[*v] as f64).collect();
                log_abs_det(&mut a, *m) as f32
            }
            Inst::LogProd { terms, scale } => *scale as f32 * terms.iter().map(|(v, p)| *p as f32 * vals[*v].ln()).sum::<f32>(),
            Inst::Detach(v) => vals[*v],
        };
        vals.push(v);
    }
    vals
}

/// Interprets a kernel on one row in f32 semantics (every value rounded to f32).
pub fn run_f32(k: &Kernel, row: &[f32], params: &[f32]) -> Vec<f32> {
    let vals = run_insts_f32(&k.body.insts, row, params, &mut vec![0.0; grad_len(k)]);
    k.outputs.iter().map(|v| vals[*v]).collect()
}

/// Interprets a kernel on one row (the reference for the backends).
pub fn run(k: &Kernel, row: &[f64], params: &[f64]) -> Vec<f64> {
    let vals = run_insts(&k.body.insts, row, params, &mut vec![0.0; grad_len(k)]);
    k.outputs.iter().map(|v| vals[*v]).collect()
}

/// The gradient buffer a kernel accumulates into (empty unless a [`Kind::Gradient`] kernel).
fn grad_len(k: &Kernel) -> usize {
    if k.kind == Kind::Gradient {
        k.param_len()
    } else {
        0
    }
}

/// Interprets a gradient kernel on one row: its outputs, with the row's gradient added to
/// `grad` (`param_len` values).
pub fn run_grad(k: &Kernel, row: &[f64], params: &[f64], grad: &mut [f64]) -> Vec<f64> {
    assert_eq!(grad.len(), k.param_len(), "one gradient entry per parameter");
    let vals = run_insts(&k.body.insts, row, params, grad);
    k.outputs.iter().map(|v| vals[*v]).collect()
}

/// [`run_grad`] in f32 semantics.
pub fn run_grad_f32(k: &Kernel, row: &[f32], params: &[f32], grad: &mut [f32]) -> Vec<f32> {
    assert_eq!(grad.len(), k.param_len(), "one gradient entry per parameter");
    let vals = run_insts_f32(&k.body.insts, row, params, grad);
    k.outputs.iter().map(|v| vals[*v]).collect()
}

/// ` rows a, a+s, ..` unless every row.
fn rows_text(rows: &Rows) -> String {
    if *rows == Rows::ALL {
        String::new()
    } else {
        format!(" rows {}+{}k", rows.first, rows.step)
    }
}

fn write_insts(f: &mut fmt::Formatter<'_>, insts: &[Inst], indent: &str) -> fmt::Result {
    for (n, inst) in insts.iter().enumerate() {
        match inst {
            Inst::Input(i) => writeln!(f, "{indent}v{n} = in {i}")?,
            Inst::Param(i) => writeln!(f, "{indent}v{n} = param {i}")?,
            Inst::Const(c) => writeln!(
                f,
                "{indent}v{n} = const {}",
                crate::ir::Const::new(*c).map(|c| c.to_string()).unwrap_or_else(|| format!("{c:?}"))
            )?,
            Inst::Op(m, args) => {
                let a: Vec<String> = args.iter().map(|v| format!("v{v}")).collect();
                writeln!(f, "{indent}v{n} = {} {}", m, a.join(" "))?
            }
            Inst::Dense { inputs, weight, outputs, mask, rows } => {
                let a: Vec<String> = inputs.iter().map(|v| format!("v{v}")).collect();
                let m = mask.map(|m| format!(" made({}/{}, {})", m.layer, m.layers, m.dim)).unwrap_or_default();
                writeln!(f, "{indent}v{n} = dense [{outputs}x{}] params[{weight}..]{}{m} ({})", inputs.len(), rows_text(rows), a.join(" "))?
            }
            Inst::Part(d, j) => writeln!(f, "{indent}v{n} = part v{d} {j}")?,
            Inst::Seed => writeln!(f, "{indent}v{n} = seed")?,
            Inst::DenseT { grads, weight, inputs, mask, rows } => {
                let a: Vec<String> = grads.iter().map(|v| format!("v{v}")).collect();
                let m = mask.map(|m| format!(" made({}/{}, {})", m.layer, m.layers, m.dim)).unwrap_or_default();
                writeln!(
                    f,
                    "{indent}v{n} = dense_t [{}x{inputs}]ᵀ params[{weight}..]{}{m} ({})",
                    grads.len(),
                    rows_text(rows),
                    a.join(" ")
                )?
            }
            Inst::AccumDense { grads, inputs, weight, mask, rows, bias } => {
                let g: Vec<String> = grads.iter().map(|v| format!("v{v}")).collect();
                let x: Vec<String> = inputs.iter().map(|v| format!("v{v}")).collect();
                let m = mask.map(|m| format!(" made({}/{}, {})", m.layer, m.layers, m.dim)).unwrap_or_default();
                writeln!(f, "{indent}grad[{weight}..]{} += ({}) ⊗ ({}){m}", rows_text(rows), g.join(" "), x.join(" "))?;
                if let Some(b) = bias {
                    writeln!(f, "{indent}grad[{b}..] += ({})", g.join(" "))?
                }
            }
            Inst::Accum { param, value } => writeln!(f, "{indent}grad[{param}] += v{value}")?,
            Inst::LogAbsDet { n: m, entries } => {
                let a: Vec<String> = entries.iter().map(|v| format!("v{v}")).collect();
                writeln!(f, "{indent}v{n} = log_abs_det [{m}x{m}] ({})", a.join(" "))?
            }
            Inst::LogProd { terms, scale } => {
                let a: Vec<String> = terms.iter().map(|(v, p)| format!("{p}·ln v{v}")).collect();
                writeln!(f, "{indent}v{n} = {scale}·({})", a.join(" + "))?
            }
            Inst::Detach(v) => writeln!(f, "{indent}v{n} = detach v{v}")?,
            Inst::Spline { x, raw, bins, bound, inverse, log_det } => {
                let a: Vec<String> = raw.iter().map(|v| format!("v{v}")).collect();
                let what = match (inverse, log_det) {
                    (false, false) => "spline",
                    (false, true) => "spline_log_slope",
                    (true, false) => "spline_inverse",
                    (true, true) => "spline_log_slope_at_inverse",
                };
                writeln!(f, "{indent}v{n} = {what}[bins {bins}, bound {bound}] v{x} ({})", a.join(" "))?
            }
            Inst::RootFind { y, f: fb, df, domain, increasing } => {
                writeln!(f, "{indent}v{n} = rootfind v{y} on {domain} ({}) {{", if *increasing { "increasing" } else { "decreasing" })?;
                writeln!(f, "{indent}  f (returns v{}):", fb.result)?;
                write_insts(f, &fb.insts, &format!("{indent}    "))?;
                writeln!(f, "{indent}  f' (returns v{}):", df.result)?;
                write_insts(f, &df.insts, &format!("{indent}    "))?;
                writeln!(f, "{indent}}}")?;
            }
        }
    }
    Ok(())
}

impl fmt::Display for Kernel {
    /// The text form (snapshot-tested).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "kernel {}.{}(row: [{}], params: [{}]) -> [{}]",
            self.flow,
            self.kind.name(),
            self.dim,
            self.param_len(),
            self.outputs.len()
        )?;
        for p in &self.params {
            writeln!(f, "  param {} = params[{}..{}]", p.name, p.offset, p.offset + p.len)?;
        }
        write_insts(f, &self.body.insts, "  ")?;
        let outs: Vec<String> = self.outputs.iter().map(|v| format!("v{v}")).collect();
        writeln!(f, "  out {}", outs.join(" "))
    }
}
