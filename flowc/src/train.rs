//! `flowc train`: data and parameters in, [`runtime::train::Trainer`] on a
//! [`FlowObjective`], checkpoints and progress out.
//!
//! Files: `--out P.safetensors` receives the parameters (the best validated ones when there
//! is validation data), and `P.state.safetensors` next to it the optimizer state (current
//! parameters, Adam's moments, step, best validation) that `--resume` continues from. Both
//! are written atomically at every checkpoint and when the run ends; bad input (unreadable
//! or mismatched files, wrong column counts, NaN or infinite values, empty data) is reported
//! before anything is written.

use crate::cli::{Failure, Precision, ScheduleArg};
use crate::codegen::clif::Float;
use crate::derive::{Derivation, FlowDerivation};
use crate::objective::FlowObjective;
use runtime::param_file::{FileDtype, Tensor};
use runtime::train::{Objective, Outcome, Progress, Schedule, TrainError, TrainOptions, TrainState, Trainer};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

/// `flowc train`'s command line.
#[derive(clap::Args, Debug, Clone)]
pub struct TrainCommand {
    /// A `.flow` file.
    pub file: PathBuf,
    /// The flow to fit.
    #[arg(long)]
    pub name: String,
    /// Training rows (`.csv` or `.npy`), one point per row.
    #[arg(long)]
    pub data: PathBuf,
    /// Validation rows; the best validated parameters are the ones written.
    #[arg(long)]
    pub val: Option<PathBuf>,
    /// Hold out this fraction of the data (seeded) for validation instead of `--val`.
    #[arg(long)]
    pub val_fraction: Option<f64>,
    /// Where the trained parameters go (safetensors).
    #[arg(long)]
    pub out: PathBuf,
    /// Optimizer steps (default 1000).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Passes over the data instead of `--steps`.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Rows per minibatch.
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    #[arg(long, default_value_t = 0.9)]
    pub beta1: f64,
    #[arg(long, default_value_t = 0.999)]
    pub beta2: f64,
    #[arg(long, default_value_t = 1e-8)]
    pub eps: f64,
    /// Decoupled weight decay (AdamW).
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    #[arg(long, value_enum, default_value = "constant")]
    pub schedule: ScheduleArg,
    /// Seeds the minibatch order, the validation split and (without `--init`) the
    /// initialization.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Start from the seeded standard initialization (`flowc params --init`).
    #[arg(long)]
    pub init: Option<u64>,
    /// Start from these parameters (safetensors).
    #[arg(long = "params", value_name = "FILE")]
    pub params_file: Option<PathBuf>,
    /// Continue the run checkpointed at `--out` (same data and options).
    #[arg(long)]
    pub resume: bool,
    /// Validation NLL every this many steps.
    #[arg(long, default_value_t = 100)]
    pub val_every: usize,
    /// Stop after this many validations without improvement.
    #[arg(long)]
    pub patience: Option<usize>,
    /// Checkpoint every this many steps (always at the end).
    #[arg(long, default_value_t = 0)]
    pub checkpoint_every: usize,
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    #[arg(long, value_enum, default_value = "f64")]
    pub precision: Precision,
    /// No progress output.
    #[arg(long)]
    pub quiet: bool,
}

fn user(m: impl Into<String>) -> Failure {
    Failure { code: 1, message: m.into() }
}

/// Where the optimizer state of `out` lives: `P.safetensors` → `P.state.safetensors`.
pub fn state_path(out: &Path) -> PathBuf {
    let stem = out.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
    out.with_file_name(format!("{stem}.state.safetensors"))
}

/// Reads rows for training: every value finite, `dim` columns, at least one row.
pub fn read_rows(path: &Path, f: &FlowDerivation, what: &str) -> Result<Vec<f64>, Failure> {
    let dim = f.dim;
    let t = runtime::io::read_table(path, &Default::default()).map_err(|e| user(format!("error: {e}")))?;
    if t.rows == 0 {
        return Err(user(format!("error: {}: the {what} file has no rows", path.display())));
    }
    if t.cols != dim {
        return Err(user(format!(
            "error: {}: rows have {} columns, but the flow is on {} and needs {dim}",
            path.display(),
            t.cols,
            f.space.spelled(dim)
        )));
    }
    if let Some(i) = t.data.iter().position(|v| !v.is_finite()) {
        return Err(user(format!(
            "error: {}: row {} column {} is {} (training data must be finite)",
            path.display(),
            i / dim + 1,
            i % dim + 1,
            t.data[i]
        )));
    }
    crate::interp::check_rows(f, &t.data, 0).map_err(|e| user(format!("error: {}: {e}", path.display())))?;
    Ok(t.data)
}

