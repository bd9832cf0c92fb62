//! User-written maps of the sphere and the simplex ([`crate::ir::map`]): no closed form is
//! derived for them; their volume ratio is the generic one (forward mode over the map, the
//! tangent-space determinant) and their inverse is the author's formula or Newton's method.
//! Each map is checked once per dimension when derived, at random points and parameters:
//! that it maps the manifold to itself, and that its inverse inverts it.
//!
//! The f64 reference used by the checks and the reference interpreter lives here too:
//! [`log_ratio`] (dual-number Jacobian, Householder tangent bases, `runtime::manifold`) and
//! [`inverse`] (Newton in the tangent space, iterated to convergence).

use super::dual::Gen;
use crate::ir::map::{self, Map, MapInverse, Shape, F64};
use crate::ir::Space;

/// What deriving a map at one dimension found.
#[derive(Debug, Clone)]
pub struct MapDerivation {
    pub name: String,
    pub dim: usize,
    /// Points the checks ran at.
    pub points: usize,
    /// Largest distance of an image from the manifold (|‖y‖ − 1| or |Σy − 1|).
    pub off_manifold: f64,
    /// Largest |x − f⁻¹(f(x))| (the inverse the kernels use).
    pub round_trip: f64,
    /// Largest relative difference between the generic ratio in the kernel's form,
    /// |det(F P + n_y n_xᵀ)|, and |det(T_yᵀ F T_x)| with explicit tangent bases.
    pub ratio_forms: f64,
}

/// Points the checks run at.
pub const POINTS: usize = 64;

/// Newton iterations the kernels unroll; the reference iterates to convergence.
pub const NEWTON_STEPS: usize = 14;

/// The longest Newton step on the sphere (radians, about): steps are shortened to it, so
/// that a poor start does not jump away.
pub const MAX_STEP: f64 = 0.5;

/// The longest Newton step in log coordinates on the simplex.
pub const MAX_LOG_STEP: f64 = 100.0;

/// A point is refused (NaN) when Newton's final residual exceeds this (1e-4 in f32 kernels):
/// ‖y − f(x)‖ on the sphere, the centred ‖log f(x) − log y‖ (relative, in every coordinate)
/// on the simplex.
pub const RESIDUAL_TOL: f64 = 1e-9;

/// Parameters for the checks: square matrices I + U(±0.2), other tensors U(±0.2).
pub fn check_params(map: &Map, n: usize, g: &mut Gen) -> Vec<Vec<f64>> {
    map.params
        .iter()
        .map(|p| {
            let dims = p.shape.dims(n);
            let len: usize = dims.iter().product();
            let mut v: Vec<f64> = (0..len).map(|_| 0.2 * g.uniform()).collect();
            if let Shape::Matrix(..) = p.shape {
                if dims[0] == dims[1] {
                    for i in 0..dims[0] {
                        v[i * dims[0] + i] += 1.0;
                    }
                }
            }
            v
        })
        .collect()
}

/// A random point of the space.
pub fn random_point(space: Space, n: usize, g: &mut Gen) -> Vec<f64> {
    let v: Vec<f64> = (0..n).map(|_| g.uniform()).collect();
    match space {
        Space::Simplex => runtime::manifold::softmax(&v.iter().map(|a| 2.0 * a).collect::<Vec<_>>()),
        _ => {
            let r = v.iter().map(|a| a * a).sum::<f64>().sqrt();
            v.iter().map(|a| a / r).collect()
        }
    }
}

fn tangent(space: Space, x: &[f64]) -> Vec<f64> {
    match space {
        Space::Simplex => runtime::manifold::simplex_tangent(x.len()),
        _ => runtime::manifold::sphere_tangent(&normalized(x)),
    }
}

fn normalized(x: &[f64]) -> Vec<f64> {
    let r = x.iter().fold(0.0f64, |a, b| a.hypot(*b));
    x.iter().map(|a| a / r).collect()
}

/// log R(x) = log|det(T_yᵀ F_x T_x)| by dual numbers and Householder tangent bases.
pub fn log_ratio(map: &Map, space: Space, x: &[f64], params: &[Vec<f64>]) -> Result<f64, String> {
    let n = x.len();
    let y = map::apply(map, &mut F64, x, params)?;
    let jac = map::jacobian(map, x, params)?;
    Ok(runtime::manifold::volume_ratio(&jac, &tangent(space, x), &tangent(space, &y), n).ln())
}

