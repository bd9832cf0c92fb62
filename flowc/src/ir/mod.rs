//! Stage 2: [`Ast`] → [`Module`]: checked bijectors and flows over the expression graph.
//!
//! ```
//! let ast = flowc::dsl::parse("bijector shift(x; t: real) = x + t;").unwrap();
//! let m = flowc::ir::build(&ast).unwrap();
//! assert_eq!(flowc::ir::expr::to_infix(&m.bijectors[0].forward), "x + t");
//! ```

pub mod eval;
pub mod expr;
pub mod hp;
pub mod interval;
pub mod layer;
pub mod map;
pub mod op;

use crate::diag::{Diagnostic, Diagnostics, Span};
use crate::dsl::{self, Ast, BinOp, Domain, InverseSpec, Item, Term};
use egg::{Id, Symbol};
pub use expr::{Builder, Expr};
pub use interval::Interval;
pub use layer::{Activation, Calibration, Layer, Net, Normalized};
pub use op::{Const, Math};

/// The bijector's input symbol (whatever the user called it) and its output symbol.
pub const X: &str = "x";
pub const Y: &str = "y";

/// How a parameter is constrained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamKind {
    /// any real number
    Real,
    /// (0, inf); stored unconstrained and mapped by softplus
    Positive,
    /// (0, 1); stored unconstrained and mapped by sigmoid
    Unit,
}

impl ParamKind {
    pub fn parse(s: &str) -> Option<ParamKind> {
        match s {
            "real" => Some(ParamKind::Real),
            "positive" => Some(ParamKind::Positive),
            "unit" => Some(ParamKind::Unit),
            _ => None,
        }
    }
    pub fn interval(self) -> Interval {
        match self {
            ParamKind::Real => Interval::REAL,
            ParamKind::Positive => Interval::POSITIVE,
            ParamKind::Unit => Interval::UNIT,
        }
    }
    /// The value an unset parameter takes (the identity-like initialization).
    pub fn default_value(self) -> f64 {
        match self {
            ParamKind::Real => 0.0,
            ParamKind::Positive => 1.0,
            ParamKind::Unit => 0.5,
        }
    }
    /// Values used to check a formula over the parameter space.
    pub fn samples(self) -> &'static [f64] {
        match self {
            ParamKind::Real => &[-1.25, 0.0, 0.375],
            ParamKind::Positive => &[0.3, 1.0, 2.5],
            ParamKind::Unit => &[0.2, 0.5, 0.9],
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            ParamKind::Real => "real",
            ParamKind::Positive => "positive",
            ParamKind::Unit => "unit",
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Param {
    pub name: String,
    pub kind: ParamKind,
}

/// What the user said about the inverse.
#[derive(Debug, Clone)]
pub enum InverseHint {
    Derive,
    Numeric,
    /// In terms of `y` and the parameters; spans the user's expression.
    Given(Expr, Span),
}

/// A scalar bijector `y = f(x; params)` on an interval domain.
#[derive(Debug, Clone)]
pub struct Bijector {
    pub name: String,
    pub doc: String,
    pub span: Span,
    pub body_span: Span,
    pub domain: Interval,
    pub params: Vec<Param>,
    /// In terms of `x` and the parameters.
    pub forward: Expr,
    pub inverse: InverseHint,
    /// The built-in rational-quadratic spline (`forward` is then a placeholder): see
    /// [`layer::Spline`].
    pub spline: Option<layer::Spline>,
}

impl Bijector {
    pub fn param(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.name == name)
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Base {
    /// standard normal in every coordinate (on R^n)
    Normal,
    /// uniform on the sphere, in its surface measure: log density −log|S^(n−1)|
    Uniform,
    /// von Mises–Fisher on the sphere with concentration κ > 0 and mean direction the last
    /// axis: log density log C_n(κ) + κ·x_n in the surface measure
    Vmf(f64),
    /// Dirichlet(α) on the simplex, in its surface measure (the usual density over √n);
    /// `base uniform` on the simplex is α = 1
    Dirichlet(Vec<f64>),
}

/// Where a flow's points live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Space {
    /// R^n
    #[default]
    Real,
    /// the unit sphere S^(n−1) ⊂ R^n (`sphere(n)`): rows with ‖x‖ = 1; densities are with
    /// respect to the sphere's surface measure
    Sphere,
    /// the open simplex {x ∈ R^n: x_i > 0, Σx = 1} (`simplex(n)`); densities are with respect
    /// to its (n − 1)-dimensional surface measure
    Simplex,
}

impl Space {
    /// The space of dimension `n` as written in the language.
    pub fn spelled(self, n: usize) -> String {
        match self {
            Space::Real => format!("R^{n}"),
            Space::Sphere => format!("sphere({n})"),
            Space::Simplex => format!("simplex({n})"),
        }
    }
}

/// `flow NAME(x: R^n) { base ...; layers }`, layers in the generative direction (base first).
#[derive(Debug, Clone)]
pub struct Flow {
    pub name: String,
    pub doc: String,
    pub span: Span,
    /// The ambient dimension n (the sphere S^(n−1) has n coordinates).
    pub dim: usize,
    pub space: Space,
    pub base: Base,
    pub layers: Vec<Layer>,
}

/// Everything one source file defines.
#[derive(Debug, Clone, Default)]
pub struct Module {
    pub bijectors: Vec<Bijector>,
    pub flows: Vec<Flow>,
    /// User-written maps of the sphere and the simplex.
    pub maps: Vec<map::Map>,
}

impl Module {
    pub fn bijector(&self, name: &str) -> Option<&Bijector> {
        self.bijectors.iter().find(|b| b.name == name)
    }
    pub fn flow(&self, name: &str) -> Option<&Flow> {
        self.flows.iter().find(|f| f.name == name)
    }
    /// Names of all flows and bijectors, for messages.
    pub fn names(&self) -> Vec<String> {
        self.flows
            .iter()
            .map(|f| f.name.clone())
            .chain(self.bijectors.iter().map(|b| b.name.clone()))
            .chain(self.maps.iter().map(|m| m.name.clone()))
            .collect()
    }
}

/// Parses an s-expression such as `(+ x 1)` into an [`Expr`] (tests and docs).
pub fn parse_expr(s: &str) -> Expr {
    s.parse().expect("valid s-expression")
}

/// Levenshtein distance, for "did you mean" hints.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push((prev[j] + (ca != *cb) as usize).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// "did you mean `x`?" when a close name exists.
pub fn suggest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    candidates
        .into_iter()
        .map(|c| (distance(name, c), c))
        .filter(|(d, c)| *d <= 1.max(name.len() / 3) && *d < c.len())
        .min()
        .map(|(_, c)| c.to_string())
}

/// Turns an expression of the flow language into the IR, collecting every error.
struct Lowering<'a> {
    var: &'a str,
    /// symbols that may appear (besides the variable and pi/e)
    allowed: &'a [String],
    diags: &'a mut Diagnostics,
    builder: Builder,
}

