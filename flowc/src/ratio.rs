//! Stage 5c: a manifold flow's `forward` [`Kernel`] → the same map with its log volume ratio
//! computed generically: R(x) = |det(T_yᵀ F_x T_x)|, F_x the ambient Jacobian of the compiled
//! forward map (forward mode over the kernel body, the derivative rules of `derive::diff`),
//! for any map of the sphere or the simplex. It verifies the closed forms (`flowc check`) and
//! is the fallback for maps without one.
//!
//! No tangent bases are formed: with unit normals n_x at x and n_y at y (x/‖x‖ and y/‖y‖ on
//! the sphere, 1/√n on the simplex) and P = I − n_x n_xᵀ,
//! R = |det(F_x P + n_y n_xᵀ)|, an n × n determinant: for orthonormal tangent bases T_x, T_y,
//! [T_x n_x] and [T_y n_y] are orthogonal, (F_x P + n_y n_xᵀ)[T_x n_x] = [F_x T_x  n_y] (F_x
//! maps the tangent space into the tangent space at y), and [T_y n_y]ᵀ[F_x T_x n_y] is block
//! triangular with blocks T_yᵀF_xT_x and 1. The columns F_x P e_i are n directional
//! derivatives of the forward map along P e_i; the determinant is [`Inst::LogAbsDet`]
//! (elimination with partial pivoting on the host).
//!
//! On the simplex the same determinant is taken in log coordinates, where it is well scaled
//! however small the coordinates: R = |det B|·Π y_i/Π x_i with
//! B = C D_y⁻¹ F_x (D_x − x xᵀ) + 11ᵀ/n (C = I − 11ᵀ/n): B's entries are derivatives of
//! log y by log x, B·1 = 1, and on 1^⊥ B is the Jacobian of the map in isometric log-ratio
//! coordinates, whose volume element is Π x_i times that of the simplex ([`simplex_matrix`]).
//!
//! ```
//! let src = "flow s(x: sphere(3)) { base uniform; normalized_affine; normalized_translation; }";
//! let (_, _, d) = flowc::cli::load_str("s.flow", src).unwrap();
//! let p = flowc::lower::lower(&d).unwrap();
//! let fwd = p.kernel("s", flowc::lower::Kind::Forward).unwrap();
//! let generic = flowc::ratio::generic(fwd, flowc::ir::Space::Sphere).unwrap();
//! let params = vec![0.1; fwd.param_len()];
//! let x = [0.6, 0.0, 0.8];
//! let (a, b) = (flowc::lower::run(fwd, &x, &params), flowc::lower::run(&generic, &x, &params));
//! assert!((a[3] - b[3]).abs() < 1e-13 && (a[0] - b[0]).abs() < 1e-15);
//! ```

use crate::grad::Rules;
use crate::ir::op::Math;
use crate::ir::Space;
use crate::lower::{Emitter, Inst, Kernel, Kind, Value};
use egg::Id;

/// The generic-ratio kernel of a sphere or simplex flow's forward kernel: the same outputs
/// (y, then log R) with log R = log|det(F_x P + n_y n_xᵀ)|.
pub fn generic(k: &Kernel, space: Space) -> Result<Kernel, String> {
    let (mut em, inputs, ys) = prelude(k, space)?;
    let n = k.dim;
    let ld = if space == Space::Simplex {
        // the rows are projected by the kernel (x/Σx): the ratio is taken at the projected point
        let xs = projected(&em, &inputs);
        let entries = simplex_matrix(&mut em, &xs, &ys)?;
        let det = em.push(Inst::LogAbsDet { n, entries });
        let z = Id::from(0usize);
        let mut acc = det;
        for (x, y) in xs.iter().zip(&ys) {
            let ly = em.op(Math::Log(z), vec![*y]);
            let lx = em.op(Math::Log(z), vec![*x]);
            let t = em.op(Math::Sub([z, z]), vec![ly, lx]);
            acc = em.op(Math::Add([z, z]), vec![acc, t]);
        }
        acc
    } else {
        let entries = tangent_matrix(&mut em, &inputs, &ys, space)?;
        em.push(Inst::LogAbsDet { n, entries })
    };
    finish(k, em, ys, ld)
}

