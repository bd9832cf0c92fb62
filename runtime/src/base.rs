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

/// log C_n(κ), the normalizing constant of the von Mises–Fisher distribution on S^(n−1)
/// (density C_n(κ)·e^(κ μᵀx) in the surface measure, κ > 0): C_n(κ) = κ^(n/2−1) /
/// ((2π)^(n/2)·I_(n/2−1)(κ)). Computed as −log(|S^(n−2)|·∫_{−1}^{1} e^(κw)(1 − w²)^((n−3)/2) dw),
/// the integral over w = μᵀx by double-exponential (tanh-sinh) quadrature with e^κ factored
/// out, so that it holds from κ → 0 (the uniform density) to κ ≫ 1 (mass within 1/κ of the
/// mean); within a few 1e-15 of the value (tests against Bessel-function values).
///
/// ```
/// // S²: C = κ/(4π sinh κ)
/// let k: f64 = 2.5;
/// let want = (k / (4.0 * std::f64::consts::PI * k.sinh())).ln();
/// assert!((runtime::base::vmf_log_norm(3, k) - want).abs() < 1e-14);
/// ```
pub fn vmf_log_norm(n: usize, kappa: f64) -> f64 {
    use std::f64::consts::FRAC_PI_2;
    let a = (n as f64 - 3.0) / 2.0;
    // w = tanh(u), u = (π/2) sinh t: 1 − w = 2/(e^(2u) + 1), 1 − w² = sech² u, dw = (π/2) cosh t sech² u dt
    let h = 1.0 / 128.0;
    let mut total = 0.0;
    let mut k = -640i32;
    while k <= 640 {
        let t = k as f64 * h;
        let u = FRAC_PI_2 * t.sinh();
        let sech2 = 1.0 / (u.cosh() * u.cosh());
        // κ(w − 1) = −κ(1 − w), 1 − w computed without cancellation
        let one_minus_w = 2.0 / ((2.0 * u).exp() + 1.0);
        let f = (-kappa * one_minus_w).exp() * if a == 0.0 { 1.0 } else { sech2.powf(a) };
        let weight = FRAC_PI_2 * t.cosh() * sech2;
        let term = f * weight;
        if term.is_finite() {
            total += term;
        }
        k += 1;
    }
    let integral = h * total;
    // |S^(n−2)| = 2π^((n−1)/2)/Γ((n−1)/2)
    let log_sphere = -sphere_uniform_log_pdf(n - 1);
    -(log_sphere + kappa + integral.ln())
}

/// One draw from the von Mises–Fisher distribution on S^(n−1) (n = `out.len()` ≥ 2) with
/// mean direction the last axis e_n and concentration κ > 0, from the given sources of uniform
/// (0, 1), standard normal and Gamma(shape, 1) draws. The component w = x_n along the mean:
/// on S² by exact inversion, w = 1 + log(u + (1 − u)e^(−2κ))/κ; otherwise by Wood's (1994)
/// rejection from a Beta((n−1)/2, (n−1)/2) proposal. The rest: √(1 − w²) times a uniform
/// direction of R^(n−1).
pub fn vmf_draw(
    kappa: f64,
    out: &mut [f64],
    uniform: &mut dyn FnMut() -> f64,
    normal: &mut dyn FnMut() -> f64,
    gamma: &mut dyn FnMut(f64) -> f64,
) {
    let n = out.len();
    let m = (n - 1) as f64;
    let w = if n == 3 {
        let u = uniform();
        (1.0 + (u + (1.0 - u) * (-2.0 * kappa).exp()).ln() / kappa).clamp(-1.0, 1.0)
    } else {
        // b = (−2κ + √(4κ² + m²))/m without cancellation
        let b = m / (2.0 * kappa + (4.0 * kappa * kappa + m * m).sqrt());
        let x0 = (1.0 - b) / (1.0 + b);
        let c = kappa * x0 + m * (1.0 - x0 * x0).ln();
        loop {
            let (g1, g2) = (gamma(m / 2.0), gamma(m / 2.0));
            let z = g1 / (g1 + g2);
            let w = (1.0 - (1.0 + b) * z) / (1.0 - (1.0 - b) * z);
            if kappa * w + m * (1.0 - x0 * w).ln() - c >= uniform().ln() {
                break w;
            }
        }
    };
    let r = (1.0 - w * w).max(0.0).sqrt();
    let (head, last) = out.split_at_mut(n - 1);
    loop {
        head.iter_mut().for_each(|v| *v = normal());
        let norm = head.iter().map(|v| v * v).sum::<f64>().sqrt();
        if norm > 0.0 {
            head.iter_mut().for_each(|v| *v *= r / norm);
            break;
        }
    }
    last[0] = w;
}

#[cfg(test)]
mod tests {
    #[test]
    fn vmf_normalizers_against_bessel_values() {
        // log(κ^(n/2−1)/((2π)^(n/2) I_(n/2−1)(κ))), I from a 30-digit evaluation
        let cases = [
            (2, 1.0, -2.073791424916524),
            (2, 50.0, -48.96545256828115),
            (4, 1.0, -3.1051061453278597),
            (4, 1e3, -992.3948074934765),
            (5, 0.01, -3.270299024696241),
            (3, 1e-3, -2.531024413635952),
            (10, 7.5, -5.606613655312251),
        ];
        for (n, k, want) in cases {
            let got = super::vmf_log_norm(n, k);
            assert!((got - want).abs() < 4e-15 * want.abs().max(1.0), "n = {n}, κ = {k}: {got} vs {want}");
        }
        // S², large κ: log(κ/(4π sinh κ)) = log(κ/2π) − κ − log(1 − e^(−2κ))
        let k = 1e5f64;
        let want = (k / (2.0 * std::f64::consts::PI)).ln() - k;
        assert!((super::vmf_log_norm(3, k) - want).abs() < 1e-15 * want.abs());
    }

    #[test]
    fn vmf_draws_have_the_mean_resultant_length() {
        // E[w] = A_n(κ) = I_(n/2)(κ)/I_(n/2−1)(κ): S²: coth κ − 1/κ; n = 5, κ = 4:
        // I_2.5(4)/I_1.5(4) = 0.58214124; n = 2, κ = 0.5: I_1/I_0 = 0.24249961 (20-digit
        // evaluations)
        let rng = std::cell::RefCell::new(crate::rng::Rng::new(4));
        for (n, k, want) in [(3, 4.0f64, 1.0 / 4f64.tanh() - 0.25), (5, 4.0, 0.58214124), (2, 0.5, 0.24249961)] {
            let draws = 100_000;
            let mut mean = 0.0;
            let mut out = vec![0.0; n];
            for _ in 0..draws {
                super::vmf_draw(k, &mut out, &mut || rng.borrow_mut().uniform(), &mut || rng.borrow_mut().normal(), &mut |a| {
                    rng.borrow_mut().gamma(a)
                });
                assert!((out.iter().map(|v| v * v).sum::<f64>() - 1.0).abs() < 1e-14);
                mean += out[n - 1] / draws as f64;
            }
            assert!((mean - want).abs() < 0.005, "n = {n}, κ = {k}: mean w {mean}, want {want}");
        }
    }

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
