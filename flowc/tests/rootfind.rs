//! Numeric inverses (`Inst::RootFind`) compiled by the JIT. With libm the compiled kernels
//! equal the interpreter bit for bit, in f64 and f32; with the vector math (the default) they
//! stay within a few ulps of it. Every row count up to 9 (partial vectors) and a larger
//! batch; ordinary, extreme (±1e300, ±1e-300, 0) and non-finite inputs (NaN out, no hang);
//! bounded domains (outside the range: NaN); the tiled path of kernels with dense layers; and
//! forward∘inverse = identity.

mod common;

use flowc::codegen::clif::{Float, MathMode, Options};
use flowc::ir::{Interval, Math};
use flowc::lower::{self, Body, Inst, Kernel, Kind, SubBody};

const LIBM: Options = Options { math: MathMode::Libm, backend: flowc::codegen::clif::Backend::Auto };
const VECTOR: Options = Options { math: MathMode::Auto, backend: flowc::codegen::clif::Backend::Auto };

const SRC: &str = "
bijector residual(x) = x + 0.5 * tanh(x) where inverse = numeric;
bijector pres(x; a: unit, s: real) = x + a * tanh(x - s) where inverse = numeric;
bijector dec(x) = -x - sinh(0.1 * x) where inverse = numeric;
bijector affine(x; shift: real, log_scale: real) = x * exp(log_scale) + shift;
flow t(x: R^3) {
    base normal;
    elementwise(residual);
    elementwise(pres);
    elementwise(affine);
    elementwise(dec);
    elementwise(residual);
}
flow tiled(x: R^3) {
    base normal;
    coupling(mask = [1, 0, 1], bijector = affine, net = mlp([6], tanh));
    elementwise(residual);
    elementwise(pres);
}
";

/// Extreme and non-finite values, then ordinary ones.
const SPECIAL: [f64; 14] = [0.0, 1e-300, -1e-300, 1e300, -1e300, f64::NAN, 0.5, -3.0, 40.0, -7e5, f64::INFINITY, -0.0, 1e-30, -2.5];

/// `n` rows of `dim` values: the special values first (cycled through the coordinates, so
/// rows mix them), then a deterministic spread over [-6, 6).
fn rows(dim: usize, n: usize) -> Vec<f64> {
    let spread = common::spread(n * dim, 0x2545f4914f6cdd1d, 12.0);
    (0..n * dim).map(|i| if i < 3 * SPECIAL.len() { SPECIAL[(i * 5) % SPECIAL.len()] } else { spread[i] }).collect()
}

/// Row counts: every partial vector of 2 (f64) and 4 (f32) lanes, and a larger batch.
const COUNTS: [usize; 10] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 203];

fn params_of(k: &Kernel) -> Vec<f64> {
    (0..k.param_len()).map(|i| [0.3, -0.4, 1.25][i % 3]).collect()
}

/// Distance in units in the last place (0 for two NaNs, infinite for NaN against a number).
fn ulps64(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        return if a.is_nan() && b.is_nan() { 0.0 } else { f64::INFINITY };
    }
    let key = |v: f64| if v.to_bits() >> 63 == 1 { -((v.to_bits() & !(1 << 63)) as i128) } else { v.to_bits() as i128 };
    (key(a) - key(b)).unsigned_abs() as f64
}

fn ulps32(a: f32, b: f32) -> f64 {
    if a.is_nan() || b.is_nan() {
        return if a.is_nan() && b.is_nan() { 0.0 } else { f64::INFINITY };
    }
    let key = |v: f32| if v.to_bits() >> 31 == 1 { -((v.to_bits() & !(1 << 31)) as i64) } else { v.to_bits() as i64 };
    (key(a) - key(b)).unsigned_abs() as f64
}

