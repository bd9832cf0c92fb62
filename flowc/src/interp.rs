//! The reference interpreter of whole flows (f64): forward, inverse and log-density of a
//! row, layer by layer, written plainly (loops over coordinates, dense matrix-vector
//! products) and independent of the kernel program. The JIT and generated code are checked
//! against it.
//!
//! ```
//! let src = "bijector affine(x; shift: real, log_scale: real) = x * exp(log_scale) + shift;
//!            flow f(x: R^2) { base normal; elementwise(affine(shift = 1, log_scale = 0)); }";
//! let m = flowc::ir::build(&flowc::dsl::parse(src).unwrap()).unwrap();
//! let d = flowc::derive::derive(&m).unwrap();
//! let f = d.flow("f").unwrap();
//! let p = flowc::interp::Params::defaults(&d, f);
//! let mut x = [0.0; 2];
//! let ld = flowc::interp::forward(&d, f, &p, &[0.5, -0.5], &mut x);
//! assert_eq!((x, ld), ([1.5, 0.5], 0.0));
//! ```

use crate::derive::{BijectorDerivation, Derivation, FlowDerivation, LayerDerivation, LayerKind};
use crate::ir::layer::made_connected;
use crate::ir::{Net, ParamKind};
use egg::Symbol;
use std::collections::BTreeMap;

/// Values of a flow's learnable tensors (`layers.K.NAME`, row-major) and their shapes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Params {
    pub values: BTreeMap<String, Vec<f64>>,
    pub shapes: BTreeMap<String, Vec<usize>>,
}

impl Params {
    /// Every tensor at its identity-like default: a per-coordinate parameter at its kind's
    /// default, network weights and biases and LU factors at 0 (a coupling or autoregressive
    /// layer then applies its bijector at the kind-mapped value of 0; `linear(lu)` is I).
    pub fn defaults(d: &Derivation, f: &FlowDerivation) -> Params {
        let _ = d;
        let mut p = Params::default();
        for (k, l) in f.layers.iter().enumerate() {
            for (name, shape) in l.tensors(k, f.dim) {
                let n: usize = shape.iter().product();
                let v = match l.kind {
                    LayerKind::Elementwise => {
                        let pname = name.rsplit('.').next().unwrap_or_default();
                        l.free.iter().find(|q| q.name == pname).map(|q| q.kind.default_value()).unwrap_or(0.0)
                    }
                    // planar: w = (1, ..., 1)/√n (w = 0 leaves the layer a translation)
                    LayerKind::Planar if name.ends_with(".w") => 1.0 / (f.dim as f64).sqrt(),
                    _ => 0.0,
                };
                let mut vals = vec![v; n];
                // a user map's square matrices at I
                if matches!(l.kind, LayerKind::Map(_)) && shape.len() == 2 && shape[0] == shape[1] {
                    for i in 0..shape[0] {
                        vals[i * shape[0] + i] = 1.0;
                    }
                }
                p.values.insert(name.clone(), vals);
                p.shapes.insert(name, shape);
            }
        }
        p
    }

    /// Sets every entry of a tensor. `Err` names the valid keys.
    pub fn set(&mut self, key: &str, value: f64) -> Result<(), String> {
        match self.values.get_mut(key) {
            Some(v) => {
                v.iter_mut().for_each(|x| *x = value);
                Ok(())
            }
            None => Err(self.unknown(key)),
        }
    }

    /// Replaces a tensor's values (the length must match its shape).
    pub fn set_all(&mut self, key: &str, values: &[f64]) -> Result<(), String> {
        match self.values.get_mut(key) {
            Some(v) if v.len() == values.len() => {
                v.copy_from_slice(values);
                Ok(())
            }
            Some(v) => Err(format!("`{key}` has {} values, got {}", v.len(), values.len())),
            None => Err(self.unknown(key)),
        }
    }

