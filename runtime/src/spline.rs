//! Monotone rational-quadratic splines (Gregory & Delbourgo; the neural spline flows of
//! Durkan et al. 2019): `bins` bins on [−bound, bound], identity (linear tails of slope 1)
//! outside. A spline is given by `3·bins − 1` unconstrained values, in this order:
//!
//! - `bins` bin widths (softmax, each at least [`MIN_BIN`] of the interval),
//! - `bins` bin heights (likewise),
//! - `bins − 1` derivatives at the inner knots ([`MIN_DERIVATIVE`] + softplus); the
//!   derivative at ±bound is 1, so the tails continue the spline smoothly.
//!
//! In bin k with ξ = (x − x_k)/w_k ∈ [0, 1], s = h_k/w_k:
//! y = y_k + h_k (s ξ² + d_k ξ(1−ξ)) / (s + (d_k + d_{k+1} − 2s) ξ(1−ξ)), and
//! dy/dx = s² (d_{k+1} ξ² + 2s ξ(1−ξ) + d_k (1−ξ)²) / (s + (d_k + d_{k+1} − 2s) ξ(1−ξ))².
//! The inverse solves a ξ² + b ξ + c = 0 for the root in [0, 1] as ξ = 2c/(−b − √(b² − 4ac))
//! (c ≤ 0 ≤ b, so no cancellation; the textbook (−b + √·)/2a loses every digit when a is
//! small, which is where float32 implementations produce NaN or values outside the bin).
//!
//! ```
//! use runtime::spline::{forward, inverse};
//! let raw = [0.1f64, -0.3, 0.5, 0.2, 0.0, -0.1, 0.4, -0.2]; // 3 bins
//! let (y, ld) = forward(0.7, &raw, 3, 2.0);
//! let (x, ld2) = inverse(y, &raw, 3, 2.0);
//! assert!((x - 0.7).abs() < 1e-14 && (ld - ld2).abs() < 1e-14);
//! assert_eq!(forward(5.0, &raw, 3, 2.0), (5.0, 0.0)); // tail: identity
//! ```

use crate::real::{Block, Real};

/// Smallest bin width and height, as a fraction of the interval.
pub const MIN_BIN: f64 = 1e-3;
/// Smallest derivative at an inner knot.
pub const MIN_DERIVATIVE: f64 = 1e-3;
/// Most bins.
pub const MAX_BINS: usize = 64;

/// Number of unconstrained values of a spline with `bins` bins.
pub const fn raw_len(bins: usize) -> usize {
    3 * bins - 1
}

/// Knot positions (`bins + 1`) from unconstrained widths, in [−bound, bound].
fn knots<T: Real>(raw: &[T], bins: usize, bound: T, out: &mut [T; MAX_BINS + 1]) {
    let mut m = raw[0];
    for v in &raw[1..bins] {
        if *v > m {
            m = *v;
        }
    }
    let mut e = [T::ZERO; MAX_BINS];
    let mut total = T::ZERO;
    for k in 0..bins {
        e[k] = (raw[k] - m).exp();
        total = total + e[k];
    }
    let min = T::from_f64(MIN_BIN);
    let scale = T::from_f64(1.0) - min * T::from_f64(bins as f64);
    let two_b = bound + bound;
    out[0] = -bound;
    let mut cum = T::ZERO;
    for k in 0..bins {
        cum = cum + min + scale * (e[k] / total);
        out[k + 1] = if k + 1 == bins { bound } else { two_b * cum - bound };
    }
}

/// Everything about the bin of one point.
struct Bin<T> {
    x0: T,
    w: T,
    y0: T,
    h: T,
    d0: T,
    d1: T,
}

fn derivative<T: Real>(raw: &[T], bins: usize, k: usize) -> T {
    if k == 0 || k == bins {
        T::from_f64(1.0)
    } else {
        T::from_f64(MIN_DERIVATIVE) + raw[2 * bins + k - 1].softplus()
    }
}

/// The bin holding `v` along the widths' knots (`by_y`: the heights').
fn bin<T: Real>(v: T, raw: &[T], bins: usize, bound: T, by_y: bool) -> Bin<T> {
    let mut xs = [T::ZERO; MAX_BINS + 1];
    let mut ys = [T::ZERO; MAX_BINS + 1];
    knots(&raw[..bins], bins, bound, &mut xs);
    knots(&raw[bins..2 * bins], bins, bound, &mut ys);
    let along = if by_y { &ys } else { &xs };
    let mut k = 0;
    while k + 1 < bins && v >= along[k + 1] {
        k += 1;
    }
    Bin { x0: xs[k], w: xs[k + 1] - xs[k], y0: ys[k], h: ys[k + 1] - ys[k], d0: derivative(raw, bins, k), d1: derivative(raw, bins, k + 1) }
}

/// log dy/dx in the bin at ξ.
fn log_slope<T: Real>(b: &Bin<T>, xi: T) -> T {
    let one = T::from_f64(1.0);
    let two = T::from_f64(2.0);
    let s = b.h / b.w;
    let t = xi * (one - xi);
    let den = s + (b.d0 + b.d1 - two * s) * t;
    let num = s * s * (b.d1 * xi * xi + two * s * t + b.d0 * (one - xi) * (one - xi));
    num.log() - two * den.log()
}

