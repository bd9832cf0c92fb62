//! The numeric inverse: a bracketed, safeguarded Newton–bisection root-find for a
//! monotone scalar map, converging until the bracket holds adjacent floats.
//!
//! ```
//! use flowc::derive::rootfind::solve;
//! use flowc::ir::Interval;
//! let f = |x: f64| x + 0.5 * x.tanh();
//! let df = |x: f64| 1.0 + 0.5 * (1.0 - x.tanh().powi(2));
//! let x = solve(&f, &df, 2.0, Interval::REAL, true).unwrap();
//! assert!((f(x) - 2.0).abs() < 1e-15);
//! ```

use super::stability::next_toward;
use crate::ir::interval::Interval;

/// Iteration cap (bisection alone needs at most about 2100 steps over all f64s).
const MAX_STEPS: usize = 4000;

/// Solves f(x) = y for x in `domain`, f strictly increasing (or decreasing when
/// `increasing` is false). `None` when y is outside the range of f or f is not finite.
pub fn solve(f: &dyn Fn(f64) -> f64, df: &dyn Fn(f64) -> f64, y: f64, domain: Interval, increasing: bool) -> Option<f64> {
    if !y.is_finite() {
        return None;
    }
    let s = if increasing { 1.0 } else { -1.0 };
    // g is increasing with its root at the solution
    let g = |x: f64| s * (f(x) - y);
    let lo_in = if domain.lo.is_finite() { next_toward(domain.lo, domain.hi) } else { f64::MIN };
    let hi_in = if domain.hi.is_finite() { next_toward(domain.hi, domain.lo) } else { f64::MAX };
    let start = if domain.contains(0.0) {
        0.0
    } else if domain.lo.is_finite() && domain.hi.is_finite() {
        0.5 * (domain.lo + domain.hi)
    } else if domain.lo.is_finite() {
        domain.lo + 1.0_f64.max(domain.lo.abs())
    } else {
        domain.hi - 1.0_f64.max(domain.hi.abs())
    };
    let g0 = g(start);
    if g0 == 0.0 {
        return Some(start);
    }
    // bracket [a, b] with g(a) < 0 < g(b), moving away from the start geometrically
    let (mut a, mut b);
    if g0 < 0.0 {
        a = start;
        let mut step = 1.0_f64.max(start.abs());
        loop {
            let t = (start + step).min(hi_in);
            let gt = g(t);
            if gt.is_nan() {
                return None;
            }
            if gt >= 0.0 {
                b = t;
                break;
            }
            a = t;
            if t >= hi_in {
                return None;
            }
            step *= 4.0;
        }
    } else {
        b = start;
        let mut step = 1.0_f64.max(start.abs());
        loop {
            let t = (start - step).max(lo_in);
            let gt = g(t);
            if gt.is_nan() {
                return None;
            }
            if gt <= 0.0 {
                a = t;
                break;
            }
            b = t;
            if t <= lo_in {
                return None;
            }
            step *= 4.0;
        }
    }
    let (mut ga, mut gb) = (g(a), g(b));
    if ga == 0.0 {
        return Some(a);
    }
    if gb == 0.0 {
        return Some(b);
    }
    let mut x = if -ga < gb { a } else { b };
    let mut width = b - a;
    for _ in 0..MAX_STEPS {
        if next_toward(a, b) >= b {
            break;
        }
        // Newton from the better end, accepted only inside the bracket and when it shrinks it fast
        let d = s * df(x);
        let gx = g(x);
        let mut t = if d.is_finite() && d > 0.0 && gx.is_finite() { x - gx / d } else { f64::NAN };
        if !(t > a && t < b) || (b - a) > 0.5 * width {
            // bisect; geometrically when the bracket spans many orders of magnitude
            t = if a > 0.0 && b / a > 4.0 {
                (a.sqrt() * b.sqrt()).clamp(a, b)
            } else if b < 0.0 && a / b > 4.0 {
                -((-a).sqrt() * (-b).sqrt()).clamp(-b, -a)
            } else {
                a + 0.5 * (b - a)
            };
            if !(t > a && t < b) {
                t = a + 0.5 * (b - a);
                if !(t > a && t < b) {
                    break;
                }
            }
        }
        width = b - a;
        let gt = g(t);
        if gt.is_nan() {
            return None;
        }
        if gt == 0.0 {
            return Some(t);
        }
        if gt < 0.0 {
            a = t;
            ga = gt;
        } else {
            b = t;
            gb = gt;
        }
        x = t;
    }
    Some(if -ga <= gb { a } else { b })
}
