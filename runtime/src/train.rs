//! Maximum-likelihood training: Adam on the mean negative log-likelihood of minibatches.
//!
//! The model is an [`Objective`]: Σ log p over rows and its gradient with respect to a flat
//! parameter vector (a compiled flow's gradient kernel, or anything else). The [`Trainer`]
//! owns the optimizer: parameters kept in f64, `positive` and `unit` entries optimized through
//! softplus and sigmoid (so they stay in range), Adam with optional decoupled weight decay,
//! constant or cosine learning rate, seeded minibatches (an epoch is a permutation of the
//! rows; the batch of step s depends only on the seed and s), validation every k steps with
//! early stopping that keeps the best parameters, periodic checkpoints through a callback,
//! and a guard that stops at the first step whose loss or gradient is not finite, keeping
//! the last good parameters. Its whole state is a [`TrainState`]: resuming from one gives
//! the same steps as a run that never stopped.
//!
//! ```
//! use runtime::params::Kind;
//! use runtime::train::{Objective, Trainer, TrainOptions};
//! /// log p(x) = log N(x; μ, 1) on one coordinate
//! struct Shift;
//! impl Objective for Shift {
//!     fn dim(&self) -> usize { 1 }
//!     fn param_len(&self) -> usize { 1 }
//!     fn log_prob_grad(&self, p: &[f64], rows: &[f64], grad: &mut [f64]) -> f64 {
//!         rows.iter().map(|x| { grad[0] += x - p[0]; -0.5 * (x - p[0]).powi(2) - 0.9189385332046727 }).sum()
//!     }
//! }
//! let data: Vec<f64> = (0..1000).map(|i| 3.0 + (i as f64 / 999.0 - 0.5)).collect();
//! let opts = TrainOptions { steps: 2000, batch: 100, lr: 0.05, ..TrainOptions::default() };
//! let mut t = Trainer::new(&Shift, vec![Kind::Real], vec![0.0], &data, None, opts).unwrap();
//! let out = t.run(|_| true).unwrap();
//! assert!((t.params()[0] - 3.0).abs() < 0.05, "{:?}", t.params());
//! assert_eq!(out.steps, 2000);
//! ```

use crate::params::Kind;
use crate::rng::Rng;
use std::fmt;
use std::time::Instant;

/// A density model with a gradient: what the trainer fits.
pub trait Objective: Sync {
    /// Values per row.
    fn dim(&self) -> usize;
    /// Length of the flat parameter vector.
    fn param_len(&self) -> usize;
    /// Σ_rows log p(x) over `rows` (row-major), adding Σ_rows ∂ log p/∂θ to `grad`.
    fn log_prob_grad(&self, params: &[f64], rows: &[f64], grad: &mut [f64]) -> f64;
    /// Σ_rows log p(x) (by default through [`Objective::log_prob_grad`]).
    fn log_prob_sum(&self, params: &[f64], rows: &[f64]) -> f64 {
        let mut g = vec![0.0; self.param_len()];
        self.log_prob_grad(params, rows, &mut g)
    }
}

/// How the learning rate changes over the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Schedule {
    #[default]
    Constant,
    /// lr · (1 + cos(π s / steps)) / 2 at step s.
    Cosine,
}

/// Training options. `Default` is Adam (lr 1e-3, β 0.9 / 0.999, ε 1e-8), 1000 steps of
/// batches of 256, seed 0, no validation, no checkpoints.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainOptions {
    /// Steps in all (one minibatch each).
    pub steps: usize,
    /// Rows per minibatch (at most the number of rows).
    pub batch: usize,
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Decoupled weight decay (AdamW): θ ← θ − lr·λ·θ each step, on real entries.
    pub weight_decay: f64,
    pub schedule: Schedule,
    /// Seeds the minibatch order.
    pub seed: u64,
    /// Validation NLL every this many steps (0: never).
    pub val_every: usize,
    /// Stop after this many validations without a better NLL (the best parameters are kept).
    pub patience: Option<usize>,
    /// A checkpoint every this many steps (0: only when the run ends).
    pub checkpoint_every: usize,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            steps: 1000,
            batch: 256,
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            schedule: Schedule::Constant,
            seed: 0,
            val_every: 0,
            patience: None,
            checkpoint_every: 0,
        }
    }
}

/// Why training could not start or stopped.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainError {
    /// Options, data or parameters that do not fit.
    Invalid(String),
    /// The loss or gradient of a step was NaN or infinite; the parameters are those before it.
    NonFinite { step: usize, what: &'static str },
    /// The checkpoint callback failed.
    Checkpoint(String),
}

