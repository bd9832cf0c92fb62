//! Densities on embedded manifolds: the differential volume ratio of a map between points of
//! an m-dimensional manifold in R^n, R_f(x) = |det(T_yᵀ F_x T_x)| (F_x the ambient Jacobian,
//! T_x and T_y orthonormal tangent bases at x and y = f(x)), computed generically, and the
//! sphere's normalized affine flow and the simplex's calibration flows, with their closed-form
//! inverses and ratios.
//!
//! On the unit sphere S^(n−1) ⊂ R^n a tangent basis at x is the Householder reflection of x
//! onto ±e_k without its k-th column. For y = (Mx + b)/‖Mx + b‖ with x on the sphere,
//! Mx + b = (M + b xᵀ) x, and the ratio is |det(M + b xᵀ)| / ‖Mx + b‖^n
//! = |det M| · |1 + xᵀM⁻¹b| / ‖Mx + b‖^n (the matrix determinant lemma), which
//! [`volume_ratio`] confirms numerically (tests).
//!
//! On the open simplex {x > 0, Σx = 1} the tangent space is 1^⊥ everywhere. The calibration
//! map y = softmax(A·log x + b), with A's rows summing to λ (so A·1 = λ·1 and A acts on
//! log-ratios), is affine in the log-ratio coordinates; its ratio is
//! |det A / λ| · Π y_i / Π x_i (for A = a·I: a^(n−1) · Π y_i / Π x_i), and its inverse
//! x = softmax(A⁻¹(log y − b)).
//!
//! ```
//! use runtime::manifold::{sphere_tangent, volume_ratio, NormalizedAffine};
//! let f = NormalizedAffine::new(3, vec![1.2, 0.1, 0.0, -0.2, 0.9, 0.3, 0.0, 0.1, 1.1], vec![0.1, -0.2, 0.3]).unwrap();
//! let x = [0.6, 0.0, 0.8];
//! let y = f.forward(&x);
//! assert!(((y[0] * y[0] + y[1] * y[1] + y[2] * y[2]).sqrt() - 1.0).abs() < 1e-15);
//! let back = f.inverse(&y);
//! assert!((back[0] - x[0]).abs() < 1e-14 && (back[2] - x[2]).abs() < 1e-14);
//! // the closed form against the generic ratio with the exact Jacobian of u ↦ u/‖u‖ ∘ (Mx + b)
//! let ratio = f.log_ratio(&x).exp();
//! let generic = volume_ratio(&f.jacobian(&x), &sphere_tangent(&x), &sphere_tangent(&y), 3);
//! assert!((ratio - generic).abs() < 1e-13 * ratio);
//! ```

/// An orthonormal basis of the tangent space of the unit sphere at `x` (‖x‖ = 1): n vectors
/// of n values each, n − 1 of them, as columns of an n × (n − 1) row-major matrix.
pub fn sphere_tangent(x: &[f64]) -> Vec<f64> {
    let n = x.len();
    // the Householder reflection H = I − 2vvᵀ/vᵀv with v = x + sign(x_k)e_k, k the largest
    // entry: H x = −sign(x_k)e_k, so H's other columns are orthonormal and orthogonal to x
    let k = (0..n).max_by(|a, b| x[*a].abs().total_cmp(&x[*b].abs())).unwrap_or(0);
    let mut v = x.to_vec();
    v[k] += if x[k] >= 0.0 { 1.0 } else { -1.0 };
    let vv: f64 = v.iter().map(|a| a * a).sum();
    let mut t = Vec::with_capacity(n * (n - 1));
    for i in 0..n {
        for j in (0..n).filter(|j| *j != k) {
            let h = f64::from(u8::from(i == j)) - 2.0 * v[i] * v[j] / vv;
            t.push(h);
        }
    }
    t
}

