//! Inline math in Cranelift IR, for scalars and 128-bit vectors: every function takes a value
//! of type `f64`, `f64x2`, `f32` or `f32x4` (read from the value itself) and returns one of
//! the same type. Single precision has its own algorithms (shorter polynomials, `i32`
//! exponent bits), so an `f32x4` costs about what an `f64x2` does. Everything is straight-line
//! code: branches become lane masks (`fcmp` + `bitselect` on vectors, `select` on scalars).
//!
//! ```
//! use cranelift_codegen::ir::types;
//! use flowc::codegen::vmath;
//! use flowc::ulp::Harness;
//!
//! // a loop applying vmath::log to f64x2 vectors, compiled for the host
//! let h = Harness::new(vmath::log, types::F64X2).unwrap();
//! let y = h.run_f64(&[1.0, std::f64::consts::E, 0.0, -1.0]);
//! assert_eq!(y[..3], [0.0, 1.0, f64::NEG_INFINITY]);
//! assert!(y[3].is_nan());
//! ```
//!
//! The cores (f64 within 1 ulp, f32 within 1 ulp of the correctly rounded result):
//!
//! - exp: x clamped, k = nearest(x·log2 e) by adding 1.5·2^52 (1.5·2^23), whose low bits then
//!   hold k; r = x − k·ln2 (two-part ln2, fused); e^r = 1 + r + r²·Q(r), Q minimax (degree
//!   11; 6 in f32); times 2^k built from exponent bits in two halves, so subnormal results
//!   and overflow (above 709.78…, 88.72… in f32) come out of the multiplications themselves,
//!   as does underflow to +0 (below −745.13…, −103.97… in f32). NaN propagates.
//! - log: x = 2^e·m with m in [√½, √2), read from the bits after subtracting those of √½
//!   (subnormals scaled by 2^54, 2^24 in f32, first); log m = 2·atanh(s), s = (m−1)/(m+1), by
//!   an odd minimax polynomial (degree 15; 7 in f32) arranged as f − s·(f − R) with f = m − 1
//!   exact; e·ln2 added in two parts. One mask, 0 < x < +inf, selects the special values
//!   √x − 1/x² instead: −inf at ±0, +inf at +inf, NaN below 0 and at NaN.
//! - expm1: the reduction of exp shifted so that k = 0 exactly where e^x − 1 is in [−¼, ½),
//!   q = e^r − 1 as r + r·(r·Q(r)) (Q minimax, degree 10; 5 in f32), then 2^k·q + (2^k − 1)
//!   in one fused step (k = 1024, 128 in f32, scaled by 2^(k−1) and doubled); −1 below −40
//!   (−18 in f32), the sign of x kept (−0).
//! - log1p: u = 1 + x and its exact rounding error c = x − (u − 1); log1p x = log u + c/u,
//!   the correction added before e·ln2; u's special values come from log.
//!
//! Built on those (within 3 ulps in f64, 4 in f32), each computing its core once:
//!
//! - sinh: from a = |x| one reduction; E = e^a − 1 for a < 1, sinh = (E + E/(E+1))/2;
//!   h = e^a/2 (2^(k−1) in two factors) otherwise, sinh = h − 1/(4h). cosh = h + 1/(4h).
//!   tanh = E/(E + 2) with E = e^(2a) − 1.
//! - asinh: log1p(a + a²/(1 + √(1+a²))), or log a + ln2 beyond 2^28 (2^12 in f32): one log
//!   of a selected argument with a selected correction. atanh = log1p(2a/(1 − a))/2.
//!   acosh: log1p(t + √(t(t+2))), t = x − 1, or log x + ln2 beyond 2^28.
//! - sigmoid: e = e^−|x|, (x < 0 ? e : 1)/(1 + e). softplus: max(x, 0) + log1p(e^−|x|).
//! - logcosh: E = e^a − 1; below 2, log1p(E²/(2(E+1))) (cosh a − 1 without cancellation);
//!   above, a − ln2 + log1p(1/(E+1)²): one log1p of a selected argument.
//! - logit: one log of a selected argument: log(p/(1−p)) below ¼, −log1p((1−2p)/p) below ½,
//!   log1p((2p−1)/(1−p)) above (exact differences near ½).
//! - sign: two selects. The odd functions compute on |x| and take the sign bit of x.
//!
//! Further functions (within 4 ulps):
//!
//! - cbrt: |x| = 2^(3q+r)·m from the bits (subnormals scaled by 2^54), y = 2^r·m exact,
//!   a minimax guess for ∛m times 2^(r/3) interpolated, one Halley step (cubic), times 2^q.
//! - atan: a = |x| reduced to |t| ≤ tan(π/8) (t = −1/a or (a−1)/(a+1), one division of
//!   selected operands), π/2 or π/4 added in two parts, a degree-23 (f32: 11) odd minimax
//!   polynomial.
//! - sin, cos, tan: Cody–Waite reduction |x| = k·π/2 + r with π/2 in three parts (fused),
//!   minimax polynomials for sin r and cos r on |r| ≤ π/4, chosen and negated by k's low
//!   bits (k + 1 for cos); tan = sin r/cos r or −cos r/sin r. Accurate up to |x| = 2^30
//!   (2^17 in f32); NaN beyond, by design, where the three parts no longer suffice.
//!
//! Measured errors: [`crate::ulp::table`].

use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::{types, ConstantData, InstBuilder, MemFlagsData, Type, Value};
use cranelift_frontend::FunctionBuilder;

/// ln 2 in two parts: the high part has 32 trailing zero bits, so e·LN2_HI is exact.
pub(crate) const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
pub(crate) const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
/// ln 2 in f32: the nearest f32 and the nearest f32 to the rest.
pub(crate) const LN2_HI_F32: f32 = f32::from_bits(0x3f31_7218);
pub(crate) const LN2_LO_F32: f32 = f32::from_bits(0xb102_e308);

/// Largest |x| for sin, cos and tan in f64 (NaN beyond): up to here the three-part π/2
/// leaves the reduced argument accurate to a few ulps.
pub const TRIG_LIMIT_F64: f64 = 1073741824.0;
/// Largest |x| for sin, cos and tan in f32.
pub const TRIG_LIMIT_F32: f64 = 131072.0;

/// π/2 in three parts for Cody–Waite reduction: each a correctly rounded remainder.
const PIO2: [f64; 3] = [std::f64::consts::FRAC_PI_2, 6.123233995736766e-17, -1.4973849048591698e-33];
const PIO2_F32: [f32; 3] = [std::f32::consts::FRAC_PI_2, -4.371_139e-8, -1.715_124_5e-15];
/// π/2 and π/4 as a float and the nearest float to the rest.
const PIO2_HL: [f64; 2] = [std::f64::consts::FRAC_PI_2, 6.123233995736766e-17];
const PIO4_HL: [f64; 2] = [std::f64::consts::FRAC_PI_4, 3.061616997868383e-17];
const PIO2_HL_F32: [f32; 2] = [std::f32::consts::FRAC_PI_2, -4.371_139e-8];
const PIO4_HL_F32: [f32; 2] = [std::f32::consts::FRAC_PI_4, -2.185_569_4e-8];

