//! The Cranelift translator: one match over kernel instructions, emitting a function with
//! the kernel ABI `fn(rows: *const T, n: u64, params: *const T, out: *mut T)` that loops
//! over `n` rows (row-major, `dim` values in, the kernel's outputs out).
//!
//! Parameters and constants are materialized once before the row loop. Ops without a
//! native instruction call the host functions of [`super::host`].

use super::host;
use crate::ir::Math;
use crate::lower::{Inst, Kernel};
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{types, AbiParam, BlockArg, FuncRef, Function, InstBuilder, MemFlagsData, Type, UserFuncName, Value};
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
    /// Compute `exp` and `log` inline (`codegen::vmath`) instead of calling libm.
    pub inline_math: bool,
}

/// Why a kernel cannot be compiled (it can still be interpreted).
#[derive(Debug, Clone, PartialEq)]
pub struct Unsupported(pub String);

/// Translates `k` into a Cranelift function declared in `module` as `name`; host functions
/// are declared as imports. Returns the function id.
pub fn emit<M: Module>(
    module: &mut M,
    k: &Kernel,
    prec: Float,
    opts: Options,
    name: &str,
    ctx: &mut cranelift_codegen::Context,
) -> Result<FuncId, Unsupported> {
    let ptr = module.target_config().pointer_type();
    let ty = prec.ty();
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

    // hoisted: parameters and constants
    let mut vals: Vec<Option<Value>> = vec![None; k.body.insts.len()];
    for (i, inst) in k.body.insts.iter().enumerate() {
        match inst {
            Inst::Param(j) => vals[i] = Some(b.ins().load(ty, flags, params, (*j as i64 * prec.bytes()) as i32)),
            Inst::Const(c) => {
                vals[i] = Some(match prec {
                    Float::F64 => b.ins().f64const(*c),
                    Float::F32 => b.ins().f32const(*c as f32),
                })
            }
            _ => {}
        }
    }
    // ops whose operands are all loop-invariant are computed once, before the loop
    let mut imports: HashMap<&'static str, FuncRef> = HashMap::new();
    for (i, inst) in k.body.insts.iter().enumerate() {
        if let Inst::Op(op, args) = inst {
            if args.iter().all(|a| vals[*a].is_some()) {
                vals[i] = Some(op_value(module, &mut b, &mut imports, prec, opts, op, args, &vals)?);
            }
        }
    }
    let zero = b.ins().iconst(types::I64, 0);
    b.ins().jump(header, &[BlockArg::Value(zero)]);

    // header: i < n ?
    b.switch_to_block(header);
    let i = b.block_params(header)[0];
    let more = b.ins().icmp(IntCC::UnsignedLessThan, i, n);
    b.ins().brif(more, body, &[], exit, &[]);

    // body: one row
    b.switch_to_block(body);
    let in_stride = b.ins().imul_imm_s(i, k.dim as i64 * prec.bytes());
    let row = b.ins().iadd(rows, in_stride);
    let out_stride = b.ins().imul_imm_s(i, k.outputs.len() as i64 * prec.bytes());
    let orow = b.ins().iadd(out, out_stride);
    // `ifpos` computes only the branch it takes: instructions used by one branch alone are
    // emitted inside that branch
    let deferred = branch_sets(k, &vals);
    let ctx = RowCtx { ty, prec, opts, flags, row };
    for n_inst in 0..k.body.insts.len() {
        if vals[n_inst].is_none() && deferred[n_inst].is_none() {
            emit_inst(module, &mut b, &mut imports, &ctx, k, n_inst, &deferred, &mut vals)?;
        }
    }
    for (j, o) in k.outputs.iter().enumerate() {
        b.ins().store(flags, vals[*o].expect("output defined"), orow, (j as i64 * prec.bytes()) as i32);
    }
    let next = b.ins().iadd_imm_s(i, 1);
    b.ins().jump(header, &[BlockArg::Value(next)]);

    b.switch_to_block(exit);
    b.ins().return_(&[]);
    b.seal_all_blocks();
    b.finalize(module.target_config());
    Ok(id)
}

