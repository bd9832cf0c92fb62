//! `flowc train` end to end: a Gaussian target fitted to its entropy, resume equal to an
//! uninterrupted run, results independent of the thread count, validation with early
//! stopping, the NaN guard, and bad input (exit 1, a message, nothing written).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn flowc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flowc")).args(args).output().expect("run flowc")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

const SRC: &str = "
bijector affine(x; shift: real, log_scale: real) = x * exp(log_scale) + shift;
bijector realnvp_affine(x; s: real, t: real) = x * exp(tanh(s)) + t;
flow gauss(x: R^2) { base normal; elementwise(affine); }
flow glowish(x: R^2) { base normal; actnorm; coupling(mask = [1, 0], bijector = realnvp_affine, net = mlp([8], tanh)); actnorm; }
flow nvp(x: R^2) {
    base normal;
    coupling(mask = [1, 0], bijector = realnvp_affine, net = mlp([16], tanh));
    coupling(mask = [0, 1], bijector = realnvp_affine, net = mlp([16], tanh));
    elementwise(affine);
}
";

/// Deterministic standard normals (Box–Muller on a xorshift stream).
fn normals(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed | 1;
    let mut u = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    (0..n).map(|_| (-2.0 * u().ln()).sqrt() * (2.0 * std::f64::consts::PI * u()).cos()).collect()
}

fn write_csv(path: &Path, rows: &[Vec<f64>]) {
    let text: String = rows.iter().map(|r| r.iter().map(|v| format!("{v:e}")).collect::<Vec<_>>().join(",") + "\n").collect();
    std::fs::write(path, text).unwrap();
}

/// Points of N((1, -2), diag(0.5², 2²)).
fn gaussian_rows(n: usize, seed: u64) -> Vec<Vec<f64>> {
    let z = normals(2 * n, seed);
    z.chunks(2).map(|p| vec![1.0 + 0.5 * p[0], -2.0 + 2.0 * p[1]]).collect()
}

struct Setup {
    dir: tempfile::TempDir,
    flow: PathBuf,
    data: PathBuf,
}

fn setup(n: usize) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let flow = dir.path().join("t.flow");
    std::fs::write(&flow, SRC).unwrap();
    let data = dir.path().join("data.csv");
    write_csv(&data, &gaussian_rows(n, 5));
    Setup { dir, flow, data }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn read_params(p: &Path) -> std::collections::BTreeMap<String, Vec<f64>> {
    runtime::param_file::read(p).unwrap().into_iter().map(|(k, t)| (k, t.data)).collect()
}

