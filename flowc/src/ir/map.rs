//! User-written maps of the sphere and the simplex (`map NAME(x: sphere(n); M: matrix(n, n),
//! b: vector(n)) = normalize(M * x + b);`): the typed vector-and-matrix expression, checked
//! once with the space's dimension left symbolic, and one evaluator ([`eval_shaped`]) generic over
//! the arithmetic ([`Arith`]): f64 (the reference interpreter), dual numbers (Jacobians for the
//! checks) and kernel instructions (`lower`).
//!
//! ```
//! use flowc::ir::map::{apply, F64};
//! let src = "map shift(x: sphere(n); b: vector(n)) = normalize(x + b) where inverse = numeric;";
//! let m = flowc::ir::build(&flowc::dsl::parse(src).unwrap()).unwrap();
//! let map = &m.maps[0];
//! let y = apply(map, &mut F64, &[0.0, 0.0, 1.0], &[vec![0.0, 1.0, 0.0]]).unwrap();
//! let r = 2f64.sqrt().recip();
//! assert!((y[1] - r).abs() < 1e-15 && (y[2] - r).abs() < 1e-15 && y[0] == 0.0);
//! ```

use super::{suggest, Space};
use crate::derive::dual::Dual;
use crate::diag::{Diagnostic, Diagnostics, Span};
use crate::dsl::{self, BinOp, Term};

/// A dimension: the space's own `n`, or a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dim {
    N,
    Fixed(usize),
}

impl Dim {
    pub fn at(self, n: usize) -> usize {
        match self {
            Dim::N => n,
            Dim::Fixed(k) => k,
        }
    }
    fn spelled(self) -> String {
        match self {
            Dim::N => "n".into(),
            Dim::Fixed(k) => k.to_string(),
        }
    }
}

/// The shape of a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Scalar,
    Vector(Dim),
    Matrix(Dim, Dim),
}

impl Shape {
    /// The tensor shape at dimension `n` (`[1]` for a scalar).
    pub fn dims(self, n: usize) -> Vec<usize> {
        match self {
            Shape::Scalar => vec![1],
            Shape::Vector(d) => vec![d.at(n)],
            Shape::Matrix(r, c) => vec![r.at(n), c.at(n)],
        }
    }
    pub fn spelled(self) -> String {
        match self {
            Shape::Scalar => "a scalar".into(),
            Shape::Vector(d) => format!("a vector({})", d.spelled()),
            Shape::Matrix(r, c) => format!("a matrix({}, {})", r.spelled(), c.spelled()),
        }
    }
}

/// A learnable tensor of a map: `layers.K.NAME` where the map is layer K.
#[derive(Debug, Clone, PartialEq)]
pub struct MapParam {
    pub name: String,
    pub shape: Shape,
}

/// Elementwise scalar functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElemFn {
    Exp,
    Log,
    Sqrt,
    Tanh,
    Sinh,
    Cosh,
    Log1p,
    Expm1,
    Sin,
    Cos,
    Atan,
    Softplus,
    Sigmoid,
}

const ELEM: [(&str, ElemFn); 13] = [
    ("exp", ElemFn::Exp),
    ("log", ElemFn::Log),
    ("sqrt", ElemFn::Sqrt),
    ("tanh", ElemFn::Tanh),
    ("sinh", ElemFn::Sinh),
    ("cosh", ElemFn::Cosh),
    ("log1p", ElemFn::Log1p),
    ("expm1", ElemFn::Expm1),
    ("sin", ElemFn::Sin),
    ("cos", ElemFn::Cos),
    ("atan", ElemFn::Atan),
    ("softplus", ElemFn::Softplus),
    ("sigmoid", ElemFn::Sigmoid),
];

impl ElemFn {
    pub fn name(self) -> &'static str {
        ELEM.iter().find(|(_, f)| *f == self).map(|(n, _)| *n).expect("listed")
    }
}

/// Vector and matrix functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Dot,
    Norm,
    Normalize,
    Softmax,
    Sum,
    /// `solve(M, v)`: M⁻¹v
    Solve,
    Transpose,
    Elem(ElemFn),
}

const FUNCS: [(&str, Func, usize); 7] = [
    ("dot", Func::Dot, 2),
    ("norm", Func::Norm, 1),
    ("normalize", Func::Normalize, 1),
    ("softmax", Func::Softmax, 1),
    ("sum", Func::Sum, 1),
    ("solve", Func::Solve, 2),
    ("transpose", Func::Transpose, 1),
];

