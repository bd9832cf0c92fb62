//! The Cranelift translator: one match over kernel instructions, emitting a function with
//! the kernel ABI `fn(rows: *const T, n: u64, params: *const T, out: *mut T)` that loops
//! over `n` rows (row-major, `dim` values in, the kernel's outputs out).
//!
//! Parameters and constants are materialized once before the row loop. Ops without a
//! native instruction call the host functions of [`super::host`]. A numeric inverse
//! ([`Inst::RootFind`]) calls the host root-find lane by lane, its f and f′ compiled as
//! functions of their own in the same module ([`Helper::Sub`]).

use super::host;
use super::tile;
use crate::ir::Math;
use crate::lower::{args_of, branch_sets, Inst, Kernel, Kind, MadeMask, Rows, SubBody};
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{
    types, AbiParam, BlockArg, Endianness, FuncRef, Function, InstBuilder, MemFlagsData, StackSlotData, StackSlotKind, Type, UserFuncName,
    Value,
};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_module::{FuncId, Linkage, Module};
use std::collections::HashMap;

/// Floating-point precision of a compiled kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Float {
    F32,
    F64,
}

impl Float {
    pub fn ty(self) -> Type {
        match self {
            Float::F32 => types::F32,
            Float::F64 => types::F64,
        }
    }
    /// The vector type of one loop iteration (128 bits: what Cranelift lowers on x86-64).
    pub fn vector(self) -> Type {
        match self {
            Float::F32 => types::F32X4,
            Float::F64 => types::F64X2,
        }
    }
    /// Rows per loop iteration.
    pub fn lanes(self) -> usize {
        match self {
            Float::F32 => 4,
            Float::F64 => 2,
        }
    }
    pub fn bytes(self) -> i64 {
        match self {
            Float::F32 => 4,
            Float::F64 => 8,
        }
    }
}

/// How transcendental functions are computed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MathMode {
    /// Vector code (`codegen::vmath`) inlined at every use: fastest, largest code.
    Inline,
    /// One compiled copy of each vector function, called: small code, fast compiles.
    Call,
    /// The host's libm, lane by lane (exactly the interpreter's values).
    Libm,
    /// `Inline` for kernels with few such operations, `Call` for the others.
    #[default]
    Auto,
}

/// Which code generator compiles a kernel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Backend {
    /// [`super::x64`] (AVX-512) for the kernels it takes, on CPUs with AVX-512F and BMI2, when
    /// transcendental functions are left to `MathMode::Auto`; Cranelift otherwise.
    #[default]
    Auto,
    /// Cranelift only.
    Cranelift,
}

/// Code generation choices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    pub math: MathMode,
    pub backend: Backend,
}

/// Kernels with at most this many transcendental operations per loop iteration inline them
/// (`Auto`); above it, one out-of-line copy of each function keeps the loop body small.
/// Measured, 2 threads, f64 rows/s, inline vs call: W5 planar2 sampling (16 tanh per row, four
/// vectors per iteration: 64) 0.94e7 vs 2.43e7; W2 sas16 2.8e6 vs 4.3e6; W4 sphere3 and W1
/// realnvp8 equal.
pub const AUTO_INLINE_MAX: usize = 16;

/// A function a kernel calls that is defined in the same module after it
/// ([`define_helper`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Helper {
    /// The out-of-line vector function of an op (`MathMode::Call`).
    VMath(Math),
    /// A root-find's f or f′: `fn(x: T, params: *const T) -> T` ([`host::SubFn`]), computed
    /// with libm (`MathMode::Libm`) or inline vector math (`MathMode::Inline`).
    Sub(SubBody, MathMode),
}

/// Functions a kernel calls: host functions (imported) and helpers (defined in the same
/// module after the kernel).
#[derive(Default)]
pub struct Imports {
    host: HashMap<&'static str, FuncRef>,
    /// (helper, declared function, reference in the kernel)
    helpers: Vec<(Helper, FuncId, FuncRef)>,
}

impl Imports {
    fn find(&self, h: impl Fn(&Helper) -> bool) -> Option<FuncRef> {
        self.helpers.iter().find(|(g, _, _)| h(g)).map(|(_, _, f)| *f)
    }

    /// The helpers to define after the kernel.
    fn into_helpers(self) -> Vec<(Helper, FuncId)> {
        self.helpers.into_iter().map(|(h, id, _)| (h, id)).collect()
    }
}

/// Declares (once) the out-of-line vector function for `op` and returns its reference.
fn vmath_ref<M: Module>(
    module: &mut M,
    b: &mut FunctionBuilder,
    imports: &mut Imports,
    prec: Float,
    op: &Math,
) -> Result<FuncRef, Unsupported> {
    if let Some(f) = imports.find(|h| matches!(h, Helper::VMath(o) if o == op)) {
        return Ok(f);
    }
    let mut s = module.make_signature();
    s.params.push(AbiParam::new(prec.vector()));
    s.returns.push(AbiParam::new(prec.vector()));
    let name = format!("vmath_{op}_{}", if prec == Float::F64 { "f64x2" } else { "f32x4" });
    let id = module.declare_function(&name, Linkage::Local, &s).map_err(|e| Unsupported(e.to_string()))?;
    let f = module.declare_func_in_func(id, b.func);
    imports.helpers.push((Helper::VMath(op.clone()), id, f));
    Ok(f)
}

/// Defines helper `id` (declared by a kernel's [`emit`]); returns the text of a root-find's
/// function (the kernel's CLIF shows its address taken), nothing for vector math.
pub fn define_helper<M: Module>(
    module: &mut M,
    h: &Helper,
    prec: Float,
    id: FuncId,
    ctx: &mut cranelift_codegen::Context,
) -> Result<Option<String>, Unsupported> {
    match h {
        Helper::VMath(op) => define_vmath(module, op, prec, id, ctx).map(|_| None),
        Helper::Sub(body, math) => define_sub(module, body, *math, prec, id, ctx).map(Some),
    }
}

/// Defines the out-of-line vector function `id` of `op`.
fn define_vmath<M: Module>(
    module: &mut M,
    op: &Math,
    prec: Float,
    id: FuncId,
    ctx: &mut cranelift_codegen::Context,
) -> Result<(), Unsupported> {
    let mut s = module.make_signature();
    s.params.push(AbiParam::new(prec.vector()));
    s.returns.push(AbiParam::new(prec.vector()));
    ctx.func = Function::with_name_signature(UserFuncName::user(0, id.as_u32()), s);
    let mut fctx = FunctionBuilderContext::new();
    let mut b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    let x = b.block_params(entry)[0];
    let f = super::vmath::function(op).ok_or_else(|| Unsupported(format!("no vector code for `{op}`")))?;
    let y = f(&mut b, x);
    b.ins().return_(&[y]);
    b.seal_all_blocks();
    b.finalize(module.target_config());
    module.define_function(id, ctx).map_err(|e| Unsupported(format!("{e:?}")))?;
    module.clear_context(ctx);
    Ok(())
}

/// Declares (once per body and math mode) a root-find's f or f′ and returns its reference.
fn sub_ref<M: Module>(
    module: &mut M,
    b: &mut FunctionBuilder,
    imports: &mut Imports,
    prec: Float,
    body: &SubBody,
    math: MathMode,
) -> Result<FuncRef, Unsupported> {
    if let Some(f) = imports.find(|h| matches!(h, Helper::Sub(s, m) if s == body && *m == math)) {
        return Ok(f);
    }
    let n = imports.helpers.iter().filter(|(h, _, _)| matches!(h, Helper::Sub(..))).count();
    let id = module
        .declare_function(&format!("rootfind_fn{n}"), Linkage::Local, &sub_signature(module, prec))
        .map_err(|e| Unsupported(e.to_string()))?;
    let f = module.declare_func_in_func(id, b.func);
    imports.helpers.push((Helper::Sub(body.clone(), math), id, f));
    Ok(f)
}

/// `fn(x: T, params: *const T) -> T`
fn sub_signature<M: Module>(module: &M, prec: Float) -> cranelift_codegen::ir::Signature {
    let mut s = module.make_signature();
    s.params.push(AbiParam::new(prec.ty()));
    s.params.push(AbiParam::new(module.target_config().pointer_type()));
    s.returns.push(AbiParam::new(prec.ty()));
    s
}

/// Defines a root-find's f or f′ as `fn(x: T, params: *const T) -> T`. With libm: scalar
/// code calling the host functions, exactly the interpreter's values. Otherwise the kernels'
/// vector code ([`vector_op`]) with `x` in every lane, lane 0 returned, so that the inverse
/// solves the same f the forward kernel computes (inline whatever the kernel's mode: these
/// bodies are small).
fn define_sub<M: Module>(
    module: &mut M,
    sub: &SubBody,
    math: MathMode,
    prec: Float,
    id: FuncId,
    ctx: &mut cranelift_codegen::Context,
) -> Result<String, Unsupported> {
    let (ty, vty) = (prec.ty(), prec.vector());
    ctx.func = Function::with_name_signature(UserFuncName::user(0, id.as_u32()), sub_signature(module, prec));
    let mut fctx = FunctionBuilderContext::new();
    let mut b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    let (x, params) = {
        let p = b.block_params(entry);
        (p[0], p[1])
    };
    let flags = MemFlagsData::trusted();
    let libm = math == MathMode::Libm;
    let opts = Options { math: if libm { MathMode::Libm } else { MathMode::Inline }, ..Options::default() };
    let row = RowCtx { ty, vty, prec, opts, flags, in_rows: Vec::new(), params, tile: None, rows: None, grad: None };
    let mut imports = Imports::default();
    let mut vals: Vec<Option<Value>> = vec![None; sub.insts.len()];
    for (i, inst) in sub.insts.iter().enumerate() {
        let scalar = match inst {
            Inst::Input(0) => x,
            Inst::Param(j) => b.ins().load(ty, flags, params, (*j as i64 * prec.bytes()) as i32),
            Inst::Const(c) => scalar_const(&mut b, prec, *c),
            Inst::Op(op, args) => {
                vals[i] = Some(if libm {
                    op_value(module, &mut b, &mut imports, prec, opts, op, args, &vals)?
                } else {
                    let a: Vec<Value> = args.iter().map(|v| vals[*v].expect("operands precede their use")).collect();
                    vector_op(module, &mut b, &mut imports, &row, op, &a)?
                });
                continue;
            }
            other => return Err(Unsupported(format!("a root-find's function cannot compute `{other:?}`"))),
        };
        vals[i] = Some(if libm { scalar } else { b.ins().splat(vty, scalar) });
    }
    let r = vals[sub.result].expect("the result is computed");
    let r = if libm { r } else { b.ins().extractlane(r, 0) };
    b.ins().return_(&[r]);
    b.seal_all_blocks();
    b.finalize(module.target_config());
    debug_assert!(imports.helpers.is_empty(), "inline math needs no helpers");
    let text = ctx.func.display().to_string();
    module.define_function(id, ctx).map_err(|e| Unsupported(format!("{e:?}")))?;
    module.clear_context(ctx);
    Ok(text)
}

