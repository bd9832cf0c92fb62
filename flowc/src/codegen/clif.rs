//! The Cranelift translator: one match over kernel instructions, emitting a function with
//! the kernel ABI `fn(rows: *const T, n: u64, params: *const T, out: *mut T)` that loops
//! over `n` rows (row-major, `dim` values in, the kernel's outputs out).
//!
//! Parameters and constants are materialized once before the row loop. Ops without a
//! native instruction call the host functions of [`super::host`].

use super::host;
use crate::ir::Math;
use crate::lower::{branch_sets, Inst, Kernel};
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{
    types, AbiParam, BlockArg, Endianness, FuncRef, Function, InstBuilder, MemFlagsData, Type, UserFuncName, Value,
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

/// Code generation choices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Compute transcendental functions with `codegen::vmath` (vector code) instead of
    /// calling the host's libm lane by lane.
    pub inline_math: bool,
    /// With `inline_math`: compile each function once, as a function of its own that the
    /// kernel calls, instead of inlining it at every use (smaller code, faster compiles).
    pub outline: bool,
}

/// Functions a kernel calls: host functions (imported) and out-of-line vector math (defined
/// in the same module after the kernel, see [`define_vmath`]).
#[derive(Default)]
pub struct Imports {
    host: HashMap<&'static str, FuncRef>,
    /// (op, declared function, reference in the kernel)
    pub vmath: Vec<(Math, FuncId, FuncRef)>,
}

/// Declares (once) the out-of-line vector function for `op` and returns its reference.
fn vmath_ref<M: Module>(
    module: &mut M,
    b: &mut FunctionBuilder,
    imports: &mut Imports,
    prec: Float,
    op: &Math,
) -> Result<FuncRef, Unsupported> {
    if let Some((_, _, f)) = imports.vmath.iter().find(|(o, _, _)| o == op) {
        return Ok(*f);
    }
    let mut s = module.make_signature();
    s.params.push(AbiParam::new(prec.vector()));
    s.returns.push(AbiParam::new(prec.vector()));
    let name = format!("vmath_{op}_{}", if prec == Float::F64 { "f64x2" } else { "f32x4" });
    let id = module.declare_function(&name, Linkage::Local, &s).map_err(|e| Unsupported(e.to_string()))?;
    let f = module.declare_func_in_func(id, b.func);
    imports.vmath.push((op.clone(), id, f));
    Ok(f)
}

