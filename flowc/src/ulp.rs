//! The ULP table of the inline math ([`crate::codegen::vmath`]): each function, in f64 (as
//! f64x2 vectors) and in f32 (as f32x4), JIT-compiled into a small loop of its own and run
//! over deterministic points (a uniform spread over the useful domain, log-uniform
//! magnitudes, and an edge group: zeros, subnormals, overflow and underflow thresholds, the
//! ends of the domain, huge values), measured against the high-precision reference
//! [`crate::ir::hp`] in ulps of the result's precision.
//!
//! ```
//! use cranelift_codegen::ir::types;
//! use flowc::codegen::vmath;
//! use flowc::ulp::Harness;
//!
//! let h = Harness::new(vmath::exp, types::F32X4).unwrap();
//! assert_eq!(h.run_f32(&[0.0, 1.0, -200.0]), vec![1.0, std::f32::consts::E, 0.0]);
//! let rows = flowc::ulp::table(200);
//! assert!(rows.iter().all(|r| r.max_ulps <= r.bound), "{}", flowc::ulp::render(&rows));
//! ```

use crate::codegen::vmath;
use crate::ir::{hp, parse_expr};
use cranelift_codegen::ir::types;
use rayon::prelude::*;

pub use crate::codegen::clif::{map_clif as clif, map_instructions as instructions, MathFn};
pub use crate::jit::Harness;

/// One function of the table.
pub struct Entry {
    pub name: &'static str,
    /// The reference, an s-expression in `x`.
    pub sexpr: &'static str,
    pub f: MathFn,
    /// Allowed error in ulps in f64 and in f32, and why it differs from 4 when it does.
    pub bound: [f64; 2],
    pub note: [&'static str; 2],
}

const CORE: &str = "core: 1 ulp";
const COMPOSITE: &str = "composite: 3 ulps in f64";

/// Every inline function, in table order.
pub fn entries() -> Vec<Entry> {
    let core = |name, sexpr, f: MathFn| Entry { name, sexpr, f, bound: [1.0, 1.0], note: [CORE, CORE] };
    let composite = |name, sexpr, f: MathFn| Entry { name, sexpr, f, bound: [3.0, 4.0], note: [COMPOSITE, ""] };
    let e = |name, sexpr, f: MathFn| Entry { name, sexpr, f, bound: [4.0, 4.0], note: ["", ""] };
    vec![
        core("exp", "(exp x)", vmath::exp),
        core("log", "(log x)", vmath::log),
        core("expm1", "(expm1 x)", vmath::expm1),
        core("log1p", "(log1p x)", vmath::log1p),
        composite("sinh", "(sinh x)", vmath::sinh),
        composite("cosh", "(cosh x)", vmath::cosh),
        composite("tanh", "(tanh x)", vmath::tanh),
        composite("asinh", "(asinh x)", vmath::asinh),
        composite("atanh", "(atanh x)", vmath::atanh),
        composite("sigmoid", "(sigmoid x)", vmath::sigmoid),
        composite("softplus", "(softplus x)", vmath::softplus),
        composite("logcosh", "(logcosh x)", vmath::logcosh),
        composite("logit", "(logit x)", vmath::logit),
        Entry { name: "sign", sexpr: "(sign x)", f: vmath::sign, bound: [0.0, 0.0], note: ["exact", "exact"] },
        e("acosh", "(acosh x)", vmath::acosh),
        e("cbrt", "(cbrt x)", vmath::cbrt),
        e("atan", "(atan x)", vmath::atan),
        e("sin", "(sin x)", vmath::sin),
        e("cos", "(cos x)", vmath::cos),
        e("tan", "(tan x)", vmath::tan),
    ]
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub function: &'static str,
    /// "f64" or "f32".
    pub precision: &'static str,
    /// Points measured (those where the reference is a number).
    pub points: usize,
    pub max_ulps: f64,
    /// The input of the largest error.
    pub worst_input: f64,
    pub bound: f64,
    pub note: &'static str,
}

/// Deterministic uniform numbers in [0, 1) (xorshift64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next()
    }
    /// ±2^e, e uniform in [lo, hi], the mantissa uniform too.
    fn log_uniform(&mut self, lo: f64, hi: f64, signed: bool) -> f64 {
        let v = self.uniform(lo, hi).exp2();
        if signed && self.next() < 0.5 {
            -v
        } else {
            v
        }
    }
}