/// Host function `sym` with signature `params -> ret`, declared in the kernel on first use.
fn import<M: Module>(
    module: &mut M,
    b: &mut FunctionBuilder,
    imports: &mut Imports,
    sym: &'static str,
    params: &[Type],
    ret: Type,
) -> Result<FuncRef, Unsupported> {
    if let Some(f) = imports.host.get(sym) {
        return Ok(*f);
    }
    let mut s = module.make_signature();
    for t in params {
        s.params.push(AbiParam::new(*t));
    }
    s.returns.push(AbiParam::new(ret));
    let fid = module.declare_function(sym, Linkage::Import, &s).map_err(|e| Unsupported(e.to_string()))?;
    let f = module.declare_func_in_func(fid, b.func);
    imports.host.insert(sym, f);
    Ok(f)
}

/// The host root-find of the precision (`host::ROOTFIND_F64` or `_F32`).
fn rootfind_ref<M: Module>(module: &mut M, b: &mut FunctionBuilder, imports: &mut Imports, prec: Float) -> Result<FuncRef, Unsupported> {
    let sym = if prec == Float::F64 { host::ROOTFIND_F64 } else { host::ROOTFIND_F32 };
    let ptr = module.target_config().pointer_type();
    import(module, b, imports, sym, &[ptr, ptr, ptr, prec.ty(), types::F64, types::F64, types::I32], prec.ty())
}

/// The host spline of the precision (`host::SPLINE_F64` or `_F32`).
fn spline_ref<M: Module>(module: &mut M, b: &mut FunctionBuilder, imports: &mut Imports, prec: Float) -> Result<FuncRef, Unsupported> {
    let sym = if prec == Float::F64 { host::SPLINE_F64 } else { host::SPLINE_F32 };
    let ptr = module.target_config().pointer_type();
    import(module, b, imports, sym, &[prec.ty(), ptr, types::I64, types::F64, types::I32], prec.ty())
}

/// Why a kernel cannot be compiled (it can still be interpreted).
#[derive(Debug, Clone, PartialEq)]
pub struct Unsupported(pub String);

/// Translates `k` into a Cranelift function declared in `module` as `name`; host functions
/// are declared as imports. Returns the function id and the helpers it calls (out-of-line
/// vector math, root-finds' functions), to be defined with [`define_helper`].
///
/// The row loop is vectorized: each iteration computes `lanes` rows at once (f64x2 or
/// f32x4), lane `l` holding row `min(i + l, n - 1)`. In the last iteration the lanes past
/// the end repeat the last row, so nothing is read past the buffers and the extra lanes
/// store the same values to the same place.
pub fn emit<M: Module>(
    module: &mut M,
    k: &Kernel,
    prec: Float,
    opts: Options,
    name: &str,
    ctx: &mut cranelift_codegen::Context,
) -> Result<(FuncId, Vec<(Helper, FuncId)>), Unsupported> {
    let ptr = module.target_config().pointer_type();
    let ty = prec.ty();
    let vty = prec.vector();
    let lanes = prec.lanes();
    let mut sig = module.make_signature();
    let gradient = k.kind == Kind::Gradient;
    for p in [ptr, types::I64, ptr, ptr] {
        sig.params.push(AbiParam::new(p));
    }
    if gradient {
        sig.params.push(AbiParam::new(ptr));
    }
    let id = module.declare_function(name, Linkage::Export, &sig).map_err(|e| Unsupported(e.to_string()))?;
    ctx.func = Function::with_name_signature(UserFuncName::user(0, id.as_u32()), sig);
    let mut fctx = FunctionBuilderContext::new();
    let mut b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
    let flags = MemFlagsData::trusted();

    let entry = b.create_block();
    let header = b.create_block();
    let body = b.create_block();
    let exit = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.append_block_param(header, types::I64);
    b.switch_to_block(entry);
    let (rows, n, params, out, grad) = {
        let p = b.block_params(entry);
        (p[0], p[1], p[2], p[3], p.get(4).copied())
    };

    // loop-invariant: parameters, constants, and ops whose operands are all invariant
    let count = k.body.insts.len();
    let mut invariant = vec![false; count];
    for (i, inst) in k.body.insts.iter().enumerate() {
        invariant[i] = match inst {
            Inst::Param(_) | Inst::Const(_) => true,
            Inst::Op(_, args) => args.iter().all(|a| invariant[*a]),
            _ => false,
        };
    }
    let mut used_by_hoisted = vec![false; count];
    let mut used_in_loop = vec![false; count];
    for (i, inst) in k.body.insts.iter().enumerate() {
        for a in args_of(inst) {
            if invariant[i] {
                used_by_hoisted[a] = true;
            } else {
                used_in_loop[a] = true;
            }
        }
    }
    for o in &k.outputs {
        used_in_loop[*o] = true;
    }
    // a few invariant values stay in registers (splatted once); with many (network weights),
    // parameters are loaded where the loop uses them instead
    let load_in_loop = (0..count).filter(|i| invariant[*i] && used_in_loop[*i]).count() > MAX_SPLATTED;
    let in_loop_param = |i: usize| load_in_loop && matches!(k.body.insts[i], Inst::Param(_)) && !used_by_hoisted[i];
    // computed once, in scalars, before the loop
    let mut hoisted: Vec<Option<Value>> = vec![None; count];
    let mut imports = Imports::default();
    for (i, inst) in k.body.insts.iter().enumerate() {
        if !invariant[i] || in_loop_param(i) || !(used_in_loop[i] || used_by_hoisted[i]) {
            continue;
        }
        hoisted[i] = Some(match inst {
            Inst::Param(j) => b.ins().load(ty, flags, params, (*j as i64 * prec.bytes()) as i32),
            Inst::Const(c) => scalar_const(&mut b, prec, *c),
            Inst::Op(op, args) => {
                op_value(module, &mut b, &mut imports, prec, Options { math: MathMode::Libm, ..Options::default() }, op, args, &hoisted)?
            }
            _ => unreachable!("invariant"),
        });
    }
    // ... splatted for the loop
    let mut vals: Vec<Option<Value>> = vec![None; count];
    for i in 0..count {
        if let (Some(h), true) = (hoisted[i], used_in_loop[i]) {
            vals[i] = Some(b.ins().splat(vty, h));
        }
    }
    // what the loop computes: everything else (parameters loaded there when `load_in_loop`)
    let in_loop: Vec<bool> = (0..count).map(|i| !invariant[i] || in_loop_param(i)).collect();
    let opts = Options { math: resolve_math(opts.math, k, &in_loop), ..opts };
    if k.body.insts.iter().any(|i| matrix_operands(i).is_some()) {
        let io = TileIo { rows, n, params, out, grad };
        tiled(module, &mut b, &mut imports, k, prec, opts, io, &in_loop, vals)?;
        b.seal_all_blocks();
        b.finalize(module.target_config());
        return Ok((id, imports.into_helpers()));
    }
    let last = b.ins().iadd_imm_s(n, -1);
    let zero = b.ins().iconst(types::I64, 0);
    b.ins().jump(header, &[BlockArg::Value(zero)]);

    // header: i < n ?
    b.switch_to_block(header);
    let i = b.block_params(header)[0];
    let more = b.ins().icmp(IntCC::UnsignedLessThan, i, n);
    b.ins().brif(more, body, &[], exit, &[]);

    // body: `unroll` vectors of `lanes` rows, their instructions interleaved (independent
    // chains for the CPU to overlap when a row's work is one long dependent chain)
    b.switch_to_block(body);
    let unroll = unroll_factor(k);
    let outside: Vec<bool> = in_loop.iter().map(|l| !l).collect();
    // `ifpos` computes a branch only when some lane takes it: instructions used by one
    // branch alone are emitted inside that branch
    let deferred = branch_sets(k, &outside);
    let mut copies = Vec::with_capacity(unroll);
    for c in 0..unroll {
        let first = if c == 0 { i } else { b.ins().iadd_imm_s(i, (c * lanes) as i64) };
        let (in_rows, out_rows) = lane_rows(&mut b, k, prec, first, last, rows, out);
        let rows = Some((first, last));
        copies.push((RowCtx { ty, vty, prec, opts, flags, in_rows, params, tile: None, rows, grad }, out_rows, vals.clone()));
    }
    // what the loop must compute: the outputs, effects, and what they read
    let mut live = vec![false; count];
    for o in &k.outputs {
        live[*o] = true;
    }
    for i in (0..count).rev() {
        if matches!(k.body.insts[i], Inst::Accum { .. }) {
            live[i] = true;
        }
        if live[i] {
            for a in args_of(&k.body.insts[i]) {
                live[a] = true;
            }
        }
    }
    for n_inst in 0..count {
        if in_loop[n_inst] && live[n_inst] && deferred[n_inst].is_none() {
            for (ctx, _, vals) in copies.iter_mut() {
                emit_inst(module, &mut b, &mut imports, ctx, k, n_inst, &deferred, vals)?;
            }
        }
    }
    for (_, out_rows, vals) in &copies {
        for (j, o) in k.outputs.iter().enumerate() {
            let v = vals[*o].expect("output defined");
            for (l, orow) in out_rows.iter().enumerate() {
                let x = b.ins().extractlane(v, l as u8);
                b.ins().store(flags, x, *orow, (j as i64 * prec.bytes()) as i32);
            }
        }
    }
    let next = b.ins().iadd_imm_s(i, (unroll * lanes) as i64);
    b.ins().jump(header, &[BlockArg::Value(next)]);

    b.switch_to_block(exit);
    b.ins().return_(&[]);
    b.seal_all_blocks();
    b.finalize(module.target_config());
    Ok((id, imports.into_helpers()))
}

fn scalar_const(b: &mut FunctionBuilder, prec: Float, c: f64) -> Value {
    match prec {
        Float::F64 => b.ins().f64const(c),
        Float::F32 => b.ins().f32const(c as f32),
    }
}

/// A host function's reference, declared on first use.
fn host_ref<M: Module>(
    module: &mut M,
    b: &mut FunctionBuilder,
    imports: &mut Imports,
    prec: Float,
    op: &Math,
) -> Result<(FuncRef, usize), Unsupported> {
    let Some((sym, _, arity)) = host::function(op, prec == Float::F32) else {
        return Err(Unsupported(format!("no code for `{op}`")));
    };
    let f = import(module, b, imports, sym, &vec![prec.ty(); arity], prec.ty())?;
    Ok((f, arity))
}