impl Lowering<'_> {
    fn lower(&mut self, e: &dsl::Expr) -> Id {
        match e {
            dsl::Expr::Num(v, span) => {
                if !v.is_finite() {
                    self.diags.push(Diagnostic::at(*span, "this number does not fit in an f64"));
                    return self.builder.num(0.0);
                }
                self.builder.num(*v)
            }
            dsl::Expr::Var(id) => {
                if id.name == self.var {
                    return self.builder.sym(X);
                }
                if id.name == "pi" || id.name == "e" || self.allowed.contains(&id.name) {
                    return self.builder.sym(&id.name);
                }
                let mut d = Diagnostic::at(id.span, format!("unknown name `{}`", id.name));
                let cands = self.allowed.iter().map(|s| s.as_str()).chain([self.var, "pi", "e"]);
                d = match suggest(&id.name, cands) {
                    Some(s) => d.help(format!("did you mean `{s}`?")),
                    None if self.var == Y => d.help("an inverse is written in terms of `y` and the parameters"),
                    None => d.help(format!("declare it as a parameter, e.g. `({}; {}: real)`", self.var, id.name)),
                };
                self.diags.push(d);
                self.builder.sym(&id.name)
            }
            dsl::Expr::Neg(a, _) => {
                let a = self.lower(a);
                self.builder.add(Math::Neg(a))
            }
            dsl::Expr::Binary(op, a, b, _) => {
                let a = self.lower(a);
                let b = self.lower(b);
                self.builder.add(match op {
                    BinOp::Add => Math::Add([a, b]),
                    BinOp::Sub => Math::Sub([a, b]),
                    BinOp::Mul => Math::Mul([a, b]),
                    BinOp::Div => Math::Div([a, b]),
                })
            }
            dsl::Expr::Call(f, args, _) => {
                let ids: Vec<Id> = args.iter().map(|a| self.lower(a)).collect();
                match op::function(&f.name) {
                    Some((arity, mk)) if arity == ids.len() => self.builder.add(mk(&ids)),
                    Some((arity, _)) => {
                        let example = if arity == 2 { format!("{}(a, b)", f.name) } else { format!("{}(u)", f.name) };
                        self.diags.push(
                            Diagnostic::at(
                                f.span,
                                format!("`{}` takes {} argument{}, found {}", f.name, arity, if arity == 1 { "" } else { "s" }, ids.len()),
                            )
                            .help(format!("write `{example}`")),
                        );
                        self.builder.num(0.0)
                    }
                    None => {
                        let mut d = Diagnostic::at(f.span, format!("unknown function `{}`", f.name));
                        d = match suggest(&f.name, op::FUNCTIONS.iter().copied()) {
                            Some(s) => d.help(format!("did you mean `{s}`?")),
                            None => d.help(format!("known functions: {}", op::FUNCTIONS.join(", "))),
                        };
                        self.diags.push(d);
                        self.builder.num(0.0)
                    }
                }
            }
        }
    }
}