/// The generic ratio as defined, with tangent bases formed: log|det(T_yᵀ F_x T_x)|, T_x and
/// T_y the last n − 1 columns of the Householder reflection that maps the unit normal at x (at
/// y) to a multiple of e₁ — the Q of a QR of [n | I − n nᵀ], as peers compute it — F_x T_x by
/// forward mode along those n − 1 directions, and an (n − 1) × (n − 1) determinant. Slower
/// than [`generic`] (two bases and a product with them per row); an independent check of it
/// and of the closed forms. On the simplex F_x is taken in plain coordinates: only as good as
/// its conditioning (rows scale with y, columns with 1/x).
pub fn generic_bases(k: &Kernel, space: Space) -> Result<Kernel, String> {
    let (mut em, inputs, ys) = prelude(k, space)?;
    let n = k.dim;
    let xs = if space == Space::Simplex { projected(&em, &inputs) } else { inputs };
    let nx = unit_normal(&mut em, &xs, space);
    let tx = householder_basis(&mut em, &nx);
    let ny = unit_normal(&mut em, &ys, space);
    let ty = householder_basis(&mut em, &ny);
    let cols = jvp(&mut em, &xs, &ys, &tx)?;
    let z = Id::from(0usize);
    let mut entries = Vec::with_capacity((n - 1) * (n - 1));
    for t in &ty {
        for c in &cols {
            let mut acc = em.op(Math::Mul([z, z]), vec![t[0], c[0]]);
            for i in 1..n {
                let p = em.op(Math::Mul([z, z]), vec![t[i], c[i]]);
                acc = em.op(Math::Add([z, z]), vec![acc, p]);
            }
            entries.push(acc);
        }
    }
    let ld = em.push(Inst::LogAbsDet { n: n - 1, entries });
    finish(k, em, ys, ld)
}

/// A forward kernel's body to extend, the values of its inputs, and its image.
fn prelude(k: &Kernel, space: Space) -> Result<(Emitter, Vec<Value>, Vec<Value>), String> {
    if k.kind != Kind::Forward {
        return Err(format!("the generic ratio is taken of a forward kernel, not of `{}.{}`", k.flow, k.kind.name()));
    }
    if space == Space::Real {
        return Err(format!("`{}` is a flow on R^n: its log-determinant is generic already", k.flow));
    }
    let ys: Vec<Value> = k.outputs[..k.dim].to_vec();
    let inputs: Vec<Value> = (0..k.dim)
        .map(|j| k.body.insts.iter().position(|i| *i == Inst::Input(j)).map(Ok).unwrap_or_else(|| Err(())))
        .collect::<Result<_, _>>()
        .map_err(|_| "a forward kernel reads every coordinate".to_string())?;
    Ok((Emitter::from_body(k.body.clone()), inputs, ys))
}

/// The kernel with outputs (y, log R), pruned.
fn finish(k: &Kernel, em: Emitter, ys: Vec<Value>, ld: Value) -> Result<Kernel, String> {
    let mut outputs = ys;
    outputs.push(ld);
    let (body, outputs) = crate::lower::prune(em.body, &outputs);
    Ok(Kernel { flow: k.flow.clone(), kind: Kind::Ratio, dim: k.dim, params: k.params.clone(), body, outputs })
}

/// The unit normal of `space` at the point `v`: v/‖v‖ on the sphere, 1/√n on the simplex.
fn unit_normal(em: &mut Emitter, v: &[Value], space: Space) -> Vec<Value> {
    let z = Id::from(0usize);
    match space {
        Space::Sphere => {
            let mut s = em.op(Math::Mul([z, z]), vec![v[0], v[0]]);
            for a in &v[1..] {
                let sq = em.op(Math::Mul([z, z]), vec![*a, *a]);
                s = em.op(Math::Add([z, z]), vec![s, sq]);
            }
            let r = em.op(Math::Sqrt(z), vec![s]);
            let one = em.num(1.0);
            let inv = em.op(Math::Div([z, z]), vec![one, r]);
            v.iter().map(|a| em.op(Math::Mul([z, z]), vec![*a, inv])).collect()
        }
        _ => (0..v.len()).map(|_| em.num(1.0 / (v.len() as f64).sqrt())).collect(),
    }
}