/// The value of one scalar op: a native instruction, a select, inline math, or a host call.
#[allow(clippy::too_many_arguments)]
fn op_value<M: Module>(
    module: &mut M,
    b: &mut FunctionBuilder,
    imports: &mut HashMap<&'static str, FuncRef>,
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
            let fref = match imports.get(sym) {
                Some(f) => *f,
                None => {
                    let mut s = module.make_signature();
                    for _ in 0..arity {
                        s.params.push(AbiParam::new(ty));
                    }
                    s.returns.push(AbiParam::new(ty));
                    let fid = module.declare_function(sym, Linkage::Import, &s).map_err(|e| Unsupported(e.to_string()))?;
                    let f = module.declare_func_in_func(fid, b.func);
                    imports.insert(sym, f);
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
    prec: Float,
    opts: Options,
    flags: MemFlagsData,
    row: Value,
}

/// For each instruction, the `ifpos` branch it belongs to exclusively: `(ifpos, then?)`.
/// Inputs, hoisted values and nested `ifpos` stay outside (computed before the branch).
fn branch_sets(k: &Kernel, hoisted: &[Option<Value>]) -> Vec<Option<(usize, bool)>> {
    let n = k.body.insts.len();
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut is_output = vec![false; n];
    for (i, inst) in k.body.insts.iter().enumerate() {
        for a in args_of(inst) {
            users[a].push(i);
        }
    }
    for o in &k.outputs {
        is_output[*o] = true;
    }
    let mut deferred: Vec<Option<(usize, bool)>> = vec![None; n];
    for (p, inst) in k.body.insts.iter().enumerate() {
        let Inst::Op(Math::IfPos(_), args) = inst else { continue };
        for (side, root) in [(true, args[1]), (false, args[2])] {
            let movable = |j: usize| {
                hoisted[j].is_none()
                    && !is_output[j]
                    && !matches!(k.body.insts[j], Inst::Input(_) | Inst::Op(Math::IfPos(_), _) | Inst::RootFind { .. })
            };
            if !movable(root) || users[root].iter().any(|u| *u != p) || deferred[root].is_some() || args[0] == root {
                continue;
            }
            let mut member = vec![false; n];
            member[root] = true;
            for j in (0..root).rev() {
                if movable(j) && deferred[j].is_none() && !users[j].is_empty() && users[j].iter().all(|u| member[*u]) {
                    member[j] = true;
                }
            }
            for (j, m) in member.iter().enumerate() {
                if *m {
                    deferred[j] = Some((p, side));
                }
            }
        }
    }
    deferred
}

fn args_of(inst: &Inst) -> Vec<usize> {
    match inst {
        Inst::Op(_, args) => args.clone(),
        Inst::RootFind { y, .. } => vec![*y],
        _ => vec![],
    }
}

/// Emits instruction `i` (and, for `ifpos`, the branch it takes).
#[allow(clippy::too_many_arguments)]
fn emit_inst<M: Module>(
    module: &mut M,
    b: &mut FunctionBuilder,
    imports: &mut HashMap<&'static str, FuncRef>,
    ctx: &RowCtx,
    k: &Kernel,
    i: usize,
    deferred: &[Option<(usize, bool)>],
    vals: &mut Vec<Option<Value>>,
) -> Result<(), Unsupported> {
    let v = match &k.body.insts[i] {
        Inst::Input(j) => b.ins().load(ctx.ty, ctx.flags, ctx.row, (*j as i64 * ctx.prec.bytes()) as i32),
        Inst::Param(_) | Inst::Const(_) => unreachable!("hoisted"),
        Inst::RootFind { .. } => return Err(Unsupported("a numeric inverse (root-find) is not compiled yet".into())),
        Inst::Op(Math::IfPos(_), args) if deferred.iter().any(|d| d.map(|(p, _)| p == i).unwrap_or(false)) => {
            let zero = match ctx.prec {
                Float::F64 => b.ins().f64const(0.0),
                Float::F32 => b.ins().f32const(0.0),
            };
            let cond = b.ins().fcmp(FloatCC::GreaterThan, vals[args[0]].expect("condition first"), zero);
            let (then_b, else_b, merge) = (b.create_block(), b.create_block(), b.create_block());
            b.append_block_param(merge, ctx.ty);
            b.ins().brif(cond, then_b, &[], else_b, &[]);
            for (blk, side, root) in [(then_b, true, args[1]), (else_b, false, args[2])] {
                b.switch_to_block(blk);
                // a branch's values are local to it
                let saved = vals.clone();
                for j in 0..i {
                    if deferred[j] == Some((i, side)) {
                        emit_inst(module, b, imports, ctx, k, j, deferred, vals)?;
                    }
                }
                let r = vals[root].expect("branch result");
                b.ins().jump(merge, &[BlockArg::Value(r)]);
                *vals = saved;
            }
            b.switch_to_block(merge);
            b.block_params(merge)[0]
        }
        Inst::Op(op, args) => op_value(module, b, imports, ctx.prec, ctx.opts, op, args, vals)?,
    };
    vals[i] = Some(v);
    Ok(())
}
