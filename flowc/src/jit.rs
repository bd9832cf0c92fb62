//! The JIT: compiles a kernel with Cranelift (fixed steps: declare, define, finalize, get
//! the pointer) into a typed, safe handle. Its code is freed when the handle drops. The code
//! pointers are cast in two `unsafe fn call`s only: a kernel's ([`Compiled`]) and the ULP
//! table's harness ([`Harness`]). (A numeric inverse's f and f′ are called by the host
//! root-find through the typed pointers the kernel passes it, [`crate::codegen::host::SubFn`].)
//!
//! ```
//! let src = "bijector affine(x; shift: real, log_scale: real) = x * exp(log_scale) + shift;
//!            flow f(x: R^1) { base normal; elementwise(affine(shift = 1, log_scale = 0)); }";
//! let (_, _, d) = flowc::cli::load_str("f.flow", src).unwrap();
//! let p = flowc::lower::lower(&d).unwrap();
//! let k = flowc::jit::compile(p.kernel("f", flowc::lower::Kind::Forward).unwrap(), flowc::codegen::clif::Float::F64).unwrap();
//! let mut out = [0.0; 4];
//! k.run_f64(&[0.5, 2.0], &[], &mut out).unwrap();
//! assert_eq!(out, [1.5, 0.0, 3.0, 0.0]);
//! ```

use crate::codegen::clif::{self, Backend, Float, MathMode, Options, Unsupported};
use crate::codegen::{host, x64};
use crate::ir::op::all_ops;
use crate::lower::Kernel;
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, Module};
use std::time::Instant;

/// A compiled kernel. Safe to call from many threads at once.
pub struct Compiled {
    module: Option<JITModule>,
    /// AVX-512 code ([`x64`]) in its executable pages, and how to fill its parameter buffer.
    native: Option<(memmap2::Mmap, x64::Native)>,
    code: *const u8,
    pub precision: Float,
    pub dim: usize,
    pub outputs: usize,
    pub param_len: usize,
    /// A gradient kernel (called with a gradient buffer).
    pub gradient: bool,
    /// Time to translate, compile and link, in milliseconds.
    pub compile_ms: f64,
    /// The Cranelift IR as text (for AVX-512 code, a line on it).
    pub clif: String,
}

// SAFETY: the code is immutable machine code reading only its arguments; the module is
// touched only when the handle drops, which needs exclusive access.
unsafe impl Send for Compiled {}
unsafe impl Sync for Compiled {}

/// A mismatch between a call and the kernel's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct ShapeError(pub String);

