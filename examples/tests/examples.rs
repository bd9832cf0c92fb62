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
