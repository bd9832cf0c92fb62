//! The base distributions of flows: the standard normal on R^n, the uniform distribution on the sphere, the Dirichlet distribution on the simplex.

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

/// Log density of the uniform distribution on the unit sphere S^(n−1) ⊂ R^n, in the sphere's
/// own (n − 1)-dimensional surface measure: −log|S^(n−1)|, |S^(n−1)| = 2π^(n/2)/Γ(n/2)
/// (|S⁰| = 2, |S¹| = 2π, |S^(k+1)| = 2π/k·|S^(k−1)|). `n` ≥ 1.
///
/// ```
/// use runtime::base::sphere_uniform_log_pdf;
/// assert!((sphere_uniform_log_pdf(3) + (4.0 * std::f64::consts::PI).ln()).abs() < 1e-15);
/// assert!((sphere_uniform_log_pdf(2) + (2.0 * std::f64::consts::PI).ln()).abs() < 1e-15);
/// ```
pub fn sphere_uniform_log_pdf(n: usize) -> f64 {
    use std::f64::consts::PI;
    // log area by the recurrence in logs (no overflow for any n)
    let (mut log_area, mut k) = if n % 2 == 1 { (2f64.ln(), 1usize) } else { ((2.0 * PI).ln(), 2usize) };
    while k < n {
        // |S^(k+1)| = 2π/k · |S^(k−1)|: from R^k to R^(k+2)
        log_area += (2.0 * PI / k as f64).ln();
        k += 2;
    }
    -log_area
}

/// Log density of the Dirichlet distribution with parameters `alpha` at `x` (on the simplex
/// in R^n, n = alpha.len()), in the simplex's own (n − 1)-dimensional surface measure: the
/// usual density (with respect to the first n − 1 coordinates) over √n, the area of the
/// simplex relative to its projection.
///
/// ```
/// // the uniform distribution on the simplex in R³: Γ(3)/√3 everywhere
/// let v = runtime::base::dirichlet_log_pdf(&[1.0, 1.0, 1.0], &[0.2, 0.3, 0.5]);
/// assert!((v - (2.0f64 / 3f64.sqrt()).ln()).abs() < 4e-16);
/// ```
pub fn dirichlet_log_pdf(alpha: &[f64], x: &[f64]) -> f64 {
    dirichlet_log_norm(alpha) + alpha.iter().zip(x).map(|(a, v)| if *a == 1.0 { 0.0 } else { (a - 1.0) * v.ln() }).sum::<f64>()
}

/// The constant part of [`dirichlet_log_pdf`]: log Γ(Σα) − Σ log Γ(α_i) − ½ log n.
pub fn dirichlet_log_norm(alpha: &[f64]) -> f64 {
    use crate::math::ln_gamma;
    let total: f64 = alpha.iter().sum();
    ln_gamma(total) - alpha.iter().map(|a| ln_gamma(*a)).sum::<f64>() - 0.5 * (alpha.len() as f64).ln()
}

#[cfg(test)]
mod tests {
    #[test]
    fn sphere_areas() {
        use std::f64::consts::PI;
        // |S^(n−1)| = 2π^(n/2)/Γ(n/2): n = 4: 2π², n = 5: 8π²/3, n = 6: π³
        for (n, area) in [(1, 2.0), (4, 2.0 * PI * PI), (5, 8.0 * PI * PI / 3.0), (6, PI.powi(3))] {
            let got = super::sphere_uniform_log_pdf(n);
            assert!((got + f64::ln(area)).abs() < 4e-16 * f64::ln(area).abs().max(1.0), "n = {n}: {got}");
        }
    }
}