// Minimax polynomials (Remez exchange in 60-digit arithmetic, weighted for the relative error
// of the final function; the f32 sets rounded to f32), with their errors before rounding
// (truncated Taylor series would need two to four more terms each):
/// e^r = 1 + r + r²·Q(r), |r| ≤ ln2/2: 2^-57.9 (f64), 2^-28.3 (f32).
pub(crate) const EXP_Q_F64: [f64; 10] = [
    0.5000000000000011,
    0.16666666666666413,
    0.041666666666530155,
    0.008333333333494461,
    0.0013888888943630134,
    0.00019841269506578723,
    2.480149309888739e-05,
    2.755758637378518e-06,
    2.763024838532302e-07,
    2.500006162553128e-08,
];
pub(crate) const EXP_Q_F32: [f64; 5] =
    [0.4999999403953552, 0.1666652113199234, 0.04166838899254799, 0.008368716575205326, 0.001381459878757596];
/// e^r − 1 = r + r²·Q(r), r in [ln ¾, ln 1.5] (relative to e^r − 1): 2^-61.4, 2^-30.5.
pub(crate) const EXPM1_Q_F64: [f64; 11] = [
    0.5,
    0.16666666666666666,
    0.04166666666666878,
    0.008333333333332974,
    0.001388888888773051,
    0.00019841269848208155,
    2.4801589929491923e-05,
    2.755729311707176e-06,
    2.755466598615076e-07,
    2.5087593292820708e-08,
    2.1876714647610324e-09,
];
pub(crate) const EXPM1_Q_F32: [f64; 6] =
    [0.5, 0.1666666716337204, 0.04166603460907936, 0.008333281613886356, 0.00139683170709759, 0.00019768692436628044];
/// 2·atanh s = 2s + s·z·R(z), z = s² ≤ ((√2−1)/(√2+1))² (absolute in R·z): 2^-58.5, 2^-29.2.
pub(crate) const LOG_R_F64: [f64; 7] = [
    0.6666666666666734,
    0.39999999999414315,
    0.28571428742475385,
    0.2222219856344929,
    0.18183564867954757,
    0.1531403581432405,
    0.1479610555595777,
];
pub(crate) const LOG_R_F32: [f64; 3] = [0.6666677594184875, 0.39977535605430603, 0.2987186312675476];
/// atan t = t + t·z·P(z), z = t², |t| ≤ tan(π/8): 2^-59.4 (f64), 2^-30.5 (f32).
const ATAN_F64: [f64; 11] = [
    -0.333333333333332,
    0.19999999999953244,
    -0.1428571428016642,
    0.1111111078215012,
    -0.09090897725155295,
    0.07692059716303352,
    -0.0666309919620583,
    0.05847859249119415,
    -0.05039190431733788,
    0.03806214249619708,
    -0.01790504463392009,
];
const ATAN_F32: [f64; 5] = [-0.33333316445350647, 0.19998471438884735, -0.14243532717227936, 0.1059381365776062, -0.060782212764024734];
/// sin r = r + r·z·S(z), |r| ≤ π/4·1.0001: 2^-57.9, 2^-28.0.
const SIN_F64: [f64; 6] = [
    -0.1666666666666663,
    0.008333333333322108,
    -0.00019841269829580166,
    2.7557313618017424e-06,
    -2.5050747218202267e-08,
    1.5896197635834104e-10,
];
const SIN_F32: [f64; 3] = [-0.16666655242443085, 0.00833216030150652, -0.00019515218446031213];
/// cos r = 1 − z/2 + z²·C(z): 2^-64.0, 2^-33.0.
const COS_F64: [f64; 6] = [
    0.041666666666666595,
    -0.001388888888887304,
    2.4801587288841377e-05,
    -2.75573141762335e-07,
    2.087570041524503e-09,
    -1.1358513910113588e-11,
];
const COS_F32: [f64; 3] = [0.04166664555668831, -0.0013887315290048718, 2.4433082217001356e-05];
/// cbrt m for m in [1, 2), the first guess for Halley's step: 2^-19.6, 2^-10.6.
const CBRT_F64: [f64; 6] =
    [0.47333067072423585, 0.8381600631592702, -0.4692287613237224, 0.20277725847745637, -0.050386548987820856, 0.005348548907532636];
const CBRT_F32: [f64; 3] = [0.6215135921881646, 0.43944184810426595, -0.0603193998203087];

/// What may come into the log core besides positive normal numbers.
#[derive(Clone, Copy)]
struct LogArg {
    /// Subnormals (scaled into the normal range first).
    subnormal: bool,
    /// ±0, negatives, +inf and NaN, which get ln's special values (the correction ignored).
    /// Without, only a NaN that the caller propagates otherwise may come in.
    special: bool,
}

/// Any argument.
const ANY: LogArg = LogArg { subnormal: true, special: true };
/// 1 + something ≥ −1, or a large value: never subnormal.
const NOT_SUBNORMAL: LogArg = LogArg { subnormal: false, special: true };
/// A number in [1, +inf) (or NaN).
const AT_LEAST_ONE: LogArg = LogArg { subnormal: false, special: false };

/// A lane mask: on scalars the `i8` of an `fcmp`, on vectors the compare's lanes bitcast to
/// the float vector type (all ones or all zeros), ready for `bitselect` and `band`.
#[derive(Clone, Copy)]
struct Mask(Value);

/// Emits math for one float type: scalar or vector, f64 or f32, with the constants made so
/// far (each splatted constant is made once per function).
struct V<'a, 'f> {
    b: &'a mut FunctionBuilder<'f>,
    ty: Type,
    int: Type,
    single: bool,
    vector: bool,
    consts: Vec<(u8, u64, Value)>,
}

const FLOAT: u8 = 0;
const INT: u8 = 1;
const SHIFT: u8 = 2;

impl<'a, 'f> V<'a, 'f> {
    /// The emitter for values of `x`'s type. Panics on a type other than f64, f64x2, f32, f32x4.
    fn new(b: &'a mut FunctionBuilder<'f>, x: Value) -> Self {
        let ty = b.func.dfg.value_type(x);
        let (int, single) = match ty {
            types::F64 => (types::I64, false),
            types::F64X2 => (types::I64X2, false),
            types::F32 => (types::I32, true),
            types::F32X4 => (types::I32X4, true),
            t => panic!("vmath: no inline math for values of type {t}"),
        };
        V { b, ty, int, single, vector: ty.is_vector(), consts: Vec::new() }
    }

    /// The constant `v` (rounded to f32 in single precision), in every lane.
    fn f(&mut self, v: f64) -> Value {
        let bits = if self.single { (v as f32).to_bits() as u64 } else { v.to_bits() };
        self.constant(FLOAT, bits)
    }

