//! The AVX-512 translator: kernels whose work per row is plain arithmetic (+ − × ÷, √, neg,
//! abs, ifpos) and sums of logarithms ([`Inst::LogProd`]) become x86-64 machine code running
//! 8 f64 (16 f32) rows per instruction. Cranelift lowers 128-bit vectors only (2 f64 rows);
//! kernels this translator does not take are left to it ([`emit`] says why).
//!
//! The function has the kernel ABI of [`super::clif::emit`] except that its parameter pointer
//! points at the parameters followed by the kernel's uniform values ([`Native::uniforms`]):
//! the values of instructions depending on parameters alone, computed once per call on the host
//! with the interpreter's scalar functions (as the Cranelift backend computes them before its
//! row loop), then the constants and index vectors the code reads. Uniform values are read as
//! broadcast memory operands and take no register.
//!
//! Register allocation is one pass over the straight-line row body: a value gets one of 24
//! registers where it is defined; when none is free, the value whose next use is furthest away
//! is stored to the stack (Belady's choice) and read from there as a memory operand. Eight
//! registers are scratch space of single instructions. Rows are gathered from the row-major
//! input and the last block of a batch runs under a lane mask, so nothing past the buffers is
//! read or written.
//!
//! Arithmetic is exact IEEE per lane, as in the Cranelift code and the interpreter (no fused
//! multiply-adds are formed). `exp`, `log`, `log1p` and `tanh` of row values use [`super::vmath`]'s
//! reductions and polynomials (`vgetexp`/`vgetmant` split logarithms' arguments, `vscalef`
//! applies exp's power of two). `LogProd` splits every term into mantissa and exponent
//! (`vgetmant`, `vgetexp`: exact for every positive finite number, subnormals included),
//! multiplies the mantissas, and takes one logarithm (the polynomial of
//! [`super::vmath`]); lanes with a term outside (0, ∞) get the exact −∞, +∞ or NaN.

use super::clif::{Float, Unsupported};
use super::vmath::{EXPM1_Q_F32, EXPM1_Q_F64, EXP_Q_F32, EXP_Q_F64, LN2_HI, LN2_HI_F32, LN2_LO, LN2_LO_F32, LOG_R_F32, LOG_R_F64};
use crate::ir::{eval, Math};
use crate::lower::{Inst, Kernel, Kind, Value};
use iced_x86::code_asm::*;
use std::collections::HashMap;

/// Registers the allocator hands out (zmm0 ..).
const ALLOC: usize = 24;
const ZMM: [AsmRegisterZmm; 32] = [
    zmm0, zmm1, zmm2, zmm3, zmm4, zmm5, zmm6, zmm7, zmm8, zmm9, zmm10, zmm11, zmm12, zmm13, zmm14, zmm15, zmm16, zmm17, zmm18, zmm19,
    zmm20, zmm21, zmm22, zmm23, zmm24, zmm25, zmm26, zmm27, zmm28, zmm29, zmm30, zmm31,
];
// scratch registers of single instructions
const E: AsmRegisterZmm = zmm24;
const NUM: AsmRegisterZmm = zmm25;
const DEN: AsmRegisterZmm = zmm26;
const T1: AsmRegisterZmm = zmm27;
const T2: AsmRegisterZmm = zmm28;
const RES: AsmRegisterZmm = zmm29;
const SB: AsmRegisterZmm = zmm30;
const SA: AsmRegisterZmm = zmm31;
/// vcmp predicates: greater than / less than, ordered, quiet.
const GT_OQ: i32 = 0x1e;
const LT_OQ: i32 = 0x11;
/// Mantissa products are renormalized after this many factors (each in [1, 2)).
const RENORM_F64: usize = 500;
const RENORM_F32: usize = 60;
/// Stack slots (64 bytes each) a kernel may use: 512 KiB of a worker thread's stack.
const MAX_SPILLED: usize = 8192;
/// Larger powers in a sum of logarithms are left to Cranelift (one mantissa's power must stay
/// below 2^RENORM_F32).
const MAX_POWER: u32 = 40;

/// What the CPU must have: AVX-512F, and BMI2 for the tail mask.
pub fn host_supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("bmi2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// One element of the uniform buffer past the parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Slot {
    /// The value of a uniform instruction.
    Value(Value),
    /// A constant, as the bits of one element.
    Bits(u64),
    /// An integer element of an index vector (a lane's offset in elements).
    Index(u64),
}

/// A translated kernel: machine code (position independent, no relocations) and how to fill
/// the buffer its parameter pointer reads.
#[derive(Debug, Clone)]
pub struct Native {
    pub code: Vec<u8>,
    pub precision: Float,
    /// Rows per loop iteration.
    pub lanes: usize,
    /// Values of the row body stored to the stack at some point.
    pub spilled: usize,
    param_len: usize,
    /// The kernel's uniform instructions, in order (arguments through `Detach` resolved).
    uniform: Vec<(Value, Inst)>,
    values: usize,
    slots: Vec<Slot>,
}

/// An element type of kernels: how the host computes uniform values in it.
pub trait Element: Copy + Default {
    fn constant(c: f64) -> Self;
    /// One op, as the interpreter computes it in this precision.
    fn apply(m: &Math, args: &[Self]) -> Self;
    /// An element from the low bits of `b`.
    fn from_bits(b: u64) -> Self;
}

impl Element for f64 {
    fn constant(c: f64) -> f64 {
        c
    }
    fn apply(m: &Math, args: &[f64]) -> f64 {
        eval::apply(m, args)
    }
    fn from_bits(b: u64) -> f64 {
        f64::from_bits(b)
    }
}

impl Element for f32 {
    fn constant(c: f64) -> f32 {
        c as f32
    }
    fn apply(m: &Math, args: &[f32]) -> f32 {
        eval::apply_f32(m, args)
    }
    fn from_bits(b: u64) -> f32 {
        f32::from_bits(b as u32)
    }
}

impl Native {
    /// The buffer the code's parameter pointer reads: the parameters, then the uniform values
    /// (computed here, with the interpreter's functions) and the constants. `T` must be the
    /// kernel's precision.
    pub fn uniforms<T: Element>(&self, params: &[T]) -> Vec<T> {
        let mut vals = vec![T::default(); self.values];
        for (i, inst) in &self.uniform {
            vals[*i] = match inst {
                Inst::Param(j) => params[*j],
                Inst::Const(c) => T::constant(*c),
                Inst::Op(m, args) => T::apply(m, &args.iter().map(|a| vals[*a]).collect::<Vec<_>>()),
                _ => unreachable!("uniform instructions are params, constants and ops"),
            };
        }
        let mut buf = Vec::with_capacity(self.param_len + self.slots.len());
        buf.extend_from_slice(params);
        buf.extend(self.slots.iter().map(|s| match s {
            Slot::Value(v) => vals[*v],
            Slot::Bits(b) | Slot::Index(b) => T::from_bits(*b),
        }));
        buf
    }

    /// The code in Intel syntax, one instruction per line with its offset, after
    /// [`Native::summary`] and the uniform slots (what each buffer element past the parameters
    /// holds).
    pub fn disassembly(&self) -> String {
        use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter};
        let mut out = self.summary();
        out.push('\n');
        for (i, s) in self.slots.iter().enumerate() {
            let what = match s {
                Slot::Value(v) => format!("v{v}"),
                Slot::Bits(b) if self.precision == Float::F64 => format!("{:?} (0x{b:016x})", f64::from_bits(*b)),
                Slot::Bits(b) => format!("{:?} (0x{b:08x})", f32::from_bits(*b as u32)),
                Slot::Index(i) => format!("index {i}"),
            };
            out.push_str(&format!("; uniform[{}] = {what}\n", self.param_len + i));
        }
        let mut decoder = Decoder::with_ip(64, &self.code, 0, DecoderOptions::NONE);
        let mut fmt = IntelFormatter::new();
        let mut text = String::new();
        for inst in &mut decoder {
            text.clear();
            fmt.format(&inst, &mut text);
            out.push_str(&format!("{:5x}  {text}\n", inst.ip()));
        }
        out
    }

    /// One line on what was generated.
    pub fn summary(&self) -> String {
        format!(
            "; AVX-512 x86-64 code: {} bytes, {} rows per vector, {COPIES} vectors per main-loop iteration, {} values spilled, {} uniform values",
            self.code.len(),
            self.lanes,
            self.spilled,
            self.slots.len()
        )
    }
}

