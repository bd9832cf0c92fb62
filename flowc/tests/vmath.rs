//! Inline `exp` and `log` (codegen::vmath) against the high-precision reference: the ULP
//! table, special values, and f32 through f64.

mod common;

use flowc::codegen::clif::{Float, Options};
use flowc::ir::{hp, parse_expr, Math};
use flowc::lower::{Body, Inst, Kernel, Kind};

fn kernel(op: Math) -> Kernel {
    Kernel {
        flow: "t".into(),
        kind: Kind::Forward,
        dim: 1,
        params: vec![],
        body: Body { insts: vec![Inst::Input(0), Inst::Op(op, vec![0])] },
        outputs: vec![1],
    }
}

fn ulps(got: f64, want: f64) -> f64 {
    if got == want || (got.is_nan() && want.is_nan()) {
        return 0.0;
    }
    if !got.is_finite() || !want.is_finite() {
        return f64::INFINITY;
    }
    let u = f64::from_bits(want.abs().to_bits() + 1) - want.abs();
    (got - want).abs() / u
}

/// Max error in ulps of the inline function over `xs`, with the worst point.
fn table(op: Math, sexpr: &str, xs: &[f64]) -> (f64, f64) {
    let c = flowc::jit::compile_with(&kernel(op), Float::F64, Options { inline_math: true, outline: false }).unwrap();
    let mut out = vec![0.0; xs.len()];
    c.run_f64(xs, &[], &mut out).unwrap();
    let e = parse_expr(sexpr);
    let mut worst = (0.0, 0.0);
    for (x, got) in xs.iter().zip(&out) {
        let want = hp::eval(&e, &[("x", *x)]).unwrap();
        let u = ulps(*got, want);
        if u > worst.0 {
            worst = (u, *x);
        }
    }
    worst
}

fn edge_points() -> Vec<f64> {
    let mut v = vec![0.0, -0.0, 1.0, -1.0, 0.5, 2.0, 1e-300, 5e-324, 2.2250738585072014e-308, 1e300, f64::MAX, f64::MIN_POSITIVE];
    for e in [-745.0, -744.9, -708.5, -700.0, -20.0, -1e-10, 1e-10, 20.0, 700.0, 709.0, 709.78] {
        v.push(e);
    }
    v
}

#[test]
fn exp_is_within_one_ulp() {
    let mut xs = edge_points();
    xs.extend(common::spread(20_000, 11, 1400.0)); // [-700, 700)
    xs.extend(common::spread(5_000, 12, 2.0)); // near 0
    xs.retain(|x| *x > -708.0 && *x < 709.7); // normal results; subnormals below
    let (u, at) = table(Math::Exp(0.into()), "(exp x)", &xs);
    assert!(u <= 1.0, "exp: {u} ulps at {at}");
}

#[test]
fn exp_special_values() {
    let xs = [f64::INFINITY, f64::NEG_INFINITY, f64::NAN, 710.0, -746.0, 0.0, -0.0, -740.0];
    let c = flowc::jit::compile_with(&kernel(Math::Exp(0.into())), Float::F64, Options { inline_math: true, outline: false }).unwrap();
    let mut out = vec![0.0; xs.len()];
    c.run_f64(&xs, &[], &mut out).unwrap();
    assert_eq!(out[0], f64::INFINITY);
    assert_eq!(out[1], 0.0);
    assert!(out[2].is_nan());
    assert_eq!(out[3], f64::INFINITY);
    assert_eq!(out[4], 0.0);
    assert_eq!(out[5], 1.0);
    assert_eq!(out[6], 1.0);
    // subnormal result: within a few ulps of the subnormal spacing
    let want = hp::eval(&parse_expr("(exp x)"), &[("x", -740.0)]).unwrap();
    assert!((out[7] - want).abs() <= 2.0 * 5e-324, "{} vs {want}", out[7]);
}

#[test]
fn log_is_within_one_ulp() {
    let mut xs: Vec<f64> = edge_points().into_iter().filter(|x| *x > 0.0).collect();
    xs.extend(common::spread(20_000, 13, 1400.0).into_iter().map(|e| (e / 2.0).exp2().abs() * 1.37));
    xs.extend(common::spread(5_000, 14, 0.02).into_iter().map(|d| 1.0 + d)); // near 1
    xs.extend(common::spread(2_000, 15, 1.0).into_iter().map(|u| (u + 0.5) * 1e-310)); // subnormal
    xs.retain(|x| *x > 0.0 && x.is_finite());
    let (u, at) = table(Math::Log(0.into()), "(log x)", &xs);
    assert!(u <= 1.0, "log: {u} ulps at {at}");
}