    /// A constant given for each precision.
    fn f2(&mut self, double: f64, single: f32) -> Value {
        if self.single {
            self.constant(FLOAT, single.to_bits() as u64)
        } else {
            self.constant(FLOAT, double.to_bits())
        }
    }

    /// The integer constant `v` (truncated to the lane width), in every lane.
    fn i(&mut self, v: i64) -> Value {
        let bits = if self.single { v as u32 as u64 } else { v as u64 };
        self.constant(INT, bits)
    }

    fn constant(&mut self, kind: u8, bits: u64) -> Value {
        if let Some(&(_, _, v)) = self.consts.iter().find(|(k, b, _)| *k == kind && *b == bits) {
            return v;
        }
        let lane = self.int.lane_type();
        let v = match (kind, self.vector) {
            (SHIFT, _) => self.b.ins().iconst(lane, bits as i64),
            (FLOAT, false) if self.single => self.b.ins().f32const(f32::from_bits(bits as u32)),
            (FLOAT, false) => self.b.ins().f64const(f64::from_bits(bits)),
            (_, false) => self.b.ins().iconst(self.int, bits as i64),
            (_, true) => {
                let lane_bytes = if self.single { (bits as u32).to_le_bytes().to_vec() } else { bits.to_le_bytes().to_vec() };
                let data: Vec<u8> = lane_bytes.iter().copied().cycle().take(16).collect();
                let handle = self.b.func.dfg.constants.insert(ConstantData::from(data));
                let ty = if kind == FLOAT { self.ty } else { self.int };
                self.b.ins().vconst(ty, handle)
            }
        };
        self.consts.push((kind, bits, v));
        v
    }

    /// Exponent bias and mantissa width of the lane type.
    fn bias_shift(&self) -> (i64, i64) {
        if self.single {
            (127, 23)
        } else {
            (1023, 52)
        }
    }

    fn add(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fadd(a, b)
    }
    fn sub(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fsub(a, b)
    }
    fn mul(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fmul(a, b)
    }
    fn div(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fdiv(a, b)
    }
    /// a·b + c, rounded once.
    fn fma(&mut self, a: Value, b: Value, c: Value) -> Value {
        self.b.ins().fma(a, b, c)
    }
    fn abs(&mut self, a: Value) -> Value {
        self.b.ins().fabs(a)
    }
    fn sqrt(&mut self, a: Value) -> Value {
        self.b.ins().sqrt(a)
    }

    /// a + c for a constant c.
    fn add_c(&mut self, a: Value, c: f64) -> Value {
        let c = self.f(c);
        self.add(a, c)
    }
    /// c − a for a constant c.
    fn rsub_c(&mut self, c: f64, a: Value) -> Value {
        let c = self.f(c);
        self.sub(c, a)
    }
    /// a·c for a constant c.
    fn mul_c(&mut self, a: Value, c: f64) -> Value {
        let c = self.f(c);
        self.mul(a, c)
    }

    /// The float's bits as integers of the same width, and back.
    fn bits(&mut self, a: Value) -> Value {
        self.b.ins().bitcast(self.int, MemFlagsData::new(), a)
    }
    fn float(&mut self, a: Value) -> Value {
        self.b.ins().bitcast(self.ty, MemFlagsData::new(), a)
    }
    fn shl(&mut self, a: Value, n: i64) -> Value {
        let n = self.constant(SHIFT, n as u64);
        self.b.ins().ishl(a, n)
    }
    fn ushr(&mut self, a: Value, n: i64) -> Value {
        let n = self.constant(SHIFT, n as u64);
        self.b.ins().ushr(a, n)
    }
    fn iadd_c(&mut self, a: Value, c: i64) -> Value {
        let c = self.i(c);
        self.b.ins().iadd(a, c)
    }

    /// The lane mask of `a cc b`.
    fn cmp(&mut self, cc: FloatCC, a: Value, b: Value) -> Mask {
        let m = self.b.ins().fcmp(cc, a, b);
        Mask(if self.vector { self.b.ins().bitcast(self.ty, MemFlagsData::new(), m) } else { m })
    }
    /// The lane mask of `a cc c` for a constant c.
    fn cmp_c(&mut self, cc: FloatCC, a: Value, c: f64) -> Mask {
        let c = self.f(c);
        self.cmp(cc, a, c)
    }
    fn and(&mut self, a: Mask, b: Mask) -> Mask {
        Mask(self.b.ins().band(a.0, b.0))
    }
    /// a where the mask is set, b elsewhere.
    fn sel(&mut self, m: Mask, a: Value, b: Value) -> Value {
        if self.vector {
            self.b.ins().bitselect(m.0, a, b)
        } else {
            self.b.ins().select(m.0, a, b)
        }
    }
    /// a where the mask is set, +0 elsewhere.
    fn keep(&mut self, m: Mask, a: Value) -> Value {
        if self.vector {
            self.b.ins().band(m.0, a)
        } else {
            let z = self.f(0.0);
            self.b.ins().select(m.0, a, z)
        }
    }
    /// min(a, c) for a constant c; NaN in a stays NaN (one `min` instruction on x86).
    fn min_c(&mut self, a: Value, c: f64) -> Value {
        let c = self.f(c);
        let m = self.cmp(FloatCC::LessThan, c, a);
        self.sel(m, c, a)
    }
    /// max(a, c) for a constant c; NaN in a stays NaN.
    fn max_c(&mut self, a: Value, c: f64) -> Value {
        let c = self.f(c);
        let m = self.cmp(FloatCC::LessThan, a, c);
        self.sel(m, c, a)
    }
    /// y with the sign bit of x or-ed in: copysign(y, x) for y ≥ +0 (and for y of x's sign).
    fn or_sign(&mut self, y: Value, x: Value) -> Value {
        let m = self.f(-0.0);
        let s = self.b.ins().band(x, m);
        self.b.ins().bor(y, s)
    }

    /// Σ c[i]·x^i by Horner's rule with fused steps.
    fn poly(&mut self, x: Value, c: &[f64]) -> Value {
        let mut p = self.f(c[c.len() - 1]);
        for &ci in c[..c.len() - 1].iter().rev() {
            let ci = self.f(ci);
            p = self.fma(p, x, ci);
        }
        p
    }

    // ---- exp and expm1 ----

    /// x clamped to [lo, hi] (NaN kept) as k·ln2 + r with k = nearest(x·log2 e), |r| ≤ ln2/2:
    /// returns (k + 1.5·2^52 whose low bits hold k, k as a float, r). In f32 the shift is
    /// 1.5·2^23.
    fn reduce(&mut self, x: Value, lo: Option<f64>, hi: Option<f64>) -> (Value, Value, Value) {
        self.reduce_by(x, lo, hi, None)
    }