fn unsupported(what: impl Into<String>) -> Unsupported {
    Unsupported(format!("not for the AVX-512 backend: {}", what.into()))
}

fn asm(e: IcedError) -> Unsupported {
    Unsupported(format!("x86-64 encoder: {e}"))
}

/// Translates `k`, or says why it is left to Cranelift.
pub fn emit(k: &Kernel, prec: Float) -> Result<Native, Unsupported> {
    if k.kind == Kind::Gradient {
        return Err(unsupported("gradient kernels"));
    }
    if k.dim == 0 || k.outputs.is_empty() {
        return Err(unsupported("kernels without inputs or outputs"));
    }
    let insts = &k.body.insts;
    let n = insts.len();
    let mut rep: Vec<Value> = (0..n).collect();
    let mut uniform = vec![false; n];
    for (i, inst) in insts.iter().enumerate() {
        match inst {
            Inst::Detach(v) => {
                rep[i] = rep[*v];
                uniform[i] = uniform[rep[*v]];
            }
            Inst::Param(_) | Inst::Const(_) => uniform[i] = true,
            Inst::Op(_, args) => uniform[i] = args.iter().all(|a| uniform[rep[*a]]),
            _ => {}
        }
    }
    let mut body = Vec::new();
    for (i, inst) in insts.iter().enumerate() {
        if uniform[i] || matches!(inst, Inst::Detach(_)) {
            continue;
        }
        match inst {
            Inst::LogProd { terms, .. } if terms.iter().any(|(_, p)| p.unsigned_abs() > MAX_POWER) => {
                return Err(unsupported(format!("powers above {MAX_POWER} in a sum of logarithms")))
            }
            Inst::Input(_) | Inst::LogProd { .. } => {}
            Inst::Op(
                Math::Add(_)
                | Math::Sub(_)
                | Math::Mul(_)
                | Math::Div(_)
                | Math::Neg(_)
                | Math::Sqrt(_)
                | Math::Abs(_)
                | Math::IfPos(_)
                | Math::Exp(_)
                | Math::Log(_)
                | Math::Log1p(_)
                | Math::Tanh(_),
                _,
            ) => {}
            Inst::Op(m, _) => return Err(unsupported(format!("`{m}` of row values"))),
            other => return Err(unsupported(inst_name(other))),
        }
        body.push(i);
    }
    let uniform_insts: Vec<(Value, Inst)> = insts
        .iter()
        .enumerate()
        .filter(|(i, inst)| uniform[*i] && !matches!(inst, Inst::Detach(_)))
        .map(|(i, inst)| {
            let inst = match inst {
                Inst::Op(m, args) => Inst::Op(m.clone(), args.iter().map(|a| rep[*a]).collect()),
                other => other.clone(),
            };
            (i, inst)
        })
        .collect();
    let plan = Plan { k, prec, rep, uniform, body };
    // twice: the first pass counts the stack slots the prologue reserves
    let first = plan.generate(0)?;
    if first.spilled > MAX_SPILLED {
        return Err(unsupported(format!("{} values on the stack (at most {MAX_SPILLED})", first.spilled)));
    }
    let out = plan.generate(first.spilled)?;
    debug_assert_eq!(first.spilled, out.spilled);
    Ok(Native {
        code: out.code,
        precision: prec,
        lanes: plan.lanes(),
        spilled: out.spilled,
        param_len: k.param_len(),
        uniform: uniform_insts,
        values: n,
        slots: out.slots,
    })
}

fn inst_name(inst: &Inst) -> &'static str {
    match inst {
        Inst::Dense { .. } => "dense products",
        Inst::Part(..) => "tuple parts",
        Inst::Spline { .. } => "splines",
        Inst::RootFind { .. } => "numeric inverses",
        Inst::Seed | Inst::DenseT { .. } | Inst::AccumDense { .. } | Inst::Accum { .. } => "gradients",
        Inst::LogAbsDet { .. } => "log|det| of row matrices",
        _ => "this instruction",
    }
}

struct Plan<'k> {
    k: &'k Kernel,
    prec: Float,
    rep: Vec<Value>,
    uniform: Vec<bool>,
    /// Row instructions, in order.
    body: Vec<Value>,
}

struct Generated {
    code: Vec<u8>,
    spilled: usize,
    slots: Vec<Slot>,
}

/// A source operand: a register, or memory (a stack slot, or a broadcast uniform).
#[derive(Clone, Copy)]
enum Opd {
    R(AsmRegisterZmm),
    M(AsmMemoryOperand),
}

impl<'k> Plan<'k> {
    fn lanes(&self) -> usize {
        match self.prec {
            Float::F64 => 8,
            Float::F32 => 16,
        }
    }