/// log|det(F_x P + n_y n_xᵀ)|, the form the kernels compute (see `ratio`).
fn log_ratio_kernel_form(map: &Map, space: Space, x: &[f64], params: &[Vec<f64>]) -> Result<f64, String> {
    let n = x.len();
    let y = map::apply(map, &mut F64, x, params)?;
    let jac = map::jacobian(map, x, params)?;
    let (nx, ny) = match space {
        Space::Simplex => (vec![1.0 / (n as f64).sqrt(); n], vec![1.0 / (n as f64).sqrt(); n]),
        _ => (normalized(x), normalized(&y)),
    };
    let mut a = vec![0.0; n * n];
    for r in 0..n {
        for c in 0..n {
            // F P e_c = F e_c − (F n_x) n_x[c]
            let fnx: f64 = (0..n).map(|l| jac[r * n + l] * nx[l]).sum();
            a[r * n + c] = jac[r * n + c] - fnx * nx[c] + ny[r] * nx[c];
        }
    }
    Ok(crate::lower::log_abs_det(&mut a, n))
}

/// One Newton step toward f(x) = y from x: the new point (on the manifold) and the residual
/// before the step (as the kernels compute them; see [`RESIDUAL_TOL`]).
fn newton_step(map: &Map, space: Space, x: &[f64], y: &[f64], params: &[Vec<f64>]) -> Result<(Vec<f64>, f64), String> {
    let n = x.len();
    let fx = map::apply(map, &mut F64, x, params)?;
    let jac = map::jacobian(map, x, params)?;
    let norm = |v: &[f64]| v.iter().fold(0.0f64, |a, b| a.hypot(*b));
    match space {
        Space::Simplex => {
            // in log coordinates: g = log f(x) − log y centred; B = centred D_f⁻¹ F (D_x − x xᵀ)
            // + 11ᵀ/n; δ = −B⁻¹g; x·exp(s·δ) renormalized
            let g: Vec<f64> = fx.iter().zip(y).map(|(f, y)| f.ln() - y.ln()).collect();
            let mean = g.iter().sum::<f64>() / n as f64;
            let g: Vec<f64> = g.iter().map(|v| v - mean).collect();
            let mut b = vec![0.0; n * n];
            for c in 0..n {
                let col: Vec<f64> = (0..n)
                    .map(|r| (0..n).map(|l| jac[r * n + l] * (x[c] * (f64::from(u8::from(l == c)) - x[l]))).sum::<f64>() / fx[r])
                    .collect();
                let mean = col.iter().sum::<f64>() / n as f64;
                for r in 0..n {
                    b[r * n + c] = col[r] - mean + 1.0 / n as f64;
                }
            }
            let d = map::solve_f64(n, &b, &g.iter().map(|v| -v).collect::<Vec<_>>());
            let len = norm(&d);
            let s = if len > MAX_LOG_STEP { MAX_LOG_STEP / len } else { 1.0 };
            let m: Vec<f64> = x.iter().zip(&d).map(|(a, b)| a * (s * b).exp()).collect();
            let t: f64 = m.iter().sum();
            Ok((m.iter().map(|v| v / t).collect(), norm(&g)))
        }
        _ => {
            let r: Vec<f64> = y.iter().zip(&fx).map(|(a, b)| a - b).collect();
            let ny = normalized(&fx);
            let mut a = vec![0.0; n * n];
            for row in 0..n {
                let fnx: f64 = (0..n).map(|l| jac[row * n + l] * x[l]).sum();
                for c in 0..n {
                    a[row * n + c] = jac[row * n + c] - fnx * x[c] + ny[row] * x[c];
                }
            }
            // the residual's tangent part at f(x) (its normal part would flip x)
            let rn: f64 = r.iter().zip(&ny).map(|(a, b)| a * b).sum();
            let rt: Vec<f64> = r.iter().zip(&ny).map(|(a, b)| a - rn * b).collect();
            let d = map::solve_f64(n, &a, &rt);
            let len = norm(&d);
            let s = if len > MAX_STEP { MAX_STEP / len } else { 1.0 };
            Ok((normalized(&x.iter().zip(&d).map(|(a, b)| a + s * b).collect::<Vec<_>>()), norm(&r)))
        }
    }
}