    /// As [`V::reduce`] with k = nearest(x·log2 e − (log2 1.5 − ½)), so r is in
    /// [ln 0.75, ln 1.5) and k = 0 exactly where e^x − 1 is in [−¼, ½): each k then gives
    /// results of one binade, and the rounding of q = e^r − 1 costs at most ½ ulp of the
    /// result in 2^k·q + (2^k − 1).
    fn reduce_m1(&mut self, x: Value, lo: Option<f64>, hi: Option<f64>) -> (Value, Value, Value) {
        self.reduce_by(x, lo, hi, Some(0.085))
    }

    fn reduce_by(&mut self, x: Value, lo: Option<f64>, hi: Option<f64>, offset: Option<f64>) -> (Value, Value, Value) {
        let mut x = x;
        if let Some(hi) = hi {
            x = self.min_c(x, hi);
        }
        if let Some(lo) = lo {
            x = self.max_c(x, lo);
        }
        let magic = self.f2(1.5 * 2f64.powi(52), 1.5 * 2f32.powi(23));
        let log2e = self.f(std::f64::consts::LOG2_E);
        let ks = match offset {
            None => self.fma(x, log2e, magic),
            Some(d) => {
                let d = self.f(-d);
                let t = self.fma(x, log2e, d);
                self.add(t, magic)
            }
        };
        let kf = self.sub(ks, magic);
        let hi = self.f2(-LN2_HI, -LN2_HI_F32);
        let lo = self.f2(-LN2_LO, -LN2_LO_F32);
        let r = self.fma(kf, hi, x);
        let r = self.fma(kf, lo, r);
        (ks, kf, r)
    }

    /// 2^(k+e) from the shifted k of [`V::reduce`], for k + e a normal exponent.
    fn pow2(&mut self, ks: Value, e: i64) -> Value {
        let (bias, shift) = self.bias_shift();
        let bits = self.bits(ks);
        // the shift constant's bits are zero below bit 12 (bit 9 in f32): the sum's low bits
        // are k + bias + e, and the exponent field gets exactly those
        let v = self.iadd_c(bits, bias + e);
        let v = self.shl(v, shift);
        self.float(v)
    }

    /// 2^(k+e) as two normal factors, for k + e from −2·bias−50 to 2·bias+2.
    fn pow2_halves(&mut self, ks: Value, e: i64) -> (Value, Value) {
        let (bias, shift) = self.bias_shift();
        let bits = self.bits(ks);
        let v = self.iadd_c(bits, 2 * bias + e);
        let h1 = self.ushr(v, 1);
        let h2 = self.b.ins().isub(v, h1);
        let s1 = self.shl(h1, shift);
        let s2 = self.shl(h2, shift);
        (self.float(s1), self.float(s2))
    }

    /// e^r for |r| ≤ ln2/2: 1 + r + r²·Q(r) by Horner (degree 11; 6 in f32).
    fn exp_poly(&mut self, r: Value) -> Value {
        let q = if self.single { &EXP_Q_F32[..] } else { &EXP_Q_F64[..] };
        let c: Vec<f64> = [1.0, 1.0].iter().chain(q).copied().collect();
        self.poly(r, &c)
    }

    /// Q(r) of e^r − 1 = r + r²·Q(r) for r from [`V::reduce_m1`] (degree 10; 5 in f32).
    fn expm1_q(&mut self, r: Value) -> Value {
        let q = if self.single { &EXPM1_Q_F32[..] } else { &EXPM1_Q_F64[..] };
        self.poly(r, q)
    }

    /// e^r − 1 for r from [`V::reduce_m1`], as r + r·(r·Q(r)).
    fn expm1_poly(&mut self, r: Value) -> Value {
        let p = self.expm1_q(r);
        let t = self.mul(r, p);
        self.fma(r, t, r)
    }

    fn exp(&mut self, x: Value) -> Value {
        self.exp_below(x, true)
    }

    /// e^x, clamped below (underflow to +0) and, when `clamp_high`, above (x ≤ 0 needs not).
    fn exp_below(&mut self, x: Value, clamp_high: bool) -> Value {
        let (lo, hi) = if self.single { (-104.0, 89.0) } else { (-746.0, 710.0) };
        let (ks, _, r) = self.reduce(x, Some(lo), clamp_high.then_some(hi));
        let p = self.exp_poly(r);
        let (s1, s2) = self.pow2_halves(ks, 0);
        let y = self.mul(p, s1);
        self.mul(y, s2)
    }

    /// e^x − 1 from the reduction: 2^k·q + (2^k − 1), q = e^r − 1, s = 2^k.
    fn expm1_from(&mut self, ks: Value, q: Value) -> Value {
        let s = self.pow2(ks, 0);
        let one = self.f(1.0);
        let t = self.sub(s, one);
        self.fma(s, q, t)
    }

    /// e^x − 1 for x ≥ 0 as an unevaluated sum hi + lo, from the reduction of [`V::reduce_m1`]:
    /// q = e^r − 1 and then 2^k·q + (2^k − 1) split exactly by Fast2Sum (for k ≥ 1,
    /// 2^k − 1 ≥ |2^k·q|; for k = 0 the sum is q).
    fn expm1_pair(&mut self, ks: Value, r: Value) -> (Value, Value) {
        let p = self.expm1_q(r);
        let t = self.mul(r, p);
        let w = self.mul(r, t);
        let qh = self.add(r, w);
        let d = self.sub(r, qh);
        let ql = self.add(d, w);
        let s = self.pow2(ks, 0);
        let one = self.f(1.0);
        let t1 = self.sub(s, one);
        let sq = self.mul(s, qh);
        let hi = self.add(t1, sq);
        let d = self.sub(t1, hi);
        let lo = self.add(d, sq);
        let lo = self.fma(s, ql, lo);
        (hi, lo)
    }

    fn expm1(&mut self, x: Value) -> Value {
        let (lo, hi, top) = if self.single { (-18.0, 88.73, 100.0) } else { (-40.0, 709.79, 1000.0) };
        let (ks, kf, r) = self.reduce_m1(x, Some(lo), Some(hi));
        let q = self.expm1_poly(r);
        // 2^1024 (2^128) is not a float: scale by 2^(k−1) there and double the result
        let big = self.cmp_c(FloatCC::GreaterThan, kf, top);
        let one = self.f(1.0);
        let d = self.keep(big, one);
        let ks = self.sub(ks, d);
        let y = self.expm1_from(ks, q);
        let f = self.add(one, d);
        let y = self.mul(y, f);
        self.or_sign(y, x)
    }

    // ---- log and log1p ----