/// Evaluates a constant expression (domain bounds, bound parameter values).
fn constant(e: &dsl::Expr, diags: &mut Diagnostics, what: &str) -> Option<f64> {
    let mut tmp = Diagnostics::new();
    let mut l = Lowering { var: "\u{0}", allowed: &[], diags: &mut tmp, builder: Builder::new() };
    let root = l.lower(e);
    let ex = l.builder.finish(root);
    if tmp.has_errors() {
        diags.push(Diagnostic::at(e.span(), format!("{what} must be a constant number")).help("write a number such as `0.5` or `2 * pi`"));
        return None;
    }
    let v = hp::eval(&ex, &[]);
    match v {
        Some(v) if v.is_finite() => Some(v),
        _ if matches!(e, dsl::Expr::Var(id) if id.name == "inf") => Some(f64::INFINITY),
        _ => {
            diags.push(Diagnostic::at(e.span(), format!("{what} is not a finite number")));
            None
        }
    }
}

fn domain_bound(e: &dsl::Expr, diags: &mut Diagnostics) -> Option<f64> {
    // `inf` and `-inf` are allowed as interval bounds
    match e {
        dsl::Expr::Var(id) if id.name == "inf" => return Some(f64::INFINITY),
        dsl::Expr::Neg(inner, _) if matches!(&**inner, dsl::Expr::Var(id) if id.name == "inf") => return Some(f64::NEG_INFINITY),
        _ => {}
    }
    constant(e, diags, "an interval bound")
}

const RESERVED: &[&str] = &["x", "y", "pi", "e", "inf"];

