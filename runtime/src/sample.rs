//! Seeded random numbers for sampling and initialization, reproducible whatever the number of
//! threads: the stream is cut into blocks of [`BLOCK`] rows, and block b draws from its own
//! generator (xoshiro256++ seeded from the seed and b), so any row range gives the same values.

use rand::rngs::Xoshiro256PlusPlus;
use rand::SeedableRng;
use rand_distr::{Distribution, Gamma, StandardNormal, Uniform};

/// Rows per independently seeded block.
pub const BLOCK: usize = 1024;

fn block_rng(seed: u64, block: u64) -> Xoshiro256PlusPlus {
    // distinct streams per (seed, block)
    Xoshiro256PlusPlus::seed_from_u64(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ block.wrapping_mul(0xbf58_476d_1ce4_e5b9).rotate_left(31))
}

/// Standard normal values of rows `first .. first + rows` (`dim` per row) of stream `seed`.
pub fn normal_rows(seed: u64, first: usize, rows: usize, dim: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(rows * dim);
    let mut r = first;
    while r < first + rows {
        let b = r / BLOCK;
        let mut rng = block_rng(seed, b as u64);
        let skip = (r % BLOCK) * dim;
        for _ in 0..skip {
            let _: f64 = StandardNormal.sample(&mut rng);
        }
        let end = ((b + 1) * BLOCK).min(first + rows);
        for _ in 0..(end - r) * dim {
            out.push(StandardNormal.sample(&mut rng));
        }
        r = end;
    }
    out
}

/// Points uniform on the unit sphere S^(dim−1): rows `first .. first + rows` of stream `seed`,
/// each the normalized row of [`normal_rows`] (reproducible the same way).
pub fn sphere_rows(seed: u64, first: usize, rows: usize, dim: usize) -> Vec<f64> {
    let mut out = normal_rows(seed, first, rows, dim);
    for row in out.chunks_mut(dim.max(1)) {
        let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt();
        row.iter_mut().for_each(|v| *v /= norm);
    }
    out
}

/// Points from the Dirichlet distribution with parameters `alpha` (> 0) on the simplex in
/// R^alpha.len(): rows `first .. first + rows` of stream `seed`, each a row of Gamma(α_i, 1)
/// variates over its sum (reproducible like [`normal_rows`]).
pub fn dirichlet_rows(seed: u64, first: usize, rows: usize, alpha: &[f64]) -> Vec<f64> {
    let dim = alpha.len();
    let gammas: Vec<Gamma<f64>> = alpha.iter().map(|a| Gamma::new(*a, 1.0).expect("a positive shape")).collect();
    let mut out = Vec::with_capacity(rows * dim);
    let mut r = first;
    while r < first + rows {
        let b = r / BLOCK;
        let mut rng = block_rng(seed ^ 0xd1e1, b as u64);
        let end = ((b + 1) * BLOCK).min(first + rows);
        // the block's rows before `r` are drawn and dropped (gamma variates take a variable
        // number of draws each)
        for row in b * BLOCK..end {
            let g: Vec<f64> = gammas.iter().map(|d| d.sample(&mut rng)).collect();
            if row >= r {
                let s: f64 = g.iter().sum();
                out.extend(g.iter().map(|v| v / s));
            }
        }
        r = end;
    }
    out
}

/// Points from the von Mises–Fisher distribution on S^(dim−1) with mean direction the last
/// axis and concentration `kappa` ([`crate::base::vmf_draw`]): rows `first .. first + rows`
/// of stream `seed`, reproducible like [`normal_rows`].
pub fn vmf_rows(seed: u64, first: usize, rows: usize, dim: usize, kappa: f64) -> Vec<f64> {
    let mut out = Vec::with_capacity(rows * dim);
    let mut r = first;
    let mut row = vec![0.0; dim];
    while r < first + rows {
        let b = r / BLOCK;
        let rng = std::cell::RefCell::new(block_rng(seed ^ 0x7f3f, b as u64));
        let end = ((b + 1) * BLOCK).min(first + rows);
        // the block's rows before `r` are drawn and dropped (draws take a variable count)
        for i in b * BLOCK..end {
            crate::base::vmf_draw(
                kappa,
                &mut row,
                &mut || Uniform::new(0.0f64, 1.0).expect("a range").sample(&mut *rng.borrow_mut()).max(f64::MIN_POSITIVE),
                &mut || StandardNormal.sample(&mut *rng.borrow_mut()),
                &mut |a| Gamma::new(a, 1.0).expect("a positive shape").sample(&mut *rng.borrow_mut()),
            );
            if i >= r {
                out.extend_from_slice(&row);
            }
        }
        r = end;
    }
    out
}

/// `n` values uniform in [-bound, bound), stream `seed` (for initialization).
pub fn uniform(seed: u64, n: usize, bound: f64) -> Vec<f64> {
    let mut rng = block_rng(seed, u64::MAX);
    if bound <= 0.0 {
        return vec![0.0; n];
    }
    let u = Uniform::new(-bound, bound).expect("a non-empty range");
    (0..n).map(|_| u.sample(&mut rng)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirichlet_rows_are_reproducible_and_have_the_right_means() {
        let alpha = [0.5, 2.0, 7.5];
        let all = dirichlet_rows(3, 0, 3000, &alpha);
        assert_eq!(&all[3 * 1000..3 * 2500], &dirichlet_rows(3, 1000, 1500, &alpha)[..]);
        for (i, a) in alpha.iter().enumerate() {
            let mean: f64 = all.chunks(3).map(|r| r[i]).sum::<f64>() / 3000.0;
            assert!((mean - a / 10.0).abs() < 0.01, "coordinate {i}: mean {mean}");
        }
        assert!(all.chunks(3).all(|r| (r.iter().sum::<f64>() - 1.0).abs() < 1e-15 && r.iter().all(|v| *v > 0.0)));
    }

    #[test]
    fn row_ranges_give_the_same_values() {
        let all = normal_rows(7, 0, 3000, 3);
        let part = normal_rows(7, 1000, 1500, 3);
        assert_eq!(&all[3000..7500], &part[..]);
        assert_ne!(normal_rows(8, 0, 10, 3), normal_rows(7, 0, 10, 3));
        let m: f64 = all.iter().sum::<f64>() / all.len() as f64;
        let v: f64 = all.iter().map(|x| x * x).sum::<f64>() / all.len() as f64;
        assert!(m.abs() < 0.05 && (v - 1.0).abs() < 0.05, "mean {m}, variance {v}");
    }
}