/// |det(T_yᵀ F T_x)| for an ambient Jacobian `f` (n × n, row-major) and tangent bases `tx`,
/// `ty` (n × m, row-major, orthonormal columns): the density factor of the map between the
/// manifolds at x. The m × m determinant by Gaussian elimination with partial pivoting.
pub fn volume_ratio(f: &[f64], tx: &[f64], ty: &[f64], n: usize) -> f64 {
    let m = tx.len() / n;
    // F T_x: n × m
    let mut ft = vec![0.0; n * m];
    for i in 0..n {
        for j in 0..m {
            ft[i * m + j] = (0..n).map(|l| f[i * n + l] * tx[l * m + j]).sum();
        }
    }
    // T_yᵀ (F T_x): m × m
    let mut a = vec![0.0; m * m];
    for i in 0..m {
        for j in 0..m {
            a[i * m + j] = (0..n).map(|l| ty[l * m + i] * ft[l * m + j]).sum();
        }
    }
    determinant(&mut a, m).abs()
}

/// The determinant of an m × m row-major matrix (overwritten), by elimination with partial
/// pivoting.
pub fn determinant(a: &mut [f64], m: usize) -> f64 {
    let mut det = 1.0;
    for c in 0..m {
        let p = (c..m).max_by(|x, y| a[x * m + c].abs().total_cmp(&a[y * m + c].abs())).unwrap_or(c);
        if a[p * m + c] == 0.0 {
            return 0.0;
        }
        if p != c {
            for j in 0..m {
                a.swap(p * m + j, c * m + j);
            }
            det = -det;
        }
        let d = a[c * m + c];
        det *= d;
        for r in c + 1..m {
            let q = a[r * m + c] / d;
            for j in c..m {
                a[r * m + j] -= q * a[c * m + j];
            }
        }
    }
    det
}

/// The sphere flow y = (Mx + b)/‖Mx + b‖ on S^(n−1), a bijection when ‖M⁻¹b‖ < 1.
#[derive(Debug, Clone, PartialEq)]
pub struct NormalizedAffine {
    n: usize,
    m: Vec<f64>,
    b: Vec<f64>,
    /// M⁻¹ (row-major), c = M⁻¹b, log|det M|.
    m_inv: Vec<f64>,
    c: Vec<f64>,
    log_det: f64,
}

fn mat_vec(m: &[f64], x: &[f64]) -> Vec<f64> {
    let n = x.len();
    (0..n).map(|i| (0..n).map(|j| m[i * n + j] * x[j]).sum()).collect()
}

fn norm(v: &[f64]) -> f64 {
    // scaled, so that huge and tiny entries neither overflow nor underflow
    let s = v.iter().fold(0.0f64, |a, x| a.max(x.abs()));
    if s == 0.0 || !s.is_finite() {
        return s;
    }
    s * v.iter().map(|x| (x / s) * (x / s)).sum::<f64>().sqrt()
}

impl NormalizedAffine {
    /// The flow on S^(n−1) for M (n × n, row-major) and b. `Err` when M is singular or
    /// ‖M⁻¹b‖ ≥ 1 (then the map is not a bijection of the sphere).
    pub fn new(n: usize, m: Vec<f64>, b: Vec<f64>) -> Result<NormalizedAffine, String> {
        if m.len() != n * n || b.len() != n || n < 2 {
            return Err(format!(
                "a normalized affine map on S^{} needs M with {} values and b with {n} (got {} and {})",
                n.max(1) - 1,
                n * n,
                m.len(),
                b.len()
            ));
        }
        // M⁻¹ by Gauss–Jordan with partial pivoting, and log|det M|
        let mut a = m.clone();
        let mut inv: Vec<f64> = (0..n * n).map(|i| f64::from(u8::from(i / n == i % n))).collect();
        let mut log_det = 0.0;
        for c in 0..n {
            let p = (c..n).max_by(|x, y| a[x * n + c].abs().total_cmp(&a[y * n + c].abs())).unwrap_or(c);
            let d = a[p * n + c];
            if d == 0.0 || !d.is_finite() {
                return Err("M is singular".into());
            }
            for j in 0..n {
                a.swap(p * n + j, c * n + j);
                inv.swap(p * n + j, c * n + j);
            }
            log_det += d.abs().ln();
            for j in 0..n {
                a[c * n + j] /= d;
                inv[c * n + j] /= d;
            }
            for r in (0..n).filter(|r| *r != c) {
                let q = a[r * n + c];
                for j in 0..n {
                    a[r * n + j] -= q * a[c * n + j];
                    inv[r * n + j] -= q * inv[c * n + j];
                }
            }
        }
        let c = mat_vec(&inv, &b);
        if norm(&c) >= 1.0 {
            return Err(format!("‖M⁻¹b‖ = {} is not below 1: the map is not a bijection of the sphere", norm(&c)));
        }
        Ok(NormalizedAffine { n, m, b, m_inv: inv, c, log_det })
    }

