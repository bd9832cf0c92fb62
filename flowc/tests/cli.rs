//! The binary on bad and good input: exit codes, located messages, no partial outputs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn flowc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flowc")).args(args).output().expect("run flowc")
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Each malformed source: the text, a phrase of the message, and the `line:col` it points at.
const MALFORMED: &[(&str, &str, &str)] = &[
    ("bijector f(x) = foo(x);", "unknown function `foo`", "1:17"),
    (
        "map f(x: sphere(n); M: matrix(n, n)) = normalize(M * x);\nflow s(x: sphere(3)) { base uniform; f; }",
        "map `f` needs an inverse",
        "1:5",
    ),
    (
        "map f(x: sphere(n); M: matrix(n, n)) = M * x where inverse = numeric;\nflow s(x: sphere(3)) { base uniform; f; }",
        "end it with `normalize(...)`",
        "1:5",
    ),
    (
        "map f(x: sphere(n); b: vector(n)) = normalize(x + b) where inverse = normalize(y + b);\nflow s(x: sphere(3)) { base uniform; f; }",
        "the inverse given for map `f` does not invert it",
        "1:5",
    ),
    (
        "map f(x: sphere(n); b: vector(n)) = normalize(x + b) where inverse = numeric;\nflow s(x: simplex(3)) { base uniform; f; }",
        "map `f` maps the sphere, but flow `s` is on simplex(3)",
        "2:39",
    ),
    (
        "map f(x: sphere(3); b: vector(3)) = normalize(x + b) where inverse = numeric;\nflow s(x: sphere(4)) { base uniform; f; }",
        "map `f` is written for sphere(3)",
        "2:38",
    ),
    ("map f(x: sphere(n); b: vector(n)) = normalise(x + b) where inverse = numeric;", "did you mean `normalize`?", "1:37"),
    ("map f(x: sphere(n); M: matrix(n, n)) = normalize(x * M) where inverse = numeric;", "write `transpose(M) * v`", "1:50"),
    (
        "map f(x: sphere(n); b: vector(2)) = normalize(x + b) where inverse = numeric;",
        "a vector(n) and a vector(2) do not have the same shape",
        "1:47",
    ),
    ("map f(x: sphere(n); b: vector(n)) = dot(x, b) where inverse = numeric;", "is a scalar, not a point", "1:37"),
    ("map f(x: torus(n); b: vector(n)) = x where inverse = numeric;", "lives on `sphere(n)` or `simplex(n)`", "1:10"),
    (
        "map f(x: sphere(n); b: vector(n)) = normalize(x + b) where inverse = numeric;\nflow s(x: sphere(3)) { base uniform; f(b = 1); }",
        "its parameters are learned",
        "2:38",
    ),
    ("bijector f(x) = exq(x);", "did you mean `exp`?", "1:17"),
    ("bijector f(x) = pow(x);", "`pow` takes 2 arguments, found 1", "1:17"),
    ("bijector f(x; a: real) = a + 1;", "does not use the input `x`", "1:26"),
    ("bijector f(x) = x + b;", "unknown name `b`", "1:21"),
    ("bijector f(x) = x;\nbijector f(x) = 2 * x;", "`f` is defined twice", "2:10"),
    ("bijector f(x; a: real, a: real) = x + a;", "parameter `a` is declared twice", "1:24"),
    ("bijector f(x; a: reel) = x + a;", "did you mean `real`?", "1:18"),
    ("bijector f(x) = x * x;", "cannot prove that `f` is invertible", "1:17"),
    ("bijector f(x) = x ^ 3;", "write `pow(base, exponent)`", "1:19"),
    ("# a comment\nbijector f(x) = x;", "does not start a comment", "1:1"),
    ("bijector f(x = x;", "cannot read this as flow-language tokens", "1:11"),
    ("bijector f(x) = exp(x)", "expected `;` at the end of the bijector", "1:"),
    ("bijector f(x) = exp(x);\nflow g(x: R^2) { base normal; elementwse(f); }", "unknown layer `elementwse`", "2:31"),
    ("flow g(x: R^2) { base normal; elementwise(nope); }", "unknown bijector `nope`", "1:43"),
    ("bijector s(x; d: positive) = d * x;\nflow g(x: R^1) { elementwise(s(d = -1)); }", "needs a value in (0, inf)", "2:36"),
    ("bijector s(x; d: positive) = d * x;\nflow g(x: R^1) { elementwise(s(q = 1)); }", "has no parameter `q`", "2:32"),
    ("bijector f(x; a: real, b: real) = x + a;", "parameter `b` is not used", "1:24"),
    ("bijector s(x; t: real) = x + t where inverse = y + t;", "the given inverse of `s` is wrong", "1:48"),
    ("bijector f(x) = exp(x);\nflow g(x: R^0) { elementwise(f); }", "at least one dimension", "2:11"),
    ("bijector f(x) = sin(x) where inverse = numeric;", "is not monotone", "1:17"),
    ("bijector f(x) = exp(x);\nflow g(x: R^2) { base cauchy; elementwise(f); }", "unknown base distribution `cauchy`", "2:23"),
    ("bijector f(x) = exp(x);\nflow g(x: sphere(3)) { elementwise(f); }", "`elementwise` maps R^n, but flow `g` is on sphere(3)", "2:24"),
    ("flow g(x: simplex(1)) { calibration; }", "`simplex` takes the dimension n ≥ 2", "1:11"),
    (
        "flow g(x: simplex(3)) { base dirichlet([1, 2]); calibration; }",
        "`dirichlet` has 2 parameters but the flow is on simplex(3)",
        "1:30",
    ),
    ("flow g(x: simplex(3)) { base dirichlet([1, 0, 2]); calibration; }", "`dirichlet` takes a list of positive numbers", "1:30"),
    ("flow g(x: simplex(3)) { normalized_affine; }", "`normalized_affine` maps the sphere, but flow `g` is on simplex(3)", "1:25"),
    ("flow g(x: sphere(3)) { calibration; }", "`calibration` maps the simplex, but flow `g` is on sphere(3)", "1:24"),
    ("flow g(x: torus(3)) { calibration; }", "unknown space `torus`", "1:11"),
    ("flow g(x: sphere(3)) { base vmf(-1); normalized_affine; }", "`vmf` takes its concentration κ, a positive number", "1:29"),
    ("flow g(x: sphere(1)) { normalized_affine; }", "`sphere` takes the dimension n ≥ 2", "1:11"),
    ("flow g(x: sphere(3)) { base normal; normalized_affine; }", "base `normal` is not a distribution on sphere(3)", "1:29"),
    ("flow g(x: R^3) { base normal; normalized_linear; }", "`normalized_linear` maps the sphere, but flow `g` is on R^3", "1:31"),
    ("flow g(x: sphere(3)) { normalized_affine(seed = 1); }", "`normalized_affine` takes no arguments", "1:24"),
    ("bijector f(x: (1, 0)) = x;", "lower bound must be below", "1:15"),
    ("bijector f(x) = 1e999 * x;", "does not fit in an f64", "1:17"),
    ("bijector f(y) = exp(y);", "cannot name the input", "1:12"),
    ("bijector f(x; pi: real) = x + pi;", "cannot name a parameter", "1:15"),
];

