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
