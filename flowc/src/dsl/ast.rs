//! The syntax tree of the flow language, as written (spans kept on every name).

use proc_macro2::Span;

/// A name with the place it was written.
#[derive(Debug, Clone)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

impl Ident {
    pub fn is(&self, name: &str) -> bool {
        self.name == name
    }
}

/// A parsed source file or macro input.
#[derive(Debug, Clone, Default)]
pub struct Ast {
    pub items: Vec<Item>,
}

#[derive(Debug, Clone)]
pub enum Item {
    Bijector(BijectorDef),
    Flow(FlowDef),
    Map(MapDef),
}

impl Item {
    /// The item's name.
    pub fn name(&self) -> &Ident {
        match self {
            Item::Bijector(b) => &b.name,
            Item::Flow(f) => &f.name,
            Item::Map(m) => &m.name,
        }
    }
}

/// `map NAME(x: sphere(n); p: KIND, ...) = EXPR [where inverse = numeric | EXPR];`: a map of
/// the sphere or the simplex written with vector and matrix expressions. KIND is `real`,
/// `vector(d)` or `matrix(d, d)`, a dimension `d` being a number or the space's own `n`.
#[derive(Debug, Clone)]
pub struct MapDef {
    pub doc: String,
    pub name: Ident,
    pub var: Ident,
    /// `sphere(n)`, `simplex(3)`, ...
    pub space: Term,
    pub params: Vec<MapParamDecl>,
    pub body: Expr,
    pub inverse: InverseSpec,
}

/// `name: real`, `name: vector(n)`, `name: matrix(n, n)`
#[derive(Debug, Clone)]
pub struct MapParamDecl {
    pub name: Ident,
    pub kind: Term,
}

/// `bijector NAME(x[: domain][; p: kind, ...]) = EXPR [where inverse = numeric | EXPR];`
#[derive(Debug, Clone)]
pub struct BijectorDef {
    pub doc: String,
    pub name: Ident,
    pub var: Ident,
    pub domain: Option<Domain>,
    pub params: Vec<ParamDecl>,
    pub body: Expr,
    pub inverse: InverseSpec,
}

/// The set the bijector's input lives on.
#[derive(Debug, Clone)]
pub enum Domain {
    /// `real`, `positive`, `unit`
    Named(Ident),
    /// `(lo, hi)`, an open interval with constant bounds
    Interval(Expr, Expr, Span),
}

/// `name: kind`
#[derive(Debug, Clone)]
pub struct ParamDecl {
    pub name: Ident,
    pub kind: Ident,
}

#[derive(Debug, Clone)]
pub enum InverseSpec {
    /// Derive it.
    Derive,
    /// `where inverse = numeric`
    Numeric(Span),
    /// `where inverse = EXPR`, in terms of `y`
    Given(Expr),
}

/// A scalar expression.
#[derive(Debug, Clone)]
pub enum Expr {
    Num(f64, Span),
    Var(Ident),
    Call(Ident, Vec<Expr>, Span),
    Neg(Box<Expr>, Span),
    Binary(BinOp, Box<Expr>, Box<Expr>, Span),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
}

impl Expr {
    pub fn span(&self) -> Span {
        match self {
            Expr::Num(_, s) | Expr::Call(_, _, s) | Expr::Neg(_, s) | Expr::Binary(_, _, _, s) => *s,
            Expr::Var(id) => id.span,
        }
    }
}

/// `flow NAME(x: SPACE) { base B; LAYER; ... }`
#[derive(Debug, Clone)]
pub struct FlowDef {
    pub doc: String,
    pub name: Ident,
    pub var: Ident,
    pub space: Space,
    pub base: Option<Term>,
    pub layers: Vec<Term>,
}

/// The space a flow's points live in.
#[derive(Debug, Clone)]
pub enum Space {
    /// `R^n`
    Real(usize, Span),
    /// any other spelling, e.g. `sphere(3)`; checked by `ir`
    Other(Term),
}

/// A layer, base or argument: `name`, `name(args)`, `[a, b]` or a number expression.
#[derive(Debug, Clone)]
pub enum Term {
    Call { name: Ident, args: Vec<Arg>, span: Span },
    List(Vec<Term>, Span),
    Expr(Expr),
}

impl Term {
    pub fn span(&self) -> Span {
        match self {
            Term::Call { span, .. } | Term::List(_, span) => *span,
            Term::Expr(e) => e.span(),
        }
    }
}

/// `value` or `name = value`
#[derive(Debug, Clone)]
pub struct Arg {
    pub name: Option<Ident>,
    pub value: Term,
}
