//! The `flowc` command line (DESIGN §8). Exit codes: 0 success, 1 user error (with a
//! message), 2 internal error. Bad input never panics and never leaves a partial file.

use crate::check;
use crate::codegen::clif::{Backend, Float, Options};
use crate::derive::{self, Derivation};
use crate::diag::Diagnostics;
use crate::interp::{self, Params};
use crate::ir::{self, Module, X, Y};
use crate::jit;
use crate::lower::{self, Kind};
use crate::report::{self, Format};
use clap::{Parser, Subcommand, ValueEnum};
use egg::Symbol;
use runtime::batch;
use runtime::io::{read_table, write_table, ReadOptions, RowReader, RowWriter, Table};
use std::path::{Path, PathBuf};

#[derive(Parser, Debug)]
#[command(
    name = "flowc",
    version,
    about = "A compiler for normalizing flows: write the forward map, get the inverse, the log-determinant and stable, checked formulas."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Derive and compile every layer on its own (no cross-layer fusion and simplification).
    #[arg(long, global = true)]
    pub no_fuse: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show derived formulas: inverse, log|det J|, domain, range, and the stability report.
    Derive {
        /// A `.flow` file.
        file: PathBuf,
        /// Only this flow or bijector.
        #[arg(long)]
        name: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// Also print e-graph runs and times.
        #[arg(long)]
        timings: bool,
    },
    /// Verify every derived formula numerically; exit code 1 when any exceeds its bound.
    Check {
        file: PathBuf,
        /// Only this flow or bijector.
        #[arg(long)]
        name: Option<String>,
    },
    /// Evaluate a flow or bijector on rows of a `.csv` or `.npy` file (columns: outputs, then log|det J|).
    Eval {
        file: PathBuf,
        /// The flow or bijector to evaluate.
        #[arg(long)]
        name: String,
        /// Input rows (`.csv` or `.npy`).
        #[arg(long)]
        input: PathBuf,
        #[arg(long, value_enum)]
        direction: Direction,
        /// Output file (`.csv` or `.npy`); written only when every row succeeded.
        #[arg(long)]
        output: PathBuf,
        /// Set a parameter: `NAME=VALUE` for a bijector, `layers.K.NAME=VALUE` for a flow
        /// (every entry of that tensor; applied after `--params`).
        #[arg(long = "param", value_name = "NAME=VALUE")]
        params: Vec<String>,
        /// A flow's parameters (safetensors; `flowc params` lists the names). Without it,
        /// parameters take their identity-like defaults.
        #[arg(long = "params", value_name = "FILE")]
        params_file: Option<PathBuf>,
        /// Threads for a flow (0 = all cores).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Precision of a flow's compiled kernel (bijectors are evaluated in f64).
        #[arg(long, value_enum, default_value = "f64")]
        precision: Precision,
    },
    /// Log-densities of the rows of a `.csv` or `.npy` file with the JIT-compiled kernel.
    Score {
        file: PathBuf,
        /// The flow to score with.
        #[arg(long)]
        name: String,
        #[arg(long)]
        input: PathBuf,
        /// Output file (`.csv` or `.npy`): one column, log p(x); written only on success.
        #[arg(long)]
        output: PathBuf,
        /// Set a parameter for every coordinate: `layers.K.NAME=VALUE` (after `--params`).
        #[arg(long = "param", value_name = "NAME=VALUE")]
        params: Vec<String>,
        /// The flow's parameters (safetensors).
        #[arg(long = "params", value_name = "FILE")]
        params_file: Option<PathBuf>,
        /// Threads (0 = all cores).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        #[arg(long, value_enum, default_value = "f64")]
        precision: Precision,
    },
    /// Compile time and throughput of a flow's log_prob kernel, per precision and thread count;
    /// without `--name`, the compile time of every kernel of every flow in the file.
    Bench {
        file: PathBuf,
        #[arg(long)]
        name: Option<String>,
        /// Rows per measurement.
        #[arg(long, default_value_t = 1 << 20)]
        rows: usize,
        #[arg(long = "param", value_name = "NAME=VALUE")]
        params: Vec<String>,
        /// The flow's parameters (safetensors).
        #[arg(long = "params", value_name = "FILE")]
        params_file: Option<PathBuf>,
        /// How transcendental functions are computed: `inline` vector code, `call` one compiled
        /// copy per function, `libm` lane by lane, or `auto` (inline when there are few).
        #[arg(long, value_enum, default_value = "auto")]
        math: MathMode,
        /// The code generator: `auto` (AVX-512 machine code for the kernels of plain arithmetic
        /// it takes, on CPUs that have it, with `--math auto`) or `cranelift`.
        #[arg(long, value_enum, default_value = "auto")]
        backend: BackendArg,
        /// Which kernel to time.
        #[arg(long, value_enum, default_value = "log-prob")]
        kernel: BenchKernel,
    },
    /// Print generated code: the backend-neutral kernels, Cranelift IR, Rust, or AVX-512 code.
    Emit {
        file: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long, value_enum)]
        target: Target,
        #[arg(long, value_enum, default_value = "f64")]
        precision: Precision,
    },
    /// List a flow's parameter tensors (names, shapes); with `--init SEED --out P`, write a
    /// seeded standard initialization.
    Params {
        file: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long, requires = "out")]
        init: Option<u64>,
        /// Where to write the initialization (safetensors).
        #[arg(long, requires = "init")]
        out: Option<PathBuf>,
        /// Element type of the written file.
        #[arg(long, value_enum, default_value = "f64")]
        dtype: Precision,
    },
    /// Draw samples from a flow: base samples pushed through the forward kernel. Columns:
    /// the point, then log p(x). The same seed gives the same rows for any thread count.
    Sample {
        file: PathBuf,
        #[arg(long)]
        name: String,
        /// The flow's parameters (safetensors).
        #[arg(long = "params", value_name = "FILE")]
        params_file: Option<PathBuf>,
        /// Number of samples.
        #[arg(short = 'n', long = "count")]
        count: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Output file (`.csv` or `.npy`).
        #[arg(long)]
        output: PathBuf,
        #[arg(long, default_value_t = 0)]
        threads: usize,
        #[arg(long, value_enum, default_value = "f64")]
        precision: Precision,
    },
    /// Fit a flow to data by maximum likelihood: Adam on the mean negative log-likelihood of
    /// seeded minibatches, with the gradient kernels JIT-compiled. Writes the parameters to
    /// `--out` and the optimizer state next to it (`P.state.safetensors`, for `--resume`).
    Train(crate::train::TrainCommand),
    /// The ULP table of the compiled vector math: every function in f64 and f32 against the
    /// high-precision reference; exit code 1 if any exceeds its bound.
    Ulp {
        /// Points per function and precision.
        #[arg(long, default_value_t = 100_000)]
        points: usize,
    },
    /// The built-in end-to-end example: parse, derive, check and evaluate a flow; then fit a
    /// RealNVP flow to two moons and a neural spline flow to pinwheel (2-D data made
    /// in-process), print the test NLL, and write figures (learned density, samples next to
    /// the data, training curves) as PNG files.
    Demo {
        /// Directory for the figures.
        #[arg(long, default_value = "flowc-demo")]
        out: PathBuf,
        /// Adam steps per dataset (0: no training part).
        #[arg(long, default_value_t = 5000)]
        steps: usize,
        #[arg(long, default_value_t = 0)]
        threads: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Precision {
    F32,
    F64,
}

impl Precision {
    pub fn float(self) -> Float {
        match self {
            Precision::F32 => Float::F32,
            Precision::F64 => Float::F64,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScheduleArg {
    Constant,
    Cosine,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchKernel {
    LogProb,
    Sample,
    /// A sphere or simplex flow's forward map with the generic volume ratio (forward-mode
    /// Jacobian and a determinant), next to the closed forms' forward kernel
    Ratio,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MathMode {
    Auto,
    Inline,
    Call,
    Libm,
}

impl MathMode {
    pub fn options(self) -> Options {
        use crate::codegen::clif::MathMode as M;
        Options {
            math: match self {
                MathMode::Auto => M::Auto,
                MathMode::Inline => M::Inline,
                MathMode::Call => M::Call,
                MathMode::Libm => M::Libm,
            },
            ..Options::default()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    Auto,
    Cranelift,
}

impl BackendArg {
    fn backend(self) -> Backend {
        match self {
            BackendArg::Auto => Backend::Auto,
            BackendArg::Cranelift => Backend::Cranelift,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Target {
    Kernel,
    Clif,
    /// Rust source, as `flow! { ... }` expands to (a flow's struct, or a bijector's type).
    Rust,
    /// The AVX-512 x86-64 code of the kernels the AVX-512 backend takes (disassembled).
    Asm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Direction {
    Forward,
    Inverse,
}

/// A failure with its exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

fn user(message: impl Into<String>) -> Failure {
    Failure { code: 1, message: message.into() }
}

/// Reads, parses, builds and derives a file; diagnostics are rendered with file:line:col.
/// Consecutive elementwise layers are fused (derived as one map) unless `fuse` is false.
pub fn load(path: &Path, fuse: bool) -> Result<(String, Module, Derivation), Failure> {
    let src = std::fs::read_to_string(path).map_err(|e| user(format!("error: cannot read `{}`: {e}", path.display())))?;
    load_str_with(&path.display().to_string(), &src, fuse)
}

/// [`load`] from a string, with fusion.
pub fn load_str(file: &str, src: &str) -> Result<(String, Module, Derivation), Failure> {
    load_str_with(file, src, true)
}

/// [`load`] from a string.
pub fn load_str_with(file: &str, src: &str, fuse: bool) -> Result<(String, Module, Derivation), Failure> {
    let fail = |d: Diagnostics| user(d.render(file, src).trim_end().to_string());
    let ast = crate::dsl::parse(src).map_err(fail)?;
    let m = ir::build(&ast).map_err(fail)?;
    crate::dump("ir", || {
        m.bijectors.iter().map(|b| format!("bijector {} on {}: y = {}\n", b.name, b.domain, ir::expr::to_infix(&b.forward))).collect()
    });
    let d = derive::derive_configured(&m, derive::run::Limits::default(), fuse).map_err(fail)?;
    crate::dump("derive", || report::text(&d, None, true));
    Ok((src.to_string(), m, d))
}

fn check_name(m: &Module, name: &str, file: &Path) -> Result<(), Failure> {
    if m.flow(name).is_some() || m.bijector(name).is_some() {
        return Ok(());
    }
    let names = m.names();
    let mut msg = format!("error: `{}` defines no flow or bijector named `{name}`", file.display());
    if let Some(s) = ir::suggest(name, names.iter().map(|s| s.as_str())) {
        msg.push_str(&format!("\n  = help: did you mean `{s}`?"));
    } else if names.is_empty() {
        msg.push_str("\n  = help: the file defines nothing");
    } else {
        msg.push_str(&format!("\n  = help: it defines: {}", names.join(", ")));
    }
    Err(user(msg))
}

/// Runs a parsed command line; returns what to print on stdout.
pub fn run(cli: Cli) -> Result<String, Failure> {
    let fuse = !cli.no_fuse;
    match cli.command {
        Command::Derive { file, name, format, timings } => {
            let (_, m, d) = load(&file, fuse)?;
            if let Some(n) = &name {
                check_name(&m, n, &file)?;
            }
            Ok(match format {
                Format::Text => report::text(&d, name.as_deref(), timings),
                Format::Latex => report::latex(&d, name.as_deref()),
                Format::Json => {
                    serde_json::to_string_pretty(&report::json(&d, name.as_deref()))
                        .map_err(|e| Failure { code: 2, message: e.to_string() })?
                        + "\n"
                }
            })
        }
        Command::Check { file, name } => {
            let (_, m, d) = load(&file, fuse)?;
            if let Some(n) = &name {
                check_name(&m, n, &file)?;
            }
            let r = check::check(&d, name.as_deref());
            let table = r.render();
            if r.passed() {
                Ok(format!("{table}all {} checks passed (bound: 16 eps (|v| + |u v'(u)| + 1))\n", r.rows.len()))
            } else {
                let failed = r.rows.iter().filter(|r| !r.passed && r.note.is_none()).count();
                Err(user(format!("{table}error: {failed} of {} checks exceeded their bound", r.rows.len())))
            }
        }
        Command::Eval { file, name, input, direction, output, params, params_file, threads, precision } => {
            let (_, m, d) = load(&file, fuse)?;
            check_name(&m, &name, &file)?;
            let table = read_table(&input, &ReadOptions::default()).map_err(|e| user(format!("error: {e}")))?;
            let out = eval_table(&d, &name, &table, direction, &params, params_file.as_deref(), &input, precision, threads)?;
            write_table(&output, &out.0, Some(&out.1)).map_err(|e| user(format!("error: {e}")))?;
            Ok(String::new())
        }
        Command::Score { file, name, input, output, params, params_file, threads, precision } => {
            let (_, m, d) = load(&file, fuse)?;
            check_flow(&m, &d, &name, &file)?;
            let f = d.flow(&name).expect("checked");
            let flat = flat_params(&d, f, params_file.as_deref(), &params)?;
            let mut reader = RowReader::open(&input, &ReadOptions::default()).map_err(|e| user(format!("error: {e}")))?;
            if reader.cols() != f.dim {
                return Err(user(format!(
                    "error: {}: rows have {} columns, but flow `{name}` is on {} and needs {}",
                    input.display(),
                    reader.cols(),
                    f.space.spelled(f.dim),
                    f.dim
                )));
            }
            let program = lower::lower(&d).map_err(internal)?;
            let k = program.kernel(&name, Kind::LogProb).expect("every flow has a log_prob kernel");
            let engine = Engine::new(k, precision.float());
            // stream: a reader thread reads the next chunk while this one is scored on all
            // threads and appended (memory: a few chunks); the output appears only when every
            // row succeeded
            let mut writer = RowWriter::create(&output, 1, Some(&["log_prob".to_string()])).map_err(|e| user(format!("error: {e}")))?;
            let mut out = Vec::new();
            let mut done = 0usize;
            std::thread::scope(|scope| -> Result<(), Failure> {
                let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Vec<f64>, String>>(1);
                scope.spawn(move || loop {
                    let mut rows = Vec::new();
                    let chunk = match reader.next_chunk(STREAM_ROWS, &mut rows) {
                        Ok(0) => return,
                        Ok(_) => Ok(rows),
                        Err(e) => Err(e.to_string()),
                    };
                    let failed = chunk.is_err();
                    // a closed channel: the scoring side stopped at an error
                    if tx.send(chunk).is_err() || failed {
                        return;
                    }
                });
                for chunk in rx {
                    let rows = chunk.map_err(|e| user(format!("error: {e}")))?;
                    let n = rows.len() / f.dim;
                    crate::interp::check_rows(f, &rows, done)
                        .map_err(|e| user(format!("error: {}: {e}; nothing was written", input.display())))?;
                    out.resize(n, 0.0);
                    engine.run(f.dim, 1, &rows, &flat, &mut out, threads)?;
                    if let Some(r) = out.iter().position(|v| v.is_nan()) {
                        return Err(user(format!(
                            "error: {}: row {}: log p(x) is not defined at {:?}; nothing was written",
                            input.display(),
                            done + r + 1,
                            &rows[r * f.dim..(r + 1) * f.dim]
                        )));
                    }
                    writer.write_chunk(&out).map_err(|e| user(format!("error: {e}")))?;
                    done += n;
                }
                Ok(())
            })?;
            writer.finish().map_err(|e| user(format!("error: {e}")))?;
            if let Some(n) = engine.note() {
                eprintln!("note: {n}");
            }
            Ok(String::new())
        }
        Command::Bench { file, name, rows, params, params_file, math, backend, kernel } => {
            let (_, m, d) = load(&file, fuse)?;
            let opts = Options { backend: backend.backend(), ..math.options() };
            match name {
                Some(name) => {
                    check_flow(&m, &d, &name, &file)?;
                    bench(&d, &name, rows, params_file.as_deref(), &params, opts, kernel)
                }
                None => compile_times(&d, opts),
            }
        }
        Command::Emit { file, name, target, precision } => {
            let (_, m, d) = load(&file, fuse)?;
            if target == Target::Rust {
                // a flow or a bijector
                check_name(&m, &name, &file)?;
                let program = lower::lower(&d).map_err(internal)?;
                let code = crate::codegen::rust::emit_item(&d, &program, &name, &Default::default())
                    .map_err(|d| user(d.render(&file.display().to_string(), "").trim_end().to_string()))?;
                return Ok(crate::codegen::rust::pretty(code));
            }
            check_flow(&m, &d, &name, &file)?;
            let program = lower::lower(&d).map_err(internal)?;
            let mut out = String::new();
            // the three kernels, then the gradient kernel derived from log_prob
            let gradient = crate::grad::gradient(program.kernel(&name, Kind::LogProb).expect("lowered"));
            for kind in [Kind::Forward, Kind::Inverse, Kind::LogProb, Kind::Gradient] {
                let k = match kind {
                    Kind::Gradient => match &gradient {
                        Ok(g) => g,
                        Err(e) => {
                            out.push_str(&format!("; {name}.gradient: not derived: {e}\n"));
                            continue;
                        }
                    },
                    _ => program.kernel(&name, kind).expect("lowered"),
                };
                match target {
                    Target::Kernel => out.push_str(&k.to_string()),
                    Target::Rust => unreachable!("handled above"),
                    Target::Asm => match crate::codegen::x64::emit(k, precision.float()) {
                        Ok(n) => out.push_str(&format!("; {}.{} ({:?})\n{}", name, kind.name(), precision, n.disassembly())),
                        Err(e) => out.push_str(&format!("; {}.{}: {}\n", name, kind.name(), e.0)),
                    },
                    Target::Clif => match jit::compile_with(k, precision.float(), CRANELIFT) {
                        Ok(c) => out.push_str(&format!(
                            "; {}.{} ({:?}), compiled in {:.2} ms\n{}\n",
                            name,
                            kind.name(),
                            precision,
                            c.compile_ms,
                            c.clif
                        )),
                        Err(e) => out.push_str(&format!("; {}.{}: not compiled: {}\n", name, kind.name(), e.0)),
                    },
                }
                out.push('\n');
            }
            Ok(out)
        }
        Command::Params { file, name, init, out, dtype } => {
            let (_, m, d) = load(&file, fuse)?;
            check_flow(&m, &d, &name, &file)?;
            let f = d.flow(&name).expect("checked");
            match (init, out) {
                (Some(seed), Some(out)) => {
                    let p = crate::params::init(&d, f, seed);
                    let dt =
                        if dtype == Precision::F32 { runtime::param_file::FileDtype::F32 } else { runtime::param_file::FileDtype::F64 };
                    crate::params::save(&p, &out, dt).map_err(|e| user(format!("error: {e}")))?;
                    Ok(format!("wrote {} tensors to {}\n", p.values.len(), out.display()))
                }
                _ => Ok(crate::params::listing(f)),
            }
        }
        Command::Sample { file, name, params_file, count, seed, output, threads, precision } => {
            let (_, m, d) = load(&file, fuse)?;
            check_flow(&m, &d, &name, &file)?;
            let f = d.flow(&name).expect("checked");
            if count == 0 {
                return Err(user("error: `-n` must be at least 1"));
            }
            let flat = flat_params(&d, f, params_file.as_deref(), &[])?;
            let program = lower::lower(&d).map_err(internal)?;
            let k = program.kernel(&name, Kind::Forward).expect("every flow has a forward kernel");
            let engine = Engine::new(k, precision.float());
            runtime::io::format_of(&output).map_err(|e| user(format!("error: {e}")))?;
            let mut header: Vec<String> = (0..f.dim).map(|i| format!("x{i}")).collect();
            header.push("log_prob".into());
            let mut writer = RowWriter::create(&output, f.dim + 1, Some(&header)).map_err(|e| user(format!("error: {e}")))?;
            let mut done = 0;
            let mut out = Vec::new();
            while done < count {
                let n = STREAM_ROWS.min(count - done);
                let z = crate::interp::base_rows(f, seed, done, n);
                out.resize(n * (f.dim + 1), 0.0);
                engine.run(f.dim, f.dim + 1, &z, &flat, &mut out, threads)?;
                // log p(x) = log p0(z) - log|det J|
                for (r, row) in out.chunks_mut(f.dim + 1).enumerate() {
                    let base = crate::interp::base_log_pdf(f, &z[r * f.dim..(r + 1) * f.dim]);
                    row[f.dim] = base - row[f.dim];
                }
                writer.write_chunk(&out).map_err(|e| user(format!("error: {e}")))?;
                done += n;
            }
            writer.finish().map_err(|e| user(format!("error: {e}")))?;
            if let Some(n) = engine.note() {
                eprintln!("note: {n}");
            }
            Ok(String::new())
        }
        Command::Ulp { points } => {
            let rows = crate::ulp::table(points.max(100));
            let table = crate::ulp::render(&rows);
            if rows.iter().all(|r| r.max_ulps <= r.bound) {
                Ok(table)
            } else {
                Err(user(format!("{table}error: some functions exceed their bound")))
            }
        }
        Command::Train(t) => {
            let (_, m, d) = load(&t.file, fuse)?;
            check_flow(&m, &d, &t.name, &t.file)?;
            crate::train::run(&d, &t)
        }
        Command::Demo { out, steps, threads } => {
            let mut text = demo()?;
            if steps > 0 {
                let opts = crate::demo::DemoOptions { out, steps, threads };
                text.push('\n');
                text.push_str(&crate::demo::run(&opts).map_err(|e| user(format!("error: {e}")))?);
            }
            Ok(text)
        }
    }
}

fn internal(d: Diagnostics) -> Failure {
    Failure { code: 2, message: format!("internal error: {d}") }
}

/// `name` must be a flow (commands that run kernels).
fn check_flow(m: &Module, d: &Derivation, name: &str, file: &Path) -> Result<(), Failure> {
    check_name(m, name, file)?;
    if d.flow(name).is_none() {
        return Err(user(format!("error: `{name}` is a bijector; this command needs a flow\n  = help: wrap it: `flow f(x: R^1) {{ base normal; elementwise({name}); }}`")));
    }
    Ok(())
}

/// The flat parameter buffer of a flow, in kernel slot order, with `--param` settings applied.
/// A flow's parameters: the file (or the defaults), then each `NAME=VALUE`.
fn flow_params(d: &Derivation, f: &crate::derive::FlowDerivation, file: Option<&Path>, sets: &[String]) -> Result<Params, Failure> {
    let mut p = match file {
        Some(path) => crate::params::load(d, f, path).map_err(|e| user(format!("error: {e}")))?,
        None => Params::defaults(d, f),
    };
    for s in sets {
        let (k, v) = parse_param(s)?;
        p.set(&k, v).map_err(|e| user(format!("error: {e}")))?;
    }
    Ok(p)
}

fn flat_params(d: &Derivation, f: &crate::derive::FlowDerivation, file: Option<&Path>, sets: &[String]) -> Result<Vec<f64>, Failure> {
    Ok(crate::params::flat(f, &flow_params(d, f, file, sets)?))
}

/// A kernel ready to run: JIT-compiled when possible, else interpreted.
enum Engine<'k> {
    Jit(Box<jit::Compiled>),
    Interp(&'k lower::Kernel, String),
}

impl<'k> Engine<'k> {
    fn new(k: &'k lower::Kernel, prec: Float) -> Engine<'k> {
        match jit::compile(k, prec) {
            Ok(c) => Engine::Jit(Box::new(c)),
            Err(e) => Engine::Interp(k, format!("{}; evaluated by the interpreter", e.0)),
        }
    }

    /// Why the kernel is interpreted, if it is.
    fn note(&self) -> Option<&str> {
        match self {
            Engine::Jit(_) => None,
            Engine::Interp(_, n) => Some(n),
        }
    }

    /// Runs over rows (`dim` values each) on `threads` threads; `out` gets the kernel's outputs.
    fn run(&self, dim: usize, outputs: usize, rows: &[f64], params: &[f64], out: &mut [f64], threads: usize) -> Result<(), Failure> {
        let fail = |e: String| Failure { code: 2, message: format!("internal error: {e}") };
        match self {
            Engine::Jit(c) if c.precision == Float::F64 => c.run_batch_f64(rows, params, out, threads).map_err(|e| fail(e.0)),
            Engine::Jit(c) => {
                let r32: Vec<f32> = rows.iter().map(|v| *v as f32).collect();
                let p32: Vec<f32> = params.iter().map(|v| *v as f32).collect();
                let mut o32 = vec![0.0f32; out.len()];
                c.run_batch_f32(&r32, &p32, &mut o32, threads).map_err(|e| fail(e.0))?;
                out.iter_mut().zip(o32).for_each(|(a, b)| *a = b as f64);
                Ok(())
            }
            Engine::Interp(k, _) => batch::run_rows(rows, dim, out, outputs, threads, &|r: &[f64], o: &mut [f64]| {
                for (row, dst) in r.chunks(dim).zip(o.chunks_mut(outputs)) {
                    dst.copy_from_slice(&lower::run(k, row, params));
                }
            })
            .map_err(fail),
        }
    }
}

/// Runs a kernel over rows: JIT-compiled when possible (else interpreted, with a note).
fn run_kernel(
    k: &lower::Kernel,
    prec: Float,
    rows: &[f64],
    params: &[f64],
    out: &mut [f64],
    threads: usize,
) -> Result<Option<String>, Failure> {
    let e = Engine::new(k, prec);
    e.run(k.dim, k.outputs.len(), rows, params, out, threads)?;
    Ok(e.note().map(|s| s.to_string()))
}

/// Rows per chunk when streaming a file through a kernel (memory is O(chunk), not O(file)).
const STREAM_ROWS: usize = 1 << 16;
/// `emit --target clif` shows Cranelift IR whatever backend would run the kernel.
const CRANELIFT: Options = Options { math: crate::codegen::clif::MathMode::Auto, backend: Backend::Cranelift };

#[allow(clippy::too_many_arguments)]
fn bench(
    d: &Derivation,
    name: &str,
    rows: usize,
    params_file: Option<&Path>,
    params: &[String],
    opts: Options,
    which: BenchKernel,
) -> Result<String, Failure> {
    let f = d.flow(name).expect("checked");
    let flat = flat_params(d, f, params_file, params)?;
    let program = lower::lower(d).map_err(internal)?;
    let fk = program.kernel(name, Kind::Forward).expect("lowered");
    let generic;
    let lk = match which {
        BenchKernel::LogProb => program.kernel(name, Kind::LogProb).expect("lowered"),
        BenchKernel::Sample => fk,
        BenchKernel::Ratio => {
            generic = crate::ratio::generic(fk, f.space).map_err(|e| user(format!("error: `--kernel ratio`: {e}")))?;
            &generic
        }
    };
    // data: base samples pushed through the flow
    let z = crate::interp::base_rows(f, 0x5eed, 0, rows);
    let mut fx = vec![0.0; rows * (f.dim + 1)];
    run_kernel(fk, Float::F64, &z, &flat, &mut fx, 0)?;
    // log_prob reads data points; sampling pushes base points forward
    let x: Vec<f64> = if which == BenchKernel::LogProb { fx.chunks(f.dim + 1).flat_map(|r| r[..f.dim].to_vec()).collect() } else { z };
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let what = match which {
        BenchKernel::LogProb => "log_prob",
        BenchKernel::Sample => "sampling (forward kernel on base points)",
        BenchKernel::Ratio => "the generic volume ratio (forward map; log R by forward-mode Jacobian and determinant) on base points",
    };
    let mut out = format!("flow {name}: {what} on {rows} rows of {} values (median time of repeated runs)\n", f.dim);
    // the dense layers' work per row, counted as dense products (2·out·in per layer)
    let flops: usize =
        lk.body.insts.iter().map(|i| if let lower::Inst::Dense { inputs, outputs, .. } = i { 2 * inputs.len() * outputs } else { 0 }).sum();
    out.push_str(&format!("{:<6} {:>8} {:>14} {:>16} {:>10}", "prec", "threads", "compile ms", "points/s", "GB/s in"));
    out.push_str(&if flops > 0 { format!(" {:>12}\n", "GFLOP/s") } else { "\n".into() });
    let (x32, p32): (Vec<f32>, Vec<f32>) = (x.iter().map(|v| *v as f32).collect(), flat.iter().map(|v| *v as f32).collect());
    // the median time of a compiled kernel over all rows on `t` threads
    let time = |c: &jit::Compiled, t: usize| -> Result<f64, Failure> {
        let (mut o64, mut o32) = (vec![0.0; rows * c.outputs], vec![0.0f32; rows * c.outputs]);
        median_secs(|| match c.precision {
            Float::F64 => c.run_batch_f64(&x, &flat, std::hint::black_box(&mut o64), t).map_err(|e| e.0),
            Float::F32 => c.run_batch_f32(&x32, &p32, std::hint::black_box(&mut o32), t).map_err(|e| e.0),
        })
    };
    for prec in [Float::F64, Float::F32] {
        let c = match jit::compile_with(lk, prec, opts) {
            Ok(c) => c,
            Err(e) => {
                out.push_str(&format!("{prec:?}: not compiled: {}\n", e.0));
                continue;
            }
        };
        let mut thread_counts = vec![1];
        if cores > 1 {
            thread_counts.push(cores);
        }
        for &t in &thread_counts {
            let med = time(&c, t)?;
            let bytes = (rows * f.dim) as f64 * if prec == Float::F64 { 8.0 } else { 4.0 };
            out.push_str(&format!(
                "{:<6} {:>8} {:>14.2} {:>16.3e} {:>10.2}",
                format!("{prec:?}").to_lowercase(),
                t,
                c.compile_ms,
                rows as f64 / med,
                bytes / med / 1e9
            ));
            out.push_str(&if flops > 0 { format!(" {:>12.1}\n", flops as f64 * rows as f64 / med / 1e9) } else { "\n".into() });
        }
    }
    if which == BenchKernel::Ratio {
        // the closed forms on the same points, at the same thread count, per precision
        let t = cores;
        let rate = |k: &lower::Kernel, prec: Float| -> Result<f64, Failure> {
            let c = jit::compile_with(k, prec, opts).map_err(|e| user(format!("error: not compiled: {}", e.0)))?;
            Ok(rows as f64 / time(&c, t)?)
        };
        let bases = crate::ratio::generic_bases(fk, f.space).map_err(|e| user(format!("error: `--kernel ratio`: {e}")))?;
        for prec in [Float::F64, Float::F32] {
            let (closed, gen, with_bases) = (rate(fk, prec)?, rate(lk, prec)?, rate(&bases, prec)?);
            let p = format!("{prec:?}").to_lowercase();
            out.push_str(&format!(
                "{p}, {t} threads: closed forms (the forward kernel) {closed:.3e} points/s; generic {gen:.3e}: closed / generic = {:.1}; \
                 generic with tangent bases formed (Householder, |det(T_yᵀ F T_x)| as defined) {with_bases:.3e}: closed / it = {:.1}\n",
                closed / gen,
                closed / with_bases
            ));
        }
    }
    if flops > 0 {
        out.push_str(&format!(
            "dense layers: {:.1} kFLOP per row (as dense products); this CPU's tile product (128 x 128 x 128, one thread): {:.1} GFLOP/s f64, {:.1} f32\n",
            flops as f64 / 1e3,
            crate::codegen::tile::peak_gflops::<f64>(),
            crate::codegen::tile::peak_gflops::<f32>()
        ));
    }
    Ok(out)
}

/// The median wall time of `run` after one untimed run (threads started, pages touched):
/// at least five timed runs and a quarter of a second, at most 1000 runs (a batch error stops
/// the bench, exit code 2).
fn median_secs(mut run: impl FnMut() -> Result<(), String>) -> Result<f64, Failure> {
    run().map_err(|e| Failure { code: 2, message: e })?;
    let (mut times, begin) = (Vec::new(), std::time::Instant::now());
    while times.len() < 5 || (begin.elapsed().as_secs_f64() < 0.25 && times.len() < 1000) {
        let start = std::time::Instant::now();
        run().map_err(|e| Failure { code: 2, message: e })?;
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(|a, b| a.total_cmp(b));
    Ok(times[times.len() / 2])
}

/// Compile time of every kernel of every flow, f64 and f32.
fn compile_times(d: &Derivation, opts: Options) -> Result<String, Failure> {
    let program = lower::lower(d).map_err(internal)?;
    let mut out = format!("{:<24} {:<9} {:>12} {:>12}\n", "flow", "kernel", "f64 ms", "f32 ms");
    let mut total = 0.0;
    for k in &program.kernels {
        let mut cols = Vec::new();
        for prec in [Float::F64, Float::F32] {
            cols.push(match jit::compile_with(k, prec, opts) {
                Ok(c) => {
                    total += c.compile_ms;
                    format!("{:>12.2}", c.compile_ms)
                }
                Err(_) => format!("{:>12}", "interpreted"),
            });
        }
        out.push_str(&format!("{:<24} {:<9} {}\n", k.flow, k.kind.name(), cols.join(" ")));
    }
    out.push_str(&format!("total {total:.1} ms for {} kernels in 2 precisions\n", program.kernels.len()));
    Ok(out)
}

fn parse_param(s: &str) -> Result<(String, f64), Failure> {
    let Some((k, v)) = s.split_once('=') else {
        return Err(user(format!("error: `--param {s}` must be NAME=VALUE, e.g. `--param eps=0.3`")));
    };
    let v: f64 = v.trim().parse().map_err(|_| user(format!("error: `--param {s}`: `{}` is not a number", v.trim())))?;
    if !v.is_finite() {
        return Err(user(format!("error: `--param {s}`: the value must be finite")));
    }
    Ok((k.trim().to_string(), v))
}

/// Evaluates every row; the output table has the outputs then log|det J| of the applied map.
#[allow(clippy::too_many_arguments)]
pub fn eval_table(
    d: &Derivation,
    name: &str,
    t: &Table,
    dir: Direction,
    params: &[String],
    params_file: Option<&Path>,
    input: &Path,
    precision: Precision,
    threads: usize,
) -> Result<(Table, Vec<String>), Failure> {
    let sets: Vec<(String, f64)> = params.iter().map(|s| parse_param(s)).collect::<Result<_, _>>()?;
    if let Some(f) = d.flow(name) {
        if t.cols != f.dim {
            return Err(user(format!(
                "error: {}: rows have {} column{}, but flow `{name}` is on {} and needs {}",
                input.display(),
                t.cols,
                if t.cols == 1 { "" } else { "s" },
                f.space.spelled(f.dim),
                f.dim
            )));
        }
        crate::interp::check_rows(f, &t.data, 0).map_err(|e| user(format!("error: {}: {e}; nothing was written", input.display())))?;
        // the fused forward or inverse kernel, JIT-compiled
        let flat = flat_params(d, f, params_file, params)?;
        let program = lower::lower(d).map_err(internal)?;
        let kind = if dir == Direction::Forward { Kind::Forward } else { Kind::Inverse };
        let k = program.kernel(name, kind).expect("every flow has forward and inverse kernels");
        let mut data = vec![0.0; t.rows * (f.dim + 1)];
        if let Some(n) = run_kernel(k, precision.float(), &t.data, &flat, &mut data, threads)? {
            eprintln!("note: {n}");
        }
        for (r, out) in data.chunks_mut(f.dim + 1).enumerate() {
            if out.iter().any(|v| v.is_nan()) || out[..f.dim].iter().any(|v| !v.is_finite()) {
                return Err(user(format!(
                    "error: {}: row {}: the {} map is not defined at {:?} (it produced {:?}); nothing was written",
                    input.display(),
                    r + 1,
                    if dir == Direction::Forward { "forward" } else { "inverse" },
                    t.row(r),
                    &out[..f.dim]
                )));
            }
            // the inverse kernel reports the forward layers' log-det; the applied map's is its negative
            if dir == Direction::Inverse {
                out[f.dim] = -out[f.dim];
            }
        }
        let mut header: Vec<String> = (0..f.dim).map(|i| format!("{}{i}", if dir == Direction::Forward { "x" } else { "z" })).collect();
        header.push("log_det".into());
        return Ok((Table::new(t.rows, f.dim + 1, data), header));
    }
    let b = d.bijector(name).expect("name checked");
    if t.cols != 1 {
        return Err(user(format!("error: {}: rows have {} columns, but bijector `{name}` is scalar and needs 1", input.display(), t.cols)));
    }
    let mut values: Vec<(Symbol, f64)> = b.params.iter().map(|p| (Symbol::from(p.name.as_str()), p.kind.default_value())).collect();
    for (k, v) in &sets {
        let Some(p) = b.params.iter().find(|p| p.name == *k) else {
            let names: Vec<&str> = b.params.iter().map(|p| p.name.as_str()).collect();
            return Err(user(format!(
                "error: bijector `{name}` has no parameter `{k}`{}",
                if names.is_empty() { "; it has no parameters".to_string() } else { format!("; its parameters are: {}", names.join(", ")) }
            )));
        };
        if !p.kind.interval().contains(*v) {
            return Err(user(format!("error: `--param {k}={v}`: `{k}` is {} and must lie in {}", p.kind.name(), p.kind.interval())));
        }
        values.iter_mut().find(|(s, _)| s.as_str() == k).unwrap().1 = *v;
    }
    let env = |s: Symbol| values.iter().find(|(n, _)| *n == s).map(|(_, v)| *v).unwrap_or(f64::NAN);
    let mut data = Vec::with_capacity(t.rows * 2);
    for r in 0..t.rows {
        let u = t.row(r)[0];
        let (set, what) = match dir {
            Direction::Forward => (b.domain, "domain"),
            Direction::Inverse => (b.range, "range"),
        };
        if !set.contains(u) {
            return Err(user(format!(
                "error: {}: row {}: {} = {u} is outside the {what} {set} of `{name}`; nothing was written",
                input.display(),
                r + 1,
                if dir == Direction::Forward { X } else { Y }
            )));
        }
        let (v, ld) = match dir {
            Direction::Forward => b.forward_f64(u, &env),
            Direction::Inverse => {
                let (x, ld) = b.inverse_f64(u, &env);
                (x, -ld)
            }
        };
        if !v.is_finite() || ld.is_nan() {
            return Err(user(format!(
                "error: {}: row {}: the result at {u} is not a finite number ({v}); nothing was written",
                input.display(),
                r + 1
            )));
        }
        data.push(v);
        data.push(ld);
    }
    let header = vec![if dir == Direction::Forward { "y".to_string() } else { "x".to_string() }, "log_det".to_string()];
    Ok((Table::new(t.rows, 2, data), header))
}

/// The demo's flow: written once, derived, checked, evaluated.
pub const DEMO_SOURCE: &str = r#"/// Sinh-arcsinh: skew and tail weight.
bijector sinh_arcsinh(x; eps: real, delta: positive) = sinh(delta * asinh(x) - eps);

/// Affine: shift and log-scale.
bijector affine(x; shift: real, log_scale: real) = x * exp(log_scale) + shift;

/// A heavy-tailed, skewed density on the plane.
flow skewed(x: R^2) {
    base normal;
    elementwise(sinh_arcsinh(eps = 0.5, delta = 0.7));
    elementwise(affine(shift = 1.0, log_scale = 0.25));
}
"#;

fn demo() -> Result<String, Failure> {
    let start = std::time::Instant::now();
    let (_, _, d) = load_str("demo.flow", DEMO_SOURCE)?;
    let mut out = String::new();
    out.push_str("== flowc demo: the flow as written ==\n\n");
    out.push_str(DEMO_SOURCE);
    out.push_str("\n== derived (inverse, log|det J|, stable forms chosen by measured error) ==\n\n");
    out.push_str(&report::text(&d, None, false));
    out.push_str("\n== numeric check against the high-precision reference ==\n\n");
    let r = check::check(&d, Some("skewed"));
    out.push_str(&r.render());
    let f = d.flow("skewed").expect("demo flow");
    let p = Params::defaults(&d, f);
    out.push_str("\n== evaluation: base points z -> data x -> back ==\n\n");
    out.push_str(&format!("{:>24} {:>24} {:>12} {:>12}\n", "z", "x = f(z)", "log p(x)", "|z' - z|"));
    for z in [[0.0, 0.0], [1.0, -1.0], [-2.5, 0.3], [3.0, 2.0], [-6.0, 8.0]] {
        let mut x = [0.0; 2];
        interp::forward(&d, f, &p, &z, &mut x);
        let mut back = [0.0; 2];
        interp::inverse(&d, f, &p, &x, &mut back);
        let lp = interp::log_prob(&d, f, &p, &x);
        let err = (back[0] - z[0]).abs().max((back[1] - z[1]).abs());
        out.push_str(&format!(
            "{:>24} {:>24} {:>12.6} {:>12.1e}\n",
            format!("({}, {})", z[0], z[1]),
            format!("({:.6}, {:.6})", x[0], x[1]),
            lp,
            err
        ));
    }
    out.push_str(&format!("\nderive took {:.1} ms; the whole demo {:.1} ms\n", d.millis, start.elapsed().as_secs_f64() * 1e3));
    if !r.passed() {
        return Err(Failure { code: 2, message: format!("{out}\ninternal error: the demo's own check failed") });
    }
    Ok(out)
}

/// The entry point of the binary: parses arguments, runs, prints, and returns the exit code.
pub fn main() -> i32 {
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let loc = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        eprintln!("internal error: {msg}{loc}\nthis is a bug in flowc; please report it with the input that caused it");
    }));
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            let code = match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => 0,
                _ => 1,
            };
            let _ = e.print();
            return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand { 1 } else { code };
        }
    };
    match std::panic::catch_unwind(|| run(cli)) {
        Ok(Ok(out)) => {
            print!("{out}");
            0
        }
        Ok(Err(f)) => {
            eprintln!("{}", f.message);
            f.code
        }
        Err(_) => 2,
    }
}
