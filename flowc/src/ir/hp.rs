//! The high-precision reference evaluator: the oracle for every numeric check.
//!
//! Arbitrary-precision binary floats (astro-float, pure Rust, correctly rounded
//! elementary functions, an exponent range far beyond f64's). Precision adapts: each
//! evaluation carries a forward error analysis (cancellation, arguments near roots and
//! poles, amplification by exponentials) and is repeated at higher precision until the
//! relative error is below 2^-100, so cancellation in the formula itself (e.g.
//! `exp(x) - 1` at x = 1e-300) does not fool the reference.
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
pub const MAX_BITS: usize = 4096;

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

/// An f64 as a big float. Subnormals are scaled into the normal range first and scaled
/// back exactly (astro-float's own conversion halves them).
fn num(v: f64, p: usize) -> BigFloat {
    if v != 0.0 && v.abs() < f64::MIN_POSITIVE {
        let scale = 2f64.powi(64);
        return BigFloat::from_f64(v * scale, p).div(&BigFloat::from_f64(scale, p), p, RM);
    }
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
            let m = a.abs();
            if m.cmp(&one) == Some(-1) {
                // log1p(2 sinh²(a/2)): no cancellation for small |a| (the form below loses
                // 2·|log2 a| bits, all of them below 2^-64)
                let s = m.div(&two, p, RM).sinh(p, RM, cc);
                return log1p(&s.mul(&s, p, RM).mul(&two, p, RM), p, cc);
            }
            // |a| - log 2 + log1p(e^(-2|a|))
            let e = m.mul(&two, p, RM).neg().exp(p, RM, cc);
            let ln2 = cc.ln_2(p, RM);
            m.sub(&ln2, p, RM).add(&log1p(&e, p, cc), p, RM)
        }
        Math::PowRecip(_) => pow(a, &one.div(b, p, RM), p, cc),
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
    eval_tracked(e, env, p).0
}

fn exponent(v: &BigFloat) -> Option<i64> {
    if v.is_zero() || v.is_nan() || v.is_inf() {
        None
    } else {
        v.exponent().map(|e| e as i64)
    }
}

/// "No error": the relative-error exponent of an exact value.
const EXACT: i64 = -1_000_000;
/// "Unknown error": nothing of the value can be trusted.
const UNKNOWN: i64 = 1_000_000;