    /// ln x + corr (the correction added before e·ln2), for positive normal x and what `arg`
    /// also lets in.
    fn log_core(&mut self, x: Value, corr: Option<Value>, arg: LogArg) -> Value {
        let (bias, shift) = self.bias_shift();
        let (scale, sqrt_half, ebits) = if self.single {
            (24, (0.5f32.sqrt().to_bits()) as i64, (2f32.powi(23).to_bits()) as i64)
        } else {
            (54, (0.5f64.sqrt().to_bits()) as i64, (2f64.powi(52).to_bits()) as i64)
        };
        // subnormals (and zero) scaled into the normal range
        let (xn, adj) = if arg.subnormal {
            let tiny = self.f2(f64::MIN_POSITIVE, f32::MIN_POSITIVE);
            let sub = self.cmp(FloatCC::LessThan, x, tiny);
            let xs = self.mul_c(x, 2f64.powi(scale));
            let sf = self.f(scale as f64);
            (self.sel(sub, xs, x), Some(self.keep(sub, sf)))
        } else {
            (x, None)
        };
        // x = 2^e·m, m in [√½, √2): ix = bits(x) − bits(√½) + bits(1) has e + bias above the
        // mantissa and m − √½'s offset in it
        let bits = self.bits(xn);
        let one_bits = bias << shift;
        let ix = self.iadd_c(bits, one_bits - sqrt_half);
        let mant = self.i((1i64 << shift) - 1);
        let mb = self.b.ins().band(ix, mant);
        let mb = self.iadd_c(mb, sqrt_half);
        let m = self.float(mb);
        let eb = self.ushr(ix, shift);
        let magic = self.i(ebits);
        let eb = self.b.ins().bor(eb, magic);
        let ef = self.float(eb);
        let off = self.f(2f64.powi(shift as i32) + bias as f64);
        let mut e = self.sub(ef, off);
        if let Some(adj) = adj {
            e = self.sub(e, adj);
        }
        // log m = f − s·(f − R), s = f/(2 + f), R = z·P(z) (= Σ 2z^k/(2k+1)), z = s²
        let one = self.f(1.0);
        let f = self.sub(m, one);
        let den = self.add_c(f, 2.0);
        let s = self.div(f, den);
        let z = self.mul(s, s);
        let c = if self.single { &LOG_R_F32[..] } else { &LOG_R_F64[..] };
        let r = self.poly(z, c);
        let r = self.mul(r, z);
        let t = self.sub(r, f);
        let mut logm = self.fma(s, t, f);
        if let Some(c) = corr {
            logm = self.add(logm, c);
        }
        let lo = self.f2(LN2_LO, LN2_LO_F32);
        let hi = self.f2(LN2_HI, LN2_HI_F32);
        let y = self.fma(e, lo, logm);
        let y = self.fma(e, hi, y);
        if !arg.special {
            return y;
        }
        // 0 < x < +inf, else √x − 1/x²: −inf at ±0, +inf at +inf, NaN below 0 and at NaN
        let h = self.mul_c(x, 0.5);
        let ok = self.cmp(FloatCC::LessThan, h, x);
        let r = self.sqrt(x);
        let xx = self.mul(x, x);
        let inv = self.div(one, xx);
        let sp = self.sub(r, inv);
        self.sel(ok, y, sp)
    }

    fn log(&mut self, x: Value) -> Value {
        self.log_core(x, None, ANY)
    }

    /// (1 + x, the correction c/(1+x)) with c = x − ((1 + x) − 1) exact.
    fn one_plus(&mut self, x: Value) -> (Value, Value) {
        let one = self.f(1.0);
        let u = self.add(one, x);
        let um1 = self.sub(u, one);
        let c = self.sub(x, um1);
        let q = self.div(c, u);
        (u, q)
    }

    fn log1p(&mut self, x: Value) -> Value {
        let (u, q) = self.one_plus(x);
        let y = self.log_core(u, Some(q), NOT_SUBNORMAL);
        self.or_sign(y, x)
    }

    // ---- composites ----

    /// Overflow ends of sinh and cosh: e^a/2 stays finite up to 710.47… (89.41… in f32).
    fn hyp_hi(&self) -> f64 {
        if self.single {
            90.0
        } else {
            711.0
        }
    }

    /// e^a/2 = 2^(k−1)·e^r for a ≥ 0 from the reduction, given e^r − 1 (`m1`) or e^r: one
    /// rounding, then an exact power of two (the two factors keep 2^1025 in range).
    fn half_exp(&mut self, ks: Value, er: Value, m1: bool) -> Value {
        let (bias, _) = self.bias_shift();
        let s = self.pow2(ks, -1 - bias / 2);
        let h = if m1 { self.fma(s, er, s) } else { self.mul(s, er) };
        self.mul_c(h, 2f64.powi((bias / 2) as i32))
    }

    fn sinh(&mut self, x: Value) -> Value {
        let a = self.abs(x);
        let hi = self.hyp_hi();
        let (ks, _, r) = self.reduce_m1(a, None, Some(hi));
        let q = self.expm1_poly(r);
        // a < 1: E = e^a − 1, sinh = (E + E/(E + 1))/2
        let e = self.expm1_from(ks, q);
        let e1 = self.add_c(e, 1.0);
        let w = self.div(e, e1);
        let s = self.add(e, w);
        let small = self.mul_c(s, 0.5);
        // a ≥ 1: h − 1/(4h), h = e^a/2
        let h = self.half_exp(ks, q, true);
        let qh = self.f(0.25);
        let w = self.div(qh, h);
        let large = self.sub(h, w);
        let is_small = self.cmp_c(FloatCC::LessThan, a, 1.0);
        let y = self.sel(is_small, small, large);
        self.or_sign(y, x)
    }

    fn cosh(&mut self, x: Value) -> Value {
        let a = self.abs(x);
        let hi = self.hyp_hi();
        let (ks, _, r) = self.reduce(a, None, Some(hi));
        let p = self.exp_poly(r);
        let h = self.half_exp(ks, p, false);
        let qh = self.f(0.25);
        let w = self.div(qh, h);
        self.add(h, w)
    }

    fn tanh(&mut self, x: Value) -> Value {
        let a = self.abs(x);
        let a2 = self.add(a, a);
        // tanh = 1 from 20 on (10 in f32)
        let cap = if self.single { 20.0 } else { 40.0 };
        let (ks, _, r) = self.reduce_m1(a2, None, Some(cap));
        let q = self.expm1_poly(r);
        let e = self.expm1_from(ks, q);
        let den = self.add_c(e, 2.0);
        let y = self.div(e, den);
        self.or_sign(y, x)
    }

    /// Where log(2a) replaces log1p forms (the dropped terms are below half an ulp).
    fn large_arg(&self) -> f64 {
        if self.single {
            4096.0
        } else {
            2f64.powi(28)
        }
    }

    fn asinh(&mut self, x: Value) -> Value {
        let a = self.abs(x);
        let x2 = self.mul(a, a);
        let s = self.add_c(x2, 1.0);
        let w = self.sqrt(s);
        let den = self.add_c(w, 1.0);
        let q = self.div(x2, den);
        let y = self.add(a, q);
        let (u, c) = self.one_plus(y);
        let lim = self.large_arg();
        let large = self.cmp_c(FloatCC::GreaterThan, a, lim);
        let u = self.sel(large, a, u);
        let ln2 = self.f(std::f64::consts::LN_2);
        let c = self.sel(large, ln2, c);
        let y = self.log_core(u, Some(c), NOT_SUBNORMAL);
        self.or_sign(y, x)
    }

