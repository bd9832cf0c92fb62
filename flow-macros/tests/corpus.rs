//! The generated Rust of every flow and bijector of the snapshot corpus computes what the
//! kernel interpreter (`flowc::lower::run`, `run_f32`) computes, at ordinary and extreme
//! points, in f64 and f32. It computes the same formulas in the same order, so the values
//! agree bit for bit today; the bound allows a few ulps.

use flowc::derive::stability::sample_points;
use flowc::lower::{self, Kernel, Kind, Program};
use runtime::{Bijector, Flow, Kind as ParamKind, Slot};

flow_macros::flow_file!("../snapshots/corpus.flow");

mod extra {
    flow_macros::flow_file!("tests/extra.flow");
}

fn program() -> (flowc::derive::Derivation, Program) {
    program_of(concat!(env!("CARGO_MANIFEST_DIR"), "/../snapshots/corpus.flow"))
}

fn program_of(path: &str) -> (flowc::derive::Derivation, Program) {
    let src = std::fs::read_to_string(path).unwrap();
    let (_, _, d) = flowc::cli::load_str(path, &src).unwrap_or_else(|f| panic!("{}", f.message));
    let p = lower::lower(&d).unwrap();
    (d, p)
}

/// Within 4 units of `ulp` (relative) or `tiny` (absolute), or both NaN, or the same bits.
fn close(a: f64, b: f64, ulp: f64, tiny: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()) || (a - b).abs() <= 4.0 * ulp * a.abs().max(b.abs()) + tiny
}

fn close64(a: f64, b: f64) -> bool {
    close(a, b, f64::EPSILON, 1e-300)
}

fn close32(a: f32, b: f32) -> bool {
    close(a as f64, b as f64, f32::EPSILON as f64, 1e-37)
}

/// Non-trivial parameter values of each kind.
fn params(slots: &[Slot]) -> Vec<f64> {
    let mut p = vec![0.0; slots.iter().map(|s| s.len).sum()];
    for (j, s) in slots.iter().enumerate() {
        for i in 0..s.len {
            p[s.offset + i] = match s.kind {
                ParamKind::Real => 0.3 - 0.17 * (j + i) as f64,
                ParamKind::Positive => 0.7 + 0.2 * ((j + i) % 4) as f64,
                ParamKind::Unit => 0.3 + 0.1 * ((j + i) % 3) as f64,
            };
        }
    }
    p
}

const EXTREME: [f64; 14] = [0.0, 1e-300, -1e-30, 0.5, -2.0, 7.0, -40.0, 600.0, -710.0, 1e8, -1e15, 1e154, 1e300, -1e300];