    /// The function: a loop over blocks of `COPIES` vectors of rows (their instructions
    /// interleaved by [`Plan::schedule`], so that one block's dependency chains overlap), then one vector at a time
    /// under the lane mask for the rows left. `frame_slots` stack slots are reserved.
    fn generate(&self, frame_slots: usize) -> Result<Generated, Unsupported> {
        let mut g = Gen {
            a: CodeAssembler::new(64).map_err(asm)?,
            f64: self.prec == Float::F64,
            esize: self.prec.bytes() as i32,
            param_len: self.k.param_len(),
            slots: Vec::new(),
            slot_of: HashMap::new(),
            rep: &self.rep,
            uniform: &self.uniform,
            insts: &self.k.body.insts,
            al: Alloc::default(),
        };
        let lanes = self.lanes();
        let dim = self.k.dim;
        let outs = self.k.outputs.len();
        let ebytes = g.esize as usize;
        let in_idx = g.index_vector(lanes, dim);
        let out_idx = if outs > 1 { Some(g.index_vector(lanes, outs)) } else { None };
        let perm_idx = if dim <= MAX_PERMUTED { (0..dim).map(|c| g.perm_vector(lanes, dim, c)).collect() } else { Vec::new() };
        let perm_out = if (2..=MAX_PERMUTED).contains(&outs) {
            (0..outs)
                .map(|j| {
                    let s = g.param_len + g.slots.len();
                    g.slots.extend((0..lanes).map(|p| Slot::Index(((j * lanes + p) / outs) as u64)));
                    s
                })
                .collect()
        } else {
            Vec::new()
        };
        let io = Io {
            in_idx,
            out_idx,
            perm_idx,
            perm_out,
            dim,
            lanes,
            in_step: (lanes * dim * ebytes) as i32,
            out_step: (lanes * outs * ebytes) as i32,
        };

        // rdi rows, rsi n, rdx uniforms, rcx out; r8 row index, r10 row pointer, r11 out pointer
        let eb = g.esize;
        let a = &mut g.a;
        a.push(rbp).map_err(asm)?;
        a.mov(rbp, rsp).map_err(asm)?;
        if frame_slots > 0 {
            a.sub(rsp, (frame_slots * 64) as i32).map_err(asm)?;
        }
        a.and(rsp, -64).map_err(asm)?;
        a.mov(r10, rdi).map_err(asm)?;
        a.mov(r11, rcx).map_err(asm)?;
        // the uniform buffer through three base registers, each 128 elements past the start
        // of its block of 256: broadcast operands in the first 768 elements take a one-byte
        // (element-scaled) displacement, which keeps the instructions short
        a.lea(rdi, qword_ptr(rdx + (BASES[1] + 128) as i32 * eb)).map_err(asm)?;
        a.lea(rcx, qword_ptr(rdx + (BASES[2] + 128) as i32 * eb)).map_err(asm)?;
        a.add(rdx, 128 * eb).map_err(asm)?;
        a.xor(r8d, r8d).map_err(asm)?;
        a.kxnorw(k7, k7, k7).map_err(asm)?;
        let mut wide = a.create_label();
        let mut tail = a.create_label();
        let mut done = a.create_label();
        let mut full = a.create_label();
        let block = COPIES * lanes;
        a.set_label(&mut wide).map_err(asm)?;
        a.mov(rax, rsi).map_err(asm)?;
        a.sub(rax, r8).map_err(asm)?;
        a.cmp(rax, block as i32).map_err(asm)?;
        a.jb(tail).map_err(asm)?;
        self.body(&mut g, COPIES, true, &io)?;
        let mut spilled = g.al.stacked;
        let a = &mut g.a;
        a.add(r8, block as i32).map_err(asm)?;
        a.add(r10, COPIES as i32 * io.in_step).map_err(asm)?;
        a.add(r11, COPIES as i32 * io.out_step).map_err(asm)?;
        a.jmp(wide).map_err(asm)?;

        a.set_label(&mut tail).map_err(asm)?;
        a.cmp(r8, rsi).map_err(asm)?;
        a.jae(done).map_err(asm)?;
        a.mov(rax, rsi).map_err(asm)?;
        a.sub(rax, r8).map_err(asm)?;
        a.mov(r9d, ((1u32 << lanes) - 1) as i32).map_err(asm)?;
        a.cmp(rax, lanes as i32).map_err(asm)?;
        a.jae(full).map_err(asm)?;
        a.bzhi(r9d, r9d, eax).map_err(asm)?;
        a.set_label(&mut full).map_err(asm)?;
        a.kmovw(k7, r9d).map_err(asm)?;
        self.body(&mut g, 1, false, &io)?;
        spilled = spilled.max(g.al.stacked);
        let a = &mut g.a;
        a.add(r8, lanes as i32).map_err(asm)?;
        a.add(r10, io.in_step).map_err(asm)?;
        a.add(r11, io.out_step).map_err(asm)?;
        a.jmp(tail).map_err(asm)?;

        a.set_label(&mut done).map_err(asm)?;
        a.vzeroupper().map_err(asm)?;
        a.mov(rsp, rbp).map_err(asm)?;
        a.pop(rbp).map_err(asm)?;
        a.ret().map_err(asm)?;
        let code = g.a.assemble(0).map_err(asm)?;
        Ok(Generated { code, spilled, slots: g.slots })
    }

    /// The order in which the copies' instructions are emitted: each copy in program order;
    /// at each step, the copy whose next instruction can start first under a simple model of
    /// this CPU (latencies; one divider, busy for several cycles per vector division or root;
    /// four instructions issued per cycle). Copies then drift apart around long-latency
    /// operations instead of all waiting on them together, so the out-of-order window holds
    /// work that is ready.
    fn schedule(&self, copies: usize) -> Vec<(usize, usize)> {
        let insts = &self.k.body.insts;
        let end = self.body.len();
        // (latency, divider busy cycles, instruction slots) of each row instruction
        let cost = |inst: &Inst| -> (f64, f64, f64) {
            match inst {
                Inst::Input(_) => (6.0, 0.0, 3.0),
                Inst::LogProd { terms, .. } => (45.0 + 3.0 * terms.len() as f64, 8.0, 30.0 + 6.0 * terms.len() as f64),
                Inst::Op(m, _) => match m {
                    Math::Add(_) | Math::Sub(_) | Math::Neg(_) | Math::Abs(_) => (2.0, 0.0, 1.0),
                    Math::Mul(_) => (3.0, 0.0, 1.0),
                    Math::IfPos(_) => (4.0, 0.0, 2.0),
                    Math::Div(_) => (13.0, 4.0, 1.0),
                    Math::Sqrt(_) => (20.0, 7.5, 1.0),
                    Math::Exp(_) => (30.0, 0.0, 20.0),
                    Math::Tanh(_) => (45.0, 4.0, 30.0),
                    _ => (40.0, 4.0, 30.0),
                },
                _ => (4.0, 0.0, 1.0),
            }
        };
        let n = insts.len();
        let mut ready = vec![0.0f64; n * copies];
        let mut next = vec![0usize; copies];
        let (mut now, mut divider) = (0.0f64, 0.0f64);
        let mut order = Vec::with_capacity(end * copies);
        while order.len() < end * copies {
            let mut best: Option<(f64, usize)> = None;
            for u in 0..copies {
                let Some(&i) = self.body.get(next[u]) else { continue };
                let (_, busy, _) = cost(&insts[i]);
                let mut start = now;
                for a in insts[i].args() {
                    let a = self.rep[a];
                    if !self.uniform[a] {
                        start = start.max(ready[a * copies + u]);
                    }
                }
                if busy > 0.0 {
                    start = start.max(divider);
                }
                if best.is_none_or(|(b, _)| start < b) {
                    best = Some((start, u));
                }
            }
            let (start, u) = best.expect("a copy has instructions left");
            let i = self.body[next[u]];
            let (lat, busy, slots) = cost(&insts[i]);
            ready[i * copies + u] = start + lat;
            if busy > 0.0 {
                divider = start + busy;
            }
            now += slots / 4.0;
            order.push((next[u], u));
            next[u] += 1;
        }
        order
    }

    /// One pass over the row body for `copies` vectors of rows (r10, r11 at the first);
    /// `full`: every lane is a row (no mask needed).
    fn body(&self, g: &mut Gen, copies: usize, full: bool, io: &Io) -> Result<(), Unsupported> {
        let n = self.k.body.insts.len();
        let order = self.schedule(copies);
        // the positions reading each value, per copy (the output stage last)
        let mut uses: Vec<Vec<usize>> = vec![Vec::new(); n * copies];
        let last = order.len();
        let outputs = self.k.outputs.iter().flat_map(|o| (0..copies).map(move |u| (last + u, u, *o)));
        let reads = order
            .iter()
            .enumerate()
            .flat_map(|(pos, &(t, u))| self.k.body.insts[self.body[t]].args().into_iter().map(move |a| (pos, u, a)));
        for (pos, u, a) in reads.chain(outputs) {
            let a = self.rep[a];
            if self.uniform[a] {
                continue;
            }
            let list = &mut uses[a * copies + u];
            if list.last() != Some(&pos) {
                list.push(pos);
            }
        }
        g.al = Alloc {
            copies,
            full,
            reg: vec![None; n * copies],
            holder: [None; ALLOC],
            stack: vec![None; n * copies],
            stacked: 0,
            next: vec![0; n * copies],
            uses,
            u: 0,
            pos: 0,
        };
        for (pos, &(t, u)) in order.iter().enumerate() {
            let i = self.body[t];
            g.al.u = u;
            g.al.pos = pos;
            g.instruction(i, io)?;
        }
        for u in 0..copies {
            g.al.u = u;
            if full && !io.perm_out.is_empty() {
                g.store_permuted(&self.k.outputs, io)?;
                continue;
            }
            for (o, v) in self.k.outputs.iter().enumerate() {
                let x = g.in_reg(*v, SA)?;
                g.store_output(x, o, io)?;
            }
        }
        Ok(())
    }
}