impl Func {
    fn name(self) -> &'static str {
        match self {
            Func::Elem(e) => e.name(),
            f => FUNCS.iter().find(|(_, g, _)| *g == f).map(|(n, _, _)| *n).expect("listed"),
        }
    }
}

/// A typed expression. `*` of a matrix and a vector (or matrix) is the matrix product; every
/// other binary operation is elementwise, a scalar broadcasting.
#[derive(Debug, Clone, PartialEq)]
pub enum VExpr {
    /// The map's point (`x`; `y` in an inverse).
    Point,
    Param(usize),
    Num(f64),
    Neg(Box<VExpr>),
    Bin(BinOp, Box<VExpr>, Box<VExpr>),
    MatMul(Box<VExpr>, Box<VExpr>),
    Call(Func, Vec<VExpr>),
}

/// What the map's author said about the inverse.
#[derive(Debug, Clone, PartialEq)]
pub enum MapInverse {
    /// `where inverse = numeric`: Newton's method in the tangent space.
    Numeric,
    /// `where inverse = EXPR` in terms of `y`: checked numerically when derived.
    Given(VExpr),
}

/// `map NAME(x: SPACE; params) = EXPR [where inverse = ...];`
#[derive(Debug, Clone, PartialEq)]
pub struct Map {
    pub name: String,
    pub doc: String,
    pub span: Span,
    pub space: Space,
    /// The dimension when the map is written for one (`sphere(3)`), else any.
    pub dim: Option<usize>,
    pub params: Vec<MapParam>,
    pub body: VExpr,
    pub inverse: MapInverse,
}

impl Map {
    /// The map as a formula (`y = ...`), with its parameter names.
    pub fn text(&self) -> String {
        show(&self.body, &self.params, "x")
    }
    /// The given inverse as a formula, if any.
    pub fn inverse_text(&self) -> Option<String> {
        match &self.inverse {
            MapInverse::Given(e) => Some(show(e, &self.params, "y")),
            _ => None,
        }
    }
}

fn show(e: &VExpr, params: &[MapParam], point: &str) -> String {
    let s = |e: &VExpr| show(e, params, point);
    let wrap = |e: &VExpr| match e {
        VExpr::Bin(BinOp::Add | BinOp::Sub, ..) => format!("({})", s(e)),
        _ => s(e),
    };
    match e {
        VExpr::Point => point.into(),
        VExpr::Param(i) => params[*i].name.clone(),
        VExpr::Num(v) => crate::ir::Const::new(*v).map(|c| c.to_string()).unwrap_or_else(|| v.to_string()),
        VExpr::Neg(a) => format!("-{}", wrap(a)),
        VExpr::Bin(op, a, b) => {
            let o = match op {
                BinOp::Add => "+",
                BinOp::Sub => "-",
                BinOp::Mul => "*",
                BinOp::Div => "/",
            };
            match op {
                BinOp::Add => format!("{} + {}", s(a), s(b)),
                BinOp::Sub => format!("{} - {}", s(a), wrap(b)),
                _ => format!("{} {o} {}", wrap(a), wrap(b)),
            }
        }
        VExpr::MatMul(a, b) => format!("{} * {}", wrap(a), wrap(b)),
        VExpr::Call(f, args) => format!("{}({})", f.name(), args.iter().map(s).collect::<Vec<_>>().join(", ")),
    }
}

/// A dimension as written: a number, or the space's `n`.
fn dim_of(t: &Term, n_name: Option<&str>, fixed: Option<usize>, diags: &mut Diagnostics) -> Option<Dim> {
    let d = match t {
        Term::Expr(dsl::Expr::Num(v, _)) if v.fract() == 0.0 && *v >= 1.0 && *v < 1e6 => Dim::Fixed(*v as usize),
        Term::Expr(dsl::Expr::Var(id)) | Term::Call { name: id, .. } if Some(id.name.as_str()) == n_name => Dim::N,
        _ => {
            let help = match n_name {
                Some(n) => format!("write a number or `{n}`, the space's dimension"),
                None => "write a number".to_string(),
            };
            diags.push(Diagnostic::at(t.span(), "expected a dimension").help(help));
            return None;
        }
    };
    // with a fixed space dimension, that number is `n`
    Some(match (d, fixed) {
        (Dim::Fixed(k), Some(f)) if k == f => Dim::N,
        _ => d,
    })
}

