//! The numeric inverse: a bracketed, safeguarded Newton–bisection root-find for a
//! monotone scalar map, converging until the bracket holds adjacent floats. Newton steps are
//! taken while each is at most half the last (else the bracket is bisected); once a step is
//! below √ε relative, the root is within a few floats and is crossed float by float, which
//! closes the bracket from its far side without bisecting down to it (about 6 evaluations of
//! f per root for a planar layer, where waiting for bisection took 14 to 44).
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
    if b > a {
        a.next_up()
    } else if b < a {
        a.next_down()
    } else {
        a
    }
}

/// The values a search steps through: every f64, or the f32 values alone (for a map computed
/// in f32 at the search point rounded to f32, which is constant between them: searching the
/// f64s in between would bisect through flat steps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grid {
    F64,
    F32,
}

impl Grid {
    /// The grid of a map computed in `T`.
    pub fn of<T: Real>() -> Grid {
        if T::NAME == "f32" {
            Grid::F32
        } else {
            Grid::F64
        }
    }

    /// The nearest value of the grid.
    pub fn round(self, x: f64) -> f64 {
        match self {
            Grid::F64 => x,
            Grid::F32 => x as f32 as f64,
        }
    }

    /// The next value of the grid after `a` (on the grid) in the direction of `b`.
    pub fn next(self, a: f64, b: f64) -> f64 {
        match self {
            Grid::F64 => next_toward(a, b),
            Grid::F32 if b > a => (a as f32).next_up() as f64,
            Grid::F32 if b < a => (a as f32).next_down() as f64,
            Grid::F32 => a,
        }
    }

    /// The largest finite value.
    fn max(self) -> f64 {
        match self {
            Grid::F64 => f64::MAX,
            Grid::F32 => f32::MAX as f64,
        }
    }

    fn epsilon(self) -> f64 {
        match self {
            Grid::F64 => f64::EPSILON,
            Grid::F32 => f32::EPSILON as f64,
        }
    }
}

/// Solves f(x) = y for x in the open interval (`lo`, `hi`) (either end may be infinite),
/// f strictly increasing (or decreasing when `increasing` is false). `None` when y is
/// outside the range of f or f is not finite. f is evaluated once per point (its values at
/// the bracket's ends and at the Newton point are kept), f′ once per step.
pub fn solve(f: &dyn Fn(f64) -> f64, df: &dyn Fn(f64) -> f64, y: f64, lo: f64, hi: f64, increasing: bool) -> Option<f64> {
    solve_on(Grid::F64, f, df, y, lo, hi, increasing)
}

