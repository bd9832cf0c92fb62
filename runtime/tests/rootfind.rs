//! The numeric inverse: accurate to adjacent floats, and f evaluated once per point.

use runtime::rootfind::{next_toward, solve};
use std::cell::RefCell;

/// (name, f, f′, lo, hi, increasing)
type Case = (&'static str, fn(f64) -> f64, fn(f64) -> f64, f64, f64, bool);

const CASES: [Case; 4] = [
    ("residual", |x| x + 0.5 * x.tanh(), |x| 1.0 + 0.5 * (1.0 - x.tanh().powi(2)), f64::NEG_INFINITY, f64::INFINITY, true),
    ("cubic", |x| x * x * x + x, |x| 3.0 * x * x + 1.0, f64::NEG_INFINITY, f64::INFINITY, true),
    ("x + log x", |x| x + 0.7 * x.ln(), |x| 1.0 + 0.7 / x, 0.0, f64::INFINITY, true),
    ("-(x + x^3) on (-1, 2)", |x| -(x + x * x * x), |x| -(1.0 + 3.0 * x * x), -1.0, 2.0, false),
];

fn targets() -> Vec<f64> {
    let mut ys = vec![0.0, 1e-300, -1e-300, 1e300, -1e300, 0.5, -3.0, 1.9, -9.5, 40.0];
    ys.extend((0..200).map(|i| (i as f64 - 100.0) * 0.137));
    ys
}

#[test]
fn roots_are_bracketed_to_adjacent_floats() {
    for (name, f, df, lo, hi, inc) in CASES {
        let s = if inc { 1.0 } else { -1.0 };
        for y in targets() {
            let Some(x) = solve(&f, &df, y, lo, hi, inc) else {
                continue;
            };
            assert!(x > lo && x < hi, "{name} at {y}: {x} outside the domain");
            // y lies between g at x and at a neighbour (or f(x) = y)
            let g = |v: f64| s * (f(v) - y);
            let (below, above) = (next_toward(x, f64::NEG_INFINITY), next_toward(x, f64::INFINITY));
            let gx = g(x);
            assert!(gx == 0.0 || (gx < 0.0 && g(above) >= 0.0) || (gx > 0.0 && g(below) <= 0.0), "{name} at {y}: {x}");
        }
    }
}

#[test]
fn f_is_evaluated_once_per_point() {
    for (name, f, df, lo, hi, inc) in CASES {
        for y in targets() {
            let seen = RefCell::new(Vec::new());
            let counted = |x: f64| {
                seen.borrow_mut().push(x.to_bits());
                f(x)
            };
            solve(&counted, &df, y, lo, hi, inc);
            let mut pts = seen.into_inner();
            let n = pts.len();
            pts.sort_unstable();
            pts.dedup();
            assert_eq!(pts.len(), n, "{name} at {y}: a point evaluated twice");
        }
    }
}