    /// y = (Mx + b)/‖Mx + b‖.
    pub fn forward(&self, x: &[f64]) -> Vec<f64> {
        let u: Vec<f64> = mat_vec(&self.m, x).iter().zip(&self.b).map(|(a, b)| a + b).collect();
        let r = norm(&u);
        u.iter().map(|v| v / r).collect()
    }

    /// log R(x) = log|det M| + log|1 + cᵀx| − n·log‖Mx + b‖, c = M⁻¹b.
    pub fn log_ratio(&self, x: &[f64]) -> f64 {
        let u: Vec<f64> = mat_vec(&self.m, x).iter().zip(&self.b).map(|(a, b)| a + b).collect();
        let cx: f64 = self.c.iter().zip(x).map(|(a, b)| a * b).sum();
        self.log_det + cx.ln_1p() - self.n as f64 * norm(&u).ln()
    }

    /// The x on the sphere with f(x) = y: x = r·M⁻¹y − c for the positive root r of
    /// ‖r·a − c‖ = 1 (a = M⁻¹y), taken in the form without cancellation.
    pub fn inverse(&self, y: &[f64]) -> Vec<f64> {
        let a = mat_vec(&self.m_inv, y);
        let aa: f64 = a.iter().map(|v| v * v).sum();
        let ac: f64 = a.iter().zip(&self.c).map(|(p, q)| p * q).sum();
        let cc: f64 = self.c.iter().map(|v| v * v).sum();
        let disc = (ac * ac + aa * (1.0 - cc)).sqrt();
        let r = if ac >= 0.0 { (ac + disc) / aa } else { (1.0 - cc) / (disc - ac) };
        a.iter().zip(&self.c).map(|(p, q)| r * p - q).collect()
    }

    /// The ambient Jacobian at x of x ↦ (Mx + b)/‖Mx + b‖: (I − yyᵀ)M/‖Mx + b‖.
    pub fn jacobian(&self, x: &[f64]) -> Vec<f64> {
        let n = self.n;
        let u: Vec<f64> = mat_vec(&self.m, x).iter().zip(&self.b).map(|(a, b)| a + b).collect();
        let r = norm(&u);
        let y: Vec<f64> = u.iter().map(|v| v / r).collect();
        let mut j = vec![0.0; n * n];
        for i in 0..n {
            for k in 0..n {
                let p: f64 = (0..n).map(|l| (f64::from(u8::from(i == l)) - y[i] * y[l]) * self.m[l * n + k]).sum();
                j[i * n + k] = p / r;
            }
        }
        j
    }
}

/// An orthonormal basis of 1^⊥ in R^n (the simplex's tangent space): n × (n − 1), row-major.
pub fn simplex_tangent(n: usize) -> Vec<f64> {
    let one = vec![1.0 / (n as f64).sqrt(); n];
    sphere_tangent(&one)
}

