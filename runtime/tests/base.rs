//! The standard normal log density against independent computations.

use runtime::base::{std_normal_log_pdf, LN_2PI};

/// Distance in units in the last place, for finite values of one sign.
fn ulps(a: f64, b: f64) -> u64 {
    a.to_bits().abs_diff(b.to_bits())
}

#[test]
fn ln_2pi_is_the_nearest_f64() {
    // 60 digits of ln(2π), computed independently (Python's decimal module).
    let exact: f64 = "1.83787706640934548356065947281123527972279494727556682563430".parse().unwrap();
    assert_eq!(LN_2PI.to_bits(), exact.to_bits());
    assert_eq!(format!("{LN_2PI}"), "1.8378770664093456");
    // Not what the obvious computation gives: 2π is rounded before the log.
    assert!(ulps((2.0 * std::f64::consts::PI).ln(), LN_2PI) <= 1);
}

#[test]
fn matches_high_precision_reference_values() {
    // -z²/2 - ln(2π)/2 at the exact f64 input, to 80 digits, rounded to f64
    // (Python's decimal module).
    let cases = [
        (0.0, -0.9189385332046728),
        (1.0, -1.4189385332046727),
        (3.0, -5.418938533204673),
        (-3.0, -5.418938533204673),
        (0.5, -1.0439385332046727),
        (10.0, -50.918938533204674),
        (37.5, -704.0439385332047),
        (1e-8, -0.9189385332046728),
        (1e154, -5e307),
        (1.8e154, -1.62e308),
        (1.89e154, -1.78605e308),
    ];
    for (z, want) in cases {
        let got = std_normal_log_pdf(z);
        assert!(ulps(got, want) <= 1, "z = {z}: got {got:e}, want {want:e}");
    }
    // The value at 0 is exactly -ln(2π)/2 = -0.91893853320467274178…, to the nearest f64.
    assert_eq!(std_normal_log_pdf(0.0), -0.5 * LN_2PI);
    let at_zero: f64 = "-0.91893853320467274178032973640561763986".parse().unwrap();
    assert_eq!(std_normal_log_pdf(0.0).to_bits(), at_zero.to_bits());
}

#[test]
fn matches_log_of_the_density() {
    // ln(exp(-z²/2) / √(2π)), computed the naive way, where it does not underflow.
    let mut z: f64 = -8.0;
    while z <= 8.0 {
        let naive = ((-z * z / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt()).ln();
        let got = std_normal_log_pdf(z);
        assert!((got - naive).abs() <= 1e-14 * naive.abs(), "z = {z}: {got} vs {naive}");
        z += 0.125;
    }
}

#[test]
fn is_symmetric_and_decreasing_in_abs_z() {
    let mut prev = std_normal_log_pdf(0.0);
    for k in 1..2000 {
        let z = f64::from(k) * 0.37;
        let v = std_normal_log_pdf(z);
        assert_eq!(v, std_normal_log_pdf(-z));
        assert!(v < prev, "z = {z}");
        prev = v;
    }
}

#[test]
fn finite_until_half_z_squared_overflows() {
    // √(2·f64::MAX) ≈ 1.8961503816218352e154 is where 0.5·z² passes f64::MAX.
    for z in [1e154, 1.8e154, 1.896e154, -1.896e154] {
        assert!(std_normal_log_pdf(z).is_finite(), "z = {z:e}");
    }
    for z in [1.8962e154, 1e155, 1e200, -1e200, f64::MAX, f64::INFINITY, f64::NEG_INFINITY] {
        assert_eq!(std_normal_log_pdf(z), f64::NEG_INFINITY, "z = {z:e}");
    }
    // Around the threshold: finite below √(2·f64::MAX) (computed in high
    // precision: 1.89615038162183523…e154), -inf above it, up to the rounding
    // of the last bits.
    let mut z = 1.8e154;
    while z < 2.0e154 {
        let v = std_normal_log_pdf(z);
        if z < 1.896_150_381_621_83e154 {
            assert!(v.is_finite(), "z = {z:e}");
        } else if z > 1.896_150_381_621_84e154 {
            assert_eq!(v, f64::NEG_INFINITY, "z = {z:e}");
        }
        z *= 1.0 + 1e-6;
    }
}

#[test]
fn tiny_and_nan_inputs() {
    assert_eq!(std_normal_log_pdf(5e-324), -0.5 * LN_2PI);
    assert_eq!(std_normal_log_pdf(-0.0), -0.5 * LN_2PI);
    assert!(std_normal_log_pdf(f64::NAN).is_nan());
}