/// Builds a map item, collecting every error.
pub fn build_map(m: &dsl::MapDef, diags: &mut Diagnostics) -> Option<Map> {
    let errors = diags.len();
    // the space, with a number or a name for its dimension
    let (space, dim, n_name) = match &m.space {
        Term::Call { name, args, .. } if (name.is("sphere") || name.is("simplex")) && args.len() == 1 && args[0].name.is_none() => {
            let space = if name.is("sphere") { Space::Sphere } else { Space::Simplex };
            match &args[0].value {
                Term::Expr(dsl::Expr::Num(v, _)) if v.fract() == 0.0 && *v >= 2.0 && *v < 1e6 => (space, Some(*v as usize), None),
                Term::Expr(dsl::Expr::Var(id)) | Term::Call { name: id, args: _, .. } if id.name != m.var.name => {
                    (space, None, Some(id.name.clone()))
                }
                other => {
                    diags.push(
                        Diagnostic::at(other.span(), "expected the dimension: a number ≥ 2, or a name such as `n`")
                            .help(format!("write `{}({})` or `{}(3)`", name.name, "n", name.name)),
                    );
                    return None;
                }
            }
        }
        other => {
            diags.push(
                Diagnostic::at(other.span(), "a map's point lives on `sphere(n)` or `simplex(n)`")
                    .help(format!("write `map {}({}: sphere(n); ...) = ...;`", m.name.name, m.var.name)),
            );
            return None;
        }
    };
    let mut params: Vec<MapParam> = Vec::new();
    for p in &m.params {
        let pn = p.name.name.as_str();
        if pn == m.var.name || pn == "y" || Some(pn) == n_name.as_deref() || pn == "pi" {
            diags.push(
                Diagnostic::at(p.name.span, format!("`{pn}` cannot name a parameter"))
                    .help(format!("`{}`, `y`, `pi` and the dimension's name are reserved; choose another name", m.var.name)),
            );
            continue;
        }
        if params.iter().any(|q| q.name == pn) {
            diags.push(Diagnostic::at(p.name.span, format!("parameter `{pn}` is declared twice")).help("remove or rename one of them"));
            continue;
        }
        let shape = match &p.kind {
            Term::Call { name, args, .. } if name.is("real") && args.is_empty() => Some(Shape::Scalar),
            Term::Call { name, args, .. } if name.is("vector") && args.len() == 1 => {
                dim_of(&args[0].value, n_name.as_deref(), dim, diags).map(Shape::Vector)
            }
            Term::Call { name, args, .. } if name.is("matrix") && args.len() == 2 => {
                let r = dim_of(&args[0].value, n_name.as_deref(), dim, diags);
                let c = dim_of(&args[1].value, n_name.as_deref(), dim, diags);
                r.zip(c).map(|(r, c)| Shape::Matrix(r, c))
            }
            other => {
                let nn = n_name.clone().unwrap_or_else(|| dim.unwrap_or(3).to_string());
                diags.push(
                    Diagnostic::at(other.span(), "unknown parameter kind")
                        .help(format!("a map's parameters are `real`, `vector({nn})` or `matrix({nn}, {nn})`")),
                );
                None
            }
        };
        if let Some(shape) = shape {
            params.push(MapParam { name: pn.to_string(), shape });
        }
    }
    let ctx = Ctx { var: &m.var.name, params: &params, n_name: n_name.as_deref(), fixed: dim };
    let body = check_point_map(&ctx, &m.body, &m.name.name, "the map", diags);
    let inverse = match &m.inverse {
        dsl::InverseSpec::Derive => {
            diags.push(
                Diagnostic::at(m.name.span, format!("map `{}` needs an inverse: densities of data points run it backwards", m.name.name))
                    .help(
                        "add `where inverse = numeric` (Newton's method) or `where inverse = EXPR` in terms of `y` (checked when derived)",
                    ),
            );
            None
        }
        dsl::InverseSpec::Numeric(_) => Some(MapInverse::Numeric),
        dsl::InverseSpec::Given(e) => {
            let ctx = Ctx { var: "y", ..ctx };
            check_point_map(&ctx, e, &m.name.name, "the inverse", diags).map(MapInverse::Given)
        }
    };
    if diags.len() > errors {
        return None;
    }
    Some(Map {
        name: m.name.name.clone(),
        doc: m.doc.clone(),
        span: Span::of(m.name.span),
        space,
        dim,
        params,
        body: body?,
        inverse: inverse?,
    })
}

