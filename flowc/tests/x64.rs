//! The AVX-512 backend (`codegen::x64`) against the reference interpreter and the Cranelift
//! backend: whole flows (sphere, simplex, R^n; forward, inverse, log_prob; f64 and f32) at
//! batch sizes that exercise the interleaved main loop and the masked tail; arithmetic bit for
//! bit, with enough live values to spill and enough outputs to scatter; sums of logarithms at
//! the ends of the floating-point range and at 0, ∞, NaN and negative terms.
//! On CPUs without AVX-512F the kernels fall back to Cranelift and these tests check that.

use astro_float::{BigFloat, Consts, RoundingMode};
use flowc::codegen::clif::{Backend, Float, MathMode, Options};
use flowc::codegen::x64;
use flowc::ir::Math;
use flowc::ir::ParamKind;
use flowc::lower::{self, Body, Inst, Kernel, Kind, ParamSlot};
use runtime::rng::Rng;

const CRANELIFT: Options = Options { math: MathMode::Auto, backend: Backend::Cranelift };

/// Row counts: one, a partial vector, whole vectors, an interleaved block (6 vectors: 48 f64
/// rows, 96 f32 rows) ± 1, a large odd one.
const BATCHES: [usize; 12] = [1, 5, 8, 17, 31, 47, 48, 49, 95, 96, 97, 1001];

#[derive(Clone, Copy)]
enum Space {
    Real,
    Sphere,
    Simplex,
}

fn rows(space: Space, n: usize, dim: usize, rng: &mut Rng) -> Vec<f64> {
    let mut out = Vec::with_capacity(n * dim);
    for _ in 0..n {
        let mut r: Vec<f64> = (0..dim).map(|_| rng.normal()).collect();
        match space {
            Space::Real => {}
            Space::Sphere => {
                let s = r.iter().map(|v| v * v).sum::<f64>().sqrt();
                r.iter_mut().for_each(|v| *v /= s);
            }
            Space::Simplex => {
                r.iter_mut().for_each(|v| *v = (1.5 * *v).exp());
                let s: f64 = r.iter().sum();
                r.iter_mut().for_each(|v| *v /= s);
            }
        }
        out.extend(r);
    }
    out
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= tol * b.abs().max(1.0)
}

const FLOWS: &str = "
bijector affine(x; shift: real, log_scale: real) = x * exp(log_scale) + shift;
flow aff5(x: R^5) { base normal; elementwise(affine); elementwise(affine); }
flow aff1(x: R^1) { base normal; elementwise(affine); }
flow aff2(x: R^2) { base normal; elementwise(affine); elementwise(affine); }
flow s4(x: sphere(4)) { base uniform; normalized_affine; normalized_linear; }
flow p2(x: R^2) { base normal; planar; planar; planar; }
flow s3(x: sphere(3)) { base uniform; normalized_affine; normalized_affine; normalized_affine; normalized_affine; }
flow s6(x: sphere(6)) { base vmf(3); normalized_translation; normalized_linear; normalized_affine; }
flow c3(x: simplex(3)) { base dirichlet([4, 4, 4]); calibration; generalized_calibration; generalized_calibration; }
flow c5(x: simplex(5)) { base dirichlet([1.5, 2, 0.7, 1, 3]); calibration; generalized_calibration; }
";