/// The value of one op on vectors of rows: a native vector instruction, inline vector math,
/// or the host function called lane by lane.
#[allow(clippy::too_many_arguments)]
fn vector_op<M: Module>(
    module: &mut M,
    b: &mut FunctionBuilder,
    imports: &mut Imports,
    ctx: &RowCtx,
    op: &Math,
    a: &[Value],
) -> Result<Value, Unsupported> {
    Ok(match op {
        Math::Add(_) => b.ins().fadd(a[0], a[1]),
        Math::Sub(_) => b.ins().fsub(a[0], a[1]),
        Math::Mul(_) => b.ins().fmul(a[0], a[1]),
        Math::Div(_) => b.ins().fdiv(a[0], a[1]),
        Math::Neg(_) => b.ins().fneg(a[0]),
        Math::Sqrt(_) => b.ins().sqrt(a[0]),
        Math::Abs(_) => b.ins().fabs(a[0]),
        Math::IfPos(_) => {
            let mask = positive_mask(b, ctx, a[0]);
            b.ins().bitselect(mask, a[1], a[2])
        }
        Math::Hypot(_) if ctx.opts.math != MathMode::Libm => hypot(b, ctx, a[0], a[1]),
        Math::Pow(_) if ctx.opts.math != MathMode::Libm => pow(b, ctx, a[0], a[1], false),
        Math::PowRecip(_) if ctx.opts.math != MathMode::Libm => pow(b, ctx, a[0], a[1], true),
        Math::Sin(_) | Math::Cos(_) | Math::Tan(_) if ctx.opts.math != MathMode::Libm => {
            // the vector reduction is accurate up to a limit; beyond it (rare), libm per lane
            let limit = if ctx.prec == Float::F64 { super::vmath::TRIG_LIMIT_F64 } else { super::vmath::TRIG_LIMIT_F32 };
            let ax = b.ins().fabs(a[0]);
            let lim = scalar_const(b, ctx.prec, limit);
            let lim = b.ins().splat(ctx.vty, lim);
            let far = b.ins().fcmp(FloatCC::GreaterThan, ax, lim);
            let any = b.ins().vany_true(far);
            let (fast_b, slow_b, done) = (b.create_block(), b.create_block(), b.create_block());
            b.append_block_param(done, ctx.vty);
            b.ins().brif(any, slow_b, &[], fast_b, &[]);
            b.switch_to_block(fast_b);
            let v = if ctx.opts.math == MathMode::Call {
                let f = vmath_ref(module, b, imports, ctx.prec, op)?;
                let call = b.ins().call(f, &[a[0]]);
                b.inst_results(call)[0]
            } else {
                super::vmath::function(op).expect("trig is in vmath")(b, a[0])
            };
            b.ins().jump(done, &[BlockArg::Value(v)]);
            b.switch_to_block(slow_b);
            let v = lanewise_host(module, b, imports, ctx, op, a)?;
            b.ins().jump(done, &[BlockArg::Value(v)]);
            b.switch_to_block(done);
            b.block_params(done)[0]
        }
        op if ctx.opts.math != MathMode::Libm && super::vmath::function(op).is_some() => {
            if ctx.opts.math == MathMode::Call {
                let f = vmath_ref(module, b, imports, ctx.prec, op)?;
                let call = b.ins().call(f, &[a[0]]);
                b.inst_results(call)[0]
            } else {
                super::vmath::function(op).expect("checked")(b, a[0])
            }
        }
        other => lanewise_host(module, b, imports, ctx, other, a)?,
    })
}

/// The host function of `op` called lane by lane.
fn lanewise_host<M: Module>(
    module: &mut M,
    b: &mut FunctionBuilder,
    imports: &mut Imports,
    ctx: &RowCtx,
    op: &Math,
    a: &[Value],
) -> Result<Value, Unsupported> {
    let (f, arity) = host_ref(module, b, imports, ctx.prec, op)?;
    let mut result = None;
    for l in 0..ctx.prec.lanes() {
        let args: Vec<Value> = a[..arity].iter().map(|v| b.ins().extractlane(*v, l as u8)).collect();
        let call = b.ins().call(f, &args);
        let r = b.inst_results(call)[0];
        result = Some(match result {
            None => b.ins().scalar_to_vector(ctx.vty, r),
            Some(v) => b.ins().insertlane(v, r, l as u8),
        });
    }
    Ok(result.expect("at least one lane"))
}

/// hypot(a, b) = M·√(1 + (m/M)²) with M = max(|a|, |b|), m = min: no overflow or
/// underflow of the squares; 0 when both are 0, +inf when either is infinite, else NaN if
/// either is NaN.
fn hypot(b: &mut FunctionBuilder, ctx: &RowCtx, x: Value, y: Value) -> Value {
    let ax = b.ins().fabs(x);
    let ay = b.ins().fabs(y);
    let big = b.ins().fmax(ax, ay);
    let small = b.ins().fmin(ax, ay);
    let r = b.ins().fdiv(small, big);
    let one = scalar_const(b, ctx.prec, 1.0);
    let one = b.ins().splat(ctx.vty, one);
    let s = b.ins().fma(r, r, one);
    let s = b.ins().sqrt(s);
    let h = b.ins().fmul(big, s);
    // big = 0: r is NaN; big = inf: r is NaN or 0 → h must be big itself
    let zero = scalar_const(b, ctx.prec, 0.0);
    let zero = b.ins().splat(ctx.vty, zero);
    let inf = scalar_const(b, ctx.prec, f64::INFINITY);
    let inf = b.ins().splat(ctx.vty, inf);
    let eflags = MemFlagsData::new().with_endianness(Endianness::Little);
    let is_zero = b.ins().fcmp(FloatCC::Equal, big, zero);
    let is_zero = b.ins().bitcast(ctx.vty, eflags, is_zero);
    let h = b.ins().bitselect(is_zero, zero, h);
    let is_inf = b.ins().fcmp(FloatCC::Equal, big, inf);
    let is_inf = b.ins().bitcast(ctx.vty, eflags, is_inf);
    b.ins().bitselect(is_inf, inf, h)
}

/// x^y (or x^(1/y) with `recip`, the reciprocal carried in extra precision), for vectors.
///
/// log x is computed, then corrected by one Newton step, L + c with c = (x − e^L)/e^L, which
/// leaves an absolute error of about one ulp of 1 whatever the size of log x; the product
/// y·(L + c) (or the quotient) is formed in double-word arithmetic and exponentiated as
/// e^hi·(1 + lo). So the result's relative error is a few ulps plus |y| (resp. 1/|y|) ulps,
/// the condition number of the power itself. Negative x: |x|^y with the sign of an odd
/// integer y, NaN for a non-integer y; y = 0 or x = 1 give 1, as in C's pow.
fn pow(b: &mut FunctionBuilder, ctx: &RowCtx, x: Value, y: Value, recip: bool) -> Value {
    let vty = ctx.vty;
    let c = |b: &mut FunctionBuilder, v: f64| {
        let s = scalar_const(b, ctx.prec, v);
        b.ins().splat(vty, s)
    };
    let eflags = MemFlagsData::new().with_endianness(Endianness::Little);
    let mask = |b: &mut FunctionBuilder, cc: FloatCC, p: Value, q: Value| {
        let m = b.ins().fcmp(cc, p, q);
        b.ins().bitcast(vty, eflags, m)
    };
    let ax = b.ins().fabs(x);
    let l = super::vmath::log(b, ax);
    let e = super::vmath::exp(b, l);
    let d = b.ins().fsub(ax, e);
    let corr = b.ins().fdiv(d, e);
    // the correction only where log x is finite (x = 0, inf: e is 0 or inf)
    let zero = c(b, 0.0);
    let inf = c(b, f64::INFINITY);
    let al = b.ins().fabs(l);
    let finite = mask(b, FloatCC::LessThan, al, inf);
    let corr = b.ins().bitselect(finite, corr, zero);
    let (hi, lo) = if recip {
        // (l + corr)/y: q = l/y, r = l − q·y exactly, lo = (r + corr)/y
        let q = b.ins().fdiv(l, y);
        let nq = b.ins().fneg(q);
        let r = b.ins().fma(nq, y, l);
        let r = b.ins().fadd(r, corr);
        let lo = b.ins().fdiv(r, y);
        (q, lo)
    } else {
        let t = b.ins().fmul(y, l);
        let nt = b.ins().fneg(t);
        let err = b.ins().fma(y, l, nt);
        let yc = b.ins().fmul(y, corr);
        let lo = b.ins().fadd(err, yc);
        (t, lo)
    };
    // lo is NaN/inf only with hi infinite; then e^hi alone
    let alo = b.ins().fabs(lo);
    let lo_ok = mask(b, FloatCC::LessThan, alo, inf);
    let lo = b.ins().bitselect(lo_ok, lo, zero);
    let eh = super::vmath::exp(b, hi);
    let mag = b.ins().fma(eh, lo, eh);
    let eh_fin = mask(b, FloatCC::LessThan, eh, inf);
    let mag = b.ins().bitselect(eh_fin, mag, eh);
    // the exponent actually applied: y, or 1/y (only its integer-ness and parity matter)
    let one = c(b, 1.0);
    let ey = if recip { b.ins().fdiv(one, y) } else { y };
    let fl = b.ins().floor(ey);
    let is_int = mask(b, FloatCC::Equal, fl, ey);
    let half = c(b, 0.5);
    let hy = b.ins().fmul(ey, half);
    let fh = b.ins().floor(hy);
    let even = mask(b, FloatCC::Equal, fh, hy);
    let odd = b.ins().band_not(is_int, even);
    let neg = mask(b, FloatCC::LessThan, x, zero);
    // negative base: sign of an odd integer power, NaN otherwise
    let nmag = b.ins().fneg(mag);
    let signed = b.ins().bitselect(odd, nmag, mag);
    let nan = c(b, f64::NAN);
    let neg_val = b.ins().bitselect(is_int, signed, nan);
    let v = b.ins().bitselect(neg, neg_val, mag);
    // x^0 = 1 and 1^y = 1 (even for NaN)
    let y0 = mask(b, FloatCC::Equal, ey, zero);
    let x1 = mask(b, FloatCC::Equal, x, one);
    let unit = b.ins().bor(y0, x1);
    b.ins().bitselect(unit, one, v)
}

