//! JIT-compiled kernels: with libm they agree bit for bit with the kernel interpreter, in f64
//! and f32; with the vector math (the default) they stay within the ULP table's allowance of
//! the high-precision reference, at ordinary and extreme points.

use flowc::codegen::clif::{Float, MathMode, Options};

const LIBM: Options = Options { math: MathMode::Libm, backend: flowc::codegen::clif::Backend::Auto };
use flowc::lower::{self, Kind};

const SRC: &str = "
bijector sas(x; eps: real, delta: positive) = sinh(delta * asinh(x) - eps);
bijector affine(x; shift: real, log_scale: real) = x * exp(log_scale) + shift;
bijector sp(x) = softplus(x);
bijector st(x; a: positive) = a * tanh(x / a);
flow f(x: R^3) {
    base normal;
    elementwise(sas(eps = 0.3, delta = 1.5));
    elementwise(affine);
    elementwise(sas);
    elementwise(st(a = 4));
}
flow g(x: R^2) { base normal; elementwise(sp); elementwise(sas(eps = -0.2, delta = 0.6)); }
";

mod common;

fn rows(dim: usize, n: usize) -> Vec<f64> {
    common::spread(n * dim, 0x2545f4914f6cdd1d, 6.0)
}

fn same64(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

#[test]
fn jit_matches_the_interpreter_bit_for_bit() {
    let (_, _, d) = flowc::cli::load_str("t.flow", SRC).unwrap();
    let p = lower::lower(&d).unwrap();
    for k in &p.kernels {
        let params: Vec<f64> = (0..k.param_len()).map(|i| 0.3 + 0.1 * i as f64).collect();
        let n = 257;
        // the inverse and log-density read data points: push the base rows through first
        let input = if k.kind == Kind::Forward {
            rows(k.dim, n)
        } else {
            let fk = p.kernel(&k.flow, Kind::Forward).unwrap();
            rows(k.dim, n).chunks(k.dim).flat_map(|r| lower::run(fk, r, &params)[..k.dim].to_vec()).collect()
        };
        let c = flowc::jit::compile_with(k, Float::F64, LIBM).unwrap();
        let mut out = vec![0.0; n * c.outputs];
        c.run_f64(&input, &params, &mut out).unwrap();
        for r in 0..n {
            let want = lower::run(k, &input[r * k.dim..(r + 1) * k.dim], &params);
            for (j, w) in want.iter().enumerate() {
                let got = out[r * c.outputs + j];
                assert!(same64(got, *w), "{}.{} f64 row {r} out {j}: {got} vs {w}", k.flow, k.kind.name());
            }
        }
        let c32 = flowc::jit::compile_with(k, Float::F32, LIBM).unwrap();
        let in32: Vec<f32> = input.iter().map(|v| *v as f32).collect();
        let p32: Vec<f32> = params.iter().map(|v| *v as f32).collect();
        let mut out32 = vec![0.0f32; n * c32.outputs];
        c32.run_f32(&in32, &p32, &mut out32).unwrap();
        for r in 0..n {
            let want = lower::run_f32(k, &in32[r * k.dim..(r + 1) * k.dim], &p32);
            for (j, w) in want.iter().enumerate() {
                let got = out32[r * c32.outputs + j];
                assert!(
                    got.to_bits() == w.to_bits() || (got.is_nan() && w.is_nan()),
                    "{}.{} f32 row {r} out {j}: {got} vs {w}",
                    k.flow,
                    k.kind.name()
                );
            }
        }
    }
}

#[test]
fn shapes_are_checked() {
    let (_, _, d) = flowc::cli::load_str("t.flow", SRC).unwrap();
    let p = lower::lower(&d).unwrap();
    let c = flowc::jit::compile(p.kernel("g", Kind::LogProb).unwrap(), Float::F64).unwrap();
    let mut out = vec![0.0; 2];
    assert!(c.run_f64(&[1.0, 2.0, 3.0], &[], &mut out).is_err(), "not whole rows");
    assert!(c.run_f64(&[1.0, 2.0], &[], &mut out).is_err(), "output too long");
    assert!(c.run_f32(&[1.0, 2.0], &[], &mut [0.0]).is_err(), "wrong precision");
    assert!(c.run_f64(&[1.0, 2.0, 3.0, 4.0], &[], &mut out).is_ok());
}

/// Rows are computed in vectors of 2 (f64) or 4 (f32); for every count of rows the last,
/// partial vector writes exactly the rows there are and each row gets its own value.
#[test]
fn partial_vectors_write_only_their_rows() {
    let (_, _, d) = flowc::cli::load_str("t.flow", SRC).unwrap();
    let p = lower::lower(&d).unwrap();
    let k = p.kernel("f", Kind::Forward).unwrap();
    let params: Vec<f64> = (0..k.param_len()).map(|i| 0.3 + 0.1 * i as f64).collect();
    let p32: Vec<f32> = params.iter().map(|v| *v as f32).collect();
    let c64 = flowc::jit::compile_with(k, Float::F64, LIBM).unwrap();
    let c32 = flowc::jit::compile_with(k, Float::F32, LIBM).unwrap();
    for n in 1..=9 {
        let input = rows(k.dim, n);
        let m = n * c64.outputs;
        let mut out = vec![f64::MAX; m + 8];
        c64.run_f64(&input, &params, &mut out[..m]).unwrap();
        assert!(out[m..].iter().all(|v| *v == f64::MAX), "f64, {n} rows: wrote past the output");
        let in32: Vec<f32> = input.iter().map(|v| *v as f32).collect();
        let mut out32 = vec![f32::MAX; m + 8];
        c32.run_f32(&in32, &p32, &mut out32[..m]).unwrap();
        assert!(out32[m..].iter().all(|v| *v == f32::MAX), "f32, {n} rows: wrote past the output");
        for r in 0..n {
            let want = lower::run(k, &input[r * k.dim..(r + 1) * k.dim], &params);
            assert!(same64(out[r * c64.outputs], want[0]), "f64, {n} rows, row {r}");
            let want32 = lower::run_f32(k, &in32[r * k.dim..(r + 1) * k.dim], &p32);
            assert_eq!(out32[r * c32.outputs].to_bits(), want32[0].to_bits(), "f32, {n} rows, row {r}");
        }
    }
}

#[test]
fn clif_text() {
    let (_, _, d) = flowc::cli::load_str("t.flow", "bijector affine(x; shift: real, log_scale: real) = x * exp(log_scale) + shift;\nflow h(x: R^2) { base normal; elementwise(affine(log_scale = 0.5)); }").unwrap();
    let p = lower::lower(&d).unwrap();
    let k = p.kernel("h", Kind::LogProb).unwrap();
    let cranelift = Options { math: MathMode::Auto, backend: flowc::codegen::clif::Backend::Cranelift };
    let c = flowc::jit::compile_with(k, Float::F64, cranelift).unwrap();
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../../snapshots/clif");
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| insta::assert_snapshot!("h_log_prob_f64", c.clif));
    // the same kernel as AVX-512 code (generated whatever this CPU has; not run here)
    let native = flowc::codegen::x64::emit(k, Float::F64).unwrap();
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../../snapshots/asm");
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| insta::assert_snapshot!("h_log_prob_f64", native.disassembly()));
}