/// Every kernel of the flows above: the AVX-512 code (where the CPU has it and the kernel is
/// one it takes) against the interpreter (f64: within 1e-12 relative; the sums of logarithms
/// are computed differently) and against Cranelift's code (f32: within 2e-5).
#[test]
fn flows_match_the_interpreter_and_cranelift() {
    let (_, _, d) = flowc::cli::load_str("x64.flow", FLOWS).unwrap_or_else(|f| panic!("{}", f.message));
    let p = lower::lower(&d).unwrap();
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
    let mut native = Vec::new();
    for (flow, space) in [
        ("aff1", Space::Real),
        ("aff2", Space::Real),
        ("aff5", Space::Real),
        ("p2", Space::Real),
        ("s3", Space::Sphere),
        ("s4", Space::Sphere),
        ("s6", Space::Sphere),
        ("c3", Space::Simplex),
        ("c5", Space::Simplex),
    ] {
        // (planar layers invert by root-finding: their density kernels are Cranelift's)
        let kinds = if flow == "p2" { &[Kind::Forward][..] } else { &[Kind::Forward, Kind::Inverse, Kind::LogProb][..] };
        for &kind in kinds {
            let k = p.kernel(flow, kind).unwrap();
            let params: Vec<f64> = (0..k.param_len()).map(|_| 0.3 * rng.normal()).collect();
            let outs = k.outputs.len();
            for prec in [Float::F64, Float::F32] {
                let auto = flowc::jit::compile(k, prec).unwrap();
                let cl = flowc::jit::compile_with(k, prec, CRANELIFT).unwrap();
                assert_eq!(cl.backend(), "cranelift");
                if auto.backend() == "avx512" {
                    native.push(format!("{flow}.{} {prec:?}", kind.name()));
                }
                for &n in &BATCHES {
                    let x = rows(space, n, k.dim, &mut rng);
                    if prec == Float::F64 {
                        let mut got = vec![f64::NAN; n * outs];
                        auto.run_f64(&x, &params, &mut got).unwrap();
                        for r in 0..n {
                            let want = lower::run(k, &x[r * k.dim..(r + 1) * k.dim], &params);
                            for o in 0..outs {
                                let (g, w) = (got[r * outs + o], want[o]);
                                assert!(close(g, w, 1e-12), "{flow}.{} row {r}/{n} output {o}: {g} vs interpreter {w}", kind.name());
                            }
                        }
                    } else {
                        let x32: Vec<f32> = x.iter().map(|v| *v as f32).collect();
                        let p32: Vec<f32> = params.iter().map(|v| *v as f32).collect();
                        let mut got = vec![f32::NAN; n * outs];
                        let mut want = vec![f32::NAN; n * outs];
                        auto.run_f32(&x32, &p32, &mut got).unwrap();
                        cl.run_f32(&x32, &p32, &mut want).unwrap();
                        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                            assert!(close(*g as f64, *w as f64, 2e-5), "{flow}.{} f32 value {i}/{n}: {g} vs Cranelift {w}", kind.name());
                        }
                    }
                }
            }
        }
    }
    if x64::host_supported() {
        for must in [
            "p2.forward F64",
            "p2.forward F32",
            "s3.forward F64",
            "s3.forward F32",
            "c3.log_prob F64",
            "c5.inverse F32",
            "s3.log_prob F64",
            "s3.log_prob F32",
            "s4.log_prob F64",
            "s4.log_prob F32",
            "s6.log_prob F64",
            "aff1.forward F64",
            "aff2.inverse F32",
            "aff5.forward F64",
            "aff5.log_prob F32",
        ] {
            assert!(native.iter().any(|n| n == must), "{must} should run as AVX-512 code; native: {native:?}");
        }
    } else {
        assert!(native.is_empty());
    }
}

/// An op's child placeholder (a kernel instruction's operands are its argument list).
fn z() -> egg::Id {
    0usize.into()
}

fn kernel(dim: usize, insts: Vec<Inst>, outputs: Vec<usize>, param_len: usize) -> Kernel {
    Kernel {
        flow: "hand".into(),
        kind: Kind::Forward,
        dim,
        params: vec![ParamSlot { name: "p".into(), offset: 0, len: param_len, shape: vec![param_len], kind: ParamKind::Real }],
        body: Body { insts },
        outputs,
    }
}