impl Compiled {
    /// Which code generator made the code: `avx512` ([`x64`]) or `cranelift`.
    pub fn backend(&self) -> &'static str {
        if self.native.is_some() {
            "avx512"
        } else {
            "cranelift"
        }
    }

    /// The one cast of the code pointer to the kernel ABI.
    ///
    /// # Safety
    /// `T` must be the kernel's element type, `rows` must hold `n · dim` values, `params`
    /// `param_len` and `out` `n · outputs`; the code reads and writes exactly those.
    unsafe fn call<T>(&self, rows: *const T, n: u64, params: *const T, out: *mut T) {
        let f: extern "C" fn(*const T, u64, *const T, *mut T) = unsafe { std::mem::transmute(self.code) };
        f(rows, n, params, out)
    }

    /// The cast of a gradient kernel's code pointer to its ABI.
    ///
    /// # Safety
    /// As [`Compiled::call`], and `grad` must hold `param_len` values.
    unsafe fn call_grad<T>(&self, rows: *const T, n: u64, params: *const T, out: *mut T, grad: *mut T) {
        let f: extern "C" fn(*const T, u64, *const T, *mut T, *mut T) = unsafe { std::mem::transmute(self.code) };
        f(rows, n, params, out, grad)
    }

    fn not_gradient(&self) -> Result<(), ShapeError> {
        if self.gradient {
            return Err(ShapeError("a gradient kernel runs with `run_grad_f64` / `run_grad_f32`".into()));
        }
        Ok(())
    }

    fn check_grad(&self, prec: Float, rows: usize, params: usize, out: usize, grad: usize) -> Result<u64, ShapeError> {
        if !self.gradient {
            return Err(ShapeError("not a gradient kernel".into()));
        }
        if grad != self.param_len {
            return Err(ShapeError(format!("the gradient takes {} values, got {grad}", self.param_len)));
        }
        self.check(prec, rows, params, out)
    }

    /// Runs a gradient kernel on f64 rows: `out` receives log p per row, and Σ_rows ∂ log p/∂θ
    /// is added to `grad`.
    pub fn run_grad_f64(&self, rows: &[f64], params: &[f64], out: &mut [f64], grad: &mut [f64]) -> Result<(), ShapeError> {
        let n = self.check_grad(Float::F64, rows.len(), params.len(), out.len(), grad.len())?;
        // SAFETY: kind, precision and every length were checked above
        unsafe { self.call_grad(rows.as_ptr(), n, params.as_ptr(), out.as_mut_ptr(), grad.as_mut_ptr()) };
        Ok(())
    }

    /// [`Compiled::run_grad_f64`] on f32 rows.
    pub fn run_grad_f32(&self, rows: &[f32], params: &[f32], out: &mut [f32], grad: &mut [f32]) -> Result<(), ShapeError> {
        let n = self.check_grad(Float::F32, rows.len(), params.len(), out.len(), grad.len())?;
        // SAFETY: kind, precision and every length were checked above
        unsafe { self.call_grad(rows.as_ptr(), n, params.as_ptr(), out.as_mut_ptr(), grad.as_mut_ptr()) };
        Ok(())
    }

    fn check(&self, prec: Float, rows: usize, params: usize, out: usize) -> Result<u64, ShapeError> {
        if prec != self.precision {
            return Err(ShapeError(format!("the kernel was compiled for {:?}, called with {:?}", self.precision, prec)));
        }
        if self.dim == 0 || !rows.is_multiple_of(self.dim) {
            return Err(ShapeError(format!("{rows} input values are not whole rows of {}", self.dim)));
        }
        let n = rows / self.dim;
        if params != self.param_len {
            return Err(ShapeError(format!("the kernel takes {} parameter values, got {params}", self.param_len)));
        }
        if out != n * self.outputs {
            return Err(ShapeError(format!("{n} rows need an output of {} values, got {out}", n * self.outputs)));
        }
        Ok(n as u64)
    }

    /// Runs on f64 rows (row-major); `out` receives `outputs` values per row.
    pub fn run_f64(&self, rows: &[f64], params: &[f64], out: &mut [f64]) -> Result<(), ShapeError> {
        self.run_batch(Float::F64, rows, params, out, 1)
    }

    /// Runs on f32 rows (row-major).
    pub fn run_f32(&self, rows: &[f32], params: &[f32], out: &mut [f32]) -> Result<(), ShapeError> {
        self.run_batch(Float::F32, rows, params, out, 1)
    }
}

impl Compiled {
    /// Runs on f64 rows on `threads` threads (0: one per core), in chunks of
    /// [`runtime::batch::CHUNK_ROWS`] rows; the parameter buffer (for AVX-512 code, with the
    /// parameter-only values) is prepared once for all chunks.
    pub fn run_batch_f64(&self, rows: &[f64], params: &[f64], out: &mut [f64], threads: usize) -> Result<(), ShapeError> {
        self.run_batch(Float::F64, rows, params, out, threads)
    }

    /// [`Compiled::run_batch_f64`] on f32 rows.
    pub fn run_batch_f32(&self, rows: &[f32], params: &[f32], out: &mut [f32], threads: usize) -> Result<(), ShapeError> {
        self.run_batch(Float::F32, rows, params, out, threads)
    }

