//! Dual numbers for forward-mode derivatives in the derivation's numeric checks, and the
//! checks' deterministic random numbers.

use std::ops::{Add, Div, Mul, Sub};

/// A dual number a + b·ε (ε² = 0): forward-mode differentiation.
#[derive(Debug, Clone, Copy)]
pub struct Dual {
    pub v: f64,
    pub d: f64,
}

impl Add for Dual {
    type Output = Dual;
    fn add(self, o: Dual) -> Dual {
        Dual { v: self.v + o.v, d: self.d + o.d }
    }
}
impl Sub for Dual {
    type Output = Dual;
    fn sub(self, o: Dual) -> Dual {
        Dual { v: self.v - o.v, d: self.d - o.d }
    }
}
impl Mul for Dual {
    type Output = Dual;
    fn mul(self, o: Dual) -> Dual {
        Dual { v: self.v * o.v, d: self.d * o.v + self.v * o.d }
    }
}
impl Div for Dual {
    type Output = Dual;
    fn div(self, o: Dual) -> Dual {
        Dual { v: self.v / o.v, d: (self.d * o.v - self.v * o.d) / (o.v * o.v) }
    }
}
impl Dual {
    pub fn sqrt(self) -> Dual {
        let s = self.v.sqrt();
        Dual { v: s, d: self.d / (2.0 * s) }
    }
    pub fn exp(self) -> Dual {
        let e = self.v.exp();
        Dual { v: e, d: self.d * e }
    }
    pub fn ln(self) -> Dual {
        Dual { v: self.v.ln(), d: self.d / self.v }
    }
    /// A constant.
    pub fn c(v: f64) -> Dual {
        Dual { v, d: 0.0 }
    }
}

/// A small deterministic generator for the check (splitmix64 → uniform (−1, 1)).
pub struct Gen(pub u64);
impl Gen {
    pub fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
}