impl fmt::Display for TrainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrainError::Invalid(m) => write!(f, "{m}"),
            TrainError::NonFinite { step, what } => {
                write!(
                    f,
                    "the {what} of step {step} is not finite (NaN or infinite): training stopped with the parameters of step {}",
                    step - 1
                )
            }
            TrainError::Checkpoint(m) => write!(f, "cannot write a checkpoint: {m}"),
        }
    }
}

impl std::error::Error for TrainError {}

/// Everything a run needs to continue: parameters, Adam's moments, the step count and the
/// best validation so far.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainState {
    /// Parameters, in their own domain (positive > 0, unit in (0, 1)).
    pub params: Vec<f64>,
    /// Adam's first and second moments (of the unconstrained parameters).
    pub m: Vec<f64>,
    pub v: Vec<f64>,
    /// Steps taken.
    pub step: usize,
    /// The best validation NLL, its step and parameters.
    pub best: Option<(f64, usize, Vec<f64>)>,
    /// Validations since the best one.
    pub stale: usize,
}

/// What one step reports to the callback.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// Steps taken (1 after the first).
    pub step: usize,
    pub steps: usize,
    /// Mean NLL of this step's minibatch (before its update).
    pub loss: f64,
    /// Validation NLL when computed at this step.
    pub val: Option<f64>,
    pub lr: f64,
    /// Steps per second since the run started.
    pub steps_per_sec: f64,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Steps taken in all.
    pub steps: usize,
    /// Mean NLL of the last minibatch.
    pub last_loss: f64,
    /// Best validation NLL and its step (the parameters are then those of that step).
    pub best_val: Option<(f64, usize)>,
    /// Stopped by patience (or by the callback) before `steps`.
    pub stopped_early: bool,
    pub seconds: f64,
}

type Checkpoint<'a> = Box<dyn FnMut(&TrainState) -> Result<(), String> + 'a>;

/// Adam on the mean NLL of an [`Objective`] (see the module docs).
pub struct Trainer<'a, O: Objective> {
    objective: &'a O,
    kinds: Vec<Kind>,
    data: &'a [f64],
    val: Option<&'a [f64]>,
    opts: TrainOptions,
    /// Unconstrained parameters.
    u: Vec<f64>,
    state: TrainState,
    checkpoint: Option<Checkpoint<'a>>,
    order: Vec<usize>,
    order_epoch: Option<usize>,
}

fn softplus(x: f64) -> f64 {
    if x > 30.0 {
        x
    } else {
        x.exp().ln_1p()
    }
}

