//! The inline math (codegen::vmath) in every type it takes — f64x2 and f32x4 vectors, f64
//! and f32 scalars — against the high-precision reference: special values per function and
//! type, and the ULP table of `flowc::ulp`.

mod common;

use cranelift_codegen::ir::{types, Type};
use flowc::codegen::clif::{Float, Options};
use flowc::codegen::vmath;
use flowc::ir::{hp, parse_expr, Math};
use flowc::lower::{Body, Inst, Kernel, Kind};
use flowc::ulp::{self, Harness, MathFn};

const TYPES: [Type; 4] = [types::F64X2, types::F32X4, types::F64, types::F32];

/// `f` at each of `xs` in type `ty`, widened to f64 (inputs rounded to f32 first in single
/// precision).
fn run(f: MathFn, ty: Type, xs: &[f64]) -> Vec<f64> {
    let h = Harness::new(f, ty).unwrap();
    if ty.lane_type() == types::F32 {
        let x32: Vec<f32> = xs.iter().map(|x| *x as f32).collect();
        h.run_f32(&x32).into_iter().map(|y| y as f64).collect()
    } else {
        h.run_f64(xs)
    }
}

/// Same value: equal bits (so ±0 differ), any NaN for NaN.
fn same(got: f64, want: f64) -> bool {
    got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan())
}

const INF: f64 = f64::INFINITY;
const NAN: f64 = f64::NAN;

