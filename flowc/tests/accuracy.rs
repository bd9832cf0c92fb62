//! Accuracy at the points the stability pass exists for, against the high-precision
//! reference: 16·ε·(|v| + |u·v'(u)| + 1), v the quantity and u its input.

use egg::Symbol;
use flowc::derive::stability::{measure, point_error, reference_points, Precision, RefPoint, BOUND};
use flowc::derive::{BijectorDerivation, Derivation};
use flowc::ir::hp;

fn derive(src: &str) -> Derivation {
    let (_, _, d) = flowc::cli::load_str("test.flow", src).unwrap_or_else(|f| panic!("{}", f.message));
    d
}

fn env_of(params: &[(&str, f64)]) -> Vec<(Symbol, f64)> {
    params.iter().map(|(n, v)| (Symbol::from(*n), *v)).collect()
}

/// Forward and log-det of `b` at each x are within the bound.
fn assert_forward_and_log_det(b: &BijectorDerivation, xs: &[f64], params: &[(&str, f64)]) {
    let env = vec![env_of(params)];
    let fwd = reference_points(&[&b.forward.naive.expr, &b.forward.chosen.expr], &b.raw_derivative, "x", xs, &env);
    let missing = |pts: &[RefPoint]| xs.iter().filter(|x| !pts.iter().any(|p| p.u == **x)).copied().collect::<Vec<f64>>();
    assert!(missing(&fwd).is_empty(), "{}: no forward reference at {:?}", b.name, missing(&fwd));
    let e = measure(&b.forward.chosen.expr, &fwd, Precision::F64);
    assert!(e.passes(), "{} forward: {e:?}", b.name);
    let slope = flowc::derive::diff::diff(&b.raw_log_det, "x").unwrap();
    let ld = reference_points(&[&b.raw_log_det, &b.log_det.chosen.expr], &slope, "x", xs, &env);
    assert!(
        missing(&ld).is_empty(),
        "{}: no log-det reference at {:?} ({})",
        b.name,
        missing(&ld),
        flowc::ir::expr::to_infix(&b.log_det.chosen.expr)
    );
    let e = measure(&b.log_det.chosen.expr, &ld, Precision::F64);
    assert!(e.passes(), "{} log-det: {e:?}", b.name);
}

/// The inverse recovers each x within the bound (input y = f(x) rounded, reference x).
fn assert_inverse(b: &BijectorDerivation, xs: &[f64], params: &[(&str, f64)]) {
    let env = env_of(params);
    for &x in xs {
        let look = |s: Symbol| if s.as_str() == "x" { x } else { env.iter().find(|(n, _)| *n == s).unwrap().1 };
        let y = hp::eval_with(&b.forward.naive.expr, &look).unwrap();
        let d = hp::eval_with(&b.raw_derivative, &look).unwrap_or_else(|| flowc::ir::eval::eval_with(&b.derivative, &look));
        let p = RefPoint { env: env.clone(), input: Symbol::from("y"), u: y, value: x, slope: 1.0 / d };
        let lookup = |s: Symbol| env.iter().find(|(n, _)| *n == s).map(|(_, v)| *v).unwrap_or(f64::NAN);
        let (got, _) = b.inverse_f64(y, &lookup);
        let (ratio, _) = point_error(got, &p, Precision::F64);
        assert!(ratio <= BOUND, "{} inverse at x = {x}: got {got}, ratio {ratio}", b.name);
    }
}

#[test]
fn softplus_at_minus_40_and_600() {
    let d = derive("bijector sp(x) = softplus(x); bijector naive_sp(x) = log(1 + exp(x));");
    for b in &d.bijectors {
        assert_forward_and_log_det(b, &[-40.0, 600.0, -745.0, 800.0, -1e300], &[]);
        assert_inverse(b, &[-40.0, 600.0, 3.0], &[]);
    }
    // at 1e300 the log-det of the hand-written form has no high-precision reference
    // (e^(-1e300) is below even the reference's exponent range); the built-in one does
    assert_forward_and_log_det(d.bijector("sp").unwrap(), &[1e300], &[]);
    // the naive form of the hand-written one overflows at 800; the chosen form does not
    let b = d.bijector("naive_sp").unwrap();
    assert!(b.forward.rewritten());
    let v = flowc::ir::eval::eval(&b.forward.naive.expr, &[("x", 800.0)]);
    assert!(v.is_infinite(), "naive log(1 + exp(800)) = {v}");
}

