//! Calibrating a 3-class classifier's outputs with flows on the simplex.
//!
//! A classifier's probability vectors p are overconfident and biased. Fit one flow per class
//! to the outputs of that class's examples (`flows/calibration.flow`: a Dirichlet base, a
//! calibration map and two generalized calibration maps, all closed-form), then recalibrate by
//! Bayes' rule: P(y = k | p) ∝ π_k q_k(p), the class-conditional densities in the simplex's own
//! measure. The data are synthetic with a known answer: logits ℓ ~ N(1.5·e_y, I) for label y,
//! the classifier reports p = softmax(2.5·ℓ + β) (too sharp, shifted), and the Bayes
//! posterior is softmax(1.5·ℓ). Reported: the labels' NLL and the expected calibration error
//! (15 bins of the top probability) of the raw outputs, the recalibrated ones and the true
//! posterior; figures: the outputs and samples from the fitted flows on the triangle, and the
//! fitted density of all outputs (the three flows' mixture).
//!
//! Run it with `cargo run --release -p examples --example calibrate [-- STEPS OUT_DIR]`.

use flowc::codegen::clif::Float;
use flowc::lower::{self, Kind};
use flowc::objective::FlowObjective;
use flowc::plot::{self, Extent};
use runtime::train::{Schedule, TrainOptions, Trainer};
use std::path::Path;

/// The classifier's temperature and bias on the logits.
pub const SHARPNESS: f64 = 2.5;
pub const BIAS: [f64; 3] = [0.4, -0.2, -0.2];

fn softmax(v: &[f64]) -> Vec<f64> {
    runtime::manifold::softmax(v)
}

/// `n` examples: the classifier's outputs (rows of 3), the labels, and the true posteriors.
pub fn data(n: usize, seed: u64) -> (Vec<f64>, Vec<usize>, Vec<f64>) {
    let mut rng = runtime::Rng::new(seed);
    let (mut outputs, mut labels, mut posterior) = (Vec::with_capacity(3 * n), Vec::with_capacity(n), Vec::with_capacity(3 * n));
    for i in 0..n {
        let y = i % 3;
        let l: Vec<f64> = (0..3).map(|k| if k == y { 1.5 } else { 0.0 } + rng.normal()).collect();
        let z: Vec<f64> = l.iter().zip(BIAS).map(|(v, b)| SHARPNESS * v + b).collect();
        outputs.extend(softmax(&z));
        posterior.extend(softmax(&l.iter().map(|v| 1.5 * v).collect::<Vec<_>>()));
        labels.push(y);
    }
    (outputs, labels, posterior)
}

/// Mean −log P(label) and the expected calibration error (15 equal bins of the top
/// probability: Σ_b (n_b/n)·|accuracy_b − confidence_b|).
pub fn scores(probs: &[f64], labels: &[usize]) -> (f64, f64) {
    let n = labels.len();
    let nll = -probs.chunks(3).zip(labels).map(|(p, y)| p[*y].ln()).sum::<f64>() / n as f64;
    let mut bins = [(0usize, 0.0f64, 0.0f64); 15];
    for (p, y) in probs.chunks(3).zip(labels) {
        let (top, conf) = p.iter().enumerate().fold((0, f64::MIN), |a, (i, v)| if *v > a.1 { (i, *v) } else { a });
        let b = ((conf * 15.0) as usize).min(14);
        bins[b].0 += 1;
        bins[b].1 += conf;
        bins[b].2 += f64::from(u8::from(top == *y));
    }
    let ece = bins.iter().filter(|b| b.0 > 0).map(|(_, conf, acc)| (acc - conf).abs() / n as f64).sum::<f64>();
    (nll, ece)
}

/// What [`run`] measured: (label NLL, ECE) of the raw outputs, the flows' recalibration and
/// the true posterior, on held-out examples.
#[derive(Debug, Clone, Copy)]
pub struct Report {
    pub raw: (f64, f64),
    pub flows: (f64, f64),
    pub truth: (f64, f64),
}

/// Ternary coordinates of rows of 3 (`stride` apart): (p1 + p2/2, p2·√3/2).
fn ternary(rows: &[f64], stride: usize) -> Vec<[f64; 2]> {
    rows.chunks(stride).map(|p| [p[1] + 0.5 * p[2], p[2] * 3f64.sqrt() / 2.0]).collect()
}