fn build_bijector(b: &dsl::BijectorDef, diags: &mut Diagnostics) -> Bijector {
    let mut params: Vec<Param> = Vec::new();
    for p in &b.params {
        if p.name.name == b.var.name || RESERVED.contains(&p.name.name.as_str()) {
            diags.push(
                Diagnostic::at(p.name.span, format!("`{}` cannot name a parameter", p.name.name))
                    .help(format!("`{}`, `y`, `pi`, `e` and `inf` are reserved; choose another name", b.var.name)),
            );
            continue;
        }
        if params.iter().any(|q| q.name == p.name.name) {
            diags.push(
                Diagnostic::at(p.name.span, format!("parameter `{}` is declared twice", p.name.name)).help("remove or rename one of them"),
            );
            continue;
        }
        match ParamKind::parse(&p.kind.name) {
            Some(kind) => params.push(Param { name: p.name.name.clone(), kind }),
            None => {
                let mut d = Diagnostic::at(p.kind.span, format!("unknown parameter kind `{}`", p.kind.name));
                d = d.help(match suggest(&p.kind.name, ["real", "positive", "unit"]) {
                    Some(s) => format!("did you mean `{s}`? kinds are `real`, `positive` and `unit`"),
                    None => "kinds are `real`, `positive` (> 0) and `unit` (in (0, 1))".to_string(),
                });
                diags.push(d);
                params.push(Param { name: p.name.name.clone(), kind: ParamKind::Real });
            }
        }
    }
    if b.var.name == Y || b.var.name == "pi" || b.var.name == "e" {
        diags.push(Diagnostic::at(b.var.span, format!("`{}` cannot name the input", b.var.name)).help("call the input `x`"));
    }
    let domain = match &b.domain {
        None => Interval::REAL,
        Some(Domain::Named(id)) => match id.name.as_str() {
            "real" => Interval::REAL,
            "positive" => Interval::POSITIVE,
            "unit" => Interval::UNIT,
            other => {
                diags.push(
                    Diagnostic::at(id.span, format!("unknown domain `{other}`"))
                        .help("write `real`, `positive`, `unit` or an interval `(lo, hi)`"),
                );
                Interval::REAL
            }
        },
        Some(Domain::Interval(lo, hi, span)) => {
            let l = domain_bound(lo, diags);
            let h = domain_bound(hi, diags);
            match (l, h) {
                (Some(l), Some(h)) if l < h => Interval::open(l, h),
                (Some(_), Some(_)) => {
                    diags.push(Diagnostic::at(*span, "the interval's lower bound must be below its upper bound"));
                    Interval::REAL
                }
                _ => Interval::REAL,
            }
        }
    };
    let names: Vec<String> = params.iter().map(|p| p.name.clone()).collect();
    let before = diags.0.len();
    let mut l = Lowering { var: &b.var.name, allowed: &names, diags, builder: Builder::new() };
    let root = l.lower(&b.body);
    let forward = l.builder.finish(root);
    let body_ok = diags.0.len() == before;
    if body_ok && !expr::mentions(&forward, Symbol::from(X)) {
        diags.push(
            Diagnostic::at(b.body.span(), format!("the formula does not use the input `{}`", b.var.name))
                .help(format!("a bijector maps `{}` to a value; write it in terms of `{}`", b.var.name, b.var.name)),
        );
    }
    for p in params.iter().filter(|_| body_ok) {
        if !expr::mentions(&forward, Symbol::from(p.name.as_str())) {
            let span = b.params.iter().find(|q| q.name.name == p.name).map(|q| q.name.span).unwrap_or(b.name.span);
            diags.push(Diagnostic::at(span, format!("parameter `{}` is not used in the formula", p.name)).help("remove it or use it"));
        }
    }
    let inverse = match &b.inverse {
        InverseSpec::Derive => InverseHint::Derive,
        InverseSpec::Numeric(_) => InverseHint::Numeric,
        InverseSpec::Given(e) => {
            let mut l = Lowering { var: Y, allowed: &names, diags, builder: Builder::new() };
            let root = l.lower(e);
            let inv = l.builder.finish(root);
            if !expr::mentions(&inv, Symbol::from(X)) {
                diags.push(
                    Diagnostic::at(e.span(), "the inverse does not use `y`")
                        .help("write the inverse in terms of `y`, e.g. `where inverse = y - t`"),
                );
            }
            // inside the inverse the input symbol is `y`; it was lowered to X, rename it
            let mut rb = Builder::new();
            let y = rb.sym(Y);
            let r = rb.substitute(&inv, expr::root(&inv), Symbol::from(X), y);
            InverseHint::Given(rb.finish(r), Span::of(e.span()))
        }
    };
    Bijector {
        name: b.name.name.clone(),
        doc: b.doc.clone(),
        span: Span::of(b.name.span),
        body_span: Span::of(b.body.span()),
        domain,
        params,
        forward,
        inverse,
        spline: None,
    }
}

fn term_name(t: &Term) -> String {
    match t {
        Term::Call { name, .. } => name.name.clone(),
        Term::List(..) => "[...]".into(),
        Term::Expr(_) => "a number".into(),
    }
}