fn softplus_inverse(y: f64) -> f64 {
    // log(e^y − 1) = y + log(1 − e^−y)
    if y > 30.0 {
        y
    } else {
        y + (-(-y).exp()).ln_1p()
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

impl<'a, O: Objective> Trainer<'a, O> {
    /// A trainer from initial parameters `init` (one [`Kind`] per entry), training rows
    /// `data` and optional validation rows (both row-major, `objective.dim()` per row).
    pub fn new(
        objective: &'a O,
        kinds: Vec<Kind>,
        init: Vec<f64>,
        data: &'a [f64],
        val: Option<&'a [f64]>,
        opts: TrainOptions,
    ) -> Result<Self, TrainError> {
        let (p, dim) = (objective.param_len(), objective.dim());
        let bad = |m: String| Err(TrainError::Invalid(m));
        if kinds.len() != p || init.len() != p {
            return bad(format!("the model has {p} parameters; got {} kinds and {} initial values", kinds.len(), init.len()));
        }
        if dim == 0 || data.is_empty() || !data.len().is_multiple_of(dim) {
            return bad(format!("the training data must be whole rows of {dim} values, and not empty (got {} values)", data.len()));
        }
        if let Some(v) = val {
            if v.is_empty() || !v.len().is_multiple_of(dim) {
                return bad(format!("the validation data must be whole rows of {dim} values, and not empty (got {} values)", v.len()));
            }
        }
        let rows = data.len() / dim;
        if opts.batch == 0 || opts.batch > rows {
            return bad(format!("the batch size must be between 1 and the {rows} training rows (got {})", opts.batch));
        }
        if !(opts.lr > 0.0 && opts.lr.is_finite()) {
            return bad(format!("the learning rate must be positive (got {})", opts.lr));
        }
        if !(0.0..1.0).contains(&opts.beta1) || !(0.0..1.0).contains(&opts.beta2) || opts.eps <= 0.0 || opts.weight_decay < 0.0 {
            return bad("Adam needs 0 ≤ β1, β2 < 1, ε > 0 and a weight decay ≥ 0".into());
        }
        for (i, (v, k)) in init.iter().zip(&kinds).enumerate() {
            if !k.contains(*v) {
                return bad(format!("initial parameter {i} = {v} is outside the range of a `{}` parameter", k.name()));
            }
        }
        let u = init
            .iter()
            .zip(&kinds)
            .map(|(v, k)| match k {
                Kind::Real => *v,
                Kind::Positive => softplus_inverse(*v),
                Kind::Unit => (v / (1.0 - v)).ln(),
            })
            .collect();
        let state = TrainState { params: init, m: vec![0.0; p], v: vec![0.0; p], step: 0, best: None, stale: 0 };
        Ok(Trainer { objective, kinds, data, val, opts, u, state, checkpoint: None, order: Vec::new(), order_epoch: None })
    }

    /// Continues from a saved state (parameters, moments, step; the options and data must be
    /// those of the run that saved it for the same steps to follow).
    pub fn resume(&mut self, state: TrainState) -> Result<(), TrainError> {
        let p = self.objective.param_len();
        if state.params.len() != p || state.m.len() != p || state.v.len() != p {
            return Err(TrainError::Invalid(format!("the saved state is for {} parameters, the model has {p}", state.params.len())));
        }
        let fresh = Trainer::new(self.objective, self.kinds.clone(), state.params.clone(), self.data, self.val, self.opts.clone())?;
        self.u = fresh.u;
        self.state = state;
        Ok(())
    }

    /// Called with the state every `checkpoint_every` steps and when the run ends.
    pub fn on_checkpoint(&mut self, f: impl FnMut(&TrainState) -> Result<(), String> + 'a) {
        self.checkpoint = Some(Box::new(f));
    }

    /// The current parameters (after [`Trainer::run`]: the best validated ones when there is
    /// validation data).
    pub fn params(&self) -> &[f64] {
        &self.state.params
    }

    pub fn state(&self) -> &TrainState {
        &self.state
    }

    /// Mean NLL of `rows` at the current parameters.
    pub fn mean_nll(&self, rows: &[f64]) -> f64 {
        -self.objective.log_prob_sum(&self.state.params, rows) / (rows.len() / self.objective.dim()) as f64
    }

    fn lr_at(&self, step: usize) -> f64 {
        match self.opts.schedule {
            Schedule::Constant => self.opts.lr,
            Schedule::Cosine => self.opts.lr * 0.5 * (1.0 + (std::f64::consts::PI * step as f64 / self.opts.steps as f64).cos()),
        }
    }

    /// The rows of the minibatch of step `step` (0-based), gathered into `out`.
    fn batch_rows(&mut self, step: usize, out: &mut Vec<f64>) {
        let dim = self.objective.dim();
        let rows = self.data.len() / dim;
        let per_epoch = rows / self.opts.batch;
        let (epoch, k) = (step / per_epoch, step % per_epoch);
        if self.order_epoch != Some(epoch) {
            // the permutation of epoch e: Fisher–Yates seeded by (seed, e)
            let mut rng = Rng::new(self.opts.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            self.order = (0..rows).collect();
            for i in (1..rows).rev() {
                let j = (rng.next_u64() % (i as u64 + 1)) as usize;
                self.order.swap(i, j);
            }
            self.order_epoch = Some(epoch);
        }
        out.clear();
        for &r in &self.order[k * self.opts.batch..(k + 1) * self.opts.batch] {
            out.extend_from_slice(&self.data[r * dim..(r + 1) * dim]);
        }
    }

    fn write_checkpoint(&mut self) -> Result<(), TrainError> {
        if let Some(f) = self.checkpoint.as_mut() {
            f(&self.state).map_err(TrainError::Checkpoint)?;
        }
        Ok(())
    }

    /// Runs from the current step to `steps`, calling `callback` after every step (return
    /// `false` to stop). On a non-finite loss or gradient the parameters stay those of the
    /// last good step and the error names the step.
    pub fn run(&mut self, mut callback: impl FnMut(&Progress) -> bool) -> Result<Outcome, TrainError> {
        let start = Instant::now();
        let first = self.state.step;
        let p = self.objective.param_len();
        let dim = self.objective.dim();
        let mut batch = Vec::with_capacity(self.opts.batch * dim);
        let mut grad = vec![0.0; p];
        let mut last_loss = f64::NAN;
        let mut stopped_early = false;
        let (b1, b2) = (self.opts.beta1, self.opts.beta2);
        while self.state.step < self.opts.steps {
            let s = self.state.step;
            self.batch_rows(s, &mut batch);
            grad.iter_mut().for_each(|g| *g = 0.0);
            let lp = self.objective.log_prob_grad(&self.state.params, &batch, &mut grad);
            let n = self.opts.batch as f64;
            let loss = -lp / n;
            if !loss.is_finite() {
                self.write_checkpoint()?;
                return Err(TrainError::NonFinite { step: s + 1, what: "loss" });
            }
            if grad.iter().any(|g| !g.is_finite()) {
                self.write_checkpoint()?;
                return Err(TrainError::NonFinite { step: s + 1, what: "gradient" });
            }
            // Adam on u: the gradient of the mean NLL through each entry's map
            let lr = self.lr_at(s);
            let t = (s + 1) as i32;
            let (c1, c2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
            for (i, gi) in grad.iter().enumerate() {
                let dtheta = -gi / n;
                let g = match self.kinds[i] {
                    Kind::Real => dtheta,
                    Kind::Positive => dtheta * sigmoid(self.u[i]),
                    Kind::Unit => {
                        let q = self.state.params[i];
                        dtheta * q * (1.0 - q)
                    }
                };
                let m = &mut self.state.m[i];
                *m = b1 * *m + (1.0 - b1) * g;
                let v = &mut self.state.v[i];
                *v = b2 * *v + (1.0 - b2) * g * g;
                let step = lr * (self.state.m[i] / c1) / ((self.state.v[i] / c2).sqrt() + self.opts.eps);
                if self.kinds[i] == Kind::Real && self.opts.weight_decay > 0.0 {
                    self.u[i] -= lr * self.opts.weight_decay * self.u[i];
                }
                self.u[i] -= step;
                self.state.params[i] = match self.kinds[i] {
                    Kind::Real => self.u[i],
                    // kept inside the open range where the maps round to its ends
                    Kind::Positive => softplus(self.u[i]).max(f64::MIN_POSITIVE),
                    Kind::Unit => sigmoid(self.u[i]).clamp(f64::EPSILON, 1.0 - f64::EPSILON),
                };
            }
            self.state.step = s + 1;
            last_loss = loss;
            let mut val_nll = None;
            if let (Some(v), true) = (
                self.val,
                self.opts.val_every > 0 && (self.state.step.is_multiple_of(self.opts.val_every) || self.state.step == self.opts.steps),
            ) {
                let nll = self.mean_nll(v);
                val_nll = Some(nll);
                let better = self.state.best.as_ref().map(|b| nll < b.0).unwrap_or(true) && nll.is_finite();
                if better {
                    self.state.best = Some((nll, self.state.step, self.state.params.clone()));
                    self.state.stale = 0;
                } else {
                    self.state.stale += 1;
                }
            }
            let elapsed = start.elapsed().as_secs_f64();
            let progress = Progress {
                step: self.state.step,
                steps: self.opts.steps,
                loss,
                val: val_nll,
                lr,
                steps_per_sec: (self.state.step - first) as f64 / elapsed.max(1e-9),
            };
            let go_on = callback(&progress);
            if self.opts.checkpoint_every > 0 && self.state.step.is_multiple_of(self.opts.checkpoint_every) {
                self.write_checkpoint()?;
            }
            if !go_on || self.opts.patience.map(|pat| self.state.stale >= pat).unwrap_or(false) {
                stopped_early = self.state.step < self.opts.steps;
                break;
            }
        }
        // the best validated parameters, when there was validation
        let best_val = self.state.best.as_ref().map(|b| (b.0, b.1));
        if let Some((_, _, best)) = &self.state.best {
            if stopped_early || self.state.step == self.opts.steps {
                self.state.params = best.clone();
            }
        }
        self.write_checkpoint()?;
        Ok(Outcome { steps: self.state.step, last_loss, best_val, stopped_early, seconds: start.elapsed().as_secs_f64() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// log N(x; μ, σ²) with θ = (μ, σ) and σ positive: the Gaussian fit has a closed form.
    struct Gauss;
    const HALF_LN_2PI: f64 = 0.918_938_533_204_672_8;
    impl Objective for Gauss {
        fn dim(&self) -> usize {
            1
        }
        fn param_len(&self) -> usize {
            2
        }
        fn log_prob_grad(&self, p: &[f64], rows: &[f64], grad: &mut [f64]) -> f64 {
            let (mu, s) = (p[0], p[1]);
            rows.iter()
                .map(|x| {
                    let z = (x - mu) / s;
                    grad[0] += z / s;
                    grad[1] += (z * z - 1.0) / s;
                    -0.5 * z * z - s.ln() - HALF_LN_2PI
                })
                .sum()
        }
    }

    fn data(n: usize) -> Vec<f64> {
        let mut rng = Rng::new(7);
        (0..n).map(|_| 1.5 + 0.25 * rng.normal()).collect()
    }

    #[test]
    fn a_gaussian_fit_reaches_the_sample_entropy() {
        let xs = data(4000);
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        // the minimum of the mean NLL: the Gaussian entropy at the sample variance
        let best = 0.5 * (2.0 * std::f64::consts::PI * std::f64::consts::E * var).ln();
        let opts = TrainOptions { steps: 3000, batch: 400, lr: 0.02, schedule: Schedule::Cosine, ..Default::default() };
        let mut t = Trainer::new(&Gauss, vec![Kind::Real, Kind::Positive], vec![0.0, 1.0], &xs, None, opts).unwrap();
        t.run(|_| true).unwrap();
        let nll = t.mean_nll(&xs);
        assert!(nll - best < 0.02 && nll >= best - 1e-12, "NLL {nll} vs the optimum {best}");
    }

    #[test]
    fn resuming_gives_the_uninterrupted_run() {
        let xs = data(1000);
        let opts = TrainOptions { steps: 60, batch: 64, lr: 0.05, seed: 3, ..Default::default() };
        let kinds = vec![Kind::Real, Kind::Positive];
        let mut whole = Trainer::new(&Gauss, kinds.clone(), vec![0.0, 2.0], &xs, None, opts.clone()).unwrap();
        whole.run(|_| true).unwrap();
        let mut first = Trainer::new(&Gauss, kinds.clone(), vec![0.0, 2.0], &xs, None, opts.clone()).unwrap();
        first.run(|p| p.step < 25).unwrap();
        assert_eq!(first.state().step, 25);
        let saved = first.state().clone();
        let mut second = Trainer::new(&Gauss, kinds, vec![0.0, 2.0], &xs, None, opts).unwrap();
        second.resume(saved).unwrap();
        second.run(|_| true).unwrap();
        assert_eq!(second.params(), whole.params());
    }

    #[test]
    fn a_poisoned_row_stops_at_its_step_with_the_last_good_parameters() {
        let mut xs = data(100);
        xs[57] = f64::NAN;
        let opts = TrainOptions { steps: 100, batch: 100, lr: 0.01, ..Default::default() };
        let mut t = Trainer::new(&Gauss, vec![Kind::Real, Kind::Positive], vec![0.0, 1.0], &xs, None, opts).unwrap();
        let err = t.run(|_| true).unwrap_err();
        assert_eq!(err, TrainError::NonFinite { step: 1, what: "loss" });
        assert_eq!(t.params(), &[0.0, 1.0]);
        assert!(err.to_string().contains("step 1"), "{err}");
    }

    #[test]
    fn early_stopping_keeps_the_best_validated_parameters() {
        let xs = data(800);
        // validation from another distribution: the fit gets worse on it as it improves on xs
        let val: Vec<f64> = (0..200).map(|i| -1.0 + i as f64 / 1000.0).collect();
        let opts = TrainOptions { steps: 500, batch: 100, lr: 0.05, val_every: 5, patience: Some(3), ..Default::default() };
        let mut t = Trainer::new(&Gauss, vec![Kind::Real, Kind::Positive], vec![0.0, 1.0], &xs, Some(&val), opts).unwrap();
        let mut seen = Vec::new();
        let out = t
            .run(|p| {
                if let Some(v) = p.val {
                    seen.push((p.step, v));
                }
                true
            })
            .unwrap();
        assert!(out.stopped_early && out.steps < 500);
        let (best, at) = out.best_val.unwrap();
        let min = seen.iter().cloned().fold((0, f64::INFINITY), |a, b| if b.1 < a.1 { b } else { a });
        assert_eq!((at, best), min);
        assert!((t.mean_nll(&val) - best).abs() < 1e-12, "the kept parameters are the best ones");
    }

    /// log p = −(θ_1 − 3)²/2: a gradient on θ_1 only, none on θ_0.
    struct OneSided;
    impl Objective for OneSided {
        fn dim(&self) -> usize {
            1
        }
        fn param_len(&self) -> usize {
            2
        }
        fn log_prob_grad(&self, p: &[f64], rows: &[f64], grad: &mut [f64]) -> f64 {
            grad[1] += -(p[1] - 3.0) * rows.len() as f64;
            -0.5 * (p[1] - 3.0).powi(2) * rows.len() as f64
        }
    }

    #[test]
    fn weight_decay_shrinks_and_the_cosine_schedule_anneals() {
        let xs = data(100);
        // decoupled decay: θ_0 (no gradient) shrinks by (1 − lr·λ) per step; θ_1 still fits
        let opts = TrainOptions { steps: 200, batch: 10, lr: 0.05, weight_decay: 0.1, ..Default::default() };
        let mut t = Trainer::new(&OneSided, vec![Kind::Real, Kind::Real], vec![2.0, 0.0], &xs, None, opts).unwrap();
        let mut lrs = Vec::new();
        t.run(|p| {
            lrs.push(p.lr);
            true
        })
        .unwrap();
        let expect = 2.0 * (1.0 - 0.05 * 0.1f64).powi(200);
        assert!((t.params()[0] - expect).abs() < 1e-12, "{} vs {expect}", t.params()[0]);
        // θ_1 moves to its optimum, held a little short of it by the decay
        assert!(t.params()[1] > 2.5 && t.params()[1] < 3.0, "{:?}", t.params());
        assert!(lrs.iter().all(|l| *l == 0.05));
        // cosine: lr·(1 + cos(π s/S))/2 at step s (0-based)
        let opts = TrainOptions { steps: 100, batch: 10, lr: 0.02, schedule: Schedule::Cosine, ..Default::default() };
        let mut t = Trainer::new(&OneSided, vec![Kind::Real, Kind::Real], vec![0.0, 0.0], &xs, None, opts).unwrap();
        let mut lrs = Vec::new();
        t.run(|p| {
            lrs.push(p.lr);
            true
        })
        .unwrap();
        for (s, l) in lrs.iter().enumerate() {
            let e = 0.02 * 0.5 * (1.0 + (std::f64::consts::PI * s as f64 / 100.0).cos());
            assert!((l - e).abs() < 1e-15);
        }
    }

    #[test]
    fn every_row_is_seen_once_per_epoch() {
        // a recording objective: which rows each step's batch held
        struct Record(std::sync::Mutex<Vec<f64>>);
        impl Objective for Record {
            fn dim(&self) -> usize {
                1
            }
            fn param_len(&self) -> usize {
                1
            }
            fn log_prob_grad(&self, _: &[f64], rows: &[f64], _: &mut [f64]) -> f64 {
                self.0.lock().unwrap().extend_from_slice(rows);
                0.0
            }
        }
        let xs: Vec<f64> = (0..60).map(|i| i as f64).collect();
        let r = Record(std::sync::Mutex::new(Vec::new()));
        let opts = TrainOptions { steps: 12, batch: 10, seed: 4, ..Default::default() };
        let mut t = Trainer::new(&r, vec![Kind::Real], vec![0.0], &xs, None, opts).unwrap();
        t.run(|_| true).unwrap();
        let seen = r.0.lock().unwrap().clone();
        for epoch in seen.chunks(60) {
            let mut e = epoch.to_vec();
            e.sort_by(f64::total_cmp);
            assert_eq!(e, xs, "an epoch is a permutation of the rows");
        }
        assert_ne!(&seen[..60], &xs[..], "shuffled");
        assert_ne!(&seen[..60], &seen[60..], "a new order each epoch");
    }

    #[test]
    fn bad_options_are_refused() {
        let xs = data(10);
        let new = |o: TrainOptions, init: Vec<f64>| {
            Trainer::new(&Gauss, vec![Kind::Real, Kind::Positive], init, &xs, None, o).err().map(|e| e.to_string())
        };
        assert!(new(TrainOptions { batch: 11, ..Default::default() }, vec![0.0, 1.0]).unwrap().contains("batch size"));
        assert!(new(TrainOptions { batch: 5, lr: 0.0, ..Default::default() }, vec![0.0, 1.0]).unwrap().contains("learning rate"));
        assert!(new(TrainOptions { batch: 5, ..Default::default() }, vec![0.0, -1.0]).unwrap().contains("`positive`"));
    }
}