/// A flat parameter vector as named tensors.
pub fn tensors_of(f: &FlowDerivation, flat: &[f64]) -> BTreeMap<String, Tensor> {
    crate::lower::param_slots(f)
        .into_iter()
        .map(|s| (s.name.clone(), Tensor { shape: s.shape.clone(), data: flat[s.offset..s.offset + s.len].to_vec() }))
        .collect()
}

fn save_state(path: &Path, s: &TrainState) -> Result<(), String> {
    let mut t = BTreeMap::new();
    let vec = |v: &[f64]| Tensor { shape: vec![v.len()], data: v.to_vec() };
    t.insert("params".to_string(), vec(&s.params));
    t.insert("adam.m".to_string(), vec(&s.m));
    t.insert("adam.v".to_string(), vec(&s.v));
    t.insert("step".to_string(), vec(&[s.step as f64, s.stale as f64]));
    if let Some((val, step, p)) = &s.best {
        t.insert("best.params".to_string(), vec(p));
        t.insert("best.val".to_string(), vec(&[*val, *step as f64]));
    }
    runtime::param_file::write(path, &t, FileDtype::F64)
}

fn load_state(path: &Path, len: usize) -> Result<TrainState, String> {
    let t = runtime::param_file::read(path)?;
    let get = |n: &str, want: usize| -> Result<Vec<f64>, String> {
        let v = t.get(n).ok_or_else(|| format!("`{}` is not a training state: it has no `{n}`", path.display()))?;
        if v.data.len() != want {
            return Err(format!("`{}`: `{n}` has {} values, expected {want} (a state of another flow?)", path.display(), v.data.len()));
        }
        Ok(v.data.clone())
    };
    let step = get("step", 2)?;
    let best = match (t.get("best.params"), t.get("best.val")) {
        (Some(_), Some(_)) => {
            let v = get("best.val", 2)?;
            Some((v[0], v[1] as usize, get("best.params", len)?))
        }
        _ => None,
    };
    Ok(TrainState {
        params: get("params", len)?,
        m: get("adam.m", len)?,
        v: get("adam.v", len)?,
        step: step[0] as usize,
        stale: step[1] as usize,
        best,
    })
}

/// Splits off a seeded `fraction` of the rows for validation.
fn hold_out(data: Vec<f64>, dim: usize, fraction: f64, seed: u64) -> Result<(Vec<f64>, Vec<f64>), Failure> {
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(user(format!("error: `--val-fraction` must be between 0 and 1 (got {fraction})")));
    }
    let rows = data.len() / dim;
    let held = ((rows as f64 * fraction).round() as usize).max(1);
    if held >= rows {
        return Err(user(format!("error: holding out {held} of {rows} rows leaves none to train on")));
    }
    let mut order: Vec<usize> = (0..rows).collect();
    let mut rng = runtime::rng::Rng::new(seed ^ 0x005e_ed0f_0a1d);
    for i in (1..rows).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    let (mut train, mut val) = (Vec::with_capacity((rows - held) * dim), Vec::with_capacity(held * dim));
    for (k, r) in order.iter().enumerate() {
        let dst = if k < rows - held { &mut train } else { &mut val };
        dst.extend_from_slice(&data[r * dim..(r + 1) * dim]);
    }
    Ok((train, val))
}

/// Rows the data-dependent initialization looks at.
pub const INIT_ROWS: usize = 4096;

