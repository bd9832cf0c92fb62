//! A small, fast, seeded random number generator (xoshiro256++ seeded by splitmix64) with
//! uniform and standard normal draws: what `sample` of a compiled flow needs. The same seed
//! gives the same numbers on every platform.
//!
//! ```
//! let mut rng = runtime::rng::Rng::new(42);
//! let z: f64 = rng.normal();
//! assert!(z.is_finite());
//! assert_eq!(runtime::rng::Rng::new(42).normal(), z);
//! ```

use crate::real::Real;

/// xoshiro256++ (Blackman and Vigna), 256 bits of state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rng {
    s: [u64; 4],
    /// The second value of the last Box-Muller pair, not yet returned.
    spare: Option<u64>,
}

fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Rng {
    /// A generator whose whole sequence is determined by `seed`.
    pub fn new(seed: u64) -> Rng {
        let mut x = seed;
        Rng { s: [splitmix64(&mut x), splitmix64(&mut x), splitmix64(&mut x), splitmix64(&mut x)], spare: None }
    }

    /// 64 uniformly random bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let r = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        r
    }

    /// Uniform in the open interval (0, 1), on a grid of 2^-53.
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
    }

    /// A standard normal draw (Box-Muller; the pair's second value is kept for the next call).
    pub fn normal(&mut self) -> f64 {
        if let Some(bits) = self.spare.take() {
            return f64::from_bits(bits);
        }
        let (u, v) = (self.uniform(), self.uniform());
        let r = (-2.0 * u.ln()).sqrt();
        let (s, c) = (std::f64::consts::TAU * v).sin_cos();
        self.spare = Some((r * s).to_bits());
        r * c
    }

    /// A Gamma(shape, 1) draw, shape > 0 (Marsaglia and Tsang's squeeze for shape ≥ 1; below
    /// 1, Gamma(shape + 1)·U^(1/shape)).
    pub fn gamma(&mut self, shape: f64) -> f64 {
        if shape < 1.0 {
            let u = self.uniform();
            return self.gamma(shape + 1.0) * u.powf(1.0 / shape);
        }
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = 1.0 + c * x;
            if v <= 0.0 {
                continue;
            }
            let v = v * v * v;
            let u = self.uniform();
            if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
                return d * v;
            }
        }
    }

    /// Fills `out` with a Dirichlet(`alpha`) draw (Gamma(α_i, 1) variates over their sum),
    /// rounded to `T`.
    pub fn fill_dirichlet<T: Real>(&mut self, alpha: &[f64], out: &mut [T]) {
        let g: Vec<f64> = alpha.iter().map(|a| self.gamma(*a)).collect();
        let s: f64 = g.iter().sum();
        for (v, x) in out.iter_mut().zip(&g) {
            *v = T::from_f64(x / s);
        }
    }

    /// Fills `out` (n values) with a von Mises–Fisher draw on S^(n−1), mean direction the last
    /// axis ([`crate::base::vmf_draw`]), rounded to `T`.
    pub fn fill_vmf<T: Real>(&mut self, kappa: f64, out: &mut [T]) {
        let rng = std::cell::RefCell::new(self);
        let mut x = vec![0.0; out.len()];
        crate::base::vmf_draw(kappa, &mut x, &mut || rng.borrow_mut().uniform(), &mut || rng.borrow_mut().normal(), &mut |a| {
            rng.borrow_mut().gamma(a)
        });
        for (v, w) in out.iter_mut().zip(&x) {
            *v = T::from_f64(*w);
        }
    }

    /// Fills `out` with standard normal draws, rounded to `T`.
    pub fn fill_normal<T: Real>(&mut self, out: &mut [T]) {
        for v in out {
            *v = T::from_f64(self.normal());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gamma_and_dirichlet_moments() {
        let mut rng = Rng::new(9);
        for shape in [0.3, 1.0, 4.5] {
            let n = 200_000;
            let xs: Vec<f64> = (0..n).map(|_| rng.gamma(shape)).collect();
            let mean = xs.iter().sum::<f64>() / n as f64;
            let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64;
            // Gamma(k, 1): mean k, variance k
            assert!((mean - shape).abs() < 0.02 * shape.max(1.0), "shape {shape}: mean {mean}");
            assert!((var - shape).abs() < 0.05 * shape.max(1.0), "shape {shape}: variance {var}");
        }
        let mut z = [0.0f64; 3];
        rng.fill_dirichlet(&[1.0, 2.0, 3.0], &mut z);
        assert!((z.iter().sum::<f64>() - 1.0).abs() < 1e-15 && z.iter().all(|v| *v > 0.0));
    }

    #[test]
    fn normal_draws_have_unit_variance() {
        let mut r = Rng::new(7);
        let n = 200_000;
        let xs: Vec<f64> = (0..n).map(|_| r.normal()).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.01 && (var - 1.0).abs() < 0.02, "{mean} {var}");
    }

    #[test]
    fn uniform_is_inside_the_open_interval() {
        let mut r = Rng::new(0);
        assert!((0..10_000).map(|_| r.uniform()).all(|u| u > 0.0 && u < 1.0));
    }
}
