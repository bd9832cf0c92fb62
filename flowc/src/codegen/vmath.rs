//! Inline math in Cranelift IR: `exp` and `log` without a call, for f64 (f32 goes through
//! f64 and rounds once). Written over one value today; the same steps apply lane-wise to
//! f64x2 once the row loop is vectorized.
//!
//! - exp: k = nearest(x·log2 e), r = x − k·ln2 (two-part ln2, fused), e^r by its degree-13
//!   Taylor polynomial (|r| ≤ ln2/2: truncation < 0.05 ulp), times 2^k built from exponent
//!   bits in two halves (so subnormal results need no special case); overflow to +inf above
//!   709.78…, underflow to +0 below −745.13…, NaN kept.
//! - log: x = 2^e·m with m in [√½, √2) from the bits (subnormals scaled by 2^54 first),
//!   log m = 2·atanh(s), s = (m−1)/(m+1), by its odd series to s^23 arranged as
//!   f − s·(f − R) with f = m − 1 exact; e·ln2 added in two parts. log(0) = −inf, log(x < 0) = NaN, log(+inf) = +inf.
//!
//! - expm1: for |x| < 1 its Taylor polynomial without the constant term (relative
//!   accuracy near 0); otherwise 2^k·q + (2^k − 1) with q = e^r − 1 from the same reduction
//!   as exp; e^x − 1 = exp(x) above 700, −1 below −50.
//! - log1p: u = 1 + x and its exact rounding error c = x − (u − 1); log1p x = log u + c/u.
//!
//! - built on those: sinh = (expm1 x − expm1 −x)/2, cosh = (e^x + e^−x)/2,
//!   tanh = sign·t/(t + 2) with t = expm1(2|x|), asinh = sign·log1p(|x| + x²/(1 + √(1+x²)))
//!   (log(2|x|) beyond 2^28), atanh = sign·log1p(2|x|/(1 − |x|))/2, sigmoid and softplus
//!   through e^−|x|, logcosh = |x| + log1p(expm1(−2|x|)/2) (log1p(2 sinh²(x/2)) below 2),
//!   logit through exact differences near ½ (as runtime::math::logit), sign by selects.
//!
//! Measured errors are in `tests/vmath.rs` (against the high-precision reference).

use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::{types, InstBuilder, MemFlagsData, Value};
use cranelift_frontend::FunctionBuilder;

/// ln 2 in two parts: the high part has 32 trailing zero bits, so e·LN2_HI is exact.
const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);

fn c(b: &mut FunctionBuilder, v: f64) -> Value {
    b.ins().f64const(v)
}

/// 2^k for an i64 k in [−1022, 1023].
fn pow2(b: &mut FunctionBuilder, k: Value) -> Value {
    let biased = b.ins().iadd_imm_s(k, 1023);
    let bits = b.ins().ishl_imm_u(biased, 52);
    b.ins().bitcast(types::F64, MemFlagsData::new(), bits)
}

/// x clamped to [lo, hi] = k·ln2 + r with k = nearest(x·log2 e) and |r| ≤ ln2/2 (the two-part
/// ln2 fused in): returns (k as f64, r).
fn reduce(b: &mut FunctionBuilder, x: Value, lo: f64, hi: f64) -> (Value, Value) {
    let lo = c(b, lo);
    let hi = c(b, hi);
    let xc = b.ins().fmax(x, lo);
    let xc = b.ins().fmin(xc, hi);
    let log2e = c(b, std::f64::consts::LOG2_E);
    let t = b.ins().fmul(xc, log2e);
    let k = b.ins().nearest(t);
    let nk = b.ins().fneg(k);
    let ln2_hi = c(b, LN2_HI);
    let ln2_lo = c(b, LN2_LO);
    let r = b.ins().fma(nk, ln2_hi, xc);
    (k, b.ins().fma(nk, ln2_lo, r))
}

