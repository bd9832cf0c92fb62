//! Helpers shared by the integration tests.

/// `n` deterministic values spread uniformly over [-width/2, width/2) (xorshift64).
pub fn spread(n: usize, seed: u64, width: f64) -> Vec<f64> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let u = (s >> 11) as f64 / (1u64 << 53) as f64;
            (u - 0.5) * width
        })
        .collect()
}
