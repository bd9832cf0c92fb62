//! A flow as a training objective ([`runtime::train::Objective`]): its gradient kernel
//! ([`crate::grad`]) and log_prob kernel JIT-compiled in one precision, run over fixed chunks
//! of [`CHUNK`] rows on a thread pool. Chunk results are added in chunk order, so a step's
//! loss and gradient do not depend on the number of threads. A kernel the JIT cannot compile
//! is interpreted (slowly, with a note).
//!
//! ```
//! use runtime::train::{Objective, Trainer, TrainOptions};
//! let src = "bijector affine(x; shift: real, log_scale: real) = x * exp(log_scale) + shift;
//!            flow f(x: R^1) { base normal; elementwise(affine); }";
//! let (_, _, d) = flowc::cli::load_str("f.flow", src).unwrap();
//! let obj = flowc::objective::FlowObjective::new(&d, "f", flowc::codegen::clif::Float::F64, 1).unwrap();
//! let data: Vec<f64> = (0..512).map(|i| 2.0 + 0.5 * ((i as f64 + 0.5) / 512.0 - 0.5) * 12f64.sqrt()).collect();
//! let opts = TrainOptions { steps: 1500, batch: 128, lr: 0.02, ..TrainOptions::default() };
//! let mut t = Trainer::new(&obj, obj.kinds(), vec![0.0; 2], &data, None, opts).unwrap();
//! t.run(|_| true).unwrap();
//! // the data: uniform with mean 2 and standard deviation 0.5
//! assert!((t.params()[0] - 2.0).abs() < 0.03 && (t.params()[1] - 0.5f64.ln()).abs() < 0.05, "{:?}", t.params());
//! ```

use crate::codegen::clif::Float;
use crate::derive::Derivation;
use crate::ir::ParamKind;
use crate::jit::{self, Compiled};
use crate::lower::{self, Kernel, Kind, ParamSlot};
use rayon::prelude::*;

/// Rows per unit of work (a multiple of the JIT's row tile).
pub const CHUNK: usize = 256;

enum Engine {
    Jit { grad: Box<Compiled>, log_prob: Box<Compiled> },
    Interp { grad: Box<Kernel>, log_prob: Box<Kernel> },
}

/// A flow's mean-NLL objective (see the module docs).
pub struct FlowObjective {
    engine: Engine,
    precision: Float,
    dim: usize,
    /// The flow's parameter tensors, in the flat layout.
    pub slots: Vec<ParamSlot>,
    /// Why the kernels are interpreted, when they are.
    pub note: Option<String>,
    /// Milliseconds to derive and compile the gradient and log_prob kernels.
    pub compile_ms: f64,
    pool: rayon::ThreadPool,
}

impl FlowObjective {
    /// The objective of flow `name`, its kernels in `precision`, on `threads` threads (0: all
    /// cores).
    pub fn new(d: &Derivation, name: &str, precision: Float, threads: usize) -> Result<FlowObjective, String> {
        let start = std::time::Instant::now();
        let f = d.flow(name).ok_or_else(|| format!("no flow named `{name}`"))?;
        let program = lower::lower(d).map_err(|e| format!("internal: {e}"))?;
        let lp = program.kernel(name, Kind::LogProb).expect("every flow has a log_prob kernel").clone();
        let g = crate::grad::gradient(&lp).map_err(|e| format!("cannot train `{name}`: {e}"))?;
        let (engine, note) = match (jit::compile(&g, precision), jit::compile(&lp, precision)) {
            (Ok(grad), Ok(log_prob)) => (Engine::Jit { grad: Box::new(grad), log_prob: Box::new(log_prob) }, None),
            (Err(e), _) | (_, Err(e)) => {
                (Engine::Interp { grad: Box::new(g), log_prob: Box::new(lp) }, Some(format!("{}; the kernels are interpreted", e.0)))
            }
        };
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().map_err(|e| format!("cannot start threads: {e}"))?;
        Ok(FlowObjective {
            engine,
            precision,
            dim: f.dim,
            slots: lower::param_slots(f),
            note,
            compile_ms: start.elapsed().as_secs_f64() * 1e3,
            pool,
        })
    }