/// The first element of each block of the uniform buffer addressed through rdx, rdi, rcx.
const BASES: [usize; 3] = [0, 256, 512];

/// Vectors of rows interleaved per iteration of the main loop (with the schedule, 4 → 6
/// copies took W4's log_prob +10 %, planar sampling +20 %; 8 gave little more for twice the
/// code).
const COPIES: usize = 6;
/// Rows of at most this many values are read as whole vectors and permuted into coordinates,
/// and as many outputs permuted into whole vectors of rows (in the main loop; the masked tail
/// gathers and scatters, as wider rows do): gathers cost W4's log_prob a third of its speed,
/// scatters its forward map a seventh.
const MAX_PERMUTED: usize = 4;

/// Where rows come from and results go: index vectors (uniform slots) and the byte distance
/// between consecutive vectors of rows.
struct Io {
    in_idx: usize,
    /// Per coordinate, the flat index of each lane's value among `dim` vectors of rows
    /// (for rows of at most [`MAX_PERMUTED`] values).
    perm_idx: Vec<usize>,
    /// Per vector j of the row-major output block, the lane of each element's row (for 2 to
    /// [`MAX_PERMUTED`] outputs).
    perm_out: Vec<usize>,
    dim: usize,
    lanes: usize,
    out_idx: Option<usize>,
    in_step: i32,
    out_step: i32,
}

/// Register allocation state of one body pass. Values are numbered `value·copies + copy`.
#[derive(Default)]
struct Alloc {
    copies: usize,
    full: bool,
    /// The register holding each value.
    reg: Vec<Option<usize>>,
    holder: [Option<usize>; ALLOC],
    /// The stack slot of each value stored there.
    stack: Vec<Option<usize>>,
    stacked: usize,
    /// Body positions reading each value (the output stage last), and how many have passed.
    uses: Vec<Vec<usize>>,
    next: Vec<usize>,
    /// The copy being emitted and its position in the body.
    u: usize,
    pos: usize,
}

struct Gen<'p> {
    a: CodeAssembler,
    f64: bool,
    /// Bytes per element.
    esize: i32,
    param_len: usize,
    slots: Vec<Slot>,
    slot_of: HashMap<SlotKey, usize>,
    rep: &'p [Value],
    uniform: &'p [bool],
    insts: &'p [Inst],
    al: Alloc,
}

#[derive(Hash, PartialEq, Eq)]
enum SlotKey {
    Value(Value),
    Bits(u64),
}

macro_rules! pick {
    ($g:expr, $pd:ident, $ps:ident, $($arg:expr),*) => {
        if $g.f64 { $g.a.$pd($($arg),*) } else { $g.a.$ps($($arg),*) }
    };
}

/// `op dst, x, opd` in the kernel's precision.
macro_rules! binop {
    ($g:expr, $pd:ident, $ps:ident, $d:expr, $x:expr, $o:expr) => {
        match $o {
            Opd::R(r) => pick!($g, $pd, $ps, $d, $x, r),
            Opd::M(m) => pick!($g, $pd, $ps, $d, $x, m),
        }
        .map_err(asm)
    };
}

impl<'p> Gen<'p> {
    // ---- the uniform buffer ----

    fn uniform_index(&mut self, v: Value) -> usize {
        if let Inst::Param(j) = self.insts[v] {
            return j;
        }
        let key = match self.insts[v] {
            Inst::Const(c) => SlotKey::Bits(self.const_bits(c)),
            _ => SlotKey::Value(v),
        };
        if let Some(s) = self.slot_of.get(&key) {
            return *s;
        }
        let s = self.param_len + self.slots.len();
        self.slots.push(match key {
            SlotKey::Value(v) => Slot::Value(v),
            SlotKey::Bits(b) => Slot::Bits(b),
        });
        self.slot_of.insert(key, s);
        s
    }

    fn const_bits(&self, c: f64) -> u64 {
        if self.f64 {
            c.to_bits()
        } else {
            (c as f32).to_bits() as u64
        }
    }

    fn const_index(&mut self, bits: u64) -> usize {
        if let Some(s) = self.slot_of.get(&SlotKey::Bits(bits)) {
            return *s;
        }
        let s = self.param_len + self.slots.len();
        self.slots.push(Slot::Bits(bits));
        self.slot_of.insert(SlotKey::Bits(bits), s);
        s
    }

    /// Lane l's element l·dim + c, one vector: the permutation indices of coordinate c.
    fn perm_vector(&mut self, lanes: usize, dim: usize, c: usize) -> usize {
        let s = self.param_len + self.slots.len();
        self.slots.extend((0..lanes).map(|l| Slot::Index((l * dim + c) as u64)));
        s
    }

    /// Lane l's element offset l·stride, one vector (qwords in f64, dwords in f32).
    fn index_vector(&mut self, lanes: usize, stride: usize) -> usize {
        let s = self.param_len + self.slots.len();
        self.slots.extend((0..lanes).map(|l| Slot::Index((l * stride) as u64)));
        s
    }

    fn element(&self, index: usize) -> AsmMemoryOperand {
        let block = (index / 256).min(BASES.len() - 1);
        let reg = [rdx, rdi, rcx][block];
        let off = (index as i64 - BASES[block] as i64 - 128) * self.esize as i64;
        reg + off as i32
    }

    fn bcst(&self, index: usize) -> AsmMemoryOperand {
        if self.f64 {
            qword_bcst(self.element(index))
        } else {
            dword_bcst(self.element(index))
        }
    }

    /// A constant as a broadcast operand.
    fn c(&mut self, x: f64) -> Opd {
        let b = self.const_bits(x);
        let s = self.const_index(b);
        Opd::M(self.bcst(s))
    }

    /// A bit pattern (a float's) as a broadcast operand.
    fn bits(&mut self, f64_bits: u64, f32_bits: u32) -> Opd {
        let s = self.const_index(if self.f64 { f64_bits } else { f32_bits as u64 });
        Opd::M(self.bcst(s))
    }

    // ---- registers ----

    fn spill_slot(s: usize) -> AsmMemoryOperand {
        zmmword_ptr(rsp + (s * 64) as i32)
    }

    /// The allocator's number of value `v` (resolved) in the current copy.
    fn vid(&self, v: Value) -> usize {
        v * self.al.copies + self.al.u
    }

    /// Where `v` is, for a last source operand.
    fn opd(&mut self, v: Value) -> Opd {
        let v = self.rep[v];
        if self.uniform[v] {
            let s = self.uniform_index(v);
            return Opd::M(self.bcst(s));
        }
        let id = self.vid(v);
        if let Some(r) = self.al.reg[id] {
            return Opd::R(ZMM[r]);
        }
        Opd::M(Self::spill_slot(self.al.stack[id].expect("a value not in a register is on the stack")))
    }

    /// `v` in a register: its own, or loaded into `scratch`.
    fn in_reg(&mut self, v: Value, scratch: AsmRegisterZmm) -> Result<AsmRegisterZmm, Unsupported> {
        let v = self.rep[v];
        if self.uniform[v] {
            let s = self.uniform_index(v);
            let m = self.element(s);
            if self.f64 {
                self.a.vbroadcastsd(scratch, qword_ptr(m)).map_err(asm)?;
            } else {
                self.a.vbroadcastss(scratch, dword_ptr(m)).map_err(asm)?;
            }
            return Ok(scratch);
        }
        match self.opd(v) {
            Opd::R(r) => Ok(r),
            Opd::M(m) => {
                pick!(self, vmovapd, vmovaps, scratch, m).map_err(asm)?;
                Ok(scratch)
            }
        }
    }

    fn next_use(&self, id: usize) -> usize {
        self.al.uses[id].get(self.al.next[id]).copied().unwrap_or(usize::MAX)
    }