/// e^x (f64).
pub fn exp(b: &mut FunctionBuilder, x: Value) -> Value {
    let (k, r) = reduce(b, x, -746.0, 710.0);
    // Horner on 1/i!, i = 13..0
    let mut fact = [1.0f64; 14];
    for i in 1..14 {
        fact[i] = fact[i - 1] * i as f64;
    }
    let mut p = c(b, 1.0 / fact[13]);
    for i in (0..13).rev() {
        let ci = c(b, 1.0 / fact[i]);
        p = b.ins().fma(p, r, ci);
    }
    let ki = b.ins().fcvt_to_sint_sat(types::I64, k);
    let k1 = b.ins().sshr_imm_u(ki, 1);
    let k2 = b.ins().isub(ki, k1);
    let s1 = pow2(b, k1);
    let s2 = pow2(b, k2);
    let y = b.ins().fmul(p, s1);
    let y = b.ins().fmul(y, s2);
    // overflow, underflow and NaN
    let over = c(b, 709.782_712_893_384);
    let under = c(b, -745.133_219_101_941_2);
    let inf = c(b, f64::INFINITY);
    let zero = c(b, 0.0);
    let is_over = b.ins().fcmp(FloatCC::GreaterThan, x, over);
    let y = b.ins().select(is_over, inf, y);
    let is_under = b.ins().fcmp(FloatCC::LessThan, x, under);
    let y = b.ins().select(is_under, zero, y);
    let is_nan = b.ins().fcmp(FloatCC::Unordered, x, x);
    b.ins().select(is_nan, x, y)
}

/// ln x (f64).
pub fn log(b: &mut FunctionBuilder, x: Value) -> Value {
    // subnormals: scale into the normal range first
    let tiny = c(b, f64::MIN_POSITIVE);
    let is_sub = b.ins().fcmp(FloatCC::LessThan, x, tiny);
    let two54 = c(b, 2f64.powi(54));
    let xs = b.ins().fmul(x, two54);
    let xn = b.ins().select(is_sub, xs, x);
    let adj_sub = b.ins().iconst(types::I64, -54);
    let adj_none = b.ins().iconst(types::I64, 0);
    let adj = b.ins().select(is_sub, adj_sub, adj_none);
    let bits = b.ins().bitcast(types::I64, MemFlagsData::new(), xn);
    let ebits = b.ins().ushr_imm_u(bits, 52);
    let e = b.ins().iadd_imm_s(ebits, -1023);
    let e = b.ins().iadd(e, adj);
    let mant = b.ins().band_imm_u(bits, 0x000F_FFFF_FFFF_FFFF);
    let one_bits = b.ins().iconst(types::I64, 0x3FF0_0000_0000_0000);
    let mbits = b.ins().bor(mant, one_bits);
    let m = b.ins().bitcast(types::F64, MemFlagsData::new(), mbits);
    // m in [1, 2) → [√½, √2)
    let sqrt2 = c(b, std::f64::consts::SQRT_2);
    let big = b.ins().fcmp(FloatCC::GreaterThan, m, sqrt2);
    let half = c(b, 0.5);
    let mh = b.ins().fmul(m, half);
    let m = b.ins().select(big, mh, m);
    let e1 = b.ins().iadd_imm_s(e, 1);
    let e = b.ins().select(big, e1, e);
    let one = c(b, 1.0);
    let two = c(b, 2.0);
    let f = b.ins().fsub(m, one);
    let den = b.ins().fadd(two, f);
    let s = b.ins().fdiv(f, den);
    let z = b.ins().fmul(s, s);
    // log(1 + f) = 2s + s·R, R = 2z/3 + 2z²/5 + ... + 2z^11/23, and 2s = f − s·f, so
    // log(1 + f) = f − s·(f − R): the exact f carries the value, the rest is a small correction
    let mut r = c(b, 2.0 / 23.0);
    for k in (1..11).rev() {
        let ck = c(b, 2.0 / (2 * k + 1) as f64);
        r = b.ins().fma(r, z, ck);
    }
    let r = b.ins().fmul(r, z);
    let t = b.ins().fsub(f, r);
    let ns = b.ins().fneg(s);
    let logm = b.ins().fma(ns, t, f);
    let ef = b.ins().fcvt_from_sint(types::F64, e);
    let ln2_lo = c(b, LN2_LO);
    let ln2_hi = c(b, LN2_HI);
    let lo = b.ins().fma(ef, ln2_lo, logm);
    let y = b.ins().fma(ef, ln2_hi, lo);
    // special values
    let zero = c(b, 0.0);
    let ninf = c(b, f64::NEG_INFINITY);
    let inf = c(b, f64::INFINITY);
    let nan = c(b, f64::NAN);
    let is_zero = b.ins().fcmp(FloatCC::Equal, x, zero);
    let y = b.ins().select(is_zero, ninf, y);
    let is_inf = b.ins().fcmp(FloatCC::Equal, x, inf);
    let y = b.ins().select(is_inf, inf, y);
    let is_neg = b.ins().fcmp(FloatCC::LessThan, x, zero);
    let y = b.ins().select(is_neg, nan, y);
    let is_nan = b.ins().fcmp(FloatCC::Unordered, x, x);
    b.ins().select(is_nan, x, y)
}

