//! The matrix products of tiled kernels (a dense layer, its transpose, its weight gradient)
//! on 512-bit vectors when the CPU has AVX-512F (checked at run time), else through the
//! `gemm` crate. Tile operands are columns of `t` values (one per row of the tile).
//!
//! One register-blocked microkernel serves all three: a block of C of two vectors of rows
//! (16 f64 / 32 f32, the last block masked) by up to 12 columns is Σ_p a_p ⊗ b_p, where a_p
//! is a contiguous run of A (two vector loads) and b_p a row of scalars of B (broadcasts),
//! 24 accumulators in registers. Strides select the layout: the forward product reads W by
//! rows, the transposed one by columns; the weight gradient runs over a transposed copy of
//! the input tile so that its output rows are contiguous.
//!
//! ```
//! // C[t × n] = A[t × k] · Wᵀ, tile columns of t = 16
//! let (t, k, n) = (16, 3, 2);
//! let a: Vec<f64> = (0..t * k).map(|i| i as f64).collect();
//! let w = [1.0, 0.0, 2.0, 0.5, -1.0, 0.0];
//! let mut c = vec![0.0; t * n];
//! flowc::codegen::tile::dense(t, &a, k, &w, n, &mut c);
//! // row 5, output 0: A[5,0]·1 + A[5,2]·2 = 5 + 2·37
//! assert_eq!(c[5], 79.0);
//! assert_eq!(c[16 + 5], 0.5 * 5.0 - 21.0);
//! ```

/// Column blocks the microkernel keeps in registers.
const NB: usize = 12;

/// Whether the 512-bit path runs on this CPU.
pub fn wide() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static WIDE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *WIDE.get_or_init(|| std::is_x86_feature_detected!("avx512f") && std::env::var("FLOWC_NO_AVX512").is_err())
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// A strided view: element (i, j) at `i·rs + j·cs`.
#[derive(Clone, Copy)]
struct View {
    rs: usize,
    cs: usize,
}

/// Element types of the products.
pub trait Elem:
    Copy + Default + Send + 'static + std::ops::AddAssign + std::ops::Sub<Output = Self> + std::ops::Mul<Output = Self>
{
    fn one() -> Self;
    /// C[m × n] (+)= A[m × k] · B[k × n] on 512-bit vectors; A's rows contiguous (rs = 1).
    ///
    /// # Safety
    /// AVX-512F must be available; the views must stay inside the slices.
    #[allow(clippy::too_many_arguments)]
    unsafe fn wide_product(
        m: usize,
        n: usize,
        k: usize,
        a: &[Self],
        a_cs: usize,
        b: &[Self],
        bv: (usize, usize),
        c: &mut [Self],
        c_cs: usize,
        acc: bool,
    );
    /// xt[r·k + i] = x[r + i·t] by gathers.
    ///
    /// # Safety
    /// AVX-512F must be available; both slices hold t·k values, t·k < 2^31.
    unsafe fn wide_transpose(t: usize, k: usize, x: &[Self], xt: &mut [Self]);
    /// Σ of each column of t values of `g`, added to `out`.
    ///
    /// # Safety
    /// AVX-512F must be available.
    unsafe fn wide_column_sums(t: usize, g: &[Self], out: &mut [Self]);
}