    /// Each parameter entry's domain, for [`runtime::train::Trainer::new`].
    pub fn kinds(&self) -> Vec<runtime::params::Kind> {
        let mut out = Vec::new();
        for s in &self.slots {
            let k = match s.kind {
                ParamKind::Real => runtime::params::Kind::Real,
                ParamKind::Positive => runtime::params::Kind::Positive,
                ParamKind::Unit => runtime::params::Kind::Unit,
            };
            out.extend(std::iter::repeat_n(k, s.len));
        }
        out
    }

    fn param_count(&self) -> usize {
        self.slots.iter().map(|s| s.len).sum()
    }

    /// Σ log p and (with `grad`) Σ ∂ log p/∂θ of one chunk.
    fn chunk(&self, params: &[f64], params32: &[f32], rows: &[f64], grad: Option<&mut [f64]>) -> f64 {
        let n = rows.len() / self.dim;
        match (&self.engine, self.precision) {
            (Engine::Jit { grad: gk, log_prob }, Float::F64) => {
                let mut out = vec![0.0; n];
                match grad {
                    Some(g) => gk.run_grad_f64(rows, params, &mut out, g).expect("shapes checked"),
                    None => log_prob.run_f64(rows, params, &mut out).expect("shapes checked"),
                }
                out.iter().sum()
            }
            (Engine::Jit { grad: gk, log_prob }, Float::F32) => {
                let r32: Vec<f32> = rows.iter().map(|v| *v as f32).collect();
                let mut out = vec![0.0f32; n];
                match grad {
                    Some(g) => {
                        let mut g32 = vec![0.0f32; g.len()];
                        gk.run_grad_f32(&r32, params32, &mut out, &mut g32).expect("shapes checked");
                        g.iter_mut().zip(&g32).for_each(|(a, b)| *a += *b as f64);
                    }
                    None => log_prob.run_f32(&r32, params32, &mut out).expect("shapes checked"),
                }
                out.iter().map(|v| *v as f64).sum()
            }
            (Engine::Interp { grad: gk, log_prob }, _) => match grad {
                Some(g) => {
                    let mut total = 0.0;
                    for r in rows.chunks(self.dim) {
                        total += lower::run_grad(gk, r, params, g)[0];
                    }
                    total
                }
                None => rows.chunks(self.dim).map(|r| lower::run(log_prob, r, params)[0]).sum(),
            },
        }
    }

    fn over_chunks(&self, params: &[f64], rows: &[f64], grad: Option<&mut [f64]>) -> f64 {
        let params32: Vec<f32> = if self.precision == Float::F32 { params.iter().map(|v| *v as f32).collect() } else { Vec::new() };
        let p = self.param_count();
        let want = grad.is_some();
        let parts: Vec<(f64, Vec<f64>)> = self.pool.install(|| {
            rows.par_chunks(CHUNK * self.dim)
                .map(|c| {
                    let mut g = if want { vec![0.0; p] } else { Vec::new() };
                    let lp = self.chunk(params, &params32, c, want.then_some(g.as_mut_slice()));
                    (lp, g)
                })
                .collect()
        });
        let mut total = 0.0;
        if let Some(grad) = grad {
            for (lp, g) in &parts {
                total += lp;
                grad.iter_mut().zip(g).for_each(|(a, b)| *a += b);
            }
        } else {
            total = parts.iter().map(|(lp, _)| lp).sum();
        }
        total
    }
}

impl runtime::train::Objective for FlowObjective {
    fn dim(&self) -> usize {
        self.dim
    }
    fn param_len(&self) -> usize {
        self.param_count()
    }
    fn log_prob_grad(&self, params: &[f64], rows: &[f64], grad: &mut [f64]) -> f64 {
        self.over_chunks(params, rows, Some(grad))
    }
    fn log_prob_sum(&self, params: &[f64], rows: &[f64]) -> f64 {
        self.over_chunks(params, rows, None)
    }
}