#[test]
fn malformed_sources_exit_1_with_a_located_message() {
    let dir = tempfile::tempdir().unwrap();
    assert!(MALFORMED.len() >= 15);
    for (i, (src, phrase, at)) in MALFORMED.iter().enumerate() {
        let p = write(dir.path(), &format!("bad{i}.flow"), src);
        for cmd in ["derive", "check"] {
            let o = flowc(&[cmd, p.to_str().unwrap()]);
            let err = stderr(&o);
            assert_eq!(o.status.code(), Some(1), "{src}\n{err}");
            assert!(err.contains(phrase), "{src}\nexpected `{phrase}` in:\n{err}");
            let loc = format!("bad{i}.flow:{at}");
            assert!(err.contains(&loc), "{src}\nexpected `{loc}` in:\n{err}");
            assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "{err}");
        }
    }
}

#[test]
fn all_errors_are_reported_in_one_pass() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "many.flow", "bijector f(x) = foo(x);\nbijector g(x; a: reel) = x + a;\nbijector h(x) = x + q;\n");
    let o = flowc(&["derive", p.to_str().unwrap()]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1));
    for phrase in ["unknown function `foo`", "unknown parameter kind `reel`", "unknown name `q`"] {
        assert!(err.contains(phrase), "{phrase} missing in:\n{err}");
    }
    assert_eq!(err.matches("error:").count(), 3, "{err}");
}

