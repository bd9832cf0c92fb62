//! The high-precision reference evaluator: the oracle for every numeric check.
//!
//! Arbitrary-precision binary floats (astro-float, pure Rust, correctly rounded
//! elementary functions, an exponent range far beyond f64's). Precision adapts:
//! an expression is evaluated at 128, 256, 512, ... bits until two successive
//! precisions round to the same f64, so cancellation in the formula itself
//! (e.g. `exp(x) - 1` at x = 1e-300) does not fool the reference.
//!
//! ```
//! use flowc::ir::{hp, parse_expr};
//! let e = parse_expr("(- (exp x) 1)");
//! assert_eq!(hp::eval(&e, &[("x", 1e-300)]).unwrap(), 1e-300);
//! ```

use super::expr::Expr;
use super::op::Math;
use astro_float::{BigFloat, Consts, RoundingMode, Sign};
use egg::Symbol;
use std::cell::RefCell;

const RM: RoundingMode = RoundingMode::ToEven;
/// The highest precision tried, in bits.
pub const MAX_BITS: usize = 8192;

thread_local! {
    static CONSTS: RefCell<Consts> = RefCell::new(Consts::new().expect("astro-float constants cache"));
}

/// Rounds a big float to the nearest f64 (overflow to ±inf, underflow to ±0).
pub fn to_f64(v: &BigFloat) -> f64 {
    if v.is_nan() {
        return f64::NAN;
    }
    if v.is_inf_pos() {
        return f64::INFINITY;
    }
    if v.is_inf_neg() {
        return f64::NEG_INFINITY;
    }
    if v.is_zero() {
        return if v.is_negative() { -0.0 } else { 0.0 };
    }
    let Some((words, _bits, sign, exp, _inexact)) = v.as_raw_parts() else { return f64::NAN };
    let n = words.len();
    let top = words[n - 1];
    let sticky = words[..n - 1].iter().any(|w| *w != 0);
    let m = top | sticky as u64;
    // value = 0.m * 2^exp = m * 2^(exp - 64)
    let e = exp as i64 - 64;
    let mut r = m as f64;
    if e > 1100 {
        r = f64::INFINITY;
    } else if e < -1300 {
        r = 0.0;
    } else {
        let mut k = e;
        while k > 0 {
            let s = k.min(1000);
            r *= 2f64.powi(s as i32);
            k -= s;
        }
        while k < 0 {
            let s = (-k).min(1000);
            r *= 2f64.powi(-(s as i32));
            k += s;
        }
    }
    if sign == Sign::Neg {
        -r
    } else {
        r
    }
}

fn num(v: f64, p: usize) -> BigFloat {
    BigFloat::from_f64(v, p)
}

/// The value of one op at precision `p` bits.
pub fn apply(node: &Math, args: &[&BigFloat], p: usize, cc: &mut Consts) -> BigFloat {
    let zero = num(0.0, p);
    let a = args.first().copied().unwrap_or(&zero);
    let b = args.get(1).copied().unwrap_or(&zero);
    let one = num(1.0, p);
    let two = num(2.0, p);
    match node {
        Math::Add(_) => a.add(b, p, RM),
        Math::Sub(_) => a.sub(b, p, RM),
        Math::Mul(_) => a.mul(b, p, RM),
        Math::Div(_) => a.div(b, p, RM),
        Math::Neg(_) => a.neg(),
        Math::Pow(_) => pow(a, b, p, cc),
        Math::Sqrt(_) => a.sqrt(p, RM),
        Math::Cbrt(_) => a.cbrt(p, RM),
        Math::Exp(_) => a.exp(p, RM, cc),
        Math::Expm1(_) => expm1(a, p, cc),
        Math::Log(_) => a.ln(p, RM, cc),
        Math::Log1p(_) => log1p(a, p, cc),
        Math::Sin(_) => a.sin(p, RM, cc),
        Math::Cos(_) => a.cos(p, RM, cc),
        Math::Tan(_) => a.tan(p, RM, cc),
        Math::Atan(_) => a.atan(p, RM, cc),
        Math::Sinh(_) => a.sinh(p, RM, cc),
        Math::Cosh(_) => a.cosh(p, RM, cc),
        Math::Tanh(_) => a.tanh(p, RM, cc),
        Math::Asinh(_) => a.asinh(p, RM, cc),
        Math::Acosh(_) => a.acosh(p, RM, cc),
        Math::Atanh(_) => a.atanh(p, RM, cc),
        Math::Sigmoid(_) => {
            // 1/(1+e^-a) for a >= 0, e^a/(1+e^a) otherwise: no overflow of e^|a|
            if a.is_negative() {
                let e = a.exp(p, RM, cc);
                e.div(&one.add(&e, p, RM), p, RM)
            } else {
                let e = a.neg().exp(p, RM, cc);
                one.div(&one.add(&e, p, RM), p, RM)
            }
        }
        Math::Logit(_) => a.div(&one.sub(a, p, RM), p, RM).ln(p, RM, cc),
        Math::Softplus(_) => {
            // max(a, 0) + log(1 + e^-|a|)
            let e = a.abs().neg().exp(p, RM, cc);
            let l = log1p(&e, p, cc);
            if a.is_negative() {
                l
            } else {
                a.add(&l, p, RM)
            }
        }
        Math::Abs(_) => a.abs(),
        Math::Sign(_) => {
            if a.is_nan() {
                a.clone()
            } else if a.is_zero() {
                num(0.0, p)
            } else if a.is_negative() {
                num(-1.0, p)
            } else {
                one
            }
        }
        Math::LogCosh(_) => {
            // |a| - log 2 + log1p(e^(-2|a|))
            let m = a.abs();
            let e = m.mul(&two, p, RM).neg().exp(p, RM, cc);
            let ln2 = cc.ln_2(p, RM);
            m.sub(&ln2, p, RM).add(&log1p(&e, p, cc), p, RM)
        }
        Math::Hypot(_) => a.mul(a, p, RM).add(&b.mul(b, p, RM), p, RM).sqrt(p, RM),
        Math::IfPos(_) => {
            if a.is_positive() && !a.is_zero() {
                b.clone()
            } else {
                args[2].clone()
            }
        }
        Math::Solve(_) | Math::Sym(_) => BigFloat::nan(None),
        Math::Num(c) => num(c.get(), p),
    }
}