    fn atanh(&mut self, x: Value) -> Value {
        let a = self.abs(x);
        let den = self.rsub_c(1.0, a);
        let num = self.add(a, a);
        let q = self.div(num, den);
        // a = 1: u = +inf and log's special value; a > 1: u < 0, NaN
        let (u, c) = self.one_plus(q);
        let l = self.log_core(u, Some(c), NOT_SUBNORMAL);
        let y = self.mul_c(l, 0.5);
        self.or_sign(y, x)
    }

    fn sigmoid(&mut self, x: Value) -> Value {
        let a = self.abs(x);
        let na = self.b.ins().fneg(a);
        let e = self.exp_below(na, false);
        let one = self.f(1.0);
        let den = self.add(one, e);
        let neg = self.cmp_c(FloatCC::LessThan, x, 0.0);
        let num = self.sel(neg, e, one);
        self.div(num, den)
    }

    fn softplus(&mut self, x: Value) -> Value {
        let a = self.abs(x);
        let na = self.b.ins().fneg(a);
        let e = self.exp_below(na, false);
        let (u, c) = self.one_plus(e);
        // u in [1, 2]: no special values (NaN comes through m)
        let l = self.log_core(u, Some(c), AT_LEAST_ONE);
        let zero = self.f(0.0);
        let neg = self.cmp(FloatCC::LessThan, x, zero);
        let m = self.sel(neg, zero, x);
        self.add(m, l)
    }

    fn logcosh(&mut self, x: Value) -> Value {
        let a = self.abs(x);
        // the large form needs e^−2a only while it matters next to a
        let cap = if self.single { 12.0 } else { 40.0 };
        let (ks, _, r) = self.reduce_m1(a, None, Some(cap));
        let (e, el) = self.expm1_pair(ks, r);
        let e1 = self.add_c(e, 1.0);
        // a < 2: v = cosh a − 1 = E²/(2(E + 1)), E = e + el; else v = e^−2a = 1/(E + 1)²
        let small = self.cmp_c(FloatCC::LessThan, a, 2.0);
        let eel = self.mul(e, el);
        let eel = self.add(eel, eel);
        let ee = self.fma(e, e, eel);
        let one = self.f(1.0);
        let num = self.sel(small, ee, one);
        let e1l = self.add(e1, el);
        let d2 = self.add(e1l, e1l);
        let dd = self.mul(e1, e1);
        let den = self.sel(small, d2, dd);
        let v = self.div(num, den);
        let (u, c) = self.one_plus(v);
        let l = self.log_core(u, Some(c), AT_LEAST_ONE);
        // a − ln2 above 2 (NaN comes through here)
        let ln2 = self.f(std::f64::consts::LN_2);
        let al = self.sub(a, ln2);
        let zero = self.f(0.0);
        let off = self.sel(small, zero, al);
        self.add(off, l)
    }

    fn logit(&mut self, p: Value) -> Value {
        let one = self.f(1.0);
        let omp = self.sub(one, p);
        let tp = self.add(p, p);
        let n = self.sub(tp, one);
        let n = self.abs(n);
        let low = self.cmp_c(FloatCC::LessThan, p, 0.25);
        let not_low = self.cmp_c(FloatCC::GreaterThanOrEqual, p, 0.25);
        let below_half = self.cmp_c(FloatCC::LessThan, p, 0.5);
        let mid = self.and(below_half, not_low);
        // low: u = p/(1 − p); mid: 1 + (1 − 2p)/p, negated; high: 1 + (2p − 1)/(1 − p)
        let num = self.sel(low, p, n);
        let den = self.sel(mid, p, omp);
        let v = self.div(num, den);
        let (u1, c) = self.one_plus(v);
        let u = self.sel(low, v, u1);
        let c = self.keep(not_low, c);
        let y = self.log_core(u, Some(c), ANY);
        let m0 = self.f(-0.0);
        let flip = self.keep(mid, m0);
        self.b.ins().bxor(y, flip)
    }

    fn acosh(&mut self, x: Value) -> Value {
        // log1p(t + √(t(t + 2))), t = x − 1 exact near 1; x < 1 gives √ of a negative
        let one = self.f(1.0);
        let t = self.sub(x, one);
        let t2 = self.add_c(t, 2.0);
        let p = self.mul(t, t2);
        let w = self.sqrt(p);
        let y = self.add(t, w);
        let (u, c) = self.one_plus(y);
        let lim = self.large_arg();
        let large = self.cmp_c(FloatCC::GreaterThan, x, lim);
        let u = self.sel(large, x, u);
        let ln2 = self.f(std::f64::consts::LN_2);
        let c = self.sel(large, ln2, c);
        self.log_core(u, Some(c), NOT_SUBNORMAL)
    }

    fn cbrt(&mut self, x: Value) -> Value {
        let (bias, shift) = self.bias_shift();
        // |x| = 2^e·m, m in [1, 2) (subnormals scaled by 2^54, 2^24 in f32: multiples of 3)
        let a = self.abs(x);
        let (scale, ebits, offset) =
            if self.single { (24, 2f32.powi(23).to_bits() as i64, 60) } else { (54, 2f64.powi(52).to_bits() as i64, 400) };
        let tiny = self.f2(f64::MIN_POSITIVE, f32::MIN_POSITIVE);
        let sub = self.cmp(FloatCC::LessThan, a, tiny);
        let scaled = self.mul_c(a, 2f64.powi(scale));
        let an = self.sel(sub, scaled, a);
        let sf = self.f(scale as f64);
        let adj = self.keep(sub, sf);
        let bits = self.bits(an);
        let mant = self.i((1i64 << shift) - 1);
        let mb = self.b.ins().band(bits, mant);
        let one_bits = self.i(bias << shift);
        let mb = self.b.ins().bor(mb, one_bits);
        let m = self.float(mb);
        let eb = self.ushr(bits, shift);
        let magic_e = self.i(ebits);
        let eb = self.b.ins().bor(eb, magic_e);
        let ef = self.float(eb);
        // g = e + 3·offset > 0 (biased exponent as a float, rebiased), g = 3q + r
        let off = self.f(2f64.powi(shift as i32) + (bias - 3 * offset) as f64);
        let g = self.sub(ef, off);
        let g = self.sub(g, adj);
        // q = floor(g/3) = nearest((g − 1)/3), and its bits through the shift 1.5·2^52
        let g1 = self.add_c(g, -1.0);
        let third = self.f(1.0 / 3.0);
        let magic = self.f2(1.5 * 2f64.powi(52), 1.5 * 2f32.powi(23));
        let qs = self.fma(g1, third, magic);
        let qf = self.sub(qs, magic);
        let m3 = self.f(-3.0);
        let r = self.fma(qf, m3, g);
        // y = 2^r·m in [1, 8) exactly (2^r = 1 + r(r + 1)/2 for r in 0, 1, 2)
        let half = self.f(0.5);
        let h = self.fma(r, half, half);
        let one = self.f(1.0);
        let p2 = self.fma(r, h, one);
        let y = self.mul(m, p2);
        // first guess: cbrt m times 2^(r/3) interpolated, then one Halley step
        // c ← c + c·(y − c³)/(2c³ + y), whose error is cubic in the guess's
        let c0 = if self.single { &CBRT_F32[..] } else { &CBRT_F64[..] };
        let c = self.poly(m, c0);
        let k = self.poly(r, &[1.0, 0.2261415738056466, 0.03377947608922657]);
        let c = self.mul(c, k);
        let c2 = self.mul(c, c);
        let c3 = self.mul(c, c2);
        let d = self.sub(y, c3);
        let two = self.f(2.0);
        let den = self.fma(c3, two, y);
        let t = self.div(d, den);
        let c = self.fma(c, t, c);
        // times 2^(q − offset)
        let s = self.pow2(qs, -offset);
        let c = self.mul(c, s);
        let c = self.or_sign(c, x);
        // ±0, ±inf, NaN: x itself
        let ha = self.mul(a, half);
        let ok = self.cmp(FloatCC::LessThan, ha, a);
        self.sel(ok, c, x)
    }