/// Helmert's orthonormal basis of 1^⊥ in R^n: n × (n − 1), row-major; column j (from 0) is
/// (1, …, 1, −(j + 1), 0, …, 0)/√((j + 1)(j + 2)) with j + 1 ones. The ilr coordinates of a
/// point x of the simplex are Qᵀ log x.
///
/// ```
/// let q = runtime::manifold::helmert(3);
/// // orthonormal columns, orthogonal to (1, 1, 1)
/// let col = |j: usize| [q[j], q[2 + j], q[4 + j]];
/// let dot = |a: [f64; 3], b: [f64; 3]| a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
/// assert!((dot(col(0), col(0)) - 1.0).abs() < 1e-15 && dot(col(0), col(1)).abs() < 1e-15);
/// assert!(dot(col(1), [1.0, 1.0, 1.0]).abs() < 1e-15);
/// ```
pub fn helmert(n: usize) -> Vec<f64> {
    let m = n.saturating_sub(1);
    let mut q = vec![0.0; n * m];
    for j in 0..m {
        let s = 1.0 / (((j + 1) * (j + 2)) as f64).sqrt();
        for i in 0..=j {
            q[i * m + j] = s;
        }
        q[(j + 1) * m + j] = -((j + 1) as f64) * s;
    }
    q
}

/// A = Q B Qᵀ + 11ᵀ/n for the (n − 1) × (n − 1) matrix `b` (row-major), Q Helmert's basis
/// ([`helmert`]): the generalized calibration's matrix, A·1 = 1, acting as B on the ilr
/// coordinates.
pub fn ilr_lift(b: &[f64], n: usize) -> Vec<f64> {
    let m = n - 1;
    let q = helmert(n);
    (0..n * n)
        .map(|e| {
            let (i, j) = (e / n, e % n);
            let qbq: f64 = (0..m).map(|r| (0..m).map(|c| q[i * m + r] * b[r * m + c] * q[j * m + c]).sum::<f64>()).sum();
            qbq + 1.0 / n as f64
        })
        .collect()
}

/// L·U for the n × n factors stored as `linear(lu)` stores them: L unit lower triangular from
/// `lower`'s strict lower part, U upper triangular from `upper`'s strict upper part with
/// diagonal exp(`log_diag`); row-major.
pub fn lu_product(lower: &[f64], upper: &[f64], log_diag: &[f64], n: usize) -> Vec<f64> {
    let l = |i: usize, j: usize| match j.cmp(&i) {
        std::cmp::Ordering::Equal => 1.0,
        std::cmp::Ordering::Less => lower[i * n + j],
        std::cmp::Ordering::Greater => 0.0,
    };
    let u = |i: usize, j: usize| match j.cmp(&i) {
        std::cmp::Ordering::Equal => log_diag[i].exp(),
        std::cmp::Ordering::Greater => upper[i * n + j],
        std::cmp::Ordering::Less => 0.0,
    };
    (0..n * n).map(|e| (0..n).map(|t| l(e / n, t) * u(t, e % n)).sum()).collect()
}

/// softmax(v), the largest entry subtracted first.
pub fn softmax(v: &[f64]) -> Vec<f64> {
    let m = v.iter().fold(f64::NEG_INFINITY, |a, b| a.max(*b));
    let e: Vec<f64> = v.iter().map(|x| (x - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|x| x / s).collect()
}

/// The simplex flow y = softmax(A·log x + b) with A's rows summing to λ ≠ 0: the
/// generalized calibration map (A = a·I, a > 0, is the calibration map).
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    n: usize,
    a: Vec<f64>,
    b: Vec<f64>,
    a_inv: Vec<f64>,
    /// log|det A / λ|.
    log_det: f64,
}

impl Calibration {
    /// softmax(a·log x + b), a > 0.
    pub fn scalar(n: usize, a: f64, b: Vec<f64>) -> Result<Calibration, String> {
        if !(a > 0.0 && a.is_finite()) {
            return Err(format!("the calibration's a must be positive (got {a})"));
        }
        let m: Vec<f64> = (0..n * n).map(|i| if i / n == i % n { a } else { 0.0 }).collect();
        Calibration::new(n, m, b)
    }