/// Evaluates at `p` bits with a forward error analysis: returns the value and log2 of a
/// bound on its relative error. Each op's own rounding contributes 2^-p; errors of its
/// arguments are carried by the op's condition number: sums by the ratio of the operands'
/// magnitudes to the result's (cancellation), products add, exp-like functions multiply by
/// |argument|, log by 1/|log a|, tan, atanh and logit near their poles and ends, sin and
/// cos near their zeros. For `ifpos` only the selected branch counts.
fn eval_tracked(e: &Expr, env: &dyn Fn(Symbol, usize) -> BigFloat, p: usize) -> (BigFloat, i64) {
    CONSTS.with(|cc| {
        let cc = &mut cc.borrow_mut();
        let n = e.as_ref().len();
        let mut vals: Vec<BigFloat> = Vec::with_capacity(n);
        let mut errs: Vec<i64> = Vec::with_capacity(n);
        let round = -(p as i64);
        for node in e.as_ref() {
            let (v, err) = match node {
                Math::Sym(s) => match s.as_str() {
                    "pi" => (cc.pi(p, RM), round),
                    "e" => (num(1.0, p).exp(p, RM, cc), round),
                    _ => (env(*s, p), EXACT),
                },
                Math::Num(_) => (apply(node, &[], p, cc), EXACT),
                _ => {
                    let ch = egg::Language::children(node);
                    let args: Vec<&BigFloat> = ch.iter().map(|c| &vals[usize::from(*c)]).collect();
                    let ae: Vec<i64> = ch.iter().map(|c| errs[usize::from(*c)]).collect();
                    let r = apply(node, &args, p, cc);
                    let own = if r.inexact()
                        || !matches!(
                            node,
                            Math::Add(_) | Math::Sub(_) | Math::Mul(_) | Math::Neg(_) | Math::Abs(_) | Math::Sign(_) | Math::IfPos(_)
                        ) {
                        round
                    } else {
                        EXACT
                    };
                    let worst = ae.iter().copied().max().unwrap_or(EXACT);
                    let eo = exponent(&r);
                    let ea = args.first().and_then(|a| exponent(a));
                    let carried = if worst <= EXACT / 2 {
                        EXACT
                    } else {
                        match node {
                            Math::Add(_) | Math::Sub(_) => {
                                // absolute error exponent of each operand, relative to the result
                                let abs_err = ch
                                    .iter()
                                    .zip(&args)
                                    .map(|(c, a)| exponent(a).map(|x| errs[usize::from(*c)] + x).unwrap_or(EXACT))
                                    .max()
                                    .unwrap_or(EXACT);
                                match eo {
                                    Some(o) => abs_err - o,
                                    // a cancelled zero whose absolute error is below every f64 is
                                    // zero for our purposes
                                    None if r.is_zero() && abs_err < -1100 => EXACT,
                                    None if r.is_zero() && abs_err > EXACT / 2 => UNKNOWN,
                                    None => EXACT,
                                }
                            }
                            Math::Mul(_) | Math::Div(_) | Math::Hypot(_) => worst + 1,
                            Math::Neg(_)
                            | Math::Abs(_)
                            | Math::Sign(_)
                            | Math::Sqrt(_)
                            | Math::Cbrt(_)
                            | Math::Atan(_)
                            | Math::Asinh(_)
                            | Math::Tanh(_)
                            | Math::Sigmoid(_)
                            | Math::Softplus(_)
                            | Math::Log1p(_)
                            | Math::LogCosh(_) => worst,
                            Math::IfPos([c, a, b]) => {
                                let cv = &vals[usize::from(*c)];
                                let pick = if cv.is_positive() && !cv.is_zero() { a } else { b };
                                errs[usize::from(*pick)]
                            }
                            // e^a, sinh, cosh, expm1: the absolute error of a becomes relative
                            Math::Exp(_) | Math::Expm1(_) | Math::Sinh(_) | Math::Cosh(_) => worst + ea.unwrap_or(0).max(0),
                            // a^b = e^(b log a): errors of b scale with |b log a|, of a with |b|
                            Math::Pow(_) | Math::PowRecip(_) => {
                                let eb = args.get(1).and_then(|b| exponent(b)).unwrap_or(0);
                                let la = exponent(&args[0].abs().ln(64, RM, cc)).unwrap_or(0);
                                worst + (eb + la.max(0)).max(0) + 1
                            }
                            // log: condition 1/|log a|; acosh near 1 similarly
                            Math::Log(_) | Math::Acosh(_) => worst + eo.map(|o| -o).unwrap_or(0).max(0),
                            // sin, cos, tan: condition |a f'(a)/f(a)|
                            Math::Sin(_) | Math::Cos(_) => {
                                worst
                                    + match (ea, eo) {
                                        (Some(i), Some(o)) => (i - o).max(0),
                                        _ => 0,
                                    }
                            }
                            Math::Tan(_) => {
                                worst
                                    + match (ea, eo) {
                                        (Some(i), Some(o)) => (i - o).abs(),
                                        _ => 0,
                                    }
                            }
                            // near the ends of the domain: about 1/(1 - |a|)
                            Math::Atanh(_) => worst + exponent(&num(1.0, p).sub(&args[0].abs(), p, RM)).map(|x| -x).unwrap_or(0).max(0),
                            Math::Logit(_) => {
                                let a = args[0];
                                let near = if a.cmp(&num(0.5, p)) == Some(1) { num(1.0, p).sub(a, p, RM) } else { a.clone() };
                                worst + exponent(&near).map(|x| -x).unwrap_or(0).max(0)
                            }
                            Math::Solve(_) | Math::Num(_) | Math::Sym(_) => UNKNOWN,
                        }
                    };
                    // an exact zero computed from inexact arguments (log of a rounded 1, sin of a
                    // rounded pi) says nothing about the true value, unless a factor is exactly 0
                    let exact_zero_factor = matches!(node, Math::Mul(_) | Math::Div(_))
                        && ch.iter().zip(&args).any(|(c, a)| a.is_zero() && errs[usize::from(*c)] <= EXACT / 2);
                    let carried = if r.is_zero()
                        && worst > EXACT / 2
                        && !exact_zero_factor
                        && carried < UNKNOWN / 2
                        && !matches!(node, Math::Add(_) | Math::Sub(_))
                    {
                        UNKNOWN
                    } else {
                        carried
                    };
                    (r, carried.max(own).min(UNKNOWN))
                }
            };
            vals.push(v);
            errs.push(err);
        }
        (vals.pop().unwrap(), errs.pop().unwrap())
    })
}