/// Resolves a bijector term `NAME` or `NAME(p = 0.5, ...)`: its index and bound parameters.
fn bijector_ref(t: &Term, bijectors: &[Bijector], diags: &mut Diagnostics) -> Option<(usize, Vec<(String, f64)>)> {
    let Term::Call { name: bname, args: bargs, .. } = t else {
        diags.push(Diagnostic::at(t.span(), "expected a bijector name"));
        return None;
    };
    let Some(bi) = bijectors.iter().position(|b| b.name == bname.name) else {
        let mut d = Diagnostic::at(bname.span, format!("unknown bijector `{}`", bname.name));
        if bname.is("spline") {
            diags.push(d.help(
                "the built-in `spline(bins = K, bound = B)` is a bijector of `coupling`, `autoregressive` and `inverse_autoregressive` layers, whose networks set its parameters",
            ));
            return None;
        }
        d = match suggest(&bname.name, bijectors.iter().map(|b| b.name.as_str())) {
            Some(s) => d.help(format!("did you mean `{s}`?")),
            None => d.help(format!("define it first: `bijector {}(x; ...) = ...;`", bname.name)),
        };
        diags.push(d);
        return None;
    };
    let b = &bijectors[bi];
    let mut bound: Vec<(String, f64)> = Vec::new();
    let mut ok = true;
    for a in bargs {
        let Some(pname) = &a.name else {
            diags.push(Diagnostic::at(a.value.span(), "bind parameters by name").help(format!("write `{}(p = 0.5)`", b.name)));
            ok = false;
            continue;
        };
        let Some(p) = b.param(&pname.name) else {
            let mut d = Diagnostic::at(pname.span, format!("bijector `{}` has no parameter `{}`", b.name, pname.name));
            let list: Vec<&str> = b.params.iter().map(|p| p.name.as_str()).collect();
            d = match suggest(&pname.name, list.iter().copied()) {
                Some(s) => d.help(format!("did you mean `{s}`?")),
                None if list.is_empty() => d.help("it has no parameters"),
                None => d.help(format!("its parameters are: {}", list.join(", "))),
            };
            diags.push(d);
            ok = false;
            continue;
        };
        if bound.iter().any(|(n, _)| *n == p.name) {
            diags.push(Diagnostic::at(pname.span, format!("parameter `{}` is bound twice", p.name)));
            ok = false;
            continue;
        }
        let Term::Expr(e) = &a.value else {
            diags.push(Diagnostic::at(a.value.span(), "a bound parameter must be a number"));
            ok = false;
            continue;
        };
        let Some(v) = constant(e, diags, "a bound parameter") else {
            ok = false;
            continue;
        };
        if !p.kind.interval().contains(v) || (p.kind != ParamKind::Real && (v <= p.kind.interval().lo || v >= p.kind.interval().hi)) {
            diags.push(
                Diagnostic::at(
                    e.span(),
                    format!("`{}` is `{}`, which needs a value in {}; got {v}", p.name, p.kind.name(), p.kind.interval()),
                )
                .help("choose a value inside the parameter's range"),
            );
            ok = false;
            continue;
        }
        bound.push((p.name.clone(), v));
    }
    if b.domain != Interval::REAL {
        diags.push(
            Diagnostic::at(
                bname.span,
                format!("bijector `{}` is defined on {}, but a flow on R^n needs a bijector of the whole real line", b.name, b.domain),
            )
            .help("use it inside a flow after a layer that maps into its domain (later), or define it on `real`"),
        );
        ok = false;
    }
    ok.then_some((bi, bound))
}