    fn atan(&mut self, x: Value) -> Value {
        // atan a = π/2 + atan(−1/a) above tan(3π/8), π/4 + atan((a − 1)/(a + 1)) above
        // tan(π/8): |t| ≤ tan(π/8)
        let a = self.abs(x);
        let big = self.cmp_c(FloatCC::GreaterThan, a, 2.414213562373095);
        let mid = self.cmp_c(FloatCC::GreaterThan, a, 0.41421356237309503);
        let one = self.f(1.0);
        let am1 = self.sub(a, one);
        let ap1 = self.add(a, one);
        let m1 = self.f(-1.0);
        let num = self.sel(mid, am1, a);
        let num = self.sel(big, m1, num);
        let den = self.sel(mid, ap1, one);
        let den = self.sel(big, a, den);
        let t = self.div(num, den);
        let (p2, p4) = if self.single { (PIO2_HL_F32.map(f64::from), PIO4_HL_F32.map(f64::from)) } else { (PIO2_HL, PIO4_HL) };
        let y0 = self.f(p4[0]);
        let y0 = self.keep(mid, y0);
        let b0 = self.f(p2[0]);
        let y0 = self.sel(big, b0, y0);
        let y1 = self.f(p4[1]);
        let y1 = self.keep(mid, y1);
        let b1 = self.f(p2[1]);
        let y1 = self.sel(big, b1, y1);
        let z = self.mul(t, t);
        let c = if self.single { &ATAN_F32[..] } else { &ATAN_F64[..] };
        let p = self.poly(z, c);
        let tz = self.mul(t, z);
        let w = self.fma(tz, p, y1);
        let w = self.add(t, w);
        let y = self.add(y0, w);
        self.or_sign(y, x)
    }

    fn trig_limit(&self) -> f64 {
        if self.single {
            TRIG_LIMIT_F32
        } else {
            TRIG_LIMIT_F64
        }
    }

    /// |x| = k·π/2 + r, |r| ≤ π/4 (Cody–Waite, three parts of π/2, fused): returns (sin r,
    /// cos r, the bits of k + 1.5·2^52 whose low bits hold k). NaN beyond the limit.
    fn trig_reduce(&mut self, a: Value) -> (Value, Value, Value) {
        let lim = self.trig_limit();
        let over = self.cmp_c(FloatCC::GreaterThan, a, lim);
        let nan = self.f(f64::NAN);
        let a = self.sel(over, nan, a);
        let magic = self.f2(1.5 * 2f64.powi(52), 1.5 * 2f32.powi(23));
        let two_pi = self.f(std::f64::consts::FRAC_2_PI);
        let ks = self.fma(a, two_pi, magic);
        let kf = self.sub(ks, magic);
        let parts = if self.single { PIO2_F32.map(f64::from) } else { PIO2 };
        let mut r = a;
        for p in parts {
            let p = self.f(-p);
            r = self.fma(kf, p, r);
        }
        let z = self.mul(r, r);
        // sin r = r + r·z·S(z)
        let cs = if self.single { &SIN_F32[..] } else { &SIN_F64[..] };
        let sp = self.poly(z, cs);
        let rz = self.mul(r, z);
        let sin = self.fma(rz, sp, r);
        // cos r = w + ((1 − w) − z/2 + z²·C(z)), w = 1 − z/2 (its rounding error recovered)
        let cc = if self.single { &COS_F32[..] } else { &COS_F64[..] };
        let cp = self.poly(z, cc);
        let h = self.mul_c(z, 0.5);
        let one = self.f(1.0);
        let w = self.sub(one, h);
        let e = self.sub(one, w);
        let e = self.sub(e, h);
        let zz = self.mul(z, z);
        let e = self.fma(zz, cp, e);
        let cos = self.add(w, e);
        let kb = self.bits(ks);
        (sin, cos, kb)
    }

    /// The mask of lanes whose k (low bits `kb`) has bit 0 set.
    fn odd(&mut self, kb: Value) -> Mask {
        let one = self.i(1);
        let k1 = self.b.ins().band(kb, one);
        if self.vector {
            let m = self.b.ins().ineg(k1);
            Mask(self.float(m))
        } else {
            Mask(k1)
        }
    }

    /// The sign bit (as a float of that bit alone) of k's bit 1.
    fn quadrant_sign(&mut self, kb: Value) -> Value {
        let width = if self.single { 32 } else { 64 };
        let two = self.i(2);
        let k2 = self.b.ins().band(kb, two);
        let s = self.shl(k2, width - 2);
        self.float(s)
    }

    /// sin (cos) of x: sin r, cos r, −sin r, −cos r by the quadrant k (k + 1 for cos).
    fn sin_cos(&mut self, x: Value, cos: bool) -> Value {
        let a = self.abs(x);
        let (s, c, kb) = self.trig_reduce(a);
        let kb = if cos { self.iadd_c(kb, 1) } else { kb };
        let odd = self.odd(kb);
        let y = self.sel(odd, c, s);
        let sign = self.quadrant_sign(kb);
        let y = self.b.ins().bxor(y, sign);
        if cos {
            return y;
        }
        // sin is odd: computed on |x|, the sign of x applied (also to −0)
        let m = self.f(-0.0);
        let sx = self.b.ins().band(x, m);
        self.b.ins().bxor(y, sx)
    }

    fn sin(&mut self, x: Value) -> Value {
        self.sin_cos(x, false)
    }

    fn cos(&mut self, x: Value) -> Value {
        self.sin_cos(x, true)
    }

