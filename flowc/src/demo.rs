//! `flowc demo`, the training part: two 2-D datasets made in-process, two moons fitted by a
//! RealNVP flow (eight affine couplings) and the harder pinwheel by a neural spline flow (four
//! rational-quadratic spline couplings), each by [`runtime::train::Trainer`] on the
//! JIT-compiled gradient; the test NLL, samples, and PNG figures: the learned density as a
//! heat map, samples next to the data, and the training curves.

use crate::codegen::clif::Float;
use crate::derive::Derivation;
use crate::lower::{self, Kind};
use crate::objective::FlowObjective;
use crate::plot::{self, Extent};
use runtime::rng::Rng;
use runtime::train::{Progress, Schedule, TrainOptions, Trainer};
use std::path::{Path, PathBuf};

/// The flows the datasets are fitted with.
pub const TOY_SOURCE: &str = r#"/// RealNVP's affine map; tanh keeps each layer's log-scale in (-1, 1).
bijector realnvp_affine(x; s: real, t: real) = x * exp(tanh(s)) + t;
/// An affine map of each coordinate: overall scale and position.
bijector scale(x; shift: real, log_scale: real) = x * exp(log_scale) + shift;

flow realnvp(x: R^2) {
    base normal;
    coupling(mask = [1, 0], bijector = realnvp_affine, net = mlp([64, 64], tanh));
    coupling(mask = [0, 1], bijector = realnvp_affine, net = mlp([64, 64], tanh));
    coupling(mask = [1, 0], bijector = realnvp_affine, net = mlp([64, 64], tanh));
    coupling(mask = [0, 1], bijector = realnvp_affine, net = mlp([64, 64], tanh));
    coupling(mask = [1, 0], bijector = realnvp_affine, net = mlp([64, 64], tanh));
    coupling(mask = [0, 1], bijector = realnvp_affine, net = mlp([64, 64], tanh));
    coupling(mask = [1, 0], bijector = realnvp_affine, net = mlp([64, 64], tanh));
    coupling(mask = [0, 1], bijector = realnvp_affine, net = mlp([64, 64], tanh));
    elementwise(scale);
}

flow nsf(x: R^2) {
    base normal;
    elementwise(scale);
    coupling(mask = [1, 0], bijector = spline(bins = 8, bound = 4), net = mlp([64, 64], tanh));
    coupling(mask = [0, 1], bijector = spline(bins = 8, bound = 4), net = mlp([64, 64], tanh));
    coupling(mask = [1, 0], bijector = spline(bins = 8, bound = 4), net = mlp([64, 64], tanh));
    coupling(mask = [0, 1], bijector = spline(bins = 8, bound = 4), net = mlp([64, 64], tanh));
}
"#;

/// Options of the training part.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Where the figures go (created if missing).
    pub out: PathBuf,
    /// Adam steps per dataset.
    pub steps: usize,
    pub threads: usize,
}

/// Two interleaved half circles with Gaussian noise (σ = 0.1 before scaling by 2).
pub fn two_moons(n: usize, rng: &mut Rng) -> Vec<f64> {
    let mut out = Vec::with_capacity(2 * n);
    for _ in 0..n {
        let t = std::f64::consts::PI * rng.uniform();
        let (x, y) = if rng.uniform() < 0.5 { (t.cos(), t.sin()) } else { (1.0 - t.cos(), 0.5 - t.sin()) };
        out.push(2.0 * (x + 0.1 * rng.normal()) - 1.0);
        out.push(2.0 * (y + 0.1 * rng.normal()) - 0.2);
    }
    out
}

/// Five curved arms: radial N(1, 0.3²), tangential N(0, 0.1²), each point turned by its arm's
/// angle plus 0.25·e^radial.
pub fn pinwheel(n: usize, rng: &mut Rng) -> Vec<f64> {
    let mut out = Vec::with_capacity(2 * n);
    for i in 0..n {
        let arm = (i % 5) as f64;
        let r = 1.0 + 0.3 * rng.normal();
        let s = 0.1 * rng.normal();
        let a = arm * 2.0 * std::f64::consts::PI / 5.0 + 0.25 * r.exp();
        let (sin, cos) = a.sin_cos();
        out.push(2.0 * (r * cos + s * sin));
        out.push(2.0 * (-r * sin + s * cos));
    }
    out
}

fn points(rows: &[f64]) -> Vec<[f64; 2]> {
    rows.chunks(2).map(|r| [r[0], r[1]]).collect()
}