/// The base distribution of a flow on `space` (of ambient dimension `dim`): `normal` on R^n,
/// `uniform` on the sphere, `uniform` or `dirichlet([α...])` on the simplex.
fn build_base(t: Option<&Term>, space: Space, dim: usize, diags: &mut Diagnostics) -> Base {
    let default = match space {
        Space::Real => Base::Normal,
        Space::Sphere => Base::Uniform,
        Space::Simplex => Base::Dirichlet(vec![1.0; dim]),
    };
    let Some(t) = t else { return default };
    let (name, args) = match t {
        Term::Call { name, args, .. } => (name.name.as_str(), args.as_slice()),
        _ => ("", &[][..]),
    };
    let help = match space {
        Space::Real => "write `base normal;`",
        Space::Sphere => "write `base uniform;` (uniform on the sphere) or `base vmf(4);` (von Mises–Fisher, κ = 4, about the last axis)",
        Space::Simplex => "write `base uniform;` or `base dirichlet([1, 1, 1]);` (one α > 0 per coordinate)",
    };
    match (space, name) {
        (Space::Real, "normal") | (Space::Sphere, "uniform") | (Space::Simplex, "uniform") if args.is_empty() => return default,
        (Space::Sphere, "vmf") => {
            match args {
                [dsl::Arg { name: None, value: Term::Expr(dsl::Expr::Num(k, _)) }] if *k > 0.0 && k.is_finite() => return Base::Vmf(*k),
                _ => diags.push(
                    Diagnostic::at(t.span(), "`vmf` takes its concentration κ, a positive number")
                        .help("write `base vmf(4);`: density ∝ exp(κ·x_n), about the last axis"),
                ),
            }
            return default;
        }
        (Space::Simplex, "dirichlet") => {
            let alpha: Option<Vec<f64>> = match args {
                [dsl::Arg { name: None, value: Term::List(items, _) }] => items
                    .iter()
                    .map(|it| match it {
                        Term::Expr(dsl::Expr::Num(v, _)) if *v > 0.0 && v.is_finite() => Some(*v),
                        _ => None,
                    })
                    .collect(),
                _ => None,
            };
            match alpha {
                Some(a) if a.len() == dim => return Base::Dirichlet(a),
                Some(a) => diags.push(
                    Diagnostic::at(t.span(), format!("`dirichlet` has {} parameters but the flow is on simplex({dim})", a.len()))
                        .help(format!("give one α > 0 per coordinate: {dim} values")),
                ),
                None => diags.push(Diagnostic::at(t.span(), "`dirichlet` takes a list of positive numbers, one per coordinate").help(help)),
            }
            return default;
        }
        _ => {}
    }
    let known = matches!(name, "normal" | "uniform" | "dirichlet" | "vmf");
    let msg = if known && !name.is_empty() {
        format!("base `{name}` is not a distribution on {}", space.spelled(dim))
    } else {
        format!("unknown base distribution `{}`", term_name(t))
    };
    diags.push(Diagnostic::at(t.span(), msg).help(help));
    default
}

