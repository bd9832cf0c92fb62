//! Host functions that compiled kernels call for the ops without a native instruction
//! (libm functions and the composite scalars), in f64 and f32. Inline vector versions
//! will replace these calls; until then the values are exactly those of the reference
//! evaluator (`ir::eval`).

use crate::ir::{eval, Math};

macro_rules! unary {
    ($($name:ident: $t:ty => $body:expr;)*) => {
        $(extern "C" fn $name(a: $t) -> $t {
            let f: fn($t) -> $t = $body;
            f(a)
        })*
    };
}

macro_rules! binary {
    ($($name:ident: $t:ty => $body:expr;)*) => {
        $(extern "C" fn $name(a: $t, b: $t) -> $t {
            let f: fn($t, $t) -> $t = $body;
            f(a, b)
        })*
    };
}

unary! {
    exp_f64: f64 => f64::exp; expm1_f64: f64 => f64::exp_m1; log_f64: f64 => f64::ln; log1p_f64: f64 => f64::ln_1p;
    sin_f64: f64 => f64::sin; cos_f64: f64 => f64::cos; tan_f64: f64 => f64::tan; atan_f64: f64 => f64::atan;
    sinh_f64: f64 => f64::sinh; cosh_f64: f64 => f64::cosh; tanh_f64: f64 => f64::tanh; asinh_f64: f64 => f64::asinh;
    acosh_f64: f64 => f64::acosh; atanh_f64: f64 => f64::atanh; cbrt_f64: f64 => f64::cbrt;
    sigmoid_f64: f64 => eval::sigmoid; logit_f64: f64 => eval::logit; softplus_f64: f64 => eval::softplus;
    logcosh_f64: f64 => eval::logcosh; sign_f64: f64 => eval::sign;
    exp_f32: f32 => f32::exp; expm1_f32: f32 => f32::exp_m1; log_f32: f32 => f32::ln; log1p_f32: f32 => f32::ln_1p;
    sin_f32: f32 => f32::sin; cos_f32: f32 => f32::cos; tan_f32: f32 => f32::tan; atan_f32: f32 => f32::atan;
    sinh_f32: f32 => f32::sinh; cosh_f32: f32 => f32::cosh; tanh_f32: f32 => f32::tanh; asinh_f32: f32 => f32::asinh;
    acosh_f32: f32 => f32::acosh; atanh_f32: f32 => f32::atanh; cbrt_f32: f32 => f32::cbrt;
    sigmoid_f32: f32 => |a| eval::sigmoid(a as f64) as f32; logit_f32: f32 => |a| eval::logit(a as f64) as f32;
    softplus_f32: f32 => |a| eval::softplus(a as f64) as f32; logcosh_f32: f32 => |a| eval::logcosh(a as f64) as f32;
    sign_f32: f32 => |a| eval::sign(a as f64) as f32;
}

binary! {
    pow_f64: f64 => f64::powf; hypot_f64: f64 => f64::hypot; powrecip_f64: f64 => eval::pow_recip;
    pow_f32: f32 => f32::powf; hypot_f32: f32 => f32::hypot; powrecip_f32: f32 => |a, b| eval::pow_recip(a as f64, b as f64) as f32;
}

