//! A RealNVP flow on 2-D data (two moons), declared once in `flows/moons.flow`:
//!
//! 1. trained in-process with the runtime's [`runtime::train::Trainer`] on the flow's
//!    JIT-compiled gradient ([`flowc::objective::FlowObjective`]), then scored by the
//!    ahead-of-time type that `flow_file!` generated from the same file;
//! 2. trained by `flowc train` (here through [`flowc::cli::run`], the binary's own entry
//!    point), its safetensors output loaded by the generated type's `from_file`, and scored.
//!
//! Run it with `cargo run --release -p examples --example train_moons`.

use flowc::codegen::clif::Float;
use flowc::objective::FlowObjective;
use runtime::train::{Schedule, TrainOptions, Trainer};
use runtime::Flow;

flow_macros::flow_file!("flows/moons.flow");

/// `n` points of two moons (σ = 0.1 noise, scaled by 2): the demo's data.
pub fn two_moons(n: usize, seed: u64) -> Vec<f64> {
    flowc::demo::two_moons(n, &mut runtime::Rng::new(seed))
}

/// Mean negative log-likelihood of `rows` under the ahead-of-time flow.
pub fn mean_nll(flow: &Moons<f64>, rows: &[f64]) -> f64 {
    let mut lp = vec![0.0; rows.len() / 2];
    flow.log_prob_rows(rows, &mut lp);
    -lp.iter().sum::<f64>() / lp.len() as f64
}

/// What [`run`] measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// The standard normal base's test NLL (the flow at its identity-like start scores about this).
    pub base_nll: f64,
    /// Part 1: test NLL from the trainer's objective (JIT) and from the AOT type.
    pub trained_jit: f64,
    pub trained_aot: f64,
    /// Part 2: the training NLL `flowc train` printed, and the AOT type's on the same data
    /// with the weights it wrote.
    pub cli_printed: f64,
    pub cli_aot: f64,
}

/// Trains for `steps` Adam steps each way; prints and returns the figures.
pub fn run(steps: usize) -> Report {
    let src = include_str!("../flows/moons.flow");
    let (_, _, d) = flowc::cli::load_str("moons.flow", src).expect("the example's flow compiles");
    let data = two_moons(8000, 1);
    let test = two_moons(2000, 2);
    let base_nll = mean_nll(&Moons::<f64>::default(), &test);

    // 1. the runtime's trainer on the JIT-compiled gradient
    let objective = FlowObjective::new(&d, "moons", Float::F64, 0).expect("a compiled objective");
    let f = d.flow("moons").expect("the flow");
    let init = flowc::params::flat(f, &flowc::params::init(&d, f, 7));
    let opts = TrainOptions { steps, batch: 256, lr: 3e-3, schedule: Schedule::Cosine, seed: 3, ..TrainOptions::default() };
    let mut trainer = Trainer::new(&objective, objective.kinds(), init, &data, None, opts).expect("valid options");
    let outcome = trainer.run(|_| true).expect("training runs");
    let trained_jit = trainer.mean_nll(&test);
    let aot = Moons::<f64>::from_slice(trainer.params()).expect("parameters in range");
    let trained_aot = mean_nll(&aot, &test);
    println!("base N(0, I): test NLL {base_nll:.4}");
    println!(
        "trained in-process: {} steps in {:.2} s; test NLL {trained_jit:.6} (JIT objective), {trained_aot:.6} (flow_file! type)",
        outcome.steps, outcome.seconds
    );

    // 2. `flowc train`, then its weights in the generated type
    let dir = std::env::temp_dir().join(format!("flowc-train-moons-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let (flow_file, data_file, out) = (dir.join("moons.flow"), dir.join("moons.csv"), dir.join("moons.safetensors"));
    std::fs::write(&flow_file, src).expect("writable");
    let csv: String = data.chunks(2).map(|r| format!("{:e},{:e}\n", r[0], r[1])).collect();
    std::fs::write(&data_file, csv).expect("writable");
    let args = [
        "flowc",
        "train",
        flow_file.to_str().unwrap(),
        "--name",
        "moons",
        "--data",
        data_file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--steps",
        &steps.to_string(),
        "--batch",
        "256",
        "--lr",
        "3e-3",
        "--schedule",
        "cosine",
        "--quiet",
    ];
    let cli = <flowc::cli::Cli as clap::Parser>::try_parse_from(args).expect("valid arguments");
    let printed = flowc::cli::run(cli).unwrap_or_else(|f| panic!("{}", f.message));
    print!("flowc train: {printed}");
    let cli_printed: f64 =
        printed.split("training NLL ").nth(1).and_then(|r| r.split_whitespace().next()).and_then(|v| v.parse().ok()).expect("the NLL line");
    let loaded = Moons::<f64>::from_file(&out).expect("the weights flowc train wrote");
    let cli_aot = mean_nll(&loaded, &data);
    println!("its weights loaded by Moons::from_file: training NLL {cli_aot:.6}");
    let _ = std::fs::remove_dir_all(&dir);
    Report { base_nll, trained_jit, trained_aot, cli_printed, cli_aot }
}
