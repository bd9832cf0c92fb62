//! Parameter files: safetensors with PyTorch-style names (`layers.3.net.0.weight`, weights
//! [out, in]). Values are read as f64 from F64, F32, F16 or BF16 tensors and written as F64 or
//! F32; files are written atomically (a temporary file renamed into place).

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::BTreeMap;
use std::path::Path;

/// One tensor: its shape (row-major) and values.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

/// Element type of a written file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileDtype {
    F32,
    F64,
}

fn half_to_f64(bits: u16, bf16: bool) -> f64 {
    if bf16 {
        return f32::from_bits((bits as u32) << 16) as f64;
    }
    let sign = if bits >> 15 == 1 { -1.0 } else { 1.0 };
    let exp = ((bits >> 10) & 0x1f) as i32;
    let frac = (bits & 0x3ff) as f64;
    match exp {
        0 => sign * frac * 2f64.powi(-24),
        31 if frac == 0.0 => sign * f64::INFINITY,
        31 => f64::NAN,
        e => sign * (1.0 + frac / 1024.0) * 2f64.powi(e - 15),
    }
}

/// Reads every tensor of a safetensors file.
pub fn read(path: &Path) -> Result<BTreeMap<String, Tensor>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| format!("`{}` is not a safetensors file: {e}", path.display()))?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        let raw = view.data();
        let data: Vec<f64> = match view.dtype() {
            Dtype::F64 => raw.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes"))).collect(),
            Dtype::F32 => raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")) as f64).collect(),
            Dtype::F16 => raw.chunks_exact(2).map(|c| half_to_f64(u16::from_le_bytes([c[0], c[1]]), false)).collect(),
            Dtype::BF16 => raw.chunks_exact(2).map(|c| half_to_f64(u16::from_le_bytes([c[0], c[1]]), true)).collect(),
            other => {
                return Err(format!("`{}`: tensor `{name}` has dtype {other:?}; parameters must be F64, F32, F16 or BF16", path.display()))
            }
        };
        out.insert(name, Tensor { shape: view.shape().to_vec(), data });
    }
    Ok(out)
}

/// Writes tensors to a safetensors file (atomically).
pub fn write(path: &Path, tensors: &BTreeMap<String, Tensor>, dtype: FileDtype) -> Result<(), String> {
    let bufs: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, t)| {
            let bytes = match dtype {
                FileDtype::F64 => t.data.iter().flat_map(|v| v.to_le_bytes()).collect(),
                FileDtype::F32 => t.data.iter().flat_map(|v| (*v as f32).to_le_bytes()).collect(),
            };
            (n.clone(), t.shape.clone(), bytes)
        })
        .collect();
    let dt = match dtype {
        FileDtype::F64 => Dtype::F64,
        FileDtype::F32 => Dtype::F32,
    };
    let mut views = Vec::new();
    for (n, shape, bytes) in &bufs {
        views.push((n.clone(), TensorView::new(dt, shape.clone(), bytes).map_err(|e| format!("tensor `{n}`: {e}"))?));
    }
    let bytes = safetensors::serialize(views, None).map_err(|e| format!("cannot encode parameters: {e}"))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
    std::io::Write::write_all(&mut tmp, &bytes).map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
    tmp.persist(path).map_err(|e| format!("cannot write `{}`: {}", path.display(), e.error))?;
    Ok(())
}
