use flow_macros::flow;

flow! {
    /// Sinh-arcsinh: skew and tail weight.
    bijector sinh_arcsinh(x; eps: real, delta: positive) = sinh(delta * asinh(x) - eps);

    /// Affine: shift and log-scale.
    bijector affine(x; shift: real, log_scale: real) = x * exp(log_scale) + shift;

    /// A heavy-tailed, skewed density on the plane.
    flow skewed(x: R^2) {
        base normal;
        elementwise(sinh_arcsinh(eps = 0.5, delta = 0.7));
        elementwise(affine);
    }
}

fn main() {
    // the derived formulas, as the compiler chose them
    println!("inverse of sinh_arcsinh: x = {}", SinhArcsinh::<f64>::INVERSE);
    println!("its log|f'(x)|: {}", SinhArcsinh::<f64>::LOG_DET);

    // a flow with parameters set by name (`layers.K.NAME`, one value per coordinate)
    let flow = Skewed::<f64>::from_named(&[("layers.1.shift", &[1.0, -1.0]), ("layers.1.log_scale", &[0.25, 0.0])]).unwrap();
    let x = [0.5, -2.0];
    let lp = flow.log_prob(&x);
    let (z, log_det) = flow.inverse(&x);
    assert!((flow.forward(&z).0[0] - x[0]).abs() < 1e-12);
    println!("log p({x:?}) = {lp:.6}, z = {z:?}, sum log|det J| = {log_det:.6}");

    // many points at once, and samples (f32 works the same way: `Skewed::<f32>`)
    let mut rng = runtime::Rng::new(42);
    let xs: Vec<f64> = (0..1000).flat_map(|_| flow.sample(&mut rng)).collect();
    let mut lps = vec![0.0; 1000];
    flow.log_prob_batch(&xs, &mut lps);
    assert!(lps.iter().all(|v| v.is_finite()));
    println!("mean log p of 1000 samples: {:.4}", lps.iter().sum::<f64>() / 1000.0);
}