/// Horner of Σ_{i=1..n} r^i / i! (e^r − 1 without cancellation).
fn expm1_poly(b: &mut FunctionBuilder, r: Value, n: usize) -> Value {
    let mut fact = [1.0f64; 24];
    for i in 1..24 {
        fact[i] = fact[i - 1] * i as f64;
    }
    let mut p = c(b, 1.0 / fact[n]);
    for i in (1..n).rev() {
        let ci = c(b, 1.0 / fact[i]);
        p = b.ins().fma(p, r, ci);
    }
    b.ins().fmul(p, r)
}

/// e^x − 1 (f64).
pub fn expm1(b: &mut FunctionBuilder, x: Value) -> Value {
    // |x| < 1: the polynomial directly (degree 20: truncation below 2^-64 relative)
    let small = expm1_poly(b, x, 20);
    // otherwise: x = k ln2 + r, e^x − 1 = 2^k q + (2^k − 1), q = e^r − 1
    let (k, r) = reduce(b, x, -60.0, 700.0);
    let q = expm1_poly(b, r, 14);
    let ki = b.ins().fcvt_to_sint_sat(types::I64, k);
    let s = pow2(b, ki);
    let one = c(b, 1.0);
    let sm1 = b.ins().fsub(s, one);
    let big = b.ins().fma(s, q, sm1);
    let ax = b.ins().fabs(x);
    let is_small = b.ins().fcmp(FloatCC::LessThan, ax, one);
    let y = b.ins().select(is_small, small, big);
    // far ends: e^x above 700, -1 below -50; NaN kept
    let e = exp(b, x);
    let em1 = b.ins().fsub(e, one);
    let hi = c(b, 700.0);
    let is_big = b.ins().fcmp(FloatCC::GreaterThan, x, hi);
    let y = b.ins().select(is_big, em1, y);
    let m50 = c(b, -50.0);
    let minus_one = c(b, -1.0);
    let is_neg = b.ins().fcmp(FloatCC::LessThan, x, m50);
    let y = b.ins().select(is_neg, minus_one, y);
    let is_nan = b.ins().fcmp(FloatCC::Unordered, x, x);
    b.ins().select(is_nan, x, y)
}

/// log(1 + x) (f64).
pub fn log1p(b: &mut FunctionBuilder, x: Value) -> Value {
    let one = c(b, 1.0);
    let u = b.ins().fadd(one, x);
    let um1 = b.ins().fsub(u, one);
    let corr = b.ins().fsub(x, um1);
    let lu = log(b, u);
    let q = b.ins().fdiv(corr, u);
    let y = b.ins().fadd(lu, q);
    // log(u) handles u = 0 (-inf), u < 0 (NaN), +inf and NaN; keep those as they are
    let fin = b.ins().fcmp(FloatCC::Ordered, q, q);
    let zero = c(b, 0.0);
    let upos = b.ins().fcmp(FloatCC::GreaterThan, u, zero);
    let inf = c(b, f64::INFINITY);
    let ufin = b.ins().fcmp(FloatCC::LessThan, u, inf);
    let ok = b.ins().band(fin, upos);
    let ok = b.ins().band(ok, ufin);
    b.ins().select(ok, y, lu)
}

fn select_sign(b: &mut FunctionBuilder, x: Value, y: Value) -> Value {
    // copysign(y, x) for y >= 0, keeping NaN
    let zero = c(b, 0.0);
    let neg = b.ins().fcmp(FloatCC::LessThan, x, zero);
    let ny = b.ins().fneg(y);
    b.ins().select(neg, ny, y)
}