/// Plain arithmetic is exact per lane: the AVX-512 code equals the interpreter bit for bit,
/// with 40 inputs (more live values than registers: spills), a parameter-only subexpression,
/// and 33 outputs (scattered).
#[test]
fn arithmetic_is_bit_exact_with_spills_and_scattered_outputs() {
    let dim = 40;
    let mut insts: Vec<Inst> = (0..dim).map(Inst::Input).collect();
    insts.push(Inst::Param(0)); // 40
    insts.push(Inst::Param(1)); // 41
    insts.push(Inst::Op(Math::Exp(z()), vec![41])); // 42: uniform
    insts.push(Inst::Const(0.5));
    let mut outs = Vec::new();
    // products of every input with its mirror, all live until the end
    let mut mids = Vec::new();
    for i in 0..dim {
        let a = insts.len();
        insts.push(Inst::Op(Math::Mul([z(), z()]), vec![i, dim - 1 - i]));
        mids.push(a);
    }
    for i in 0..dim {
        let j = (i * 7 + 3) % dim;
        let k = insts.len();
        let op = match i % 8 {
            0 => Math::Add([z(), z()]),
            1 => Math::Sub([z(), z()]),
            2 => Math::Mul([z(), z()]),
            3 => Math::Div([z(), z()]),
            4 => Math::Sqrt(z()),
            5 => Math::Neg(z()),
            6 => Math::Abs(z()),
            _ => Math::IfPos([z(), z(), z()]),
        };
        let args = match i % 8 {
            4..=6 => vec![mids[i]],
            7 => vec![i, mids[j], 42],
            3 => vec![40, mids[j]],
            _ => vec![mids[i], mids[j]],
        };
        insts.push(Inst::Op(op, args));
        insts.push(Inst::Op(Math::Mul([z(), z()]), vec![k, 42]));
        if i < 33 {
            outs.push(k + 1);
        }
    }
    let k = kernel(dim, insts, outs, 2);
    let native = flowc::jit::compile(&k, Float::F64).unwrap();
    if x64::host_supported() {
        assert_eq!(native.backend(), "avx512");
        let n = x64::emit(&k, Float::F64).unwrap();
        assert!(n.spilled > 0, "40 live products should not fit in the registers");
    }
    let native32 = flowc::jit::compile(&k, Float::F32).unwrap();
    let mut rng = Rng::new(7);
    let params = [rng.normal(), rng.normal()];
    for &n in &BATCHES {
        let x: Vec<f64> = (0..n * dim).map(|_| 3.0 * rng.normal()).collect();
        let mut got = vec![0.0; n * 33];
        native.run_f64(&x, &params, &mut got).unwrap();
        for r in 0..n {
            let want = lower::run(&k, &x[r * dim..(r + 1) * dim], &params);
            for o in 0..33 {
                let g = got[r * 33 + o];
                assert!(
                    g.to_bits() == want[o].to_bits() || (g.is_nan() && want[o].is_nan()),
                    "row {r}/{n} output {o}: {g:e} vs {:e}",
                    want[o]
                );
            }
        }
        let x32: Vec<f32> = x.iter().map(|v| *v as f32).collect();
        let p32 = [params[0] as f32, params[1] as f32];
        let mut got = vec![0.0f32; n * 33];
        native32.run_f32(&x32, &p32, &mut got).unwrap();
        for r in 0..n {
            let want = lower::run_f32(&k, &x32[r * dim..(r + 1) * dim], &p32);
            for o in 0..33 {
                let g = got[r * 33 + o];
                assert!(
                    g.to_bits() == want[o].to_bits() || (g.is_nan() && want[o].is_nan()),
                    "f32 row {r}/{n} output {o}: {g:e} vs {:e}",
                    want[o]
                );
            }
        }
    }
}