/// All-ones lanes where `x > 0`, as a float vector (for `bitselect`).
fn positive_mask(b: &mut FunctionBuilder, ctx: &RowCtx, x: Value) -> Value {
    let z = scalar_const(b, ctx.prec, 0.0);
    let z = b.ins().splat(ctx.vty, z);
    let m = b.ins().fcmp(FloatCC::GreaterThan, x, z);
    b.ins().bitcast(ctx.vty, MemFlagsData::new().with_endianness(Endianness::Little), m)
}

/// The value of one scalar op: a native instruction, a select, inline math, or a host call.
#[allow(clippy::too_many_arguments)]
fn op_value<M: Module>(
    module: &mut M,
    b: &mut FunctionBuilder,
    imports: &mut Imports,
    prec: Float,
    opts: Options,
    op: &Math,
    args: &[usize],
    vals: &[Option<Value>],
) -> Result<Value, Unsupported> {
    let ty = prec.ty();
    let a: Vec<Value> = args.iter().map(|v| vals[*v].expect("operands precede their use")).collect();
    Ok(match op {
        Math::Add(_) => b.ins().fadd(a[0], a[1]),
        Math::Sub(_) => b.ins().fsub(a[0], a[1]),
        Math::Mul(_) => b.ins().fmul(a[0], a[1]),
        Math::Div(_) => b.ins().fdiv(a[0], a[1]),
        Math::Neg(_) => b.ins().fneg(a[0]),
        Math::Sqrt(_) => b.ins().sqrt(a[0]),
        Math::Abs(_) => b.ins().fabs(a[0]),
        op if opts.math != MathMode::Libm && super::vmath::function(op).is_some() => {
            let f = super::vmath::function(op).expect("checked");
            match prec {
                Float::F64 => f(b, a[0]),
                Float::F32 => {
                    let w = b.ins().fpromote(types::F64, a[0]);
                    let r = f(b, w);
                    b.ins().fdemote(types::F32, r)
                }
            }
        }
        Math::IfPos(_) => {
            let z = match prec {
                Float::F64 => b.ins().f64const(0.0),
                Float::F32 => b.ins().f32const(0.0),
            };
            let c = b.ins().fcmp(FloatCC::GreaterThan, a[0], z);
            b.ins().select(c, a[1], a[2])
        }
        other => {
            let Some((sym, _, arity)) = host::function(other, prec == Float::F32) else {
                return Err(Unsupported(format!("no code for `{other}`")));
            };
            let fref = match imports.host.get(sym) {
                Some(f) => *f,
                None => {
                    let mut s = module.make_signature();
                    for _ in 0..arity {
                        s.params.push(AbiParam::new(ty));
                    }
                    s.returns.push(AbiParam::new(ty));
                    let fid = module.declare_function(sym, Linkage::Import, &s).map_err(|e| Unsupported(e.to_string()))?;
                    let f = module.declare_func_in_func(fid, b.func);
                    imports.host.insert(sym, f);
                    f
                }
            };
            let call = b.ins().call(fref, &a[..arity]);
            b.inst_results(call)[0]
        }
    })
}

/// What a row's instructions need from the surrounding function.
struct RowCtx {
    ty: Type,
    vty: Type,
    prec: Float,
    opts: Options,
    flags: MemFlagsData,
    /// The start of each lane's input row.
    in_rows: Vec<Value>,
    params: Value,
    /// In a tiled kernel: where values from earlier segments and dense products live.
    tile: Option<TileCtx>,
    /// The first lane's row and the batch's last row (a row loop's lanes).
    rows: Option<(Value, Value)>,
    /// A gradient kernel's gradient buffer.
    grad: Option<Value>,
}

/// Vectors per loop iteration: eight for rows of one or two coordinates, four for three, one
/// from four on (elementwise flows interleave four coordinates' chains already, see `lower`; a
/// narrow row is one dependent chain, which more vectors' copies let the CPU overlap, as far
/// as registers last: the live values per copy grow with the row). Measured, 2 threads, f64/f32
/// rows/s: W5 planar2 sampling (2 coordinates; tanh out of line) 1.5e7/3.7e7 at two copies,
/// 2.63e7/6.2e7 at four, 2.77e7/6.6e7 at eight; W4 sphere3 log_prob (3 coordinates) 2.9e7/7.0e7
/// at two, 2.9e7/7.7e7 at four, 2.7e7/7.5e7 at eight; rows of 16 coordinates (W2) gain nothing.
fn unroll_factor(k: &Kernel) -> usize {
    match k.dim {
        0..=2 => 8,
        3 => 4,
        _ => 1,
    }
}

/// Rows per tile of a kernel with dense layers (a multiple of every lane count).
pub const TILE: usize = 128;

/// Scratch of a tiled kernel: columns of `TILE` values (one per row of the tile).
struct TileCtx {
    scratch: Value,
    /// Offset of the current rows in the tile (in rows).
    r: Value,
    /// Scratch column holding each value computed in an earlier segment or by a dense layer.
    home: Vec<Option<usize>>,
}

impl TileCtx {
    fn addr(&self, b: &mut FunctionBuilder, col: usize, prec: Float) -> Value {
        let off = b.ins().imul_imm_s(self.r, prec.bytes());
        let base = b.ins().iadd(self.scratch, off);
        b.ins().iadd_imm_s(base, (col * TILE) as i64 * prec.bytes())
    }
}

/// The kernel's arguments.
struct TileIo {
    rows: Value,
    n: Value,
    params: Value,
    out: Value,
    grad: Option<Value>,
}

/// Most loop-invariant values kept in (splatted) registers across the row loop.
const MAX_SPLATTED: usize = 96;

/// Emits instruction `i` (and, for `ifpos`, the branches some lane takes).
#[allow(clippy::too_many_arguments)]
fn emit_inst<M: Module>(
    module: &mut M,
    b: &mut FunctionBuilder,
    imports: &mut Imports,
    ctx: &RowCtx,
    k: &Kernel,
    i: usize,
    deferred: &[Option<(usize, bool)>],
    vals: &mut Vec<Option<Value>>,
) -> Result<(), Unsupported> {
    // in a tiled kernel, values of earlier segments are loaded from their scratch column
    if let Some(t) = &ctx.tile {
        // (a branch computed inside its ifpos makes its own values available)
        for a in args_of(&k.body.insts[i]).into_iter().filter(|a| deferred[*a].is_none()) {
            ensure(b, ctx, t, k, a, vals);
        }
    }
    let v = match &k.body.insts[i] {
        Inst::Dense { .. } | Inst::DenseT { .. } | Inst::AccumDense { .. } => unreachable!("dense layers run between segments"),
        Inst::Seed => {
            // 1 for the lanes on rows of the batch, 0 for the lanes past its end
            let (first, last) = ctx.rows.expect("a row loop");
            let one = scalar_const(b, ctx.prec, 1.0);
            let zero = scalar_const(b, ctx.prec, 0.0);
            let mut v = None;
            for l in 0..ctx.prec.lanes() {
                let r = b.ins().iadd_imm_s(first, l as i64);
                let inside = b.ins().icmp(IntCC::UnsignedLessThanOrEqual, r, last);
                let w = b.ins().select(inside, one, zero);
                v = Some(match v {
                    None => b.ins().scalar_to_vector(ctx.vty, w),
                    Some(v) => b.ins().insertlane(v, w, l as u8),
                });
            }
            v.expect("at least one lane")
        }
        Inst::Accum { param, value } => {
            // the lanes' sum added to the gradient entry
            let x = vals[*value].expect("operands precede their use");
            let mut s = b.ins().extractlane(x, 0);
            for l in 1..ctx.prec.lanes() {
                let e = b.ins().extractlane(x, l as u8);
                s = b.ins().fadd(s, e);
            }
            let g = ctx.grad.expect("a gradient kernel");
            let off = (*param as i64 * ctx.prec.bytes()) as i32;
            let old = b.ins().load(ctx.ty, ctx.flags, g, off);
            let new = b.ins().fadd(old, s);
            b.ins().store(ctx.flags, new, g, off);
            x
        }
        Inst::Part(..) => unreachable!("loaded from the dense product's column"),
        Inst::Input(j) => gather(b, ctx, *j),
        Inst::Param(j) => {
            let x = b.ins().load(ctx.ty, ctx.flags, ctx.params, (*j as i64 * ctx.prec.bytes()) as i32);
            b.ins().splat(ctx.vty, x)
        }
        Inst::Const(_) => unreachable!("hoisted"),
        Inst::RootFind { y, f, df, domain, increasing } => {
            // per lane: the host root-find, calling f and f′ compiled in this module
            let math = if ctx.opts.math == MathMode::Libm { MathMode::Libm } else { MathMode::Inline };
            let ptr = module.target_config().pointer_type();
            let fr = sub_ref(module, b, imports, ctx.prec, f, math)?;
            let dfr = sub_ref(module, b, imports, ctx.prec, df, math)?;
            let solve = rootfind_ref(module, b, imports, ctx.prec)?;
            let fa = b.ins().func_addr(ptr, fr);
            let dfa = b.ins().func_addr(ptr, dfr);
            let lo = b.ins().f64const(domain.lo);
            let hi = b.ins().f64const(domain.hi);
            let inc = b.ins().iconst(types::I32, *increasing as i64);
            let yv = vals[*y].expect("operands precede their use");
            let mut result = None;
            for l in 0..ctx.prec.lanes() {
                let yl = b.ins().extractlane(yv, l as u8);
                let call = b.ins().call(solve, &[fa, dfa, ctx.params, yl, lo, hi, inc]);
                let r = b.inst_results(call)[0];
                result = Some(match result {
                    None => b.ins().scalar_to_vector(ctx.vty, r),
                    Some(v) => b.ins().insertlane(v, r, l as u8),
                });
            }
            result.expect("at least one lane")
        }
        Inst::LogProd { terms, scale } => {
            // one logarithm of the mantissas' product; lanes with a term that is not a positive
            // normal number (rare) take the sum of logarithms
            let tv: Vec<(Value, i32)> = terms.iter().map(|(v, p)| (vals[*v].expect("operands precede their use"), *p)).collect();
            let (fast, ok) = super::vmath::log_product(b, &tv, *scale);
            let ok_i = b.ins().bitcast(if ctx.prec == Float::F64 { types::I64X2 } else { types::I32X4 }, MemFlagsData::new(), ok);
            let all = b.ins().vall_true(ok_i);
            let (slow_b, done) = (b.create_block(), b.create_block());
            b.append_block_param(done, ctx.vty);
            b.ins().brif(all, done, &[BlockArg::Value(fast)], slow_b, &[]);
            b.switch_to_block(slow_b);
            let mut acc: Option<Value> = None;
            for (v, p) in &tv {
                let l = vector_op(module, b, imports, ctx, &Math::Log(egg::Id::from(0usize)), &[*v])?;
                let c = scalar_const(b, ctx.prec, *p as f64 * scale);
                let c = b.ins().splat(ctx.vty, c);
                let t = b.ins().fmul(l, c);
                acc = Some(match acc {
                    None => t,
                    Some(a) => b.ins().fadd(a, t),
                });
            }
            let slow = acc.expect("at least one term");
            let v = b.ins().bitselect(ok, fast, slow);
            b.ins().jump(done, &[BlockArg::Value(v)]);
            b.switch_to_block(done);
            b.block_params(done)[0]
        }
        Inst::LogAbsDet { n, entries } => {
            // per lane: the matrix into a stack slot, then the host's elimination
            let ptr = module.target_config().pointer_type();
            let (sym, ty) = if ctx.prec == Float::F64 { (host::LOG_ABS_DET_F64, types::F64) } else { (host::LOG_ABS_DET_F32, types::F32) };
            let f = import(module, b, imports, sym, &[ptr, types::I64], ty)?;
            let ev: Vec<Value> = entries.iter().map(|r| vals[*r].expect("operands precede their use")).collect();
            let nv = b.ins().iconst(types::I64, *n as i64);
            per_lane_through_slot(module, b, ctx, &ev, |b, addr, _| {
                let call = b.ins().call(f, &[addr, nv]);
                b.inst_results(call)[0]
            })
        }
        Inst::Detach(a) => vals[*a].expect("operands precede their use"),
        Inst::Spline { x, raw, bins, bound, inverse, log_det } => {
            // per lane: the spline's values into a stack slot, then the host spline
            let f = spline_ref(module, b, imports, ctx.prec)?;
            let xv = vals[*x].expect("operands precede their use");
            let rv: Vec<Value> = raw.iter().map(|r| vals[*r].expect("operands precede their use")).collect();
            let nb = b.ins().iconst(types::I64, *bins as i64);
            let bd = b.ins().f64const(*bound);
            let mode = b.ins().iconst(types::I32, (*inverse as i64) | ((*log_det as i64) << 1));
            per_lane_through_slot(module, b, ctx, &rv, |b, addr, l| {
                let xl = b.ins().extractlane(xv, l);
                let call = b.ins().call(f, &[xl, addr, nb, bd, mode]);
                b.inst_results(call)[0]
            })
        }
        Inst::Op(Math::IfPos(_), args) if deferred.iter().any(|d| d.map(|(p, _)| p == i).unwrap_or(false)) => {
            // then-branch if any lane is positive, else-branch unless all are; then a select
            let mask = positive_mask(b, ctx, vals[args[0]].expect("condition first"));
            let any = b.ins().vany_true(mask);
            let all = b.ins().vall_true(mask);
            let z = scalar_const(b, ctx.prec, 0.0);
            let zero = b.ins().splat(ctx.vty, z);
            let (then_b, then_done, else_b, else_done) = (b.create_block(), b.create_block(), b.create_block(), b.create_block());
            b.append_block_param(then_done, ctx.vty);
            b.append_block_param(else_done, ctx.vty);
            b.ins().brif(any, then_b, &[], then_done, &[BlockArg::Value(zero)]);
            let mut branch = |b: &mut FunctionBuilder, blk, side: bool, root: usize, done, vals: &mut Vec<Option<Value>>| {
                b.switch_to_block(blk);
                // a branch's values are local to it
                let saved = vals.clone();
                for j in 0..i {
                    if deferred[j] == Some((i, side)) {
                        emit_inst(module, b, imports, ctx, k, j, deferred, vals)?;
                    }
                }
                if let Some(t) = &ctx.tile {
                    ensure(b, ctx, t, k, root, vals);
                }
                let r = vals[root].expect("branch result");
                b.ins().jump(done, &[BlockArg::Value(r)]);
                *vals = saved;
                Ok::<(), Unsupported>(())
            };
            branch(b, then_b, true, args[1], then_done, vals)?;
            b.switch_to_block(then_done);
            let tv = b.block_params(then_done)[0];
            b.ins().brif(all, else_done, &[BlockArg::Value(zero)], else_b, &[]);
            branch(b, else_b, false, args[2], else_done, vals)?;
            b.switch_to_block(else_done);
            let ev = b.block_params(else_done)[0];
            b.ins().bitselect(mask, tv, ev)
        }
        Inst::Op(op, args) => {
            let a: Vec<Value> = args
                .iter()
                .map(|v| vals[*v].unwrap_or_else(|| panic!("v{i} = {op} reads v{v} ({:?}) before it is defined", k.body.insts[*v])))
                .collect();
            vector_op(module, b, imports, ctx, op, &a)?
        }
    };
    vals[i] = Some(v);
    Ok(())
}