/// Data-dependent initialization of `actnorm` layers (Glow's): from the data side inward,
/// each one's shift and log-scale are set so that its input, on the first [`INIT_ROWS`] rows
/// pushed through the layers after it, comes out with mean 0 and variance 1 per coordinate.
/// Returns the layers set.
pub fn actnorm_init(d: &Derivation, f: &FlowDerivation, flat: &mut [f64], data: &[f64]) -> Vec<usize> {
    let dim = f.dim;
    let rows = (data.len() / dim).min(INIT_ROWS);
    let slots = crate::lower::param_slots(f);
    let mut done = Vec::new();
    for k in (0..f.layers.len()).rev() {
        let l = &f.layers[k];
        let actnorm = l.bijector.map(|b| d.bijectors[b].name == "actnorm").unwrap_or(false);
        let slot = |n: &str| slots.iter().find(|s| s.name == format!("layers.{k}.{n}")).cloned();
        let (Some(shift), Some(log_scale)) = (slot("shift"), slot("log_scale")) else { continue };
        if !actnorm || rows < 2 {
            continue;
        }
        let p = params_of(d, f, flat);
        let mut sum = vec![0.0; dim];
        let mut sq = vec![0.0; dim];
        for r in 0..rows {
            let mut h = data[r * dim..(r + 1) * dim].to_vec();
            crate::interp::inverse_to(d, f, &p, k, &mut h);
            for i in 0..dim {
                sum[i] += h[i];
                sq[i] += h[i] * h[i];
            }
        }
        for i in 0..dim {
            let mean = sum[i] / rows as f64;
            let var = (sq[i] / rows as f64 - mean * mean).max(0.0);
            if mean.is_finite() && var > 0.0 && var.is_finite() {
                flat[shift.offset + i] = mean;
                flat[log_scale.offset + i] = 0.5 * var.ln();
            }
        }
        done.push(k);
    }
    done
}

fn params_of(d: &Derivation, f: &FlowDerivation, flat: &[f64]) -> crate::interp::Params {
    let mut p = crate::interp::Params::defaults(d, f);
    for s in crate::lower::param_slots(f) {
        p.values.insert(s.name.clone(), flat[s.offset..s.offset + s.len].to_vec());
    }
    p
}

/// Runs `flowc train`; returns the summary printed on stdout.
pub fn run(d: &Derivation, args: &TrainCommand) -> Result<String, Failure> {
    let f = d.flow(&args.name).expect("checked by the caller");
    let precision = args.precision.float();
    let options = TrainOptions {
        steps: 0,
        batch: args.batch,
        lr: args.lr,
        beta1: args.beta1,
        beta2: args.beta2,
        eps: args.eps,
        weight_decay: args.weight_decay,
        schedule: if args.schedule == ScheduleArg::Cosine { Schedule::Cosine } else { Schedule::Constant },
        seed: args.seed,
        val_every: args.val_every,
        patience: args.patience,
        checkpoint_every: args.checkpoint_every,
    };
    let dim = f.dim;
    // every input is read and checked before anything is written
    let data = read_rows(&args.data, f, "training")?;
    let (data, val) = match (&args.val, args.val_fraction) {
        (Some(_), Some(_)) => return Err(user("error: give `--val` or `--val-fraction`, not both")),
        (Some(v), None) => (data, Some(read_rows(v, f, "validation")?)),
        (None, Some(frac)) => {
            let (t, v) = hold_out(data, dim, frac, options.seed)?;
            (t, Some(v))
        }
        (None, None) => (data, None),
    };
    let rows = data.len() / dim;
    let mut options = options;
    options.batch = options.batch.min(rows);
    options.steps = match (args.steps, args.epochs) {
        (Some(_), Some(_)) => return Err(user("error: give `--steps` or `--epochs`, not both")),
        (Some(s), None) => s,
        (None, Some(e)) => e * (rows / options.batch).max(1),
        (None, None) => 1000,
    };
    if options.steps == 0 {
        return Err(user("error: training needs at least one step"));
    }
    let mut initialized = Vec::new();
    let init = match (&args.params_file, args.init) {
        (Some(_), Some(_)) => return Err(user("error: give `--init SEED` or `--params FILE`, not both")),
        (Some(p), None) => crate::params::flat(f, &crate::params::load(d, f, p).map_err(|e| user(format!("error: {e}")))?),
        (None, seed) => {
            let mut flat = crate::params::flat(f, &crate::params::init(d, f, seed.unwrap_or(options.seed)));
            if !args.resume {
                initialized = actnorm_init(d, f, &mut flat, &data);
            }
            flat
        }
    };
    let state_file = state_path(&args.out);
    let objective = FlowObjective::new(d, &args.name, precision, args.threads).map_err(|e| user(format!("error: {e}")))?;
    if let Some(n) = &objective.note {
        eprintln!("note: {n}");
    }
    let kinds = objective.kinds();
    let mut trainer =
        Trainer::new(&objective, kinds, init, &data, val.as_deref(), options.clone()).map_err(|e| user(format!("error: {e}")))?;
    if args.resume {
        let s = load_state(&state_file, objective.param_len()).map_err(|e| user(format!("error: cannot resume: {e}")))?;
        if s.step >= options.steps {
            return Err(user(format!(
                "error: the run in `{}` has already taken {} of {} steps",
                state_file.display(),
                s.step,
                options.steps
            )));
        }
        trainer.resume(s).map_err(|e| user(format!("error: cannot resume: {e}")))?;
    }
    let last_checkpoint = std::rc::Rc::new(std::cell::Cell::new(None::<usize>));
    let (out, flow, written) = (args.out.clone(), f.clone(), last_checkpoint.clone());
    trainer.on_checkpoint(move |s: &TrainState| {
        let best = s.best.as_ref().map(|b| &b.2).unwrap_or(&s.params);
        runtime::param_file::write(&out, &tensors_of(&flow, best), FileDtype::F64)?;
        save_state(&state_file, s)?;
        written.set(Some(s.step));
        Ok(())
    });
    let bar = Reporter::new(!args.quiet, options.steps, trainer.state().step);
    let mut losses: Vec<(usize, f64, Option<f64>)> = Vec::new();
    let result = trainer.run(|p: &Progress| {
        bar.step(p);
        losses.push((p.step, p.loss, p.val));
        true
    });
    bar.finish();
    let outcome: Outcome = match result {
        Ok(o) => o,
        Err(e @ TrainError::NonFinite { .. }) => {
            let kept = match last_checkpoint.get() {
                Some(s) => format!("the last good checkpoint (step {s}) is in `{}`", args.out.display()),
                None => "no checkpoint was written (lower `--lr`, or set `--checkpoint-every`)".to_string(),
            };
            return Err(user(format!("error: {e}\n  = note: {kept}")));
        }
        Err(e) => return Err(user(format!("error: {e}"))),
    };
    let train_nll = trainer.mean_nll(&data);
    let mut s = String::new();
    if !initialized.is_empty() {
        let mut ks = initialized.clone();
        ks.sort_unstable();
        let list: Vec<String> = ks.iter().map(|k| k.to_string()).collect();
        s.push_str(&format!(
            "actnorm layers {} initialized from the data (mean 0, variance 1 on {} rows)\n",
            list.join(", "),
            (data.len() / dim).min(INIT_ROWS)
        ));
    }
    s += &format!(
        "trained `{}` for {} steps in {:.2} s ({:.1} steps/s, batch {}, {} threads, {}; kernels compiled in {:.1} ms)\n",
        args.name,
        outcome.steps,
        outcome.seconds,
        (outcome.steps - losses.first().map(|l| l.0 - 1).unwrap_or(0)) as f64 / outcome.seconds.max(1e-9),
        options.batch,
        if args.threads == 0 { rayon::current_num_threads() } else { args.threads },
        if precision == Float::F64 { "f64" } else { "f32" },
        objective.compile_ms
    );
    s.push_str(&format!("training NLL {train_nll:.6} (last minibatch {:.6})\n", outcome.last_loss));
    if let Some((v, at)) = outcome.best_val {
        s.push_str(&format!("best validation NLL {v:.6} at step {at}{}\n", if outcome.stopped_early { " (stopped early)" } else { "" }));
    }
    s.push_str(&format!("wrote {} and {}\n", args.out.display(), state_path(&args.out).display()));
    Ok(s)
}