    fn tan(&mut self, x: Value) -> Value {
        // sin r/cos r, or −cos r/sin r in odd quadrants; odd in x
        let a = self.abs(x);
        let (s, c, kb) = self.trig_reduce(a);
        let odd = self.odd(kb);
        let num = self.sel(odd, c, s);
        let den = self.sel(odd, s, c);
        let y = self.div(num, den);
        let m = self.f(-0.0);
        let flip = self.keep(odd, m);
        let sx = self.b.ins().band(x, m);
        let flip = self.b.ins().bxor(flip, sx);
        self.b.ins().bxor(y, flip)
    }

    fn sign(&mut self, x: Value) -> Value {
        let zero = self.f(0.0);
        let one = self.f(1.0);
        let m1 = self.f(-1.0);
        let gt = self.cmp(FloatCC::GreaterThan, x, zero);
        let lt = self.cmp(FloatCC::LessThan, x, zero);
        let y = self.sel(gt, one, x);
        self.sel(lt, m1, y)
    }
}

/// Σ p_i·ln a_i times `scale` with one logarithm: up to four consecutive terms of one power
/// multiplied, each product split into its exponent e_j and its mantissa m_j in [1, 2) (the
/// float's bits), the mantissas multiplied (Π m_j^p_j lies within 2^±Σ|p_j|: no overflow for
/// Σ|p_j| below the exponent range), then ln(Π m_j^p_j) + (Σ p_j·(e_j − bias))·ln 2 with ln 2
/// in two parts. Valid for lanes where every a_i lies within 2^±255 (f32: 2^±31), so that a
/// product of four is a normal number; returns (the value, that lane mask as a float vector:
/// all ones where valid). `terms` must share one float type.
pub fn log_product(b: &mut FunctionBuilder, terms: &[(Value, i32)], scale: f64) -> (Value, Value) {
    // a common factor of the powers moves into the scale (½·(2·ln a) = ln a)
    let g = terms.iter().fold(0u32, |g, (_, p)| gcd(g, p.unsigned_abs())).max(1);
    let scale = scale * g as f64;
    let terms: Vec<(Value, i32)> = terms.iter().map(|(a, p)| (*a, p / g as i32)).collect();
    let mut v = V::new(b, terms[0].0);
    let (bias, shift) = v.bias_shift();
    // the fast path multiplies up to four consecutive terms of one power before splitting the
    // product into mantissa and exponent: each term within 2^±L (f64: 255, f32: 31), so a
    // product of four stays a normal number; lanes with any term outside take the slow path
    let lo_b = v.f2(2f64.powi(-255), 2f32.powi(-31));
    let hi_b = v.f2(2f64.powi(255), 2f32.powi(31));
    let mant = v.i((1i64 << shift) - 1);
    let one_bits = v.i(bias << shift);
    let mut ok: Option<Mask> = None;
    let (mut num, mut den) = (v.f(1.0), v.f(1.0));
    let mut e_sum = v.i(0);
    let mut neg_powers = 0i64;
    let mut powers = 0i64;
    // (product, power, terms in it)
    let mut groups: Vec<(Value, i32, usize)> = Vec::new();
    for (a, p) in &terms {
        let lo = v.cmp(FloatCC::GreaterThanOrEqual, *a, lo_b);
        let hi = v.cmp(FloatCC::LessThanOrEqual, *a, hi_b);
        let both = v.and(lo, hi);
        ok = Some(match ok {
            None => both,
            Some(m) => v.and(m, both),
        });
        match groups.last_mut() {
            Some((acc, q, count)) if *q == *p && *count < 4 => {
                *acc = v.mul(*acc, *a);
                *count += 1;
            }
            _ => groups.push((*a, *p, 1)),
        }
    }
    for (a, p, _) in &groups {
        let bits = v.bits(*a);
        let mb = v.b.ins().band(bits, mant);
        let mb = v.b.ins().bor(mb, one_bits);
        let m = v.float(mb);
        let e = v.ushr(bits, shift);
        for _ in 0..p.unsigned_abs() {
            if *p > 0 {
                num = v.mul(num, m);
                e_sum = v.b.ins().iadd(e_sum, e);
            } else {
                den = v.mul(den, m);
                e_sum = v.b.ins().isub(e_sum, e);
            }
        }
        powers += *p as i64;
        if *p < 0 {
            neg_powers += -(*p as i64);
        }
    }
    // the exponent sum as a float: offset to be non-negative, then the bits 2^shift + E' read as
    // a float minus 2^shift
    let offset = neg_powers * (2 * bias) + 1;
    let e_off = v.iadd_c(e_sum, offset);
    let magic = if v.single { 2f32.powi(shift as i32).to_bits() as i64 } else { 2f64.powi(shift as i32).to_bits() as i64 };
    let magic_i = v.i(magic);
    let eb = v.b.ins().bor(e_off, magic_i);
    let ef = v.float(eb);
    let k = v.f(2f64.powi(shift as i32) + offset as f64 + (bias * powers) as f64);
    let e_total = v.sub(ef, k);
    let ratio = v.div(num, den);
    let l = v.log(ratio);
    let (hi, lo) = if v.single { (LN2_HI_F32 as f64, LN2_LO_F32 as f64) } else { (LN2_HI, LN2_LO) };
    let hi = v.f(hi);
    let lo = v.f(lo);
    let t = v.fma(e_total, hi, l);
    let t = v.fma(e_total, lo, t);
    let sc = v.f(scale);
    let out = v.mul(t, sc);
    let ok = ok.expect("at least one term");
    (out, ok.0)
}

macro_rules! public {
    ($($(#[$doc:meta])* $name:ident;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(b: &mut FunctionBuilder, x: Value) -> Value {
                V::new(b, x).$name(x)
            }
        )*
    };
}

public! {
    /// e^x.
    exp;
    /// ln x.
    log;
    /// e^x − 1.
    expm1;
    /// ln(1 + x).
    log1p;
    /// sinh x.
    sinh;
    /// cosh x.
    cosh;
    /// tanh x.
    tanh;
    /// asinh x.
    asinh;
    /// atanh x.
    atanh;
    /// 1/(1 + e^−x).
    sigmoid;
    /// ln(1 + e^x).
    softplus;
    /// ln cosh x.
    logcosh;
    /// ln(p/(1 − p)) (exact differences near ½).
    logit;
    /// sign x: −1, ±0 or 1; NaN kept.
    sign;
    /// acosh x (x ≥ 1).
    acosh;
    /// ∛x.
    cbrt;
    /// atan x.
    atan;
    /// sin x (NaN for |x| > 2^30, 2^17 in f32).
    sin;
    /// cos x (NaN for |x| > 2^30, 2^17 in f32).
    cos;
    /// tan x (NaN for |x| > 2^30, 2^17 in f32).
    tan;
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
        Math::Acosh(_) => acosh,
        Math::Cbrt(_) => cbrt,
        Math::Atan(_) => atan,
        Math::Sin(_) => sin,
        Math::Cos(_) => cos,
        Math::Tan(_) => tan,
        _ => return None,
    })
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}