/// (function, [(input, exact result)]) for the values every type must get exactly.
type Cases = Vec<(&'static str, MathFn, Vec<(f64, f64)>)>;

fn special_values() -> Cases {
    let odd_inf = |big: f64| vec![(0.0, 0.0), (-0.0, -0.0), (INF, big), (-INF, -big), (NAN, NAN)];
    vec![
        (
            "exp",
            vmath::exp as MathFn,
            vec![(0.0, 1.0), (-0.0, 1.0), (INF, INF), (-INF, 0.0), (NAN, NAN), (1e6, INF), (-1e6, 0.0), (f64::MAX, INF), (-f64::MAX, 0.0)],
        ),
        ("log", vmath::log, vec![(0.0, -INF), (-0.0, -INF), (1.0, 0.0), (INF, INF), (-INF, NAN), (-1.0, NAN), (NAN, NAN), (-1e-310, NAN)]),
        (
            "expm1",
            vmath::expm1,
            vec![(0.0, 0.0), (-0.0, -0.0), (INF, INF), (-INF, -1.0), (NAN, NAN), (1e6, INF), (-1e6, -1.0), (f64::MAX, INF)],
        ),
        ("log1p", vmath::log1p, vec![(0.0, 0.0), (-0.0, -0.0), (INF, INF), (-INF, NAN), (-1.0, -INF), (-2.0, NAN), (NAN, NAN)]),
        ("sinh", vmath::sinh, [odd_inf(INF), vec![(1e6, INF), (-1e6, -INF), (f64::MAX, INF)]].concat()),
        ("cosh", vmath::cosh, vec![(0.0, 1.0), (-0.0, 1.0), (INF, INF), (-INF, INF), (NAN, NAN), (1e6, INF), (-f64::MAX, INF)]),
        ("tanh", vmath::tanh, [odd_inf(1.0), vec![(1e6, 1.0), (-f64::MAX, -1.0), (40.0, 1.0)]].concat()),
        ("asinh", vmath::asinh, [odd_inf(INF)].concat()),
        (
            "atanh",
            vmath::atanh,
            vec![(0.0, 0.0), (-0.0, -0.0), (1.0, INF), (-1.0, -INF), (2.0, NAN), (-2.0, NAN), (INF, NAN), (-INF, NAN), (NAN, NAN)],
        ),
        ("sigmoid", vmath::sigmoid, vec![(0.0, 0.5), (-0.0, 0.5), (INF, 1.0), (-INF, 0.0), (NAN, NAN), (-1e6, 0.0), (1e6, 1.0)]),
        ("softplus", vmath::softplus, vec![(INF, INF), (-INF, 0.0), (NAN, NAN), (-1e6, 0.0), (1e6, 1e6), (f64::MAX, f64::MAX)]),
        ("logcosh", vmath::logcosh, vec![(0.0, 0.0), (-0.0, 0.0), (INF, INF), (-INF, INF), (NAN, NAN)]),
        (
            "logit",
            vmath::logit,
            vec![(0.0, -INF), (-0.0, -INF), (1.0, INF), (0.5, 0.0), (-1.0, NAN), (2.0, NAN), (INF, NAN), (-INF, NAN), (NAN, NAN)],
        ),
        ("sign", vmath::sign, vec![(0.0, 0.0), (-0.0, -0.0), (INF, 1.0), (-INF, -1.0), (NAN, NAN), (5e-324, 1.0), (-3.0, -1.0)]),
        ("acosh", vmath::acosh, vec![(1.0, 0.0), (INF, INF), (0.5, NAN), (0.0, NAN), (-0.0, NAN), (-1.0, NAN), (-INF, NAN), (NAN, NAN)]),
        ("cbrt", vmath::cbrt, [odd_inf(INF), vec![(8.0, 2.0), (-27.0, -3.0), (0.125, 0.5), (1.0, 1.0)]].concat()),
        ("atan", vmath::atan, [odd_inf(std::f64::consts::FRAC_PI_2), vec![(1e300, std::f64::consts::FRAC_PI_2)]].concat()),
        // beyond 2^30 (2^17 in f32) the reduction is not accurate: NaN by design
        ("sin", vmath::sin, vec![(0.0, 0.0), (-0.0, -0.0), (INF, NAN), (-INF, NAN), (NAN, NAN), (1e10, NAN), (-f64::MAX, NAN)]),
        ("cos", vmath::cos, vec![(0.0, 1.0), (-0.0, 1.0), (INF, NAN), (-INF, NAN), (NAN, NAN), (1e10, NAN)]),
        ("tan", vmath::tan, vec![(0.0, 0.0), (-0.0, -0.0), (INF, NAN), (-INF, NAN), (NAN, NAN), (-1e10, NAN)]),
    ]
}

#[test]
fn special_values_in_every_type() {
    let mut bad = Vec::new();
    for (name, f, cases) in special_values() {
        for ty in TYPES {
            // inputs that are no f32 (subnormal f64) are left out in single precision
            let single = ty.lane_type() == types::F32;
            let cases: Vec<(f64, f64)> = cases.iter().copied().filter(|(x, _)| !single || *x == 0.0 || *x as f32 != 0.0).collect();
            let xs: Vec<f64> = cases.iter().map(|c| c.0).collect();
            let got = run(f, ty, &xs);
            for ((x, want), g) in cases.iter().zip(&got) {
                // the exact results are f32 values too (1e6 and MAX round, so compare in f32)
                let want = if single { *want as f32 as f64 } else { *want };
                if !same(*g, want) {
                    bad.push(format!("{name} {ty} at {x:e}: {g:e}, want {want:e}"));
                }
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// Functions with f(x) = x to within half an ulp below some size give x back exactly on
/// subnormals, in every type; exp and log reach into the subnormals from both sides.
#[test]
fn subnormals_in_every_type() {
    let identity_near_0: [(&str, MathFn); 6] = [
        ("expm1", vmath::expm1),
        ("log1p", vmath::log1p),
        ("sinh", vmath::sinh),
        ("tanh", vmath::tanh),
        ("asinh", vmath::asinh),
        ("atanh", vmath::atanh),
    ];
    let mut bad = Vec::new();
    for ty in TYPES {
        let single = ty.lane_type() == types::F32;
        let tiny: Vec<f64> = if single {
            [1u32, 3, 1 << 20, 0x007f_ffff].iter().map(|b| f32::from_bits(*b) as f64).collect()
        } else {
            [1u64, 3, 1 << 40, 0x000f_ffff_ffff_ffff].iter().map(|b| f64::from_bits(*b)).collect()
        };
        let xs: Vec<f64> = tiny.iter().flat_map(|x| [*x, -*x]).collect();
        for (name, f) in identity_near_0 {
            for (x, g) in xs.iter().zip(run(f, ty, &xs)) {
                if !same(g, *x) {
                    bad.push(format!("{name} {ty} at {x:e}: {g:e}"));
                }
            }
        }
        // exp with subnormal results, log of subnormal inputs: within an ulp of the reference
        let (exp_in, log_in): (Vec<f64>, Vec<f64>) =
            if single { (vec![-88.0, -95.5, -100.0, -103.0], tiny.clone()) } else { (vec![-710.0, -730.5, -740.0, -744.0], tiny.clone()) };
        let cbrt_in = tiny.iter().flat_map(|x| [*x, -*x]).collect();
        for (name, f, xs) in [("exp", vmath::exp as MathFn, exp_in), ("log", vmath::log, log_in), ("cbrt", vmath::cbrt, cbrt_in)] {
            let e = parse_expr(&format!("({name} x)"));
            for (x, g) in xs.iter().zip(run(f, ty, &xs)) {
                let want = hp::eval(&e, &[("x", *x)]).unwrap();
                let (g, want, u) = if single {
                    let w = want as f32;
                    (g, w as f64, (f32::from_bits(w.abs().to_bits() + 1) - w.abs()) as f64)
                } else {
                    (g, want, f64::from_bits(want.abs().to_bits() + 1) - want.abs())
                };
                if (g - want).abs() > u {
                    bad.push(format!("{name} {ty} at {x:e}: {g:e}, want {want:e}"));
                }
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// Every function of the table is the inline version of its op, and stays small (it is
/// inlined many times): at most 140 CLIF instructions, constants included, in every type.
#[test]
fn inline_functions_and_their_size() {
    let mut text = String::from("function   f64x2 f32x4   f64   f32\n");
    for e in ulp::entries() {
        let expr = parse_expr(e.sexpr);
        let op = expr.as_ref().last().unwrap();
        assert!(vmath::function(op).is_some(), "{} has no inline version", e.name);
        let counts: Vec<usize> = TYPES.iter().map(|ty| ulp::instructions(e.f, *ty)).collect();
        text.push_str(&format!("{:<10} {:>5} {:>5} {:>5} {:>5}\n", e.name, counts[0], counts[1], counts[2], counts[3]));
        assert!(counts.iter().all(|n| *n <= 140), "{text}");
    }
    println!("{text}");
}

/// The ULP table on 20,000 points per function and precision (and the edge groups):
/// every row within its bound.
#[test]
fn ulp_table() {
    let rows = ulp::table(20_000);
    let text = ulp::render(&rows);
    println!("{text}");
    assert_eq!(rows.len(), 2 * ulp::entries().len());
    assert!(rows.iter().all(|r| r.max_ulps <= r.bound && r.points >= 18_000), "{text}");
}

/// The full table on 10^6 points per function and precision (release:
/// `cargo test --release -p flowc --test vmath -- --ignored --nocapture`).
#[test]
#[ignore]
fn ulp_table_on_a_million_points() {
    let start = std::time::Instant::now();
    let rows = ulp::table(1_000_000);
    let text = ulp::render(&rows);
    println!("{text}\n{:.1} s", start.elapsed().as_secs_f64());
    assert!(rows.iter().all(|r| r.max_ulps <= r.bound), "{text}");
}

/// Scalar kernels compiled with `inline_math` use the scalar path (f32 kernels go through
/// f64): within an ulp of the reference.
#[test]
fn kernels_with_inline_math() {
    let kernel = |op: Math| Kernel {
        flow: "t".into(),
        kind: Kind::Forward,
        dim: 1,
        params: vec![],
        body: Body { insts: vec![Inst::Input(0), Inst::Op(op, vec![0])] },
        outputs: vec![1],
    };
    for (op, s) in [(Math::Exp(0.into()), "(exp x)"), (Math::Log1p(0.into()), "(log1p x)")] {
        let xs: Vec<f64> = common::spread(2_000, 16, 160.0).into_iter().map(|v| v.abs()).collect();
        let e = parse_expr(s);
        let c = flowc::jit::compile_with(
            &kernel(op.clone()),
            Float::F64,
            Options { math: flowc::codegen::clif::MathMode::Inline, ..Options::default() },
        )
        .unwrap();
        let mut out = vec![0.0; xs.len()];
        c.run_f64(&xs, &[], &mut out).unwrap();
        for (x, got) in xs.iter().zip(&out) {
            let want = hp::eval(&e, &[("x", *x)]).unwrap();
            assert!((got - want).abs() <= f64::from_bits(want.to_bits() + 1) - want, "{s} at {x}: {got} vs {want}");
        }
        let c = flowc::jit::compile_with(
            &kernel(op),
            Float::F32,
            Options { math: flowc::codegen::clif::MathMode::Inline, ..Options::default() },
        )
        .unwrap();
        let x32: Vec<f32> = xs.iter().map(|x| *x as f32).collect();
        let mut out = vec![0.0f32; xs.len()];
        c.run_f32(&x32, &[], &mut out).unwrap();
        for (x, got) in x32.iter().zip(&out) {
            let want = hp::eval(&e, &[("x", *x as f64)]).unwrap() as f32;
            assert!((got - want).abs() <= f32::from_bits(want.to_bits() + 1) - want, "{s} f32 at {x}: {got} vs {want}");
        }
    }
}
