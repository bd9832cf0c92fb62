//! The calibration maps of the open simplex {x ∈ R^n: x_i > 0, Σx = 1}: their volume ratios,
//! from the generic ratio R(x) = |det(T_yᵀ F_x T_x)| by a stated lemma, and their inverses.
//!
//! As on the sphere ([`super::sphere`]), the rule set does not reach the closed form: it is a
//! stated lemma, listed step by step in `flowc derive` and checked here, when a flow that uses
//! the layer is derived, against the generic ratio: F_x by forward-mode differentiation (dual
//! numbers) of y = softmax(A·log x + b) as written, T = an orthonormal basis of 1^⊥ (the
//! tangent space everywhere, [`runtime::manifold::simplex_tangent`]), at random parameters and
//! points. A lemma that disagrees beyond [`TOL`] is an error of the derivation.

use super::dual::{jacobian, Dual, Gen, Lemma};
use crate::ir::Calibration;
use runtime::manifold::{ilr_lift, simplex_tangent, volume_ratio};

pub use super::dual::{POINTS, TOL};

/// One calibration map's closed forms, with the check of its lemma.
#[derive(Debug, Clone)]
pub struct SimplexDerivation {
    pub kind: Calibration,
    pub dim: usize,
    pub lemma: Lemma,
}

/// y = softmax(A·log x + b) on dual numbers, as written.
fn ambient(a: &[f64], b: &[f64], x: &[Dual]) -> Vec<Dual> {
    let n = x.len();
    let lx: Vec<Dual> = x.iter().map(|v| v.ln()).collect();
    let z: Vec<Dual> = (0..n).map(|i| (0..n).fold(Dual::c(b[i]), |acc, j| acc + Dual::c(a[i * n + j]) * lx[j])).collect();
    let e: Vec<Dual> = z.iter().map(|v| v.exp()).collect();
    let s = e.iter().fold(Dual::c(0.0), |acc, v| acc + *v);
    e.iter().map(|v| *v / s).collect()
}

/// Derives calibration map `kind` on the simplex in R^n and checks its lemma.
pub fn derive_simplex(kind: Calibration, n: usize) -> Result<SimplexDerivation, String> {
    let mut g = Gen(0x5173 ^ n as u64);
    let m = n - 1;
    let mut max_rel: f64 = 0.0;
    let mut worst = String::new();
    for _ in 0..POINTS {
        // B = L U (or a·I), A = Q B Qᵀ + 11ᵀ/n; log|det B|
        let mut bm = vec![0.0; m * m];
        let mut log_det = 0.0;
        match kind {
            Calibration::Scalar => {
                let la = 0.7 * g.uniform();
                for i in 0..m {
                    bm[i * m + i] = la.exp();
                }
                log_det = m as f64 * la;
            }
            Calibration::Generalized => {
                let mut l = vec![0.0; m * m];
                let mut u = vec![0.0; m * m];
                for i in 0..m {
                    for j in 0..m {
                        if j < i {
                            l[i * m + j] = 0.3 * g.uniform();
                        } else if j > i {
                            u[i * m + j] = 0.3 * g.uniform();
                        }
                    }
                    l[i * m + i] = 1.0;
                    let ld = 0.5 * g.uniform();
                    u[i * m + i] = ld.exp();
                    log_det += ld;
                }
                for e in 0..m * m {
                    bm[e] = (0..m).map(|t| l[(e / m) * m + t] * u[t * m + e % m]).sum();
                }
            }
        }
        let a = ilr_lift(&bm, n);
        let b: Vec<f64> = (0..n).map(|_| g.uniform()).collect();
        // a point: the softmax of logits in ±1.5 (the generic ratio itself loses digits where
        // coordinates are far apart: its Jacobian's rows scale with y and its columns with 1/x)
        let logits: Vec<f64> = (0..n).map(|_| 1.5 * g.uniform()).collect();
        let x = runtime::manifold::softmax(&logits);
        let xd: Vec<Dual> = x.iter().map(|v| Dual::c(*v)).collect();
        let y: Vec<f64> = ambient(&a, &b, &xd).iter().map(|d| d.v).collect();
        let t = simplex_tangent(n);
        let generic = volume_ratio(&jacobian(|u| ambient(&a, &b, u), &x), &t, &t, n);
        let closed = (log_det + y.iter().map(|v| v.ln()).sum::<f64>() - x.iter().map(|v| v.ln()).sum::<f64>()).exp();
        let rel = (closed - generic).abs() / generic;
        if rel > max_rel || rel.is_nan() {
            max_rel = rel;
            worst = format!("x = {x:?}: closed form {closed:e}, generic {generic:e}");
        }
    }
    if max_rel > TOL || max_rel.is_nan() {
        return Err(format!(
            "the volume ratio of `{}` on simplex({n}): the closed form disagrees with the generic ratio by {max_rel:.1e} (relative) at {worst}",
            kind.name()
        ));
    }
    Ok(SimplexDerivation { kind, dim: n, lemma: Lemma { steps: steps(kind), inverse: inverse(kind), points: POINTS, max_rel } })
}

