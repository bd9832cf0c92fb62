//! The one op list of the IR. It is also the e-graph language of `derive`.
//!
//! Every op has: an f64 evaluator arm (`eval.rs`), a high-precision arm (`hp.rs`),
//! an interval arm (`interval.rs`), a derivative rule (`derive/diff.rs`) and at least
//! one tested rewrite (`derive/rules.rs`); `tests/coverage.rs` fails when one is missing.

use egg::{define_language, Id, Symbol};
use ordered_float::NotNan;
use std::fmt;
use std::str::FromStr;

/// A finite f64 constant that can live in an e-graph (hashable, ordered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Const(pub NotNan<f64>);

impl Const {
    pub fn new(v: f64) -> Option<Const> {
        if v.is_finite() {
            NotNan::new(v).ok().map(Const)
        } else {
            None
        }
    }
    pub fn get(self) -> f64 {
        self.0.into_inner()
    }
}

impl FromStr for Const {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let v: f64 = s.parse().map_err(|_| format!("not a number: {s}"))?;
        Const::new(v).ok_or_else(|| format!("not finite: {s}"))
    }
}

impl fmt::Display for Const {
    /// Shortest representation that parses back to the same f64.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.get();
        if v == v.trunc() && v.abs() < 1e16 {
            write!(f, "{}", v as i64)
        } else {
            write!(f, "{v:?}")
        }
    }
}

define_language! {
    /// Scalar operations. Grouped: arithmetic, powers and roots, exponentials and logs,
    /// trigonometric, hyperbolic, neural-net scalars, piecewise, and derivation-only.
    pub enum Math {
        // arithmetic
        "+" = Add([Id; 2]),
        "-" = Sub([Id; 2]),
        "*" = Mul([Id; 2]),
        "/" = Div([Id; 2]),
        "neg" = Neg(Id),
        // powers and roots
        "pow" = Pow([Id; 2]),
        "sqrt" = Sqrt(Id),
        "cbrt" = Cbrt(Id),
        // exponentials and logarithms
        "exp" = Exp(Id),
        "expm1" = Expm1(Id),
        "log" = Log(Id),
        "log1p" = Log1p(Id),
        // trigonometric
        "sin" = Sin(Id),
        "cos" = Cos(Id),
        "tan" = Tan(Id),
        "atan" = Atan(Id),
        // hyperbolic
        "sinh" = Sinh(Id),
        "cosh" = Cosh(Id),
        "tanh" = Tanh(Id),
        "asinh" = Asinh(Id),
        "acosh" = Acosh(Id),
        "atanh" = Atanh(Id),
        // neural-net scalars
        "sigmoid" = Sigmoid(Id),
        "logit" = Logit(Id),
        "softplus" = Softplus(Id),
        // piecewise
        "abs" = Abs(Id),
        "sign" = Sign(Id),
        // derivation-only: `solve(y, f)` is the x with f(x) = y; `logcosh(u)` = log(cosh u);
        // `hypot(a, b)` = sqrt(a^2 + b^2) without overflow; `ifpos(c, a, b)` = a if c > 0 else b
        "logcosh" = LogCosh(Id),
        "hypot" = Hypot([Id; 2]),
        // `powrecip(a, d)` = a^(1/d) with the reciprocal carried in double-double
        "powrecip" = PowRecip([Id; 2]),
        "ifpos" = IfPos([Id; 3]),
        "solve" = Solve([Id; 2]),
        // leaves
        Num(Const),
        Sym(Symbol),
    }
}

/// Builds an op node from its children.
pub type Constructor = fn(&[Id]) -> Math;

/// The user-visible functions: name, arity, constructor.
pub fn function(name: &str) -> Option<(usize, Constructor)> {
    let f: (usize, Constructor) = match name {
        "pow" => (2, |a| Math::Pow([a[0], a[1]])),
        "sqrt" => (1, |a| Math::Sqrt(a[0])),
        "cbrt" => (1, |a| Math::Cbrt(a[0])),
        "exp" => (1, |a| Math::Exp(a[0])),
        "expm1" => (1, |a| Math::Expm1(a[0])),
        "log" => (1, |a| Math::Log(a[0])),
        "log1p" => (1, |a| Math::Log1p(a[0])),
        "sin" => (1, |a| Math::Sin(a[0])),
        "cos" => (1, |a| Math::Cos(a[0])),
        "tan" => (1, |a| Math::Tan(a[0])),
        "atan" => (1, |a| Math::Atan(a[0])),
        "sinh" => (1, |a| Math::Sinh(a[0])),
        "cosh" => (1, |a| Math::Cosh(a[0])),
        "tanh" => (1, |a| Math::Tanh(a[0])),
        "asinh" => (1, |a| Math::Asinh(a[0])),
        "acosh" => (1, |a| Math::Acosh(a[0])),
        "atanh" => (1, |a| Math::Atanh(a[0])),
        "sigmoid" => (1, |a| Math::Sigmoid(a[0])),
        "logit" => (1, |a| Math::Logit(a[0])),
        "softplus" => (1, |a| Math::Softplus(a[0])),
        "abs" => (1, |a| Math::Abs(a[0])),
        "sign" => (1, |a| Math::Sign(a[0])),
        _ => return None,
    };
    Some(f)
}

/// Names of the user-visible functions, for messages.
pub const FUNCTIONS: &[&str] = &[
    "pow", "sqrt", "cbrt", "exp", "expm1", "log", "log1p", "sin", "cos", "tan", "atan", "sinh", "cosh", "tanh", "asinh", "acosh", "atanh",
    "sigmoid", "logit", "softplus", "abs", "sign",
];

/// One representative node of every op, for coverage tests.
pub fn all_ops() -> Vec<Math> {
    let a = Id::from(0usize);
    let mut v: Vec<Math> = vec![
        Math::Add([a, a]),
        Math::Sub([a, a]),
        Math::Mul([a, a]),
        Math::Div([a, a]),
        Math::Neg(a),
        Math::LogCosh(a),
        Math::Hypot([a, a]),
        Math::PowRecip([a, a]),
        Math::IfPos([a, a, a]),
        Math::Solve([a, a]),
        Math::Num(Const::new(1.0).unwrap()),
        Math::Sym(Symbol::from("x")),
    ];
    for name in FUNCTIONS {
        let (arity, mk) = function(name).unwrap();
        v.push(mk(&vec![a; arity]));
    }
    v
}