/// Columns 2..n of the Householder reflection H = I − w wᵀ/(1 + |u₁|), w = u + sign(u₁)e₁,
/// of the unit vector u: an orthonormal basis of u^⊥ (H e₁ = −sign(u₁)·u; 1 + |u₁| ≥ 1, no
/// cancellation).
fn householder_basis(em: &mut Emitter, u: &[Value]) -> Vec<Vec<Value>> {
    let z = Id::from(0usize);
    let one = em.num(1.0);
    let up = em.op(Math::Add([z, z]), vec![u[0], one]);
    let down = em.op(Math::Sub([z, z]), vec![u[0], one]);
    let w0 = em.op(Math::IfPos([z, z, z]), vec![u[0], up, down]);
    let a = em.op(Math::Abs(z), vec![u[0]]);
    let d = em.op(Math::Add([z, z]), vec![one, a]);
    let c = em.op(Math::Div([z, z]), vec![one, d]);
    let w: Vec<Value> = std::iter::once(w0).chain(u[1..].iter().copied()).collect();
    (1..u.len())
        .map(|j| {
            let wc = em.op(Math::Mul([z, z]), vec![w[j], c]);
            (0..u.len())
                .map(|i| {
                    let p = em.op(Math::Mul([z, z]), vec![w[i], wc]);
                    if i == j {
                        em.op(Math::Sub([z, z]), vec![one, p])
                    } else {
                        em.op(Math::Neg(z), vec![p])
                    }
                })
                .collect()
        })
        .collect()
}

/// The entries (row-major) of F P + n_y n_xᵀ for the map from values `xs` (a point of
/// `space`) to values `ys` already emitted: F by forward mode over the instructions between
/// them (the derivative rules of `grad`), n_x and n_y the unit normals at x and y. Its
/// |determinant| is the volume ratio; Newton's method on the sphere solves with it.
pub(crate) fn tangent_matrix(em: &mut Emitter, xs: &[Value], ys: &[Value], space: Space) -> Result<Vec<Value>, String> {
    let n = xs.len();
    let z = Id::from(0usize);
    let mul = |em: &mut Emitter, a: Value, b: Value| em.op(Math::Mul([z, z]), vec![a, b]);
    let add = |em: &mut Emitter, a: Value, b: Value| em.op(Math::Add([z, z]), vec![a, b]);
    let sub = |em: &mut Emitter, a: Value, b: Value| em.op(Math::Sub([z, z]), vec![a, b]);
    let normal = |em: &mut Emitter, v: &[Value]| -> Vec<Value> {
        match space {
            Space::Sphere => {
                let sq: Vec<Value> = v.iter().map(|a| mul(em, *a, *a)).collect();
                let mut s = sq[0];
                for t in &sq[1..] {
                    s = add(em, s, *t);
                }
                let r = em.op(Math::Sqrt(z), vec![s]);
                let one = em.num(1.0);
                let inv = em.op(Math::Div([z, z]), vec![one, r]);
                v.iter().map(|a| mul(em, *a, inv)).collect()
            }
            _ => (0..n).map(|_| em.num(1.0 / (n as f64).sqrt())).collect(),
        }
    };
    let nx = normal(em, xs);
    let ny = normal(em, ys);
    // column i: the derivative along P e_i = e_i − n_x (n_x)_i
    let dirs: Vec<Vec<Value>> = (0..n)
        .map(|i| {
            (0..n)
                .map(|j| {
                    let p = mul(em, nx[j], nx[i]);
                    if j == i {
                        let one = em.num(1.0);
                        sub(em, one, p)
                    } else {
                        em.op(Math::Neg(z), vec![p])
                    }
                })
                .collect()
        })
        .collect();
    let cols = jvp(em, xs, ys, &dirs)?;
    // F P + n_y n_xᵀ, row-major
    let mut entries = Vec::with_capacity(n * n);
    for r in 0..n {
        for c in 0..n {
            let outer = mul(em, ny[r], nx[c]);
            entries.push(add(em, cols[c][r], outer));
        }
    }
    Ok(entries)
}

/// The simplex point a forward kernel works on: its inputs as projected at the kernel's start
/// (x_i·(1/Σx)), found in the body; the inputs themselves when not projected.
fn projected(em: &Emitter, inputs: &[Value]) -> Vec<Value> {
    let insts = &em.body.insts;
    inputs.iter().map(|x| insts.iter().position(|i| matches!(i, Inst::Op(Math::Mul(_), a) if a[0] == *x)).unwrap_or(*x)).collect()
}