/// `v` moved by `k` ulps of its precision (towards +inf for k > 0).
fn step(v: f64, k: i64, single: bool) -> f64 {
    if single {
        let f = v as f32;
        let b = f.to_bits() as i64;
        let nb = if f >= 0.0 { b + k } else { b - k };
        f32::from_bits(nb as u32) as f64
    } else {
        let b = v.to_bits() as i64;
        let nb = if v >= 0.0 { b + k } else { b - k };
        f64::from_bits(nb as u64)
    }
}

/// Points around each of `centers`: ± up to 4 ulps (finite ones).
fn around(centers: &[f64], single: bool) -> Vec<f64> {
    centers.iter().flat_map(|c| (-4..=4).map(move |k| step(*c, k, single))).filter(|v| v.is_finite()).collect()
}

/// The edge group shared by every function: zeros, subnormals, the smallest normal, ±1,
/// the largest values.
fn common_edges(single: bool) -> Vec<f64> {
    let (min_sub, min_norm, max) = if single {
        (f32::from_bits(1) as f64, f32::MIN_POSITIVE as f64, f32::MAX as f64)
    } else {
        (f64::from_bits(1), f64::MIN_POSITIVE, f64::MAX)
    };
    let mut v = vec![0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, min_sub, 3.0 * min_sub, min_norm * 0.75, min_norm, max, max * 0.5];
    v.extend(around(&[min_norm, max], single));
    v.iter().flat_map(|x| [*x, -*x]).collect()
}