#[test]
fn sigmoid_log_det_at_plus_minus_40() {
    let d = derive("bijector s(x) = sigmoid(x); bijector l(x) = 1 / (1 + exp(-x));");
    for b in &d.bijectors {
        assert_forward_and_log_det(b, &[-40.0, 40.0, -800.0, 800.0, 0.0, 1e-300], &[]);
        // the log-det as differentiated is -inf at 800; the chosen one is finite and right
        let naive = flowc::ir::eval::eval(&b.raw_log_det, &[("x", 800.0)]);
        assert!(!naive.is_finite(), "{}: naive log-det at 800 = {naive}", b.name);
    }
}

#[test]
fn sinh_arcsinh_at_1e8_and_beyond() {
    let d = derive("bijector sas(x; eps: real, delta: positive) = sinh(delta * asinh(x) - eps);");
    let b = &d.bijectors[0];
    for (eps, delta) in [(0.3, 1.5), (-1.25, 0.3), (0.0, 1.0), (0.375, 2.5)] {
        let p = [("eps", eps), ("delta", delta)];
        assert_forward_and_log_det(b, &[1e8, -1e8, 0.5, -3.0, 1e-300], &p);
        assert_inverse(b, &[1e8, -1e8, 0.5, -3.0, 1e-300], &p);
    }
}

#[test]
fn tanh_log_det_is_the_stable_form() {
    let d = derive("bijector t(x) = tanh(x);");
    let b = &d.bijectors[0];
    assert_forward_and_log_det(b, &[0.0, 1e-300, 20.0, -40.0, 400.0, 1e300], &[]);
    let naive = flowc::ir::eval::eval(&b.raw_log_det, &[("x", 40.0)]);
    assert!(naive.is_infinite(), "log(1 - tanh(40)^2) naively = {naive}");
}

#[test]
fn numeric_inverse_of_a_residual_map_is_within_the_bound() {
    let d = derive("bijector r(x) = x + 0.5 * tanh(x) where inverse = numeric;");
    let b = &d.bijectors[0];
    assert!(!b.inverse.is_closed_form());
    assert_inverse(b, &[0.0, 1e-300, -1e-8, 0.3, -2.0, 7.5, 40.0, -1e5, 1e150, -1e300], &[]);
}

#[test]
fn multi_occurrence_inverses_are_derived() {
    let d = derive(
        "bijector a(x) = exp(x) - exp(-x);
         bijector b(x) = x / (1 + abs(x));
         bijector c(x: (0, 1); p: positive, q: positive) = 1 - pow(1 - pow(x, p), q);
         bijector d(x; k: unit) = atanh(k * tanh(x));",
    );
    for b in &d.bijectors {
        assert!(b.inverse.is_closed_form(), "{}", b.name);
    }
    assert_inverse(&d.bijectors[0], &[0.0, 1.0, -30.0, 700.0], &[]);
    assert_inverse(&d.bijectors[1], &[0.0, 1.0, -30.0, 1e10], &[]);
    assert_inverse(&d.bijectors[2], &[0.1, 0.5, 0.9], &[("p", 2.0), ("q", 3.0)]);
    assert_inverse(&d.bijectors[3], &[0.1, -2.0, 5.0], &[("k", 0.5)]);
}

/// The corpus check passes except for the deviations listed here, each with its reason.
#[test]
fn corpus_check_fails_only_where_known() {
    const KNOWN: &[(&str, &str, &str, &str)] = &[
        (
            "affine_sas_affine",
            "forward",
            "f32",
            "values within a factor 4 of f32::MAX (x = 1e15, delta = 2.5): the power form's intermediate (4e15)^2.5 overflows f32",
        ),
        ("affine_sas_affine", "inverse", "f32", "the same overflow of an intermediate near the top of the f32 range"),
    ];
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../snapshots/corpus.flow")).unwrap();
    let d = derive(&src);
    let r = flowc::check::check(&d, None);
    let mut unexpected = Vec::new();
    let mut fixed = Vec::new();
    for row in &r.rows {
        let prec = if row.precision == Precision::F64 { "f64" } else { "f32" };
        let known = KNOWN.iter().any(|(b, q, p, _)| *b == row.bijector && *q == row.quantity && *p == prec);
        if !row.passed && !known {
            unexpected.push(format!("{} {} {}: {:?}", row.bijector, row.quantity, prec, row.error));
        }
        if row.passed && known {
            fixed.push(format!("{} {} {}", row.bijector, row.quantity, prec));
        }
    }
    assert!(unexpected.is_empty(), "unexpected failures:\n{}", unexpected.join("\n"));
    assert!(fixed.is_empty(), "now passing, remove from KNOWN:\n{}", fixed.join("\n"));
}
