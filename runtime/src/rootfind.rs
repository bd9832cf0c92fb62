//! The numeric inverse: a bracketed, safeguarded Newton–bisection root-find for a
//! monotone scalar map, converging until the bracket holds adjacent floats.
//!
//! Compiled flows call it for bijectors declared `where inverse = numeric`; the compiler's
//! interpreter and checks call the same code, so every backend inverts identically.
//!
//! ```
//! use runtime::rootfind::solve;
//! let f = |x: f64| x + 0.5 * x.tanh();
//! let df = |x: f64| 1.0 + 0.5 * (1.0 - x.tanh().powi(2));
//! let x = solve(&f, &df, 2.0, f64::NEG_INFINITY, f64::INFINITY, true).unwrap();
//! assert!((f(x) - 2.0).abs() < 1e-15);
//! ```

use crate::real::Real;

/// Iteration cap (bisection alone needs at most about 2100 steps over all f64s).
const MAX_STEPS: usize = 4000;

/// The next f64 after `a` in the direction of `b` (`a` itself when they are equal).
pub fn next_toward(a: f64, b: f64) -> f64 {
    if a == b || a.is_nan() {
        return a;
    }
    if a == 0.0 {
        return if b > 0.0 { f64::from_bits(1) } else { -f64::from_bits(1) };
    }
    let bits = a.to_bits();
    let up = (b > a) == (a > 0.0);
    f64::from_bits(if up { bits + 1 } else { bits - 1 })
}

/// Solves f(x) = y for x in the open interval (`lo`, `hi`) (either end may be infinite),
/// f strictly increasing (or decreasing when `increasing` is false). `None` when y is
/// outside the range of f or f is not finite. f is evaluated once per point (its values at
/// the bracket's ends and at the Newton point are kept), f′ once per step.
pub fn solve(f: &dyn Fn(f64) -> f64, df: &dyn Fn(f64) -> f64, y: f64, lo: f64, hi: f64, increasing: bool) -> Option<f64> {
    if !y.is_finite() {
        return None;
    }
    let s = if increasing { 1.0 } else { -1.0 };
    // g is increasing with its root at the solution
    let g = |x: f64| s * (f(x) - y);
    let lo_in = if lo.is_finite() { next_toward(lo, hi) } else { f64::MIN };
    let hi_in = if hi.is_finite() { next_toward(hi, lo) } else { f64::MAX };
    let start = if lo < 0.0 && 0.0 < hi {
        0.0
    } else if lo.is_finite() && hi.is_finite() {
        0.5 * (lo + hi)
    } else if lo.is_finite() {
        lo + 1.0_f64.max(lo.abs())
    } else {
        hi - 1.0_f64.max(hi.abs())
    };
    let g0 = g(start);
    if g0 == 0.0 {
        return Some(start);
    }
    // bracket [a, b] with g(a) < 0 < g(b), moving away from the start geometrically
    let (mut a, mut b, mut ga, mut gb);
    if g0 < 0.0 {
        (a, ga) = (start, g0);
        let mut step = 1.0_f64.max(start.abs());
        loop {
            let t = (start + step).min(hi_in);
            let gt = g(t);
            if gt.is_nan() {
                return None;
            }
            if gt >= 0.0 {
                (b, gb) = (t, gt);
                break;
            }
            (a, ga) = (t, gt);
            if t >= hi_in {
                return None;
            }
            step *= 4.0;
        }
    } else {
        (b, gb) = (start, g0);
        let mut step = 1.0_f64.max(start.abs());
        loop {
            let t = (start - step).max(lo_in);
            let gt = g(t);
            if gt.is_nan() {
                return None;
            }
            if gt <= 0.0 {
                (a, ga) = (t, gt);
                break;
            }
            (b, gb) = (t, gt);
            if t <= lo_in {
                return None;
            }
            step *= 4.0;
        }
    }
    if ga == 0.0 {
        return Some(a);
    }
    if gb == 0.0 {
        return Some(b);
    }
    let (mut x, mut gx) = if -ga < gb { (a, ga) } else { (b, gb) };
    let mut width = b - a;
    for _ in 0..MAX_STEPS {
        if next_toward(a, b) >= b {
            break;
        }
        // Newton from the better end, accepted only inside the bracket and when it shrinks it fast
        let d = s * df(x);
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
        (x, gx) = (t, gt);
    }
    Some(if -ga <= gb { a } else { b })
}

/// [`solve`] for a map computed in `T`: the search runs in f64 on f and f' evaluated at the
/// search point rounded to `T`; the result is rounded to `T` (NaN when there is no solution).
pub fn solve_real<T: Real>(f: &dyn Fn(T) -> T, df: &dyn Fn(T) -> T, y: T, lo: f64, hi: f64, increasing: bool) -> T {
    let fx = |x: f64| f(T::from_f64(x)).to_f64();
    let dfx = |x: f64| df(T::from_f64(x)).to_f64();
    T::from_f64(solve(&fx, &dfx, y.to_f64(), lo, hi, increasing).unwrap_or(f64::NAN))
}