/// Fits the toy flow to one dataset and draws its figures; returns the report's lines.
fn fit_one(d: &Derivation, flow: &str, name: &str, data: &[f64], test: &[f64], opts: &DemoOptions, seed: u64) -> Result<String, String> {
    let f = d.flow(flow).ok_or("the demo flow is missing")?;
    let objective = FlowObjective::new(d, flow, Float::F64, opts.threads)?;
    let init = crate::params::flat(f, &crate::params::init(d, f, seed));
    let options = TrainOptions {
        steps: opts.steps,
        batch: 512,
        lr: 2e-3,
        schedule: Schedule::Cosine,
        seed,
        val_every: 100,
        ..TrainOptions::default()
    };
    let mut trainer = Trainer::new(&objective, objective.kinds(), init, data, Some(test), options).map_err(|e| e.to_string())?;
    let mut train_curve: Vec<(usize, f64)> = Vec::new();
    let mut val_curve: Vec<(usize, f64)> = Vec::new();
    let mut smoothed = None;
    let outcome = trainer
        .run(|p: &Progress| {
            // the minibatch loss, averaged over the last 50 steps
            let s: f64 = smoothed.map(|s: f64| s + (p.loss - s) / 50.0).unwrap_or(p.loss);
            smoothed = Some(s);
            if p.step.is_multiple_of(10) {
                train_curve.push((p.step, s));
            }
            if let Some(v) = p.val {
                val_curve.push((p.step, v));
            }
            true
        })
        .map_err(|e| e.to_string())?;
    let params = trainer.params().to_vec();
    let test_nll = trainer.mean_nll(test);
    // samples: base points through the forward kernel
    let program = lower::lower(d).map_err(|e| e.to_string())?;
    let fwd = crate::jit::compile(program.kernel(flow, Kind::Forward).expect("lowered"), Float::F64).map_err(|e| e.0)?;
    let n = test.len() / 2;
    let z = runtime::sample::normal_rows(seed, 0, n, 2);
    let mut out = vec![0.0; n * 3];
    fwd.run_f64(&z, &params, &mut out).map_err(|e| e.0)?;
    let samples: Vec<[f64; 2]> = out.chunks(3).map(|r| [r[0], r[1]]).collect();
    // the density on a grid
    let extent = Extent { x0: -4.0, x1: 4.0, y0: -4.0, y1: 4.0 };
    let res = 200;
    let mut grid = Vec::with_capacity(res * res * 2);
    for j in 0..res {
        for i in 0..res {
            grid.push(extent.x0 + (i as f64 + 0.5) * (extent.x1 - extent.x0) / res as f64);
            grid.push(extent.y0 + (j as f64 + 0.5) * (extent.y1 - extent.y0) / res as f64);
        }
    }
    let lp = crate::jit::compile(program.kernel(flow, Kind::LogProb).expect("lowered"), Float::F64).map_err(|e| e.0)?;
    let mut dens = vec![0.0; res * res];
    lp.run_f64(&grid, &params, &mut dens).map_err(|e| e.0)?;
    let file = |what: &str| opts.out.join(format!("{name}_{what}.png"));
    plot::heatmap(&file("density"), &format!("{name}: learned density"), extent, res, &dens, &[])?;
    plot::scatter_pair(&file("samples"), extent, ("data (test set)", &points(test)), ("samples from the flow", &samples))?;
    plot::curves(
        &file("training"),
        &format!("{name}: negative log-likelihood"),
        &[("training (minibatch, smoothed)", &train_curve), ("test", &val_curve)],
    )?;
    Ok(format!(
        "{name:<9} ({flow}) {:>6} steps in {:>5.1} s ({:>6.1} steps/s)   test NLL {test_nll:.4}   figures: {}, {}, {}\n",
        outcome.steps,
        outcome.seconds,
        outcome.steps as f64 / outcome.seconds.max(1e-9),
        file("density").display(),
        file("samples").display(),
        file("training").display()
    ))
}

/// Trains on both datasets; returns the report.
pub fn run(opts: &DemoOptions) -> Result<String, String> {
    std::fs::create_dir_all(&opts.out).map_err(|e| format!("cannot create `{}`: {e}", opts.out.display()))?;
    let (_, _, d) = crate::cli::load_str("toy.flow", TOY_SOURCE).map_err(|f| f.message)?;
    let mut out = String::new();
    out.push_str("== training: the flows ==\n\n");
    out.push_str(TOY_SOURCE);
    out.push_str("\n== their structure, derived ==\n\n");
    for flow in ["realnvp", "nsf"] {
        let text = crate::report::text(&d, Some(flow), false);
        // the flow's own part (the bijectors' derivations are in the demo's first part)
        let start = text.find("flow ").unwrap_or(0);
        out.push_str(&text[start..]);
        out.push('\n');
    }
    out.push_str("\n== fitting them (Adam, batch 512, lr 2e-3 with a cosine schedule; 20000 training and 5000 test points each) ==\n\n");
    type Make = fn(usize, &mut Rng) -> Vec<f64>;
    let datasets: [(&str, &str, Make); 2] = [("moons", "realnvp", two_moons), ("pinwheel", "nsf", pinwheel)];
    for (k, (name, flow, make)) in datasets.iter().enumerate() {
        let mut rng = Rng::new(100 + k as u64);
        let data = make(20000, &mut rng);
        let test = make(5000, &mut rng);
        out.push_str(&fit_one(&d, flow, name, &data, &test, opts, k as u64 + 1)?);
    }
    Ok(out)
}

/// The default figure directory.
pub fn default_out() -> PathBuf {
    Path::new("flowc-demo").to_path_buf()
}
