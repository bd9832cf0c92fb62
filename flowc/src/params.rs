//! A flow's learnable tensors and parameter files: the listing (`flowc params`), a seeded
//! standard initialization, loading a safetensors file with every mismatch reported, and the
//! flat buffer kernels read.

use crate::derive::{Derivation, FlowDerivation, LayerKind};
use crate::interp::Params;
use runtime::param_file::{FileDtype, Tensor};
use std::collections::BTreeMap;
use std::path::Path;

/// The flow's tensors as a table: name, shape, what it is.
pub fn listing(f: &FlowDerivation) -> String {
    let mut out = format!("{:<32} {:<12} {}\n", "name", "shape", "role");
    let mut total = 0;
    for (k, l) in f.layers.iter().enumerate() {
        for (name, shape) in l.tensors(k, f.dim) {
            total += shape.iter().product::<usize>();
            let role = match &l.kind {
                LayerKind::Elementwise => {
                    let p = name.rsplit('.').next().unwrap_or_default();
                    let kind = l.free.iter().find(|q| q.name == p).map(|q| q.kind.name()).unwrap_or("real");
                    format!("per-coordinate `{p}` ({kind})")
                }
                LayerKind::Coupling { .. } | LayerKind::Autoregressive { .. } => {
                    if name.ends_with("weight") {
                        "network weight [out, in]".to_string()
                    } else {
                        "network bias".to_string()
                    }
                }
                LayerKind::LinearLu => match name.rsplit('.').next().unwrap_or_default() {
                    "lower" => "L below the diagonal (unit diagonal)".to_string(),
                    "upper" => "U above the diagonal".to_string(),
                    _ => "U's diagonal = exp(log_diag)".to_string(),
                },
                LayerKind::Permute { .. } => String::new(),
                LayerKind::Radial => match name.rsplit('.').next().unwrap_or_default() {
                    "z0" => "centre z0".to_string(),
                    "alpha" => "α = softplus(alpha) > 0".to_string(),
                    _ => "β = −α + softplus(beta)".to_string(),
                },
                LayerKind::Calibration(_) => match name.rsplit('.').next().unwrap_or_default() {
                    "log_scale" => "a = exp(log_scale) > 0".to_string(),
                    "bias" => "b, added to the logits".to_string(),
                    "lower" => "B = L U: L below the diagonal (unit diagonal)".to_string(),
                    "upper" => "B = L U: U above the diagonal".to_string(),
                    _ => "U's diagonal = exp(log_diag)".to_string(),
                },
                LayerKind::Map(m) => {
                    let p = name.rsplit('.').next().unwrap_or_default();
                    let shape = m.params.iter().find(|q| q.name == p).map(|q| q.shape.spelled()).unwrap_or_default();
                    format!("`{p}` of map `{}` ({shape})", m.name)
                }
                LayerKind::Normalized(_) => match name.rsplit('.').next().unwrap_or_default() {
                    "lower" => "M = L U: L below the diagonal (unit diagonal)".to_string(),
                    "upper" => "M = L U: U above the diagonal".to_string(),
                    "log_diag" => "U's diagonal = exp(log_diag)".to_string(),
                    _ => "v: translation m = v/√(1 + ‖v‖²), ‖m‖ < 1".to_string(),
                },
                LayerKind::Planar => match name.rsplit('.').next().unwrap_or_default() {
                    "u" => "direction u (û = u + (m(wᵀu) − wᵀu)·w/‖w‖²)".to_string(),
                    "w" => "normal w".to_string(),
                    _ => "offset b".to_string(),
                },
            };
            let sh: Vec<String> = shape.iter().map(|s| s.to_string()).collect();
            out.push_str(&format!("{:<32} {:<12} {}\n", name, format!("[{}]", sh.join(", ")), role));
        }
    }
    out.push_str(&format!("{total} values in all\n"));
    out
}