/// The points of one function: half uniform over `lo..hi`, half log-uniform magnitudes in
/// 2^elo..2^ehi (signed unless the domain is positive), then the edge group.
fn points(name: &str, single: bool, n: usize) -> Vec<f64> {
    let seed = name.bytes().fold(0x9e37_79b9_7f4a_7c15u64, |h, c| (h ^ c as u64).wrapping_mul(0x100_0000_01b3)) | 1;
    let mut rng = Rng(seed ^ if single { 0x5555 } else { 0 });
    let s = single;
    // uniform range, log range, signed, edges
    let (mut lo, mut hi, mut signed) = (-10.0, 10.0, true);
    let (mut elo, mut ehi) = if s { (-149.0, 128.0) } else { (-1074.0, 1024.0) };
    let mut edges = common_edges(s);
    let exp_over = if s { 88.722_84 } else { 709.782_712_893_384 };
    let exp_under = if s { -103.972_08 } else { -745.133_219_101_941_1 };
    let exp_sub = if s { -87.336_55 } else { -708.396_418_532_264_1 };
    let mut extra: Vec<f64> = Vec::new();
    match name {
        "exp" => {
            (lo, hi) = if s { (-105.0, 90.0) } else { (-750.0, 712.0) };
            (elo, ehi) = (if s { -30.0 } else { -60.0 }, 10.0);
            extra = around(&[exp_over, exp_under, exp_sub, -exp_sub], s);
        }
        "log" => {
            (lo, hi, signed) = (0.0, 100.0, false);
            extra = around(&[1.0, 2.0, 0.5, std::f64::consts::SQRT_2, std::f64::consts::FRAC_1_SQRT_2, std::f64::consts::E], s);
            extra.extend((1..60).flat_map(|k| [1.0 + 2f64.powi(-k), 1.0 - 2f64.powi(-k)]));
        }
        "expm1" => {
            (lo, hi) = if s { (-20.0, 90.0) } else { (-45.0, 711.0) };
            ehi = 10.0;
            extra = around(&[exp_over, 0.5 * std::f64::consts::LN_2, -0.5 * std::f64::consts::LN_2, -40.0, -18.0, 1.0, -1.0], s);
        }
        "log1p" => {
            (lo, hi) = (-1.0, 10.0);
            extra = around(&[-1.0 + if s { 2f64.powi(-24) } else { 2f64.powi(-53) }, -0.5, 1.0, std::f64::consts::SQRT_2 - 1.0], s);
            extra.extend((1..60).map(|k| -1.0 + 2f64.powi(-k)));
        }
        "sinh" | "cosh" => {
            (lo, hi) = if s { (-91.0, 91.0) } else { (-712.0, 712.0) };
            ehi = 10.0;
            let over = if s { 89.415_985 } else { 710.475_860_073_943_9 };
            extra = around(&[over, -over, 1.0, -1.0], s);
        }
        "tanh" => {
            (lo, hi) = (-25.0, 25.0);
            extra = around(&[20.0, 10.0, 9.0, 0.5], s);
        }
        "asinh" => {
            (lo, hi) = (-100.0, 100.0);
            extra = around(&[2f64.powi(28), 2f64.powi(12), 1.0], s);
        }
        "atanh" => {
            (lo, hi, ehi) = (-1.0, 1.0, 0.0);
            extra = around(&[1.0 - if s { 2f64.powi(-24) } else { 2f64.powi(-53) }, 0.5], s);
            extra.extend((1..60).map(|k| 1.0 - 2f64.powi(-k)));
        }
        "sigmoid" | "softplus" => {
            (lo, hi) = if s { (-110.0, 110.0) } else { (-750.0, 750.0) };
            extra = around(&[exp_under, exp_sub, 40.0, -40.0], s);
        }
        "logcosh" => {
            (lo, hi) = (-50.0, 50.0);
            extra = around(&[2.0, 40.0, 12.0], s);
        }
        "logit" => {
            (lo, hi, signed, ehi) = (0.0, 1.0, false, -1.0);
            extra = around(&[0.25, 0.5, 1.0 - if s { 2f64.powi(-24) } else { 2f64.powi(-53) }], s);
            extra.extend((1..60).map(|k| 1.0 - 2f64.powi(-k)));
            extra.extend((1..60).map(|k| 0.5 + 2f64.powi(-k)));
            extra.extend((1..60).map(|k| 0.5 - 2f64.powi(-k)));
        }
        "acosh" => {
            (lo, hi, signed, elo) = (1.0, 100.0, false, 0.0);
            extra = around(&[1.0, 2.0, 2f64.powi(28), 2f64.powi(12)], s);
            extra.extend((1..60).map(|k| 1.0 + 2f64.powi(-k)));
        }
        "cbrt" => {
            (lo, hi) = (-100.0, 100.0);
            extra = around(&[8.0, 27.0, 0.125, -1.0], s);
        }
        "atan" => {
            extra = around(&[0.41421356237309503, 2.414213562373095, 1.0, -1.0], s);
        }
        "sin" | "cos" | "tan" => {
            let lim = if s { vmath::TRIG_LIMIT_F32 } else { vmath::TRIG_LIMIT_F64 };
            (ehi, lo, hi) = (lim.log2(), -20.0, 20.0);
            // near multiples of π/2 (the reduced argument small)
            let pio2 = std::f64::consts::FRAC_PI_2;
            let ks = [1.0, 2.0, 3.0, 4.0, 7.0, 10.0, 100.0, 1000.0, 12345.0, 65536.0, 1e6, 3e8];
            extra = around(&ks.iter().map(|k| k * pio2).filter(|v| *v <= lim).collect::<Vec<_>>(), s);
            extra.extend(extra.clone().iter().map(|v| -v));
        }
        _ => {}
    }
    let half = n / 2;
    let mut xs: Vec<f64> = (0..half).map(|_| rng.uniform(lo, hi)).collect();
    xs.extend((0..n - half).map(|_| rng.log_uniform(elo, ehi, signed)));
    if name == "logit" {
        // also near 1
        for x in xs.iter_mut().skip(half).step_by(2) {
            *x = 1.0 - *x;
        }
    }
    if name == "log1p" {
        // negative magnitudes below 1
        for x in xs.iter_mut().skip(half).filter(|x| **x < -1.0) {
            *x = 1.0 / *x;
        }
    }
    edges.extend(extra);
    xs.extend(edges);
    if s {
        for x in &mut xs {
            *x = *x as f32 as f64;
        }
    }
    if matches!(name, "sin" | "cos" | "tan") {
        // NaN beyond the reduction's limit, by design
        let lim = if s { vmath::TRIG_LIMIT_F32 } else { vmath::TRIG_LIMIT_F64 };
        xs.retain(|x| x.abs() <= lim);
    }
    xs
}