/// sinh x.
pub fn sinh(b: &mut FunctionBuilder, x: Value) -> Value {
    let p = expm1(b, x);
    let nx = b.ins().fneg(x);
    let m = expm1(b, nx);
    let d = b.ins().fsub(p, m);
    let half = c(b, 0.5);
    b.ins().fmul(d, half)
}

/// cosh x.
pub fn cosh(b: &mut FunctionBuilder, x: Value) -> Value {
    let ax = b.ins().fabs(x);
    let e = exp(b, ax);
    let ne = b.ins().fneg(ax);
    let f = exp(b, ne);
    let s = b.ins().fadd(e, f);
    let half = c(b, 0.5);
    b.ins().fmul(s, half)
}

/// tanh x.
pub fn tanh(b: &mut FunctionBuilder, x: Value) -> Value {
    let ax = b.ins().fabs(x);
    let two = c(b, 2.0);
    let tx = b.ins().fmul(ax, two);
    let cap = c(b, 40.0);
    let tx = b.ins().fmin(tx, cap);
    let t = expm1(b, tx);
    let den = b.ins().fadd(t, two);
    let y = b.ins().fdiv(t, den);
    let y = select_sign(b, x, y);
    let is_nan = b.ins().fcmp(FloatCC::Unordered, x, x);
    b.ins().select(is_nan, x, y)
}

/// asinh x.
pub fn asinh(b: &mut FunctionBuilder, x: Value) -> Value {
    let ax = b.ins().fabs(x);
    let one = c(b, 1.0);
    let x2 = b.ins().fmul(ax, ax);
    let s = b.ins().fadd(one, x2);
    let r = b.ins().sqrt(s);
    let den = b.ins().fadd(one, r);
    let q = b.ins().fdiv(x2, den);
    let arg = b.ins().fadd(ax, q);
    let small = log1p(b, arg);
    let lx = log(b, ax);
    let ln2 = c(b, std::f64::consts::LN_2);
    let large = b.ins().fadd(lx, ln2);
    let lim = c(b, 2f64.powi(28));
    let is_large = b.ins().fcmp(FloatCC::GreaterThan, ax, lim);
    let y = b.ins().select(is_large, large, small);
    let y = select_sign(b, x, y);
    let is_nan = b.ins().fcmp(FloatCC::Unordered, x, x);
    b.ins().select(is_nan, x, y)
}

/// atanh x.
pub fn atanh(b: &mut FunctionBuilder, x: Value) -> Value {
    let ax = b.ins().fabs(x);
    let one = c(b, 1.0);
    let two = c(b, 2.0);
    let half = c(b, 0.5);
    let den = b.ins().fsub(one, ax);
    let num = b.ins().fmul(ax, two);
    let q = b.ins().fdiv(num, den);
    let l = log1p(b, q);
    let y = b.ins().fmul(l, half);
    let y = select_sign(b, x, y);
    // |x| > 1: NaN (log1p of a negative below -1 gives NaN already); NaN kept
    let is_nan = b.ins().fcmp(FloatCC::Unordered, x, x);
    b.ins().select(is_nan, x, y)
}

/// 1/(1 + e^−x).
pub fn sigmoid(b: &mut FunctionBuilder, x: Value) -> Value {
    let ax = b.ins().fabs(x);
    let nax = b.ins().fneg(ax);
    let e = exp(b, nax);
    let one = c(b, 1.0);
    let den = b.ins().fadd(one, e);
    let pos = b.ins().fdiv(one, den);
    let neg = b.ins().fdiv(e, den);
    let zero = c(b, 0.0);
    let is_neg = b.ins().fcmp(FloatCC::LessThan, x, zero);
    let y = b.ins().select(is_neg, neg, pos);
    let is_nan = b.ins().fcmp(FloatCC::Unordered, x, x);
    b.ins().select(is_nan, x, y)
}