/// A host function called lane by lane on a stack slot: for each lane, `values`' entries of
/// that lane stored in order into the slot, then `call(builder, slot address, lane)` gives the
/// lane's result; the results as one vector.
fn per_lane_through_slot<M: Module>(
    module: &M,
    b: &mut FunctionBuilder,
    ctx: &RowCtx,
    values: &[Value],
    mut call: impl FnMut(&mut FunctionBuilder, Value, u8) -> Value,
) -> Value {
    let bytes = ctx.prec.bytes() as u32;
    let slot = b.create_sized_stack_slot(StackSlotData::new(
        StackSlotKind::ExplicitSlot,
        values.len() as u32 * bytes,
        bytes.trailing_zeros() as u8,
    ));
    let addr = b.ins().stack_addr(module.target_config().pointer_type(), slot, 0);
    let mut result = None;
    for l in 0..ctx.prec.lanes() as u8 {
        for (j, v) in values.iter().enumerate() {
            let e = b.ins().extractlane(*v, l);
            b.ins().store(ctx.flags, e, addr, (j as u32 * bytes) as i32);
        }
        let r = call(b, addr, l);
        result = Some(match result {
            None => b.ins().scalar_to_vector(ctx.vty, r),
            Some(v) => b.ins().insertlane(v, r, l),
        });
    }
    result.expect("at least one lane")
}

/// The input and output row addresses of each lane: lane l holds row min(first + l, last).
#[allow(clippy::too_many_arguments)]
fn lane_rows(
    b: &mut FunctionBuilder,
    k: &Kernel,
    prec: Float,
    first: Value,
    last: Value,
    rows: Value,
    out: Value,
) -> (Vec<Value>, Vec<Value>) {
    let mut in_rows = Vec::with_capacity(prec.lanes());
    let mut out_rows = Vec::with_capacity(prec.lanes());
    for l in 0..prec.lanes() {
        let r = b.ins().iadd_imm_s(first, l as i64);
        let r = b.ins().umin(r, last);
        let in_stride = b.ins().imul_imm_s(r, k.dim as i64 * prec.bytes());
        in_rows.push(b.ins().iadd(rows, in_stride));
        let out_stride = b.ins().imul_imm_s(r, k.outputs.len() as i64 * prec.bytes());
        out_rows.push(b.ins().iadd(out, out_stride));
    }
    (in_rows, out_rows)
}

/// Coordinate `j` of each lane's input row, as one vector.
fn gather(b: &mut FunctionBuilder, ctx: &RowCtx, j: usize) -> Value {
    let mut v = None;
    for (l, row) in ctx.in_rows.iter().enumerate() {
        let x = b.ins().load(ctx.ty, ctx.flags, *row, (j as i64 * ctx.prec.bytes()) as i32);
        v = Some(match v {
            None => b.ins().scalar_to_vector(ctx.vty, x),
            Some(v) => b.ins().insertlane(v, x, l as u8),
        });
    }
    v.expect("at least one lane")
}

/// Makes value `a` available in the current segment: an input row value is gathered again,
/// anything else computed earlier is loaded from its scratch column.
fn ensure(b: &mut FunctionBuilder, ctx: &RowCtx, t: &TileCtx, k: &Kernel, a: usize, vals: &mut [Option<Value>]) {
    if vals[a].is_some() {
        return;
    }
    vals[a] = Some(match &k.body.insts[a] {
        Inst::Input(j) => gather(b, ctx, *j),
        _ => {
            let col = t.home[a].unwrap_or_else(|| panic!("value v{a} has no scratch column"));
            let addr = t.addr(b, col, ctx.prec);
            b.ins().load(ctx.vty, ctx.flags, addr, 0)
        }
    });
}