fn steps(kind: Calibration) -> Vec<(String, String)> {
    let s = |a: &str, b: &str| (a.to_string(), b.to_string());
    let (b, det) = match kind {
        Calibration::Scalar => ("a·I", "log|det B| = (n − 1)·log a = (n − 1)·log_scale"),
        Calibration::Generalized => ("L U", "log|det B| = Σ log_diag"),
    };
    vec![
        s("R = |det(Qᵀ F_x Q)|", "generic; the tangent space is 1^⊥ everywhere: T_x = T_y = Q (Helmert's basis)"),
        s("F_x = (diag y − y yᵀ) A diag(1/x)", "derivative of softmax(A·log x + b)"),
        s(
            &format!("y = ilr⁻¹(B·ilr(x) + Qᵀb),  ilr(x) = Qᵀ log x,  B = {b}"),
            "Qᵀ1 = 0; A = Q B Qᵀ + 11ᵀ/n, and softmax ignores multiples of 1",
        ),
        s("R = |det B| · |det D ilr(x)| / |det D ilr(y)|", "chain rule through the ilr chart"),
        s("det D ilr(x) = det(Qᵀ diag(1/x) Q) = (Σx)/(n·Π x_i) = 1/(n·Π x_i)", "compression of diag(1/x) onto 1^⊥: det(D)·1ᵀD⁻¹1/n"),
        s(&format!("log R = log|det B| + Σ log y_i − Σ log x_i,  {det}"), "log y_i = z_i − logsumexp(z): no log of a rounded softmax"),
    ]
}

fn inverse(kind: Calibration) -> Vec<String> {
    match kind {
        Calibration::Scalar => {
            vec!["x = softmax((log y − b)/a)   [the affine map of the logits undone; softmax ignores the constant lost]".into()]
        }
        Calibration::Generalized => vec!["x = softmax(Q B⁻¹ Qᵀ(log y − b))   [B⁻¹ by forward then back substitution]".into()],
    }
}

/// The derivation as `flowc derive` prints it under the layer.
pub fn text(sd: &SimplexDerivation) -> String {
    let what = match sd.kind {
        Calibration::Scalar => "y = softmax(a·log x + b),  a = exp(log_scale) > 0,  b = bias".to_string(),
        Calibration::Generalized => format!(
            "y = softmax(A·log x + b),  A = Q B Qᵀ + 11ᵀ/n (A·1 = 1),  Q = Helmert's basis of 1^⊥ (n × {}),  B = L U ({} × {}, as linear(lu)),  b = bias",
            sd.dim - 1,
            sd.dim - 1,
            sd.dim - 1
        ),
    };
    sd.lemma.text(&what, "forward-mode F_x, orthonormal basis of 1^⊥", &format!("of simplex({})", sd.dim), TOL)
}