/// Builds a flow. Splines used by its layers are added to `splines` (they become built-in
/// bijectors after the module's own, at index `bijectors.len() + position`).
fn build_flow(
    f: &dsl::FlowDef,
    bijectors: &[Bijector],
    maps: &[map::Map],
    splines: &mut Vec<(layer::Spline, Span)>,
    diags: &mut Diagnostics,
) -> Flow {
    let (dim, space) = match &f.space {
        dsl::Space::Real(n, span) => {
            if *n == 0 {
                diags.push(Diagnostic::at(*span, "a flow needs at least one dimension").help("write `R^1` or more"));
            }
            (*n, Space::Real)
        }
        dsl::Space::Other(t) => match t {
            Term::Call { name, args, span } if name.is("sphere") || name.is("simplex") => {
                let space = if name.is("sphere") { Space::Sphere } else { Space::Simplex };
                let n = match args.as_slice() {
                    [dsl::Arg { name: None, value: Term::Expr(dsl::Expr::Num(v, _)) }] if v.fract() == 0.0 && *v >= 2.0 && *v < 1e6 => {
                        Some(*v as usize)
                    }
                    _ => None,
                };
                match n {
                    Some(n) => (n, space),
                    None => {
                        let help = if space == Space::Sphere {
                            "write `sphere(3)` for the unit sphere S² in R³"
                        } else {
                            "write `simplex(3)` for probability vectors of 3 classes"
                        };
                        diags.push(
                            Diagnostic::at(*span, format!("`{}` takes the dimension n ≥ 2 of the space it lies in", name.name)).help(help),
                        );
                        (2, space)
                    }
                }
            }
            _ => {
                diags.push(
                    Diagnostic::at(t.span(), format!("unknown space `{}`", term_name(t)))
                        .help("write `R^n`, `sphere(n)` or `simplex(n)`, e.g. `flow f(x: R^2) { ... }`"),
                );
                (1, Space::Real)
            }
        },
    };
    let base = build_base(f.base.as_ref(), space, dim, diags);
    let mut layers = Vec::new();
    for t in &f.layers {
        let Term::Call { name, args, span } = t else {
            diags.push(Diagnostic::at(t.span(), "expected a layer such as `elementwise(sinh_arcsinh)`"));
            continue;
        };
        let span_ = Span::of(*span);
        let lname = name.name.as_str();
        if let Some(mi) = maps.iter().position(|m| m.name == lname) {
            let m = &maps[mi];
            if !args.is_empty() {
                diags.push(
                    Diagnostic::at(*span, format!("map `{lname}` takes no arguments here: its parameters are learned"))
                        .help(format!("write `{lname};` (its tensors are `layers.K.NAME`)")),
                );
            } else if m.space != space {
                let which = if m.space == Space::Sphere { "sphere" } else { "simplex" };
                diags.push(
                    Diagnostic::at(
                        name.span,
                        format!("map `{lname}` maps the {which}, but flow `{}` is on {}", f.name.name, space.spelled(dim)),
                    )
                    .help(format!("use it in a flow on `{which}(n)`")),
                );
            } else if m.dim.is_some_and(|k| k != dim) {
                diags.push(
                    Diagnostic::at(
                        name.span,
                        format!(
                            "map `{lname}` is written for {}, but flow `{}` is on {}",
                            space.spelled(m.dim.unwrap_or(0)),
                            f.name.name,
                            space.spelled(dim)
                        ),
                    )
                    .help(format!(
                        "declare the map on `{}(n)` to use it in any dimension",
                        if space == Space::Sphere { "sphere" } else { "simplex" }
                    )),
                );
            } else if let Some(p) = m.params.iter().find(|p| p.shape.dims(dim).contains(&0)) {
                diags.push(Diagnostic::at(name.span, format!("parameter `{}` of map `{lname}` would be empty", p.name)));
            } else {
                layers.push(Layer::Map { map: mi, span: span_ });
            }
            continue;
        }
        let manifold_layer = layer::SPHERE_LAYERS.contains(&lname) || layer::SIMPLEX_LAYERS.contains(&lname);
        // permutations map the sphere and the simplex to themselves (volume ratio 1)
        let permutes = name.is("reverse") || name.is("permute");
        let own = match space {
            Space::Real => !manifold_layer,
            Space::Sphere => layer::SPHERE_LAYERS.contains(&lname) || permutes,
            Space::Simplex => layer::SIMPLEX_LAYERS.contains(&lname) || permutes,
        };
        let known = layer::LAYER_NAMES.contains(&lname) || name.is("actnorm") || manifold_layer;
        if known && !own {
            let (maps, layers) = if layer::SPHERE_LAYERS.contains(&lname) {
                ("the sphere", layer::SPHERE_LAYERS)
            } else if layer::SIMPLEX_LAYERS.contains(&lname) {
                ("the simplex", layer::SIMPLEX_LAYERS)
            } else {
                ("R^n", &[][..])
            };
            let mut d =
                Diagnostic::at(name.span, format!("`{lname}` maps {maps}, but flow `{}` is on {}", f.name.name, space.spelled(dim)));
            d = match space {
                Space::Real => {
                    let which = if maps == "the sphere" { "sphere" } else { "simplex" };
                    d.help(format!(
                        "declare the flow on {maps}: `flow {}(x: {which}({dim})) {{ ... }}` (layers: {})",
                        f.name.name,
                        layers.join(", ")
                    ))
                }
                Space::Sphere => d.help(format!("the layers of sphere flows are: {}, reverse, permute", layer::SPHERE_LAYERS.join(", "))),
                Space::Simplex => {
                    d.help(format!("the layers of simplex flows are: {}, reverse, permute", layer::SIMPLEX_LAYERS.join(", ")))
                }
            };
            diags.push(d);
            continue;
        }
        if manifold_layer {
            if let Some(l) = layer::build_manifold(name, args, span_, diags) {
                layers.push(l);
            }
            continue;
        }
        if name.is("elementwise") {
            if args.len() != 1 || args[0].name.is_some() {
                diags.push(
                    Diagnostic::at(*span, "`elementwise` takes one bijector")
                        .help("write `elementwise(NAME)` or `elementwise(NAME(p = 0.5))`"),
                );
                continue;
            }
            if let Some((bi, bound)) = bijector_ref(&args[0].value, bijectors, diags) {
                layers.push(Layer::Elementwise { bijector: bi, bound, span: span_ });
            }
        } else if name.is("actnorm") {
            if !args.is_empty() {
                diags.push(Diagnostic::at(name.span, "`actnorm` takes no arguments").help("write `actnorm;`"));
                continue;
            }
            match bijectors.iter().position(|b| b.name == "actnorm" && b.doc == layer::ACTNORM_DOC) {
                Some(bi) => layers.push(Layer::Elementwise { bijector: bi, bound: vec![], span: span_ }),
                None => diags.push(
                    Diagnostic::at(name.span, "a bijector named `actnorm` hides the built-in `actnorm` layer")
                        .help("rename the bijector, or use it with `elementwise(actnorm)`"),
                ),
            }
        } else if layer::LAYER_NAMES.contains(&name.name.as_str()) {
            let mut resolve = |t: &Term, diags: &mut Diagnostics| match t {
                Term::Call { name: n, args: a, span } if n.is("spline") && !bijectors.iter().any(|b| b.name == "spline") => {
                    let sp = layer::spline(a, *span, diags)?;
                    let at = match splines.iter().position(|(q, _)| *q == sp) {
                        Some(i) => i,
                        None => {
                            splines.push((sp, Span::of(*span)));
                            splines.len() - 1
                        }
                    };
                    Some((bijectors.len() + at, vec![]))
                }
                _ => bijector_ref(t, bijectors, diags),
            };
            if let Some(l) = layer::build(name, args, span_, dim, bijectors, &mut resolve, diags) {
                layers.push(l);
            }
        } else {
            let mut d = Diagnostic::at(name.span, format!("unknown layer `{}`", name.name));
            let cands: Vec<&str> = layer::LAYER_NAMES.iter().chain(layer::SPHERE_LAYERS).chain(layer::SIMPLEX_LAYERS).copied().collect();
            d = match suggest(&name.name, cands) {
                Some(s) => d.help(format!("did you mean `{s}`?")),
                None if bijectors.iter().any(|b| b.name == name.name) && space == Space::Real => {
                    d.help(format!("apply a bijector to every coordinate with `elementwise({})`", name.name))
                }
                None => d.help("layers are written `elementwise(BIJECTOR)`"),
            };
            diags.push(d);
        }
    }
    if layers.is_empty() && !diags.has_errors() {
        diags.push(
            Diagnostic::at(f.name.span, format!("flow `{}` has no layers", f.name.name)).help("add a layer such as `elementwise(NAME);`"),
        );
    }
    Flow { name: f.name.name.clone(), doc: f.doc.clone(), span: Span::of(f.name.span), dim, space, base, layers }
}