/// Runs `k` compiled with `opts` on the first `n` of `input`'s rows in f64 and f32 and
/// returns the outputs, checking that nothing is written past them.
fn jit_both(k: &Kernel, opts: Options, input: &[f64], n: usize, params: &[f64]) -> (Vec<f64>, Vec<f32>) {
    let c = flowc::jit::compile_with(k, Float::F64, opts).unwrap();
    let c32 = flowc::jit::compile_with(k, Float::F32, opts).unwrap();
    let m = n * c.outputs;
    let mut out = vec![f64::MAX; m + 8];
    c.run_f64(&input[..n * k.dim], params, &mut out[..m]).unwrap();
    assert!(out[m..].iter().all(|v| *v == f64::MAX), "f64, {n} rows: wrote past the output");
    let in32: Vec<f32> = input[..n * k.dim].iter().map(|v| *v as f32).collect();
    let p32: Vec<f32> = params.iter().map(|v| *v as f32).collect();
    let mut out32 = vec![f32::MAX; m + 8];
    c32.run_f32(&in32, &p32, &mut out32[..m]).unwrap();
    assert!(out32[m..].iter().all(|v| *v == f32::MAX), "f32, {n} rows: wrote past the output");
    out.truncate(m);
    out32.truncate(m);
    (out, out32)
}

/// The interpreter's outputs on the first `n` rows, f64 and f32.
fn interpreted(k: &Kernel, input: &[f64], n: usize, params: &[f64]) -> (Vec<f64>, Vec<f32>) {
    let p32: Vec<f32> = params.iter().map(|v| *v as f32).collect();
    let mut w = Vec::new();
    let mut w32 = Vec::new();
    for r in input[..n * k.dim].chunks(k.dim) {
        w.extend(lower::run(k, r, params));
        let r32: Vec<f32> = r.iter().map(|v| *v as f32).collect();
        w32.extend(lower::run_f32(k, &r32, &p32));
    }
    (w, w32)
}

/// The distance of `got` from `want` in ulps of max(|want|, |scale|): a result near 0 that
/// is the difference of larger terms (an inverse landing near a zero crossing) is measured
/// against its input's magnitude. 0 for two NaNs or equal values, infinite for a NaN against
/// a number.
fn err64(got: f64, want: f64, scale: f64) -> f64 {
    if got.is_nan() || want.is_nan() || got == want {
        return if got.is_nan() == want.is_nan() { 0.0 } else { f64::INFINITY };
    }
    let m = want.abs().max(scale.abs());
    (got - want).abs() / (f64::from_bits(m.to_bits() + 1) - m)
}

fn err32(got: f32, want: f32, scale: f32) -> f64 {
    if got.is_nan() || want.is_nan() || got == want {
        return if got.is_nan() == want.is_nan() { 0.0 } else { f64::INFINITY };
    }
    let m = want.abs().max(scale.abs());
    ((got - want).abs() / (f32::from_bits(m.to_bits() + 1) - m)) as f64
}

/// Compiled with libm: the interpreter's values bit for bit. With the vector math: within
/// `tol.0` ulps (f64) and `tol.1` ulps (f32) of them ([`err64`]: value i measured against
/// the larger of itself and `scale(i, want)`, `want` the interpreter's f64 values). Returns
/// the largest errors seen.
fn compare(k: &Kernel, input: &[f64], params: &[f64], scale: &dyn Fn(usize, &[f64]) -> f64, tol: (f64, f64)) -> (f64, f64) {
    let (mut worst, mut worst32) = (0.0f64, 0.0f64);
    for n in COUNTS {
        let (want, want32) = interpreted(k, input, n, params);
        let (got, got32) = jit_both(k, LIBM, input, n, params);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(ulps64(*g, *w) == 0.0, "{}.{} libm f64, {n} rows, value {i}: {g:e} vs {w:e}", k.flow, k.kind.name());
        }
        for (i, (g, w)) in got32.iter().zip(&want32).enumerate() {
            assert!(ulps32(*g, *w) == 0.0, "{}.{} libm f32, {n} rows, value {i}: {g:e} vs {w:e}", k.flow, k.kind.name());
        }
        let (got, got32) = jit_both(k, VECTOR, input, n, params);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let e = err64(*g, *w, scale(i, &want));
            worst = worst.max(e);
            assert!(e <= tol.0, "{}.{} vector f64, {n} rows, value {i}: {g:e} vs {w:e} ({e} ulps)", k.flow, k.kind.name());
        }
        for (i, (g, w)) in got32.iter().zip(&want32).enumerate() {
            let e = err32(*g, *w, scale(i, &want) as f32);
            worst32 = worst32.max(e);
            assert!(e <= tol.1, "{}.{} vector f32, {n} rows, value {i}: {g:e} vs {w:e} ({e} ulps)", k.flow, k.kind.name());
        }
    }
    (worst, worst32)
}