struct Ctx<'a> {
    var: &'a str,
    params: &'a [MapParam],
    n_name: Option<&'a str>,
    fixed: Option<usize>,
}

/// Checks that `e` maps the point to a vector(n).
fn check_point_map(ctx: &Ctx<'_>, e: &dsl::Expr, name: &str, what: &str, diags: &mut Diagnostics) -> Option<VExpr> {
    let (v, shape) = check(ctx, e).map_err(|d| diags.push(d)).ok()?;
    if shape != Shape::Vector(Dim::N) {
        let n = ctx.n_name.map(str::to_string).unwrap_or_else(|| ctx.fixed.unwrap_or(0).to_string());
        diags.push(
            Diagnostic::at(e.span(), format!("{what} of `{name}` is {}, not a point: a vector({n})", shape.spelled()))
                .help("a map returns the image point, e.g. `normalize(M * x + b)` or `softmax(a * log(x) + b)`"),
        );
        return None;
    }
    Some(v)
}

fn check(ctx: &Ctx<'_>, e: &dsl::Expr) -> Result<(VExpr, Shape), Diagnostic> {
    match e {
        dsl::Expr::Num(v, _) => Ok((VExpr::Num(*v), Shape::Scalar)),
        dsl::Expr::Var(id) => {
            if id.name == ctx.var {
                return Ok((VExpr::Point, Shape::Vector(Dim::N)));
            }
            if id.name == "pi" {
                return Ok((VExpr::Num(std::f64::consts::PI), Shape::Scalar));
            }
            if let Some(i) = ctx.params.iter().position(|p| p.name == id.name) {
                return Ok((VExpr::Param(i), ctx.params[i].shape));
            }
            let mut d = Diagnostic::at(id.span, format!("unknown name `{}`", id.name));
            let cands: Vec<&str> = ctx.params.iter().map(|p| p.name.as_str()).chain([ctx.var]).collect();
            d = match suggest(&id.name, cands) {
                Some(s) => d.help(format!("did you mean `{s}`?")),
                None if ctx.var == "y" && id.name == "x" => d.help("an inverse is written in terms of `y`, the image point"),
                None => d.help(format!("the names here are `{}` and the parameters", ctx.var)),
            };
            Err(d)
        }
        dsl::Expr::Neg(a, _) => {
            let (a, s) = check(ctx, a)?;
            Ok((VExpr::Neg(Box::new(a)), s))
        }
        dsl::Expr::Binary(op, a, b, span) => {
            let (av, sa) = check(ctx, a)?;
            let (bv, sb) = check(ctx, b)?;
            if *op == BinOp::Mul {
                match (sa, sb) {
                    (Shape::Matrix(_, c), Shape::Vector(d)) | (Shape::Matrix(_, c), Shape::Matrix(d, _)) if c != d => {
                        return Err(Diagnostic::at(
                            *span,
                            format!("cannot multiply {} by {}: the inner dimensions differ", sa.spelled(), sb.spelled()),
                        )
                        .help(format!(
                            "the matrix has {} columns, the right operand {} rows",
                            c.spelled(),
                            d.spelled()
                        )));
                    }
                    (Shape::Matrix(r, _), Shape::Vector(_)) => return Ok((VExpr::MatMul(Box::new(av), Box::new(bv)), Shape::Vector(r))),
                    (Shape::Matrix(r, _), Shape::Matrix(_, c)) => {
                        return Ok((VExpr::MatMul(Box::new(av), Box::new(bv)), Shape::Matrix(r, c)))
                    }
                    (Shape::Vector(_), Shape::Matrix(..)) => {
                        return Err(
                            Diagnostic::at(*span, "a vector times a matrix is not defined here").help("write `transpose(M) * v` for vᵀM")
                        )
                    }
                    _ => {}
                }
            }
            let shape = match (sa, sb) {
                (Shape::Scalar, s) | (s, Shape::Scalar) => s,
                (s, t) if s == t => s,
                _ => {
                    return Err(Diagnostic::at(*span, format!("{} and {} do not have the same shape", sa.spelled(), sb.spelled()))
                        .help("elementwise `+ - * /` need equal shapes or a scalar; `*` of a matrix and a vector is the product"))
                }
            };
            Ok((VExpr::Bin(*op, Box::new(av), Box::new(bv)), shape))
        }
        dsl::Expr::Call(name, args, span) => {
            let func = match FUNCS.iter().find(|(n, _, _)| name.is(n)) {
                Some((_, f, arity)) => {
                    if args.len() != *arity {
                        return Err(Diagnostic::at(
                            *span,
                            format!("`{}` takes {arity} argument{}", name.name, if *arity == 1 { "" } else { "s" }),
                        ));
                    }
                    *f
                }
                None => match ELEM.iter().find(|(n, _)| name.is(n)) {
                    Some((_, f)) => {
                        if args.len() != 1 {
                            return Err(Diagnostic::at(*span, format!("`{}` takes 1 argument", name.name)));
                        }
                        Func::Elem(*f)
                    }
                    None => {
                        let names: Vec<&str> = FUNCS.iter().map(|(n, _, _)| *n).chain(ELEM.iter().map(|(n, _)| *n)).collect();
                        let mut d = Diagnostic::at(name.span, format!("unknown function `{}` in a map", name.name));
                        d = match suggest(&name.name, names.iter().copied()) {
                            Some(s) => d.help(format!("did you mean `{s}`?")),
                            None => d.help(format!("a map may use {}", names.join(", "))),
                        };
                        return Err(d);
                    }
                },
            };
            let mut checked = Vec::new();
            for a in args {
                checked.push(check(ctx, a)?);
            }
            let shapes: Vec<Shape> = checked.iter().map(|(_, s)| *s).collect();
            let want = |what: &str| Diagnostic::at(*span, format!("`{}` takes {what}", name.name));
            let shape = match func {
                Func::Dot => match (shapes[0], shapes[1]) {
                    (Shape::Vector(a), Shape::Vector(b)) if a == b => Shape::Scalar,
                    _ => return Err(want("two vectors of one length")),
                },
                Func::Norm | Func::Sum => match shapes[0] {
                    Shape::Vector(_) => Shape::Scalar,
                    _ => return Err(want("a vector")),
                },
                Func::Normalize | Func::Softmax => match shapes[0] {
                    Shape::Vector(d) => Shape::Vector(d),
                    _ => return Err(want("a vector")),
                },
                Func::Solve => match (shapes[0], shapes[1]) {
                    (Shape::Matrix(r, c), Shape::Vector(d)) if r == c && c == d => Shape::Vector(d),
                    _ => return Err(want("a square matrix and a vector of its size")),
                },
                Func::Transpose => match shapes[0] {
                    Shape::Matrix(r, c) => Shape::Matrix(c, r),
                    _ => return Err(want("a matrix")),
                },
                Func::Elem(_) => shapes[0],
            };
            Ok((VExpr::Call(func, checked.into_iter().map(|(e, _)| e).collect()), shape))
        }
    }
}