    fn unknown(&self, key: &str) -> String {
        let keys: Vec<&str> = self.values.keys().map(|s| s.as_str()).collect();
        if keys.is_empty() {
            format!("unknown parameter `{key}`: this flow has no free parameters")
        } else {
            let mut msg = format!("unknown parameter `{key}`");
            if let Some(s) = crate::ir::suggest(key, keys.iter().copied()) {
                msg.push_str(&format!("; did you mean `{s}`?"));
            } else {
                msg.push_str(&format!("; the parameters are: {}", keys.join(", ")));
            }
            msg
        }
    }

    fn tensor(&self, layer: usize, name: &str) -> &[f64] {
        self.values.get(&format!("layers.{layer}.{name}")).map(|v| v.as_slice()).unwrap_or(&[])
    }

    fn get(&self, layer: usize, name: &str, i: usize) -> f64 {
        self.tensor(layer, name).get(i).copied().unwrap_or(f64::NAN)
    }
}

/// A bijector's parameter value from a network output: mapped into its kind's range.
pub fn map_kind(kind: ParamKind, raw: f64) -> f64 {
    match kind {
        ParamKind::Real => raw,
        ParamKind::Positive => runtime::math::softplus(raw),
        ParamKind::Unit => runtime::math::sigmoid(raw),
    }
}

/// The network of layer `k` on `input` (for a MADE, masked weights are skipped): each unit
/// is bias + Σ_j w_j·h_j in input order, then the activation (not after the last layer).
pub fn net_forward(p: &Params, k: usize, net: &Net, input: &[f64], outputs: usize, dim: usize) -> Vec<f64> {
    let shapes = net.shapes(input.len(), outputs);
    let mut h = input.to_vec();
    for (idx, (j, o, i)) in shapes.iter().enumerate() {
        let w = p.tensor(k, &format!("net.{j}.weight"));
        let b = p.tensor(k, &format!("net.{j}.bias"));
        let last = idx + 1 == shapes.len();
        let mut next = vec![0.0; *o];
        for (u, nu) in next.iter_mut().enumerate() {
            let mut acc = b[u];
            for (v, hv) in h.iter().enumerate().take(*i) {
                if !net.made || made_connected(idx, shapes.len(), u, v, dim) {
                    acc += w[u * i + v] * hv;
                }
            }
            *nu = if last { acc } else { net.act.apply(acc) };
        }
        h = next;
    }
    h
}

/// The environment of a bijector: bound constants, then `value(param)`.
fn env<'a>(l: &'a LayerDerivation, value: impl Fn(&str) -> f64 + 'a) -> impl Fn(Symbol) -> f64 + 'a {
    move |s: Symbol| match l.bound.iter().find(|(n, _)| n.as_str() == s.as_str()) {
        Some((_, v)) => *v,
        None => value(s.as_str()),
    }
}

/// y = B(x) and log|B'(x)|.
fn fwd(b: &BijectorDerivation, x: f64, env: &dyn Fn(Symbol) -> f64) -> (f64, f64) {
    match b.spline {
        Some(sp) => spline_forward(x, &spline_raw(b, env), sp),
        None => b.forward_f64(x, env),
    }
}

