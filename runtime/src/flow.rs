//! What compiled flows have in common: the [`Flow`] trait, and [`run_blocks`], the row
//! loop of their batch functions.
//!
//! The batch functions follow the kernel calling convention of the JIT: rows are row-major
//! (`dim` values each) and every row gets the kernel's outputs (`log_prob`: one value;
//! `forward` and `inverse`: the `dim` mapped values, then Σ log|det J| of the forward layers).
//!
//! ```
//! use runtime::{flow::run_blocks, Block, Real};
//! // a kernel body, generic over one row (`V = f64`) or a block of rows (`V = f64::Block`)
//! fn body<V: Block<f64>>(x: [V; 2]) -> [V; 1] {
//!     [V::exp(x[0]) + x[1] * V::c(2.0)]
//! }
//! let rows = [0.0, 1.0, 1.0, 0.5, 0.0, 0.0, 2.0, -1.0, 0.5, 0.5];
//! let mut out = [0.0; 5];
//! run_blocks(&rows, &mut out, body::<<f64 as Real>::Block>, body::<f64>);
//! assert_eq!(out[1], 1f64.exp() + 1.0);
//! ```

use crate::params::{ParamError, Slot};
use crate::real::{Block, Real};
use crate::rng::Rng;

/// A normalizing flow on R^DIM (or the sphere or the simplex in it), compiled for `T`.
pub trait Flow<T: Real>: Sized {
    /// The flow's name in the flow language.
    const NAME: &'static str;
    /// Dimension of a point.
    const DIM: usize;
    /// The parameter vectors, in the flat layout.
    const PARAMS: &'static [Slot];
    /// From a flat parameter buffer (checked).
    fn from_flat(params: &[T]) -> Result<Self, ParamError>;
    /// The flat parameter buffer.
    fn flat(&self) -> &[T];
    /// log p(x) of every row of `xs` into `out` (one value per row).
    fn log_prob_rows(&self, xs: &[T], out: &mut [T]);
    /// Base points to data points: `out` gets DIM + 1 values per row (x, then log|det J|).
    fn forward_rows(&self, zs: &[T], out: &mut [T]);
    /// Data points to base points: `out` gets DIM + 1 values per row (z, then Σ log|det J|
    /// of the forward layers at the recovered points).
    fn inverse_rows(&self, xs: &[T], out: &mut [T]);
    /// [`Flow::log_prob_rows`] on `threads` threads (0 = all cores), over chunks of
    /// [`crate::batch::CHUNK_ROWS`] rows; the values do not depend on the thread count.
    /// `Err` when the shapes do not fit or the threads cannot be started.
    fn log_prob_rows_par(&self, xs: &[T], out: &mut [T], threads: usize) -> Result<(), String>
    where
        Self: Sync,
    {
        crate::batch::run_rows(xs, Self::DIM, out, 1, threads, &|r: &[T], o: &mut [T]| self.log_prob_rows(r, o))
    }
    /// Fills `z` with base points (rows of DIM values): standard normal draws unless the flow's
    /// base is another distribution (a sphere flow's forward kernel projects them onto the
    /// sphere, where they are uniform).
    fn fill_base(rng: &mut Rng, z: &mut [T]) {
        rng.fill_normal(z);
    }
    /// `n` points drawn from the flow, row-major.
    fn sample_rows(&self, rng: &mut Rng, n: usize) -> Vec<T> {
        let d = Self::DIM;
        let mut z = vec![T::ZERO; n * d];
        Self::fill_base(rng, &mut z);
        let mut out = vec![T::ZERO; n * (d + 1)];
        self.forward_rows(&z, &mut out);
        out.chunks(d + 1).flat_map(|r| r[..d].iter().copied()).collect()
    }
}

/// A scalar bijector compiled for `T` (a `bijector` of the flow language).
pub trait Bijector<T: Real>: Sized {
    /// The bijector's name in the flow language.
    const NAME: &'static str;
    /// Its parameters, one value each, in declaration order.
    const PARAMS: &'static [Slot];
    /// From parameter values in declaration order (checked).
    fn from_params(params: &[T]) -> Result<Self, ParamError>;
    /// y = f(x).
    fn forward(&self, x: T) -> T;
    /// x = f^-1(y).
    fn inverse(&self, y: T) -> T;
    /// log|f'(x)|.
    fn log_det(&self, x: T) -> T;
}

