//! A whole flow on the JIT, from the source a `flow!` block or a `.flow` file was compiled
//! from: what the generated `jit()` method returns (crate feature `jit` of the user's crate,
//! which then depends on `flowc`). The kernels are compiled on first use, per kind and
//! precision, with the parameters of the generated flow.
//!
//! ```
//! use flowc::jit_flow::{FlowSource, JitFlow};
//! let src = "bijector affine(x; shift: real, log_scale: real) = x * exp(log_scale) + shift;
//!            flow f(x: R^1) { base normal; elementwise(affine(log_scale = 0)); }";
//! let f = JitFlow::new(FlowSource::Text(src), "f", &[1.0]).unwrap();
//! let mut lp = [0.0f64; 2];
//! f.log_prob_batch(&[1.0, 2.0], &mut lp).unwrap();
//! assert!((lp[0] - runtime::base::std_normal_log_pdf(0.0)).abs() < 1e-15);
//! ```

use crate::codegen::clif::Float;
use crate::jit::{self, Compiled};
use crate::lower::{Kind, Program};
use std::sync::OnceLock;

/// The source of a flow: the text of a `.flow` file, or the tokens of a `flow!` block as
/// text (`TokenStream::to_string`).
#[derive(Debug, Clone, Copy)]
pub enum FlowSource<'a> {
    Text(&'a str),
    Tokens(&'a str),
}

/// A flow's kernels on the JIT with fixed parameters.
pub struct JitFlow {
    program: Program,
    name: String,
    dim: usize,
    params: Vec<f64>,
    params32: Vec<f32>,
    /// (kind, precision) → compiled kernel, on first use.
    kernels: [OnceLock<Result<Compiled, String>>; 6],
}

/// `f64` or `f32`: the element types the JIT runs.
pub trait JitReal: Copy {
    const FLOAT: Float;
    #[doc(hidden)]
    fn run(c: &Compiled, rows: &[Self], f: &JitFlow, out: &mut [Self]) -> Result<(), String>;
}

impl JitReal for f64 {
    const FLOAT: Float = Float::F64;
    fn run(c: &Compiled, rows: &[f64], f: &JitFlow, out: &mut [f64]) -> Result<(), String> {
        c.run_f64(rows, &f.params, out).map_err(|e| e.0)
    }
}

impl JitReal for f32 {
    const FLOAT: Float = Float::F32;
    fn run(c: &Compiled, rows: &[f32], f: &JitFlow, out: &mut [f32]) -> Result<(), String> {
        c.run_f32(rows, &f.params32, out).map_err(|e| e.0)
    }
}

impl JitFlow {
    /// Compiles flow `name` of `src` (parse, derive, lower; kernels on first use) with the
    /// flat parameters `params` (the generated flow's layout).
    pub fn new(src: FlowSource<'_>, name: &str, params: &[f64]) -> Result<JitFlow, String> {
        let text = match src {
            FlowSource::Text(t) | FlowSource::Tokens(t) => t,
        };
        let ast = match src {
            FlowSource::Text(t) => crate::dsl::parse(t).map_err(|d| d.render("flow", t))?,
            FlowSource::Tokens(t) => {
                let tokens: proc_macro2::TokenStream = t.parse().map_err(|e| format!("the flow's tokens do not parse: {e}"))?;
                crate::dsl::parse_tokens(tokens).map_err(|d| d.render("flow!", t))?
            }
        };
        let (d, program) = crate::expand::pipeline(&ast).map_err(|d| d.render("flow", text))?;
        let f = d.flow(name).ok_or_else(|| format!("no flow `{name}` in the source"))?;
        let k = program.kernel(name, Kind::LogProb).expect("every flow is lowered");
        if k.param_len() != params.len() {
            return Err(format!("flow `{name}` takes {} parameter values, got {}", k.param_len(), params.len()));
        }
        Ok(JitFlow {
            name: name.to_string(),
            dim: f.dim,
            params: params.to_vec(),
            params32: params.iter().map(|v| *v as f32).collect(),
            program,
            kernels: Default::default(),
        })
    }

    fn kernel(&self, kind: Kind, prec: Float) -> Result<&Compiled, String> {
        let i = match kind {
            Kind::Forward => 0,
            Kind::Inverse => 1,
            Kind::LogProb => 2,
            Kind::Gradient => return Err("gradient kernels run through `flowc::objective`".into()),
            Kind::Ratio => return Err("generic volume-ratio kernels come from `flowc::ratio::generic`".into()),
        } * 2
            + usize::from(prec == Float::F32);
        self.kernels[i]
            .get_or_init(|| {
                let k = self.program.kernel(&self.name, kind).expect("every flow is lowered");
                jit::compile(k, prec).map_err(|e| format!("the {} kernel of `{}` is not compiled: {}", kind.name(), self.name, e.0))
            })
            .as_ref()
            .map_err(|e| e.clone())
    }

    /// log p(x) of every row of `xs` (`dim` values each) into `out`.
    pub fn log_prob_batch<T: JitReal>(&self, xs: &[T], out: &mut [T]) -> Result<(), String> {
        T::run(self.kernel(Kind::LogProb, T::FLOAT)?, xs, self, out)
    }

    /// x = f(z) and Σ log|det J| per row (`dim + 1` values per row of `out`).
    pub fn forward_batch<T: JitReal>(&self, zs: &[T], out: &mut [T]) -> Result<(), String> {
        T::run(self.kernel(Kind::Forward, T::FLOAT)?, zs, self, out)
    }

    /// z = f⁻¹(x) and Σ log|det J| at the recovered points (`dim + 1` values per row).
    pub fn inverse_batch<T: JitReal>(&self, xs: &[T], out: &mut [T]) -> Result<(), String> {
        T::run(self.kernel(Kind::Inverse, T::FLOAT)?, xs, self, out)
    }

    /// Dimension of the flow.
    pub fn dim(&self) -> usize {
        self.dim
    }
}