/// x = B⁻¹(y) and log|B'(x)|.
fn inv(b: &BijectorDerivation, y: f64, env: &dyn Fn(Symbol) -> f64) -> (f64, f64) {
    match b.spline {
        Some(sp) => {
            // bisection on the forward map (the compiled code solves the bin's quadratic)
            let raw = spline_raw(b, env);
            if y.is_nan() || y.abs() > sp.bound {
                return (y, if y.is_nan() { y } else { 0.0 });
            }
            let (mut lo, mut hi) = (-sp.bound, sp.bound);
            for _ in 0..200 {
                let mid = 0.5 * (lo + hi);
                if mid <= lo || mid >= hi {
                    break;
                }
                if spline_forward(mid, &raw, sp).0 < y {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            let x = if (spline_forward(lo, &raw, sp).0 - y).abs() <= (spline_forward(hi, &raw, sp).0 - y).abs() { lo } else { hi };
            (x, spline_forward(x, &raw, sp).1)
        }
        None => b.inverse_f64(y, env),
    }
}

fn spline_raw(b: &BijectorDerivation, env: &dyn Fn(Symbol) -> f64) -> Vec<f64> {
    b.params.iter().map(|p| env(Symbol::from(p.name.as_str()))).collect()
}

/// The rational-quadratic spline, written out from the definition in `runtime::spline`.
fn spline_forward(x: f64, raw: &[f64], sp: crate::ir::layer::Spline) -> (f64, f64) {
    let (k, bd) = (sp.bins, sp.bound);
    if x.is_nan() || x.abs() > bd {
        return (x, if x.is_nan() { x } else { 0.0 });
    }
    let positions = |u: &[f64]| -> Vec<f64> {
        let m = u.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = u.iter().map(|v| (v - m).exp()).collect();
        let s: f64 = e.iter().sum();
        let min = runtime::spline::MIN_BIN;
        let mut out = vec![-bd];
        let mut c = 0.0;
        for (j, ej) in e.iter().enumerate() {
            c += min + (1.0 - min * k as f64) * ej / s;
            out.push(if j + 1 == k { bd } else { -bd + 2.0 * bd * c });
        }
        out
    };
    let (xs, ys) = (positions(&raw[..k]), positions(&raw[k..2 * k]));
    let d = |j: usize| if j == 0 || j == k { 1.0 } else { runtime::spline::MIN_DERIVATIVE + runtime::math::softplus(raw[2 * k + j - 1]) };
    let j = (0..k).rev().find(|j| x >= xs[*j]).unwrap_or(0);
    let (w, h) = (xs[j + 1] - xs[j], ys[j + 1] - ys[j]);
    let (s, t) = (h / w, (x - xs[j]) / w);
    let (d0, d1) = (d(j), d(j + 1));
    let den = s + (d0 + d1 - 2.0 * s) * t * (1.0 - t);
    let y = ys[j] + h * (s * t * t + d0 * t * (1.0 - t)) / den;
    let slope = s * s * (d1 * t * t + 2.0 * s * t * (1.0 - t) + d0 * (1.0 - t).powi(2)) / (den * den);
    (y, slope.ln())
}

/// The bijector's parameters for transformed coordinate `t` of `n` from network outputs
/// (param-major layout).
fn conditioned<'a>(l: &'a LayerDerivation, o: &'a [f64], t: usize, n: usize) -> impl Fn(&str) -> f64 + 'a {
    move |name: &str| match l.free.iter().position(|q| q.name == name) {
        Some(j) => map_kind(l.free[j].kind, o[j * n + t]),
        None => f64::NAN,
    }
}

fn bijector<'a>(d: &'a Derivation, l: &LayerDerivation) -> &'a BijectorDerivation {
    &d.bijectors[l.bijector.expect("a layer with a bijector")]
}