/// Operands anywhere in a large parameter buffer (addressed through three base registers, and
/// past them with full displacements): a Horner chain over 900 parameters is bit-exact, and
/// the batch entry point (parameter buffer prepared once, rows on two threads) equals the
/// single call.
#[test]
fn operands_across_a_large_parameter_buffer() {
    let np = 900;
    let mut insts = vec![Inst::Input(0), Inst::Input(1)];
    let mut acc = 0;
    for j in 0..np {
        let p = insts.len();
        insts.push(Inst::Param(j));
        insts.push(Inst::Op(Math::Mul([z(), z()]), vec![acc, 1]));
        insts.push(Inst::Op(if j % 2 == 0 { Math::Add([z(), z()]) } else { Math::Sub([z(), z()]) }, vec![p + 1, p]));
        acc = p + 2;
    }
    let k = kernel(2, insts, vec![acc, 1], np);
    let mut rng = Rng::new(11);
    let params: Vec<f64> = (0..np).map(|_| 0.5 * rng.normal()).collect();
    let p32: Vec<f32> = params.iter().map(|v| *v as f32).collect();
    for prec in [Float::F64, Float::F32] {
        let c = flowc::jit::compile(&k, prec).unwrap();
        if x64::host_supported() {
            assert_eq!(c.backend(), "avx512");
        }
        for &n in BATCHES.iter().chain(&[20_000]) {
            let x: Vec<f64> = (0..n * 2).map(|i| if i % 2 == 0 { rng.normal() } else { 0.9 * rng.uniform() }).collect();
            let x32: Vec<f32> = x.iter().map(|v| *v as f32).collect();
            let (mut one, mut many) = (vec![0.0; n * 2], vec![0.0; n * 2]);
            let (mut one32, mut many32) = (vec![0.0f32; n * 2], vec![0.0f32; n * 2]);
            if prec == Float::F64 {
                c.run_f64(&x, &params, &mut one).unwrap();
                c.run_batch_f64(&x, &params, &mut many, 2).unwrap();
            } else {
                c.run_f32(&x32, &p32, &mut one32).unwrap();
                c.run_batch_f32(&x32, &p32, &mut many32, 2).unwrap();
            }
            for r in 0..n {
                let (g, w, b) = if prec == Float::F64 {
                    (one[r * 2], lower::run(&k, &x[r * 2..r * 2 + 2], &params)[0], many[r * 2])
                } else {
                    (one32[r * 2] as f64, lower::run_f32(&k, &x32[r * 2..r * 2 + 2], &p32)[0] as f64, many32[r * 2] as f64)
                };
                assert_eq!(g.to_bits(), w.to_bits(), "{prec:?} row {r}/{n}: {g:e} vs {w:e}");
                assert_eq!(b.to_bits(), g.to_bits(), "{prec:?} batch row {r}/{n}");
            }
        }
    }
}