#[test]
fn missing_file_and_unknown_name() {
    let o = flowc(&["derive", "/nonexistent/model.flow"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot read `/nonexistent/model.flow`"));

    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "m.flow", "bijector softplus_map(x) = softplus(x);");
    let o = flowc(&["derive", p.to_str().unwrap(), "--name", "softplus_mop"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("did you mean `softplus_map`?"), "{}", stderr(&o));

    let o = flowc(&["derive"]);
    assert_eq!(o.status.code(), Some(1), "usage errors are user errors");
    let o = flowc(&["derive", p.to_str().unwrap(), "--format", "yaml"]);
    assert_eq!(o.status.code(), Some(1));
}

const MODEL: &str = "bijector affine(x; shift: real, log_scale: real) = x * exp(log_scale) + shift;
bijector sas(x; eps: real, delta: positive) = sinh(delta * asinh(x) - eps);
bijector log_map(x: positive) = log(x);
flow f(x: R^2) { base normal; elementwise(sas(eps = 0.3, delta = 1.5)); elementwise(affine); }";

#[test]
fn eval_forward_then_inverse_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let m = write(dir.path(), "m.flow", MODEL);
    let input = write(dir.path(), "z.csv", "z0,z1\n0,0\n1.5,-2\n-30,1e5\n");
    let xs = dir.path().join("x.csv");
    let zs = dir.path().join("z2.npy");
    let o = flowc(&[
        "eval",
        m.to_str().unwrap(),
        "--name",
        "f",
        "--input",
        input.to_str().unwrap(),
        "--direction",
        "forward",
        "--output",
        xs.to_str().unwrap(),
        "--param",
        "layers.1.shift=0.5",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let x = runtime::io::read_table(&xs, &Default::default()).unwrap();
    assert_eq!((x.rows, x.cols), (3, 3));
    // strip the log-det column and invert
    let xin = dir.path().join("xin.csv");
    let t = runtime::io::Table::new(3, 2, (0..3).flat_map(|r| x.row(r)[..2].to_vec()).collect());
    runtime::io::write_table(&xin, &t, None).unwrap();
    let o = flowc(&[
        "eval",
        m.to_str().unwrap(),
        "--name",
        "f",
        "--input",
        xin.to_str().unwrap(),
        "--direction",
        "inverse",
        "--output",
        zs.to_str().unwrap(),
        "--param",
        "layers.1.shift=0.5",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let z = runtime::io::read_table(&zs, &Default::default()).unwrap();
    let z0 = [[0.0, 0.0], [1.5, -2.0], [-30.0, 1e5]];
    for (r, zr) in z0.iter().enumerate() {
        for (c, &b) in zr.iter().enumerate() {
            let a = z.row(r)[c];
            assert!((a - b).abs() <= 1e-12 * (1.0 + b.abs()), "row {r}: {a} vs {b}");
        }
        // log|det| of the inverse is minus the forward one
        assert!((z.row(r)[2] + x.row(r)[2]).abs() <= 1e-9 * (1.0 + x.row(r)[2].abs()));
    }
}

#[test]
fn bad_eval_input_exits_1_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let m = write(dir.path(), "m.flow", MODEL);
    let out = dir.path().join("out.csv");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--name".into(), "f".into(), "--input".into(), write(dir.path(), "a.csv", "1,2,3\n").display().to_string()], "needs 2"),
        (vec!["--name".into(), "f".into(), "--input".into(), write(dir.path(), "b.csv", "1,2\nnan,3\n").display().to_string()], "row 2"),
        (vec!["--name".into(), "f".into(), "--input".into(), write(dir.path(), "c.csv", "").display().to_string()], "no data rows"),
        (vec!["--name".into(), "f".into(), "--input".into(), dir.path().join("missing.csv").display().to_string()], "missing.csv"),
        (vec!["--name".into(), "f".into(), "--input".into(), write(dir.path(), "d.txt", "1,2\n").display().to_string()], ".txt"),
        (
            vec!["--name".into(), "log_map".into(), "--input".into(), write(dir.path(), "e.csv", "1\n-2\n").display().to_string()],
            "outside the domain",
        ),
        (
            vec![
                "--name".into(),
                "f".into(),
                "--param".into(),
                "layers.9.eps=1".into(),
                "--input".into(),
                write(dir.path(), "g.csv", "1,2\n").display().to_string(),
            ],
            "unknown parameter `layers.9.eps`",
        ),
        (
            vec![
                "--name".into(),
                "affine".into(),
                "--param".into(),
                "shift=abc".into(),
                "--input".into(),
                write(dir.path(), "h.csv", "1\n").display().to_string(),
            ],
            "not a number",
        ),
    ];
    for (args, phrase) in cases {
        let mut all: Vec<String> = vec!["eval".into(), m.display().to_string()];
        all.extend(args);
        all.extend(["--direction".into(), "forward".into(), "--output".into(), out.display().to_string()]);
        let refs: Vec<&str> = all.iter().map(|s| s.as_str()).collect();
        let o = flowc(&refs);
        assert_eq!(o.status.code(), Some(1), "{all:?}\n{}", stderr(&o));
        assert!(stderr(&o).contains(phrase), "expected `{phrase}`:\n{}", stderr(&o));
        assert!(!out.exists(), "no output file after a failure");
    }
}

#[test]
fn derive_json_is_machine_readable() {
    let dir = tempfile::tempdir().unwrap();
    let m = write(dir.path(), "m.flow", MODEL);
    let o = flowc(&["derive", m.to_str().unwrap(), "--format", "json"]);
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let sas = v["bijectors"].as_array().unwrap().iter().find(|b| b["name"] == "sas").unwrap();
    assert_eq!(sas["inverse"]["closed_form"], true);
    assert_eq!(sas["inverse"]["kind"], "closed");
    assert!(sas["log_det"]["formula"].as_str().unwrap().contains("logcosh"));
    assert_eq!(v["flows"][0]["layers"][0]["inverse_closed_form"], true);
    let o = flowc(&["derive", m.to_str().unwrap(), "--format", "latex", "--name", "sas"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("\\begin{align*}"));
}

#[test]
fn demo_runs_without_arguments() {
    // the figures go to `flowc-demo/` in the working directory
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_flowc")).arg("demo").current_dir(dir.path()).output().expect("run flowc");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("inverse"), "{out}");
    assert!(out.contains("log|det J|"));
    // the three fits: a test NLL each, below that of the base on this data (the standard normal:
    // about 3.3 on the plane; the uniform on S²: log 4π = 2.53), and on the sphere within 0.1
    // nats of the true density's
    let nlls: Vec<f64> = out.split("test NLL ").skip(1).map(|r| r.split_whitespace().next().unwrap().parse().unwrap()).collect();
    assert_eq!(nlls.len(), 3, "{out}");
    assert!(nlls.iter().all(|v| *v < 2.8), "{nlls:?}\n{out}");
    let truth: f64 = out.split("(true ").nth(1).unwrap().split(')').next().unwrap().parse().unwrap();
    assert!(nlls[2] < truth + 0.1, "{nlls:?} vs the true {truth}\n{out}");
    for name in ["moons", "pinwheel", "directions"] {
        for what in ["density", "samples", "training"] {
            let png = std::fs::read(dir.path().join("flowc-demo").join(format!("{name}_{what}.png"))).unwrap();
            assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        }
    }
}

#[test]
fn score_uses_the_jit_and_agrees_with_eval() {
    let dir = tempfile::tempdir().unwrap();
    let m = write(dir.path(), "m.flow", MODEL);
    let input = write(dir.path(), "x.csv", "1,2\n-0.5,0.25\n30,-7\n");
    for prec in ["f64", "f32"] {
        let out = dir.path().join(format!("s_{prec}.npy"));
        let o = flowc(&[
            "score",
            m.to_str().unwrap(),
            "--name",
            "f",
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--precision",
            prec,
            "--threads",
            "2",
            "--param",
            "layers.1.log_scale=0.3",
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let s = runtime::io::read_table(&out, &Default::default()).unwrap();
        assert_eq!((s.rows, s.cols), (3, 1));
        // against the reference interpreter
        let (_, _, d) = flowc::cli::load_str("m.flow", MODEL).unwrap();
        let f = d.flow("f").unwrap();
        let mut p = flowc::interp::Params::defaults(&d, f);
        p.set("layers.1.log_scale", 0.3).unwrap();
        for (r, x) in [[1.0, 2.0], [-0.5, 0.25], [30.0, -7.0]].iter().enumerate() {
            let want = flowc::interp::log_prob(&d, f, &p, x);
            let tol = if prec == "f64" { 1e-12 } else { 1e-4 };
            assert!((s.row(r)[0] - want).abs() <= tol * (1.0 + want.abs()), "{prec} row {r}: {} vs {want}", s.row(r)[0]);
        }
    }
    // a bijector is not a flow
    let o = flowc(&[
        "score",
        m.to_str().unwrap(),
        "--name",
        "sas",
        "--input",
        input.to_str().unwrap(),
        "--output",
        dir.path().join("no.csv").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("needs a flow"));
    assert!(!dir.path().join("no.csv").exists());
}

/// A numeric inverse is compiled (no note that the interpreter ran), agrees with the
/// reference interpreter, and is benchmarked in both precisions.
#[test]
fn numeric_inverses_are_compiled_for_score_and_bench() {
    let dir = tempfile::tempdir().unwrap();
    let src = "bijector residual(x) = x + 0.5 * tanh(x) where inverse = numeric;
flow r(x: R^2) { base normal; elementwise(residual); elementwise(residual); }";
    let m = write(dir.path(), "r.flow", src);
    let input = write(dir.path(), "x.csv", "1,2\n-0.5,0.25\n30,-7\n");
    let (_, _, d) = flowc::cli::load_str("r.flow", src).unwrap();
    let f = d.flow("r").unwrap();
    let p = flowc::interp::Params::defaults(&d, f);
    for prec in ["f64", "f32"] {
        let out = dir.path().join(format!("s_{prec}.csv"));
        let o = flowc(&[
            "score",
            m.to_str().unwrap(),
            "--name",
            "r",
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--precision",
            prec,
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(!stderr(&o).contains("note:"), "{prec}: {}", stderr(&o));
        let s = runtime::io::read_table(&out, &Default::default()).unwrap();
        for (r, x) in [[1.0, 2.0], [-0.5, 0.25], [30.0, -7.0]].iter().enumerate() {
            let want = flowc::interp::log_prob(&d, f, &p, x);
            let tol = if prec == "f64" { 1e-12 } else { 1e-5 };
            assert!((s.row(r)[0] - want).abs() <= tol * (1.0 + want.abs()), "{prec} row {r}: {} vs {want}", s.row(r)[0]);
        }
    }
    let o = flowc(&["bench", m.to_str().unwrap(), "--name", "r", "--rows", "64"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(!text.contains("not compiled") && text.contains("f64") && text.contains("f32"), "{text}");
}

#[test]
fn emit_and_bench_run() {
    let dir = tempfile::tempdir().unwrap();
    let m = write(dir.path(), "m.flow", MODEL);
    let o = flowc(&["emit", m.to_str().unwrap(), "--name", "f", "--target", "kernel"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).contains("kernel f.log_prob"));
    let o = flowc(&["emit", m.to_str().unwrap(), "--name", "f", "--target", "clif", "--precision", "f32"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).contains("load.f32"));
    let o = flowc(&["emit", m.to_str().unwrap(), "--name", "f", "--target", "rust"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let rust = String::from_utf8_lossy(&o.stdout);
    assert!(rust.contains("pub struct F<T: ::runtime::Real = f64>") && rust.contains("fn log_prob_kernel"), "{rust}");
    syn::parse_file(&rust).expect("the printed Rust parses");
    let o = flowc(&["emit", m.to_str().unwrap(), "--name", "sas", "--target", "rust"]);
    assert_eq!(o.status.code(), Some(0), "a bijector's type too: {}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("pub fn inverse(&self, y: T) -> T"));
    let o = flowc(&["emit", m.to_str().unwrap(), "--name", "nope", "--target", "rust"]);
    assert_eq!(o.status.code(), Some(1));
    let o = flowc(&["bench", m.to_str().unwrap(), "--name", "f", "--rows", "1000"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("points/s"));
}

#[test]
fn flowc_dump_prints_stages_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let m = write(dir.path(), "m.flow", MODEL);
    let o = Command::new(env!("CARGO_BIN_EXE_flowc"))
        .args(["emit", m.to_str().unwrap(), "--name", "f", "--target", "clif"])
        .env("FLOWC_DUMP", "ir,kernel")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    let err = stderr(&o);
    assert!(err.contains("=== FLOWC_DUMP ir ===") && err.contains("=== FLOWC_DUMP kernel ==="), "{err}");
    assert!(!err.contains("FLOWC_DUMP clif"));
}

const NETS: &str = "
bijector realnvp_affine(x; s: real, t: real) = x * exp(tanh(s)) + t;
flow rnvp(x: R^3) {
    base normal;
    coupling(mask = [1, 0, 1], bijector = realnvp_affine, net = mlp([5], tanh));
    linear(lu);
    actnorm;
}
flow other(x: R^3) { base normal; coupling(mask = [1, 1, 0], bijector = realnvp_affine, net = mlp([4], tanh)); }
";

#[test]
fn params_init_sample_and_score_agree() {
    let dir = tempfile::tempdir().unwrap();
    let src = write(dir.path(), "nets.flow", NETS);
    let s = src.to_str().unwrap();
    let listing = flowc(&["params", s, "--name", "rnvp"]);
    assert_eq!(listing.status.code(), Some(0), "{}", stderr(&listing));
    let text = String::from_utf8_lossy(&listing.stdout);
    assert!(text.contains("layers.0.net.0.weight            [5, 2]") && text.contains("layers.1.lower"), "{text}");
    let p = dir.path().join("p.safetensors");
    let o = flowc(&["params", s, "--name", "rnvp", "--init", "4", "--out", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // samples come with log p(x); scoring the same points gives the same values
    let (rows, scored, out) = sample_then_score(dir.path(), s, "rnvp", &p, 50, &["--seed", "9"]);
    assert_eq!(rows.len(), 50);
    for (r, v) in rows.iter().zip(&scored) {
        assert!((r[3] - v).abs() <= 1e-9 * (1.0 + v.abs()), "sampled log p {} vs scored {v}", r[3]);
    }
    // the same seed on one thread gives the same samples
    let out1 = dir.path().join("s1.csv");
    let o = flowc(&[
        "sample",
        s,
        "--name",
        "rnvp",
        "--params",
        p.to_str().unwrap(),
        "-n",
        "50",
        "--seed",
        "9",
        "--output",
        out1.to_str().unwrap(),
        "--threads",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&out1).unwrap());
}

#[test]
fn bad_parameter_files_exit_1_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let src = write(dir.path(), "nets.flow", NETS);
    let s = src.to_str().unwrap();
    let p = dir.path().join("other.safetensors");
    assert_eq!(flowc(&["params", s, "--name", "other", "--init", "1", "--out", p.to_str().unwrap()]).status.code(), Some(0));
    let garbage = write(dir.path(), "garbage.safetensors", "not a tensor file");
    let xin = write(dir.path(), "x.csv", "0.1,0.2,0.3\n");
    let cases: Vec<(PathBuf, &str)> = vec![
        (p.clone(), "has shape [4, 2]; flow `rnvp` needs [5, 2]"),
        (garbage, "is not a safetensors file"),
        (dir.path().join("missing.safetensors"), "cannot read"),
    ];
    for (file, phrase) in cases {
        let out = dir.path().join("lp.csv");
        let o = flowc(&[
            "score",
            s,
            "--name",
            "rnvp",
            "--params",
            file.to_str().unwrap(),
            "--input",
            xin.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert!(stderr(&o).contains(phrase), "{}", stderr(&o));
        assert!(!out.exists(), "an output file was written");
        let o = flowc(&["sample", s, "--name", "rnvp", "--params", file.to_str().unwrap(), "-n", "3", "--output", out.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert!(!out.exists());
    }
    // no samples asked for
    let out = dir.path().join("none.csv");
    let o = flowc(&["sample", s, "--name", "rnvp", "-n", "0", "--output", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("`-n` must be at least 1"), "{}", stderr(&o));
    assert!(!out.exists());
    // `--init` without `--out` is a usage error
    let o = flowc(&["params", s, "--name", "rnvp", "--init", "1"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("--out"), "{}", stderr(&o));
}

#[test]
fn planar_radial_and_spline_flows_sample_and_score_on_the_command_line() {
    // every new layer kind end to end: seeded parameters, samples with log p(x), and scoring
    // those samples (planar's root-find and the splines' inverses, compiled) gives them back
    let src = "
flow shapes(x: R^3) {
    base normal;
    planar;
    radial;
    coupling(mask = [1, 0, 1], bijector = spline(bins = 5, bound = 3), net = mlp([6], tanh));
    reverse;
    autoregressive(bijector = spline(bins = 4, bound = 2.5), net = made([8], relu));
    planar;
}
";
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "shapes.flow", src);
    let s = file.to_str().unwrap();
    let p = dir.path().join("p.safetensors");
    let o = flowc(&["params", s, "--name", "shapes", "--init", "2", "--out", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let (rows, scored, _) = sample_then_score(dir.path(), s, "shapes", &p, 200, &[]);
    assert_eq!(rows.len(), 200);
    for (r, v) in rows.iter().zip(&scored) {
        assert!(v.is_finite() && (r[3] - v).abs() <= 1e-9 * (1.0 + v.abs()), "sampled log p {} vs scored {v}", r[3]);
    }
}

/// `flowc sample` of `n` points of flow `name` with parameters `p` (plus `extra` arguments),
/// then `flowc score` of those points, both checked to succeed without a note on stderr:
/// the sampled rows (point, log p), the scored values, and the sample file.
fn sample_then_score(dir: &Path, s: &str, name: &str, p: &Path, n: usize, extra: &[&str]) -> (Vec<Vec<f64>>, Vec<f64>, PathBuf) {
    let dim = {
        let (_, _, d) = flowc::cli::load_str("f.flow", &std::fs::read_to_string(s).unwrap()).unwrap();
        d.flow(name).unwrap().dim
    };
    let out = dir.join("s.csv");
    let count = n.to_string();
    let mut args = vec!["sample", s, "--name", name, "--params", p.to_str().unwrap(), "-n", &count, "--output", out.to_str().unwrap()];
    args.extend(extra);
    let o = flowc(&args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).is_empty(), "compiled, no fallback note: {}", stderr(&o));
    let rows: Vec<Vec<f64>> =
        std::fs::read_to_string(&out).unwrap().lines().skip(1).map(|l| l.split(',').map(|v| v.parse().unwrap()).collect()).collect();
    let xs: String = rows.iter().map(|r| r[..dim].iter().map(|v| v.to_string()).collect::<Vec<_>>().join(",") + "\n").collect();
    let xin = write(dir, "x.csv", &xs);
    let lp = dir.join("lp.csv");
    let o = flowc(&[
        "score",
        s,
        "--name",
        name,
        "--params",
        p.to_str().unwrap(),
        "--input",
        xin.to_str().unwrap(),
        "--output",
        lp.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).is_empty(), "compiled, no fallback note: {}", stderr(&o));
    let scored = std::fs::read_to_string(&lp).unwrap().lines().skip(1).map(|l| l.parse().unwrap()).collect();
    (rows, scored, out)
}

#[test]
fn simplex_rows_must_be_on_the_simplex() {
    let dir = tempfile::tempdir().unwrap();
    let m = write(dir.path(), "c.flow", "flow c(x: simplex(3)) { base dirichlet([2, 1, 3]); calibration; generalized_calibration; }");
    let m = m.to_str().unwrap();
    let out = dir.path().join("out.csv");
    for (rows, phrase) in [
        ("0.2,0.3,0.5\n0.5,0.6,0.1\n", "row 2 is not on the simplex: Σx = 1.2"),
        ("0.2,0.3,0.5\n0.5,0,0.5\n", "row 2 is not in the open simplex: x_1 = 0"),
        ("0.2,0.3,0.5\n1.5,-0.25,-0.25\n", "row 2 is not in the open simplex: x_1 = -0.25"),
    ] {
        let input = write(dir.path(), "x.csv", &format!("x0,x1,x2\n{rows}"));
        let o = flowc(&["score", m, "--name", "c", "--input", input.to_str().unwrap(), "--output", out.to_str().unwrap()]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(err.contains(phrase), "expected `{phrase}` in {err}");
        assert!(!out.exists());
    }
    // samples: on the simplex, and scored back to their log p
    let samples = dir.path().join("s.csv");
    let o = flowc(&["sample", m, "--name", "c", "-n", "200", "--seed", "2", "--output", samples.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let rows: Vec<Vec<f64>> =
        std::fs::read_to_string(&samples).unwrap().lines().skip(1).map(|l| l.split(',').map(|v| v.parse().unwrap()).collect()).collect();
    for r in &rows {
        assert!((r[0] + r[1] + r[2] - 1.0).abs() < 4e-16 && r[..3].iter().all(|v| *v > 0.0), "{r:?}");
    }
    let xs: String = rows.iter().map(|r| format!("{:e},{:e},{:e}\n", r[0], r[1], r[2])).collect();
    let xfile = write(dir.path(), "xs.csv", &format!("x0,x1,x2\n{xs}"));
    let o = flowc(&["score", m, "--name", "c", "--input", xfile.to_str().unwrap(), "--output", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let scored: Vec<f64> = std::fs::read_to_string(&out).unwrap().lines().skip(1).map(|l| l.parse().unwrap()).collect();
    for (r, s) in rows.iter().zip(&scored) {
        assert!((r[3] - s).abs() < 1e-12 * s.abs().max(1.0), "sampled {} vs scored {s}", r[3]);
    }
}

#[test]
fn sphere_rows_must_be_on_the_sphere_and_samples_score_back() {
    let dir = tempfile::tempdir().unwrap();
    let m = write(dir.path(), "s.flow", "flow s(x: sphere(3)) { base vmf(2); normalized_affine; reverse; normalized_translation; }");
    let m = m.to_str().unwrap();
    let params = dir.path().join("p.safetensors");
    let o = flowc(&["params", m, "--name", "s", "--init", "3", "--out", params.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let params = params.to_str().unwrap();
    // row 2 is off by 1e-10 (projected), row 3 by 0.5 (an error)
    let input = write(dir.path(), "x.csv", "x0,x1,x2\n1,0,0\n0,0.6,0.8000000001\n0,1.5,0\n");
    let out = dir.path().join("out.csv");
    for args in [
        vec!["score", m, "--name", "s", "--params", params, "--input", input.to_str().unwrap(), "--output", out.to_str().unwrap()],
        vec![
            "eval",
            m,
            "--name",
            "s",
            "--params",
            params,
            "--input",
            input.to_str().unwrap(),
            "--direction",
            "inverse",
            "--output",
            out.to_str().unwrap(),
        ],
        vec![
            "eval",
            m,
            "--name",
            "s",
            "--params",
            params,
            "--input",
            input.to_str().unwrap(),
            "--direction",
            "forward",
            "--output",
            out.to_str().unwrap(),
        ],
    ] {
        let o = flowc(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("row 3 is not on the unit sphere: ‖x‖ = 1.5"), "{err}");
        assert!(!out.exists(), "{args:?} wrote a partial output");
    }
    // within the tolerance: the density of the projected point x/‖x‖
    let r = (0.36f64 + 0.8000000001 * 0.8000000001).sqrt();
    let near = write(dir.path(), "near.csv", &format!("x0,x1,x2\n0,0.6,0.8000000001\n0,{:e},{:e}\n", 0.6 / r, 0.8000000001 / r));
    let o = flowc(&["score", m, "--name", "s", "--params", params, "--input", near.to_str().unwrap(), "--output", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let t = std::fs::read_to_string(&out).unwrap();
    let v: Vec<f64> = t.lines().skip(1).map(|l| l.parse().unwrap()).collect();
    assert!((v[0] - v[1]).abs() < 1e-14 * v[1].abs().max(1.0), "{v:?}");
    std::fs::remove_file(&out).unwrap();
    // samples lie on the sphere, and scoring them gives back their log p
    let samples = dir.path().join("s.csv");
    let o = flowc(&["sample", m, "--name", "s", "--params", params, "-n", "300", "--seed", "5", "--output", samples.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let rows: Vec<Vec<f64>> =
        std::fs::read_to_string(&samples).unwrap().lines().skip(1).map(|l| l.split(',').map(|v| v.parse().unwrap()).collect()).collect();
    let xs: String = rows.iter().map(|r| format!("{},{},{}\n", r[0], r[1], r[2])).collect();
    for r in &rows {
        assert!(((r[0] * r[0] + r[1] * r[1] + r[2] * r[2]).sqrt() - 1.0).abs() < 1e-15, "{r:?}");
    }
    let xfile = write(dir.path(), "xs.csv", &format!("x0,x1,x2\n{xs}"));
    let o = flowc(&["score", m, "--name", "s", "--params", params, "--input", xfile.to_str().unwrap(), "--output", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let scored: Vec<f64> = std::fs::read_to_string(&out).unwrap().lines().skip(1).map(|l| l.parse().unwrap()).collect();
    for (r, s) in rows.iter().zip(&scored) {
        assert!((r[3] - s).abs() < 1e-12 * s.abs().max(1.0), "sampled {} vs scored {s}", r[3]);
    }
}

#[test]
fn bench_of_the_generic_ratio() {
    let dir = tempfile::tempdir().unwrap();
    // a flow on R^n has no volume ratio to compare: a user error
    let m = write(dir.path(), "m.flow", MODEL);
    let o = flowc(&["bench", m.to_str().unwrap(), "--name", "f", "--rows", "64", "--kernel", "ratio"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("`--kernel ratio`") && err.contains("is a flow on R^n"), "{err}");
    // on the sphere: the table, then the closed forms next to it
    let s = write(dir.path(), "s.flow", "flow s(x: sphere(3)) { base uniform; normalized_affine; }");
    let o = flowc(&["bench", s.to_str().unwrap(), "--name", "s", "--rows", "1000", "--kernel", "ratio"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("generic volume ratio") && out.contains("closed / generic = "), "{out}");
}