/// Rows of `dim` values: a deterministic spread, then rows of extreme values.
fn rows(dim: usize) -> Vec<f64> {
    let mut s = 0x2545f4914f6cdd1du64;
    let mut out = Vec::new();
    for _ in 0..29 * dim {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        out.push(((s >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 12.0);
    }
    for (r, e) in EXTREME.iter().enumerate() {
        for i in 0..dim {
            out.push(if (r + i) % 2 == 0 { *e } else { -e / 3.0 });
        }
    }
    out
}

fn interp(k: &Kernel, rows: &[f64], p: &[f64]) -> Vec<f64> {
    rows.chunks(k.dim).flat_map(|r| lower::run(k, r, p)).collect()
}

fn interp32(k: &Kernel, rows: &[f32], p: &[f32]) -> Vec<f32> {
    rows.chunks(k.dim).flat_map(|r| lower::run_f32(k, r, p)).collect()
}

/// Every kernel of flow `name` (f64: `F`, f32: `G`) against the interpreter, in batch
/// (blocks of 8 rows and single-row tails alike).
fn check_flow<F: Flow<f64>, G: Flow<f32>>(p: &Program, name: &str) {
    let flat = params(F::PARAMS);
    let f = F::from_flat(&flat).unwrap();
    let flat32: Vec<f32> = flat.iter().map(|v| *v as f32).collect();
    let g = G::from_flat(&flat32).unwrap();
    let dim = F::DIM;
    let mut zs = rows(dim);
    if p.kernel(name, Kind::Forward).unwrap().params.iter().any(|s| s.name.ends_with(".bias") && name == "calibrated") {
        // a simplex flow: the rows' softmax (the extreme rows give coordinates down to 0)
        for r in zs.chunks_mut(dim) {
            let top = r.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = r.iter().map(|v| (v - top).exp()).collect();
            let s: f64 = e.iter().sum();
            r.iter_mut().zip(&e).for_each(|(v, x)| *v = x / s);
        }
    }
    assert!(!(zs.len() / dim).is_multiple_of(8), "blocks and tails are both exercised");
    let fk = p.kernel(name, Kind::Forward).unwrap();
    // data points: base rows pushed forward, and the raw rows too
    let mut xs: Vec<f64> = interp(fk, &zs, &flat).chunks(dim + 1).flat_map(|r| r[..dim].to_vec()).collect();
    xs.extend(&zs);
    for (kind, input) in [(Kind::Forward, &zs), (Kind::Inverse, &xs), (Kind::LogProb, &xs)] {
        let k = p.kernel(name, kind).unwrap();
        let o = k.outputs.len();
        let want = interp(k, input, &flat);
        let mut got = vec![0.0; want.len()];
        match kind {
            Kind::Forward => f.forward_rows(input, &mut got),
            Kind::Inverse => f.inverse_rows(input, &mut got),
            Kind::LogProb | Kind::Gradient | Kind::Ratio => f.log_prob_rows(input, &mut got),
        }
        for (j, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!(close64(*a, *b), "{name}.{} f64 row {:?} out {}: {a:e} vs {b:e}", kind.name(), &input[j / o * dim..][..dim], j % o);
        }
        let in32: Vec<f32> = input.iter().map(|v| *v as f32).collect();
        let want = interp32(k, &in32, &flat32);
        let mut got = vec![0.0f32; want.len()];
        match kind {
            Kind::Forward => g.forward_rows(&in32, &mut got),
            Kind::Inverse => g.inverse_rows(&in32, &mut got),
            Kind::LogProb | Kind::Gradient | Kind::Ratio => g.log_prob_rows(&in32, &mut got),
        }
        for (j, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!(close32(*a, *b), "{name}.{} f32 row {:?} out {}: {a:e} vs {b:e}", kind.name(), &in32[j / o * dim..][..dim], j % o);
        }
    }
}

#[test]
fn flows_agree_with_the_interpreter() {
    let (d, p) = program();
    assert_eq!(d.flows.len(), 6, "every corpus flow is checked here");
    check_flow::<Sas2<f64>, Sas2<f32>>(&p, "sas2");
    check_flow::<SasChain<f64>, SasChain<f32>>(&p, "sas_chain");
    check_flow::<Coupled<f64>, Coupled<f32>>(&p, "coupled");
    check_flow::<Shapes<f64>, Shapes<f32>>(&p, "shapes");
    // on the sphere (the kernels project the raw rows onto it)
    check_flow::<Directions<f64>, Directions<f32>>(&p, "directions");
    // on the simplex (rows made probability vectors)
    check_flow::<Calibrated<f64>, Calibrated<f32>>(&p, "calibrated");
}

#[test]
fn more_flows_agree_with_the_interpreter() {
    let (d, p) = program_of(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/extra.flow"));
    assert_eq!(d.flows.len(), 2);
    check_flow::<extra::Numeric<f64>, extra::Numeric<f32>>(&p, "numeric");
    check_flow::<extra::Constant<f64>, extra::Constant<f32>>(&p, "constant");
}

/// A bijector's `forward`, `log_det` and `inverse` against its kernels.
fn check_bijector<B: Bijector<f64>, C: Bijector<f32>>(d: &flowc::derive::Derivation, checked: &mut Vec<String>) {
    let name = B::NAME;
    let [fk, ik] = lower::lower_bijector(d, name).unwrap();
    let flat = params(B::PARAMS);
    let b = B::from_params(&flat).unwrap();
    let flat32: Vec<f32> = flat.iter().map(|v| *v as f32).collect();
    let c = C::from_params(&flat32).unwrap();
    let (ord, ext) = sample_points(d.bijector(name).unwrap().domain);
    for x in ord.into_iter().chain(ext) {
        let f = lower::run(&fk, &[x], &flat);
        assert!(close64(b.forward(x), f[0]), "{name}.forward({x:e}): {} vs {}", b.forward(x), f[0]);
        assert!(close64(b.log_det(x), f[1]), "{name}.log_det({x:e}): {} vs {}", b.log_det(x), f[1]);
        let y = f[0];
        let i = lower::run(&ik, &[y], &flat);
        assert!(close64(b.inverse(y), i[0]), "{name}.inverse({y:e}): {} vs {}", b.inverse(y), i[0]);
        let x32 = x as f32;
        let f = lower::run_f32(&fk, &[x32], &flat32);
        assert!(close32(c.forward(x32), f[0]), "{name}.forward f32 ({x32:e}): {} vs {}", c.forward(x32), f[0]);
        assert!(close32(c.log_det(x32), f[1]), "{name}.log_det f32 ({x32:e}): {} vs {}", c.log_det(x32), f[1]);
        let i = lower::run_f32(&ik, &[f[0]], &flat32);
        assert!(close32(c.inverse(f[0]), i[0]), "{name}.inverse f32 ({:e}): {} vs {}", f[0], c.inverse(f[0]), i[0]);
    }
    checked.push(name.to_string());
}

#[test]
fn bijectors_agree_with_the_interpreter() {
    let (d, _) = program();
    let mut checked = Vec::new();
    macro_rules! check {
        ($($t:ident),* ; $($u:ident),*) => {
            $(check_bijector::<$t<f64>, $t<f32>>(&d, &mut checked);)*
            $(check_bijector::<$u, $u>(&d, &mut checked);)*
        };
    }
    check!(Affine, SinhArcsinh, ScaledTanh, BoxCox, Kumaraswamy, ScaledAsinh, AtanhTanh, LogisticCdf, Power, AffineSasAffine, Shifted;
           SigmoidMap, Logistic, LogitMap, SoftplusMap, NaiveSoftplus, SoftplusInverse, TanhMap, CauchyQuantile, Softsign, ExpMap,
           LogMap, SqrtMap, ExpDiff, GumbelCdf, Expm1Map, Log1pMap, CbrtMap, AtanMap, Residual, Cubic);
    // built-in splines have no type of their own
    let mut all: Vec<String> = d.bijectors.iter().filter(|b| b.spline.is_none()).map(|b| b.name.clone()).collect();
    all.sort();
    checked.sort();
    assert_eq!(checked, all, "every corpus bijector is checked");
}

/// Single-row methods are the batch kernels at one lane: the same values.
#[test]
fn single_rows_equal_batch_rows() {
    let f = Sas2::new([0.1, -0.2, 0.3, 0.05, -0.4, 0.2, 0.8, 1.3]).unwrap();
    let xs = rows(2);
    let mut lp = vec![0.0; xs.len() / 2];
    f.log_prob_batch(&xs, &mut lp);
    for (r, x) in xs.chunks(2).enumerate() {
        let one = f.log_prob(&[x[0], x[1]]);
        assert!(one.to_bits() == lp[r].to_bits() || (one.is_nan() && lp[r].is_nan()), "row {r}");
    }
    let (z, ld) = f.inverse(&[0.3, -4.0]);
    let (x, ld2) = f.forward(&z);
    assert!((x[0] - 0.3).abs() < 1e-12 && (x[1] + 4.0).abs() < 1e-12 && (ld - ld2).abs() < 1e-12);
    let mut rng = runtime::Rng::new(1);
    assert!(f.sample(&mut rng).iter().all(|v| v.is_finite()));
    // on threads: the same values
    let xs = f.sample_rows(&mut rng, 10_000);
    let (mut one, mut two) = (vec![0.0; 10_000], vec![0.0; 10_000]);
    f.log_prob_batch(&xs, &mut one);
    f.log_prob_rows_par(&xs, &mut two, 2).unwrap();
    assert_eq!(one, two);
    assert!(f.log_prob_rows_par(&xs[1..], &mut two, 2).is_err(), "not whole rows");
}