    /// After the current instruction: values it read for the last time free their registers.
    fn advance(&mut self, args: &[Value]) {
        let pos = self.al.pos;
        for &a in args {
            let a = self.rep[a];
            if self.uniform[a] {
                continue;
            }
            let id = self.vid(a);
            let state = &mut self.al;
            while state.uses[id].get(state.next[id]).is_some_and(|u| *u <= pos) {
                state.next[id] += 1;
            }
            if state.next[id] >= state.uses[id].len() {
                if let Some(r) = state.reg[id].take() {
                    state.holder[r] = None;
                }
            }
        }
    }

    /// A register for the new value `v` of the current copy (a free one, or the one whose
    /// value is needed last, that value stored to the stack first).
    fn define(&mut self, v: Value) -> Result<AsmRegisterZmm, Unsupported> {
        let id = self.vid(v);
        let r = match self.al.holder.iter().position(|h| h.is_none()) {
            Some(r) => r,
            None => {
                let r = (0..ALLOC).max_by_key(|r| self.next_use(self.al.holder[*r].expect("all held"))).expect("registers");
                let w = self.al.holder[r].expect("held");
                if self.al.stack[w].is_none() {
                    let s = self.al.stacked;
                    self.al.stack[w] = Some(s);
                    self.al.stacked += 1;
                    pick!(self, vmovapd, vmovaps, Self::spill_slot(s), ZMM[r]).map_err(asm)?;
                }
                self.al.reg[w] = None;
                r
            }
        };
        if self.al.uses[id].is_empty() {
            // computed for nothing (kept for the program's shape): a register for one instruction
            self.al.holder[r] = None;
        } else {
            self.al.holder[r] = Some(id);
            self.al.reg[id] = Some(r);
        }
        Ok(ZMM[r])
    }

    // ---- instructions ----

    fn instruction(&mut self, i: Value, io: &Io) -> Result<(), Unsupported> {
        let inst = &self.insts[i];
        let args = inst.args();
        match inst {
            Inst::Input(c) => {
                let d = self.define(i)?;
                self.load_input(d, *c, io)?;
            }
            Inst::Op(m, _) => self.op(i, m, &args)?,
            Inst::LogProd { terms, scale } => {
                let terms = terms.clone();
                self.log_prod(&terms, *scale)?;
                self.finish(i, &args, RES)?;
            }
            _ => unreachable!("checked by emit"),
        }
        Ok(())
    }

    /// The end of an instruction computed into scratch register `from`: its last reads free
    /// their registers, then value `i` gets one.
    fn finish(&mut self, i: Value, args: &[Value], from: AsmRegisterZmm) -> Result<(), Unsupported> {
        self.advance(args);
        let d = self.define(i)?;
        pick!(self, vmovapd, vmovaps, d, from).map_err(asm)
    }

    /// Coordinate `c` of the current copy's rows: in the main loop, for rows of at most
    /// [`MAX_PERMUTED`] values, permuted out of the `dim` vectors the rows fill (two tables at a
    /// time); else a masked gather (lanes past the end read nothing).
    fn load_input(&mut self, d: AsmRegisterZmm, c: usize, io: &Io) -> Result<(), Unsupported> {
        let base = self.al.u as i32 * io.in_step;
        if self.al.full && c < io.perm_idx.len() {
            let v = |i: i32| zmmword_ptr(r10 + (base + 64 * i));
            if io.dim == 1 {
                return pick!(self, vmovupd, vmovups, d, v(0)).map_err(asm);
            }
            let idx = self.element(io.perm_idx[c]);
            self.a.vmovdqu64(SA, zmmword_ptr(idx)).map_err(asm)?;
            pick!(self, vmovupd, vmovups, d, v(0)).map_err(asm)?;
            pick!(self, vpermt2pd, vpermt2ps, d, SA, v(1)).map_err(asm)?;
            // lanes whose value lies in the third or fourth vector
            let high: u32 = (0..io.lanes).filter(|l| l * io.dim + c >= 2 * io.lanes).map(|l| 1u32 << l).sum();
            if io.dim > 2 && high != 0 {
                self.a.mov(eax, high as i32).map_err(asm)?;
                self.a.kmovw(k1, eax).map_err(asm)?;
                if io.dim == 3 {
                    pick!(self, vpermpd, vpermps, d.k1(), SA, v(2)).map_err(asm)?;
                } else {
                    pick!(self, vmovupd, vmovups, SB, v(2)).map_err(asm)?;
                    pick!(self, vpermt2pd, vpermt2ps, SB, SA, v(3)).map_err(asm)?;
                    pick!(self, vmovapd, vmovaps, d.k1(), SB).map_err(asm)?;
                }
            }
            return Ok(());
        }
        let off = c as i32 * self.esize + base;
        let idx = self.element(io.in_idx);
        let a = &mut self.a;
        a.vpxorq(d, d, d).map_err(asm)?;
        a.kmovw(k1, k7).map_err(asm)?;
        if self.f64 {
            a.vmovdqu64(SA, zmmword_ptr(idx)).map_err(asm)?;
            a.vgatherqpd(d.k1(), zmmword_ptr(r10 + SA * 8 + off)).map_err(asm)?;
        } else {
            a.vmovdqu32(SA, zmmword_ptr(idx)).map_err(asm)?;
            a.vgatherdps(d.k1(), zmmword_ptr(r10 + SA * 4 + off)).map_err(asm)?;
        }
        Ok(())
    }

    /// The current copy's outputs as `outs` whole vectors of the row-major output: vector j
    /// takes each element from its output's vector, permuted (one masked permute per output).
    fn store_permuted(&mut self, outputs: &[Value], io: &Io) -> Result<(), Unsupported> {
        let outs = outputs.len();
        let base = self.al.u as i32 * io.out_step;
        if outs == 4 {
            return self.store_transposed(outputs, base);
        }
        for (j, &idx) in io.perm_out.iter().enumerate() {
            let idx = self.element(idx);
            self.a.vmovdqu64(SA, zmmword_ptr(idx)).map_err(asm)?;
            for (c, v) in outputs.iter().enumerate() {
                let x = self.in_reg(*v, T2)?;
                let mask: u32 = (0..io.lanes).filter(|p| (j * io.lanes + p) % outs == c).map(|p| 1u32 << p).sum();
                if c == 0 {
                    pick!(self, vpermpd, vpermps, T1, SA, x).map_err(asm)?;
                } else {
                    self.a.mov(eax, mask as i32).map_err(asm)?;
                    self.a.kmovw(k1, eax).map_err(asm)?;
                    pick!(self, vpermpd, vpermps, T1.k1(), SA, x).map_err(asm)?;
                }
            }
            pick!(self, vmovupd, vmovups, zmmword_ptr(r11 + (base + 64 * j as i32)), T1).map_err(asm)?;
        }
        Ok(())
    }