/// One layer, base → data, in place; returns its log|det J|.
fn layer_forward(d: &Derivation, f: &FlowDerivation, p: &Params, k: usize, x: &mut [f64]) -> f64 {
    let l = &f.layers[k];
    let mut ld = 0.0;
    match &l.kind {
        LayerKind::Elementwise => {
            let b = bijector(d, l);
            for (i, xi) in x.iter_mut().enumerate() {
                let (y, li) = fwd(b, *xi, &env(l, |n| p.get(k, n, i)));
                *xi = y;
                ld += li;
            }
        }
        LayerKind::Coupling { mask, net } => {
            let b = bijector(d, l);
            let kept: Vec<f64> = (0..f.dim).filter(|i| mask[*i]).map(|i| x[i]).collect();
            let moved: Vec<usize> = (0..f.dim).filter(|i| !mask[*i]).collect();
            let o = net_forward(p, k, net, &kept, moved.len() * l.free.len(), f.dim);
            for (t, &i) in moved.iter().enumerate() {
                let (y, li) = fwd(b, x[i], &env(l, conditioned(l, &o, t, moved.len())));
                x[i] = y;
                ld += li;
            }
        }
        LayerKind::Autoregressive { net, inverse: false } => {
            // MAF, generative direction: sequential (x_i needs x_<i, already in place)
            let b = bijector(d, l);
            for i in 0..f.dim {
                let o = net_forward(p, k, net, x, f.dim * l.free.len(), f.dim);
                let (y, li) = fwd(b, x[i], &env(l, conditioned(l, &o, i, f.dim)));
                x[i] = y;
                ld += li;
            }
        }
        LayerKind::Autoregressive { net, inverse: true } => {
            // IAF, generative direction: parallel (parameters from the input)
            let b = bijector(d, l);
            let o = net_forward(p, k, net, x, f.dim * l.free.len(), f.dim);
            for (i, xi) in x.iter_mut().enumerate() {
                let (y, li) = fwd(b, *xi, &env(l, conditioned(l, &o, i, f.dim)));
                *xi = y;
                ld += li;
            }
        }
        LayerKind::LinearLu => {
            let (lo, up, dg) = (p.tensor(k, "lower"), p.tensor(k, "upper"), p.tensor(k, "log_diag"));
            let n = f.dim;
            // t = U x (diagonal exp(log_diag)), then y = L t (unit diagonal)
            let t: Vec<f64> = (0..n).map(|i| (i + 1..n).fold(dg[i].exp() * x[i], |acc, j| acc + up[i * n + j] * x[j])).collect();
            for i in 0..n {
                x[i] = (0..i).fold(t[i], |acc, j| acc + lo[i * n + j] * t[j]);
            }
            ld = dg.iter().sum();
        }
        LayerKind::Permute { perm } => {
            let y: Vec<f64> = perm.iter().map(|&j| x[j]).collect();
            x.copy_from_slice(&y);
        }
        LayerKind::Planar => {
            let (uh, w, b, m) = planar(p, k);
            let a = dot(w, x) + b;
            let h = a.tanh();
            for (xi, ui) in x.iter_mut().zip(&uh) {
                *xi += ui * h;
            }
            ld = planar_log_det(m, a);
        }
        LayerKind::Radial => {
            let (z0, a, be) = radial(p, k);
            let d: Vec<f64> = x.iter().zip(z0).map(|(xi, ci)| xi - ci).collect();
            let r = dot(&d, &d).sqrt();
            let h = 1.0 / (a + r);
            for (xi, di) in x.iter_mut().zip(&d) {
                *xi += be * h * di;
            }
            ld = radial_log_det(x.len(), a, be, r);
        }
        LayerKind::Calibration(kind) => {
            // the general softmax(A·log x + b) of `runtime::manifold` (A⁻¹ by Gauss–Jordan)
            let Some(map) = calibration(p, k, *kind, x.len()) else {
                x.iter_mut().for_each(|v| *v = f64::NAN);
                return f64::NAN;
            };
            ld = map.log_ratio(x);
            let y = map.forward(x);
            x.copy_from_slice(&y);
        }
        LayerKind::Map(m) => {
            // the map evaluated plainly in f64; the ratio with a dual-number Jacobian and
            // Householder tangent bases
            let params = map_params(p, k, m);
            match (
                crate::ir::map::apply(m, &mut crate::ir::map::F64, x, &params),
                crate::derive::usermap::log_ratio(m, f.space, x, &params),
            ) {
                (Ok(y), Ok(l)) => {
                    x.copy_from_slice(&y);
                    ld = l;
                }
                _ => {
                    x.iter_mut().for_each(|v| *v = f64::NAN);
                    return f64::NAN;
                }
            }
        }
        LayerKind::Normalized(kind) => {
            // the general (Mx + b)/‖Mx + b‖ of `runtime::manifold` (M⁻¹ by Gauss–Jordan, the
            // ratio by the matrix determinant lemma) with M = L·U and b = M·m
            let Some(map) = normalized(p, k, *kind, x.len()) else {
                x.iter_mut().for_each(|v| *v = f64::NAN);
                return f64::NAN;
            };
            ld = map.log_ratio(x);
            let y = map.forward(x);
            x.copy_from_slice(&y);
        }
    }
    ld
}

