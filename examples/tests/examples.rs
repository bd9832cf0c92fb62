//! Every example runs (on small inputs) as part of the test suite.

#[test]
fn user_bijector_example_runs() {
    assert!(examples::user_bijector::run() < 1e-12);
}

#[test]
fn aot_vs_jit_example_runs() {
    // the backends' values are compared inside; the rates are positive
    for (aot, jit) in examples::aot_vs_jit::run(3001, 1).into_iter().chain(examples::aot_vs_jit::run_w1(1001, 1)) {
        assert!(aot > 0.0 && jit > 0.0);
    }
}

#[test]
fn flow_blocks_hand_themselves_to_the_jit() {
    // a `flow!` block (its tokens are the JIT's source) with parameters set by name
    use examples::user_bijector::Squashed;
    let mut f = Squashed::<f64>::default();
    f.set_param("layers.0.s", &[0.5, 1.0, 4.0]).unwrap();
    let jit = f.jit().unwrap();
    assert_eq!(jit.dim(), 3);
    let zs = [0.3, -2.0, 10.0, 1e-3, 7.5, -0.25];
    let mut out = [0.0; 8];
    jit.forward_batch(&zs, &mut out).unwrap();
    for (r, z) in zs.chunks(3).enumerate() {
        let (x, ld) = f.forward(z.try_into().unwrap());
        for i in 0..3 {
            assert!((out[r * 4 + i] - x[i]).abs() <= 1e-13 * (1.0 + x[i].abs()), "{:?} vs {x:?}", &out[r * 4..r * 4 + 3]);
        }
        assert!((out[r * 4 + 3] - ld).abs() <= 1e-13 * (1.0 + ld.abs()));
    }
}

#[test]
fn bad_parameter_files_are_errors_of_from_file() {
    use examples::aot_vs_jit::Realnvp8;
    let dir = std::env::temp_dir().join(format!("flowc-badparams-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // no such file
    let e = failure(Realnvp8::<f64>::from_file(dir.join("missing.safetensors")));
    assert!(e.to_string().contains("cannot read") && e.to_string().contains("missing.safetensors"), "{e}");
    // a file missing one tensor and holding a stray one
    let good = dir.join("w1.safetensors");
    examples::aot_vs_jit::w1_params_file(1, &good);
    let mut t = runtime::param_file::read(&good).unwrap();
    let w = t.remove("layers.2.net.0.weight").unwrap();
    t.insert("layers.2.net.0.weights".into(), w);
    let bad = dir.join("bad.safetensors");
    runtime::param_file::write(&bad, &t, runtime::param_file::FileDtype::F32).unwrap();
    let e = failure(Realnvp8::<f32>::from_file(&bad));
    assert!(e.to_string().contains("bad.safetensors") && e.to_string().contains("layers.2.net.0.weight"), "{e}");
    // the good one loads, and its JIT refuses a parameter buffer of the wrong length
    let f = Realnvp8::<f64>::from_file(&good).unwrap();
    let src = include_str!("../flows/realnvp8.flow");
    let e = failure(flowc::jit_flow::JitFlow::new(flowc::jit_flow::FlowSource::Text(src), "realnvp8", &f.params()[1..]));
    assert!(e.contains("parameter values"), "{e}");
    let e = failure(flowc::jit_flow::JitFlow::new(flowc::jit_flow::FlowSource::Text(src), "realnvp9", f.params()));
    assert!(e.contains("no flow `realnvp9`"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The error of a call that must fail.
fn failure<T, E>(r: Result<T, E>) -> E {
    match r {
        Ok(_) => panic!("accepted"),
        Err(e) => e,
    }
}

#[test]
fn train_moons_example_runs() {
    let r = examples::train_moons::run(400);
    // training helped, and the backends agree on the trained flow
    assert!(r.trained_jit < r.base_nll - 0.5, "{r:?}");
    assert!((r.trained_jit - r.trained_aot).abs() < 1e-10 * r.trained_jit.abs(), "{r:?}");
    assert!(r.cli_printed < r.base_nll - 0.5, "{r:?}");
    // `flowc train` prints 6 decimals
    assert!((r.cli_printed - r.cli_aot).abs() < 1e-5, "{r:?}");
}

#[test]
fn calibration_example_recalibrates() {
    // class-conditional flows on the simplex, Bayes' rule: better than the raw outputs and near
    // the true posterior (measured at 3000 steps: NLL 0.652 → 0.575, true 0.568; ECE 0.095 →
    // 0.015, true 0.011)
    let r = examples::calibrate::run(800, None);
    assert!(r.flows.0 < r.raw.0 - 0.05, "{r:?}");
    assert!(r.flows.0 < r.truth.0 + 0.02, "{r:?}");
    assert!(r.flows.1 < 0.5 * r.raw.1, "{r:?}");
}