    /// Four outputs of a vector of rows as rows of 4 (8 f64 or 16 f32 rows): a transpose.
    /// Values are interleaved in pairs (f32: twice, pairs of pairs), so that each 128-bit
    /// block holds one row's four outputs (f64: two rows' halves), then the 4 × 4 matrix of
    /// blocks is transposed by two rounds of block shuffles; 12 (f32: 16) shuffles for the 4
    /// stores.
    fn store_transposed(&mut self, outputs: &[Value], base: i32) -> Result<(), Unsupported> {
        let a = self.in_reg(outputs[0], SA)?;
        let b = self.in_reg(outputs[1], SB)?;
        let c = self.in_reg(outputs[2], RES)?;
        let d = self.in_reg(outputs[3], T2)?;
        let g = &mut self.a;
        // the block rows x[0..4], and four free registers p
        let (x, p) = if self.f64 {
            // (a0 b0 a2 b2 …), (c0 d0 c2 d2 …), (a1 b1 a3 b3 …), (c1 d1 c3 d3 …)
            g.vunpcklpd(E, a, b).map_err(asm)?;
            g.vunpckhpd(NUM, a, b).map_err(asm)?;
            g.vunpcklpd(DEN, c, d).map_err(asm)?;
            g.vunpckhpd(T1, c, d).map_err(asm)?;
            ([E, DEN, NUM, T1], [SA, SB, RES, T2])
        } else {
            // (a0 b0 a1 b1 …), (a2 b2 a3 b3 …) and the same of c, d; then one row per block:
            // (a0 b0 c0 d0 | a4 …), (a1 b1 c1 d1 | …), (a2 …), (a3 …)
            g.vunpcklps(E, a, b).map_err(asm)?;
            g.vunpckhps(NUM, a, b).map_err(asm)?;
            g.vunpcklps(DEN, c, d).map_err(asm)?;
            g.vunpckhps(T1, c, d).map_err(asm)?;
            g.vunpcklpd(SA, E, DEN).map_err(asm)?;
            g.vunpckhpd(SB, E, DEN).map_err(asm)?;
            g.vunpcklpd(RES, NUM, T1).map_err(asm)?;
            g.vunpckhpd(T2, NUM, T1).map_err(asm)?;
            ([SA, SB, RES, T2], [E, DEN, NUM, T1])
        };
        // vshuff64x2 immediates: blocks (0, 2) of each source, or (1, 3)
        const EVEN: i32 = 0x88;
        const ODD: i32 = 0xdd;
        g.vshuff64x2(p[0], x[0], x[1], EVEN).map_err(asm)?;
        g.vshuff64x2(p[1], x[0], x[1], ODD).map_err(asm)?;
        g.vshuff64x2(p[2], x[2], x[3], EVEN).map_err(asm)?;
        g.vshuff64x2(p[3], x[2], x[3], ODD).map_err(asm)?;
        for (j, (u, v, imm)) in [(p[0], p[2], EVEN), (p[1], p[3], EVEN), (p[0], p[2], ODD), (p[1], p[3], ODD)].into_iter().enumerate() {
            g.vshuff64x2(x[0], u, v, imm).map_err(asm)?;
            g.vmovupd(zmmword_ptr(r11 + (base + 64 * j as i32)), x[0]).map_err(asm)?;
        }
        Ok(())
    }

    /// Output `o` of the current copy's rows (masked).
    fn store_output(&mut self, x: AsmRegisterZmm, o: usize, io: &Io) -> Result<(), Unsupported> {
        let base = self.al.u as i32 * io.out_step;
        match io.out_idx {
            None => pick!(self, vmovupd, vmovups, zmmword_ptr(r11 + base).k7(), x).map_err(asm),
            Some(idx) => {
                let off = base + o as i32 * self.esize;
                let idx = self.element(idx);
                let a = &mut self.a;
                a.kmovw(k1, k7).map_err(asm)?;
                if self.f64 {
                    a.vmovdqu64(SB, zmmword_ptr(idx)).map_err(asm)?;
                    a.vscatterqpd(zmmword_ptr(r11 + SB * 8 + off).k1(), x).map_err(asm)
                } else {
                    a.vmovdqu32(SB, zmmword_ptr(idx)).map_err(asm)?;
                    a.vscatterdps(zmmword_ptr(r11 + SB * 4 + off).k1(), x).map_err(asm)
                }
            }
        }
    }

    fn op(&mut self, i: Value, m: &Math, args: &[Value]) -> Result<(), Unsupported> {
        let uni = |g: &Self, v: Value| g.uniform[g.rep[v]];
        match m {
            Math::Add(_) | Math::Mul(_) | Math::Sub(_) | Math::Div(_) => {
                let (mut x, mut y) = (args[0], args[1]);
                if matches!(m, Math::Add(_) | Math::Mul(_)) && uni(self, x) && !uni(self, y) {
                    std::mem::swap(&mut x, &mut y);
                }
                let rx = self.in_reg(x, SA)?;
                let oy = self.opd(y);
                self.advance(args);
                let d = self.define(i)?;
                match m {
                    Math::Add(_) => binop!(self, vaddpd, vaddps, d, rx, oy),
                    Math::Sub(_) => binop!(self, vsubpd, vsubps, d, rx, oy),
                    Math::Mul(_) => binop!(self, vmulpd, vmulps, d, rx, oy),
                    _ => binop!(self, vdivpd, vdivps, d, rx, oy),
                }?;
            }
            Math::Neg(_) | Math::Abs(_) => {
                let rx = self.in_reg(args[0], SA)?;
                let neg = matches!(m, Math::Neg(_));
                let mask = if neg { self.bits(1 << 63, 1 << 31) } else { self.bits(!(1 << 63), !(1 << 31)) };
                self.advance(args);
                let d = self.define(i)?;
                if neg {
                    binop!(self, vpxorq, vpxord, d, rx, mask)?;
                } else {
                    binop!(self, vpandq, vpandd, d, rx, mask)?;
                }
            }
            Math::Sqrt(_) => {
                let ox = self.opd(args[0]);
                self.advance(args);
                let d = self.define(i)?;
                match ox {
                    Opd::R(r) => pick!(self, vsqrtpd, vsqrtps, d, r),
                    Opd::M(mm) => pick!(self, vsqrtpd, vsqrtps, d, mm),
                }
                .map_err(asm)?;
            }
            Math::Exp(_) => {
                let rx = self.in_reg(args[0], SA)?;
                self.exp(rx)?;
                self.finish(i, args, E)?;
            }
            Math::Tanh(_) => {
                let rx = self.in_reg(args[0], SA)?;
                self.tanh(rx)?;
                self.finish(i, args, E)?;
            }
            Math::Log(_) => {
                let rx = self.in_reg(args[0], T2)?;
                self.log_core(rx, false)?;
                self.finish(i, args, RES)?;
            }
            Math::Log1p(_) => {
                // ln(1 + x) = ln u + c/u, u = 1 + x rounded, c = x − (u − 1) exact
                let rx = self.in_reg(args[0], SA)?;
                let one = self.c(1.0);
                binop!(self, vaddpd, vaddps, T2, rx, one)?;
                binop!(self, vsubpd, vsubps, T1, T2, one)?;
                binop!(self, vsubpd, vsubps, T1, rx, Opd::R(T1))?;
                binop!(self, vdivpd, vdivps, T1, T1, Opd::R(T2))?;
                self.log_core(T2, true)?;
                self.finish(i, args, RES)?;
            }
            Math::IfPos(_) => {
                let rc = self.in_reg(args[0], SA)?;
                let zero = self.c(0.0);
                self.cmp(k2, rc, zero, GT_OQ)?;
                let rb = self.in_reg(args[2], SB)?;
                let oa = self.opd(args[1]);
                self.advance(args);
                let d = self.define(i)?;
                binop!(self, vblendmpd, vblendmps, d.k2(), rb, oa)?;
            }
            _ => unreachable!("checked by emit"),
        }
        Ok(())
    }

    fn cmp(&mut self, k: AsmRegisterK, x: AsmRegisterZmm, o: Opd, pred: i32) -> Result<(), Unsupported> {
        match o {
            Opd::R(r) => pick!(self, vcmppd, vcmpps, k, x, r, pred),
            Opd::M(m) => pick!(self, vcmppd, vcmpps, k, x, m, pred),
        }
        .map_err(asm)
    }

    fn set(&mut self, d: AsmRegisterZmm, x: f64) -> Result<(), Unsupported> {
        let b = self.const_bits(x);
        let s = self.const_index(b);
        let m = self.element(s);
        if self.f64 {
            self.a.vbroadcastsd(d, qword_ptr(m)).map_err(asm)
        } else {
            self.a.vbroadcastss(d, dword_ptr(m)).map_err(asm)
        }
    }