/// Fits the three class-conditional flows for `steps` Adam steps each, recalibrates held-out
/// outputs, prints and returns the scores; figures go to `out` when given.
pub fn run(steps: usize, out: Option<&Path>) -> Report {
    let src = include_str!("../flows/calibration.flow");
    let (_, _, d) = flowc::cli::load_str("calibration.flow", src).expect("the example's flow compiles");
    let f = d.flow("outputs").expect("the flow");
    let (train, train_labels, _) = data(9000, 1);
    let (test, test_labels, truth) = data(6000, 2);
    let objective = FlowObjective::new(&d, "outputs", Float::F64, 0).expect("a compiled objective");
    let program = lower::lower(&d).expect("lowered");
    let log_prob = flowc::jit::compile(program.kernel("outputs", Kind::LogProb).expect("a kernel"), Float::F64).expect("compiled");
    let forward = flowc::jit::compile(program.kernel("outputs", Kind::Forward).expect("a kernel"), Float::F64).expect("compiled");
    let n = test_labels.len();
    let mut log_q = vec![0.0; 3 * n]; // log q_k(p) per test row, class-major
    let mut samples = Vec::new();
    let mut params = Vec::new();
    for k in 0..3 {
        let rows: Vec<f64> = train.chunks(3).zip(&train_labels).filter(|(_, y)| **y == k).flat_map(|(p, _)| p.to_vec()).collect();
        let init = flowc::params::flat(f, &flowc::params::init(&d, f, 10 + k as u64));
        let opts = TrainOptions { steps, batch: 256, lr: 1e-2, schedule: Schedule::Cosine, seed: k as u64, ..TrainOptions::default() };
        let mut trainer = Trainer::new(&objective, objective.kinds(), init, &rows, None, opts).expect("valid options");
        let outcome = trainer.run(|_| true).expect("training runs");
        println!(
            "class {k}: {} outputs, {} steps in {:.2} s, training NLL {:.4}",
            rows.len() / 3,
            outcome.steps,
            outcome.seconds,
            trainer.mean_nll(&rows)
        );
        let theta = trainer.params().to_vec();
        log_prob.run_f64(&test, &theta, &mut log_q[k * n..(k + 1) * n]).expect("scored");
        // samples from this class's flow, as many as its test examples
        let z = flowc::interp::base_rows(f, 50 + k as u64, 0, n / 3);
        let mut x = vec![0.0; (n / 3) * 4];
        forward.run_f64(&z, &theta, &mut x).expect("sampled");
        samples.extend(x);
        params.push(theta);
    }
    // Bayes' rule with equal class frequencies
    let recalibrated: Vec<f64> = (0..n).flat_map(|r| softmax(&[log_q[r], log_q[n + r], log_q[2 * n + r]])).collect();
    let report =
        Report { raw: scores(&test, &test_labels), flows: scores(&recalibrated, &test_labels), truth: scores(&truth, &test_labels) };
    println!("held-out labels ({n} examples):       NLL      ECE");
    for (what, (nll, ece)) in
        [("classifier outputs", report.raw), ("recalibrated by the flows", report.flows), ("true posterior", report.truth)]
    {
        println!("  {what:<28} {nll:.4}   {ece:.4}");
    }
    if let Some(dir) = out {
        std::fs::create_dir_all(dir).expect("a figure directory");
        let extent = Extent { x0: 0.0, x1: 1.0, y0: 0.0, y1: 3f64.sqrt() / 2.0 };
        plot::scatter_pair(
            &dir.join("calibration_outputs.png"),
            extent,
            ("classifier outputs (held out)", &ternary(&test, 3)),
            ("samples from the three fitted flows", &ternary(&samples, 4)),
        )
        .expect("a figure");
        // class 0's fitted density on the triangle (outside it: no density)
        let res = 200;
        let mut grid = Vec::with_capacity(res * res * 3);
        for j in 0..res {
            for i in 0..res {
                let (u, v) = ((i as f64 + 0.5) / res as f64, (j as f64 + 0.5) / res as f64 * extent.y1);
                let p2 = v * 2.0 / 3f64.sqrt();
                let p1 = u - 0.5 * p2;
                grid.extend([1.0 - p1 - p2, p1, p2]);
            }
        }
        let inside: Vec<bool> = grid.chunks(3).map(|p| p.iter().all(|v| *v > 0.0)).collect();
        let safe: Vec<f64> = grid.chunks(3).zip(&inside).flat_map(|(p, ok)| if *ok { p.to_vec() } else { vec![1.0 / 3.0; 3] }).collect();
        // the mixture of the three fitted densities, drawn as p^(1/5) (it piles up at the
        // corners: the outputs are overconfident)
        let mut per_class = vec![vec![0.0; res * res]; 3];
        for (k, lq) in per_class.iter_mut().enumerate() {
            log_prob.run_f64(&safe, &params[k], lq).expect("scored");
        }
        let dens: Vec<f64> = (0..res * res)
            .map(|i| {
                if !inside[i] {
                    return f64::NEG_INFINITY;
                }
                let top = (0..3).map(|k| per_class[k][i]).fold(f64::NEG_INFINITY, f64::max);
                let mix = top + ((0..3).map(|k| (per_class[k][i] - top).exp()).sum::<f64>() / 3.0).ln();
                0.2 * mix
            })
            .collect();
        plot::heatmap(&dir.join("calibration_density.png"), "fitted density of the outputs (color: p^(1/5))", extent, res, &dens, &[])
            .expect("a figure");
        println!("figures: {}, {}", dir.join("calibration_outputs.png").display(), dir.join("calibration_density.png").display());
    }
    report
}
