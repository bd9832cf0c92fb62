//! The numeric inverse, shared with compiled code: [`runtime::rootfind`] over a bijector's
//! domain (whose ends are open).
//!
//! ```
//! use flowc::derive::rootfind::solve;
//! use flowc::ir::Interval;
//! let f = |x: f64| x + 0.5 * x.tanh();
//! let df = |x: f64| 1.0 + 0.5 * (1.0 - x.tanh().powi(2));
//! let x = solve(&f, &df, 2.0, Interval::REAL, true).unwrap();
//! assert!((f(x) - 2.0).abs() < 1e-15);
//! ```

use crate::ir::interval::Interval;
pub use runtime::rootfind::Grid;

/// Solves f(x) = y for x in `domain`, f strictly increasing (or decreasing when
/// `increasing` is false). `None` when y is outside the range of f or f is not finite.
pub fn solve(f: &dyn Fn(f64) -> f64, df: &dyn Fn(f64) -> f64, y: f64, domain: Interval, increasing: bool) -> Option<f64> {
    solve_on(Grid::F64, f, df, y, domain, increasing)
}

/// [`solve`] over the values of `grid` (f32 for maps computed in f32).
pub fn solve_on(grid: Grid, f: &dyn Fn(f64) -> f64, df: &dyn Fn(f64) -> f64, y: f64, domain: Interval, increasing: bool) -> Option<f64> {
    runtime::rootfind::solve_on(grid, f, df, y, domain.lo, domain.hi, increasing)
}
