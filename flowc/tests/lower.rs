//! Kernels agree with the reference interpreter of whole flows, row by row; their text form
//! is snapshot-tested.

use flowc::interp::{self, Params};
use flowc::lower::{self, Kind};

const SRC: &str = "
bijector sas(x; eps: real, delta: positive) = sinh(delta * asinh(x) - eps);
bijector affine(x; shift: real, log_scale: real) = x * exp(log_scale) + shift;
bijector residual(x) = x + 0.5 * tanh(x) where inverse = numeric;
flow f(x: R^3) {
    base normal;
    elementwise(sas(eps = 0.3, delta = 1.5));
    elementwise(affine);
    elementwise(residual);
    elementwise(sas);
}
flow small(x: R^1) { base normal; elementwise(sas(eps = 0.5, delta = 0.7)); elementwise(affine(shift = 1, log_scale = 0.25)); }
";

/// Flows whose gradient kernels are snapshot-tested: free per-coordinate parameters, and a
/// network (dense products, their transposes and weight gradients).
const GRADIENT_SRC: &str = "
bijector sas(x; eps: real, delta: positive) = sinh(delta * asinh(x) - eps);
bijector affine(x; shift: real, log_scale: real) = x * exp(log_scale) + shift;
flow scalar(x: R^1) { base normal; elementwise(sas); elementwise(affine); }
flow net(x: R^2) { base normal; coupling(mask = [1, 0], bijector = affine, net = mlp([3], tanh)); }
";

mod common;

/// A deterministic spread of rows.
fn rows(dim: usize, n: usize) -> Vec<Vec<f64>> {
    common::spread(n * dim, 0x9e3779b97f4a7c15, 8.0).chunks(dim).map(|r| r.to_vec()).collect()
}

/// Layer by layer the kernels compute the interpreter's formulas: equal up to summation order.
fn same(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a - b).abs() <= 4.0 * f64::EPSILON * a.abs().max(b.abs())
}

/// Fused runs compute other (simplified) formulas of the same map: equal to rounding.
fn close(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a - b).abs() <= 1e-11 * (1.0 + a.abs().max(b.abs()))
}

#[test]
fn kernels_match_the_reference_interpreter() {
    let (_, _, d) = flowc::cli::load_str_with("t.flow", SRC, false).unwrap();
    assert!(d.flows.iter().all(|f| f.fused.is_empty()));
    compare(&d, same);
}

#[test]
fn fused_kernels_match_the_layer_by_layer_interpreter() {
    let (_, _, d) = flowc::cli::load_str("t.flow", SRC).unwrap();
    // sas∘affine fuses; the numeric-inverse layer stays alone
    let runs = |n: &str| d.flow(n).unwrap().fused.iter().map(|r| (r.start, r.end)).collect::<Vec<_>>();
    assert_eq!(runs("f"), vec![(0, 2)]);
    assert_eq!(runs("small"), vec![(0, 2)]);
    compare(&d, close);
}

fn compare(d: &flowc::derive::Derivation, same: fn(f64, f64) -> bool) {
    let p = lower::lower(d).unwrap();
    for f in &d.flows {
        let mut params = Params::defaults(d, f);
        // non-trivial parameter values, in slot order
        let slots = lower::param_slots(f);
        let mut flat = vec![0.0; slots.iter().map(|s| s.len).sum()];
        for (j, s) in slots.iter().enumerate() {
            let v = if s.name.ends_with("delta") { 0.8 + 0.1 * j as f64 } else { 0.2 - 0.15 * j as f64 };
            params.set(&s.name, v).unwrap();
            flat[s.offset..s.offset + s.len].iter_mut().for_each(|x| *x = v);
        }
        for row in rows(f.dim, 50) {
            let fk = p.kernel(&f.name, Kind::Forward).unwrap();
            let mut x = vec![0.0; f.dim];
            let ld = interp::forward(d, f, &params, &row, &mut x);
            let out = lower::run(fk, &row, &flat);
            for i in 0..f.dim {
                assert!(same(out[i], x[i]), "{} forward {row:?}: {} vs {}", f.name, out[i], x[i]);
            }
            assert!(same(out[f.dim], ld));

            let ik = p.kernel(&f.name, Kind::Inverse).unwrap();
            let mut z = vec![0.0; f.dim];
            let ld = interp::inverse(d, f, &params, &x, &mut z);
            let out = lower::run(ik, &x, &flat);
            for i in 0..f.dim {
                assert!(same(out[i], z[i]), "{} inverse: {} vs {}", f.name, out[i], z[i]);
                assert!((z[i] - row[i]).abs() <= 1e-9 * (1.0 + row[i].abs()), "round trip {} vs {}", z[i], row[i]);
            }
            // the density direction may compute log|f'| from y (`log_det_y`), the interpreter
            // from the recovered x: another formula of the same value, equal to rounding
            let ld_y = |a: f64, b: f64| same(a, b) || close(a, b);
            assert!(ld_y(out[f.dim], ld), "{} inverse log-det: {} vs {ld}", f.name, out[f.dim]);

            let lk = p.kernel(&f.name, Kind::LogProb).unwrap();
            let lp = lower::run(lk, &x, &flat)[0];
            assert!(ld_y(lp, interp::log_prob(d, f, &params, &x)), "{} log_prob", f.name);
        }
    }
}

#[test]
fn common_subexpressions_are_shared() {
    let (_, _, d) = flowc::cli::load_str("t.flow", SRC).unwrap();
    let p = lower::lower(&d).unwrap();
    for k in &p.kernels {
        let mut seen = std::collections::HashSet::new();
        for inst in &k.body.insts {
            if let flowc::lower::Inst::Op(..) | flowc::lower::Inst::Const(_) | flowc::lower::Inst::Param(_) = inst {
                assert!(seen.insert(format!("{inst:?}")), "{}.{}: {inst:?} emitted twice", k.flow, k.kind.name());
            }
        }
    }
}

#[test]
fn kernel_text() {
    let (_, _, d) = flowc::cli::load_str("t.flow", SRC).unwrap();
    let p = lower::lower(&d).unwrap();
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../../snapshots/kernel");
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| {
        for kind in [Kind::Forward, Kind::Inverse, Kind::LogProb] {
            insta::assert_snapshot!(format!("small_{}", kind.name()), p.kernel("small", kind).unwrap().to_string());
        }
    });
    // reverse mode over log_prob kernels: the adjoints, then the parameter gradients
    let (_, _, d) = flowc::cli::load_str("g.flow", GRADIENT_SRC).unwrap();
    let p = lower::lower(&d).unwrap();
    settings.bind(|| {
        for name in ["scalar", "net"] {
            let g = flowc::grad::gradient(p.kernel(name, Kind::LogProb).unwrap()).unwrap();
            insta::assert_snapshot!(format!("{name}_gradient"), g.to_string());
        }
    });
}