/// The snapshot corpus plus, for each bijector on R, a one-layer flow `one_NAME`; returns the
/// derivation and those bijectors' names.
fn corpus_one_layer_flows() -> (flowc::derive::Derivation, Vec<String>) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../snapshots/corpus.flow");
    let mut src = std::fs::read_to_string(path).unwrap();
    let (_, _, d0) = flowc::cli::load_str("corpus.flow", &src).unwrap();
    let mut names = Vec::new();
    for b in d0.bijectors.iter().filter(|b| b.spline.is_none()) {
        if b.domain == flowc::ir::Interval::REAL {
            src.push_str(&format!("\nflow one_{0}(x: R^1) {{ base normal; elementwise({0}); }}", b.name));
            names.push(b.name.clone());
        }
    }
    let (_, _, d) = flowc::cli::load_str("corpus.flow", &src).unwrap();
    (d, names)
}

/// Every bijector of the snapshot corpus defined on R (numeric inverses included), as a
/// one-layer flow: the compiled kernels equal the interpreter at ordinary and extreme points,
/// in f64 and f32.
#[test]
fn corpus_bijectors_compile_and_agree() {
    let (d, names) = corpus_one_layer_flows();
    let p = lower::lower(&d).unwrap();
    let points = [0.0, 1e-300, -1e-30, 0.5, -2.0, 7.0, -40.0, 600.0, 1e8, -1e15, 1e300, f64::NAN, -f64::INFINITY];
    for name in &names {
        for kind in [Kind::Forward, Kind::Inverse, Kind::LogProb] {
            let k = p.kernel(&format!("one_{name}"), kind).unwrap();
            let params: Vec<f64> = (0..k.param_len()).map(|i| [0.3, 1.25, -0.5][i % 3]).collect();
            let c = flowc::jit::compile_with(k, Float::F64, LIBM).unwrap();
            let mut out = vec![0.0; points.len() * c.outputs];
            c.run_f64(&points, &params, &mut out).unwrap();
            let c32 = flowc::jit::compile_with(k, Float::F32, LIBM).unwrap();
            let p32: Vec<f32> = points.iter().map(|v| *v as f32).collect();
            let q32: Vec<f32> = params.iter().map(|v| *v as f32).collect();
            let mut out32 = vec![0.0f32; points.len() * c32.outputs];
            c32.run_f32(&p32, &q32, &mut out32).unwrap();
            for (r, x) in points.iter().enumerate() {
                let want = lower::run(k, &[*x], &params);
                let want32 = lower::run_f32(k, &[*x as f32], &q32);
                for j in 0..c.outputs {
                    let got = out[r * c.outputs + j];
                    assert!(same64(got, want[j]), "{name}.{} f64 at {x}: {got} vs {}", kind.name(), want[j]);
                    let g32 = out32[r * c.outputs + j];
                    assert!(
                        g32.to_bits() == want32[j].to_bits() || (g32.is_nan() && want32[j].is_nan()),
                        "{name}.{} f32 at {x}: {g32} vs {}",
                        kind.name(),
                        want32[j]
                    );
                }
            }
        }
    }
    assert!(names.len() >= 15, "{names:?}");
}

