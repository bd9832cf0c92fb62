//! The f64 reference evaluator: every op with libm-quality semantics.
//!
//! ```
//! use flowc::ir::{eval, parse_expr};
//! let e = parse_expr("(softplus x)");
//! let v = eval::eval(&e, &[("x", 0.0)]);
//! assert!((v - std::f64::consts::LN_2).abs() < 1e-16);
//! ```

use super::expr::Expr;
use super::op::Math;
use egg::Symbol;

/// The ops that map to one arithmetic operator or libm function, for f64 and f32 alike
/// (`None` for the composite ops).
macro_rules! primitive {
    ($name:ident, $t:ty) => {
        fn $name(node: &Math, a: $t, b: $t) -> Option<$t> {
            Some(match node {
                Math::Add(_) => a + b,
                Math::Sub(_) => a - b,
                Math::Mul(_) => a * b,
                Math::Div(_) => a / b,
                Math::Neg(_) => -a,
                Math::Pow(_) => a.powf(b),
                Math::Sqrt(_) => a.sqrt(),
                Math::Cbrt(_) => a.cbrt(),
                Math::Exp(_) => a.exp(),
                Math::Expm1(_) => a.exp_m1(),
                Math::Log(_) => a.ln(),
                Math::Log1p(_) => a.ln_1p(),
                Math::Sin(_) => a.sin(),
                Math::Cos(_) => a.cos(),
                Math::Tan(_) => a.tan(),
                Math::Atan(_) => a.atan(),
                Math::Sinh(_) => a.sinh(),
                Math::Cosh(_) => a.cosh(),
                Math::Tanh(_) => a.tanh(),
                Math::Asinh(_) => a.asinh(),
                Math::Acosh(_) => a.acosh(),
                Math::Atanh(_) => a.atanh(),
                Math::Abs(_) => a.abs(),
                Math::Hypot(_) => a.hypot(b),
                _ => return None,
            })
        }
    };
}
primitive!(primitive_f64, f64);
primitive!(primitive_f32, f32);

/// The value of one op on f64 arguments.
pub fn apply(node: &Math, args: &[f64]) -> f64 {
    let a = args.first().copied().unwrap_or(0.0);
    let b = args.get(1).copied().unwrap_or(0.0);
    if let Some(v) = primitive_f64(node, a, b) {
        return v;
    }
    match node {
        Math::Sigmoid(_) => sigmoid(a),
        Math::Logit(_) => logit(a),
        Math::Softplus(_) => softplus(a),
        Math::Sign(_) => sign(a),
        Math::LogCosh(_) => logcosh(a),
        Math::PowRecip(_) => pow_recip(a, b),
        Math::IfPos(_) => {
            if a > 0.0 {
                b
            } else {
                args[2]
            }
        }
        Math::Num(c) => c.get(),
        // `solve` and free symbols have no value by themselves
        _ => f64::NAN,
    }
}

pub use runtime::math::{logcosh, logit, pow_recip, sigmoid, sign, softplus};

/// The named constants `pi` and `e`.
pub fn constant(s: Symbol) -> Option<f64> {
    match s.as_str() {
        "pi" => Some(std::f64::consts::PI),
        "e" => Some(std::f64::consts::E),
        _ => None,
    }
}

/// Evaluates all nodes; returns every node's value (the root's is last).
pub fn eval_all(e: &Expr, env: &dyn Fn(Symbol) -> f64) -> Vec<f64> {
    let mut vals: Vec<f64> = Vec::with_capacity(e.as_ref().len());
    for node in e.as_ref() {
        let v = match node {
            Math::Sym(s) => constant(*s).unwrap_or_else(|| env(*s)),
            _ => {
                let args: Vec<f64> = egg::Language::children(node).iter().map(|c| vals[usize::from(*c)]).collect();
                apply(node, &args)
            }
        };
        vals.push(v);
    }
    vals
}

/// Evaluates `e` in f64 with the named values.
pub fn eval(e: &Expr, env: &[(&str, f64)]) -> f64 {
    let env = |s: Symbol| env.iter().find(|(n, _)| *n == s.as_str()).map(|(_, v)| *v).unwrap_or(f64::NAN);
    *eval_all(e, &env).last().unwrap()
}

/// Evaluates `e` in f64 with an environment function.
pub fn eval_with(e: &Expr, env: &dyn Fn(Symbol) -> f64) -> f64 {
    *eval_all(e, env).last().unwrap()
}

/// Evaluates `e` in f32 semantics: every input and intermediate rounded to f32.
pub fn eval_f32(e: &Expr, env: &dyn Fn(Symbol) -> f64) -> f32 {
    let mut vals: Vec<f32> = Vec::with_capacity(e.as_ref().len());
    for node in e.as_ref() {
        let v = match node {
            Math::Sym(s) => constant(*s).unwrap_or_else(|| env(*s)) as f32,
            _ => {
                let args: Vec<f32> = egg::Language::children(node).iter().map(|c| vals[usize::from(*c)]).collect();
                apply_f32(node, &args)
            }
        };
        vals.push(v);
    }
    *vals.last().unwrap()
}

/// The value of one op on f32 arguments (f32 libm where it exists; composite scalars are
/// computed in f64 from the f32 inputs and rounded once).
pub fn apply_f32(node: &Math, args: &[f32]) -> f32 {
    let a = args.first().copied().unwrap_or(0.0);
    let b = args.get(1).copied().unwrap_or(0.0);
    primitive_f32(node, a, b).unwrap_or_else(|| apply(node, &args.iter().map(|v| *v as f64).collect::<Vec<_>>()) as f32)
}