/// log(1 + e^x).
pub fn softplus(b: &mut FunctionBuilder, x: Value) -> Value {
    let ax = b.ins().fabs(x);
    let nax = b.ins().fneg(ax);
    let e = exp(b, nax);
    let l = log1p(b, e);
    let zero = c(b, 0.0);
    let m = b.ins().fmax(x, zero);
    let y = b.ins().fadd(m, l);
    let is_nan = b.ins().fcmp(FloatCC::Unordered, x, x);
    b.ins().select(is_nan, x, y)
}

/// log cosh x.
pub fn logcosh(b: &mut FunctionBuilder, x: Value) -> Value {
    let ax = b.ins().fabs(x);
    // large: |x| + log1p(expm1(−2|x|)/2)
    let m2 = c(b, -2.0);
    let t = b.ins().fmul(ax, m2);
    let floor = c(b, -800.0);
    let t = b.ins().fmax(t, floor);
    let em = expm1(b, t);
    let half = c(b, 0.5);
    let h = b.ins().fmul(em, half);
    let l = log1p(b, h);
    let large = b.ins().fadd(ax, l);
    // small: log1p(2 sinh(|x|/2)^2)
    let hx = b.ins().fmul(ax, half);
    let sh = sinh(b, hx);
    let sh2 = b.ins().fmul(sh, sh);
    let two = c(b, 2.0);
    let q = b.ins().fmul(sh2, two);
    let small = log1p(b, q);
    let two_c = c(b, 2.0);
    let is_small = b.ins().fcmp(FloatCC::LessThan, ax, two_c);
    let y = b.ins().select(is_small, small, large);
    let is_nan = b.ins().fcmp(FloatCC::Unordered, x, x);
    b.ins().select(is_nan, x, y)
}

/// log(p/(1 − p)), as runtime::math::logit (exact differences near ½).
pub fn logit(b: &mut FunctionBuilder, p: Value) -> Value {
    let quarter = c(b, 0.25);
    let half = c(b, 0.5);
    let one = c(b, 1.0);
    let two = c(b, 2.0);
    // p < 1/4
    let lp = log(b, p);
    let np = b.ins().fneg(p);
    let l1 = log1p(b, np);
    let low = b.ins().fsub(lp, l1);
    // 1/4 <= p < 1/2: -log1p((1 - 2p)/p)
    let tp = b.ins().fmul(p, two);
    let omt = b.ins().fsub(one, tp);
    let q = b.ins().fdiv(omt, p);
    let lq = log1p(b, q);
    let mid = b.ins().fneg(lq);
    // p >= 1/2: log1p((2p - 1)/(1 - p))
    let tpm = b.ins().fsub(tp, one);
    let om = b.ins().fsub(one, p);
    let r = b.ins().fdiv(tpm, om);
    let high = log1p(b, r);
    let is_mid = b.ins().fcmp(FloatCC::LessThan, p, half);
    let y = b.ins().select(is_mid, mid, high);
    let is_low = b.ins().fcmp(FloatCC::LessThan, p, quarter);
    b.ins().select(is_low, low, y)
}

/// sign x (−1, 0 or 1; NaN kept).
pub fn sign(b: &mut FunctionBuilder, x: Value) -> Value {
    let zero = c(b, 0.0);
    let one = c(b, 1.0);
    let m1 = c(b, -1.0);
    let gt = b.ins().fcmp(FloatCC::GreaterThan, x, zero);
    let lt = b.ins().fcmp(FloatCC::LessThan, x, zero);
    let y = b.ins().select(gt, one, x);
    b.ins().select(lt, m1, y)
}

/// The inline version of an op, when there is one.
pub fn function(op: &crate::ir::Math) -> Option<fn(&mut FunctionBuilder, Value) -> Value> {
    use crate::ir::Math;
    Some(match op {
        Math::Exp(_) => exp,
        Math::Log(_) => log,
        Math::Expm1(_) => expm1,
        Math::Log1p(_) => log1p,
        Math::Sinh(_) => sinh,
        Math::Cosh(_) => cosh,
        Math::Tanh(_) => tanh,
        Math::Asinh(_) => asinh,
        Math::Atanh(_) => atanh,
        Math::Sigmoid(_) => sigmoid,
        Math::Softplus(_) => softplus,
        Math::LogCosh(_) => logcosh,
        Math::Logit(_) => logit,
        Math::Sign(_) => sign,
        _ => return None,
    })
}
