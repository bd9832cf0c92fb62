//! The normalized maps of the sphere S^(n−1) ⊂ R^n: their volume ratios, from the generic
//! ratio R(x) = |det(T_yᵀ F_x T_x)| by stated lemmas, and their inverses.
//!
//! The rule set of [`super::rules`] works on scalar formulas and does not reach these closed
//! forms, so each is a stated lemma, listed step by step in `flowc derive` and checked here,
//! when a flow that uses the layer is derived, against the generic ratio: the ambient
//! Jacobian F_x by forward-mode differentiation (dual numbers) of the map as written, tangent
//! bases by Householder reflections ([`runtime::manifold::sphere_tangent`]), the determinant
//! by elimination ([`runtime::manifold::volume_ratio`]), at random parameters and points.
//! A lemma that disagrees beyond [`TOL`] is an error of the derivation.

use super::dual::{jacobian, Dual, Gen, Lemma};
use crate::ir::Normalized;
use runtime::manifold::{sphere_tangent, volume_ratio};

pub use super::dual::{POINTS, TOL};

/// One normalized map's closed forms, with the check of its lemma.
#[derive(Debug, Clone)]
pub struct SphereDerivation {
    pub kind: Normalized,
    pub dim: usize,
    pub lemma: Lemma,
}

/// The ambient map as written: x ↦ (Mx + b)/‖Mx + b‖ on dual numbers.
fn ambient(m: &[f64], b: &[f64], x: &[Dual]) -> Vec<Dual> {
    let n = x.len();
    let u: Vec<Dual> = (0..n).map(|i| (0..n).fold(Dual::c(b[i]), |acc, j| acc + Dual::c(m[i * n + j]) * x[j])).collect();
    let r = u.iter().fold(Dual::c(0.0), |acc, v| acc + *v * *v).sqrt();
    u.iter().map(|v| *v / r).collect()
}

/// The lemma's closed form: log R = log|det M| + log(1 + xᵀc) − n·log‖M(x + c)‖ for c = M⁻¹b
/// (= m) and log|det M| from M's factors.
fn closed_log_ratio(m: &[f64], c: &[f64], log_det: f64, x: &[f64]) -> f64 {
    let n = x.len();
    let u: Vec<f64> = (0..n).map(|i| (0..n).map(|j| m[i * n + j] * (x[j] + c[j])).sum()).collect();
    let uu: f64 = u.iter().map(|v| v * v).sum();
    let xc: f64 = x.iter().zip(c).map(|(a, b)| a * b).sum();
    log_det + xc.ln_1p() - 0.5 * n as f64 * uu.ln()
}

/// Derives the normalized map `kind` on S^(n−1) and checks its lemma (`Err` when it fails).
pub fn derive_sphere(kind: Normalized, n: usize) -> Result<SphereDerivation, String> {
    let mut g = Gen(0x5eed ^ n as u64);
    let mut max_rel: f64 = 0.0;
    let mut worst = String::new();
    for _ in 0..POINTS {
        // M = L U (unit L, U with positive diagonal), m with ‖m‖ < 1, x on the sphere
        let mut l = vec![0.0; n * n];
        let mut u = vec![0.0; n * n];
        let mut log_det = 0.0;
        for i in 0..n {
            for j in 0..n {
                if kind.multiplies() {
                    if j < i {
                        l[i * n + j] = 0.4 * g.uniform();
                    } else if j > i {
                        u[i * n + j] = 0.4 * g.uniform();
                    }
                }
            }
            l[i * n + i] = 1.0;
            let ld = if kind.multiplies() { 0.5 * g.uniform() } else { 0.0 };
            u[i * n + i] = f64::exp(ld);
            log_det += ld;
        }
        let m: Vec<f64> = (0..n * n).map(|e| (0..n).map(|t| l[(e / n) * n + t] * u[t * n + e % n]).sum()).collect();
        let v: Vec<f64> = (0..n).map(|_| if kind.translates() { 1.5 * g.uniform() } else { 0.0 }).collect();
        let scale = 1.0 / (1.0 + v.iter().map(|a| a * a).sum::<f64>()).sqrt();
        let c: Vec<f64> = v.iter().map(|a| a * scale).collect();
        let b: Vec<f64> = (0..n).map(|i| (0..n).map(|j| m[i * n + j] * c[j]).sum()).collect();
        let x0: Vec<f64> = (0..n).map(|_| g.uniform()).collect();
        let r = x0.iter().map(|a| a * a).sum::<f64>().sqrt();
        let x: Vec<f64> = x0.iter().map(|a| a / r).collect();
        let xd: Vec<Dual> = x.iter().map(|v| Dual::c(*v)).collect();
        let y: Vec<f64> = ambient(&m, &b, &xd).iter().map(|d| d.v).collect();
        let generic = volume_ratio(&jacobian(|u| ambient(&m, &b, u), &x), &sphere_tangent(&x), &sphere_tangent(&y), n);
        let closed = closed_log_ratio(&m, &c, log_det, &x).exp();
        let rel = (closed - generic).abs() / generic;
        if rel > max_rel || rel.is_nan() {
            max_rel = rel;
            worst = format!("x = {x:?}: closed form {closed:e}, generic {generic:e}");
        }
    }
    if max_rel > TOL || max_rel.is_nan() {
        return Err(format!(
            "the volume ratio of `{}` on S^{}: the closed form disagrees with the generic ratio by {max_rel:.1e} (relative) at {worst}",
            kind.name(),
            n - 1
        ));
    }
    Ok(SphereDerivation { kind, dim: n, lemma: Lemma { steps: steps(kind), inverse: inverse(kind), points: POINTS, max_rel } })
}