/// f⁻¹(y): the author's formula, or Newton from y (to convergence, at most 200 steps).
pub fn inverse(map: &Map, space: Space, y: &[f64], params: &[Vec<f64>]) -> Result<Vec<f64>, String> {
    match &map.inverse {
        MapInverse::Given(e) => map::eval_shaped(e, &map.params, &mut F64, y, params),
        MapInverse::Numeric => {
            let mut x = y.to_vec();
            if space == Space::Simplex {
                // from the centre when f(y) underflows in a coordinate (as the kernels)
                let fy = map::apply(map, &mut F64, y, params)?;
                if !fy.iter().all(|v| *v > 0.0) {
                    x = vec![1.0 / y.len() as f64; y.len()];
                }
            }
            for _ in 0..200 {
                let (next, res) = newton_step(map, space, &x, y, params)?;
                if res <= 4e-16 * y.len() as f64 {
                    return Ok(x);
                }
                let moved = next.iter().zip(&x).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
                x = next;
                if moved <= 1e-17 {
                    break;
                }
            }
            let (_, res) = newton_step(map, space, &x, y, params)?;
            if res.is_nan() || res > RESIDUAL_TOL {
                return Err(format!("Newton's method did not invert map `{}` (residual {res:.1e})", map.name));
            }
            Ok(x)
        }
    }
}

/// Checks `map` at dimension `n`: images on the manifold, the inverse, the two forms of the
/// generic ratio. Errors say what failed and where.
pub fn derive_map(map: &Map, n: usize) -> Result<MapDerivation, String> {
    let mut g = Gen(0x6d61_7073 ^ n as u64);
    let space = map.space;
    let (mut off, mut trip, mut forms) = (0.0f64, 0.0f64, 0.0f64);
    let fmt = |v: &[f64]| format!("({})", v.iter().map(|a| format!("{a:.3}")).collect::<Vec<_>>().join(", "));
    for _ in 0..POINTS {
        let params = check_params(map, n, &mut g);
        let x = random_point(space, n, &mut g);
        let y = map::apply(map, &mut F64, &x, &params)?;
        let dev = match space {
            Space::Simplex => {
                if y.iter().any(|v| v.is_nan() || *v <= 0.0) {
                    f64::INFINITY
                } else {
                    (y.iter().sum::<f64>() - 1.0).abs()
                }
            }
            _ => (y.iter().fold(0.0f64, |a, b| a.hypot(*b)) - 1.0).abs(),
        };
        if dev.is_nan() || dev > 1e-12 {
            let (what, fix) = match space {
                Space::Simplex => ("the simplex (positive, summing to 1)", "end it with `softmax(...)`"),
                _ => ("the unit sphere", "end it with `normalize(...)`"),
            };
            return Err(format!("map `{}` does not map {what} to itself: at x = {} it gives {}; {fix}", map.name, fmt(&x), fmt(&y)));
        }
        off = off.max(dev);
        let back = inverse(map, space, &y, &params).map_err(|e| format!("{e} at y = {} (its preimage is x = {})", fmt(&y), fmt(&x)))?;
        let err = back.iter().zip(&x).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        if err.is_nan() || err > 1e-9 {
            let which = match map.inverse {
                MapInverse::Given(_) => "the inverse given for",
                MapInverse::Numeric => "Newton's method for",
            };
            return Err(format!(
                "{which} map `{}` does not invert it: x = {} maps to y = {}, which the inverse maps to {}",
                map.name,
                fmt(&x),
                fmt(&y),
                fmt(&back)
            ));
        }
        trip = trip.max(err);
        let a = log_ratio(map, space, &x, &params)?;
        let b = log_ratio_kernel_form(map, space, &x, &params)?;
        if a.is_finite() {
            forms = forms.max((a.exp() - b.exp()).abs() / a.exp());
        }
    }
    Ok(MapDerivation { name: map.name.clone(), dim: n, points: POINTS, off_manifold: off, round_trip: trip, ratio_forms: forms })
}

impl MapDerivation {
    /// The derivation as `flowc derive` prints it under a layer.
    pub fn text(&self, map: &Map) -> String {
        let mut s = format!("    forward    y = {}\n", map.text());
        s.push_str("    ratio      R = |det(T_yᵀ F_x T_x)| = |det(F_x P + n_y n_xᵀ)|   [generic: F_x by forward mode over the map; no closed form is derived for user maps]\n");
        s.push_str(&format!(
            "    checked    at {} random points and parameters: images within {:.1e} of the manifold, the two ratio forms within {:.1e}\n",
            self.points, self.off_manifold, self.ratio_forms
        ));
        match map.inverse_text() {
            Some(t) => s.push_str(&format!("    inverse    x = {t}   [given; round trip within {:.1e}]\n", self.round_trip)),
            None => s.push_str(&format!(
                "    inverse    numeric: Newton in the tangent space from x = y (on the simplex from its centre if f(y) underflows), {NEWTON_STEPS} steps (sphere: each at most {MAX_STEP}; simplex: in log coordinates, each at most {MAX_LOG_STEP}), refused (NaN) when the residual exceeds {RESIDUAL_TOL:.0e} (1e-4 in f32 kernels); round trip within {:.1e}\n",
                self.round_trip
            )),
        }
        s
    }
}