/// The arithmetic an expression is evaluated in.
pub trait Arith {
    type V: Copy;
    fn num(&mut self, c: f64) -> Self::V;
    fn bin(&mut self, op: BinOp, a: Self::V, b: Self::V) -> Self::V;
    fn neg(&mut self, a: Self::V) -> Self::V;
    fn elem(&mut self, f: ElemFn, a: Self::V) -> Self::V;
    /// √(a² + b²) without overflow or underflow.
    fn hypot(&mut self, a: Self::V, b: Self::V) -> Self::V;
    fn max(&mut self, a: Self::V, b: Self::V) -> Self::V;
    /// A⁻¹b for the n × n row-major A (partial pivoting).
    fn solve(&mut self, n: usize, a: &[Self::V], b: &[Self::V]) -> Vec<Self::V>;
}

/// A value: rows × cols entries, row-major (a scalar is 1 × 1, a vector n × 1).
struct Val<V> {
    rows: usize,
    cols: usize,
    data: Vec<V>,
}

/// The map's body at `point` (n coordinates) with parameter tensors `params` (the map's
/// order, row-major): the image's n coordinates ([`eval_shaped`]).
pub fn apply<A: Arith>(map: &Map, a: &mut A, point: &[A::V], params: &[Vec<A::V>]) -> Result<Vec<A::V>, String> {
    eval_shaped(&map.body, &map.params, a, point, params)
}