    /// The one call path of row kernels: shapes checked, the parameter buffer prepared (for
    /// AVX-512 code, with the parameter-only values), rows in chunks on `threads` threads.
    fn run_batch<T: x64::Element + Send + Sync>(
        &self,
        prec: Float,
        rows: &[T],
        params: &[T],
        out: &mut [T],
        threads: usize,
    ) -> Result<(), ShapeError> {
        self.not_gradient()?;
        self.check(prec, rows.len(), params.len(), out.len())?;
        let buf;
        let p: &[T] = match &self.native {
            Some((_, native)) => {
                buf = native.uniforms(params);
                &buf
            }
            None => params,
        };
        let dim = self.dim;
        runtime::batch::run_rows(rows, dim, out, self.outputs, threads, &|r: &[T], o: &mut [T]| {
            // SAFETY: precision and lengths were checked above for all rows; run_rows hands
            // each call whole rows and their outputs
            unsafe { self.call(r.as_ptr(), (r.len() / dim) as u64, p.as_ptr(), o.as_mut_ptr()) }
        })
        .map_err(ShapeError)
    }
}

impl Drop for Compiled {
    fn drop(&mut self) {
        if let Some(m) = self.module.take() {
            // SAFETY: no pointer into the code outlives the handle (`code` is private and the
            // handle is being dropped)
            unsafe { m.free_memory() };
        }
    }
}

/// Compiles one kernel with the default options.
pub fn compile(k: &Kernel, prec: Float) -> Result<Compiled, Unsupported> {
    compile_with(k, prec, Options::default())
}

/// Compiles one kernel: with [`x64`] when `opts` and the CPU allow and the kernel is one it
/// takes, else with Cranelift.
pub fn compile_with(k: &Kernel, prec: Float, opts: Options) -> Result<Compiled, Unsupported> {
    let start = Instant::now();
    if opts.backend == Backend::Auto && opts.math == MathMode::Auto && x64::host_supported() {
        if let Ok(native) = x64::emit(k, prec) {
            return load_native(k, native, start);
        }
    }
    let mut builder = JITBuilder::with_flags(
        &[("opt_level", if std::env::var("FLOWC_OPT").as_deref() == Ok("none") { "none" } else { "speed" })],
        default_libcall_names(),
    )
    .map_err(|e| Unsupported(e.to_string()))?;
    for op in all_ops() {
        for f32 in [false, true] {
            if let Some((name, ptr, _)) = host::function(&op, f32) {
                builder.symbol(name, ptr);
            }
        }
    }
    for (name, ptr) in host::support() {
        builder.symbol(name, ptr);
    }
    let mut module = JITModule::new(builder);
    let mut ctx = module.make_context();
    let (id, helpers) = clif::emit(&mut module, k, prec, opts, &format!("{}_{}", k.flow, k.kind.name()), &mut ctx)?;
    let mut text = ctx.func.display().to_string();
    crate::dump("clif", || text.clone());
    module.define_function(id, &mut ctx).map_err(|e| Unsupported(format!("{e:?}")))?;
    module.clear_context(&mut ctx);
    for (h, hid) in &helpers {
        // a root-find's f and f′: shown after the kernel
        if let Some(t) = clif::define_helper(&mut module, h, prec, *hid, &mut ctx)? {
            crate::dump("clif", || t.clone());
            text.push('\n');
            text.push_str(&t);
        }
    }
    module.finalize_definitions().map_err(|e| Unsupported(format!("{e:?}")))?;
    let code = module.get_finalized_function(id);
    Ok(Compiled {
        module: Some(module),
        native: None,
        code,
        precision: prec,
        dim: k.dim,
        outputs: k.outputs.len(),
        param_len: k.param_len(),
        gradient: k.kind == crate::lower::Kind::Gradient,
        compile_ms: start.elapsed().as_secs_f64() * 1e3,
        clif: text,
    })
}