/// y = spline(x) and log dy/dx; the identity with log-derivative 0 outside [−bound, bound].
pub fn forward<T: Real>(x: T, raw: &[T], bins: usize, bound: f64) -> (T, T) {
    let bd = T::from_f64(bound);
    if !(x >= -bd && x <= bd) {
        // tails, and NaN (which passes through)
        return (x, if x.to_f64().is_nan() { x } else { T::ZERO });
    }
    let b = bin(x, raw, bins, bd, false);
    let one = T::from_f64(1.0);
    let two = T::from_f64(2.0);
    let xi = (x - b.x0) / b.w;
    let s = b.h / b.w;
    let t = xi * (one - xi);
    let y = b.y0 + b.h * (s * xi * xi + b.d0 * t) / (s + (b.d0 + b.d1 - two * s) * t);
    (y, log_slope(&b, xi))
}

/// x = spline⁻¹(y) and log dy/dx at x (the forward map's).
pub fn inverse<T: Real>(y: T, raw: &[T], bins: usize, bound: f64) -> (T, T) {
    let bd = T::from_f64(bound);
    if !(y >= -bd && y <= bd) {
        return (y, if y.to_f64().is_nan() { y } else { T::ZERO });
    }
    let b = bin(y, raw, bins, bd, true);
    let two = T::from_f64(2.0);
    let four = T::from_f64(4.0);
    let s = b.h / b.w;
    let dy = y - b.y0;
    let q = b.d0 + b.d1 - two * s;
    let a = b.h * (s - b.d0) + dy * q;
    let bb = b.h * b.d0 - dy * q;
    let c = -s * dy;
    let disc = bb * bb - four * a * c;
    let disc = if disc > T::ZERO { disc } else { T::ZERO };
    let xi = two * c / (-bb - disc.sqrt());
    // rounding can leave ξ a hair outside the bin
    let xi = if xi < T::ZERO {
        T::ZERO
    } else if xi > T::from_f64(1.0) {
        T::from_f64(1.0)
    } else {
        xi
    };
    (b.x0 + xi * b.w, log_slope(&b, xi))
}

/// [`forward`] or [`inverse`] on each lane of a block: the image (or preimage) when
/// `!log_det`, else the log-derivative.
pub fn lanes<T: Real, V: Block<T>, const N: usize>(v: V, raw: [V; N], bins: usize, bound: f64, inverse_map: bool, log_det: bool) -> V {
    let mut out = v;
    let mut r = [T::ZERO; N];
    for l in 0..V::LANES {
        for (j, x) in raw.iter().enumerate() {
            r[j] = x.lane(l);
        }
        let (y, ld) = if inverse_map { inverse(v.lane(l), &r, bins, bound) } else { forward(v.lane(l), &r, bins, bound) };
        out.set_lane(l, if log_det { ld } else { y });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(bins: usize, seed: u64) -> Vec<f64> {
        crate::sample::uniform(seed, raw_len(bins), 3.0)
    }

    #[test]
    fn knots_are_increasing_and_span_the_interval() {
        for bins in [1, 2, 5, 16] {
            let r = raw(bins, 3);
            let mut xs = [0.0; MAX_BINS + 1];
            knots(&r[..bins], bins, 2.5, &mut xs);
            assert_eq!((xs[0], xs[bins]), (-2.5, 2.5));
            for k in 0..bins {
                assert!(xs[k + 1] - xs[k] >= 5.0 * MIN_BIN * 0.999, "{:?}", &xs[..=bins]);
            }
        }
    }

    #[test]
    fn round_trip_at_knots_inside_and_in_the_tails() {
        for bins in [1, 4, 9] {
            let r = raw(bins, 7 + bins as u64);
            let mut xs = [0.0; MAX_BINS + 1];
            knots(&r[..bins], bins, 3.0, &mut xs);
            let mut pts: Vec<f64> = xs[..=bins].to_vec();
            pts.extend([-1e300, -3.0000001, -2.9, -0.3, 0.0, 1e-300, 0.77, 2.99999, 3.0000001, 1e300]);
            for x in pts {
                let (y, ld) = forward(x, &r, bins, 3.0);
                let (back, ld2) = inverse(y, &r, bins, 3.0);
                assert!((back - x).abs() <= 1e-13 * (1.0 + x.abs()), "bins {bins}: {x} -> {y} -> {back}");
                assert!((ld - ld2).abs() <= 1e-11, "bins {bins} at {x}: {ld} vs {ld2}");
                // the slope against central differences (inside, away from the knots)
                if x.abs() < 2.9 && xs[..=bins].iter().all(|k| (k - x).abs() > 1e-4) {
                    let e = 1e-6;
                    let fd = (forward(x + e, &r, bins, 3.0).0 - forward(x - e, &r, bins, 3.0).0) / (2.0 * e);
                    assert!((fd.ln() - ld).abs() < 1e-7, "bins {bins} at {x}: slope {} vs {fd}", ld.exp());
                }
            }
        }
    }

    #[test]
    fn float32_inverse_stays_in_its_bin() {
        // nearly linear bins (a ≈ 0): the textbook root divides by a
        let mut r = vec![0.0f32; raw_len(8)];
        for v in r[2 * 8..].iter_mut() {
            *v = 0.5413; // softplus ≈ 1: derivatives ≈ 1 + MIN_DERIVATIVE
        }
        for i in 0..2001 {
            let y = -2.0f32 + i as f32 * 0.002;
            let (x, ld) = inverse(y, &r, 8, 2.0);
            assert!(x.is_finite() && ld.is_finite(), "at {y}: {x} {ld}");
            let (yy, _) = forward(x, &r, 8, 2.0);
            assert!((yy - y).abs() <= 4e-6, "at {y}: {x} -> {yy}");
        }
    }
}