    /// softmax(A·log x + b); `Err` unless A's rows all sum to the same nonzero λ and A is
    /// invertible.
    pub fn new(n: usize, a: Vec<f64>, b: Vec<f64>) -> Result<Calibration, String> {
        if a.len() != n * n || b.len() != n || n < 2 {
            return Err(format!("a calibration map on the simplex in R^{n} needs A with {} values and b with {n}", n * n));
        }
        let sums: Vec<f64> = (0..n).map(|i| a[i * n..(i + 1) * n].iter().sum()).collect();
        let lambda = sums[0];
        let scale = a.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        if lambda == 0.0 || sums.iter().any(|s| (s - lambda).abs() > 1e-12 * scale.max(1.0) * n as f64) {
            return Err("A's rows must all sum to the same nonzero value (A·1 = λ·1)".into());
        }
        let inv = NormalizedAffine::new(n, a.clone(), vec![0.0; n]).map_err(|e| format!("A: {e}"))?;
        let log_det = inv.log_det - lambda.abs().ln();
        Ok(Calibration { n, a, b, a_inv: inv.m_inv, log_det })
    }

    /// y = softmax(A·log x + b).
    pub fn forward(&self, x: &[f64]) -> Vec<f64> {
        let lx: Vec<f64> = x.iter().map(|v| v.ln()).collect();
        let v: Vec<f64> = mat_vec(&self.a, &lx).iter().zip(&self.b).map(|(p, q)| p + q).collect();
        softmax(&v)
    }

    /// log R(x) = log|det A / λ| + Σ log y_i − Σ log x_i.
    pub fn log_ratio(&self, x: &[f64]) -> f64 {
        let y = self.forward(x);
        self.log_det + y.iter().map(|v| v.ln()).sum::<f64>() - x.iter().map(|v| v.ln()).sum::<f64>()
    }

    /// x = softmax(A⁻¹(log y − b)).
    pub fn inverse(&self, y: &[f64]) -> Vec<f64> {
        let v: Vec<f64> = y.iter().zip(&self.b).map(|(p, q)| p.ln() - q).collect();
        softmax(&mat_vec(&self.a_inv, &v))
    }

