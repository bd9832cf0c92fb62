//! The base distribution of a flow: the standard normal.

/// ln(2π), the nearest `f64` to 1.83787706640934548356065947281123527972…
/// (the literal is the shortest one that reads back to exactly that `f64`).
pub const LN_2PI: f64 = 1.837_877_066_409_345_6;

/// ½·ln(2π); halving is exact, so this is the nearest `f64` to the true value too.
const HALF_LN_2PI: f64 = 0.5 * LN_2PI;

/// Log density of the standard normal: `-0.5 * z * z - 0.5 * ln(2π)`.
///
/// Computed as `-((0.5 * z) * z) - 0.5 * LN_2PI`: both terms have the same
/// sign, so there is no cancellation and the result is within a couple of
/// ulps of the exact value for every finite `z`. Halving before squaring
/// keeps the square from overflowing early, so the result is finite exactly
/// while `0.5 * z²` is below `f64::MAX`, i.e. for `|z|` up to about
/// `1.8961e154` (√(2·`f64::MAX`)); beyond that, where `-0.5 z²` itself
/// overflows, it is `-inf`. It is also `-inf` for `z = ±inf`, and NaN for NaN.
///
/// ```
/// use runtime::base::std_normal_log_pdf;
///
/// assert_eq!(std_normal_log_pdf(0.0), -0.918_938_533_204_672_8);
/// assert_eq!(std_normal_log_pdf(1e154), -5e307);
/// assert_eq!(std_normal_log_pdf(1e200), f64::NEG_INFINITY);
/// ```
pub fn std_normal_log_pdf(z: f64) -> f64 {
    -((0.5 * z) * z) - HALF_LN_2PI
}
