//! One flow, two backends: compiled ahead of time into Rust by `flow_file!` and at run time
//! by the Cranelift JIT from the same kernel program. They compute the same values; this
//! prints how fast each scores rows (log_prob, one thread, f64 and f32), for the reference
//! workloads W2 (sas16, elementwise) and W1 (realnvp8, coupling layers with 64-unit networks;
//! parameters written to a safetensors file and loaded by both, as `flowc train` output is).
//!
//! Run it with `cargo run --release -p examples --example aot_vs_jit`.

use flowc::codegen::clif::Float;
use flowc::lower::Kind;
use runtime::Flow;
use std::time::Instant;

// reference workload W2: 16 dimensions, 8 sinh-arcsinh layers
flow_macros::flow_file!("../bench/sas16.flow");
// reference workload W1: RealNVP on R^8
flow_macros::flow_file!("flows/realnvp8.flow");

/// W2's parameters: eps ~ N(0, 0.3²), delta = softplus(r) with r ~ N(0.5, 0.2²).
pub fn w2_params(seed: u64) -> Vec<f64> {
    let mut rng = runtime::Rng::new(seed);
    let mut p = vec![0.0; Sas16::<f64>::PARAM_LEN];
    for s in Sas16::<f64>::PARAMS {
        for v in &mut p[s.offset..s.offset + s.len] {
            *v = match s.kind {
                runtime::Kind::Positive => runtime::math::softplus(0.5 + 0.2 * rng.normal()),
                _ => 0.3 * rng.normal(),
            };
        }
    }
    p
}

/// Median seconds of `runs` calls of `a` and of `b`, measured alternately (the machine may
/// be shared: both see the same load).
pub fn time2(runs: usize, mut a: impl FnMut(), mut b: impl FnMut()) -> (f64, f64) {
    let mut ta = Vec::new();
    let mut tb = Vec::new();
    for _ in 0..runs {
        let s = Instant::now();
        a();
        ta.push(s.elapsed().as_secs_f64());
        let s = Instant::now();
        b();
        tb.push(s.elapsed().as_secs_f64());
    }
    let median = |mut t: Vec<f64>| {
        t.sort_by(|x, y| x.partial_cmp(y).unwrap());
        t[t.len() / 2]
    };
    (median(ta), median(tb))
}

/// W1's parameters: every weight and bias ~ N(0, 0.1²), written to a safetensors file at
/// `path` (PyTorch names and shapes, as `flowc params` lists them).
pub fn w1_params_file(seed: u64, path: &std::path::Path) {
    let mut rng = runtime::Rng::new(seed);
    let mut tensors = std::collections::BTreeMap::new();
    let (_, _, d) = flowc::cli::load_str("realnvp8.flow", include_str!("../flows/realnvp8.flow")).unwrap();
    let f = d.flow("realnvp8").unwrap();
    for (k, l) in f.layers.iter().enumerate() {
        for (name, shape) in l.tensors(k, f.dim) {
            let data = (0..shape.iter().product::<usize>()).map(|_| 0.1 * rng.normal()).collect();
            tensors.insert(name, runtime::param_file::Tensor { shape, data });
        }
    }
    runtime::param_file::write(path, &tensors, runtime::param_file::FileDtype::F64).unwrap();
}

/// W1 (realnvp8): rows per second of each backend and precision, `[(aot, jit); 2]` for f64,
/// f32. Panics when the backends disagree.
pub fn run_w1(rows: usize, runs: usize) -> [(f64, f64); 2] {
    let path = std::env::temp_dir().join(format!("flowc-w1-{}.safetensors", std::process::id()));
    w1_params_file(0x5eed, &path);
    let aot = Realnvp8::<f64>::from_file(&path).unwrap();
    let aot32 = Realnvp8::<f32>::from_file(&path).unwrap();
    let _ = std::fs::remove_file(&path);

    let xs = aot.sample_rows(&mut runtime::Rng::new(7), rows);
    let xs32: Vec<f32> = xs.iter().map(|v| *v as f32).collect();
    let (mut a, mut j) = (vec![0.0; rows], vec![0.0; rows]);
    let (mut a32, mut j32) = (vec![0.0f32; rows], vec![0.0f32; rows]);

    // the generated flow hands itself to the JIT (feature `jit`); kernels compile on first use
    let start = Instant::now();
    let jit = aot.jit().unwrap();
    jit.log_prob_batch(&xs[..8], &mut j[..1]).unwrap();
    jit.log_prob_batch(&xs32[..8], &mut j32[..1]).unwrap();
    let jit_ms = start.elapsed().as_secs_f64() * 1e3;

    aot.log_prob_batch(&xs, &mut a);
    jit.log_prob_batch(&xs, &mut j).unwrap();
    jit.log_prob_batch(&xs32, &mut j32).unwrap();
    aot32.log_prob_batch(&xs32, &mut a32);
    for r in 0..rows {
        // the JIT's vector tanh and exp are within a few ulps of libm's
        assert!((a[r] - j[r]).abs() <= 1e-12 * (1.0 + a[r].abs()), "row {r}: AOT {} vs JIT {}", a[r], j[r]);
        assert!((a32[r] - j32[r]).abs() <= 1e-4 * (1.0 + a32[r].abs()), "row {r}: AOT {} vs JIT {} (f32)", a32[r], j32[r]);
    }
    let rate = |(a, b): (f64, f64)| (rows as f64 / a, rows as f64 / b);
    let out = [
        rate(time2(runs, || aot.log_prob_batch(&xs, &mut a), || jit.log_prob_batch(&xs, &mut j).unwrap())),
        rate(time2(runs, || aot32.log_prob_batch(&xs32, &mut a32), || jit.log_prob_batch(&xs32, &mut j32).unwrap())),
    ];
    report("realnvp8 (W1)", rows, runs, jit_ms, out);
    out
}