#[test]
fn log_special_values() {
    let xs = [0.0, -0.0, -1.0, f64::INFINITY, f64::NAN, 1.0, f64::NEG_INFINITY];
    let c = flowc::jit::compile_with(&kernel(Math::Log(0.into())), Float::F64, Options { inline_math: true, outline: false }).unwrap();
    let mut out = vec![0.0; xs.len()];
    c.run_f64(&xs, &[], &mut out).unwrap();
    assert_eq!(out[0], f64::NEG_INFINITY);
    assert_eq!(out[1], f64::NEG_INFINITY);
    assert!(out[2].is_nan());
    assert_eq!(out[3], f64::INFINITY);
    assert!(out[4].is_nan());
    assert_eq!(out[5], 0.0);
    assert!(out[6].is_nan());
}

#[test]
fn expm1_and_log1p_are_within_one_ulp() {
    let mut xs = edge_points();
    xs.extend(common::spread(10_000, 31, 2.0)); // |x| < 1
    xs.extend(common::spread(10_000, 32, 1e-6)); // tiny
    xs.extend(common::spread(10_000, 33, 1400.0));
    xs.extend([-60.0, -50.0, -49.9, -37.0, 0.3465, 0.3467, -0.3467, 700.0, 700.1, 709.7]);
    let xs_e: Vec<f64> = xs.iter().copied().filter(|x| *x < 709.7).collect();
    let (u, at) = table(Math::Expm1(0.into()), "(expm1 x)", &xs_e);
    assert!(u <= 1.0, "expm1: {u} ulps at {at}");
    let xs_l: Vec<f64> = xs.iter().copied().map(|x| if x <= -1.0 { -x } else { x }).chain([-0.999999, -0.5, 1e300, 5e-324]).collect();
    let (u, at) = table(Math::Log1p(0.into()), "(log1p x)", &xs_l);
    assert!(u <= 1.0, "log1p: {u} ulps at {at}");
}

#[test]
fn expm1_and_log1p_special_values() {
    let xs = [f64::INFINITY, f64::NEG_INFINITY, f64::NAN, 0.0, -1.0, -2.0];
    let c = flowc::jit::compile_with(&kernel(Math::Expm1(0.into())), Float::F64, Options { inline_math: true, outline: false }).unwrap();
    let mut out = vec![0.0; xs.len()];
    c.run_f64(&xs, &[], &mut out).unwrap();
    assert_eq!((out[0], out[1], out[3]), (f64::INFINITY, -1.0, 0.0));
    assert!(out[2].is_nan());
    let c = flowc::jit::compile_with(&kernel(Math::Log1p(0.into())), Float::F64, Options { inline_math: true, outline: false }).unwrap();
    c.run_f64(&xs, &[], &mut out).unwrap();
    assert_eq!((out[0], out[3], out[4]), (f64::INFINITY, 0.0, f64::NEG_INFINITY));
    assert!(out[1].is_nan() && out[2].is_nan() && out[5].is_nan());
}

#[test]
fn f32_goes_through_f64() {
    for (op, s) in [(Math::Exp(0.into()), "(exp x)"), (Math::Log(0.into()), "(log x)")] {
        let c = flowc::jit::compile_with(&kernel(op), Float::F32, Options { inline_math: true, outline: false }).unwrap();
        let xs: Vec<f32> =
            common::spread(5_000, 16, 160.0).into_iter().map(|v| if s == "(log x)" { v.abs() as f32 + 1e-3 } else { v as f32 }).collect();
        let mut out = vec![0.0f32; xs.len()];
        c.run_f32(&xs, &[], &mut out).unwrap();
        let e = parse_expr(s);
        for (x, got) in xs.iter().zip(&out) {
            let want = hp::eval(&e, &[("x", *x as f64)]).unwrap() as f32;
            let u = f32::from_bits(want.abs().to_bits() + 1) - want.abs();
            assert!((got - want).abs() <= u, "{s} f32 at {x}: {got} vs {want}");
        }
    }
}