/// Applies a kernel to every row of `rows` (`D` values each), writing `O` values per row to
/// `out`: blocks of rows ([`Real::Block`]) through `block`, the remaining rows through `row`.
///
/// # Panics
/// When `rows` is not whole rows or `out` does not have `O` values per row.
#[inline]
pub fn run_blocks<T: Real, const D: usize, const O: usize>(
    rows: &[T],
    out: &mut [T],
    block: impl Fn([T::Block; D]) -> [T::Block; O],
    row: impl Fn([T; D]) -> [T; O],
) {
    assert!(rows.len().is_multiple_of(D), "{} values are not whole rows of {D}", rows.len());
    let n = rows.len() / D;
    assert!(out.len() == n * O, "{n} rows need {} output values, got {}", n * O, out.len());
    let lanes = <T::Block as Block<T>>::LANES;
    let mut ins = rows.chunks_exact(D * lanes);
    let mut outs = out.chunks_exact_mut(O * lanes);
    for (r, o) in (&mut ins).zip(&mut outs) {
        let mut x = [<T::Block as Block<T>>::splat(T::ZERO); D];
        for l in 0..lanes {
            for (i, xi) in x.iter_mut().enumerate() {
                xi.set_lane(l, r[l * D + i]);
            }
        }
        let y = block(x);
        for l in 0..lanes {
            for (j, yj) in y.iter().enumerate() {
                o[l * O + j] = yj.lane(l);
            }
        }
    }
    for (r, o) in ins.remainder().chunks_exact(D).zip(outs.into_remainder().chunks_exact_mut(O)) {
        let y = row(r.try_into().expect("a whole row"));
        o.copy_from_slice(&y);
    }
}

/// [`dense`] on rows `first`, `first + step`, ... of a larger weight matrix W [? × K] (from
/// its start): output o is row `first + o·step`.
#[inline]
pub fn dense_rows<T: Real, V: Block<T>, const K: usize, const O: usize>(
    w: &[T],
    first: usize,
    step: usize,
    x: [V; K],
    made: Option<(usize, usize, usize)>,
) -> [V; O] {
    let mut out = [V::splat(T::ZERO); O];
    for (o, y) in out.iter_mut().enumerate() {
        let r = first + o * step;
        let row = &w[r * K..(r + 1) * K];
        let mut acc = V::splat(T::ZERO);
        for (c, (wi, xi)) in row.iter().zip(&x).enumerate() {
            if made.map(|(layer, layers, dim)| crate::made::connected(layer, layers, r, c, dim)).unwrap_or(true) {
                acc = acc + V::splat(*wi) * *xi;
            }
        }
        *y = acc;
    }
    out
}

/// y = W·x for a block of rows (`V`) or one row (`V = T`): `w` row-major [O, K] (PyTorch's
/// [out, in]); with `made = Some((layer, layers, dim))` the entries a MADE mask cuts are
/// skipped (never read). Sums run in input order, as the compiler's interpreter does.
#[inline]
pub fn dense<T: Real, V: Block<T>, const K: usize, const O: usize>(w: &[T], x: [V; K], made: Option<(usize, usize, usize)>) -> [V; O] {
    let mut out = [V::splat(T::ZERO); O];
    for (o, y) in out.iter_mut().enumerate() {
        let row = &w[o * K..(o + 1) * K];
        let mut acc = V::splat(T::ZERO);
        match made {
            None => {
                for (wi, xi) in row.iter().zip(&x) {
                    acc = acc + V::splat(*wi) * *xi;
                }
            }
            Some((layer, layers, dim)) => {
                for (c, (wi, xi)) in row.iter().zip(&x).enumerate() {
                    if crate::made::connected(layer, layers, o, c, dim) {
                        acc = acc + V::splat(*wi) * *xi;
                    }
                }
            }
        }
        *y = acc;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body<V: Block<f64>>(x: [V; 2]) -> [V; 1] {
        [x[0] * V::c(10.0) + x[1]]
    }

    #[test]
    fn blocks_and_tail_rows_give_the_same_values() {
        for n in [0, 1, 7, 8, 9, 17] {
            let rows: Vec<f64> = (0..2 * n).map(|i| i as f64).collect();
            let mut out = vec![0.0; n];
            run_blocks(&rows, &mut out, body::<<f64 as Real>::Block>, body::<f64>);
            let want: Vec<f64> = (0..n).map(|r| rows[2 * r] * 10.0 + rows[2 * r + 1]).collect();
            assert_eq!(out, want);
        }
    }
}