fn report(what: &str, rows: usize, runs: usize, jit_ms: f64, out: [(f64, f64); 2]) {
    println!("{what} log_prob, {rows} rows, 1 thread, median of {runs} runs (JIT compile: {jit_ms:.1} ms for both precisions)");
    println!("{:<6} {:>16} {:>16} {:>8}", "prec", "AOT rows/s", "JIT rows/s", "AOT/JIT");
    for (name, (aot, jit)) in ["f64", "f32"].iter().zip(out) {
        println!("{name:<6} {aot:>16.3e} {jit:>16.3e} {:>8.2}", aot / jit);
    }
}

/// W2 (sas16): rows per second of each backend and precision: `[(aot, jit); 2]` for f64,
/// f32. Panics when the backends disagree.
pub fn run(rows: usize, runs: usize) -> [(f64, f64); 2] {
    let p = w2_params(0x5eed);
    let aot = Sas16::from_slice(&p).unwrap();
    let p32: Vec<f32> = p.iter().map(|v| *v as f32).collect();
    let aot32 = Sas16::<f32>::from_slice(&p32).unwrap();

    let (_, _, d) = flowc::cli::load_str("sas16.flow", include_str!("../../bench/sas16.flow")).unwrap();
    let program = flowc::lower::lower(&d).unwrap();
    let k = program.kernel("sas16", Kind::LogProb).unwrap();
    let start = Instant::now();
    let jit = flowc::jit::compile(k, Float::F64).unwrap();
    let jit32 = flowc::jit::compile(k, Float::F32).unwrap();
    let jit_ms = start.elapsed().as_secs_f64() * 1e3;

    // data: points drawn from the flow itself
    let xs = aot.sample_rows(&mut runtime::Rng::new(7), rows);
    let xs32: Vec<f32> = xs.iter().map(|v| *v as f32).collect();
    let (mut a, mut j) = (vec![0.0; rows], vec![0.0; rows]);
    let (mut a32, mut j32) = (vec![0.0f32; rows], vec![0.0f32; rows]);
    aot.log_prob_batch(&xs, &mut a);
    jit.run_f64(&xs, &p, &mut j).unwrap();
    aot32.log_prob_batch(&xs32, &mut a32);
    jit32.run_f32(&xs32, &p32, &mut j32).unwrap();
    for r in 0..rows {
        let tol = 4.0 * f64::EPSILON * a[r].abs();
        assert!((a[r] - j[r]).abs() <= tol, "row {r}: AOT {} vs JIT {}", a[r], j[r]);
        let tol = 4.0 * f32::EPSILON * a32[r].abs();
        assert!((a32[r] - j32[r]).abs() <= tol, "row {r}: AOT {} vs JIT {} (f32)", a32[r], j32[r]);
    }

    let rate = |(a, b): (f64, f64)| (rows as f64 / a, rows as f64 / b);
    let out = [
        rate(time2(runs, || aot.log_prob_batch(&xs, &mut a), || jit.run_f64(&xs, &p, &mut j).unwrap())),
        rate(time2(runs, || aot32.log_prob_batch(&xs32, &mut a32), || jit32.run_f32(&xs32, &p32, &mut j32).unwrap())),
    ];
    report("sas16 (W2)", rows, runs, jit_ms, out);
    out
}