    /// e^x into E (vmath's reduction and polynomial; 2^k applied by `vscalef`, one rounding
    /// also for subnormal results). `x` must not be a scratch register other than SA.
    fn exp(&mut self, x: AsmRegisterZmm) -> Result<(), Unsupported> {
        let (lo, hi, magic) = if self.f64 { (-746.0, 710.0, 1.5 * 2f64.powi(52)) } else { (-104.0, 89.0, 1.5 * 2f64.powi(23)) };
        // clamped (NaN kept: min and max return their second operand when one is NaN)
        self.set(T1, hi)?;
        binop!(self, vminpd, vminps, T1, T1, Opd::R(x))?;
        self.set(T2, lo)?;
        binop!(self, vmaxpd, vmaxps, T1, T2, Opd::R(T1))?;
        // k = nearest(x·log2 e), r = x − k·ln2
        self.reduce(T1, magic, None)?;
        // e^r = 1 + r + r²·Q(r) by Horner, then ·2^k
        let q: &[f64] = if self.f64 { &EXP_Q_F64 } else { &EXP_Q_F32 };
        let c: Vec<f64> = [1.0, 1.0].iter().chain(q).copied().collect();
        self.horner(E, RES, &c)?;
        pick!(self, vscalefpd, vscalefps, E, E, DEN).map_err(asm)
    }

    /// x = 2^e·m with m in [√½, √2): E += e (exact: `vgetexp`, subnormals too), NUM = m.
    /// For positive finite x; `x` may be NUM.
    fn log_split(&mut self, x: AsmRegisterZmm) -> Result<(), Unsupported> {
        pick!(self, vgetexppd, vgetexpps, SB, x).map_err(asm)?;
        binop!(self, vaddpd, vaddps, E, E, Opd::R(SB))?;
        pick!(self, vgetmantpd, vgetmantps, NUM, x, 0i32).map_err(asm)?;
        let sqrt2 = self.c(std::f64::consts::SQRT_2);
        self.cmp(k3, NUM, sqrt2, GT_OQ)?;
        let half = self.c(0.5);
        binop!(self, vmulpd, vmulps, NUM.k3(), NUM, half)?;
        let one = self.c(1.0);
        binop!(self, vaddpd, vaddps, E.k3(), E, one)
    }

    /// RES = ln NUM (+ T1 when `corr`) + E·ln2 for NUM in [√½, √2) (vmath's logarithm:
    /// ln m = f − s·(f − R), s = f/(2 + f), R = z·P(z), z = s²; ln2 in two parts). Uses DEN,
    /// SA, SB.
    fn log_poly(&mut self, corr: bool) -> Result<(), Unsupported> {
        let one = self.c(1.0);
        binop!(self, vsubpd, vsubps, DEN, NUM, one)?;
        let two = self.c(2.0);
        binop!(self, vaddpd, vaddps, SB, DEN, two)?;
        binop!(self, vdivpd, vdivps, SB, DEN, Opd::R(SB))?;
        binop!(self, vmulpd, vmulps, SA, SB, Opd::R(SB))?;
        let coef: &[f64] = if self.f64 { &LOG_R_F64 } else { &LOG_R_F32 };
        self.horner(RES, SA, coef)?;
        binop!(self, vmulpd, vmulps, RES, RES, Opd::R(SA))?;
        binop!(self, vsubpd, vsubps, RES, RES, Opd::R(DEN))?;
        binop!(self, vfmadd213pd, vfmadd213ps, RES, SB, Opd::R(DEN))?;
        if corr {
            binop!(self, vaddpd, vaddps, RES, RES, Opd::R(T1))?;
        }
        let (hi, lo) = if self.f64 { (LN2_HI, LN2_LO) } else { (LN2_HI_F32 as f64, LN2_LO_F32 as f64) };
        let lo = self.c(lo);
        binop!(self, vfmadd231pd, vfmadd231ps, RES, E, lo)?;
        let hi = self.c(hi);
        binop!(self, vfmadd231pd, vfmadd231ps, RES, E, hi)
    }

    /// DEN = k, RES = r with a = k·ln2 + r (ln2 in two parts): k = nearest(a·log2 e), or with
    /// `offset` d nearest(a·log2 e − d), rounded by adding and subtracting `magic` (vmath's
    /// reductions). Uses NUM.
    fn reduce(&mut self, a: AsmRegisterZmm, magic: f64, offset: Option<f64>) -> Result<(), Unsupported> {
        let log2e = self.c(std::f64::consts::LOG2_E);
        let m = self.c(magic);
        match offset {
            None => {
                self.set(NUM, magic)?;
                binop!(self, vfmadd231pd, vfmadd231ps, NUM, a, log2e)?;
            }
            Some(d) => {
                self.set(DEN, -d)?;
                binop!(self, vfmadd231pd, vfmadd231ps, DEN, a, log2e)?;
                binop!(self, vaddpd, vaddps, NUM, DEN, m)?;
            }
        }
        binop!(self, vsubpd, vsubps, DEN, NUM, m)?;
        pick!(self, vmovapd, vmovaps, RES, a).map_err(asm)?;
        let (h, l) = if self.f64 { (LN2_HI, LN2_LO) } else { (LN2_HI_F32 as f64, LN2_LO_F32 as f64) };
        let h = self.c(-h);
        binop!(self, vfmadd231pd, vfmadd231ps, RES, DEN, h)?;
        let l = self.c(-l);
        binop!(self, vfmadd231pd, vfmadd231ps, RES, DEN, l)
    }

    /// dst = Σ c[i]·x^i by Horner's rule with fused steps (vmath's `poly`).
    fn horner(&mut self, dst: AsmRegisterZmm, x: AsmRegisterZmm, c: &[f64]) -> Result<(), Unsupported> {
        self.set(dst, c[c.len() - 1])?;
        for &ci in c[..c.len() - 1].iter().rev() {
            let ci = self.c(ci);
            binop!(self, vfmadd213pd, vfmadd213ps, dst, x, ci)?;
        }
        Ok(())
    }

    /// tanh x into E (vmath's: with a = 2|x| capped, e = e^a − 1 from the expm1 reduction
    /// and polynomial, tanh|x| = e/(e + 2), the sign of x put back). `x` must not be a scratch
    /// register other than SA.
    fn tanh(&mut self, x: AsmRegisterZmm) -> Result<(), Unsupported> {
        let (cap, magic) = if self.f64 { (40.0, 1.5 * 2f64.powi(52)) } else { (20.0, 1.5 * 2f64.powi(23)) };
        let abs = self.bits(!(1 << 63), !(1 << 31));
        binop!(self, vpandq, vpandd, T1, x, abs)?;
        binop!(self, vaddpd, vaddps, T1, T1, Opd::R(T1))?;
        // min(cap, 2|x|), NaN kept (the second operand is returned when one is NaN)
        self.set(T2, cap)?;
        binop!(self, vminpd, vminps, T2, T2, Opd::R(T1))?;
        // k = nearest(a·log2 e − 0.085) (e^r − 1 in [−¼, ½) for k = 0), r = a − k·ln2
        self.reduce(T2, magic, Some(0.085))?;
        // q = e^r − 1 = r + r·(r·Q(r))
        let q: &[f64] = if self.f64 { &EXPM1_Q_F64 } else { &EXPM1_Q_F32 };
        self.horner(E, RES, q)?;
        binop!(self, vmulpd, vmulps, E, E, Opd::R(RES))?;
        binop!(self, vfmadd213pd, vfmadd213ps, E, RES, Opd::R(RES))?;
        // e = 2^k·q + (2^k − 1), then e/(e + 2)
        self.set(T1, 1.0)?;
        pick!(self, vscalefpd, vscalefps, T1, T1, DEN).map_err(asm)?;
        let one = self.c(1.0);
        binop!(self, vsubpd, vsubps, T2, T1, one)?;
        binop!(self, vfmadd213pd, vfmadd213ps, E, T1, Opd::R(T2))?;
        let two = self.c(2.0);
        binop!(self, vaddpd, vaddps, T2, E, two)?;
        binop!(self, vdivpd, vdivps, E, E, Opd::R(T2))?;
        let sign = self.bits(1 << 63, 1 << 31);
        binop!(self, vpandq, vpandd, T1, x, sign)?;
        binop!(self, vporq, vpord, E, E, Opd::R(T1))
    }