/// Copies AVX-512 code into executable pages.
fn load_native(k: &Kernel, native: x64::Native, start: Instant) -> Result<Compiled, Unsupported> {
    let pages = |e: std::io::Error| Unsupported(format!("executable memory: {e}"));
    let mut map = memmap2::MmapMut::map_anon(native.code.len().max(1)).map_err(pages)?;
    map[..native.code.len()].copy_from_slice(&native.code);
    let map = map.make_exec().map_err(pages)?;
    let code = map.as_ptr();
    let clif = native.summary();
    let precision = native.precision;
    Ok(Compiled {
        module: None,
        native: Some((map, native)),
        code,
        precision,
        dim: k.dim,
        outputs: k.outputs.len(),
        param_len: k.param_len(),
        gradient: false,
        compile_ms: start.elapsed().as_secs_f64() * 1e3,
        clif,
    })
}

/// A vector math function compiled over a buffer ([`clif::emit_map`]): the ULP table's
/// harness. Its code is freed on drop.
pub struct Harness {
    module: Option<JITModule>,
    code: *const u8,
    ty: cranelift_codegen::ir::Type,
    /// The harness's Cranelift IR as text.
    pub clif: String,
}

// SAFETY: the code is immutable machine code that reads and writes only its arguments.
unsafe impl Send for Harness {}
unsafe impl Sync for Harness {}

impl Harness {
    /// Compiles `f` on values of type `ty` (f64, f64x2, f32 or f32x4) for the host.
    pub fn new(f: clif::MathFn, ty: cranelift_codegen::ir::Type) -> Result<Harness, String> {
        let builder = JITBuilder::with_flags(&[("opt_level", "speed")], default_libcall_names()).map_err(|e| e.to_string())?;
        let mut module = JITModule::new(builder);
        let mut ctx = module.make_context();
        let id = clif::emit_map(&mut module, f, ty, "vmath_harness", &mut ctx).map_err(|e| e.0)?;
        let text = ctx.func.display().to_string();
        module.define_function(id, &mut ctx).map_err(|e| format!("{e:?}"))?;
        module.finalize_definitions().map_err(|e| format!("{e:?}"))?;
        let code = module.get_finalized_function(id);
        Ok(Harness { module: Some(module), code, ty, clif: text })
    }

    /// The cast of the harness's code pointer to its ABI.
    ///
    /// # Safety
    /// `T` must be the lane type of the harness, and `inp` and `out` must hold `n` values,
    /// `n` a multiple of the lane count.
    unsafe fn call<T>(&self, inp: *const T, out: *mut T, n: u64) {
        let f: extern "C" fn(*const T, *mut T, u64) = unsafe { std::mem::transmute(self.code) };
        f(inp, out, n)
    }

    fn run<T: Copy + Default>(&self, xs: &[T], lane: cranelift_codegen::ir::Type) -> Vec<T> {
        assert_eq!(self.ty.lane_type(), lane, "the harness was compiled for {}", self.ty);
        let lanes = self.ty.lane_count() as usize;
        let n = xs.len().div_ceil(lanes) * lanes;
        let mut inp = xs.to_vec();
        inp.resize(n, T::default());
        let mut out = vec![T::default(); n];
        // SAFETY: lane type checked above; both buffers hold n values, a multiple of the lanes
        unsafe { self.call(inp.as_ptr(), out.as_mut_ptr(), n as u64) };
        out.truncate(xs.len());
        out
    }

    /// The function at each of `xs` (an f64 or f64x2 harness; padded to whole vectors).
    pub fn run_f64(&self, xs: &[f64]) -> Vec<f64> {
        self.run(xs, cranelift_codegen::ir::types::F64)
    }

    /// The function at each of `xs` (an f32 or f32x4 harness).
    pub fn run_f32(&self, xs: &[f32]) -> Vec<f32> {
        self.run(xs, cranelift_codegen::ir::types::F32)
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(m) = self.module.take() {
            // SAFETY: no pointer into the code outlives the harness (`code` is private)
            unsafe { m.free_memory() };
        }
    }
}