/// The data points of a flow: base rows (special values included) pushed through the
/// forward kernel, then the special values themselves as data.
fn data_rows(p: &lower::Program, flow: &str, dim: usize, n: usize, params: &[f64]) -> Vec<f64> {
    let fk = p.kernel(flow, Kind::Forward).unwrap();
    let mut x: Vec<f64> = rows(dim, n).chunks(dim).flat_map(|r| lower::run(fk, r, params)[..dim].to_vec()).collect();
    // the extremes as data points too (the forward map would move them)
    let sp = rows(dim, 9);
    x[dim * 4..dim * 4 + sp.len()].copy_from_slice(&sp);
    x
}

#[test]
fn numeric_inverses_compile_and_agree_with_the_interpreter() {
    let (_, _, d) = flowc::cli::load_str("t.flow", SRC).unwrap();
    let p = lower::lower(&d).unwrap();
    for kind in [Kind::Inverse, Kind::LogProb] {
        let k = p.kernel("t", kind).unwrap();
        assert!(k.body.insts.iter().filter(|i| matches!(i, Inst::RootFind { .. })).count() >= 9);
        let params = params_of(k);
        let x = data_rows(&p, "t", k.dim, 203, &params);
        // output j < dim measured against input coordinate j
        let outs = k.outputs.len();
        let by_input = |i: usize, _: &[f64]| if i % outs < k.dim { x[(i / outs) * k.dim + i % outs] } else { 0.0 };
        let (e, e32) = compare(k, &x, &params, &by_input, (4.0, 4.0));
        eprintln!("t.{}: vector math within {e} ulps (f64), {e32} (f32)", kind.name());
        // NaN in, NaN out (each coordinate on its own; the log-density of the row)
        let out = flowc::jit::compile(k, Float::F64).unwrap();
        let row = [f64::NAN, 0.5, 1e300];
        let mut o = vec![0.0; out.outputs];
        out.run_f64(&row, &params, &mut o).unwrap();
        assert!(o[0].is_nan() && (kind == Kind::LogProb || !o[1].is_nan()), "{o:?}");
    }
}

/// Kernels with dense layers run in tiles (`clif::tiled`); root-finds there too.
#[test]
fn numeric_inverses_in_tiled_kernels() {
    let (_, _, d) = flowc::cli::load_str("t.flow", SRC).unwrap();
    let p = lower::lower(&d).unwrap();
    for kind in [Kind::Inverse, Kind::LogProb] {
        let k = p.kernel("tiled", kind).unwrap();
        assert!(k.body.insts.iter().any(|i| matches!(i, Inst::Dense { .. })));
        assert!(k.body.insts.iter().any(|i| matches!(i, Inst::RootFind { .. })));
        let params = params_of(k);
        let x = data_rows(&p, "tiled", k.dim, 300, &params);
        let (want, want32) = interpreted(k, &x, 300, &params);
        for opts in [LIBM, VECTOR] {
            let (got, got32) = jit_both(k, opts, &x, 300, &params);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                // the product's summation order differs from the interpreter's: rounding
                let ok = ulps64(*g, *w) <= 64.0 || (g - w).abs() <= 1e-13 * (1.0 + w.abs());
                assert!(ok, "tiled.{} {:?} f64 value {i}: {g:e} vs {w:e}", kind.name(), opts.math);
            }
            for (i, (g, w)) in got32.iter().zip(&want32).enumerate() {
                let ok = ulps32(*g, *w) <= 64.0 || (g - w).abs() <= 1e-5 * (1.0 + w.abs());
                assert!(ok, "tiled.{} {:?} f32 value {i}: {g:e} vs {w:e}", kind.name(), opts.math);
            }
        }
    }
}