/// The body of a kernel with dense layers: for each tile of [`TILE`] rows, each segment (the
/// instructions between two dense layers) runs as a vectorized loop over the tile's rows, and
/// each dense layer as one matrix product over the tile (a host GEMM). Values that cross a
/// segment live in scratch columns; dense inputs are stored into their product's input block.
#[allow(clippy::too_many_arguments)]
fn tiled<M: Module>(
    module: &mut M,
    b: &mut FunctionBuilder,
    imports: &mut Imports,
    k: &Kernel,
    prec: Float,
    opts: Options,
    io: TileIo,
    in_loop: &[bool],
    entry_vals: Vec<Option<Value>>,
) -> Result<(), Unsupported> {
    let count = k.body.insts.len();
    let lanes = prec.lanes();
    let flags = MemFlagsData::trusted();
    let ptr = module.target_config().pointer_type();
    // segments: a matrix instruction (dense layer, its transpose or its weight gradient)
    // ends one
    let mut seg = vec![0usize; count];
    let mut denses: Vec<usize> = Vec::new();
    for (i, inst) in k.body.insts.iter().enumerate() {
        seg[i] = denses.len();
        if matrix_operands(inst).is_some() {
            denses.push(i);
        }
    }
    let segments = denses.len() + 1;
    let outside: Vec<bool> = in_loop.iter().map(|l| !l).collect();
    let deferred = branch_sets(k, &outside);
    // where an instruction is emitted: its segment, or its ifpos's segment when deferred
    let emit_seg: Vec<usize> = (0..count).map(|i| deferred[i].map(|(p, _)| seg[p]).unwrap_or(seg[i])).collect();
    // dense layers whose bias and activation the host applies to the product (512-bit path)
    let users = users_of(k);
    let mut fused: Vec<Option<Epilogue>> = denses.iter().map(|&d| if tile::wide() { epilogue(k, &users, d) } else { None }).collect();
    // backward products whose activation derivative the host applies, at the fused layer's
    // activations
    for di in 0..denses.len() {
        if fused[di].is_none() && tile::wide() {
            fused[di] = backward_epilogue(k, &users, denses[di], &fused);
        }
    }
    let mut host_defined = vec![false; count];
    let mut not_emitted = vec![false; count];
    for e in fused.iter().flatten() {
        e.values.iter().for_each(|v| host_defined[*v] = true);
        e.skipped.iter().for_each(|v| not_emitted[*v] = true);
    }
    // scratch columns: each matrix instruction's operand groups (or the result block of a
    // fused layer whose values they are, in order) and its result block, then values used in
    // a later segment than the one that computes them
    let mut cols = 0usize;
    let mut home: Vec<Option<usize>> = vec![None; count];
    let mut blocks: Vec<(Vec<usize>, usize)> = Vec::new(); // (operand group bases, result block)
    let mut stores: Vec<Vec<usize>> = vec![Vec::new(); count];
    // operands that must be copied into their group at the end of the segment before
    let mut copies: Vec<Vec<(usize, usize)>> = vec![Vec::new(); denses.len()];
    let mut groups_seen: Vec<(Vec<usize>, usize)> = Vec::new();
    // a sequential MADE layer: its groups' products write one block of all its units (column
    // = weight row), which the next layer's products read whole
    let shared = shared_layers(k, &denses, &fused);
    let mut shared_base: Vec<Option<usize>> = vec![None; shared.len()];
    let mut col_step = vec![1usize; denses.len()];
    for (di, &d) in denses.iter().enumerate() {
        let (_, results) = matrix_operands(&k.body.insts[d]).expect("a matrix instruction");
        let mut bases = Vec::new();
        for group in operand_groups(&k.body.insts[d]) {
            if let Some(si) = shared.iter().position(|sh| sh.reads_whole(k, d, &group)) {
                if let Some(base) = shared_base[si] {
                    bases.push(base);
                    continue;
                }
            }
            let alias = fused.iter().enumerate().take(di).find(|(_, e)| e.as_ref().map(|e| e.values == group).unwrap_or(false));
            if let Some((src, _)) = alias {
                bases.push(blocks[src].1);
                continue;
            }
            // the same operands as an earlier product's group (a layer's output adjoints feed
            // its weight gradient and its transpose): that block
            if let Some(base) = groups_seen.iter().find(|(g, _)| *g == group).map(|(_, b)| *b) {
                bases.push(base);
                continue;
            }
            groups_seen.push((group.clone(), cols));
            let ib = cols;
            cols += group.len();
            for (j, a) in group.iter().enumerate() {
                if host_defined[*a] || !in_loop[*a] || matches!(k.body.insts[*a], Inst::Part(..)) {
                    copies[di].push((*a, ib + j));
                } else {
                    stores[*a].push(ib + j);
                    home[*a].get_or_insert(ib + j);
                }
            }
            bases.push(ib);
        }
        let ob = match shared.iter().position(|sh| sh.members.contains(&di)) {
            Some(si) => {
                let base = *shared_base[si].get_or_insert_with(|| {
                    cols += shared[si].width;
                    cols - shared[si].width
                });
                let Inst::Dense { rows, .. } = &k.body.insts[d] else { unreachable!("a layer's group") };
                col_step[di] = rows.step;
                base + rows.first
            }
            None => {
                cols += results;
                cols - results
            }
        };
        blocks.push((bases, ob));
    }
    for (i, inst) in k.body.insts.iter().enumerate() {
        if let Inst::Part(d, j) = inst {
            let di = denses.iter().position(|x| x == d).expect("a dense layer");
            home[i] = Some(blocks[di].1 + j * col_step[di]);
        }
    }
    for (di, e) in fused.iter().enumerate() {
        if let Some(e) = e {
            for (o, v) in e.values.iter().enumerate() {
                home[*v] = Some(blocks[di].1 + o * col_step[di]);
            }
        }
    }
    // what the row loops must compute: outputs, effects, products' operands, and their
    // operands (not those of values the host computes)
    let mut live = vec![false; count];
    for o in &k.outputs {
        live[*o] = true;
    }
    for i in (0..count).rev() {
        let inst = &k.body.insts[i];
        if matches!(inst, Inst::Accum { .. }) || matrix_operands(inst).is_some() {
            live[i] = true;
        }
        if live[i] && !not_emitted[i] {
            for a in inst.args() {
                live[a] = true;
            }
        }
    }
    let mut later_use = vec![false; count];
    for (i, inst) in k.body.insts.iter().enumerate() {
        if !in_loop[i] || !live[i] || not_emitted[i] || matrix_operands(inst).is_some() {
            continue;
        }
        for a in args_of(inst) {
            if in_loop[a] && emit_seg[a] < emit_seg[i] {
                later_use[a] = true;
            }
        }
    }
    for o in &k.outputs {
        if in_loop[*o] && emit_seg[*o] < segments - 1 {
            later_use[*o] = true;
        }
    }
    for i in 0..count {
        let rematerialized = matches!(k.body.insts[i], Inst::Input(_) | Inst::Part(..));
        if later_use[i] && home[i].is_none() && !rematerialized {
            home[i] = Some(cols);
            stores[i].push(cols);
            cols += 1;
        }
    }
    // scratch: one block per thread, reused (host), and the matrix products
    let mut s = module.make_signature();
    s.params.push(AbiParam::new(types::I64));
    s.returns.push(AbiParam::new(ptr));
    let fid = module.declare_function(host::SCRATCH, Linkage::Import, &s).map_err(|e| Unsupported(e.to_string()))?;
    let scratch_fn = module.declare_func_in_func(fid, b.func);
    let mut s = module.make_signature();
    for t in [types::I64, ptr, types::I64, ptr, types::I64, ptr, types::I64, types::I64, types::I64] {
        s.params.push(AbiParam::new(t));
    }
    let mut product = |name: &str| -> Result<FuncRef, Unsupported> {
        let fid = module.declare_function(name, Linkage::Import, &s).map_err(|e| Unsupported(e.to_string()))?;
        Ok(module.declare_func_in_func(fid, b.func))
    };
    let f64p = prec == Float::F64;
    let dense_fn = product(if f64p { host::DENSE_F64 } else { host::DENSE_F32 })?;
    let dense_t_fn = product(if f64p { host::DENSE_T_F64 } else { host::DENSE_T_F32 })?;
    let mut s = module.make_signature();
    for t in [types::I64, ptr, types::I64, ptr, types::I64, ptr, types::I64, types::I64, types::I64, ptr, types::I64, types::I64] {
        s.params.push(AbiParam::new(t));
    }
    let fid = module
        .declare_function(if f64p { host::DENSE_ACC_F64 } else { host::DENSE_ACC_F32 }, Linkage::Import, &s)
        .map_err(|e| Unsupported(e.to_string()))?;
    let dense_acc_fn = module.declare_func_in_func(fid, b.func);
    let mut s = module.make_signature();
    for t in [types::I64, ptr, types::I64, ptr, types::I64, types::I64, types::I64] {
        s.params.push(AbiParam::new(t));
    }
    let fid = module
        .declare_function(if f64p { host::BIAS_ACT_F64 } else { host::BIAS_ACT_F32 }, Linkage::Import, &s)
        .map_err(|e| Unsupported(e.to_string()))?;
    let epilogue_fn = module.declare_func_in_func(fid, b.func);
    let mut s = module.make_signature();
    for t in [types::I64, ptr, types::I64, ptr, types::I64] {
        s.params.push(AbiParam::new(t));
    }
    let fid = module
        .declare_function(if f64p { host::ACT_GRAD_F64 } else { host::ACT_GRAD_F32 }, Linkage::Import, &s)
        .map_err(|e| Unsupported(e.to_string()))?;
    let act_grad_fn = module.declare_func_in_func(fid, b.func);
    // MADE weights read by products: one masked copy per weight and call, after the columns
    // masked or row-selected weights read by products: one packed copy per weight (and rows)
    // and call, after the columns
    let mut masked_at: Vec<Option<usize>> = vec![None; denses.len()];
    let mut masked_of: Vec<(usize, usize, usize, usize, Option<MadeMask>, Rows)> = Vec::new(); // (weight, at, rows, cols, mask, rows)
    let mut words = cols * TILE;
    for (di, &d) in denses.iter().enumerate() {
        let (weight, n_rows, wcols, mask, sel) = match &k.body.insts[d] {
            Inst::Dense { inputs, weight, outputs, mask, rows } => (*weight, *outputs, inputs.len(), *mask, *rows),
            Inst::DenseT { grads, weight, inputs, mask, rows } => (*weight, grads.len(), *inputs, *mask, *rows),
            _ => continue,
        };
        if mask.is_none() && sel == Rows::ALL {
            continue;
        }
        if let Some(c) = masked_of.iter().find(|c| c.0 == weight && c.5 == sel && c.2 == n_rows) {
            masked_at[di] = Some(c.1);
            continue;
        }
        masked_at[di] = Some(words);
        masked_of.push((weight, words, n_rows, wcols, mask, sel));
        words += n_rows * wcols;
    }
    let bytes = b.ins().iconst(types::I64, words.max(1) as i64 * prec.bytes());
    let call = b.ins().call(scratch_fn, &[bytes]);
    let scratch = b.inst_results(call)[0];
    let mut s = module.make_signature();
    for t in [ptr, types::I64, types::I64, ptr, types::I64, types::I64, types::I64, types::I64, types::I64] {
        s.params.push(AbiParam::new(t));
    }
    let mask_name = if prec == Float::F64 { host::MASK_F64 } else { host::MASK_F32 };
    let fid = module.declare_function(mask_name, Linkage::Import, &s).map_err(|e| Unsupported(e.to_string()))?;
    let mask_fn = module.declare_func_in_func(fid, b.func);
    for (weight, at, n_rows, wcols, m, sel) in &masked_of {
        let w = b.ins().iadd_imm_s(io.params, *weight as i64 * prec.bytes());
        let dst = b.ins().iadd_imm_s(scratch, *at as i64 * prec.bytes());
        let (layer, layers, dim) = m.map(|m| (m.layer as i64, m.layers as i64, m.dim as i64)).unwrap_or((-1, 0, 0));
        let args = [
            w,
            b.ins().iconst(types::I64, *n_rows as i64),
            b.ins().iconst(types::I64, *wcols as i64),
            dst,
            b.ins().iconst(types::I64, layer),
            b.ins().iconst(types::I64, layers),
            b.ins().iconst(types::I64, dim),
            b.ins().iconst(types::I64, sel.first as i64),
            b.ins().iconst(types::I64, sel.step as i64),
        ];
        b.ins().call(mask_fn, &args);
    }
    let last = b.ins().iadd_imm_s(io.n, -1);

    // tile loop
    let (t_head, t_body, t_exit) = (b.create_block(), b.create_block(), b.create_block());
    b.append_block_param(t_head, types::I64);
    let zero = b.ins().iconst(types::I64, 0);
    b.ins().jump(t_head, &[BlockArg::Value(zero)]);
    b.switch_to_block(t_head);
    let t0 = b.block_params(t_head)[0];
    let more = b.ins().icmp(IntCC::UnsignedLessThan, t0, io.n);
    b.ins().brif(more, t_body, &[], t_exit, &[]);
    b.switch_to_block(t_body);
    // shared layer blocks start at zero in every tile (their columns not yet computed are read
    // against masked, zero weights: they must be finite)
    if shared_base.iter().any(|x| x.is_some()) {
        let mut zs = module.make_signature();
        zs.params.push(AbiParam::new(ptr));
        zs.params.push(AbiParam::new(types::I64));
        let fid = module.declare_function(host::ZERO, Linkage::Import, &zs).map_err(|e| Unsupported(e.to_string()))?;
        let zero_fn = module.declare_func_in_func(fid, b.func);
        for (si, base) in shared_base.iter().enumerate() {
            if let Some(base) = base {
                let p = b.ins().iadd_imm_s(scratch, (base * TILE) as i64 * prec.bytes());
                let n = b.ins().iconst(types::I64, (shared[si].width * TILE) as i64 * prec.bytes());
                b.ins().call(zero_fn, &[p, n]);
            }
        }
    }
    for sg in 0..segments {
        // the rows of the tile, `lanes` at a time
        let (r_head, r_body, r_exit) = (b.create_block(), b.create_block(), b.create_block());
        b.append_block_param(r_head, types::I64);
        let z = b.ins().iconst(types::I64, 0);
        b.ins().jump(r_head, &[BlockArg::Value(z)]);
        b.switch_to_block(r_head);
        let r = b.block_params(r_head)[0];
        let more = b.ins().icmp_imm_s(IntCC::UnsignedLessThan, r, TILE as i64);
        b.ins().brif(more, r_body, &[], r_exit, &[]);
        b.switch_to_block(r_body);
        let row0 = b.ins().iadd(t0, r);
        let (in_rows, out_rows) = lane_rows(b, k, prec, row0, last, io.rows, io.out);
        let ctx = RowCtx {
            ty: prec.ty(),
            vty: prec.vector(),
            prec,
            opts,
            flags,
            in_rows,
            params: io.params,
            tile: Some(TileCtx { scratch, r, home: home.clone() }),
            rows: Some((row0, last)),
            grad: io.grad,
        };
        let mut vals = entry_vals.clone();
        for i in 0..count {
            if !in_loop[i]
                || !live[i]
                || deferred[i].is_some()
                || seg[i] != sg
                || not_emitted[i]
                || matches!(k.body.insts[i], Inst::Part(..))
                || matrix_operands(&k.body.insts[i]).is_some()
            {
                continue;
            }
            emit_inst(module, b, imports, &ctx, k, i, &deferred, &mut vals)?;
            let t = ctx.tile.as_ref().expect("tiled");
            for &c in &stores[i] {
                let addr = t.addr(b, c, prec);
                b.ins().store(flags, vals[i].expect("just computed"), addr, 0);
            }
        }
        // operands of the next matrix instruction not stored where computed: loop-invariant
        // ones (constants, parameters), products' parts and values the host computed
        if sg < denses.len() {
            let t = ctx.tile.as_ref().expect("tiled");
            for &(a, col) in &copies[sg] {
                let v = if !in_loop[a] {
                    entry_vals[a].expect("splatted")
                } else {
                    ensure(b, &ctx, t, k, a, &mut vals);
                    vals[a].expect("loaded")
                };
                let addr = t.addr(b, col, prec);
                b.ins().store(flags, v, addr, 0);
            }
        }
        if sg == segments - 1 {
            let t = ctx.tile.as_ref().expect("tiled");
            for (j, o) in k.outputs.iter().enumerate() {
                ensure(b, &ctx, t, k, *o, &mut vals);
                let v = vals[*o].expect("output defined");
                for (l, orow) in out_rows.iter().enumerate() {
                    let x = b.ins().extractlane(v, l as u8);
                    b.ins().store(flags, x, *orow, (j as i64 * prec.bytes()) as i32);
                }
            }
        }
        let next = b.ins().iadd_imm_s(r, lanes as i64);
        b.ins().jump(r_head, &[BlockArg::Value(next)]);
        b.switch_to_block(r_exit);
        // the matrix instruction after this segment, over the whole tile
        if sg < denses.len() {
            let (bases, ob) = (&blocks[sg].0, blocks[sg].1);
            let col = |b: &mut FunctionBuilder, c: usize| b.ins().iadd_imm_s(scratch, (c * TILE) as i64 * prec.bytes());
            let weight_at = |b: &mut FunctionBuilder, weight: usize| match masked_at[sg] {
                Some(at) => b.ins().iadd_imm_s(scratch, at as i64 * prec.bytes()),
                None => b.ins().iadd_imm_s(io.params, weight as i64 * prec.bytes()),
            };
            let no_mask = (-1i64, 0i64, 0i64);
            // (function, A, k, W, n, C, mask, bias) in each product's argument order
            let (f, a, kk, w, nn, c, (ml, mls, md), bias) = match &k.body.insts[denses[sg]] {
                Inst::Dense { inputs, weight, outputs, .. } => {
                    // the 7th argument: the result's column stride, in values
                    let c_cs = (col_step[sg] * TILE) as i64;
                    (dense_fn, col(b, bases[0]), inputs.len(), weight_at(b, *weight), *outputs, col(b, ob), (c_cs, 0, 0), None)
                }
                Inst::DenseT { grads, weight, inputs, .. } => {
                    (dense_t_fn, col(b, bases[0]), grads.len(), weight_at(b, *weight), *inputs, col(b, ob), no_mask, None)
                }
                Inst::AccumDense { grads, inputs, weight, mask, rows, bias } => {
                    let g = io.grad.expect("a gradient kernel");
                    let gw = b.ins().iadd_imm_s(g, *weight as i64 * prec.bytes());
                    // the bias gradient's address, or null
                    let gb = match bias {
                        Some(o) => b.ins().iadd_imm_s(g, *o as i64 * prec.bytes()),
                        None => b.ins().iconst(ptr, 0),
                    };
                    let m = mask.map(|m| (m.layer as i64, m.layers as i64, m.dim as i64)).unwrap_or(no_mask);
                    let first = b.ins().iconst(types::I64, rows.first as i64);
                    let step = b.ins().iconst(types::I64, rows.step as i64);
                    (dense_acc_fn, col(b, bases[0]), grads.len(), col(b, bases[1]), inputs.len(), gw, m, Some([gb, first, step]))
                }
                _ => unreachable!("a matrix instruction"),
            };
            let mut args = vec![
                b.ins().iconst(types::I64, TILE as i64),
                a,
                b.ins().iconst(types::I64, kk as i64),
                w,
                b.ins().iconst(types::I64, nn as i64),
                c,
                b.ins().iconst(types::I64, ml),
                b.ins().iconst(types::I64, mls),
                b.ins().iconst(types::I64, md),
            ];
            args.extend(bias.into_iter().flatten());
            b.ins().call(f, &args);
            // a fused layer's bias and activation, over its result block
            if let Some(Epilogue { values, from: Some(h), .. }) = &fused[sg] {
                let args = [
                    b.ins().iconst(types::I64, TILE as i64),
                    col(b, ob),
                    b.ins().iconst(types::I64, values.len() as i64),
                    col(b, blocks[*h].1),
                    b.ins().iconst(types::I64, tile::Act::Tanh as i64),
                ];
                b.ins().call(act_grad_fn, &args);
            } else if let Some(e) = &fused[sg] {
                let n = e.values.len();
                let bias = match e.bias {
                    Some(o) => b.ins().iadd_imm_s(io.params, o as i64 * prec.bytes()),
                    None => b.ins().iconst(ptr, 0),
                };
                let act = e.act as i64;
                let args = [
                    b.ins().iconst(types::I64, TILE as i64),
                    col(b, ob),
                    b.ins().iconst(types::I64, n as i64),
                    bias,
                    b.ins().iconst(types::I64, act),
                    b.ins().iconst(types::I64, (col_step[sg] * TILE) as i64),
                    b.ins().iconst(types::I64, e.step as i64),
                ];
                b.ins().call(epilogue_fn, &args);
            }
        }
    }
    let next = b.ins().iadd_imm_s(t0, TILE as i64);
    b.ins().jump(t_head, &[BlockArg::Value(next)]);
    b.switch_to_block(t_exit);
    b.ins().return_(&[]);
    Ok(())
}

