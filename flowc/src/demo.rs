//! `flowc demo`, the training part: three datasets made in-process, two moons fitted by a
//! RealNVP flow (eight affine couplings), the harder pinwheel by a neural spline flow (four
//! rational-quadratic spline couplings) and three clusters of directions on the sphere S² (a
//! mixture of von Mises–Fisher distributions) by sixteen normalized affine maps, each by
//! [`runtime::train::Trainer`] on the JIT-compiled gradient; the test NLL (next to the true
//! one for the directions), samples, and PNG figures: the learned density as a heat map (on
//! the sphere, an equirectangular map: longitude and latitude), samples next to the data, and
//! the training curves.

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

/// Sixteen maps y = (Mx + b)/‖Mx + b‖ of the uniform distribution on S².
flow directions(x: sphere(3)) {
    base uniform;
    normalized_affine; normalized_affine; normalized_affine; normalized_affine;
    normalized_affine; normalized_affine; normalized_affine; normalized_affine;
    normalized_affine; normalized_affine; normalized_affine; normalized_affine;
    normalized_affine; normalized_affine; normalized_affine; normalized_affine;
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

/// The mean directions of [`directions`] (normalized) and their concentration κ.
pub const VMF_MEANS: [[f64; 3]; 3] = [[1.0, 0.0, 0.3], [-0.5, 0.8, 0.2], [-0.3, -0.6, -0.8]];
pub const VMF_KAPPA: f64 = 15.0;

fn unit(v: [f64; 3]) -> [f64; 3] {
    let r = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
    [v[0] / r, v[1] / r, v[2] / r]
}

/// Points on S² from an equal mixture of von Mises–Fisher distributions (means [`VMF_MEANS`],
/// κ = [`VMF_KAPPA`]): the cosine to the mean w = 1 + log(u + (1 − u)e^(−2κ))/κ (exact
/// inversion of its distribution), the direction around the mean uniform.
pub fn directions(n: usize, rng: &mut Rng) -> Vec<f64> {
    let mut out = Vec::with_capacity(3 * n);
    for i in 0..n {
        let mu = unit(VMF_MEANS[i % 3]);
        let u = rng.uniform();
        let w = 1.0 + (u + (1.0 - u) * (-2.0 * VMF_KAPPA).exp()).ln() / VMF_KAPPA;
        // an orthonormal pair orthogonal to mu
        let a = if mu[0].abs() < 0.9 { [1.0, 0.0, 0.0] } else { [0.0, 1.0, 0.0] };
        let e1 = unit([mu[1] * a[2] - mu[2] * a[1], mu[2] * a[0] - mu[0] * a[2], mu[0] * a[1] - mu[1] * a[0]]);
        let e2 = [mu[1] * e1[2] - mu[2] * e1[1], mu[2] * e1[0] - mu[0] * e1[2], mu[0] * e1[1] - mu[1] * e1[0]];
        let phi = 2.0 * std::f64::consts::PI * rng.uniform();
        let s = (1.0 - w * w).max(0.0).sqrt();
        let (sin, cos) = phi.sin_cos();
        let x: Vec<f64> = (0..3).map(|k| w * mu[k] + s * (cos * e1[k] + sin * e2[k])).collect();
        // exactly on the sphere (to rounding)
        let r = (x[0] * x[0] + x[1] * x[1] + x[2] * x[2]).sqrt();
        out.extend(x.iter().map(|v| v / r));
    }
    out
}

/// The true log density of [`directions`] (surface measure): log of the mixture of
/// C(κ)·e^(κ μᵀx), C(κ) = κ/(2π(1 − e^(−2κ)))·e^(−κ).
pub fn directions_log_density(x: &[f64]) -> f64 {
    let k = VMF_KAPPA;
    let log_c = (k / (2.0 * std::f64::consts::PI * (1.0 - (-2.0 * k).exp()))).ln() - k;
    let terms: Vec<f64> = VMF_MEANS
        .iter()
        .map(|m| {
            let mu = unit(*m);
            log_c + k * (mu[0] * x[0] + mu[1] * x[1] + mu[2] * x[2])
        })
        .collect();
    let top = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    top + (terms.iter().map(|t| (t - top).exp()).sum::<f64>() / 3.0).ln()
}

/// How a dataset's points are drawn: the plane as it is, or the sphere as longitude and
/// latitude.
#[derive(Debug, Clone, Copy, PartialEq)]
enum View {
    Plane,
    Sphere,
}

impl View {
    fn dim(self) -> usize {
        if self == View::Plane {
            2
        } else {
            3
        }
    }
    fn extent(self) -> Extent {
        match self {
            View::Plane => Extent { x0: -4.0, x1: 4.0, y0: -4.0, y1: 4.0 },
            View::Sphere => {
                use std::f64::consts::{FRAC_PI_2, PI};
                Extent { x0: -PI, x1: PI, y0: -FRAC_PI_2, y1: FRAC_PI_2 }
            }
        }
    }
    /// A data point at map coordinates (a, b).
    fn point(self, a: f64, b: f64) -> Vec<f64> {
        match self {
            View::Plane => vec![a, b],
            View::Sphere => vec![b.cos() * a.cos(), b.cos() * a.sin(), b.sin()],
        }
    }
    /// Map coordinates of rows of `dim` values (`stride` apart).
    fn points(self, rows: &[f64], stride: usize) -> Vec<[f64; 2]> {
        rows.chunks(stride)
            .map(|r| match self {
                View::Plane => [r[0], r[1]],
                View::Sphere => [r[1].atan2(r[0]), r[2].clamp(-1.0, 1.0).asin()],
            })
            .collect()
    }
}

/// Fits the toy flow to one dataset and draws its figures; returns the report's lines.
#[allow(clippy::too_many_arguments)]
fn fit_one(
    d: &Derivation,
    flow: &str,
    name: &str,
    view: View,
    lr: f64,
    data: &[f64],
    test: &[f64],
    opts: &DemoOptions,
    seed: u64,
) -> Result<String, String> {
    let f = d.flow(flow).ok_or("the demo flow is missing")?;
    let objective = FlowObjective::new(d, flow, Float::F64, opts.threads)?;
    let init = crate::params::flat(f, &crate::params::init(d, f, seed));
    let options =
        TrainOptions { steps: opts.steps, batch: 512, lr, schedule: Schedule::Cosine, seed, val_every: 100, ..TrainOptions::default() };
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
    let dim = view.dim();
    let n = test.len() / dim;
    let z = crate::interp::base_rows(f, seed, 0, n);
    let mut out = vec![0.0; n * (dim + 1)];
    fwd.run_f64(&z, &params, &mut out).map_err(|e| e.0)?;
    let samples = view.points(&out, dim + 1);
    // the density on a grid
    let extent = view.extent();
    let res = 200;
    let mut grid = Vec::with_capacity(res * res * dim);
    for j in 0..res {
        for i in 0..res {
            let a = extent.x0 + (i as f64 + 0.5) * (extent.x1 - extent.x0) / res as f64;
            let b = extent.y0 + (j as f64 + 0.5) * (extent.y1 - extent.y0) / res as f64;
            grid.extend(view.point(a, b));
        }
    }
    let lp = crate::jit::compile(program.kernel(flow, Kind::LogProb).expect("lowered"), Float::F64).map_err(|e| e.0)?;
    let mut dens = vec![0.0; res * res];
    lp.run_f64(&grid, &params, &mut dens).map_err(|e| e.0)?;
    let file = |what: &str| opts.out.join(format!("{name}_{what}.png"));
    let title = match view {
        View::Plane => format!("{name}: learned density"),
        View::Sphere => format!("{name}: learned density on S² (longitude, latitude)"),
    };
    plot::heatmap(&file("density"), &title, extent, res, &dens, &[])?;
    plot::scatter_pair(&file("samples"), extent, ("data (test set)", &view.points(test, dim)), ("samples from the flow", &samples))?;
    plot::curves(
        &file("training"),
        &format!("{name}: negative log-likelihood"),
        &[("training (minibatch, smoothed)", &train_curve), ("test", &val_curve)],
    )?;
    let truth = if view == View::Sphere {
        let t: f64 = test.chunks(3).map(|x| -directions_log_density(x)).sum::<f64>() / n as f64;
        format!(" (true {t:.4})")
    } else {
        String::new()
    };
    Ok(format!(
        "{name:<10} ({flow}) {:>6} steps in {:>5.1} s ({:>6.1} steps/s)   test NLL {test_nll:.4}{truth}   figures: {}, {}, {}\n",
        outcome.steps,
        outcome.seconds,
        outcome.steps as f64 / outcome.seconds.max(1e-9),
        file("density").display(),
        file("samples").display(),
        file("training").display()
    ))
}

/// Trains on the three datasets; returns the report.
pub fn run(opts: &DemoOptions) -> Result<String, String> {
    std::fs::create_dir_all(&opts.out).map_err(|e| format!("cannot create `{}`: {e}", opts.out.display()))?;
    let (_, _, d) = crate::cli::load_str("toy.flow", TOY_SOURCE).map_err(|f| f.message)?;
    let mut out = String::new();
    out.push_str("== training: the flows ==\n\n");
    out.push_str(TOY_SOURCE);
    out.push_str("\n== their structure, derived ==\n\n");
    for flow in ["realnvp", "nsf", "directions"] {
        let text = crate::report::text(&d, Some(flow), false);
        // the flow's own part (the bijectors' derivations are in the demo's first part)
        let start = text.find("flow ").unwrap_or(0);
        out.push_str(&text[start..]);
        out.push('\n');
    }
    out.push_str(
        "\n== fitting them (Adam, batch 512, a cosine schedule from lr 2e-3 (1e-2 on the sphere); 20000 training and 5000 test points each) ==\n\n",
    );
    type Make = fn(usize, &mut Rng) -> Vec<f64>;
    let datasets: [(&str, &str, View, f64, Make); 3] = [
        ("moons", "realnvp", View::Plane, 2e-3, two_moons),
        ("pinwheel", "nsf", View::Plane, 2e-3, pinwheel),
        ("directions", "directions", View::Sphere, 1e-2, directions),
    ];
    for (k, (name, flow, view, lr, make)) in datasets.iter().enumerate() {
        let mut rng = Rng::new(100 + k as u64);
        let data = make(20000, &mut rng);
        let test = make(5000, &mut rng);
        out.push_str(&fit_one(&d, flow, name, *view, *lr, &data, &test, opts, k as u64 + 1)?);
    }
    Ok(out)
}

/// The default figure directory.
pub fn default_out() -> PathBuf {
    Path::new("flowc-demo").to_path_buf()
}