/// Builds the module, collecting every error of every item.
pub fn build(ast: &Ast) -> Result<Module, Diagnostics> {
    let mut diags = Diagnostics::new();
    let mut m = Module::default();
    let mut seen: Vec<(String, proc_macro2::Span)> = Vec::new();
    for item in &ast.items {
        let name = item.name();
        if seen.iter().any(|(n, _)| *n == name.name) {
            diags.push(Diagnostic::at(name.span, format!("`{}` is defined twice", name.name)).help("rename one of the definitions"));
            continue;
        }
        seen.push((name.name.clone(), name.span));
        if let Item::Bijector(b) = item {
            let bij = build_bijector(b, &mut diags);
            m.bijectors.push(bij);
        }
        if let Item::Map(mp) = item {
            if let Some(map) = map::build_map(mp, &mut diags) {
                m.maps.push(map);
            }
        }
    }
    // the built-in bijector of `actnorm` layers, when a flow uses them
    let uses_actnorm = ast
        .items
        .iter()
        .any(|i| matches!(i, Item::Flow(f) if f.layers.iter().any(|t| matches!(t, Term::Call { name, .. } if name.is("actnorm")))));
    if uses_actnorm && m.bijector("actnorm").is_none() {
        let src = crate::dsl::parse(layer::ACTNORM).expect("built-in bijector parses");
        if let Item::Bijector(b) = &src.items[0] {
            let mut bij = build_bijector(b, &mut diags);
            bij.doc = layer::ACTNORM_DOC.to_string();
            m.bijectors.push(bij);
        }
    }
    let mut splines = Vec::new();
    for item in &ast.items {
        if let Item::Flow(f) = item {
            if m.flows.iter().any(|g| g.name == f.name.name) {
                continue;
            }
            let flow = build_flow(f, &m.bijectors, &m.maps, &mut splines, &mut diags);
            m.flows.push(flow);
        }
    }
    // the built-in splines the flows use, after the module's bijectors
    for (sp, span) in splines {
        m.bijectors.push(layer::spline_bijector(sp, span));
    }
    diags.into_result(m)
}