/// The tensors of user map layer `k`, in the map's parameter order.
fn map_params(p: &Params, k: usize, m: &crate::ir::map::Map) -> Vec<Vec<f64>> {
    m.params.iter().map(|q| p.tensor(k, &q.name).to_vec()).collect()
}

/// Calibration layer `k` as the general simplex map softmax(A·log x + b): A = a·I with
/// a = exp(log_scale), or A = Q·L·U·Qᵀ + 11ᵀ/n (Q Helmert's basis of 1^⊥). `None` when A is
/// singular.
fn calibration(p: &Params, k: usize, kind: crate::ir::Calibration, n: usize) -> Option<runtime::manifold::Calibration> {
    let b = p.tensor(k, "bias").to_vec();
    match kind {
        crate::ir::Calibration::Scalar => runtime::manifold::Calibration::scalar(n, p.get(k, "log_scale", 0).exp(), b).ok(),
        crate::ir::Calibration::Generalized => {
            let (lo, up, dg) = (p.tensor(k, "lower"), p.tensor(k, "upper"), p.tensor(k, "log_diag"));
            let a = runtime::manifold::ilr_lift(&runtime::manifold::lu_product(lo, up, dg, n - 1), n);
            runtime::manifold::Calibration::new(n, a, b).ok()
        }
    }
}

/// Normalized layer `k` as the general sphere map: M = L·U (I without `lower`/`upper`),
/// b = M·m with m = v/√(1 + ‖v‖²) (0 without `shift`). `None` when M is singular.
fn normalized(p: &Params, k: usize, kind: crate::ir::Normalized, n: usize) -> Option<runtime::manifold::NormalizedAffine> {
    let m: Vec<f64> = if kind.multiplies() {
        runtime::manifold::lu_product(p.tensor(k, "lower"), p.tensor(k, "upper"), p.tensor(k, "log_diag"), n)
    } else {
        (0..n * n).map(|i| f64::from(u8::from(i / n == i % n))).collect()
    };
    let mut b = vec![0.0; n];
    if kind.translates() {
        let v = p.tensor(k, "shift");
        let scale = 1.0 / (1.0 + dot(v, v)).sqrt();
        let shift: Vec<f64> = v.iter().map(|x| x * scale).collect();
        for i in 0..n {
            b[i] = (0..n).map(|j| m[i * n + j] * shift[j]).sum();
        }
    }
    runtime::manifold::NormalizedAffine::new(n, m, b).ok()
}

/// Radial layer `k`: z0, α = softplus(alpha), β = −α + softplus(beta).
fn radial(p: &Params, k: usize) -> (&[f64], f64, f64) {
    let a = runtime::math::softplus(p.get(k, "alpha", 0));
    (p.tensor(k, "z0"), a, runtime::math::softplus(p.get(k, "beta", 0)) - a)
}