/// Good bits required of an accepted value (f64 needs 53).
const MARGIN: i64 = 100;

/// Evaluates `e` to the f64 nearest its exact value: from 128 bits, the precision grows
/// until the error analysis bounds the relative error by 2^-100. `None` if that does not
/// happen by [`MAX_BITS`]: the formula is too ill-conditioned there, and callers use an
/// equal, better-conditioned form instead.
pub fn eval_with(e: &Expr, env: &dyn Fn(Symbol) -> f64) -> Option<f64> {
    eval_up_to(e, env, MAX_BITS)
}

/// [`eval_with`] with a lower precision cap (for alternative forms that are only tried).
pub fn eval_up_to(e: &Expr, env: &dyn Fn(Symbol) -> f64, max_bits: usize) -> Option<f64> {
    let big = |s: Symbol, p: usize| num(env(s), p);
    let mut p = 128;
    let mut prev: Option<f64> = None;
    while p <= max_bits {
        let (v, err) = eval_tracked(e, &big, p);
        if err <= -MARGIN || v.is_zero() && err <= EXACT / 2 {
            return Some(to_f64(&v));
        }
        // at the last precision, a value below 1 in magnitude known to an absolute 2^-100
        // is enough for the bounds, which all allow an absolute error (their `+ 1` term)
        let last = 2 * p > max_bits;
        if last && err < UNKNOWN / 2 && exponent(&v).map(|x| err + x <= -MARGIN).unwrap_or(v.is_zero()) {
            return Some(to_f64(&v));
        }
        // last resort at the cap: the two highest precisions round to the same f64 (a value
        // such as log(1) = 0 reached through rounded intermediates, whose error the analysis
        // cannot bound)
        let cur = to_f64(&v);
        if last && prev.map(|pv| pv.to_bits() == cur.to_bits() || (pv == 0.0 && cur == 0.0)).unwrap_or(false) {
            return Some(cur);
        }
        prev = Some(cur);
        if v.is_nan() && err <= -MARGIN {
            return Some(f64::NAN);
        }
        // grow to a precision that covers the estimated loss (at least double)
        let loss = if err >= UNKNOWN / 2 { 3 * p as i64 } else { err + p as i64 };
        let need = ((loss + MARGIN + 1).max(2 * p as i64) as usize).next_power_of_two();
        // the cap itself is always tried once
        p = if p < max_bits { need.min(max_bits) } else { need };
    }
    None
}

/// Evaluates `e` with named values.
pub fn eval(e: &Expr, env: &[(&str, f64)]) -> Option<f64> {
    let env = |s: Symbol| env.iter().find(|(n, _)| *n == s.as_str()).map(|(_, v)| *v).unwrap_or(f64::NAN);
    eval_with(e, &env)
}

/// d e / d var at a point, by a central difference in high precision (an independent
/// check of symbolic derivatives): step h = 2^-120·|x| (2^-600 at 0), evaluated at 2048
/// bits, so truncation (~h²) and rounding (~2^-2048/h) errors are far below f64 resolution
/// from 1e-300 to 1e300.
pub fn central_difference(e: &Expr, var: &str, x: f64, env: &dyn Fn(Symbol) -> f64) -> f64 {
    let p = 2048;
    let var = Symbol::from(var);
    let h = if x == 0.0 { num(2f64.powi(-600), p) } else { num(x.abs(), p).mul(&num(2f64.powi(-120), p), p, RM) };
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

/// The value at `p` bits and log2 of the analysed relative-error bound (diagnostics).
pub fn analyse(e: &Expr, env: &dyn Fn(Symbol) -> f64, p: usize) -> (f64, i64) {
    let (v, err) = eval_tracked(e, &|s, p| num(env(s), p), p);
    (to_f64(&v), err)
}