/// An expression of the map's point and parameters (the body, or a given inverse in `y`), with the
/// parameters' shapes (matrices need theirs).
pub fn eval_shaped<A: Arith>(e: &VExpr, shapes: &[MapParam], a: &mut A, point: &[A::V], params: &[Vec<A::V>]) -> Result<Vec<A::V>, String> {
    let n = point.len();
    let ps: Vec<(Vec<A::V>, usize)> = shapes
        .iter()
        .zip(params)
        .map(|(s, p)| {
            let dims = s.shape.dims(n);
            (p.clone(), if dims.len() == 2 { dims[1] } else { 1 })
        })
        .collect();
    for ((p, _), s) in ps.iter().zip(shapes) {
        let want: usize = s.shape.dims(n).iter().product();
        if p.len() != want {
            return Err(format!("parameter `{}` has {} values, not {want}", s.name, p.len()));
        }
    }
    let v = eval_val(e, a, point, &ps)?;
    Ok(v.data)
}

fn eval_val<A: Arith>(e: &VExpr, a: &mut A, point: &[A::V], params: &[(Vec<A::V>, usize)]) -> Result<Val<A::V>, String> {
    Ok(match e {
        VExpr::Point => Val { rows: point.len(), cols: 1, data: point.to_vec() },
        VExpr::Param(i) => {
            let (d, cols) = params.get(*i).ok_or("a map parameter is missing")?;
            Val { rows: d.len() / cols, cols: *cols, data: d.clone() }
        }
        VExpr::Num(c) => Val { rows: 1, cols: 1, data: vec![a.num(*c)] },
        VExpr::Neg(x) => {
            let mut v = eval_val(x, a, point, params)?;
            for d in v.data.iter_mut() {
                *d = a.neg(*d);
            }
            v
        }
        VExpr::Bin(op, x, y) => {
            let u = eval_val(x, a, point, params)?;
            let w = eval_val(y, a, point, params)?;
            let (rows, cols, len) = if u.data.len() == 1 { (w.rows, w.cols, w.data.len()) } else { (u.rows, u.cols, u.data.len()) };
            if u.data.len() != 1 && w.data.len() != 1 && u.data.len() != w.data.len() {
                return Err(format!("elementwise operands of lengths {} and {}", u.data.len(), w.data.len()));
            }
            let data = (0..len)
                .map(|i| {
                    let p = u.data[if u.data.len() == 1 { 0 } else { i }];
                    let q = w.data[if w.data.len() == 1 { 0 } else { i }];
                    a.bin(*op, p, q)
                })
                .collect();
            Val { rows, cols, data }
        }
        VExpr::MatMul(m, x) => {
            let mv = eval_val(m, a, point, params)?;
            let xv = eval_val(x, a, point, params)?;
            let (rows, inner, cols) = (mv.rows, mv.cols, xv.cols);
            if xv.rows != inner {
                return Err(format!("a {}×{inner} matrix times {} rows", rows, xv.rows));
            }
            let mut data = Vec::with_capacity(rows * cols);
            for r in 0..rows {
                for c in 0..cols {
                    let mut acc: Option<A::V> = None;
                    for k in 0..inner {
                        let t = a.bin(BinOp::Mul, mv.data[r * inner + k], xv.data[k * cols + c]);
                        acc = Some(match acc {
                            None => t,
                            Some(s) => a.bin(BinOp::Add, s, t),
                        });
                    }
                    data.push(acc.unwrap_or_else(|| a.num(0.0)));
                }
            }
            Val { rows, cols, data }
        }
        VExpr::Call(f, args) => {
            let vs: Vec<Val<A::V>> = args.iter().map(|x| eval_val(x, a, point, params)).collect::<Result<_, _>>()?;
            let scalar = |v: A::V| Val { rows: 1, cols: 1, data: vec![v] };
            match f {
                Func::Dot => {
                    let t: Vec<A::V> = vs[0].data.iter().zip(&vs[1].data).map(|(p, q)| a.bin(BinOp::Mul, *p, *q)).collect();
                    scalar(sum(a, &t))
                }
                Func::Sum => scalar(sum(a, &vs[0].data)),
                Func::Norm => scalar(norm(a, &vs[0].data)),
                Func::Normalize => {
                    let r = norm(a, &vs[0].data);
                    let data = vs[0].data.iter().map(|v| a.bin(BinOp::Div, *v, r)).collect();
                    Val { rows: vs[0].rows, cols: 1, data }
                }
                Func::Softmax => {
                    // exp(v − max v)/Σ: nothing overflows
                    let d = &vs[0].data;
                    let mut m = d[0];
                    for v in &d[1..] {
                        m = a.max(m, *v);
                    }
                    let e: Vec<A::V> = d
                        .iter()
                        .map(|v| {
                            let t = a.bin(BinOp::Sub, *v, m);
                            a.elem(ElemFn::Exp, t)
                        })
                        .collect();
                    let s = sum(a, &e);
                    let data = e.iter().map(|v| a.bin(BinOp::Div, *v, s)).collect();
                    Val { rows: d.len(), cols: 1, data }
                }
                Func::Solve => {
                    let k = vs[1].data.len();
                    let data = a.solve(k, &vs[0].data, &vs[1].data);
                    Val { rows: k, cols: 1, data }
                }
                Func::Transpose => {
                    let (r, c) = (vs[0].rows, vs[0].cols);
                    let data = (0..c).flat_map(|j| (0..r).map(move |i| (i, j))).map(|(i, j)| vs[0].data[i * c + j]).collect();
                    Val { rows: c, cols: r, data }
                }
                Func::Elem(g) => {
                    let data = vs[0].data.iter().map(|v| a.elem(*g, *v)).collect();
                    Val { rows: vs[0].rows, cols: vs[0].cols, data }
                }
            }
        }
    })
}

