//! The stated lemmas of the manifold maps ([`Lemma`]: a closed form's derivation from the
//! generic volume ratio and its numeric check), the dual numbers of those checks' forward-mode
//! derivatives, and their deterministic random numbers.

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

/// The Jacobian (n × n, row-major) of `f` at `x` by n forward-mode passes.
pub fn jacobian(f: impl Fn(&[Dual]) -> Vec<Dual>, x: &[f64]) -> Vec<f64> {
    let n = x.len();
    let mut jac = vec![0.0; n * n];
    for c in 0..n {
        let xd: Vec<Dual> = x.iter().enumerate().map(|(i, v)| Dual { v: *v, d: f64::from(u8::from(i == c)) }).collect();
        for (r, y) in f(&xd).iter().enumerate() {
            jac[r * n + c] = y.d;
        }
    }
    jac
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

/// The largest relative difference allowed between a lemma's closed form and the generic ratio.
pub const TOL: f64 = 1e-12;

/// Random points a lemma is checked at.
pub const POINTS: usize = 256;

/// A closed form supplied by a stated lemma: its derivation from the generic volume ratio,
/// step by step, the inverse, and the numeric check against the generic ratio.
#[derive(Debug, Clone)]
pub struct Lemma {
    /// (formula, why), from the generic form to the closed form.
    pub steps: Vec<(String, String)>,
    /// The inverse, line by line.
    pub inverse: Vec<String>,
    /// Points compared with the generic ratio, and the largest relative difference seen.
    pub points: usize,
    pub max_rel: f64,
}

impl Lemma {
    /// The derivation as `flowc derive` prints it under a layer: the forward map, the steps,
    /// the check (`against`: how the generic ratio was computed, `on`: where), the inverse.
    pub fn text(&self, forward: &str, against: &str, on: &str, bar: f64) -> String {
        let mut s = format!("    forward    {forward}\n");
        for (i, (f, why)) in self.steps.iter().enumerate() {
            let head = if i == 0 { "    ratio      " } else { "      step     " };
            s.push_str(&format!("{head}{f}   [{why}]\n"));
        }
        s.push_str(&format!(
            "    lemma      stated (the scalar rules do not reach it); checked against the generic ratio ({against}) at {} random points {on}: max relative difference {:.1e} (bar {bar:.0e})\n",
            self.points, self.max_rel
        ));
        for (i, line) in self.inverse.iter().enumerate() {
            let head = if i == 0 { "    inverse    " } else { "               " };
            s.push_str(&format!("{head}{line}\n"));
        }
        s
    }
}