/// scale·Σ p·ln(a) at the ends of the range and beyond it: within a few ulps of the sum of
/// logarithms computed term by term (f64), and the same −∞, +∞ or NaN where a term is 0, ∞,
/// negative or NaN.
#[test]
fn sums_of_logarithms_at_the_extremes() {
    let vals = [
        1.0,
        0.5,
        3.0,
        1e-300,
        1e300,
        5e-324,
        2.2e-308,
        1.7e308,
        1.0 + 1e-15,
        0.0,
        -0.0,
        -2.0,
        f64::INFINITY,
        f64::NAN,
        7.25e-200,
        123456.789,
    ];
    let powers = [3, -2, 1, -4];
    let insts = vec![
        Inst::Input(0),
        Inst::Input(1),
        Inst::Input(2),
        Inst::Input(3),
        Inst::LogProd { terms: vec![(0, powers[0]), (1, powers[1]), (2, powers[2]), (3, powers[3])], scale: 0.5 },
        Inst::LogProd { terms: vec![(0, 2), (1, 2), (2, 2), (3, 2), (0, 2), (1, 2), (2, 2), (3, 2)], scale: -1.0 },
    ];
    let k = kernel(4, insts, vec![4, 5], 0);
    let c = flowc::jit::compile(&k, Float::F64).unwrap();
    let mut rows = Vec::new();
    for (i, a) in vals.iter().enumerate() {
        for (j, b) in vals.iter().enumerate() {
            rows.extend([*a, *b, vals[(i + j) % vals.len()], vals[(i * 3 + j * 5 + 1) % vals.len()]]);
        }
    }
    let n = rows.len() / 4;
    let mut cc = Consts::new().unwrap();
    let mut got = vec![0.0; n * 2];
    c.run_f64(&rows, &[], &mut got).unwrap();
    // f32: the same rows rounded to f32 (1e300 → ∞, 1e-300 → 0; 7.25e-200 → 0), against the
    // reference at the rounded values, within 4 f32 ulps
    let rows32: Vec<f32> = rows.iter().map(|v| *v as f32).collect();
    let c32 = flowc::jit::compile(&k, Float::F32).unwrap();
    let mut got32 = vec![0.0f32; n * 2];
    c32.run_f32(&rows32, &[], &mut got32).unwrap();
    for r in 0..n {
        let x = &rows[r * 4..r * 4 + 4];
        let x32: Vec<f64> = rows32[r * 4..r * 4 + 4].iter().map(|v| *v as f64).collect();
        // the reference: Σ p·ln(a) in 256-bit arithmetic (NaN, ±∞ as f64 combines them)
        for (xs, out, eps) in [(x.to_vec(), &got, f64::EPSILON), (x32, &got32.iter().map(|v| *v as f64).collect(), f32::EPSILON as f64)] {
            let want = [reference(&xs, &powers, 0.5, &mut cc), reference(&xs, &[4, 4, 4, 4], -1.0, &mut cc)];
            for o in 0..2 {
                let (g, w) = (out[r * 2 + o], want[o]);
                let ok = if w.is_finite() {
                    (g - w).abs() <= 4.0 * eps * w.abs().max(1.0)
                } else {
                    g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan())
                };
                assert!(ok, "row {xs:?} output {o} (ulp {eps:e}): {g:e} vs {w:e}");
            }
        }
    }
}

/// The code of a sum of logarithms (two terms, powers 2 and −3): mantissa products, one
/// logarithm, and the lanes with a term outside (0, ∞) blended in without a branch (a jump per
/// vector of rows around them cost W4's forward map a quarter of its speed).
#[test]
fn sum_of_logarithms_code() {
    let insts = vec![Inst::Input(0), Inst::Input(1), Inst::LogProd { terms: vec![(0, 2), (1, -3)], scale: 0.5 }];
    let k = kernel(2, insts, vec![2], 0);
    let native = flowc::codegen::x64::emit(&k, Float::F64).unwrap();
    let code = native.disassembly();
    let main_loop = code.lines().take_while(|l| !l.contains("jmp")).collect::<Vec<_>>();
    let jumps: Vec<&&str> = main_loop.iter().filter(|l| l.split_whitespace().nth(1).is_some_and(|op| op.starts_with('j'))).collect();
    assert_eq!(jumps.len(), 1, "the main loop's only jump is the one to the tail: {jumps:?}");
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../../snapshots/asm");
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| insta::assert_snapshot!("sum_of_logarithms_f64", code));
}

fn reference(x: &[f64], powers: &[i32], scale: f64, cc: &mut Consts) -> f64 {
    if x.iter().any(|a| !(*a > 0.0 && a.is_finite())) {
        return scale * x.iter().zip(powers).map(|(a, p)| *p as f64 * a.ln()).sum::<f64>();
    }
    let rm = RoundingMode::ToEven;
    let mut sum = BigFloat::from_f64(0.0, 256);
    for (a, p) in x.iter().zip(powers) {
        // subnormals scaled up first (a·2^64 is exact): astro-float reads them a factor 2 off
        let (a, shift) = if *a < f64::MIN_POSITIVE { (a * 2f64.powi(64), 64.0) } else { (*a, 0.0) };
        let ln2 = BigFloat::from_f64(2.0, 256).ln(256, rm, cc);
        let l = BigFloat::from_f64(a, 256).ln(256, rm, cc).sub(&ln2.mul(&BigFloat::from_f64(shift, 256), 256, rm), 256, rm);
        sum = sum.add(&l.mul(&BigFloat::from_f64(*p as f64, 256), 256, rm), 256, rm);
    }
    let v = sum.mul(&BigFloat::from_f64(scale, 256), 256, rm);
    flowc::ir::hp::to_f64(&v)
}