fn sum<A: Arith>(a: &mut A, t: &[A::V]) -> A::V {
    let mut acc = match t.first() {
        Some(v) => *v,
        None => return a.num(0.0),
    };
    for v in &t[1..] {
        acc = a.bin(BinOp::Add, acc, *v);
    }
    acc
}

fn norm<A: Arith>(a: &mut A, t: &[A::V]) -> A::V {
    let mut acc = t[0];
    if t.len() == 1 {
        let z = a.num(0.0);
        return a.hypot(acc, z);
    }
    for v in &t[1..] {
        acc = a.hypot(acc, *v);
    }
    acc
}

/// `a op b` for number types with the four operations.
fn arithmetic<T: std::ops::Add<Output = T> + std::ops::Sub<Output = T> + std::ops::Mul<Output = T> + std::ops::Div<Output = T>>(
    op: BinOp,
    a: T,
    b: T,
) -> T {
    match op {
        BinOp::Add => a + b,
        BinOp::Sub => a - b,
        BinOp::Mul => a * b,
        BinOp::Div => a / b,
    }
}

/// f64 arithmetic.
pub struct F64;

impl Arith for F64 {
    type V = f64;
    fn num(&mut self, c: f64) -> f64 {
        c
    }
    fn bin(&mut self, op: BinOp, a: f64, b: f64) -> f64 {
        arithmetic(op, a, b)
    }
    fn neg(&mut self, a: f64) -> f64 {
        -a
    }
    fn elem(&mut self, f: ElemFn, a: f64) -> f64 {
        match f {
            ElemFn::Exp => a.exp(),
            ElemFn::Log => a.ln(),
            ElemFn::Sqrt => a.sqrt(),
            ElemFn::Tanh => a.tanh(),
            ElemFn::Sinh => a.sinh(),
            ElemFn::Cosh => a.cosh(),
            ElemFn::Log1p => a.ln_1p(),
            ElemFn::Expm1 => a.exp_m1(),
            ElemFn::Sin => a.sin(),
            ElemFn::Cos => a.cos(),
            ElemFn::Atan => a.atan(),
            ElemFn::Softplus => a.max(0.0) + (-a.abs()).exp().ln_1p(),
            ElemFn::Sigmoid => 1.0 / (1.0 + (-a).exp()),
        }
    }
    fn hypot(&mut self, a: f64, b: f64) -> f64 {
        a.hypot(b)
    }
    fn max(&mut self, a: f64, b: f64) -> f64 {
        if a - b > 0.0 {
            a
        } else {
            b
        }
    }
    fn solve(&mut self, n: usize, a: &[f64], b: &[f64]) -> Vec<f64> {
        solve_f64(n, a, b)
    }
}