#[cfg(target_arch = "x86_64")]
macro_rules! wide_impl {
    ($t:ty, $lanes:expr, $mask:ty, $vec:ty, $zero:ident, $load:ident, $set1:ident, $fma:ident, $store:ident, $add:ident, $fnname:ident,
     $transpose:ident, $sums:ident, $gather:ident, $idx:ty, $setidx:ident, $reduce:ident) => {
        /// # Safety
        /// AVX-512F; x and xt hold t·k values, t·k < 2^31.
        #[target_feature(enable = "avx512f")]
        unsafe fn $transpose(t: usize, k: usize, x: *const $t, xt: *mut $t) {
            use std::arch::x86_64::*;
            // lane j reads column i0 + j: offsets j·t
            let offs: [$idx; $lanes] = std::array::from_fn(|j| (j * t) as $idx);
            let base = $setidx(offs);
            let mut i0 = 0;
            while i0 < k {
                let left = k - i0;
                let m: $mask = if left >= $lanes { <$mask>::MAX } else { ((1 as $mask) << left) - 1 };
                for r in 0..t {
                    // SAFETY: lanes past k are masked; the rest read x[r + i·t], i < k
                    unsafe {
                        let v = $gather(m, base, x.add(r + i0 * t));
                        $store(xt.add(r * k + i0), m, v);
                    }
                }
                i0 += $lanes;
            }
        }

        /// # Safety
        /// AVX-512F; g holds t·out.len() values.
        #[target_feature(enable = "avx512f")]
        unsafe fn $sums(t: usize, g: *const $t, out: &mut [$t]) {
            use std::arch::x86_64::*;
            for (o, s) in out.iter_mut().enumerate() {
                let mut acc = $zero();
                let mut r = 0;
                while r < t {
                    let left = t - r;
                    let m: $mask = if left >= $lanes { <$mask>::MAX } else { ((1 as $mask) << left) - 1 };
                    // SAFETY: masked past t
                    acc = $add(acc, unsafe { $load(m, g.add(o * t + r)) });
                    r += $lanes;
                }
                *s += $reduce(acc);
            }
        }

        /// One block: rows `i0..i0 + 2·lanes` (masked by `m0`, `m1`) × columns `j0..j0 + W`.
        ///
        /// # Safety
        /// AVX-512F; the caller keeps every unmasked access in bounds.
        #[target_feature(enable = "avx512f")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $fnname<const W: usize>(
            k: usize,
            a: *const $t,
            a_cs: usize,
            b: *const $t,
            b_rs: usize,
            b_cs: usize,
            c: *mut $t,
            c_cs: usize,
            m0: $mask,
            m1: $mask,
            acc: bool,
        ) {
            use std::arch::x86_64::*;
            let mut r0: [$vec; W] = [$zero(); W];
            let mut r1: [$vec; W] = [$zero(); W];
            for p in 0..k {
                // SAFETY: masked lanes are not read; the rest is inside A and B
                unsafe {
                    let ap = a.add(p * a_cs);
                    let x0 = $load(m0, ap);
                    let x1 = $load(m1, ap.add($lanes));
                    let bp = b.add(p * b_rs);
                    for j in 0..W {
                        let w = $set1(*bp.add(j * b_cs));
                        r0[j] = $fma(x0, w, r0[j]);
                        r1[j] = $fma(x1, w, r1[j]);
                    }
                }
            }
            for j in 0..W {
                // SAFETY: as above, for C
                unsafe {
                    let cp = c.add(j * c_cs);
                    let (mut v0, mut v1) = (r0[j], r1[j]);
                    if acc {
                        v0 = $add(v0, $load(m0, cp));
                        v1 = $add(v1, $load(m1, cp.add($lanes)));
                    }
                    $store(cp, m0, v0);
                    $store(cp.add($lanes), m1, v1);
                }
            }
        }

        impl Elem for $t {
            fn one() -> Self {
                1.0
            }
            unsafe fn wide_transpose(t: usize, k: usize, x: &[Self], xt: &mut [Self]) {
                // SAFETY: the caller's contract
                unsafe { $transpose(t, k, x.as_ptr(), xt.as_mut_ptr()) }
            }
            unsafe fn wide_column_sums(t: usize, g: &[Self], out: &mut [Self]) {
                assert!(g.len() >= t * out.len(), "column shapes");
                // SAFETY: the caller's contract; the length was checked
                unsafe { $sums(t, g.as_ptr(), out) }
            }
            #[allow(clippy::too_many_arguments)]
            unsafe fn wide_product(
                m: usize,
                n: usize,
                k: usize,
                a: &[Self],
                a_cs: usize,
                b: &[Self],
                bv: (usize, usize),
                c: &mut [Self],
                c_cs: usize,
                acc: bool,
            ) {
                let rows = 2 * $lanes;
                let mask = |r: usize| -> $mask {
                    if r >= $lanes {
                        <$mask>::MAX
                    } else {
                        ((1 as $mask) << r) - 1
                    }
                };
                let (ap, bp, cp) = (a.as_ptr(), b.as_ptr(), c.as_mut_ptr());
                let mut j0 = 0;
                while j0 < n {
                    let w = (n - j0).min(NB);
                    let mut i0 = 0;
                    while i0 < m {
                        let left = m - i0;
                        let (m0, m1) = (mask(left), mask(left.saturating_sub($lanes)));
                        // SAFETY: AVX-512F (the caller's contract); rows past m are masked
                        unsafe {
                            let (a1, b1, c1) = (ap.add(i0), bp.add(j0 * bv.1), cp.add(i0 + j0 * c_cs));
                            match w {
                                1 => $fnname::<1>(k, a1, a_cs, b1, bv.0, bv.1, c1, c_cs, m0, m1, acc),
                                2 => $fnname::<2>(k, a1, a_cs, b1, bv.0, bv.1, c1, c_cs, m0, m1, acc),
                                3 => $fnname::<3>(k, a1, a_cs, b1, bv.0, bv.1, c1, c_cs, m0, m1, acc),
                                4 => $fnname::<4>(k, a1, a_cs, b1, bv.0, bv.1, c1, c_cs, m0, m1, acc),
                                5 => $fnname::<5>(k, a1, a_cs, b1, bv.0, bv.1, c1, c_cs, m0, m1, acc),
                                6 => $fnname::<6>(k, a1, a_cs, b1, bv.0, bv.1, c1, c_cs, m0, m1, acc),
                                7 => $fnname::<7>(k, a1, a_cs, b1, bv.0, bv.1, c1, c_cs, m0, m1, acc),
                                8 => $fnname::<8>(k, a1, a_cs, b1, bv.0, bv.1, c1, c_cs, m0, m1, acc),
                                9 => $fnname::<9>(k, a1, a_cs, b1, bv.0, bv.1, c1, c_cs, m0, m1, acc),
                                10 => $fnname::<10>(k, a1, a_cs, b1, bv.0, bv.1, c1, c_cs, m0, m1, acc),
                                11 => $fnname::<11>(k, a1, a_cs, b1, bv.0, bv.1, c1, c_cs, m0, m1, acc),
                                12 => $fnname::<12>(k, a1, a_cs, b1, bv.0, bv.1, c1, c_cs, m0, m1, acc),
                                _ => unreachable!("at most NB columns"),
                            }
                        }
                        i0 += rows;
                    }
                    j0 += w;
                }
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
wide_impl!(
    f64,
    8,
    u8,
    __m512d,
    _mm512_setzero_pd,
    _mm512_maskz_loadu_pd,
    _mm512_set1_pd,
    _mm512_fmadd_pd,
    _mm512_mask_storeu_pd,
    _mm512_add_pd,
    block_f64,
    transpose_f64,
    sums_f64,
    gather_f64,
    i64,
    index_f64,
    _mm512_reduce_add_pd
);
#[cfg(target_arch = "x86_64")]
wide_impl!(
    f32,
    16,
    u16,
    __m512,
    _mm512_setzero_ps,
    _mm512_maskz_loadu_ps,
    _mm512_set1_ps,
    _mm512_fmadd_ps,
    _mm512_mask_storeu_ps,
    _mm512_add_ps,
    block_f32,
    transpose_f32,
    sums_f32,
    gather_f32,
    i32,
    index_f32,
    _mm512_reduce_add_ps
);

/// Masked 8-lane gather of f64 at `base + offs` (elements).
///
/// # Safety
/// AVX-512F; unmasked lanes in bounds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gather_f64(m: u8, offs: std::arch::x86_64::__m512i, base: *const f64) -> std::arch::x86_64::__m512d {
    use std::arch::x86_64::*;
    // SAFETY: the caller's contract
    unsafe { _mm512_mask_i64gather_pd::<8>(_mm512_setzero_pd(), m, offs, base) }
}

/// Masked 16-lane gather of f32 at `base + offs` (elements).
///
/// # Safety
/// AVX-512F; unmasked lanes in bounds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gather_f32(m: u16, offs: std::arch::x86_64::__m512i, base: *const f32) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    // SAFETY: the caller's contract
    unsafe { _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), m, offs, base) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn index_f64(o: [i64; 8]) -> std::arch::x86_64::__m512i {
    // SAFETY: reads the array's 64 bytes
    unsafe { std::arch::x86_64::_mm512_loadu_si512(o.as_ptr().cast()) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn index_f32(o: [i32; 16]) -> std::arch::x86_64::__m512i {
    // SAFETY: reads the array's 64 bytes
    unsafe { std::arch::x86_64::_mm512_loadu_si512(o.as_ptr().cast()) }
}

#[cfg(not(target_arch = "x86_64"))]
macro_rules! narrow_impl {
    ($t:ty) => {
        impl Elem for $t {
            fn one() -> Self {
                1.0
            }
            unsafe fn wide_product(
                _: usize,
                _: usize,
                _: usize,
                _: &[Self],
                _: usize,
                _: &[Self],
                _: (usize, usize),
                _: &mut [Self],
                _: usize,
                _: bool,
            ) {
                unreachable!("no 512-bit path on this architecture")
            }
            unsafe fn wide_transpose(_: usize, _: usize, _: &[Self], _: &mut [Self]) {
                unreachable!("no 512-bit path on this architecture")
            }
            unsafe fn wide_column_sums(_: usize, _: &[Self], _: &mut [Self]) {
                unreachable!("no 512-bit path on this architecture")
            }
        }
    };
}
#[cfg(not(target_arch = "x86_64"))]
narrow_impl!(f64);
#[cfg(not(target_arch = "x86_64"))]
narrow_impl!(f32);

/// C (+)= A · B through the `gemm` crate, for CPUs without AVX-512F.
#[allow(clippy::too_many_arguments)]
fn gemm_product<T: Elem>(m: usize, n: usize, k: usize, a: &[T], a_v: View, b: &[T], b_v: View, c: &mut [T], c_v: View, acc: bool) {
    // SAFETY: the views stay inside the slices (the callers' shapes); C does not alias A or B
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            c_v.cs as isize,
            c_v.rs as isize,
            acc,
            a.as_ptr(),
            a_v.cs as isize,
            a_v.rs as isize,
            b.as_ptr(),
            b_v.cs as isize,
            b_v.rs as isize,
            if acc { T::one() } else { T::default() },
            T::one(),
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// C[m × n] (+)= A[m × k] · B[k × n]: A with contiguous rows and column stride `a_cs`, B by
/// (row, column) strides, C with contiguous rows and column stride `c_cs`.
#[allow(clippy::too_many_arguments)]
fn product<T: Elem>(m: usize, n: usize, k: usize, a: &[T], a_cs: usize, b: &[T], bv: (usize, usize), c: &mut [T], c_cs: usize, acc: bool) {
    debug_assert!(m == 0 || n == 0 || (a.len() >= (k - 1) * a_cs + m && c.len() >= (n - 1) * c_cs + m));
    if wide() {
        // SAFETY: AVX-512F detected; shapes as documented
        unsafe { T::wide_product(m, n, k, a, a_cs, b, bv, c, c_cs, acc) }
    } else {
        gemm_product(m, n, k, a, View { rs: 1, cs: a_cs }, b, View { rs: bv.0, cs: bv.1 }, c, View { rs: 1, cs: c_cs }, acc)
    }
}

/// C[t × n] = A[t × k] · Wᵀ for W [n × k] row-major (a dense layer on a tile).
pub fn dense<T: Elem>(t: usize, a: &[T], k: usize, w: &[T], n: usize, c: &mut [T]) {
    product(t, n, k, a, t, w, (1, k), c, t, false)
}

/// [`dense`] with C's columns `c_cs` values apart (a product writing every `step`-th column
/// of a wider block).
pub fn dense_strided<T: Elem>(t: usize, a: &[T], k: usize, w: &[T], n: usize, c: &mut [T], c_cs: usize) {
    product(t, n, k, a, t, w, (1, k), c, c_cs, false)
}

/// C[t × k] = G[t × n] · W for W [n × k] row-major (the backward product of a dense layer).
pub fn dense_t<T: Elem>(t: usize, g: &[T], n: usize, w: &[T], k: usize, c: &mut [T]) {
    product(t, k, n, g, t, w, (k, 1), c, t, false)
}

thread_local! {
    static XT_F64: std::cell::RefCell<Vec<f64>> = const { std::cell::RefCell::new(Vec::new()) };
    static XT_F32: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// GW[n × k] += Gᵀ · X over a tile of t rows (G: n columns, X: k columns).
pub fn dense_acc<T: Elem>(t: usize, g: &[T], n: usize, x: &[T], k: usize, gw: &mut [T], xt: &mut Vec<T>) {
    if wide() {
        // rows of GW are contiguous in i: run over Xᵀ [t × k] (row-major), GW as C with
        // rows i and columns o: C(i, o) = GW[o·k + i] += Σ_r Xᵀ(r, i) G(r, o)
        if xt.len() < t * k {
            xt.resize(t * k, T::default());
        }
        transpose(t, k, x, xt);
        product(k, n, t, xt, k, g, (1, t), gw, k, true)
    } else {
        gemm_product(n, k, t, g, View { rs: t, cs: 1 }, x, View { rs: 1, cs: t }, gw, View { rs: k, cs: 1 }, true)
    }
}

/// xt[r·k + i] = x[r + i·t]: a tile's columns as rows (gathers of 8 or 16 on the 512-bit
/// path, else 8 × 8 blocks).
fn transpose<T: Elem>(t: usize, k: usize, x: &[T], xt: &mut [T]) {
    assert!(x.len() >= t * k && xt.len() >= t * k, "tile shapes");
    #[cfg(target_arch = "x86_64")]
    if wide() && t * k < i32::MAX as usize {
        // SAFETY: AVX-512F detected; the lengths were checked
        unsafe { T::wide_transpose(t, k, x, xt) };
        return;
    }
    const B: usize = 8;
    for i0 in (0..k).step_by(B) {
        for r0 in (0..t).step_by(B) {
            for r in r0..(r0 + B).min(t) {
                let row = &mut xt[r * k..r * k + k];
                for i in i0..(i0 + B).min(k) {
                    row[i] = x[r + i * t];
                }
            }
        }
    }
}

/// out[o] += Σ_r g[r + o·t] (a bias gradient from the output adjoints).
pub fn column_sums<T: Elem>(t: usize, g: &[T], out: &mut [T]) {
    #[cfg(target_arch = "x86_64")]
    if wide() {
        // SAFETY: AVX-512F detected
        unsafe { T::wide_column_sums(t, g, out) };
        return;
    }
    for (o, s) in out.iter_mut().enumerate() {
        let mut acc = T::default();
        for v in &g[o * t..(o + 1) * t] {
            acc += *v;
        }
        *s += acc;
    }
}

/// [`dense_acc`] with this thread's transposition buffer.
pub fn dense_acc_f64(t: usize, g: &[f64], n: usize, x: &[f64], k: usize, gw: &mut [f64]) {
    XT_F64.with(|b| dense_acc(t, g, n, x, k, gw, &mut b.borrow_mut()))
}

/// [`dense_acc`] with this thread's transposition buffer.
pub fn dense_acc_f32(t: usize, g: &[f32], n: usize, x: &[f32], k: usize, gw: &mut [f32]) {
    XT_F32.with(|b| dense_acc(t, g, n, x, k, gw, &mut b.borrow_mut()))
}

/// GFLOP/s of [`dense`] on one thread at 128 × 128 × 128 (the tile size; a measurement of
/// about 0.1 s).
pub fn peak_gflops<T: Elem + From<f32>>() -> f64 {
    let n = 128;
    let a: Vec<T> = (0..n * n).map(|i| T::from((i % 7) as f32 * 0.125)).collect();
    let w: Vec<T> = (0..n * n).map(|i| T::from((i % 5) as f32 * 0.25)).collect();
    let mut c = vec![T::default(); n * n];
    let start = std::time::Instant::now();
    let mut runs = 0usize;
    while start.elapsed().as_secs_f64() < 0.1 {
        for _ in 0..16 {
            dense(n, &a, n, &w, n, &mut c);
        }
        runs += 16;
        std::hint::black_box(&c);
    }
    2.0 * (n * n * n) as f64 * runs as f64 / start.elapsed().as_secs_f64() / 1e9
}

/// The activation applied by [`bias_act`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    Identity = 0,
    Tanh = 1,
    /// max(x, 0)
    Relu = 2,
}

// tanh as `vmath` computes it (the same operations in the same order, so the values are the
// compiled kernels' to the bit): tanh|x| = e/(e + 2) with e = expm1(2|x|), 2|x| capped where
// tanh rounds to 1, the sign put back.
use super::vmath::{EXPM1_Q_F32, EXPM1_Q_F64, LN2_HI, LN2_HI_F32, LN2_LO, LN2_LO_F32};

#[inline(always)]
fn tanh_f64(x: f64) -> f64 {
    let a = f64::from_bits(x.to_bits() & !(1u64 << 63));
    let a2 = a + a;
    let a2 = if 40.0 < a2 { 40.0 } else { a2 };
    let magic = 1.5 * 2f64.powi(52);
    let ks = a2.mul_add(std::f64::consts::LOG2_E, -0.085) + magic;
    let kf = ks - magic;
    let r = kf.mul_add(-LN2_HI, a2);
    let r = kf.mul_add(-LN2_LO, r);
    let mut p = EXPM1_Q_F64[10];
    for c in EXPM1_Q_F64[..10].iter().rev() {
        p = p.mul_add(r, *c);
    }
    let q = r.mul_add(r * p, r);
    let s = f64::from_bits(ks.to_bits().wrapping_add(1023) << 52);
    let e = s.mul_add(q, s - 1.0);
    let y = e / (e + 2.0);
    f64::from_bits(y.to_bits() | (x.to_bits() & (1u64 << 63)))
}

#[inline(always)]
fn tanh_f32(x: f32) -> f32 {
    let a = f32::from_bits(x.to_bits() & !(1u32 << 31));
    let a2 = a + a;
    let a2 = if 20.0 < a2 { 20.0 } else { a2 };
    let magic = 1.5 * 2f32.powi(23);
    let ks = a2.mul_add(std::f64::consts::LOG2_E as f32, -0.085) + magic;
    let kf = ks - magic;
    let r = kf.mul_add(-LN2_HI_F32, a2);
    let r = kf.mul_add(-LN2_LO_F32, r);
    let mut p = EXPM1_Q_F32[5] as f32;
    for c in EXPM1_Q_F32[..5].iter().rev() {
        p = p.mul_add(r, *c as f32);
    }
    let q = r.mul_add(r * p, r);
    let s = f32::from_bits(ks.to_bits().wrapping_add(127) << 23);
    let e = s.mul_add(q, s - 1.0);
    let y = e / (e + 2.0);
    f32::from_bits(y.to_bits() | (x.to_bits() & (1u32 << 31)))
}

/// Element types with the activations of [`bias_act`].
pub trait Activate: Elem {
    fn tanh(self) -> Self;
    fn relu(self) -> Self;
}

impl Activate for f64 {
    #[inline(always)]
    fn tanh(self) -> Self {
        tanh_f64(self)
    }
    #[inline(always)]
    fn relu(self) -> Self {
        // ifpos(x, x, 0), as the kernels select it
        if self > 0.0 {
            self
        } else {
            0.0
        }
    }
}

impl Activate for f32 {
    #[inline(always)]
    fn tanh(self) -> Self {
        tanh_f32(self)
    }
    #[inline(always)]
    fn relu(self) -> Self {
        if self > 0.0 {
            self
        } else {
            0.0
        }
    }
}

#[inline(always)]
fn bias_act_body<T: Activate>(t: usize, c: &mut [T], bias: &[T], act: Act) {
    for (o, col) in c.chunks_mut(t).enumerate() {
        // without a bias nothing is added (−0 stays −0)
        match (act, bias.get(o).copied()) {
            (Act::Identity, Some(b)) => col.iter_mut().for_each(|v| *v += b),
            (Act::Identity, None) => {}
            (Act::Tanh, Some(b)) => col.iter_mut().for_each(|v| {
                let mut x = *v;
                x += b;
                *v = x.tanh()
            }),
            (Act::Tanh, None) => col.iter_mut().for_each(|v| *v = v.tanh()),
            (Act::Relu, Some(b)) => col.iter_mut().for_each(|v| {
                let mut x = *v;
                x += b;
                *v = x.relu()
            }),
            (Act::Relu, None) => col.iter_mut().for_each(|v| *v = v.relu()),
        }
    }
}

/// # Safety
/// AVX-512F must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,fma")]
unsafe fn bias_act_wide<T: Activate>(t: usize, c: &mut [T], bias: &[T], act: Act) {
    bias_act_body(t, c, bias, act)
}

/// The epilogue of a dense layer on a tile: each column o of C (t values) becomes
/// act(C + bias[o]) (no bias when `bias` is empty). Compiled for 512-bit vectors; only the
/// wide path fuses epilogues (see `clif`), so this is called when [`wide`] holds.
pub fn bias_act<T: Activate>(t: usize, c: &mut [T], bias: &[T], act: Act) {
    #[cfg(target_arch = "x86_64")]
    if wide() {
        // SAFETY: AVX-512F (and with it FMA) detected
        unsafe { bias_act_wide(t, c, bias, act) };
        return;
    }
    bias_act_body(t, c, bias, act)
}

#[inline(always)]
fn tanh_grad_body<T: Activate>(c: &mut [T], h: &[T]) {
    for (v, hv) in c.iter_mut().zip(h) {
        // the kernels' product a·(1 − h·h), in that order
        let mut one = T::one();
        let hh = *hv * *hv;
        one = one - hh;
        *v = *v * one;
    }
}

/// # Safety
/// AVX-512F must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tanh_grad_wide<T: Activate>(c: &mut [T], h: &[T]) {
    tanh_grad_body(c, h)
}

/// c ⊙= 1 − h² (the adjoint before a tanh layer from the one after it and its outputs).
pub fn tanh_grad<T: Activate>(c: &mut [T], h: &[T]) {
    #[cfg(target_arch = "x86_64")]
    if wide() {
        // SAFETY: AVX-512F detected
        unsafe { tanh_grad_wide(c, h) };
        return;
    }
    tanh_grad_body(c, h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u64) -> Vec<f64> {
        let mut s = seed | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5
            })
            .collect()
    }

    /// The epilogue's tanh is the compiled kernels' (`vmath::tanh`), bit for bit, in f64 and
    /// f32, from tiny to huge arguments and through the 512-bit path.
    #[test]
    fn epilogue_tanh_is_the_compiled_tanh() {
        use cranelift_codegen::ir::types;
        let mut xs: Vec<f64> = values(20000, 9).iter().map(|v| v * 50.0).collect();
        for e in -300..=300 {
            xs.push(1.37f64.powi(e));
            xs.push(-(1.37f64.powi(e)));
        }
        xs.extend([0.0, -0.0, 0.5, 19.999, 20.0, 20.001, 40.0, 1e308]);
        let h = crate::jit::Harness::new(crate::codegen::vmath::tanh, types::F64X2).unwrap();
        let want = h.run_f64(&xs);
        let mut got = xs.clone();
        bias_act(got.len(), &mut got, &[], Act::Tanh);
        for ((x, a), b) in xs.iter().zip(&got).zip(&want) {
            assert_eq!(a.to_bits(), b.to_bits(), "tanh({x:e}): {a:e} vs {b:e}");
        }
        let xs32: Vec<f32> = xs.iter().map(|v| *v as f32).filter(|v| v.is_finite()).collect();
        let h = crate::jit::Harness::new(crate::codegen::vmath::tanh, types::F32X4).unwrap();
        let want = h.run_f32(&xs32);
        let mut got = xs32.clone();
        bias_act(got.len(), &mut got, &[], Act::Tanh);
        for ((x, a), b) in xs32.iter().zip(&got).zip(&want) {
            assert_eq!(a.to_bits(), b.to_bits(), "tanh({x:e}) f32: {a:e} vs {b:e}");
        }
    }

    /// Every product against its definition, at shapes with partial row and column blocks.
    #[test]
    fn products_match_their_definitions() {
        for (t, k, n) in [(128, 4, 64), (128, 64, 64), (128, 64, 8), (16, 3, 13), (40, 17, 25), (128, 1, 1)] {
            let a = values(t * k, 1);
            let w = values(n * k, 2);
            let mut c = vec![0.0; t * n];
            dense(t, &a, k, &w, n, &mut c);
            for r in 0..t {
                for o in 0..n {
                    let e: f64 = (0..k).map(|i| a[r + i * t] * w[o * k + i]).sum();
                    assert!((c[r + o * t] - e).abs() < 1e-13, "dense {t}x{k}x{n} ({r}, {o})");
                }
            }
            let g = values(t * n, 3);
            let mut d = vec![0.0; t * k];
            dense_t(t, &g, n, &w, k, &mut d);
            for r in 0..t {
                for i in 0..k {
                    let e: f64 = (0..n).map(|o| g[r + o * t] * w[o * k + i]).sum();
                    assert!((d[r + i * t] - e).abs() < 1e-13, "dense_t {t}x{k}x{n} ({r}, {i})");
                }
            }
            let mut gw = values(n * k, 4);
            let before = gw.clone();
            dense_acc_f64(t, &g, n, &a, k, &mut gw);
            for o in 0..n {
                for i in 0..k {
                    let e: f64 = before[o * k + i] + (0..t).map(|r| g[r + o * t] * a[r + i * t]).sum::<f64>();
                    assert!((gw[o * k + i] - e).abs() < 1e-12, "dense_acc {t}x{k}x{n} ({o}, {i})");
                }
            }
            // the `gemm` crate path (CPUs without AVX-512F) computes the same products
            let mut c2 = vec![0.0; t * n];
            gemm_product(t, n, k, &a, View { rs: 1, cs: t }, &w, View { rs: 1, cs: k }, &mut c2, View { rs: 1, cs: t }, false);
            assert!(c.iter().zip(&c2).all(|(x, y)| (x - y).abs() < 1e-13), "gemm path {t}x{k}x{n}");
            let mut gw2 = before.clone();
            gemm_product(n, k, t, &g, View { rs: t, cs: 1 }, &a, View { rs: 1, cs: t }, &mut gw2, View { rs: k, cs: 1 }, true);
            assert!(gw.iter().zip(&gw2).all(|(x, y)| (x - y).abs() < 1e-12), "gemm path dense_acc {t}x{k}x{n}");
            let mut sums = vec![1.0; n];
            column_sums(t, &g, &mut sums);
            for (o, v) in sums.iter().enumerate() {
                let e: f64 = 1.0 + g[o * t..(o + 1) * t].iter().sum::<f64>();
                assert!((v - e).abs() < 1e-12, "column_sums {t}x{n} ({o})");
            }
            // f32
            let a32: Vec<f32> = a.iter().map(|v| *v as f32).collect();
            let w32: Vec<f32> = w.iter().map(|v| *v as f32).collect();
            let mut c32 = vec![0.0f32; t * n];
            dense(t, &a32, k, &w32, n, &mut c32);
            for (x, y) in c32.iter().zip(&c) {
                assert!((*x as f64 - y).abs() < 1e-5);
            }
        }
    }
}