fn pow(a: &BigFloat, b: &BigFloat, p: usize, cc: &mut Consts) -> BigFloat {
    // IEEE pow conventions that matter for formulas: x^0 = 1, negative base with integer exponent
    if b.is_zero() {
        return num(1.0, p);
    }
    if a.is_negative() && b.is_int() {
        let r = a.abs().pow(b, p, RM, cc);
        let half = b.div(&num(2.0, p), p, RM);
        return if half.is_int() { r } else { r.neg() };
    }
    if a.is_zero() {
        return if b.is_negative() { BigFloat::from_f64(f64::INFINITY, p) } else { num(0.0, p) };
    }
    a.pow(b, p, RM, cc)
}

fn expm1(a: &BigFloat, p: usize, cc: &mut Consts) -> BigFloat {
    // the adaptive driver supplies enough bits for exp(a) - 1 near 0; for tiny |a| use the series
    let tiny = a.exponent().map(|e| (e as i64) < -(p as i64) / 2).unwrap_or(false);
    if tiny {
        // a + a^2/2 (the next term is below the precision)
        let h = a.mul(a, p, RM).div(&num(2.0, p), p, RM);
        return a.add(&h, p, RM);
    }
    a.exp(p, RM, cc).sub(&num(1.0, p), p, RM)
}

fn log1p(a: &BigFloat, p: usize, cc: &mut Consts) -> BigFloat {
    let tiny = a.exponent().map(|e| (e as i64) < -(p as i64) / 2).unwrap_or(false);
    if tiny {
        let h = a.mul(a, p, RM).div(&num(2.0, p), p, RM);
        return a.sub(&h, p, RM);
    }
    num(1.0, p).add(a, p, RM).ln(p, RM, cc)
}

/// Evaluates at a fixed precision of `p` bits.
pub fn eval_at(e: &Expr, env: &dyn Fn(Symbol) -> f64, p: usize) -> BigFloat {
    eval_big(e, &|s, p| num(env(s), p), p)
}

/// Evaluates at `p` bits with big-float inputs.
pub fn eval_big(e: &Expr, env: &dyn Fn(Symbol, usize) -> BigFloat, p: usize) -> BigFloat {
    CONSTS.with(|cc| {
        let cc = &mut cc.borrow_mut();
        let mut vals: Vec<BigFloat> = Vec::with_capacity(e.as_ref().len());
        for node in e.as_ref() {
            let v = match node {
                Math::Sym(s) => match s.as_str() {
                    "pi" => cc.pi(p, RM),
                    "e" => num(1.0, p).exp(p, RM, cc),
                    _ => env(*s, p),
                },
                _ => {
                    let args: Vec<&BigFloat> = egg::Language::children(node).iter().map(|c| &vals[usize::from(*c)]).collect();
                    apply(node, &args, p, cc)
                }
            };
            vals.push(v);
        }
        vals.pop().unwrap()
    })
}

/// Evaluates `e` to the f64 nearest its exact value (`None` if no two successive
/// precisions up to [`MAX_BITS`] agree: the value is too ill-conditioned to pin down).
pub fn eval_with(e: &Expr, env: &dyn Fn(Symbol) -> f64) -> Option<f64> {
    let mut p = 128;
    let mut prev = to_f64(&eval_at(e, env, p));
    while p < MAX_BITS {
        p *= 2;
        let cur = to_f64(&eval_at(e, env, p));
        if cur.to_bits() == prev.to_bits() || (cur.is_nan() && prev.is_nan()) {
            return Some(cur);
        }
        prev = cur;
    }
    None
}

/// Evaluates `e` with named values.
pub fn eval(e: &Expr, env: &[(&str, f64)]) -> Option<f64> {
    let env = |s: Symbol| env.iter().find(|(n, _)| *n == s.as_str()).map(|(_, v)| *v).unwrap_or(f64::NAN);
    eval_with(e, &env)
}

/// d e / d var at a point, by a central difference in high precision (an independent
/// check of symbolic derivatives): step h = max(2^-120·|x|, 2^-600), evaluated at 2048
/// bits, so truncation (~h²) and rounding (~2^-2048/h) errors are far below f64 resolution.
pub fn central_difference(e: &Expr, var: &str, x: f64, env: &dyn Fn(Symbol) -> f64) -> f64 {
    let p = 2048;
    let var = Symbol::from(var);
    let h = num((x.abs() * 2f64.powi(-120)).max(2f64.powi(-600)), p);
    let xb = num(x, p);
    let at = |xv: BigFloat| {
        let look = move |s: Symbol, p: usize| if s == var { xv.clone() } else { num(env(s), p) };
        eval_big(e, &look, p)
    };
    let fp = at(xb.add(&h, p, RM));
    let fm = at(xb.sub(&h, p, RM));
    let d = fp.sub(&fm, p, RM).div(&h.mul(&num(2.0, p), p, RM), p, RM);
    to_f64(&d)
}