/// A⁻¹b for the n × n row-major A by elimination with partial pivoting (NaN when A is
/// singular). The f64 arithmetic's `solve`.
pub fn solve_f64(n: usize, a: &[f64], b: &[f64]) -> Vec<f64> {
    let mut m = a.to_vec();
    let mut x = b.to_vec();
    for c in 0..n {
        let p = (c..n).max_by(|i, j| m[i * n + c].abs().total_cmp(&m[j * n + c].abs())).unwrap_or(c);
        if p != c {
            for j in 0..n {
                m.swap(p * n + j, c * n + j);
            }
            x.swap(p, c);
        }
        let d = m[c * n + c];
        if d == 0.0 {
            return vec![f64::NAN; n];
        }
        for r in c + 1..n {
            let q = m[r * n + c] / d;
            if q != 0.0 {
                for j in c..n {
                    m[r * n + j] -= q * m[c * n + j];
                }
                x[r] -= q * x[c];
            }
        }
    }
    for c in (0..n).rev() {
        let mut s = x[c];
        for j in c + 1..n {
            s -= m[c * n + j] * x[j];
        }
        x[c] = s / m[c * n + c];
    }
    x
}

/// Dual-number arithmetic (one direction): Jacobians for the checks and the reference.
pub struct Duals;

impl Arith for Duals {
    type V = Dual;
    fn num(&mut self, c: f64) -> Dual {
        Dual::c(c)
    }
    fn bin(&mut self, op: BinOp, a: Dual, b: Dual) -> Dual {
        arithmetic(op, a, b)
    }
    fn neg(&mut self, a: Dual) -> Dual {
        Dual { v: -a.v, d: -a.d }
    }
    fn elem(&mut self, f: ElemFn, a: Dual) -> Dual {
        let v = F64.elem(f, a.v);
        let dv = match f {
            ElemFn::Exp => v,
            ElemFn::Log => 1.0 / a.v,
            ElemFn::Sqrt => 0.5 / v,
            ElemFn::Tanh => 1.0 - v * v,
            ElemFn::Sinh => a.v.cosh(),
            ElemFn::Cosh => a.v.sinh(),
            ElemFn::Log1p => 1.0 / (1.0 + a.v),
            ElemFn::Expm1 => a.v.exp(),
            ElemFn::Sin => a.v.cos(),
            ElemFn::Cos => -a.v.sin(),
            ElemFn::Atan => 1.0 / (1.0 + a.v * a.v),
            ElemFn::Softplus => 1.0 / (1.0 + (-a.v).exp()),
            ElemFn::Sigmoid => v * (1.0 - v),
        };
        Dual { v, d: a.d * dv }
    }
    fn hypot(&mut self, a: Dual, b: Dual) -> Dual {
        let h = a.v.hypot(b.v);
        let d = if h == 0.0 { 0.0 } else { (a.v / h) * a.d + (b.v / h) * b.d };
        Dual { v: h, d }
    }
    fn max(&mut self, a: Dual, b: Dual) -> Dual {
        if a.v - b.v > 0.0 {
            a
        } else {
            b
        }
    }
    fn solve(&mut self, n: usize, a: &[Dual], b: &[Dual]) -> Vec<Dual> {
        // x = A⁻¹b, dx = A⁻¹(db − dA·x)
        let av: Vec<f64> = a.iter().map(|d| d.v).collect();
        let x = solve_f64(n, &av, &b.iter().map(|d| d.v).collect::<Vec<_>>());
        let rhs: Vec<f64> = (0..n).map(|r| b[r].d - (0..n).map(|c| a[r * n + c].d * x[c]).sum::<f64>()).collect();
        let dx = solve_f64(n, &av, &rhs);
        x.iter().zip(dx).map(|(v, d)| Dual { v: *v, d }).collect()
    }
}

/// The map's Jacobian (n × n, row-major) at `x` by n dual-number passes.
pub fn jacobian(map: &Map, x: &[f64], params: &[Vec<f64>]) -> Result<Vec<f64>, String> {
    let n = x.len();
    let pd: Vec<Vec<Dual>> = params.iter().map(|p| p.iter().map(|v| Dual::c(*v)).collect()).collect();
    let mut jac = vec![0.0; n * n];
    for c in 0..n {
        let xd: Vec<Dual> = x.iter().enumerate().map(|(i, v)| Dual { v: *v, d: f64::from(u8::from(i == c)) }).collect();
        for (r, y) in apply(map, &mut Duals, &xd, &pd)?.iter().enumerate() {
            jac[r * n + c] = y.d;
        }
    }
    Ok(jac)
}