/// A dense layer whose bias (and activation) the host applies to its product: the output
/// columns then hold `values` (per output: the add, or the activation of it), and the
/// instructions `skipped` are not compiled.
struct Epilogue {
    bias: Option<usize>,
    /// Entries between consecutive outputs' biases (a product on evenly spaced rows).
    step: usize,
    act: tile::Act,
    values: Vec<usize>,
    skipped: Vec<usize>,
    /// A backward product's: the product whose result block holds the tanh activations
    /// (each column is multiplied by 1 − h²).
    from: Option<usize>,
}

/// The epilogue of backward product `d` (Wᵀ·grads): every output j read once, by
/// `part · (1 − h_j²)` with h_j output j of a fused tanh layer (so the product times the
/// derivative is the adjoint before that activation).
fn backward_epilogue(k: &Kernel, users: &[Vec<usize>], d: usize, fused: &[Option<Epilogue>]) -> Option<Epilogue> {
    let Inst::DenseT { inputs, .. } = &k.body.insts[d] else { return None };
    let parts = parts_of(k, users, d, *inputs);
    let op = |v: usize| match &k.body.insts[v] {
        Inst::Op(m, a) => Some((m.clone(), a.clone())),
        _ => None,
    };
    let mut values = Vec::with_capacity(*inputs);
    let mut hs = Vec::with_capacity(*inputs);
    for p in parts {
        let p = p?;
        let [u] = users[p][..] else { return None };
        let (Math::Mul(_), a) = op(u)? else { return None };
        let s = if a[0] == p { a[1] } else { a[0] };
        let (Math::Sub(_), b) = op(s)? else { return None };
        if !matches!(k.body.insts[b[0]], Inst::Const(c) if c == 1.0) {
            return None;
        }
        let (Math::Mul(_), c) = op(b[1])? else { return None };
        if c[0] != c[1] || k.outputs.contains(&u) {
            return None;
        }
        values.push(u);
        hs.push(c[0]);
    }
    let from =
        fused.iter().position(|e| e.as_ref().map(|e| e.act == tile::Act::Tanh && e.from.is_none() && e.values == hs).unwrap_or(false))?;
    Some(Epilogue { bias: None, step: 1, act: tile::Act::Identity, skipped: values.clone(), values, from: Some(from) })
}