/// The full ULP table on 10^6 points per function (release: `cargo test --release -- --ignored`).
#[test]
#[ignore]
fn ulp_table_on_a_million_points() {
    let mut xs = common::spread(1_000_000, 21, 1416.0);
    xs.retain(|x| *x > -708.0 && *x < 709.7);
    let (u, at) = table(Math::Exp(0.into()), "(exp x)", &xs);
    println!("exp f64: max {u} ulps at {at} over {} points", xs.len());
    assert!(u <= 1.0);
    let ys: Vec<f64> =
        common::spread(1_000_000, 22, 2100.0).into_iter().map(|e| e.exp2() * 1.3).filter(|y| *y > 0.0 && y.is_finite()).collect();
    let (u, at) = table(Math::Log(0.into()), "(log x)", &ys);
    println!("log f64: max {u} ulps at {at} over {} points", ys.len());
    assert!(u <= 1.0);
    let mut zs = common::spread(500_000, 23, 4.0);
    zs.extend(common::spread(500_000, 24, 1400.0).into_iter().filter(|x| *x < 709.7));
    let (u, at) = table(Math::Expm1(0.into()), "(expm1 x)", &zs);
    println!("expm1 f64: max {u} ulps at {at} over {} points", zs.len());
    assert!(u <= 1.0);
    let ws: Vec<f64> =
        common::spread(1_000_000, 25, 2100.0).into_iter().map(|e| e.exp2() * 1.3 - 0.999).filter(|w| *w > -1.0 && w.is_finite()).collect();
    let (u, at) = table(Math::Log1p(0.into()), "(log1p x)", &ws);
    println!("log1p f64: max {u} ulps at {at} over {} points", ws.len());
    assert!(u <= 1.0);
}

/// The composite functions built on the cores: ULP row of each (bound 4 ulps, as the JIT's
/// ULP table allows).
#[test]
fn composite_functions_ulp_table() {
    let mut wide = edge_points();
    wide.extend(common::spread(6_000, 41, 40.0));
    wide.extend(common::spread(3_000, 42, 1e-3));
    wide.extend(common::spread(3_000, 43, 1400.0));
    wide.extend([1e8, -1e8, 1e15, 3e300, -3e300, 2f64.powi(28), 2f64.powi(28) * 1.0000001, 0.49999, 0.50001, -0.5, 0.5]);
    let unit: Vec<f64> = common::spread(8_000, 44, 2.0)
        .into_iter()
        .chain([1e-300, -1e-300, 0.999999999, -0.999999999, 0.5, -0.5, 1e-9])
        .filter(|x| x.abs() < 1.0)
        .collect();
    let prob: Vec<f64> = common::spread(8_000, 45, 1.0)
        .into_iter()
        .map(|u| u + 0.5)
        .chain([1e-300, 1e-10, 0.5, 0.4999999, 0.5000001, 0.9999999999, 1.0 - 1e-16])
        .filter(|p| *p > 0.0 && *p < 1.0)
        .collect();
    let rows: Vec<(Math, &str, &Vec<f64>)> = vec![
        (Math::Sinh(0.into()), "(sinh x)", &wide),
        (Math::Cosh(0.into()), "(cosh x)", &wide),
        (Math::Tanh(0.into()), "(tanh x)", &wide),
        (Math::Asinh(0.into()), "(asinh x)", &wide),
        (Math::Atanh(0.into()), "(atanh x)", &unit),
        (Math::Sigmoid(0.into()), "(sigmoid x)", &wide),
        (Math::Softplus(0.into()), "(softplus x)", &wide),
        (Math::LogCosh(0.into()), "(logcosh x)", &wide),
        (Math::Logit(0.into()), "(logit x)", &prob),
        (Math::Sign(0.into()), "(sign x)", &wide),
    ];
    let mut report = String::new();
    let mut bad = Vec::new();
    for (op, s, xs) in rows {
        let xs: Vec<f64> =
            xs.iter().copied().filter(|x| hp::eval(&parse_expr(s), &[("x", *x)]).map(|v| v.is_finite()).unwrap_or(false)).collect();
        let (u, at) = table(op.clone(), s, &xs);
        report.push_str(&format!("{s:14} max {u:>6} ulps at {at:e} over {} points\n", xs.len()));
        if u > 4.0 {
            bad.push(s);
        }
    }
    println!("{report}");
    assert!(bad.is_empty(), "over 4 ulps: {bad:?}\n{report}");
}