/// [`solve`] over the values of `grid` (every point f is evaluated at, and the answer, lies
/// on it): the bracket ends at adjacent values of the grid.
pub fn solve_on(grid: Grid, f: &dyn Fn(f64) -> f64, df: &dyn Fn(f64) -> f64, y: f64, lo: f64, hi: f64, increasing: bool) -> Option<f64> {
    if !y.is_finite() {
        return None;
    }
    let s = if increasing { 1.0 } else { -1.0 };
    // g is increasing with its root at the solution
    let g = |x: f64| s * (f(x) - y);
    // the first value of the grid inside the end
    let inside = |end: f64, other: f64| {
        let mut t = grid.next(grid.round(end), other);
        while (t - end) * (other - end) <= 0.0 && t != other {
            t = grid.next(t, other);
        }
        t
    };
    let lo_in = if lo.is_finite() { inside(lo, hi) } else { -grid.max() };
    let hi_in = if hi.is_finite() { inside(hi, lo) } else { grid.max() };
    if lo_in > hi_in {
        return None;
    }
    let start = if lo < 0.0 && 0.0 < hi {
        0.0
    } else if lo.is_finite() && hi.is_finite() {
        0.5 * (lo + hi)
    } else if lo.is_finite() {
        lo + 1.0_f64.max(lo.abs())
    } else {
        hi - 1.0_f64.max(hi.abs())
    };
    let start = grid.round(start).clamp(lo_in, hi_in);
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
            let t = grid.round(start + step).min(hi_in);
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
            let t = grid.round(start - step).max(lo_in);
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
    // the bound on the next Newton step: half the last one (Newton is taken while it
    // converges at least linearly), or after a bisection half the bracket
    let mut bound = f64::INFINITY;
    // a Newton step this short (relative) leaves an error of a few ulps (it shrinks quadratically)
    let converging = grid.epsilon().sqrt();
    // g at a point: a root or NaN ends the search, else the point replaces the bracket's end
    // on its side and is the last point; g's value
    macro_rules! probe {
        ($t:expr) => {{
            let t = $t;
            let gt = g(t);
            if gt.is_nan() {
                return None;
            }
            if gt == 0.0 {
                return Some(t);
            }
            if gt < 0.0 {
                (a, ga) = (t, gt);
            } else {
                (b, gb) = (t, gt);
            }
            (x, gx) = (t, gt);
            gt
        }};
    }
    for _ in 0..MAX_STEPS {
        if grid.next(a, b) >= b {
            break;
        }
        // Newton from the last point, accepted inside the bracket when it shrinks the step
        let d = s * df(x);
        let newton = if d.is_finite() && d > 0.0 && gx.is_finite() { grid.round(x - gx / d) } else { f64::NAN };
        let step = (newton - x).abs();
        let converged;
        let t = if newton > a && newton < b && step <= bound {
            bound = 0.5 * step;
            converged = step <= converging * newton.abs().max(f64::MIN_POSITIVE);
            newton
        } else {
            converged = false;
            // bisect; geometrically when the bracket spans many orders of magnitude
            let mut t = grid.round(if a > 0.0 && b / a > 4.0 {
                (a.sqrt() * b.sqrt()).clamp(a, b)
            } else if b < 0.0 && a / b > 4.0 {
                -((-a).sqrt() * (-b).sqrt()).clamp(-b, -a)
            } else {
                a + 0.5 * (b - a)
            });
            if !(t > a && t < b) {
                t = grid.round(a + 0.5 * (b - a));
                if !(t > a && t < b) {
                    t = grid.next(a, b);
                }
                if !(t > a && t < b) {
                    break;
                }
            }
            bound = 0.25 * (b - a);
            t
        };
        let gt = probe!(t);
        if converged {
            // the root is within a few floats of t: step float by float from t until the sign
            // changes (the bracket's ends then adjacent), at most a few steps
            for _ in 0..8 {
                if grid.next(a, b) >= b {
                    break;
                }
                let gc = probe!(if gt < 0.0 { grid.next(a, b) } else { grid.next(b, a) });
                if (gc < 0.0) != (gt < 0.0) {
                    break;
                }
            }
        }
    }
    Some(if -ga <= gb { a } else { b })
}