/// (n − 1)·log(1 + βh) + log(1 + βh + βh'(r)·r), h = 1/(α + r), as in the literature.
fn radial_log_det(n: usize, a: f64, be: f64, r: f64) -> f64 {
    let h = 1.0 / (a + r);
    let dh = -h * h;
    (n as f64 - 1.0) * (1.0 + be * h).ln() + (1.0 + be * h + be * dh * r).ln()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Planar layer `k`: û, w, b and m = ûᵀw = −1 + softplus(wᵀu).
fn planar(p: &Params, k: usize) -> (Vec<f64>, &[f64], f64, f64) {
    let (u, w) = (p.tensor(k, "u"), p.tensor(k, "w"));
    let b = p.get(k, "b", 0);
    let wu = dot(w, u);
    let ww = dot(w, w);
    let m = -1.0 + runtime::math::softplus(wu);
    let c = if ww > 0.0 { (m - wu) / ww } else { 0.0 };
    (u.iter().zip(w).map(|(ui, wi)| ui + c * wi).collect(), w, b, m)
}

/// log(1 + m·sech²(a)), written independently of the derived form.
fn planar_log_det(m: f64, a: f64) -> f64 {
    let c = a.cosh();
    (m / (c * c)).ln_1p()
}

/// One layer, data → base, in place; returns the forward layer's log|det J| at the
/// recovered point.
fn layer_inverse(d: &Derivation, f: &FlowDerivation, p: &Params, k: usize, y: &mut [f64]) -> f64 {
    let l = &f.layers[k];
    let mut ld = 0.0;
    match &l.kind {
        LayerKind::Elementwise => {
            let b = bijector(d, l);
            for (i, yi) in y.iter_mut().enumerate() {
                let (x, li) = inv(b, *yi, &env(l, |n| p.get(k, n, i)));
                *yi = x;
                ld += li;
            }
        }
        LayerKind::Coupling { mask, net } => {
            let b = bijector(d, l);
            let kept: Vec<f64> = (0..f.dim).filter(|i| mask[*i]).map(|i| y[i]).collect();
            let moved: Vec<usize> = (0..f.dim).filter(|i| !mask[*i]).collect();
            let o = net_forward(p, k, net, &kept, moved.len() * l.free.len(), f.dim);
            for (t, &i) in moved.iter().enumerate() {
                let (x, li) = inv(b, y[i], &env(l, conditioned(l, &o, t, moved.len())));
                y[i] = x;
                ld += li;
            }
        }
        LayerKind::Autoregressive { net, inverse: false } => {
            // MAF, density direction: parallel (parameters from the data)
            let b = bijector(d, l);
            let o = net_forward(p, k, net, y, f.dim * l.free.len(), f.dim);
            for (i, yi) in y.iter_mut().enumerate() {
                let (x, li) = inv(b, *yi, &env(l, conditioned(l, &o, i, f.dim)));
                *yi = x;
                ld += li;
            }
        }
        LayerKind::Autoregressive { net, inverse: true } => {
            // IAF, density direction: sequential (x_i needs x_<i)
            let b = bijector(d, l);
            let yv = y.to_vec();
            for i in 0..f.dim {
                let o = net_forward(p, k, net, y, f.dim * l.free.len(), f.dim);
                let (x, li) = inv(b, yv[i], &env(l, conditioned(l, &o, i, f.dim)));
                y[i] = x;
                ld += li;
            }
        }
        LayerKind::LinearLu => {
            let (lo, up, dg) = (p.tensor(k, "lower"), p.tensor(k, "upper"), p.tensor(k, "log_diag"));
            let n = f.dim;
            // L t = y (forward substitution), then U x = t (back substitution)
            let mut t = vec![0.0; n];
            for i in 0..n {
                t[i] = (0..i).fold(y[i], |acc, j| acc - lo[i * n + j] * t[j]);
            }
            for i in (0..n).rev() {
                y[i] = (i + 1..n).fold(t[i], |acc, j| acc - up[i * n + j] * y[j]) / dg[i].exp();
            }
            ld = dg.iter().sum();
        }
        LayerKind::Planar => {
            // α = wᵀz + b solves wᵀy + b = α + m·tanh(α)
            let (uh, w, b, m) = planar(p, k);
            let t = dot(w, y) + b;
            let g = |a: f64| a + m * a.tanh();
            let dg = |a: f64| {
                let c = a.cosh();
                1.0 + m / (c * c)
            };
            let alpha = runtime::rootfind::solve(&g, &dg, t, f64::NEG_INFINITY, f64::INFINITY, true).unwrap_or(f64::NAN);
            let h = alpha.tanh();
            for (yi, ui) in y.iter_mut().zip(&uh) {
                *yi -= ui * h;
            }
            ld = planar_log_det(m, alpha);
        }
        LayerKind::Radial => {
            // ‖y − z0‖ = r·(1 + β/(α + r)), increasing in r: solved numerically here
            let (z0, a, be) = radial(p, k);
            let e: Vec<f64> = y.iter().zip(z0).map(|(yi, ci)| yi - ci).collect();
            let rho = dot(&e, &e).sqrt();
            let g = |r: f64| r * (1.0 + be / (a + r));
            let dg = |r: f64| 1.0 + be * a / ((a + r) * (a + r));
            let r = if rho == 0.0 { 0.0 } else { runtime::rootfind::solve(&g, &dg, rho, 0.0, f64::INFINITY, true).unwrap_or(f64::NAN) };
            let scale = 1.0 + be / (a + r);
            for ((yi, ei), ci) in y.iter_mut().zip(&e).zip(z0) {
                *yi = ci + ei / scale;
            }
            ld = radial_log_det(y.len(), a, be, r);
        }
        LayerKind::Calibration(kind) => {
            let Some(map) = calibration(p, k, *kind, y.len()) else {
                y.iter_mut().for_each(|v| *v = f64::NAN);
                return f64::NAN;
            };
            let x = map.inverse(y);
            ld = map.log_ratio(&x);
            y.copy_from_slice(&x);
        }
        LayerKind::Map(m) => {
            let params = map_params(p, k, m);
            let x = crate::derive::usermap::inverse(m, f.space, y, &params).unwrap_or_else(|_| vec![f64::NAN; y.len()]);
            ld = crate::derive::usermap::log_ratio(m, f.space, &x, &params).unwrap_or(f64::NAN);
            y.copy_from_slice(&x);
        }
        LayerKind::Normalized(kind) => {
            let Some(map) = normalized(p, k, *kind, y.len()) else {
                y.iter_mut().for_each(|v| *v = f64::NAN);
                return f64::NAN;
            };
            let x = map.inverse(y);
            ld = map.log_ratio(&x);
            y.copy_from_slice(&x);
        }
        LayerKind::Permute { perm } => {
            let mut x = vec![0.0; y.len()];
            for (i, &j) in perm.iter().enumerate() {
                x[j] = y[i];
            }
            y.copy_from_slice(&x);
        }
    }
    ld
}

/// Base → data: x = f_K(...f_1(z)); returns Σ log|det J|.
pub fn forward(d: &Derivation, f: &FlowDerivation, p: &Params, z: &[f64], x: &mut [f64]) -> f64 {
    x.copy_from_slice(z);
    (0..f.layers.len()).map(|k| layer_forward(d, f, p, k, x)).sum()
}

/// Data → base: z = f_1^-1(...f_K^-1(x)); returns Σ log|det J| of the forward layers at the
/// recovered points (so log p(x) = log p0(z) − that sum).
pub fn inverse(d: &Derivation, f: &FlowDerivation, p: &Params, x: &[f64], z: &mut [f64]) -> f64 {
    z.copy_from_slice(x);
    (0..f.layers.len()).rev().map(|k| layer_inverse(d, f, p, k, z)).sum()
}

/// Data → layer `from`'s output: the layers after `from` (data side) inverted, in place.
pub fn inverse_to(d: &Derivation, f: &FlowDerivation, p: &Params, from: usize, x: &mut [f64]) {
    for k in (from + 1..f.layers.len()).rev() {
        layer_inverse(d, f, p, k, x);
    }
}

/// log p(x) under the flow (on the sphere: with respect to its surface measure).
pub fn log_prob(d: &Derivation, f: &FlowDerivation, p: &Params, x: &[f64]) -> f64 {
    let mut z = vec![0.0; x.len()];
    let ld = inverse(d, f, p, x, &mut z);
    base_log_pdf(f, &z) - ld
}

/// Rows `first .. first + rows` of the base distribution's seeded stream `seed`
/// (`runtime::sample`: reproducible whatever the thread count).
pub fn base_rows(f: &FlowDerivation, seed: u64, first: usize, rows: usize) -> Vec<f64> {
    match &f.base {
        crate::ir::Base::Normal => runtime::sample::normal_rows(seed, first, rows, f.dim),
        crate::ir::Base::Uniform => runtime::sample::sphere_rows(seed, first, rows, f.dim),
        crate::ir::Base::Vmf(kappa) => runtime::sample::vmf_rows(seed, first, rows, f.dim, *kappa),
        crate::ir::Base::Dirichlet(alpha) => runtime::sample::dirichlet_rows(seed, first, rows, alpha),
    }
}

/// How far a row of a sphere flow may be from the unit sphere (|‖x‖ − 1|), or a row of a
/// simplex flow from the simplex (|Σx − 1|): rows this close are projected onto it (x/‖x‖,
/// x/Σx, by the kernels); rows farther away are rejected.
pub const MANIFOLD_TOL: f64 = 1e-6;

/// Checks that every row of `data` lies in the flow's space; the message names the first that
/// does not (numbered from 1, `first` rows having come before `data`).
pub fn check_rows(f: &FlowDerivation, data: &[f64], first: usize) -> Result<(), String> {
    let row_of = |r: usize| first + r + 1;
    let space = format!("flow `{}` is on {}", f.name, f.space.spelled(f.dim));
    match f.space {
        crate::ir::Space::Real => {}
        crate::ir::Space::Sphere => {
            for (r, row) in data.chunks(f.dim).enumerate() {
                let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt();
                if (norm - 1.0).abs() > MANIFOLD_TOL || norm.is_nan() {
                    return Err(format!(
                        "row {} is not on the unit sphere: ‖x‖ = {norm} ({space}; rows within {MANIFOLD_TOL:e} of norm 1 are projected onto it, others are errors)",
                        row_of(r)
                    ));
                }
            }
        }
        crate::ir::Space::Simplex => {
            for (r, row) in data.chunks(f.dim).enumerate() {
                if let Some(i) = row.iter().position(|v| v.is_nan() || *v <= 0.0) {
                    return Err(format!(
                        "row {} is not in the open simplex: x_{i} = {} ({space}: every coordinate must be positive)",
                        row_of(r),
                        row[i]
                    ));
                }
                let total: f64 = row.iter().sum();
                if (total - 1.0).abs() > MANIFOLD_TOL {
                    return Err(format!(
                        "row {} is not on the simplex: Σx = {total} ({space}; rows within {MANIFOLD_TOL:e} of sum 1 are projected onto it, others are errors)",
                        row_of(r)
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The base distribution's log density at `z`.
pub fn base_log_pdf(f: &FlowDerivation, z: &[f64]) -> f64 {
    match &f.base {
        crate::ir::Base::Normal => z.iter().map(|&zi| runtime::base::std_normal_log_pdf(zi)).sum::<f64>(),
        crate::ir::Base::Uniform => runtime::base::sphere_uniform_log_pdf(f.dim),
        crate::ir::Base::Vmf(kappa) => {
            // the density of the projected point (as the kernels)
            let r = z.iter().map(|v| v * v).sum::<f64>().sqrt();
            runtime::base::vmf_log_norm(f.dim, *kappa) + kappa * z[f.dim - 1] / r
        }
        crate::ir::Base::Dirichlet(alpha) => runtime::base::dirichlet_log_pdf(alpha, z),
    }
}