/// Seeded standard initialization: network layers as PyTorch's `nn.Linear` (weight and bias
/// uniform in ±1/√fan_in), LU factors uniform in ±0.1 with log_diag 0, planar and radial
/// tensors uniform in ±1/√dim, sphere translations (`shift`) uniform in ±0.5/√dim,
/// calibration biases uniform in ±0.5, user maps' tensors their default (square matrices I,
/// the rest 0) plus uniform ±0.1, per-coordinate
/// parameters at their kind's identity-like default.
pub fn init(d: &Derivation, f: &FlowDerivation, seed: u64) -> Params {
    let mut p = Params::defaults(d, f);
    for (i, (name, v)) in p.values.iter_mut().enumerate() {
        let shape = &p.shapes[name];
        let s = seed.wrapping_mul(1_000_003).wrapping_add(i as u64);
        let bound = if name.contains(".net.") {
            // weight [out, in] or bias [out] of the layer with that weight
            let fan_in = if name.ends_with("weight") { shape[1] } else { 0 };
            let fan_in = if fan_in == 0 {
                let w = name.trim_end_matches("bias").to_string() + "weight";
                f.layers.iter().enumerate().flat_map(|(k, l)| l.tensors(k, f.dim)).find(|(n, _)| *n == w).map(|(_, s)| s[1]).unwrap_or(1)
            } else {
                fan_in
            };
            1.0 / (fan_in.max(1) as f64).sqrt()
        } else if name.ends_with(".lower") || name.ends_with(".upper") {
            0.1
        } else if name.ends_with(".shift") && is_normalized(f, name) {
            0.5 / (f.dim as f64).sqrt()
        } else if name.ends_with(".bias") && is_calibration(f, name) {
            0.5
        } else if is_planar(f, name) {
            1.0 / (f.dim as f64).sqrt()
        } else if is_user_map(f, name) {
            // near the identity-like default (square matrices I): a perturbation
            for (a, u) in v.iter_mut().zip(runtime::sample::uniform(s, shape.iter().product(), 0.1)) {
                *a += u;
            }
            continue;
        } else {
            continue;
        };
        let n = v.len();
        v.copy_from_slice(&runtime::sample::uniform(s, n, bound));
    }
    p
}

/// Whether `name` is a tensor of a normalized (sphere) layer of `f`.
fn is_normalized(f: &FlowDerivation, name: &str) -> bool {
    f.layers.iter().enumerate().any(|(k, l)| matches!(l.kind, LayerKind::Normalized(_)) && name.starts_with(&format!("layers.{k}.")))
}

/// Whether `name` is a tensor of a user-written map layer of `f`.
fn is_user_map(f: &FlowDerivation, name: &str) -> bool {
    f.layers.iter().enumerate().any(|(k, l)| matches!(l.kind, LayerKind::Map(_)) && name.starts_with(&format!("layers.{k}.")))
}

/// Whether `name` is a tensor of a calibration (simplex) layer of `f`.
fn is_calibration(f: &FlowDerivation, name: &str) -> bool {
    f.layers.iter().enumerate().any(|(k, l)| matches!(l.kind, LayerKind::Calibration(_)) && name.starts_with(&format!("layers.{k}.")))
}

/// Whether `name` is a tensor of a planar or radial layer of `f`.
fn is_planar(f: &FlowDerivation, name: &str) -> bool {
    f.layers
        .iter()
        .enumerate()
        .any(|(k, l)| matches!(l.kind, LayerKind::Planar | LayerKind::Radial) && name.starts_with(&format!("layers.{k}.")))
}

/// Loads a parameter file for flow `f`: every tensor must be present with its shape; extra
/// tensors are errors too (a misspelled name would otherwise be ignored). All mismatches are
/// reported at once.
pub fn load(d: &Derivation, f: &FlowDerivation, path: &Path) -> Result<Params, String> {
    let file = runtime::param_file::read(path)?;
    let mut p = Params::defaults(d, f);
    let mut problems = Vec::new();
    for (name, shape) in &p.shapes {
        match file.get(name) {
            None => problems.push(format!("missing tensor `{name}` with shape {shape:?}")),
            Some(t) if &t.shape != shape => {
                problems.push(format!("tensor `{name}` has shape {:?}; flow `{}` needs {shape:?}", t.shape, f.name))
            }
            Some(t) => {
                if let Some(i) = t.data.iter().position(|v| !v.is_finite()) {
                    problems.push(format!("tensor `{name}` has a non-finite value at flat index {i}"));
                }
            }
        }
    }
    for name in file.keys() {
        if !p.shapes.contains_key(name) {
            let hint = crate::ir::suggest(name, p.shapes.keys().map(|s| s.as_str()))
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            problems.push(format!("unexpected tensor `{name}`{hint}"));
        }
    }
    if !problems.is_empty() {
        return Err(format!(
            "`{}` does not fit flow `{}`:\n  - {}\n  = help: `flowc params FILE --name {}` lists the expected tensors",
            path.display(),
            f.name,
            problems.join("\n  - "),
            f.name
        ));
    }
    for (name, v) in p.values.iter_mut() {
        v.copy_from_slice(&file[name].data);
    }
    Ok(p)
}

/// Writes parameters to a safetensors file (atomically).
pub fn save(p: &Params, path: &Path, dtype: FileDtype) -> Result<(), String> {
    let tensors: BTreeMap<String, Tensor> =
        p.values.iter().map(|(n, v)| (n.clone(), Tensor { shape: p.shapes[n].clone(), data: v.clone() })).collect();
    runtime::param_file::write(path, &tensors, dtype)
}

/// The flat parameter buffer of the flow's kernels.
pub fn flat(f: &FlowDerivation, p: &Params) -> Vec<f64> {
    let slots = crate::lower::param_slots(f);
    let mut out = vec![0.0; slots.iter().map(|s| s.len).sum()];
    for s in &slots {
        if let Some(v) = p.values.get(&s.name) {
            out[s.offset..s.offset + s.len].copy_from_slice(v);
        }
    }
    out
}