/// The corpus bijectors as one-layer flows, compiled with the default (vector) math: at
/// ordinary and extreme points, each output's error against the high-precision reference is
/// at most 4 times the libm interpreter's own error plus 64 ulps of the value (the vector
/// functions are within 4 ulps, libm's within 1), in f64 and in f32.
#[test]
fn corpus_jit_with_vector_math_is_within_the_ulp_table() {
    use flowc::ir::hp;
    let (d, names) = corpus_one_layer_flows();
    let p = lower::lower(&d).unwrap();
    let points = [0.0, 1e-300, -1e-30, 0.5, -2.0, 7.0, -40.0, 600.0, 1e8, -1e15, 1e300, 3.3, -0.7];
    let mut checked = 0;
    for name in &names {
        let b = d.bijector(name).unwrap();
        if b.inverse.formula().is_none() {
            continue; // a numeric inverse: `tests/rootfind.rs`
        }
        let f = d.flow(&format!("one_{name}")).unwrap();
        let slots = lower::param_slots(f);
        for kind in [Kind::Forward, Kind::Inverse, Kind::LogProb] {
            let k = p.kernel(&f.name, kind).unwrap();
            let params: Vec<f64> = (0..k.param_len()).map(|i| [0.3, 1.25, -0.5][i % 3]).collect();
            let env =
                |s: egg::Symbol| slots.iter().find(|sl| sl.name == format!("layers.0.{s}")).map(|sl| params[sl.offset]).unwrap_or(f64::NAN);
            let c = flowc::jit::compile(k, Float::F64).unwrap();
            let c32 = flowc::jit::compile(k, Float::F32).unwrap();
            let mut out = vec![0.0; points.len() * c.outputs];
            c.run_f64(&points, &params, &mut out).unwrap();
            let p32: Vec<f32> = points.iter().map(|v| *v as f32).collect();
            let q32: Vec<f32> = params.iter().map(|v| *v as f32).collect();
            let mut out32 = vec![0.0f32; points.len() * c32.outputs];
            c32.run_f32(&p32, &q32, &mut out32).unwrap();
            for (r, x) in points.iter().enumerate() {
                // the reference: the chosen formulas in high precision
                let with = |var: &'static str, v: f64| move |s: egg::Symbol| if s.as_str() == var { v } else { env(s) };
                let refs: Vec<Option<f64>> = match kind {
                    Kind::Forward | Kind::Ratio => {
                        let y = hp::eval_with(&b.forward.chosen.expr, &with("x", *x));
                        let ld = hp::eval_with(&b.log_det.chosen.expr, &with("x", *x));
                        vec![y, ld]
                    }
                    Kind::Inverse | Kind::LogProb | Kind::Gradient => {
                        let xv = hp::eval_with(b.inverse.formula().unwrap(), &with("y", *x));
                        let ld = xv.and_then(|xv| hp::eval_with(&b.log_det.chosen.expr, &with("x", xv)));
                        if kind == Kind::Inverse {
                            vec![xv, ld]
                        } else {
                            vec![xv.zip(ld).map(|(z, l)| -0.5 * z * z - 0.5 * runtime::base::LN_2PI - l)]
                        }
                    }
                };
                let interp = lower::run(k, &[*x], &params);
                let interp32 = lower::run_f32(k, &[*x as f32], &q32);
                for (j, want) in refs.iter().enumerate() {
                    let Some(want) = *want else { continue };
                    if !want.is_finite() || want.abs() > 1e300 {
                        continue;
                    }
                    let got = out[r * c.outputs + j];
                    let ulp = |v: f64| f64::from_bits(v.abs().to_bits() + 1) - v.abs();
                    let e_lib = (interp[j] - want).abs();
                    let e_jit = (got - want).abs();
                    assert!(
                        e_jit <= 4.0 * e_lib + 64.0 * ulp(want) || (e_lib.is_nan() && got.is_nan()),
                        "{name}.{} f64 output {j} at {x}: JIT {got}, libm {}, reference {want}",
                        kind.name(),
                        interp[j]
                    );
                    let w32 = want as f32;
                    if w32.is_finite() && (want == 0.0 || w32 != 0.0) && x.abs() < 3e38 {
                        let g32 = out32[r * c.outputs + j] as f64;
                        let ulp32 = (f32::from_bits(w32.abs().to_bits() + 1) - w32.abs()) as f64;
                        let e_lib32 = (interp32[j] as f64 - want).abs();
                        let e_jit32 = (g32 - want).abs();
                        assert!(
                            e_jit32 <= 4.0 * e_lib32 + 64.0 * ulp32 || (e_lib32.is_nan() || !e_lib32.is_finite()),
                            "{name}.{} f32 output {j} at {x}: JIT {g32}, libm {}, reference {want}",
                            kind.name(),
                            interp32[j]
                        );
                    }
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 500, "{checked} comparisons");
}

/// The two-argument vector functions (pow, powrecip, hypot) against the high-precision
/// reference, f64 and f32: relative error within 4 ulps plus the power's own condition (|y|
/// ulps for x^y, 1/|d| for x^(1/d)); hypot within 2 ulps.
#[test]
fn vector_pow_powrecip_and_hypot() {
    use flowc::ir::{hp, parse_expr, Math};
    use flowc::lower::{Body, Inst, Kernel};
    let z = egg::Id::from(0usize);
    let cases: [(Math, &str); 3] =
        [(Math::Pow([z, z]), "(pow x y)"), (Math::PowRecip([z, z]), "(powrecip x y)"), (Math::Hypot([z, z]), "(hypot x y)")];
    let mut pts: Vec<(f64, f64)> = Vec::new();
    let xs = common::spread(3000, 91, 1.0);
    let ys = common::spread(3000, 92, 20.0);
    for (u, y) in xs.iter().zip(&ys) {
        let x = 10f64.powf(u * 500.0);
        pts.push((x, *y));
        pts.push((-x, y.round()));
        pts.push((x, y / 50.0));
    }
    pts.extend([(0.0, 2.0), (0.0, -1.0), (1.0, f64::NAN), (2.0, 0.0), (-8.0, 3.0), (-2.0, 0.5), (f64::INFINITY, 2.0), (1e300, 1.0)]);
    for (op, s) in cases {
        let k = Kernel {
            flow: "t".into(),
            kind: Kind::Forward,
            dim: 2,
            params: vec![],
            body: Body { insts: vec![Inst::Input(0), Inst::Input(1), Inst::Op(op.clone(), vec![0, 1])] },
            outputs: vec![2],
        };
        let e = parse_expr(s);
        let c = flowc::jit::compile(&k, Float::F64).unwrap();
        let c32 = flowc::jit::compile(&k, Float::F32).unwrap();
        let flat: Vec<f64> = pts.iter().flat_map(|(x, y)| [*x, *y]).collect();
        let mut out = vec![0.0; pts.len()];
        c.run_f64(&flat, &[], &mut out).unwrap();
        let f32s: Vec<f32> = flat.iter().map(|v| *v as f32).collect();
        let mut out32 = vec![0.0f32; pts.len()];
        c32.run_f32(&f32s, &[], &mut out32).unwrap();
        for (i, (x, y)) in pts.iter().enumerate() {
            let cond = match op {
                Math::Pow(_) => y.abs(),
                Math::PowRecip(_) => 1.0 / y.abs(),
                _ => 0.0,
            };
            let allowed = if matches!(op, Math::Hypot(_)) { 2.0 } else { 4.0 + 2.0 * cond };
            if matches!(op, Math::PowRecip(_)) && *y == 0.0 {
                continue;
            }
            if !matches!(op, Math::Hypot(_)) && (*x == 1.0 || *y == 0.0) {
                // C's pow: 1 whatever the other argument (libm and the interpreter agree)
                assert_eq!(out[i], 1.0, "{s} at ({x}, {y})");
                continue;
            }
            if let Some(want) = hp::eval(&e, &[("x", *x), ("y", *y)]) {
                let got = out[i];
                if want.is_nan() {
                    assert!(got.is_nan(), "{s} at ({x}, {y}): {got}, want NaN");
                } else if want.is_finite() && want.abs() > 1e-300 {
                    let ulp = f64::from_bits(want.abs().to_bits() + 1) - want.abs();
                    assert!((got - want).abs() <= allowed * ulp, "{s} f64 at ({x}, {y}): {got} vs {want}");
                } else if want.is_infinite() {
                    assert_eq!(got, want, "{s} at ({x}, {y})");
                }
                let (x32, y32) = (*x as f32, *y as f32);
                if x32.is_finite() && y32.is_finite() && (x32 as f64 == *x) {
                    let want32 = hp::eval(&e, &[("x", x32 as f64), ("y", y32 as f64)]).unwrap_or(f64::NAN) as f32;
                    let got32 = out32[i];
                    if want32.is_finite() && want32.abs() > 1e-37 {
                        let ulp = f32::from_bits(want32.abs().to_bits() + 1) - want32.abs();
                        let cond32 = match op {
                            Math::Pow(_) => y32.abs(),
                            Math::PowRecip(_) => 1.0 / y32.abs(),
                            _ => 0.0,
                        };
                        let allowed32 = if matches!(op, Math::Hypot(_)) { 2.0 } else { 4.0 + 2.0 * cond32 };
                        assert!((got32 - want32).abs() <= allowed32 * ulp, "{s} f32 at ({x32}, {y32}): {got32} vs {want32}");
                    }
                }
            }
        }
    }
}

#[test]
fn log_products_match_the_sum_of_logarithms() {
    // ½·(3 ln a − 2 ln b + ln c) with one logarithm of the mantissas' product: values from
    // subnormal to huge, zeros, infinities and NaN (those lanes take the sum of logarithms)
    use flowc::lower::{Body, Inst, Kernel};
    let k = Kernel {
        flow: "logprod".into(),
        kind: Kind::LogProb,
        dim: 3,
        params: vec![],
        body: Body {
            insts: vec![Inst::Input(0), Inst::Input(1), Inst::Input(2), Inst::LogProd { terms: vec![(0, 3), (1, -2), (2, 1)], scale: 0.5 }],
        },
        outputs: vec![3],
    };
    let vals = [1.0, 0.5, 3.7, 1e-300, 1e300, 7e-310, 1.7e308, 2.0, 0.999999, 1e-5];
    let mut rows = Vec::new();
    for (i, a) in vals.iter().enumerate() {
        for (j, b) in vals.iter().enumerate() {
            rows.extend([*a, *b, vals[(i + j) % vals.len()]]);
        }
    }
    rows.extend([0.0, 1.0, 1.0, 1.0, f64::INFINITY, 1.0, f64::NAN, 1.0, 1.0, -1.0, 1.0, 1.0]);
    for prec in [Float::F64, Float::F32] {
        let c = flowc::jit::compile(&k, prec).unwrap();
        let n = rows.len() / 3;
        for (r, row) in rows.chunks(3).enumerate() {
            let (got, want) = match prec {
                Float::F64 => {
                    let mut out = vec![0.0; n];
                    c.run_f64(&rows, &[], &mut out).unwrap();
                    (out[r], lower::run(&k, row, &[])[0])
                }
                Float::F32 => {
                    let r32: Vec<f32> = rows.iter().map(|v| *v as f32).collect();
                    let mut out = vec![0.0f32; n];
                    c.run_f32(&r32, &[], &mut out).unwrap();
                    let w = lower::run_f32(&k, &r32[r * 3..r * 3 + 3], &[])[0];
                    (out[r] as f64, w as f64)
                }
            };
            let ulp = if prec == Float::F64 { f64::EPSILON } else { f32::EPSILON as f64 };
            // the sum of logarithms is accurate to its terms' size (cancellation between them)
            let size: f64 = row.iter().zip([3.0, 2.0, 1.0]).map(|(v, p)| 0.5 * p * v.ln().abs()).sum();
            let ok = got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()) || (got - want).abs() <= 16.0 * ulp * (1.0 + size);
            assert!(ok, "{prec:?} at {row:?}: {got} vs {want}");
        }
    }
}