fn steps(kind: Normalized) -> Vec<(String, String)> {
    let s = |a: &str, b: &str| (a.to_string(), b.to_string());
    let mut out = vec![s("R = |det(T_yᵀ F_x T_x)|", "generic: F_x ambient Jacobian, T_x, T_y orthonormal tangent bases")];
    match kind {
        Normalized::Linear => {
            out.push(s("F_x = (I − y yᵀ) M / ‖Mx‖", "derivative of u ↦ u/‖u‖ at u = Mx"));
            out.push(s("R = |det(T_yᵀ M T_x)| / ‖Mx‖^(n−1)", "T_yᵀ(I − y yᵀ) = T_yᵀ: the projection annihilates the normal y"));
            out.push(s("det M = det(T_yᵀ M T_x) · yᵀMx", "Mx ∥ y: [T_y y]ᵀ M [T_x x] is block triangular"));
            out.push(s("R = |det M| / ‖Mx‖^n", "yᵀMx = ‖Mx‖"));
            out.push(s("log R = Σ log_diag − (n/2)·log‖Mx‖²", "det M = det L · det U = Π exp(log_diag)"));
        }
        Normalized::Translation => {
            out.push(s("F_x = (I − y yᵀ) / ‖u‖,  u = x + m", "derivative of u ↦ u/‖u‖"));
            out.push(s("R = |det(T_yᵀ T_x)| / ‖u‖^(n−1)", "T_yᵀ(I − y yᵀ) = T_yᵀ: the projection annihilates the normal y"));
            out.push(s("T_yᵀ T_x = T_yᵀ (I + m xᵀ) T_x", "xᵀT_x = 0"));
            out.push(s("det(I + m xᵀ) = det(T_yᵀ (I + m xᵀ) T_x) · ‖u‖", "(I + m xᵀ)x = u ∥ y: block triangular in [T_x x], [T_y y]"));
            out.push(s("R = (1 + xᵀm) / ‖x + m‖^n", "matrix determinant lemma: det(I + m xᵀ) = 1 + xᵀm"));
            out.push(s("log R = log1p(xᵀm) − (n/2)·log‖x + m‖²", "‖m‖ < 1 so 1 + xᵀm > 0"));
            out.extend(shift_regimes(&s));
        }
        Normalized::Affine => {
            out.push(s("F_x = (I − y yᵀ) M / ‖u‖,  u = Mx + b", "derivative of u ↦ u/‖u‖"));
            out.push(s("R = |det(T_yᵀ M T_x)| / ‖u‖^(n−1)", "T_yᵀ(I − y yᵀ) = T_yᵀ: the projection annihilates the normal y"));
            out.push(s("T_yᵀ M T_x = T_yᵀ (M + b xᵀ) T_x", "xᵀT_x = 0"));
            out.push(s("det(M + b xᵀ) = det(T_yᵀ (M + b xᵀ) T_x) · ‖u‖", "(M + b xᵀ)x = u ∥ y: block triangular in [T_x x], [T_y y]"));
            out.push(s("R = |det M| · |1 + xᵀM⁻¹b| / ‖u‖^n", "matrix determinant lemma"));
            out.push(s("log R = Σ log_diag + log(1 + xᵀm) − (n/2)·log‖u‖²,  u = M(x + m)", "b = M m, M⁻¹b = m; ‖m‖ < 1 so 1 + xᵀm > 0"));
            out.extend(shift_regimes(&s));
        }
    }
    out
}