    /// ln x (+ corr, in T1, when `corr`) into RES: vmath's logarithm, x = 2^e·m split by
    /// `vgetexp`/`vgetmant` (subnormals exact), m in [√½, √2); lanes with x outside (0, ∞) get
    /// −∞ at 0, +∞ at ∞, NaN below 0 and at NaN (blended in, no branch). `x` is read only
    /// (not E, NUM, DEN, SA, SB, RES, nor T1 with `corr`).
    fn log_core(&mut self, x: AsmRegisterZmm, corr: bool) -> Result<(), Unsupported> {
        self.a.vpxorq(E, E, E).map_err(asm)?;
        self.log_split(x)?;
        self.log_poly(corr)?;
        // lanes of this block with x outside (0, ∞): √min(x, 0) + exp(x)
        let zero = self.c(0.0);
        let inf = self.c(f64::INFINITY);
        self.cmp(k3, x, zero, GT_OQ)?;
        self.cmp(k4, x, inf, LT_OQ)?;
        self.a.kandw(k5, k3, k4).map_err(asm)?;
        // exp(x): −∞ at ±0, +∞ at ∞, NaN at NaN; NaN below 0
        pick!(self, vgetexppd, vgetexpps, SB, x).map_err(asm)?;
        self.cmp(k6, x, zero, LT_OQ)?;
        self.special_lanes(SB)
    }

    /// RES = `special` in the lanes outside k5 (whose arguments are not all positive and
    /// finite), then NaN in the lanes of k6 (an argument below 0): blends, not a branch around
    /// those lanes' code (a branch per vector of rows cost W4's forward map a quarter of its
    /// speed).
    fn special_lanes(&mut self, special: AsmRegisterZmm) -> Result<(), Unsupported> {
        self.a.knotw(k4, k5).map_err(asm)?;
        pick!(self, vmovapd, vmovaps, RES.k4(), special).map_err(asm)?;
        let nan = self.c(f64::NAN);
        binop!(self, vaddpd, vaddps, RES.k6(), RES, nan)
    }

    /// scale·Σ p·ln(a) into RES: Σ p·ln(a) = ln(Π mant(a)^p) + ln2·Σ p·exp(a), the mantissas
    /// (in [1, 2)) multiplied per power and raised once (by squaring), the products kept below
    /// 2^RENORM. Lanes where a term lies outside (0, ∞) (the least term ≤ 0, or Σ p·exp(a) not
    /// finite: a term 0, ∞ or NaN) take scale·Σ p·exp(a) instead (exp(±0) = −∞, exp(∞) = ∞,
    /// exp(NaN) = NaN: the infinities combined as the sum of logarithms combines them), NaN
    /// where a term is negative ([`Gen::special_lanes`]).
    fn log_prod(&mut self, terms: &[(Value, i32)], scale: f64) -> Result<(), Unsupported> {
        let terms: Vec<(Value, i32)> = terms.iter().copied().filter(|(_, p)| *p != 0).collect();
        if terms.is_empty() {
            return self.a.vpxorq(RES, RES, RES).map_err(asm);
        }
        let limit = if self.f64 { RENORM_F64 } else { RENORM_F32 };
        let mut powers: Vec<i32> = terms.iter().map(|(_, p)| *p).collect();
        powers.sort_unstable();
        powers.dedup();
        self.set(NUM, 1.0)?;
        self.set(DEN, 1.0)?;
        self.set(RES, f64::INFINITY)?;
        self.a.vpxorq(E, E, E).map_err(asm)?;
        let (mut in_num, mut in_den) = (0usize, 0usize);
        for p in powers {
            let group: Vec<Value> = terms.iter().filter(|(_, q)| *q == p).map(|(v, _)| *v).collect();
            let e = p.unsigned_abs() as usize;
            let pc = self.c(p as f64);
            for chunk in group.chunks((limit / e).max(1)) {
                for (j, &v) in chunk.iter().enumerate() {
                    let ra = self.in_reg(v, T2)?;
                    binop!(self, vminpd, vminps, RES, RES, Opd::R(ra))?;
                    pick!(self, vgetexppd, vgetexpps, T1, ra).map_err(asm)?;
                    binop!(self, vfmadd231pd, vfmadd231ps, E, T1, pc)?;
                    if j == 0 {
                        pick!(self, vgetmantpd, vgetmantps, SA, ra, 0i32).map_err(asm)?;
                    } else {
                        pick!(self, vgetmantpd, vgetmantps, T1, ra, 0i32).map_err(asm)?;
                        binop!(self, vmulpd, vmulps, SA, SA, Opd::R(T1))?;
                    }
                }
                // SA^e, left to right (SB the base)
                if e > 1 {
                    pick!(self, vmovapd, vmovaps, SB, SA).map_err(asm)?;
                    for bit in (0..usize::BITS - 1 - e.leading_zeros()).rev() {
                        binop!(self, vmulpd, vmulps, SA, SA, Opd::R(SA))?;
                        if e >> bit & 1 == 1 {
                            binop!(self, vmulpd, vmulps, SA, SA, Opd::R(SB))?;
                        }
                    }
                }
                let (acc, count) = if p > 0 { (NUM, &mut in_num) } else { (DEN, &mut in_den) };
                let factors = chunk.len() * e;
                let renorm = *count + factors > limit;
                *count = if renorm { 1 + factors } else { *count + factors };
                if renorm {
                    pick!(self, vgetexppd, vgetexpps, SB, acc).map_err(asm)?;
                    if p > 0 {
                        binop!(self, vaddpd, vaddps, E, E, Opd::R(SB))?;
                    } else {
                        binop!(self, vsubpd, vsubps, E, E, Opd::R(SB))?;
                    }
                    pick!(self, vgetmantpd, vgetmantps, acc, acc, 0i32).map_err(asm)?;
                }
                binop!(self, vmulpd, vmulps, acc, acc, Opd::R(SA))?;
            }
        }
        // normal lanes (k5): the least term > 0 and |Σ p·exp(a)| < ∞
        let zero = self.c(0.0);
        let inf = self.c(f64::INFINITY);
        self.cmp(k3, RES, zero, GT_OQ)?;
        let abs = self.bits(!(1 << 63), !(1 << 31));
        binop!(self, vpandq, vpandd, SB, E, abs)?;
        self.cmp(k4, SB, inf, LT_OQ)?;
        self.a.kandw(k5, k3, k4).map_err(asm)?;
        // the other lanes' value: scale·Σ p·exp(a) (±∞ or NaN there), NaN where a term is
        // negative (k6)
        self.cmp(k6, RES, zero, LT_OQ)?;
        let sc = self.c(scale);
        binop!(self, vmulpd, vmulps, T1, E, sc)?;
        // ln(num/den) + E·ln2
        binop!(self, vdivpd, vdivps, NUM, NUM, Opd::R(DEN))?;
        self.log_split(NUM)?;
        self.log_poly(false)?;
        binop!(self, vmulpd, vmulps, RES, RES, sc)?;
        self.special_lanes(T1)
    }
}