/// Defines the out-of-line vector function `id` of `op` (declared by a kernel's [`emit`]).
pub fn define_vmath<M: Module>(
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

/// Why a kernel cannot be compiled (it can still be interpreted).
#[derive(Debug, Clone, PartialEq)]
pub struct Unsupported(pub String);

/// Translates `k` into a Cranelift function declared in `module` as `name`; host functions
/// are declared as imports. Returns the function id and the out-of-line vector functions it
/// calls (to be defined with [`define_vmath`]).
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
) -> Result<(FuncId, Vec<(Math, FuncId)>), Unsupported> {
    let ptr = module.target_config().pointer_type();
    let ty = prec.ty();
    let vty = prec.vector();
    let lanes = prec.lanes();
    let mut sig = module.make_signature();
    for p in [ptr, types::I64, ptr, ptr] {
        sig.params.push(AbiParam::new(p));
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
    let (rows, n, params, out) = {
        let p = b.block_params(entry);
        (p[0], p[1], p[2], p[3])
    };

    // hoisted (scalar): parameters, constants, and ops whose operands are all loop-invariant
    let mut hoisted: Vec<Option<Value>> = vec![None; k.body.insts.len()];
    for (i, inst) in k.body.insts.iter().enumerate() {
        match inst {
            Inst::Param(j) => hoisted[i] = Some(b.ins().load(ty, flags, params, (*j as i64 * prec.bytes()) as i32)),
            Inst::Const(c) => hoisted[i] = Some(scalar_const(&mut b, prec, *c)),
            _ => {}
        }
    }
    let mut imports = Imports::default();
    for (i, inst) in k.body.insts.iter().enumerate() {
        if let Inst::Op(op, args) = inst {
            if args.iter().all(|a| hoisted[*a].is_some()) {
                hoisted[i] =
                    Some(op_value(module, &mut b, &mut imports, prec, Options { inline_math: false, outline: false }, op, args, &hoisted)?);
            }
        }
    }
    // ... splatted once for the loop
    let mut used_in_loop = vec![false; k.body.insts.len()];
    for (i, inst) in k.body.insts.iter().enumerate() {
        if hoisted[i].is_none() {
            for a in inst.args() {
                used_in_loop[a] = true;
            }
        }
    }
    for o in &k.outputs {
        used_in_loop[*o] = true;
    }
    let mut vals: Vec<Option<Value>> = vec![None; k.body.insts.len()];
    for i in 0..k.body.insts.len() {
        if let (Some(h), true) = (hoisted[i], used_in_loop[i]) {
            vals[i] = Some(b.ins().splat(vty, h));
        }
    }
    let last = b.ins().iadd_imm_s(n, -1);
    let zero = b.ins().iconst(types::I64, 0);
    b.ins().jump(header, &[BlockArg::Value(zero)]);

    // header: i < n ?
    b.switch_to_block(header);
    let i = b.block_params(header)[0];
    let more = b.ins().icmp(IntCC::UnsignedLessThan, i, n);
    b.ins().brif(more, body, &[], exit, &[]);

    // body: `lanes` rows
    b.switch_to_block(body);
    let mut in_rows = Vec::with_capacity(lanes);
    let mut out_rows = Vec::with_capacity(lanes);
    for l in 0..lanes {
        let r = b.ins().iadd_imm_s(i, l as i64);
        let r = b.ins().umin(r, last);
        let in_stride = b.ins().imul_imm_s(r, k.dim as i64 * prec.bytes());
        in_rows.push(b.ins().iadd(rows, in_stride));
        let out_stride = b.ins().imul_imm_s(r, k.outputs.len() as i64 * prec.bytes());
        out_rows.push(b.ins().iadd(out, out_stride));
    }
    // `ifpos` computes a branch only when some lane takes it: instructions used by one
    // branch alone are emitted inside that branch
    let invariant: Vec<bool> = hoisted.iter().map(Option::is_some).collect();
    let deferred = branch_sets(k, &invariant);
    let ctx = RowCtx { ty, vty, prec, opts, flags, in_rows };
    for n_inst in 0..k.body.insts.len() {
        if hoisted[n_inst].is_none() && deferred[n_inst].is_none() {
            emit_inst(module, &mut b, &mut imports, &ctx, k, n_inst, &deferred, &mut vals)?;
        }
    }
    for (j, o) in k.outputs.iter().enumerate() {
        let v = vals[*o].expect("output defined");
        for (l, orow) in out_rows.iter().enumerate() {
            let x = b.ins().extractlane(v, l as u8);
            b.ins().store(flags, x, *orow, (j as i64 * prec.bytes()) as i32);
        }
    }
    let next = b.ins().iadd_imm_s(i, lanes as i64);
    b.ins().jump(header, &[BlockArg::Value(next)]);

    b.switch_to_block(exit);
    b.ins().return_(&[]);
    b.seal_all_blocks();
    b.finalize(module.target_config());
    Ok((id, imports.vmath.into_iter().map(|(op, id, _)| (op, id)).collect()))
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
    if let Some(f) = imports.host.get(sym) {
        return Ok((*f, arity));
    }
    let mut s = module.make_signature();
    for _ in 0..arity {
        s.params.push(AbiParam::new(prec.ty()));
    }
    s.returns.push(AbiParam::new(prec.ty()));
    let fid = module.declare_function(sym, Linkage::Import, &s).map_err(|e| Unsupported(e.to_string()))?;
    let f = module.declare_func_in_func(fid, b.func);
    imports.host.insert(sym, f);
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
        op if ctx.opts.inline_math && super::vmath::function(op).is_some() => {
            if ctx.opts.outline {
                let f = vmath_ref(module, b, imports, ctx.prec, op)?;
                let call = b.ins().call(f, &[a[0]]);
                b.inst_results(call)[0]
            } else {
                super::vmath::function(op).expect("checked")(b, a[0])
            }
        }
        other => {
            let (f, arity) = host_ref(module, b, imports, ctx.prec, other)?;
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
            result.expect("at least one lane")
        }
    })
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
        op if opts.inline_math && super::vmath::function(op).is_some() => {
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
}

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
    let v = match &k.body.insts[i] {
        Inst::Input(j) => {
            let mut v = None;
            for (l, row) in ctx.in_rows.iter().enumerate() {
                let x = b.ins().load(ctx.ty, ctx.flags, *row, (*j as i64 * ctx.prec.bytes()) as i32);
                v = Some(match v {
                    None => b.ins().scalar_to_vector(ctx.vty, x),
                    Some(v) => b.ins().insertlane(v, x, l as u8),
                });
            }
            v.expect("at least one lane")
        }
        Inst::Param(_) | Inst::Const(_) => unreachable!("hoisted"),
        Inst::RootFind { .. } => return Err(Unsupported("a numeric inverse (root-find) is not compiled yet".into())),
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
            let a: Vec<Value> = args.iter().map(|v| vals[*v].expect("operands precede their use")).collect();
            vector_op(module, b, imports, ctx, op, &a)?
        }
    };
    vals[i] = Some(v);
    Ok(())
}