/// The JIT's inverse undoes the JIT's forward map: z → x → z within 1e-12 relative (of
/// max(|z|, 1): the maps mix scales, so tiny z are recovered to an absolute 1e-12).
#[test]
fn forward_then_inverse_is_the_identity() {
    let (_, _, d) = flowc::cli::load_str("t.flow", SRC).unwrap();
    let p = lower::lower(&d).unwrap();
    for flow in ["t", "tiled"] {
        let fk = p.kernel(flow, Kind::Forward).unwrap();
        let ik = p.kernel(flow, Kind::Inverse).unwrap();
        let params = params_of(fk);
        let n = 1000;
        let z = common::spread(n * fk.dim, 77, 8.0);
        for opts in [VECTOR, LIBM] {
            let f = flowc::jit::compile_with(fk, Float::F64, opts).unwrap();
            let inv = flowc::jit::compile_with(ik, Float::F64, opts).unwrap();
            let mut fx = vec![0.0; n * f.outputs];
            f.run_f64(&z, &params, &mut fx).unwrap();
            let x: Vec<f64> = fx.chunks(f.outputs).flat_map(|r| r[..fk.dim].to_vec()).collect();
            let mut back = vec![0.0; n * inv.outputs];
            inv.run_f64(&x, &params, &mut back).unwrap();
            for r in 0..n {
                for j in 0..fk.dim {
                    let (z0, z1) = (z[r * fk.dim + j], back[r * inv.outputs + j]);
                    assert!((z1 - z0).abs() <= 1e-12 * z0.abs().max(1.0), "{flow} {:?} row {r}: {z0} -> {z1}", opts.math);
                }
                // both directions report log|det J| of the forward map
                let (ld, ldi) = (fx[r * f.outputs + fk.dim], back[r * inv.outputs + fk.dim]);
                assert!((ld - ldi).abs() <= 1e-12 * (1.0 + ld.abs()), "{flow} {:?} row {r}: log-dets {ld} and {ldi}", opts.math);
            }
        }
    }
}