#[test]
fn a_gaussian_target_reaches_its_entropy() {
    let t = setup(4000);
    let rows = gaussian_rows(4000, 5);
    // the best diagonal Gaussian: the entropy at the sample variances
    let mut best = 0.0;
    for c in 0..2 {
        let m = rows.iter().map(|r| r[c]).sum::<f64>() / rows.len() as f64;
        let v = rows.iter().map(|r| (r[c] - m).powi(2)).sum::<f64>() / rows.len() as f64;
        best += 0.5 * (2.0 * std::f64::consts::PI * std::f64::consts::E * v).ln();
    }
    let out = t.dir.path().join("g.safetensors");
    let o = flowc(&[
        "train",
        s(&t.flow),
        "--name",
        "gauss",
        "--data",
        s(&t.data),
        "--out",
        s(&out),
        "--steps",
        "3000",
        "--batch",
        "500",
        "--lr",
        "0.01",
        "--schedule",
        "cosine",
        "--quiet",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    let nll: f64 = text.split("training NLL ").nth(1).and_then(|r| r.split_whitespace().next()).unwrap().parse().unwrap();
    assert!(nll - best < 0.02 && nll > best - 1e-9, "NLL {nll} vs the entropy {best}\n{text}");
    // the parameters it wrote score the data to the same NLL (`flowc score`, independent of training)
    let scores = t.dir.path().join("s.csv");
    let o = flowc(&["score", s(&t.flow), "--name", "gauss", "--params", s(&out), "--input", s(&t.data), "--output", s(&scores)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let lp: Vec<f64> = std::fs::read_to_string(&scores).unwrap().lines().skip(1).map(|l| l.parse().unwrap()).collect();
    let scored = -lp.iter().sum::<f64>() / lp.len() as f64;
    assert!((scored - nll).abs() < 1e-5, "{scored} vs {nll} (printed to 6 decimals)");
    let p = read_params(&out);
    assert!((p["layers.0.shift"][0] - 1.0).abs() < 0.05 && (p["layers.0.shift"][1] + 2.0).abs() < 0.15, "{p:?}");
}

#[test]
fn resuming_and_thread_counts_give_the_same_parameters() {
    let t = setup(1000);
    let common = |out: &Path, steps: &str, threads: &str| {
        vec![
            "train".to_string(),
            s(&t.flow).into(),
            "--name".into(),
            "nvp".into(),
            "--data".into(),
            s(&t.data).into(),
            "--out".into(),
            s(out).into(),
            "--steps".into(),
            steps.into(),
            "--batch".into(),
            "300".into(),
            "--lr".into(),
            "0.005".into(),
            "--init".into(),
            "4".into(),
            "--threads".into(),
            threads.into(),
            "--quiet".into(),
        ]
    };
    let run = |args: Vec<String>| {
        let a: Vec<&str> = args.iter().map(|x| x.as_str()).collect();
        let o = flowc(&a);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        o
    };
    let whole = t.dir.path().join("whole.safetensors");
    run(common(&whole, "40", "1"));
    let two = t.dir.path().join("two.safetensors");
    run(common(&two, "40", "2"));
    assert_eq!(read_params(&whole), read_params(&two), "1 and 2 threads");
    // 15 steps, then resumed to 40 (on 2 threads)
    let split = t.dir.path().join("split.safetensors");
    run(common(&split, "15", "1"));
    let mut args = common(&split, "40", "2");
    args.push("--resume".into());
    run(args);
    assert_eq!(read_params(&whole), read_params(&split), "resumed");
    // resuming a finished run is an error, and leaves the files alone
    let before = std::fs::read(&split).unwrap();
    let mut args = common(&split, "40", "2");
    args.push("--resume".into());
    let a: Vec<&str> = args.iter().map(|x| x.as_str()).collect();
    let o = flowc(&a);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("already taken 40 of 40 steps"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&split).unwrap(), before);
}

#[test]
fn validation_keeps_the_best_parameters_and_progress_goes_to_stderr() {
    let t = setup(2000);
    let out = t.dir.path().join("v.safetensors");
    let o = flowc(&[
        "train",
        s(&t.flow),
        "--name",
        "gauss",
        "--data",
        s(&t.data),
        "--out",
        s(&out),
        "--steps",
        "400",
        "--batch",
        "200",
        "--lr",
        "0.05",
        "--val-fraction",
        "0.25",
        "--val-every",
        "20",
        "--patience",
        "3",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    // not a terminal: plain progress lines, validations among them
    assert!(err.lines().any(|l| l.starts_with("step ") && l.contains("val NLL")), "{err}");
    let text = stdout(&o);
    assert!(text.contains("best validation NLL"), "{text}");
    let state = t.dir.path().join("v.state.safetensors");
    let st = runtime::param_file::read(&state).unwrap();
    let best = &st["best.params"].data;
    // the written parameters are the best validated ones, in slot order (shift, log_scale)
    let p = read_params(&out);
    assert_eq!(&[p["layers.0.shift"].clone(), p["layers.0.log_scale"].clone()].concat(), best);
}

#[test]
fn the_nan_guard_names_the_step_and_keeps_the_last_good_checkpoint() {
    let t = setup(400);
    // finite data whose log-density overflows: the loss of the step that draws it is infinite
    let mut rows = gaussian_rows(400, 9);
    rows[123] = vec![1e200, 0.0];
    let poisoned = t.dir.path().join("poisoned.csv");
    write_csv(&poisoned, &rows);
    let out = t.dir.path().join("p.safetensors");
    let o = flowc(&[
        "train",
        s(&t.flow),
        "--name",
        "gauss",
        "--data",
        s(&poisoned),
        "--out",
        s(&out),
        "--steps",
        "50",
        "--batch",
        "100",
        "--lr",
        "0.01",
        "--checkpoint-every",
        "1",
        "--quiet",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("is not finite") && err.contains("of step "), "{err}");
    let step: usize = err.split("of step ").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    if step > 1 {
        assert!(err.contains(&format!("the last good checkpoint (step {})", step - 1)), "{err}");
        let p = read_params(&out);
        assert!(p.values().flatten().all(|v| v.is_finite()));
    } else {
        assert!(err.contains("no checkpoint was written"), "{err}");
    }
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_training_input_exits_1_and_writes_nothing() {
    let t = setup(100);
    let d = t.dir.path();
    let three = d.join("three.csv");
    std::fs::write(&three, "1,2,3\n4,5,6\n").unwrap();
    let nan = d.join("nan.csv");
    std::fs::write(&nan, "1,2\n3,NaN\n").unwrap();
    let empty = d.join("empty.csv");
    std::fs::write(&empty, "").unwrap();
    // parameters of another flow
    let other = d.join("other.safetensors");
    let o = flowc(&["params", s(&t.flow), "--name", "nvp", "--init", "1", "--out", s(&other)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = d.join("out.safetensors");
    let missing = d.join("missing.csv");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--data", s(&three)], "rows have 3 columns"),
        (vec!["--data", s(&nan)], "row 2, column 2: NaN is not allowed"),
        (vec!["--data", s(&empty)], ""),
        (vec!["--data", s(&t.data), "--params", s(&other)], "layers.0"),
        (vec!["--data", s(&t.data), "--resume"], "cannot resume"),
        (vec!["--data", s(&t.data), "--val", s(&t.data), "--val-fraction", "0.1"], "not both"),
        (vec!["--data", s(&t.data), "--val-fraction", "1.5"], "between 0 and 1"),
        (vec!["--data", s(&t.data), "--epochs", "2"], "`--steps` or `--epochs`, not both"),
        (vec!["--data", s(&t.data), "--batch", "0"], "batch size"),
        (vec!["--data", s(&t.data), "--lr=-1"], "learning rate"),
        (vec!["--data", s(&missing)], "missing.csv"),
    ];
    for (extra, phrase) in cases {
        let mut args = vec!["train", s(&t.flow), "--name", "gauss", "--out", s(&out), "--steps", "5", "--quiet"];
        args.extend(extra.iter());
        let o = flowc(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{extra:?}: {err}");
        assert!(err.starts_with("error: ") && err.contains(phrase), "{extra:?}: {err}");
        assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "{err}");
        assert!(!out.exists() && !d.join("out.state.safetensors").exists(), "{extra:?} wrote output");
    }
}

#[test]
fn actnorm_layers_start_from_the_data() {
    let t = setup(3000);
    let rows = gaussian_rows(3000, 5);
    let out = t.dir.path().join("a.safetensors");
    // a step too small to move anything: the written parameters are the initialization
    let o = flowc(&[
        "train",
        s(&t.flow),
        "--name",
        "glowish",
        "--data",
        s(&t.data),
        "--out",
        s(&out),
        "--steps",
        "1",
        "--batch",
        "100",
        "--lr",
        "1e-15",
        "--quiet",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("actnorm layers 0, 2 initialized from the data"), "{}", stdout(&o));
    let p = read_params(&out);
    // the last actnorm (data side) sees the data itself: its shift and scale are the sample's
    for c in 0..2 {
        let m = rows.iter().map(|r| r[c]).sum::<f64>() / rows.len() as f64;
        let v = rows.iter().map(|r| (r[c] - m).powi(2)).sum::<f64>() / rows.len() as f64;
        assert!((p["layers.2.shift"][c] - m).abs() < 1e-9, "{p:?}");
        assert!((p["layers.2.log_scale"][c] - 0.5 * v.ln()).abs() < 1e-9, "{p:?}");
    }
    // the first one sees the coupling's output: standardized there, so the whole flow maps the
    // data to points of mean 0 and variance 1 per coordinate (`flowc eval` inverse)
    let z = t.dir.path().join("z.csv");
    let o = flowc(&[
        "eval",
        s(&t.flow),
        "--name",
        "glowish",
        "--params",
        s(&out),
        "--input",
        s(&t.data),
        "--direction",
        "inverse",
        "--output",
        s(&z),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let zs: Vec<Vec<f64>> =
        std::fs::read_to_string(&z).unwrap().lines().skip(1).map(|l| l.split(',').map(|v| v.parse().unwrap()).collect()).collect();
    for c in 0..2 {
        let m = zs.iter().map(|r| r[c]).sum::<f64>() / zs.len() as f64;
        let v = zs.iter().map(|r| (r[c] - m).powi(2)).sum::<f64>() / zs.len() as f64;
        assert!(m.abs() < 1e-9 && (v - 1.0).abs() < 1e-9, "coordinate {c}: mean {m}, variance {v}");
    }
}

#[test]
fn f32_training_and_spline_flows() {
    // a neural spline flow, trained in f32: it improves on its start, and the parameters it
    // writes score the data (in f64) near the NLL it printed
    let t = setup(2000);
    let src = "flow s(x: R^2) { base normal; coupling(mask = [1, 0], bijector = spline(bins = 6, bound = 10), net = mlp([16], tanh)); coupling(mask = [0, 1], bijector = spline(bins = 6, bound = 10), net = mlp([16], tanh)); }";
    let flow = t.dir.path().join("s.flow");
    std::fs::write(&flow, src).unwrap();
    let out = t.dir.path().join("s.safetensors");
    let o = flowc(&[
        "train",
        s(&flow),
        "--name",
        "s",
        "--data",
        s(&t.data),
        "--out",
        s(&out),
        "--steps",
        "1500",
        "--batch",
        "200",
        "--lr",
        "0.01",
        "--precision",
        "f32",
        "--quiet",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("f32"), "{text}");
    let nll: f64 = text.split("training NLL ").nth(1).and_then(|r| r.split_whitespace().next()).unwrap().parse().unwrap();
    let scores = t.dir.path().join("s.csv");
    let o = flowc(&["score", s(&flow), "--name", "s", "--params", s(&out), "--input", s(&t.data), "--output", s(&scores)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let lp: Vec<f64> = std::fs::read_to_string(&scores).unwrap().lines().skip(1).map(|l| l.parse().unwrap()).collect();
    let scored = -lp.iter().sum::<f64>() / lp.len() as f64;
    assert!((scored - nll).abs() < 1e-4, "f64 score {scored} vs the f32 training NLL {nll}");
    // the standard normal scores this data at about 6.5 nats, the best density at its
    // entropy, 2.84
    assert!(nll < 3.0, "{text}");
}