/// The epilogue of dense layer `d`: every output read once, by `part + param(b + o)`, and
/// then (all of them) by the same activation (tanh or relu) alone.
fn epilogue(k: &Kernel, users: &[Vec<usize>], d: usize) -> Option<Epilogue> {
    let Inst::Dense { outputs, rows, .. } = &k.body.insts[d] else { return None };
    let step = rows.step;
    let output = |v: usize| k.outputs.contains(&v);
    let parts = parts_of(k, users, d, *outputs);
    let mut adds = Vec::with_capacity(*outputs);
    let mut bias = None;
    for (o, p) in parts.iter().enumerate() {
        let p = (*p)?;
        let [add] = users[p][..] else { return None };
        let Inst::Op(Math::Add(_), args) = &k.body.insts[add] else { return None };
        let q = if args[0] == p { args[1] } else { args[0] };
        let Inst::Param(j) = k.body.insts[q] else { return None };
        let b0 = *bias.get_or_insert(j - (o * step).min(j));
        if j != b0 + o * step || output(p) || output(add) {
            return None;
        }
        adds.push(add);
    }
    let mut acts = Vec::with_capacity(*outputs);
    let mut kind = None;
    for &a in &adds {
        let [u] = users[a][..] else { break };
        let this = match &k.body.insts[u] {
            Inst::Op(Math::Tanh(_), _) => tile::Act::Tanh,
            Inst::Op(Math::IfPos(_), x) if x[0] == a && x[1] == a && matches!(k.body.insts[x[2]], Inst::Const(c) if c == 0.0) => {
                tile::Act::Relu
            }
            _ => break,
        };
        if *kind.get_or_insert(this) != this || output(u) {
            break;
        }
        acts.push(u);
    }
    if acts.len() == adds.len() {
        let skipped = adds.iter().chain(&acts).copied().collect();
        Some(Epilogue { bias, step, act: kind.unwrap_or(tile::Act::Identity), values: acts, skipped, from: None })
    } else {
        Some(Epilogue { bias, step, act: tile::Act::Identity, values: adds.clone(), skipped: adds, from: None })
    }
}

/// The instructions reading each value (each once, however many of its operands it is).
fn users_of(k: &Kernel) -> Vec<Vec<usize>> {
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); k.body.insts.len()];
    for (i, inst) in k.body.insts.iter().enumerate() {
        for a in inst.args() {
            if users[a].last() != Some(&i) {
                users[a].push(i);
            }
        }
    }
    users
}

/// The products of one sequential MADE layer, its units in groups of evenly spaced rows:
/// together they fill a block of `width` columns (one per weight row).
struct SharedLayer {
    members: Vec<usize>,
    width: usize,
    /// The value of each column (the fused activation of that unit).
    values: Vec<usize>,
}

impl SharedLayer {
    /// Whether product `d` can read operand `group` as this whole block: each operand is the
    /// column's value, or a zero where `d`'s weight is masked for all its rows.
    fn reads_whole(&self, k: &Kernel, d: usize, group: &[usize]) -> bool {
        if group.len() != self.width {
            return false;
        }
        let (mask, rows, n) = match &k.body.insts[d] {
            Inst::Dense { mask, rows, outputs, .. } => (*mask, *rows, *outputs),
            Inst::AccumDense { mask, rows, grads, .. } => (*mask, *rows, grads.len()),
            _ => return false,
        };
        group.iter().enumerate().all(|(i, v)| {
            *v == self.values[i]
                || (matches!(k.body.insts[*v], Inst::Const(c) if c == 0.0)
                    && mask.map(|m| (0..n).all(|o| !m.connected(rows.row(o), i))).unwrap_or(false))
        })
    }
}

/// The sequential MADE layers whose row groups cover their weight's rows exactly, every group
/// with a fused epilogue.
fn shared_layers(k: &Kernel, denses: &[usize], fused: &[Option<Epilogue>]) -> Vec<SharedLayer> {
    let mut out: Vec<(usize, SharedLayer)> = Vec::new(); // (weight, layer)
    for (di, &d) in denses.iter().enumerate() {
        let Inst::Dense { weight, outputs, mask: Some(_), rows, .. } = &k.body.insts[d] else { continue };
        if *rows == Rows::ALL {
            continue;
        }
        let Some(e) = fused[di].as_ref().filter(|e| e.from.is_none()) else { continue };
        let idx = match out.iter().position(|(w, _)| w == weight) {
            Some(i) => i,
            None => {
                out.push((*weight, SharedLayer { members: Vec::new(), width: 0, values: Vec::new() }));
                out.len() - 1
            }
        };
        let sh = &mut out[idx].1;
        sh.members.push(di);
        for o in 0..*outputs {
            let r = rows.row(o);
            if sh.values.len() <= r {
                sh.values.resize(r + 1, usize::MAX);
            }
            sh.values[r] = e.values[o];
        }
        sh.width = sh.values.len();
    }
    // every row covered exactly once
    out.into_iter().map(|(_, sh)| sh).filter(|sh| sh.values.iter().all(|v| *v != usize::MAX)).collect()
}

/// The `Part` instruction reading each of the `n` results of product `d` (its readers).
fn parts_of(k: &Kernel, users: &[Vec<usize>], d: usize, n: usize) -> Vec<Option<usize>> {
    let mut parts = vec![None; n];
    for &i in &users[d] {
        if let Inst::Part(_, j) = k.body.insts[i] {
            parts[j] = Some(i);
        }
    }
    parts
}

/// A matrix instruction's operands, by the block each is read from.
fn operand_groups(inst: &Inst) -> Vec<Vec<usize>> {
    match inst {
        Inst::Dense { inputs, .. } => vec![inputs.clone()],
        Inst::DenseT { grads, .. } => vec![grads.clone()],
        Inst::AccumDense { grads, inputs, .. } => vec![grads.clone(), inputs.clone()],
        _ => Vec::new(),
    }
}

/// The operands a matrix instruction reads from its scratch block, and how many values it
/// produces (`None`: not a matrix instruction).
fn matrix_operands(inst: &Inst) -> Option<(Vec<usize>, usize)> {
    match inst {
        Inst::Dense { inputs, outputs, .. } => Some((inputs.clone(), *outputs)),
        Inst::DenseT { grads, inputs, .. } => Some((grads.clone(), *inputs)),
        Inst::AccumDense { grads, inputs, .. } => Some((grads.iter().chain(inputs).copied().collect(), 0)),
        _ => None,
    }
}

/// `Auto` decided by the number of transcendental operations the row loop computes.
pub fn resolve_math(m: MathMode, k: &Kernel, in_loop: &[bool]) -> MathMode {
    if m != MathMode::Auto {
        return m;
    }
    let n = k
        .body
        .insts
        .iter()
        .enumerate()
        .filter(|(i, inst)| in_loop[*i] && matches!(inst, Inst::Op(op, _) if super::vmath::function(op).is_some()))
        .count();
    crate::dump("clif", || format!("math: {n} transcendental operations per row"));
    // counted per loop iteration (an unrolled body holds each one that many times)
    if n * unroll_factor(k) <= AUTO_INLINE_MAX {
        MathMode::Inline
    } else {
        MathMode::Call
    }
}

/// A vector math function: takes and returns a value of type f64, f64x2, f32 or f32x4.
pub type MathFn = fn(&mut FunctionBuilder, Value) -> Value;

/// Translates `f` applied over a buffer into `module` as `name`:
/// `fn(inp: *const T, out: *mut T, n: u64)`, one value of type `ty` per step (the ULP
/// table's harness).
pub fn emit_map<M: Module>(
    module: &mut M,
    f: MathFn,
    ty: Type,
    name: &str,
    ctx: &mut cranelift_codegen::Context,
) -> Result<FuncId, Unsupported> {
    let ptr = module.target_config().pointer_type();
    let mut sig = module.make_signature();
    for p in [ptr, ptr, types::I64] {
        sig.params.push(AbiParam::new(p));
    }
    let id = module.declare_function(name, Linkage::Export, &sig).map_err(|e| Unsupported(e.to_string()))?;
    ctx.func = Function::with_name_signature(UserFuncName::user(0, id.as_u32()), sig);
    let mut fctx = FunctionBuilderContext::new();
    let mut b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
    let flags = MemFlagsData::new().with_notrap();
    let (entry, header, body, exit) = (b.create_block(), b.create_block(), b.create_block(), b.create_block());
    b.append_block_params_for_function_params(entry);
    b.append_block_param(header, types::I64);
    b.switch_to_block(entry);
    let (inp, out, n) = {
        let p = b.block_params(entry);
        (p[0], p[1], p[2])
    };
    let zero = b.ins().iconst(types::I64, 0);
    b.ins().jump(header, &[BlockArg::Value(zero)]);
    b.switch_to_block(header);
    let i = b.block_params(header)[0];
    let more = b.ins().icmp(IntCC::UnsignedLessThan, i, n);
    b.ins().brif(more, body, &[], exit, &[]);
    b.switch_to_block(body);
    let off = b.ins().imul_imm_s(i, ty.lane_type().bytes() as i64);
    let off = if ptr == types::I64 { off } else { b.ins().ireduce(ptr, off) };
    let src = b.ins().iadd(inp, off);
    let dst = b.ins().iadd(out, off);
    let x = b.ins().load(ty, flags, src, 0);
    let y = f(&mut b, x);
    b.ins().store(flags, y, dst, 0);
    let next = b.ins().iadd_imm_s(i, ty.lane_count() as i64);
    b.ins().jump(header, &[BlockArg::Value(next)]);
    b.switch_to_block(exit);
    b.ins().return_(&[]);
    b.seal_all_blocks();
    b.finalize(module.target_config());
    Ok(id)
}

/// The Cranelift IR of `f` alone, as a function `(x: ty) -> ty`, before optimization.
pub fn map_clif(f: MathFn, ty: Type) -> Function {
    let mut sig = cranelift_codegen::ir::Signature::new(cranelift_codegen::isa::CallConv::SystemV);
    sig.params.push(AbiParam::new(ty));
    sig.returns.push(AbiParam::new(ty));
    let mut func = Function::with_name_signature(UserFuncName::default(), sig);
    let mut fctx = FunctionBuilderContext::new();
    {
        let mut b = FunctionBuilder::new(&mut func, &mut fctx);
        let block = b.create_block();
        b.append_block_params_for_function_params(block);
        b.switch_to_block(block);
        let x = b.block_params(block)[0];
        let y = f(&mut b, x);
        b.ins().return_(&[y]);
        b.seal_all_blocks();
    }
    func
}

/// The number of CLIF instructions `f` emits on values of type `ty` (constants included).
pub fn map_instructions(f: MathFn, ty: Type) -> usize {
    let func = map_clif(f, ty);
    let block = func.layout.entry_block().expect("one block");
    func.layout.block_insts(block).count() - 1
}