/// Root-finds on bounded domains (a flow on R^n has none yet, so the kernel is written
/// out): f = x + p·log x on (0, inf) with p a parameter, f = logit x + 2x on (0, 1), the
/// decreasing f = −(x + x³) on (−1, 2) whose range is bounded (outside it: NaN), and a second
/// layer on R.
#[test]
fn numeric_inverses_on_bounded_domains() {
    let z = egg::Id::from(0usize);
    let op = |m: Math, a: Vec<usize>| Inst::Op(m, a);
    let plog = SubBody {
        insts: vec![
            Inst::Input(0),
            Inst::Param(0),
            op(Math::Log(z), vec![0]),
            op(Math::Mul([z, z]), vec![1, 2]),
            op(Math::Add([z, z]), vec![0, 3]),
        ],
        result: 4,
    };
    let dplog = SubBody {
        insts: vec![Inst::Input(0), Inst::Param(0), op(Math::Div([z, z]), vec![1, 0]), Inst::Const(1.0), op(Math::Add([z, z]), vec![3, 2])],
        result: 4,
    };
    let ulogit = SubBody {
        insts: vec![
            Inst::Input(0),
            op(Math::Logit(z), vec![0]),
            Inst::Const(2.0),
            op(Math::Mul([z, z]), vec![2, 0]),
            op(Math::Add([z, z]), vec![1, 3]),
        ],
        result: 4,
    };
    // 1/(x(1-x)) + 2
    let dulogit = SubBody {
        insts: vec![
            Inst::Input(0),
            Inst::Const(1.0),
            op(Math::Sub([z, z]), vec![1, 0]),
            op(Math::Mul([z, z]), vec![0, 2]),
            op(Math::Div([z, z]), vec![1, 3]),
            Inst::Const(2.0),
            op(Math::Add([z, z]), vec![4, 5]),
        ],
        result: 6,
    };
    let cubic = SubBody {
        insts: vec![
            Inst::Input(0),
            op(Math::Mul([z, z]), vec![0, 0]),
            op(Math::Mul([z, z]), vec![1, 0]),
            op(Math::Add([z, z]), vec![0, 2]),
            op(Math::Neg(z), vec![3]),
        ],
        result: 4,
    };
    // -(1 + 3x²)
    let dcubic = SubBody {
        insts: vec![
            Inst::Input(0),
            op(Math::Mul([z, z]), vec![0, 0]),
            Inst::Const(3.0),
            op(Math::Mul([z, z]), vec![2, 1]),
            Inst::Const(1.0),
            op(Math::Add([z, z]), vec![4, 3]),
            op(Math::Neg(z), vec![5]),
        ],
        result: 6,
    };
    let residual = SubBody {
        insts: vec![
            Inst::Input(0),
            op(Math::Tanh(z), vec![0]),
            Inst::Const(0.5),
            op(Math::Mul([z, z]), vec![2, 1]),
            op(Math::Add([z, z]), vec![0, 3]),
        ],
        result: 4,
    };
    let dresidual = SubBody {
        insts: vec![
            Inst::Input(0),
            op(Math::Tanh(z), vec![0]),
            op(Math::Mul([z, z]), vec![1, 1]),
            Inst::Const(1.0),
            op(Math::Sub([z, z]), vec![3, 2]),
            Inst::Const(0.5),
            op(Math::Mul([z, z]), vec![5, 4]),
            op(Math::Add([z, z]), vec![3, 6]),
        ],
        result: 7,
    };
    let rf = |y: usize, f: &SubBody, df: &SubBody, domain: Interval, increasing: bool| Inst::RootFind {
        y,
        f: Box::new(f.clone()),
        df: Box::new(df.clone()),
        domain,
        increasing,
    };
    let insts = vec![
        Inst::Input(0),
        Inst::Input(1),
        Inst::Input(2),
        rf(0, &plog, &dplog, Interval::POSITIVE, true),
        rf(1, &ulogit, &dulogit, Interval::UNIT, true),
        rf(2, &cubic, &dcubic, Interval::open(-1.0, 2.0), false),
        // the next layer, on R: from the recovered point in (0, 1)
        op(Math::Sub([z, z]), vec![4, 3]),
        rf(6, &residual, &dresidual, Interval::REAL, true),
    ];
    let k = Kernel { flow: "bounded".into(), kind: Kind::Inverse, dim: 3, params: vec![], body: Body { insts }, outputs: vec![3, 4, 5, 7] };
    let params = [0.7];
    let k = Kernel {
        params: vec![lower::ParamSlot { name: "layers.0.p".into(), offset: 0, len: 1, shape: vec![1], kind: flowc::ir::ParamKind::Real }],
        ..k
    };
    let mut x = rows(3, 203);
    // inside and outside the bounded range of the cubic, at its ends
    x[3 * 20..3 * 26]
        .copy_from_slice(&[1.0, 0.0, -9.999, 1e-300, 1.0, 1.999, 5e-324, 0.5, -10.0, 2.0, -2.0, 2.0, -1e300, 1e300, -10.5, 3.0, 7.0, 0.0]);
    // the second layer reads x1 − x0, which cancels where they are close: its root is
    // measured against the larger of x0 and x1 (an ulp of them moves its input by that much);
    // where f′ ≫ 1 (x + 0.7·log x near 0) one ulp of f spans several of x, so a root is
    // fixed to a few ulps only, and the vector log moves it by as many
    let operands = |i: usize, want: &[f64]| if i % 4 == 3 { want[i - 3].abs().max(want[i - 2].abs()) } else { 0.0 };
    let (e, e32) = compare(&k, &x, &params, &operands, (32.0, 16.0));
    eprintln!("bounded: vector math within {e} ulps (f64), {e32} (f32)");
    // outside the cubic's range (-10, 2): NaN
    let (got, _) = jit_both(&k, VECTOR, &x, 203, &params);
    for r in 0..203 {
        let y = x[r * 3 + 2];
        let v = got[r * 4 + 2];
        if !(y > -10.0 && y < 2.0) {
            assert!(v.is_nan(), "cubic at {y}: {v}");
        } else {
            assert!(v > -1.0 && v < 2.0, "cubic at {y}: {v}");
        }
    }
}

/// The CLIF of a numeric inverse (with libm, to keep it short): per lane, the host root-find
/// called with the addresses of f and f′, which follow the kernel.
#[test]
fn clif_text() {
    let src = "bijector residual(x) = x + 0.5 * tanh(x) where inverse = numeric;\nflow r(x: R^1) { base normal; elementwise(residual); }";
    let (_, _, d) = flowc::cli::load_str("r.flow", src).unwrap();
    let p = lower::lower(&d).unwrap();
    let c = flowc::jit::compile_with(p.kernel("r", Kind::Inverse).unwrap(), Float::F64, LIBM).unwrap();
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../../snapshots/clif");
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| insta::assert_snapshot!("r_inverse_f64_libm", c.clif));
}