/// [`solve`] for a map computed in `T`: the search runs over the values of `T` ([`Grid`]),
/// f and f′ evaluated there; NaN when there is no solution.
pub fn solve_real<T: Real>(f: &dyn Fn(T) -> T, df: &dyn Fn(T) -> T, y: T, lo: f64, hi: f64, increasing: bool) -> T {
    let fx = |x: f64| f(T::from_f64(x)).to_f64();
    let dfx = |x: f64| df(T::from_f64(x)).to_f64();
    T::from_f64(solve_on(Grid::of::<T>(), &fx, &dfx, y.to_f64(), lo, hi, increasing).unwrap_or(f64::NAN))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// Monotone maps with their domains: a planar layer's x + u·tanh(wx + b) (four shapes),
    /// ln on (0, ∞), a decreasing cubic, and x/(1 − x²) on (−1, 1), with f′ and whether f
    /// increases.
    type Case = (Box<dyn Fn(f64) -> f64>, Box<dyn Fn(f64) -> f64>, f64, f64, bool);
    fn cases() -> Vec<Case> {
        let mut v: Vec<Case> = Vec::new();
        for (w, u, b) in [(0.7, 0.9, 0.1), (3.0, -0.3, -1.0), (-20.0, 0.05, 2.0), (1e-3, 1.0, 0.0)] {
            v.push((
                Box::new(move |x: f64| x + u * (w * x + b).tanh()),
                Box::new(move |x: f64| 1.0 + u * w * (1.0 - (w * x + b).tanh().powi(2))),
                f64::NEG_INFINITY,
                f64::INFINITY,
                true,
            ));
        }
        v.push((Box::new(|x: f64| x.ln() + 1e-3 * x), Box::new(|x: f64| 1.0 / x + 1e-3), 0.0, f64::INFINITY, true));
        v.push((Box::new(|x: f64| -x * x * x - x), Box::new(|x: f64| -3.0 * x * x - 1.0), f64::NEG_INFINITY, f64::INFINITY, false));
        v.push((Box::new(|x: f64| x / (1.0 - x * x)), Box::new(|x: f64| (1.0 + x * x) / ((1.0 - x * x) * (1.0 - x * x))), -1.0, 1.0, true));
        v
    }

    /// Solves f = y on `grid` for 2000 values y per case, f computed on the grid; checks that
    /// every answer is a value of the grid, one end of a pair of adjacent values across which
    /// f − y changes sign (checked directly at its neighbour), the end nearer in |f − y|.
    /// Returns the mean number of evaluations of f per root.
    fn check_roots(grid: Grid) -> f64 {
        let evals = Cell::new(0usize);
        let (mut solved, mut total) = (0usize, 0usize);
        for (k, (f, df, lo, hi, inc)) in cases().iter().enumerate() {
            let fg = |x: f64| {
                evals.set(evals.get() + 1);
                grid.round(f(x))
            };
            let dfg = |x: f64| grid.round(df(x));
            for i in 0..2000 {
                let t = i as f64 / 2000.0 - 0.5;
                // (ln x ≥ −103.3 on the f32s)
                let ln_range = if grid == Grid::F32 { 200.0 } else { 1400.0 };
                let y = grid.round(if k == 4 { ln_range * t } else { 400.0 * t * t * t });
                evals.set(0);
                let Some(x) = solve_on(grid, &fg, &dfg, y, *lo, *hi, *inc) else {
                    panic!("case {k}: no root for y = {y}");
                };
                total += evals.get();
                solved += 1;
                assert_eq!(x, grid.round(x), "case {k}, y = {y}: {x:e} is not on the grid");
                let g = |x: f64| if *inc { fg(x) - y } else { y - fg(x) };
                let gx = g(x);
                if gx == 0.0 {
                    continue;
                }
                // the neighbour on the side of the root
                let n = grid.next(x, if gx < 0.0 { f64::INFINITY } else { f64::NEG_INFINITY });
                let gn = g(n);
                assert!(gn == 0.0 || (gn > 0.0) != (gx > 0.0), "case {k}, y = {y}: no sign change between {x:e} and {n:e}");
                assert!(gx.abs() <= gn.abs(), "case {k}, y = {y}: {n:e} is nearer than {x:e}");
            }
        }
        total as f64 / solved as f64
    }

    /// Roots are adjacent-float brackets found in few evaluations of f: Newton while it
    /// converges, then a float-by-float step across the root (bisection alone, or Newton that
    /// waits for bisection to move the far end of the bracket, takes two to seven times as
    /// many).
    #[test]
    fn roots_are_adjacent_float_brackets_found_in_few_steps() {
        let mean = check_roots(Grid::F64);
        assert!(mean < 12.0, "{mean} evaluations of f per root");
    }

    /// A map computed in f32 (at points rounded to f32: `fg` rounds its value, and the search
    /// evaluates it on f32 values only): answers are adjacent-f32 brackets, found in few
    /// evaluations (searching the f64s in between takes about 16 here: bisection through the
    /// flat steps of f).
    #[test]
    fn f32_maps_are_searched_over_f32_values() {
        let mean = check_roots(Grid::F32);
        assert!(mean < 12.0, "{mean} evaluations of f per root");
    }

    /// Outside the range of f, or where f is NaN, there is no root.
    #[test]
    fn no_root_outside_the_range() {
        let f = |x: f64| x.tanh();
        let df = |x: f64| 1.0 - x.tanh().powi(2);
        assert_eq!(solve(&f, &df, 1.5, f64::NEG_INFINITY, f64::INFINITY, true), None);
        assert_eq!(solve(&f, &df, f64::NAN, f64::NEG_INFINITY, f64::INFINITY, true), None);
        let x = solve(&f, &df, 0.5, f64::NEG_INFINITY, f64::INFINITY, true).unwrap();
        assert!((x - 0.5f64.atanh()).abs() <= 2.0 * f64::EPSILON * x.abs());
    }
}
