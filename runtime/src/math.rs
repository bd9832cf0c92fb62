//! Scalar functions that compiled flows call: numerically careful forms of the composite
//! ops of the flow language (the compiler's reference evaluator uses the same code).
//!
//! ```
//! use runtime::math::softplus;
//! assert_eq!(softplus(1000.0), 1000.0); // log(1 + e^x) would overflow
//! assert_eq!(softplus(-40.0), (-40f64).exp()); // log(1 + e^x) would round to 0
//! ```

/// 1 / (1 + e^-x), without overflow for either sign.
pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// log(p / (1 - p)).
///
/// Near ½ the ratio p/(1 − p) is near 1, so it is computed as log1p of an exact difference:
/// 2p − 1 and 1 − p are exact for p ≥ ½, 1 − 2p for p ≥ ¼.
pub fn logit(p: f64) -> f64 {
    if p < 0.25 {
        p.ln() - (-p).ln_1p()
    } else if p < 0.5 {
        -((1.0 - 2.0 * p) / p).ln_1p()
    } else {
        ((2.0 * p - 1.0) / (1.0 - p)).ln_1p()
    }
}

/// log(1 + e^x), without overflow or cancellation.
pub fn softplus(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

/// log(cosh(u)) = |u| - log 2 + log1p(e^(-2|u|)).
pub fn logcosh(u: f64) -> f64 {
    let a = u.abs();
    // below 2 the large-|u| form cancels (|u| against log1p(...) ≈ -|u| + value)
    if a < 2.0 {
        // cosh(u) - 1 = 2 sinh(u/2)^2, no cancellation near 0
        let s = (0.5 * a).sinh();
        (2.0 * s * s).ln_1p()
    } else {
        a - std::f64::consts::LN_2 + (-2.0 * a).exp().ln_1p()
    }
}

/// a^(1/d), accurate even when 1/d is not representable: 1/d = r + r_lo exactly (the
/// low part from a fused multiply-add), and a^(1/d) = a^r · e^(r_lo · ln a).
pub fn pow_recip(a: f64, d: f64) -> f64 {
    let r = 1.0 / d;
    let p = a.powf(r);
    let r_lo = (-r).mul_add(d, 1.0) / d;
    let t = r_lo * a.ln();
    if !t.is_finite() || r_lo == 0.0 || !p.is_finite() || p == 0.0 {
        return p;
    }
    p + p * t.exp_m1()
}

/// -1, 0 or 1 (NaN stays NaN).
pub fn sign(a: f64) -> f64 {
    if a > 0.0 {
        1.0
    } else if a < 0.0 {
        -1.0
    } else {
        a
    }
}