/// The host function for an op, by precision: (symbol name, address, arity).
pub fn function(op: &Math, f32: bool) -> Option<(&'static str, *const u8, usize)> {
    macro_rules! pick {
        ($n64:ident, $n32:ident, $arity:expr) => {
            if f32 {
                (stringify!($n32), $n32 as *const u8, $arity)
            } else {
                (stringify!($n64), $n64 as *const u8, $arity)
            }
        };
    }
    Some(match op {
        Math::Exp(_) => pick!(exp_f64, exp_f32, 1),
        Math::Expm1(_) => pick!(expm1_f64, expm1_f32, 1),
        Math::Log(_) => pick!(log_f64, log_f32, 1),
        Math::Log1p(_) => pick!(log1p_f64, log1p_f32, 1),
        Math::Sin(_) => pick!(sin_f64, sin_f32, 1),
        Math::Cos(_) => pick!(cos_f64, cos_f32, 1),
        Math::Tan(_) => pick!(tan_f64, tan_f32, 1),
        Math::Atan(_) => pick!(atan_f64, atan_f32, 1),
        Math::Sinh(_) => pick!(sinh_f64, sinh_f32, 1),
        Math::Cosh(_) => pick!(cosh_f64, cosh_f32, 1),
        Math::Tanh(_) => pick!(tanh_f64, tanh_f32, 1),
        Math::Asinh(_) => pick!(asinh_f64, asinh_f32, 1),
        Math::Acosh(_) => pick!(acosh_f64, acosh_f32, 1),
        Math::Atanh(_) => pick!(atanh_f64, atanh_f32, 1),
        Math::Cbrt(_) => pick!(cbrt_f64, cbrt_f32, 1),
        Math::Sigmoid(_) => pick!(sigmoid_f64, sigmoid_f32, 1),
        Math::Logit(_) => pick!(logit_f64, logit_f32, 1),
        Math::Softplus(_) => pick!(softplus_f64, softplus_f32, 1),
        Math::LogCosh(_) => pick!(logcosh_f64, logcosh_f32, 1),
        Math::Sign(_) => pick!(sign_f64, sign_f32, 1),
        Math::Pow(_) => pick!(pow_f64, pow_f32, 2),
        Math::Hypot(_) => pick!(hypot_f64, hypot_f32, 2),
        Math::PowRecip(_) => pick!(powrecip_f64, powrecip_f32, 2),
        _ => return None,
    })
}

/// Symbol of [`scratch`].
pub const SCRATCH: &str = "flowc_scratch";
/// Symbols of [`dense_f64`] and [`dense_f32`].
pub const DENSE_F64: &str = "flowc_dense_f64";
pub const DENSE_F32: &str = "flowc_dense_f32";