/// exp, log, log1p and tanh of row values: within 2 ulps of the host's libm in f64 (4 in f32, against
/// the f64 function rounded), and the same ±0, ±∞ and NaN at the ends, over a sweep from
/// subnormals to overflow.
#[test]
fn exp_log_log1p_and_tanh_match_libm() {
    let z = || -> egg::Id { 0usize.into() };
    let insts = vec![
        Inst::Input(0),
        Inst::Op(Math::Exp(z()), vec![0]),
        Inst::Op(Math::Log(z()), vec![0]),
        Inst::Op(Math::Log1p(z()), vec![0]),
        Inst::Op(Math::Tanh(z()), vec![0]),
    ];
    let k = kernel(1, insts, vec![1, 2, 3, 4], 0);
    let mut xs = vec![
        0.0,
        -0.0,
        1.0,
        -1.0,
        1e-300,
        5e-324,
        -1e-300,
        709.7,
        709.8,
        710.0,
        -745.0,
        -745.2,
        -746.0,
        1e308,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
    ];
    xs.extend([
        0.5,
        1.5,
        std::f64::consts::SQRT_2,
        std::f64::consts::FRAC_1_SQRT_2,
        1e-17,
        -1e-17,
        -0.9999999,
        -1.0 - 1e-15,
        88.7,
        -87.3,
        -103.9,
        1e38,
        1e-40,
    ]);
    let mut rng = Rng::new(11);
    for _ in 0..3000 {
        let e = 40.0 * rng.uniform() - 20.0;
        let sign = if rng.uniform() < 0.3 { -1.0 } else { 1.0 };
        xs.push(sign * 10f64.powf(e) * (1.0 + rng.uniform()));
    }
    for prec in [Float::F64, Float::F32] {
        let c = flowc::jit::compile(&k, prec).unwrap();
        if x64::host_supported() {
            assert_eq!(c.backend(), "avx512", "{:?}", x64::emit(&k, prec).err());
        }
        let got: Vec<f64> = if prec == Float::F64 {
            let mut out = vec![0.0; xs.len() * 4];
            c.run_f64(&xs, &[], &mut out).unwrap();
            out
        } else {
            let x32: Vec<f32> = xs.iter().map(|v| *v as f32).collect();
            let mut out = vec![0.0f32; xs.len() * 4];
            c.run_f32(&x32, &[], &mut out).unwrap();
            out.iter().map(|v| *v as f64).collect()
        };
        for (i, x) in xs.iter().enumerate() {
            let (x, ulp) = if prec == Float::F64 { (*x, 2.0 * f64::EPSILON) } else { ((*x as f32) as f64, 4.0 * f32::EPSILON as f64) };
            let want = [x.exp(), x.ln(), x.ln_1p(), x.tanh()];
            let want = if prec == Float::F64 { want } else { want.map(|w| (w as f32) as f64) };
            for o in 0..4 {
                let (g, w) = (got[i * 4 + o], want[o]);
                // below the normal range ulps are absolute: the smallest normal's
                let tiny = if prec == Float::F64 { f64::MIN_POSITIVE } else { f32::MIN_POSITIVE as f64 };
                let ok = if w.is_finite() {
                    (g - w).abs() <= ulp * w.abs().max(tiny / f64::EPSILON * ulp)
                } else {
                    g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan())
                };
                assert!(ok, "{prec:?} {} of {x:e}: {g:e} vs {w:e}", ["exp", "log", "log1p", "tanh"][o]);
            }
        }
    }
}