/// Progress: a bar on a terminal, a line every twentieth of the run otherwise.
struct Reporter {
    bar: Option<indicatif::ProgressBar>,
    lines: bool,
    every: usize,
}

impl Reporter {
    fn new(show: bool, steps: usize, at: usize) -> Reporter {
        let terminal = std::io::stderr().is_terminal();
        let bar = (show && terminal).then(|| {
            let b = indicatif::ProgressBar::new(steps as u64);
            b.set_style(
                indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} steps · {msg} · {elapsed_precise} (eta {eta})")
                    .expect("a valid template"),
            );
            b.set_position(at as u64);
            b.set_message("starting");
            b
        });
        Reporter { bar, lines: show && !terminal, every: (steps / 20).max(1) }
    }

    fn step(&self, p: &Progress) {
        let val = p.val.map(|v| format!(" · val NLL {v:.4}")).unwrap_or_default();
        if let Some(b) = &self.bar {
            b.set_position(p.step as u64);
            if p.step.is_multiple_of(10) || p.val.is_some() {
                b.set_message(format!("loss {:.4}{val} · {:.1} steps/s", p.loss, p.steps_per_sec));
            }
        } else if self.lines && (p.step.is_multiple_of(self.every) || p.val.is_some() || p.step == p.steps) {
            eprintln!("step {}/{} loss {:.6}{val} lr {:.3e} {:.1} steps/s", p.step, p.steps, p.loss, p.lr, p.steps_per_sec);
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