thread_local! {
    static SCRATCH_BUF: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// This thread's scratch block of at least `bytes` bytes (16-byte aligned, zeroed when it
/// grows). A tiled kernel takes it once on entry and is its only user until it returns.
extern "C" fn scratch(bytes: u64) -> *mut u8 {
    SCRATCH_BUF.with(|b| {
        let mut b = b.borrow_mut();
        let words = (bytes as usize).div_ceil(8) + 2;
        if b.len() < words {
            b.resize(words, 0);
        }
        let p = b.as_mut_ptr() as usize;
        // align to 16 bytes for vector loads
        (p + (16 - p % 16) % 16) as *mut u8
    })
}

/// C = A[t × k] · Wᵀ for W [n × k] row-major (masked weights come packed): A is tile
/// columns (stride t), C's columns `c_cs` values apart.
///
/// # Safety
/// The pointers must hold t·k, n·k and (n − 1)·c_cs + t values.
unsafe fn dense<T: super::tile::Elem>(t: u64, a: *const T, k: u64, w: *const T, n: u64, c: *mut T, c_cs: usize) {
    let (t, k, n) = (t as usize, k as usize, n as usize);
    let c_len = if n == 0 { 0 } else { (n - 1) * c_cs + t };
    // SAFETY: shapes as documented; no aliasing between A, W and C
    let (a, w, c) =
        unsafe { (std::slice::from_raw_parts(a, t * k), std::slice::from_raw_parts(w, n * k), std::slice::from_raw_parts_mut(c, c_len)) };
    super::tile::dense_strided(t, a, k, w, n, c, c_cs)
}

/// The weight-gradient product with this thread's buffer, by element type.
trait Acc: Sized {
    fn acc(t: usize, g: &[Self], n: usize, x: &[Self], k: usize, gw: &mut [Self]);
}

impl Acc for f64 {
    fn acc(t: usize, g: &[f64], n: usize, x: &[f64], k: usize, gw: &mut [f64]) {
        super::tile::dense_acc_f64(t, g, n, x, k, gw)
    }
}

impl Acc for f32 {
    fn acc(t: usize, g: &[f32], n: usize, x: &[f32], k: usize, gw: &mut [f32]) {
        super::tile::dense_acc_f32(t, g, n, x, k, gw)
    }
}

fn mask_of(layer: i64, layers: u64, dim: u64) -> Option<(usize, usize, usize)> {
    (layer >= 0).then_some((layer as usize, layers as usize, dim as usize))
}

#[allow(clippy::too_many_arguments)]
extern "C" fn dense_f64(t: u64, a: *const f64, k: u64, w: *const f64, n: u64, c: *mut f64, c_cs: i64, _: u64, _: u64) {
    // SAFETY: called by tiled kernels with their scratch blocks and (packed) weights
    unsafe { dense(t, a, k, w, n, c, c_cs as usize) }
}

#[allow(clippy::too_many_arguments)]
extern "C" fn dense_f32(t: u64, a: *const f32, k: u64, w: *const f32, n: u64, c: *mut f32, c_cs: i64, _: u64, _: u64) {
    // SAFETY: as dense_f64
    unsafe { dense(t, a, k, w, n, c, c_cs as usize) }
}

/// Symbols of [`dense_t_f64`] and [`dense_t_f32`].
pub const DENSE_T_F64: &str = "flowc_dense_t_f64";
pub const DENSE_T_F32: &str = "flowc_dense_t_f32";
/// Symbols of [`dense_acc_f64`] and [`dense_acc_f32`].
pub const DENSE_ACC_F64: &str = "flowc_dense_acc_f64";
pub const DENSE_ACC_F32: &str = "flowc_dense_acc_f32";

/// C[t × k] = G[t × n] · W for W [n × k] row-major (already masked); G and C are tile
/// columns (column stride `t`). The backward product of a dense layer.
///
/// # Safety
/// The pointers must hold t·n, n·k and t·k values; C must not overlap G or W.
unsafe fn dense_t<T: super::tile::Elem>(t: u64, g: *const T, n: u64, w: *const T, k: u64, c: *mut T) {
    let (t, n, k) = (t as usize, n as usize, k as usize);
    // SAFETY: shapes as documented
    let (g, w, c) =
        unsafe { (std::slice::from_raw_parts(g, t * n), std::slice::from_raw_parts(w, n * k), std::slice::from_raw_parts_mut(c, t * k)) };
    super::tile::dense_t(t, g, n, w, k, c)
}

/// GW[n × k] += Gᵀ · X over the t rows of a tile (G: n columns, X: k columns, column
/// stride `t`); with `mask` the MADE-masked entries of GW are zeroed after. With `gb` not
/// null, GB[n] += the column sums of G (a bias gradient).
///
/// # Safety
/// The pointers must hold t·n, t·k and n·k values (`gb`: n or null); GW and GB must not
/// overlap G or X.
#[allow(clippy::too_many_arguments)]
unsafe fn dense_acc<T: super::tile::Elem + Acc>(
    t: u64,
    g: *const T,
    n: u64,
    x: *const T,
    k: u64,
    gw: *mut T,
    mask: Option<(usize, usize, usize)>,
    gb: *mut T,
    first: u64,
    step: u64,
) {
    let (t, n, k, first, step) = (t as usize, n as usize, k as usize, first as usize, step as usize);
    let rows = if n == 0 { 0 } else { first + (n - 1) * step + 1 };
    if !gb.is_null() {
        // the bias gradient: each column of G summed (into entries first, first + step, ...)
        // SAFETY: g holds t·n values and gb the rows' entries (the caller's contract)
        let (cols, bias) = unsafe { (std::slice::from_raw_parts(g, t * n), std::slice::from_raw_parts_mut(gb, rows)) };
        if step == 1 && first == 0 {
            super::tile::column_sums(t, cols, bias);
        } else {
            let mut sums = vec![T::default(); n];
            super::tile::column_sums(t, cols, &mut sums);
            for (o, v) in sums.into_iter().enumerate() {
                bias[first + o * step] += v;
            }
        }
    }
    // SAFETY: shapes as documented
    let (g, x, full) = unsafe {
        (std::slice::from_raw_parts(g, t * n), std::slice::from_raw_parts(x, t * k), std::slice::from_raw_parts_mut(gw, rows * k))
    };
    if step == 1 && first == 0 {
        T::acc(t, g, n, x, k, full);
    } else {
        // the selected rows: accumulated packed, then added to theirs
        let mut packed = vec![T::default(); n * k];
        T::acc(t, g, n, x, k, &mut packed);
        for o in 0..n {
            let r = first + o * step;
            for i in 0..k {
                full[r * k + i] += packed[o * k + i];
            }
        }
    }
    if let Some((layer, layers, dim)) = mask {
        for o in 0..n {
            let r = first + o * step;
            for i in 0..k {
                if !crate::ir::layer::made_connected(layer, layers, r, i, dim) {
                    full[r * k + i] = T::default();
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
extern "C" fn dense_t_f64(t: u64, g: *const f64, n: u64, w: *const f64, k: u64, c: *mut f64, _l: i64, _ls: u64, _d: u64) {
    // SAFETY: called by tiled gradient kernels with their scratch blocks and (masked) weights
    unsafe { dense_t(t, g, n, w, k, c) }
}

#[allow(clippy::too_many_arguments)]
extern "C" fn dense_t_f32(t: u64, g: *const f32, n: u64, w: *const f32, k: u64, c: *mut f32, _l: i64, _ls: u64, _d: u64) {
    // SAFETY: as dense_t_f64
    unsafe { dense_t(t, g, n, w, k, c) }
}

#[allow(clippy::too_many_arguments)]
extern "C" fn dense_acc_f64(
    t: u64,
    g: *const f64,
    n: u64,
    x: *const f64,
    k: u64,
    gw: *mut f64,
    layer: i64,
    layers: u64,
    dim: u64,
    gb: *mut f64,
    first: u64,
    step: u64,
) {
    // SAFETY: called by tiled gradient kernels with their scratch blocks and gradient buffer
    unsafe { dense_acc(t, g, n, x, k, gw, mask_of(layer, layers, dim), gb, first, step) }
}

#[allow(clippy::too_many_arguments)]
extern "C" fn dense_acc_f32(
    t: u64,
    g: *const f32,
    n: u64,
    x: *const f32,
    k: u64,
    gw: *mut f32,
    layer: i64,
    layers: u64,
    dim: u64,
    gb: *mut f32,
    first: u64,
    step: u64,
) {
    // SAFETY: as dense_acc_f64
    unsafe { dense_acc(t, g, n, x, k, gw, mask_of(layer, layers, dim), gb, first, step) }
}

/// Symbols of [`bias_act_f64`] and [`bias_act_f32`].
pub const BIAS_ACT_F64: &str = "flowc_bias_act_f64";
pub const BIAS_ACT_F32: &str = "flowc_bias_act_f32";

fn act_of(code: i64) -> super::tile::Act {
    match code {
        1 => super::tile::Act::Tanh,
        2 => super::tile::Act::Relu,
        _ => super::tile::Act::Identity,
    }
}

/// A fused dense layer's epilogue ([`super::tile::bias_act`]) on its result block of t × n
/// values; `bias` null for none.
///
/// # Safety
/// `c` must hold t·n values and `bias` n values (or be null).
unsafe fn bias_act<T: super::tile::Activate>(t: u64, c: *mut T, n: u64, bias: *const T, act: i64, c_cs: u64, b_step: u64) {
    let (t, n, c_cs, b_step) = (t as usize, n as usize, c_cs as usize, b_step as usize);
    if n == 0 {
        return;
    }
    // SAFETY: the caller's contract
    let c = unsafe { std::slice::from_raw_parts_mut(c, (n - 1) * c_cs + t) };
    // SAFETY: as above
    let b = if bias.is_null() { &[][..] } else { unsafe { std::slice::from_raw_parts(bias, (n - 1) * b_step + 1) } };
    for o in 0..n {
        let col = &mut c[o * c_cs..o * c_cs + t];
        let bo = if b.is_empty() { &[][..] } else { &b[o * b_step..o * b_step + 1] };
        super::tile::bias_act(t, col, bo, act_of(act))
    }
}

#[allow(clippy::too_many_arguments)]
extern "C" fn bias_act_f64(t: u64, c: *mut f64, n: u64, bias: *const f64, act: i64, c_cs: u64, b_step: u64) {
    // SAFETY: called by tiled kernels with a result block and a bias in their parameters
    unsafe { bias_act(t, c, n, bias, act, c_cs, b_step) }
}

#[allow(clippy::too_many_arguments)]
extern "C" fn bias_act_f32(t: u64, c: *mut f32, n: u64, bias: *const f32, act: i64, c_cs: u64, b_step: u64) {
    // SAFETY: as bias_act_f64
    unsafe { bias_act(t, c, n, bias, act, c_cs, b_step) }
}

/// Symbol of [`zero`].
pub const ZERO: &str = "flowc_zero";

/// Zeroes `bytes` bytes at `p`.
extern "C" fn zero(p: *mut u8, bytes: u64) {
    // SAFETY: called by tiled kernels on their own scratch blocks
    unsafe { std::ptr::write_bytes(p, 0, bytes as usize) }
}

/// Symbols of [`act_grad_f64`] and [`act_grad_f32`].
pub const ACT_GRAD_F64: &str = "flowc_act_grad_f64";
pub const ACT_GRAD_F32: &str = "flowc_act_grad_f32";

/// A backward product's epilogue ([`super::tile::tanh_grad`]): C[t × n] ⊙= 1 − H², H a fused
/// tanh layer's result block.
///
/// # Safety
/// `c` and `h` must hold t·n values and not overlap.
unsafe fn act_grad<T: super::tile::Activate>(t: u64, c: *mut T, n: u64, h: *const T, _act: i64) {
    let len = t as usize * n as usize;
    // SAFETY: the caller's contract
    let (c, h) = unsafe { (std::slice::from_raw_parts_mut(c, len), std::slice::from_raw_parts(h, len)) };
    super::tile::tanh_grad(c, h)
}

extern "C" fn act_grad_f64(t: u64, c: *mut f64, n: u64, h: *const f64, act: i64) {
    // SAFETY: called by tiled gradient kernels with two result blocks of the tile
    unsafe { act_grad(t, c, n, h, act) }
}

extern "C" fn act_grad_f32(t: u64, c: *mut f32, n: u64, h: *const f32, act: i64) {
    // SAFETY: as act_grad_f64
    unsafe { act_grad(t, c, n, h, act) }
}

/// Symbols of [`mask_f64`] and [`mask_f32`].
pub const MASK_F64: &str = "flowc_mask_f64";
pub const MASK_F32: &str = "flowc_mask_f32";

/// Copies rows `first`, `first + step`, ... (n of them) of W [? × k] to `dst` [n × k], with
/// the MADE-masked entries zeroed when `layer` ≥ 0.
///
/// # Safety
/// `w` must hold the rows read, `dst` n·k values; they must not overlap.
#[allow(clippy::too_many_arguments)]
unsafe fn mask_into<T: Copy + Default>(w: *const T, n: u64, k: u64, dst: *mut T, layer: i64, layers: u64, dim: u64, first: u64, step: u64) {
    let (n, k, first, step) = (n as usize, k as usize, first as usize, step as usize);
    let rows = if n == 0 { 0 } else { first + (n - 1) * step + 1 };
    // SAFETY: the caller's contract
    let (src, out) = unsafe { (std::slice::from_raw_parts(w, rows * k), std::slice::from_raw_parts_mut(dst, n * k)) };
    for o in 0..n {
        let r = first + o * step;
        for i in 0..k {
            let on = layer < 0 || crate::ir::layer::made_connected(layer as usize, layers as usize, r, i, dim as usize);
            out[o * k + i] = if on { src[r * k + i] } else { T::default() };
        }
    }
}

#[allow(clippy::too_many_arguments)]
extern "C" fn mask_f64(w: *const f64, n: u64, k: u64, dst: *mut f64, layer: i64, layers: u64, dim: u64, first: u64, step: u64) {
    // SAFETY: called by tiled kernels with a weight in their parameter buffer and room in scratch
    unsafe { mask_into(w, n, k, dst, layer, layers, dim, first, step) }
}

#[allow(clippy::too_many_arguments)]
extern "C" fn mask_f32(w: *const f32, n: u64, k: u64, dst: *mut f32, layer: i64, layers: u64, dim: u64, first: u64, step: u64) {
    // SAFETY: as mask_f64
    unsafe { mask_into(w, n, k, dst, layer, layers, dim, first, step) }
}

/// Symbols of [`rootfind_f64`] and [`rootfind_f32`].
pub const ROOTFIND_F64: &str = "flowc_rootfind_f64";
pub const ROOTFIND_F32: &str = "flowc_rootfind_f32";

/// A root-find's f or f′ compiled next to its kernel (`clif::Helper::Sub`): the value at
/// `x`, reading the kernel's parameter buffer.
pub type SubFn<T> = unsafe extern "C" fn(x: T, params: *const T) -> T;

/// The x in (`lo`, `hi`) with f(x) = y ([`runtime::rootfind::solve`]), NaN when there is
/// none: the interpreter's `Inst::RootFind`, with f and f′ compiled.
extern "C" fn rootfind_f64(f: SubFn<f64>, df: SubFn<f64>, params: *const f64, y: f64, lo: f64, hi: f64, increasing: u32) -> f64 {
    // SAFETY: kernels pass their own compiled sub-functions, which read only `params` (the
    // kernel's parameter buffer, valid for the whole call)
    let fx = |x: f64| unsafe { f(x, params) };
    // SAFETY: as for f
    let dfx = |x: f64| unsafe { df(x, params) };
    runtime::rootfind::solve(&fx, &dfx, y, lo, hi, increasing != 0).unwrap_or(f64::NAN)
}

/// [`rootfind_f64`] for f32 kernels: f and f′ computed in f32, the search over the f32 values
/// (as `lower::run_f32`).
extern "C" fn rootfind_f32(f: SubFn<f32>, df: SubFn<f32>, params: *const f32, y: f32, lo: f64, hi: f64, increasing: u32) -> f32 {
    // SAFETY: as in rootfind_f64
    let fx = |x: f64| unsafe { f(x as f32, params) } as f64;
    // SAFETY: as in rootfind_f64
    let dfx = |x: f64| unsafe { df(x as f32, params) } as f64;
    runtime::rootfind::solve_on(runtime::rootfind::Grid::F32, &fx, &dfx, y as f64, lo, hi, increasing != 0).unwrap_or(f64::NAN) as f32
}

/// Symbols of [`spline_f64`] and [`spline_f32`].
pub const SPLINE_F64: &str = "flowc_spline_f64";
pub const SPLINE_F32: &str = "flowc_spline_f32";

/// One output of `Inst::Spline` ([`runtime::spline`]): `raw` holds its `3·bins − 1` values;
/// `mode` bit 0: the inverse map, bit 1: the log-derivative instead of the image.
extern "C" fn spline_f64(x: f64, raw: *const f64, bins: u64, bound: f64, mode: u32) -> f64 {
    // SAFETY: kernels pass a stack slot holding the spline's 3·bins − 1 values
    let r = unsafe { std::slice::from_raw_parts(raw, runtime::spline::raw_len(bins as usize)) };
    spline_value(x, r, bins as usize, bound, mode)
}

/// [`spline_f64`] for f32 kernels (computed in f32, as `lower::run_f32`).
extern "C" fn spline_f32(x: f32, raw: *const f32, bins: u64, bound: f64, mode: u32) -> f32 {
    // SAFETY: as in spline_f64
    let r = unsafe { std::slice::from_raw_parts(raw, runtime::spline::raw_len(bins as usize)) };
    spline_value(x, r, bins as usize, bound, mode)
}

fn spline_value<T: runtime::Real>(x: T, raw: &[T], bins: usize, bound: f64, mode: u32) -> T {
    let (y, ld) = if mode & 1 == 1 { runtime::spline::inverse(x, raw, bins, bound) } else { runtime::spline::forward(x, raw, bins, bound) };
    if mode & 2 == 2 {
        ld
    } else {
        y
    }
}

/// Symbols of [`log_abs_det_f64`] and [`log_abs_det_f32`].
pub const LOG_ABS_DET_F64: &str = "flowc_log_abs_det_f64";
pub const LOG_ABS_DET_F32: &str = "flowc_log_abs_det_f32";

/// `Inst::LogAbsDet` of one row: the n × n entries at `a` (row-major), in f64.
extern "C" fn log_abs_det_f64(a: *const f64, n: u64) -> f64 {
    // SAFETY: kernels pass a stack slot of n·n values
    let a = unsafe { std::slice::from_raw_parts(a, (n * n) as usize) };
    crate::lower::log_abs_det(&mut a.to_vec(), n as usize)
}

/// [`log_abs_det_f64`] for f32 kernels (computed in f64, as `lower::run_f32`).
extern "C" fn log_abs_det_f32(a: *const f32, n: u64) -> f32 {
    // SAFETY: as in log_abs_det_f64
    let a = unsafe { std::slice::from_raw_parts(a, (n * n) as usize) };
    let mut m: Vec<f64> = a.iter().map(|v| *v as f64).collect();
    crate::lower::log_abs_det(&mut m, n as usize) as f32
}

/// The runtime support functions kernels import: (symbol, address).
pub fn support() -> [(&'static str, *const u8); 20] {
    [
        (LOG_ABS_DET_F64, log_abs_det_f64 as *const u8),
        (LOG_ABS_DET_F32, log_abs_det_f32 as *const u8),
        (ZERO, zero as *const u8),
        (ACT_GRAD_F64, act_grad_f64 as *const u8),
        (ACT_GRAD_F32, act_grad_f32 as *const u8),
        (BIAS_ACT_F64, bias_act_f64 as *const u8),
        (BIAS_ACT_F32, bias_act_f32 as *const u8),
        (DENSE_T_F64, dense_t_f64 as *const u8),
        (DENSE_T_F32, dense_t_f32 as *const u8),
        (DENSE_ACC_F64, dense_acc_f64 as *const u8),
        (DENSE_ACC_F32, dense_acc_f32 as *const u8),
        (SCRATCH, scratch as *const u8),
        (DENSE_F64, dense_f64 as *const u8),
        (DENSE_F32, dense_f32 as *const u8),
        (MASK_F64, mask_f64 as *const u8),
        (MASK_F32, mask_f32 as *const u8),
        (ROOTFIND_F64, rootfind_f64 as *const u8),
        (ROOTFIND_F32, rootfind_f32 as *const u8),
        (SPLINE_F64, spline_f64 as *const u8),
        (SPLINE_F32, spline_f32 as *const u8),
    ]
}