    /// The ambient Jacobian at x: (diag y − y yᵀ)·A·diag(1/x).
    pub fn jacobian(&self, x: &[f64]) -> Vec<f64> {
        let n = self.n;
        let y = self.forward(x);
        let mut j = vec![0.0; n * n];
        for i in 0..n {
            for k in 0..n {
                let s: f64 = (0..n).map(|l| (if i == l { y[i] } else { 0.0 } - y[i] * y[l]) * self.a[l * n + k]).sum();
                j[i * n + k] = s / x[k];
            }
        }
        j
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn unit(rng: &mut Rng, n: usize) -> Vec<f64> {
        let v: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
        let r = norm(&v);
        v.iter().map(|a| a / r).collect()
    }

    fn flow(rng: &mut Rng, n: usize) -> NormalizedAffine {
        loop {
            let m: Vec<f64> = (0..n * n).map(|i| f64::from(u8::from(i / n == i % n)) + 0.3 * rng.normal()).collect();
            let b: Vec<f64> = (0..n).map(|_| 0.3 * rng.normal()).collect();
            if let Ok(f) = NormalizedAffine::new(n, m, b) {
                return f;
            }
        }
    }

    /// The ambient Jacobian by forward-mode dual numbers on the map as written (an
    /// implementation independent of [`NormalizedAffine::jacobian`]).
    fn dual_jacobian(f: &NormalizedAffine, x: &[f64]) -> Vec<f64> {
        let n = x.len();
        let mut j = vec![0.0; n * n];
        for k in 0..n {
            // (value, derivative along e_k)
            let u: Vec<(f64, f64)> = (0..n)
                .map(|i| {
                    let v: f64 = (0..n).map(|l| f.m[i * n + l] * x[l]).sum::<f64>() + f.b[i];
                    (v, f.m[i * n + k])
                })
                .collect();
            let s: (f64, f64) = u.iter().fold((0.0, 0.0), |(a, da), (v, dv)| (a + v * v, da + 2.0 * v * dv));
            let r = (s.0.sqrt(), s.1 / (2.0 * s.0.sqrt()));
            for i in 0..n {
                j[i * n + k] = (u[i].1 * r.0 - u[i].0 * r.1) / (r.0 * r.0);
            }
        }
        j
    }

    #[test]
    fn closed_form_ratios_match_the_generic_ratio() {
        let mut rng = Rng::new(7);
        let mut worst: f64 = 0.0;
        // 10^5 points: 4 dimensions × 25 flows × 1000
        for n in [2, 3, 5, 8] {
            for _ in 0..25 {
                let f = flow(&mut rng, n);
                for _ in 0..1000 {
                    let x = unit(&mut rng, n);
                    let y = f.forward(&x);
                    let generic = volume_ratio(&dual_jacobian(&f, &x), &sphere_tangent(&x), &sphere_tangent(&y), n);
                    let closed = f.log_ratio(&x).exp();
                    worst = worst.max((closed - generic).abs() / closed);
                }
            }
        }
        assert!(worst < 1e-12, "largest relative difference {worst:e}");
    }

    #[test]
    fn round_trips_stay_on_the_sphere() {
        let mut rng = Rng::new(11);
        for n in [2, 3, 4, 16] {
            let f = flow(&mut rng, n);
            for _ in 0..1000 {
                let x = unit(&mut rng, n);
                let y = f.forward(&x);
                let back = f.inverse(&y);
                let ny = norm(&y);
                assert!((ny - 1.0).abs() <= 4.0 * f64::EPSILON, "‖y‖ − 1 = {:e}", ny - 1.0);
                let err = x.iter().zip(&back).fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
                assert!(err < 1e-12, "round trip error {err:e} (n = {n})");
                assert!((norm(&back) - 1.0).abs() < 1e-13);
            }
        }
    }

    #[test]
    fn tangent_bases_are_orthonormal_and_orthogonal_to_the_point() {
        let mut rng = Rng::new(3);
        for n in [2, 3, 7] {
            let x = unit(&mut rng, n);
            let t = sphere_tangent(&x);
            let m = n - 1;
            for a in 0..m {
                let dot_x: f64 = (0..n).map(|i| t[i * m + a] * x[i]).sum();
                assert!(dot_x.abs() < 1e-15);
                for b in 0..m {
                    let d: f64 = (0..n).map(|i| t[i * m + a] * t[i * m + b]).sum();
                    assert!((d - f64::from(u8::from(a == b))).abs() < 1e-15);
                }
            }
        }
    }

    fn simplex_point(rng: &mut Rng, n: usize, spread: f64) -> Vec<f64> {
        let v: Vec<f64> = (0..n).map(|_| spread * rng.normal()).collect();
        softmax(&v)
    }

    fn calibration(rng: &mut Rng, n: usize, general: bool) -> Calibration {
        let b: Vec<f64> = (0..n).map(|_| 0.5 * rng.normal()).collect();
        if !general {
            return Calibration::scalar(n, (0.5 * rng.normal()).exp(), b).unwrap();
        }
        loop {
            // A = B − (B·1 − λ·1)·1ᵀ/n: every row sums to λ
            let bm: Vec<f64> = (0..n * n).map(|i| f64::from(u8::from(i / n == i % n)) + 0.3 * rng.normal()).collect();
            let lambda = 1.0 + 0.2 * rng.normal();
            let mut a = bm.clone();
            for i in 0..n {
                let excess: f64 = bm[i * n..(i + 1) * n].iter().sum::<f64>() - lambda;
                for j in 0..n {
                    a[i * n + j] -= excess / n as f64;
                }
            }
            if let Ok(c) = Calibration::new(n, a, b.clone()) {
                return c;
            }
        }
    }

    /// The ambient Jacobian of softmax(A log x + b) by forward-mode duals on the formula.
    fn dual_calibration_jacobian(f: &Calibration, x: &[f64]) -> Vec<f64> {
        let n = x.len();
        let mut j = vec![0.0; n * n];
        for k in 0..n {
            // v = A log x + b and its derivative along e_k
            let v: Vec<(f64, f64)> =
                (0..n).map(|i| ((0..n).map(|l| f.a[i * n + l] * x[l].ln()).sum::<f64>() + f.b[i], f.a[i * n + k] / x[k])).collect();
            let m = v.iter().fold(f64::NEG_INFINITY, |a, p| a.max(p.0));
            let e: Vec<(f64, f64)> = v.iter().map(|(a, da)| ((a - m).exp(), (a - m).exp() * da)).collect();
            let s = e.iter().fold((0.0, 0.0), |(a, da), (p, dp)| (a + p, da + dp));
            for i in 0..n {
                j[i * n + k] = (e[i].1 * s.0 - e[i].0 * s.1) / (s.0 * s.0);
            }
        }
        j
    }

    /// 10^5 points per kind (4 dimensions × 10 maps × 2500), entries within about e^±1.5 of
    /// each other: the generic ratio (an elimination on TᵀJT) loses digits as entries spread
    /// over orders of magnitude (1e-8 at e^±6), where the closed form does not.
    #[test]
    fn calibration_ratios_match_the_generic_ratio() {
        let mut rng = Rng::new(5);
        for general in [false, true] {
            let mut worst: f64 = 0.0;
            let mut hand_worst: f64 = 0.0;
            for n in [2, 3, 4, 10] {
                let t = simplex_tangent(n);
                for _ in 0..10 {
                    let f = calibration(&mut rng, n, general);
                    for _ in 0..2500 {
                        let x = simplex_point(&mut rng, n, 0.5);
                        let generic = volume_ratio(&dual_calibration_jacobian(&f, &x), &t, &t, n);
                        let closed = f.log_ratio(&x).exp();
                        worst = worst.max((closed - generic).abs() / closed);
                        // the hand-written Jacobian agrees too
                        let hand = volume_ratio(&f.jacobian(&x), &t, &t, n);
                        hand_worst = hand_worst.max((hand - generic).abs() / generic);
                    }
                }
            }
            assert!(worst < 1e-12, "general = {general}: largest relative difference {worst:e}");
            assert!(hand_worst < 1e-12, "general = {general}: the two Jacobians' ratios differ by {hand_worst:e}");
        }
    }

    #[test]
    fn calibration_round_trips_stay_on_the_simplex() {
        let mut rng = Rng::new(9);
        for general in [false, true] {
            for n in [2, 3, 8] {
                let f = calibration(&mut rng, n, general);
                for _ in 0..2000 {
                    // entries over several orders of magnitude
                    let x = simplex_point(&mut rng, n, 2.0);
                    let y = f.forward(&x);
                    assert!((y.iter().sum::<f64>() - 1.0).abs() <= 4.0 * f64::EPSILON);
                    let back = f.inverse(&y);
                    let err = x.iter().zip(&back).fold(0.0f64, |m, (a, b)| m.max((a - b).abs() / a));
                    assert!(err < 1e-11, "relative round-trip error {err:e} (n = {n}, general = {general})");
                    assert!((back.iter().sum::<f64>() - 1.0).abs() <= 4.0 * f64::EPSILON);
                }
            }
        }
    }

    #[test]
    fn non_bijective_parameters_are_refused() {
        assert!(Calibration::scalar(3, -1.0, vec![0.0; 3]).unwrap_err().contains("positive"));
        assert!(Calibration::new(2, vec![1.0, 0.0, 0.5, 0.0], vec![0.0; 2]).unwrap_err().contains("sum"));
        assert!(NormalizedAffine::new(2, vec![1.0, 0.0, 0.0, 1.0], vec![1.5, 0.0]).unwrap_err().contains("not a bijection"));
        assert!(NormalizedAffine::new(2, vec![1.0, 1.0, 1.0, 1.0], vec![0.0, 0.0]).unwrap_err().contains("singular"));
        assert!(NormalizedAffine::new(2, vec![1.0], vec![0.0, 0.0]).is_err());
    }
}