/// The entries (row-major) of B = C D_y⁻¹ F (D_x − x xᵀ) + 11ᵀ/n for the simplex map from
/// values `xs` to values `ys` (C = I − 11ᵀ/n): derivatives of log y by log x, well scaled
/// at any coordinates. log R = log|det B| + Σ log y − Σ log x (see the module's notes);
/// Newton's method on the simplex solves with B.
pub(crate) fn simplex_matrix(em: &mut Emitter, xs: &[Value], ys: &[Value]) -> Result<Vec<Value>, String> {
    let n = xs.len();
    let z = Id::from(0usize);
    let bin = |em: &mut Emitter, m: Math, a: Value, b: Value| em.op(m, vec![a, b]);
    // directions x_i (e_i − x): F along them is F (D_x − x xᵀ) column by column
    let dirs: Vec<Vec<Value>> = (0..n)
        .map(|i| {
            (0..n)
                .map(|j| {
                    let p = bin(em, Math::Mul([z, z]), xs[i], xs[j]);
                    if i == j {
                        bin(em, Math::Sub([z, z]), xs[i], p)
                    } else {
                        em.op(Math::Neg(z), vec![p])
                    }
                })
                .collect()
        })
        .collect();
    let cols = jvp(em, xs, ys, &dirs)?;
    let inv_n = em.num(1.0 / n as f64);
    let inv_y: Vec<Value> = ys
        .iter()
        .map(|y| {
            let one = em.num(1.0);
            bin(em, Math::Div([z, z]), one, *y)
        })
        .collect();
    let mut entries = vec![0; n * n];
    for (c, col) in cols.iter().enumerate() {
        let rel: Vec<Value> = col.iter().zip(&inv_y).map(|(a, b)| bin(em, Math::Mul([z, z]), *a, *b)).collect();
        let mut tot = rel[0];
        for v in &rel[1..] {
            tot = bin(em, Math::Add([z, z]), tot, *v);
        }
        let mean = bin(em, Math::Mul([z, z]), tot, inv_n);
        let shift = bin(em, Math::Sub([z, z]), inv_n, mean);
        for (row, v) in rel.iter().enumerate() {
            entries[row * n + c] = bin(em, Math::Add([z, z]), *v, shift);
        }
    }
    Ok(entries)
}

/// The directional derivatives F·d of the map from values `xs` to values `ys` (already
/// emitted) along each direction of `dirs`: forward mode over the instructions between them,
/// with the derivative rules of `grad`. One column (ys.len() values) per direction.
pub(crate) fn jvp(em: &mut Emitter, xs: &[Value], ys: &[Value], dirs: &[Vec<Value>]) -> Result<Vec<Vec<Value>>, String> {
    let insts = em.body.insts.clone();
    let first = xs.iter().copied().min().unwrap_or(0);
    // the instructions the image depends on, from the first coordinate of x on
    let mut needed = vec![false; insts.len()];
    for y in ys {
        needed[*y] = true;
    }
    for i in (first..insts.len()).rev() {
        if needed[i] && !xs.contains(&i) {
            for a in insts[i].args() {
                needed[a] = true;
            }
        }
    }
    let z = Id::from(0usize);
    let mut rules = Rules::default();
    let mut cols: Vec<Vec<Value>> = Vec::with_capacity(dirs.len());
    for dir in dirs {
        let mut tan: Vec<Option<Value>> = vec![None; insts.len()];
        for (idx, inst) in insts.iter().enumerate().skip(first) {
            if !needed[idx] {
                continue;
            }
            if let Some(j) = xs.iter().position(|x| *x == idx) {
                tan[idx] = Some(dir[j]);
                continue;
            }
            tan[idx] = match inst {
                Inst::Input(_) | Inst::Param(_) | Inst::Const(_) => None,
                Inst::Op(m, args) => {
                    let mut acc: Option<Value> = None;
                    for (j, a) in args.iter().enumerate() {
                        let Some(t) = tan[*a] else { continue };
                        let want: Vec<bool> = (0..args.len()).map(|q| q == j).collect();
                        if let Some(c) = rules.adjoint(em, m, args, idx, t, &want)?[j] {
                            acc = Some(match acc {
                                None => c,
                                Some(s) => em.op(Math::Add([z, z]), vec![s, c]),
                            });
                        }
                    }
                    acc
                }
                other if other.args().iter().all(|a| tan[*a].is_none()) => None,
                other => return Err(format!("the generic ratio cannot differentiate {other:?} yet")),
            };
        }
        cols.push(ys.iter().map(|y| tan[*y].unwrap_or_else(|| em.num(0.0))).collect());
    }
    Ok(cols)
}