/// `got` − `want` in ulps of `want` (0 when equal or both NaN, infinite when only one is
/// finite).
fn ulps64(got: f64, want: f64) -> f64 {
    if got == want || (got.is_nan() && want.is_nan()) {
        return 0.0;
    }
    if !got.is_finite() || !want.is_finite() {
        return f64::INFINITY;
    }
    let u = f64::from_bits(want.abs().to_bits() + 1) - want.abs();
    (got - want).abs() / u
}

fn ulps32(got: f32, want: f32) -> f64 {
    if got == want || (got.is_nan() && want.is_nan()) {
        return 0.0;
    }
    if !got.is_finite() || !want.is_finite() {
        return f64::INFINITY;
    }
    let u = f32::from_bits(want.abs().to_bits() + 1) as f64 - want.abs() as f64;
    (got as f64 - want as f64).abs() / u
}

/// The rows of one function in both precisions.
pub fn rows(e: &Entry, points_per_function: usize) -> Vec<Row> {
    let expr = parse_expr(e.sexpr);
    let mut rows = Vec::new();
    for single in [false, true] {
        let xs = points(e.name, single, points_per_function);
        let want: Vec<Option<f64>> = xs.par_iter().with_min_len(64).map(|x| hp::eval(&expr, &[("x", *x)])).collect();
        let (xs, want): (Vec<f64>, Vec<f64>) = xs.iter().zip(&want).filter_map(|(x, w)| w.filter(|w| !w.is_nan()).map(|w| (*x, w))).unzip();
        let (ty, precision) = if single { (types::F32X4, "f32") } else { (types::F64X2, "f64") };
        let h = Harness::new(e.f, ty).unwrap_or_else(|err| panic!("{} {precision}: {err}", e.name));
        let errs: Vec<f64> = if single {
            let x32: Vec<f32> = xs.iter().map(|x| *x as f32).collect();
            h.run_f32(&x32).iter().zip(&want).map(|(g, w)| ulps32(*g, *w as f32)).collect()
        } else {
            h.run_f64(&xs).iter().zip(&want).map(|(g, w)| ulps64(*g, *w)).collect()
        };
        let (mut max, mut at) = (0.0, 0.0);
        for (u, x) in errs.iter().zip(&xs) {
            if *u > max || u.is_nan() {
                (max, at) = (*u, *x);
            }
        }
        let i = single as usize;
        rows.push(Row {
            function: e.name,
            precision,
            points: xs.len(),
            max_ulps: max,
            worst_input: at,
            bound: e.bound[i],
            note: e.note[i],
        });
    }
    rows
}

/// The table: every function of [`entries`] in f64 and f32, on about `points_per_function`
/// points each (plus the edge group).
pub fn table(points_per_function: usize) -> Vec<Row> {
    entries().iter().flat_map(|e| rows(e, points_per_function)).collect()
}

/// The table as aligned text, one row per line, flagging rows over their bound.
pub fn render(rows: &[Row]) -> String {
    let mut s =
        format!("{:<10} {:<4} {:>9} {:>9} {:>26} {:>6}  {}\n", "function", "prec", "points", "max ulps", "worst input", "bound", "note");
    for r in rows {
        let flag = if r.max_ulps <= r.bound { "" } else { "  OVER BOUND" };
        s.push_str(&format!(
            "{:<10} {:<4} {:>9} {:>9.3} {:>26e} {:>6}  {}{}\n",
            r.function, r.precision, r.points, r.max_ulps, r.worst_input, r.bound, r.note, flag
        ));
    }
    s
}