/// The forward map's stable evaluation of x + m and 1 + xᵀm, one formula for both regimes.
fn shift_regimes(s: &impl Fn(&str, &str) -> (String, String)) -> [(String, String); 2] {
    [
        s(
            "for ‖m‖ > ½: x + m = a − δ m̂, 1 + xᵀm = ‖a‖²/2 − δ xᵀm̂,  a = x + m̂, m̂ = v/‖v‖, δ = 1 − ‖m‖ = κ/(1 + ‖m‖)",
            "no cancellation near the antipode x ≈ −m̂, where x + m and 1 + xᵀm are both about 1 − ‖m‖",
        ),
        s(
            "x + m = (x + A) − B,  1 + xᵀm = ‖x + A‖²/2 + e − xᵀB;  (A, B, e) = (m̂, δ m̂, 0) for ‖m‖ > ½, else (0, −m, ½)",
            "the regime is the parameters': one formula, its parameter-only terms chosen once per call",
        ),
    ]
}

fn inverse(kind: Normalized) -> Vec<String> {
    let mut out = Vec::new();
    if !kind.translates() {
        out.push("w = M⁻¹y = U⁻¹ L⁻¹ y (substitutions), x = w/‖w‖;  ‖Mx‖ = ‖y‖/‖w‖, so log R = Σ log_diag + (n/2)·log(‖w‖²/‖y‖²)".into());
        return out;
    }
    let (w, det) = if kind.multiplies() {
        out.push("w = M⁻¹y = U⁻¹ L⁻¹ y (substitutions), q = ‖w‖²".into());
        ("w", "Σ log_diag + ")
    } else {
        out.push("w = y, q = ‖y‖²".into());
        ("y", "")
    };
    out.push(format!("x = τ·{w} − m, τ > 0 the root of ‖τ·{w} − m‖ = 1: qτ² − 2βτ − κ = 0, β = {w}ᵀm, κ = 1 − ‖m‖² = 1/(1 + ‖v‖²)"));
    out.push(
        "τ = (β + r)/q if β > 0, else κ/(r − β), r = √(β² + κq)   [the cancellation-free root; one division of the selected parts]".into(),
    );
    out.push(format!(
        "at the unit point {w}/√q, t = τ√q and s = r/√q: 1 + xᵀm = t·s, ‖x + m‖ = t, so log R = {det}log r − (n − 1)·log τ − (n/2)·log‖y‖²   [the powers of q cancel: no √q, no normalizing division; y off the sphere by rounding is projected radially]"
    ));
    out
}

/// The derivation as `flowc derive` prints it under the layer.
pub fn text(sd: &SphereDerivation, n: usize) -> String {
    let what = match sd.kind {
        Normalized::Translation => "y = (x + m)/‖x + m‖,  m = v/√(1 + ‖v‖²) (‖m‖ < 1: a bijection of the sphere)",
        Normalized::Linear => "y = Mx/‖Mx‖,  M = L U (L unit lower from `lower`, U upper from `upper` with diagonal exp(log_diag))",
        Normalized::Affine => "y = (Mx + b)/‖Mx + b‖,  M = L U,  b = M m,  m = v/√(1 + ‖v‖²) (‖M⁻¹b‖ = ‖m‖ < 1: a bijection of the sphere)",
    };
    sd.lemma.text(what, "forward-mode F_x, Householder tangent bases", &format!("on S^{}", n - 1), TOL)
}
