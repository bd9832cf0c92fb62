//! Every op of the one op list has an f64 arm, a high-precision arm, an interval arm,
//! a derivative rule (or is derivation-only), appears in at least one rewrite rule, and has
//! Rust code (with the evaluator's values).

use egg::{ENodeOrVar, Language};
use flowc::derive::{diff, rules};
use flowc::ir::interval::Interval;
use flowc::ir::op::{all_ops, Math};
use flowc::ir::{eval, hp, Builder};

fn expr_of(op: &Math) -> flowc::ir::Expr {
    let mut b = Builder::new();
    let x = b.sym("x");
    let two = b.num(2.0);
    let args = [x, two, x];
    let n = match op {
        Math::Num(_) | Math::Sym(_) => op.clone(),
        _ => {
            let mut i = 0;
            op.clone().map_children(|_| {
                i += 1;
                args[i - 1]
            })
        }
    };
    let r = b.add(n);
    b.finish(r)
}

/// A point inside every op's domain.
fn point(op: &Math) -> f64 {
    if matches!(op, Math::Acosh(_)) {
        1.375
    } else {
        0.375
    }
}

#[test]
fn every_op_evaluates_in_f64_high_precision_and_intervals() {
    for op in all_ops() {
        if matches!(op, Math::Solve(_)) {
            continue;
        }
        let e = expr_of(&op);
        let x = point(&op);
        let v = eval::eval(&e, &[("x", x)]);
        let r = hp::eval(&e, &[("x", x)]).unwrap();
        assert!(v.is_finite(), "{op}: f64 gives {v}");
        assert!((v - r).abs() <= 4.0 * f64::EPSILON * r.abs().max(1e-300), "{op}: f64 {v} vs reference {r}");
        let args: Vec<Interval> = op
            .children()
            .iter()
            .enumerate()
            .map(|(i, _)| if i == 1 { Interval::point(2.0) } else { Interval::closed(x - 0.125, x + 0.125) })
            .collect();
        let range = Interval::apply(&op, &args);
        assert!(range.contains(v) || matches!(op, Math::Sym(_)), "{op}: {v} outside its interval {range}");
    }
}

#[test]
fn every_op_has_a_derivative_rule_checked_against_a_central_difference() {
    for op in all_ops() {
        let e = expr_of(&op);
        match diff::diff(&e, "x") {
            Ok(d) => {
                let x = point(&op);
                let sym = hp::eval(&d, &[("x", x)]).unwrap();
                let fd = hp::central_difference(&e, "x", x, &|_| f64::NAN);
                assert!((sym - fd).abs() <= 1e-13 * (1.0 + fd.abs()), "{op}: d/dx = {sym}, central difference {fd}");
            }
            Err(name) => assert_eq!(name, "solve", "only the derivation-only `solve` has no derivative; {op} is missing one"),
        }
    }
}

#[test]
fn every_op_appears_in_a_rewrite_rule() {
    let rules = rules::all_rules();
    for op in all_ops() {
        if matches!(op, Math::Num(_) | Math::Sym(_)) {
            continue;
        }
        let found = rules.iter().any(|r| {
            [r.searcher.get_pattern_ast(), r.applier.get_pattern_ast()]
                .into_iter()
                .flatten()
                .any(|p| p.as_ref().iter().any(|n| matches!(n, ENodeOrVar::ENode(m) if m.discriminant() == op.discriminant())))
        });
        assert!(found, "op `{op}` has no rewrite rule");
    }
}

#[test]
fn the_reference_round_trips_f64_values_of_every_magnitude() {
    let e = flowc::ir::parse_expr("x");
    for x in [5e-324, -5e-324, 1e-320, 1e-310, 2.2250738585072014e-308, 1e-300, 0.1, 1.0, 3.5, 1e300, f64::MAX, -f64::MAX] {
        let back = hp::eval(&e, &[("x", x)]).unwrap();
        assert_eq!(back.to_bits(), x.to_bits(), "{x:e} came back as {back:e}");
    }
    // (the reference does not carry the sign of zero)
    assert_eq!(hp::eval(&e, &[("x", -0.0)]).unwrap(), 0.0);
    // and a subnormal argument of a function
    let l = hp::eval(&flowc::ir::parse_expr("(log x)"), &[("x", 1e-310)]).unwrap();
    assert_eq!(l, (1e-310f64).ln());
}

/// The Rust backend's code for an op: an operator or a `runtime::Ops` function, whose values
/// are the reference evaluator's in f64 and f32 (bit for bit).
#[test]
fn every_op_has_rust_code_with_the_evaluators_values() {
    use flowc::codegen::rust::op_expr;
    use quote::quote;
    use runtime::Ops;
    fn call<T: Ops>(code: &str, a: T, b: T, c: T) -> T {
        match code {
            "a + b" => a + b,
            "a - b" => a - b,
            "a * b" => a * b,
            "a / b" => a / b,
            "- a" => -a,
            _ => {
                let name =
                    code.strip_prefix("T :: ").and_then(|r| r.split(' ').next()).unwrap_or_else(|| panic!("unexpected code `{code}`"));
                match name {
                    "pow" => a.pow(b),
                    "hypot" => a.hypot(b),
                    "powrecip" => a.powrecip(b),
                    "sqrt" => a.sqrt(),
                    "cbrt" => a.cbrt(),
                    "exp" => a.exp(),
                    "expm1" => a.expm1(),
                    "log" => a.log(),
                    "log1p" => a.log1p(),
                    "sin" => a.sin(),
                    "cos" => a.cos(),
                    "tan" => a.tan(),
                    "atan" => a.atan(),
                    "sinh" => a.sinh(),
                    "cosh" => a.cosh(),
                    "tanh" => a.tanh(),
                    "asinh" => a.asinh(),
                    "acosh" => a.acosh(),
                    "atanh" => a.atanh(),
                    "sigmoid" => a.sigmoid(),
                    "logit" => a.logit(),
                    "softplus" => a.softplus(),
                    "abs" => a.abs(),
                    "sign" => a.sign(),
                    "logcosh" => a.logcosh(),
                    "ifpos" => a.ifpos(|| b, || c),
                    other => panic!("no runtime function `{other}`"),
                }
            }
        }
    }
    for op in all_ops() {
        let code = match op_expr(&op, &[quote!(a), quote!(b), quote!(c)], &quote!(T)) {
            Ok(c) => c.to_string(),
            Err(_) => {
                assert!(matches!(op, Math::Solve(_) | Math::Num(_) | Math::Sym(_)), "{op} has no Rust code");
                continue;
            }
        };
        for (a, b, c) in [(point(&op), 2.0, -1.5), (-point(&op), 0.75, 3.0), (0.0, -2.0, 1.0)] {
            let args = [a, b, c];
            let want = eval::apply(&op, &args);
            let got = call(&code, a, b, c);
            assert!(got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()), "{op} at {args:?}: {got} vs {want}");
            let args32 = [a as f32, b as f32, c as f32];
            let want = eval::apply_f32(&op, &args32);
            let got = call(&code, args32[0], args32[1], args32[2]);
            assert!(got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()), "{op} f32 at {args32:?}: {got} vs {want}");
        }
    }
}
