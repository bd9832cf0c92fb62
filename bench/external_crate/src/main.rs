// A crate outside the flowc workspace, set up as the README says: every flow of the
// snapshot corpus through `flow_file!`, its generated log_prob against the JIT's.
use runtime::Flow;

flow_macros::flow_file!("../../snapshots/corpus.flow");

fn ulps(a: f64, b: f64) -> f64 {
    if a == b {
        return 0.0;
    }
    let u = f64::from_bits(a.abs().to_bits() + 1) - a.abs();
    (a - b).abs() / u
}

fn check<F: Flow<f64>>(name: &str, f: &F, jit: flowc::jit_flow::JitFlow) -> f64 {
    let mut rng = runtime::Rng::new(3);
    let n = 4099;
    let xs = f.sample_rows(&mut rng, n);
    let mut aot = vec![0.0; n];
    f.log_prob_rows(&xs, &mut aot);
    let mut jt = vec![0.0; n];
    jit.log_prob_batch(&xs, &mut jt).unwrap();
    let worst = aot.iter().zip(&jt).map(|(a, b)| ulps(*a, *b)).fold(0.0, f64::max);
    let rel = aot.iter().zip(&jt).map(|(a, b)| (a - b).abs() / (1.0 + a.abs())).fold(0.0, f64::max);
    println!("{name:<10} {n} rows: AOT vs JIT log_prob, largest difference {worst:.0} ulps ({rel:.1e} relative)");
    rel
}

fn main() {
    let mut worst: f64 = 0.0;
    let f = Sas2::<f64>::default();
    worst = worst.max(check("sas2", &f, f.jit().unwrap()));
    let mut f = SasChain::<f64>::default();
    f.set_param("layers.1.eps", &[0.3, -0.2, 0.1, 0.5]).unwrap();
    worst = worst.max(check("sas_chain", &f, f.jit().unwrap()));
    let mut p = vec![0.0; Coupled::<f64>::PARAM_LEN];
    for (i, v) in p.iter_mut().enumerate() {
        *v = 0.3 * ((i as f64) * 0.7).sin();
    }
    let f = Coupled::<f64>::from_slice(&p).unwrap();
    worst = worst.max(check("coupled", &f, f.jit().unwrap()));
    let mut p = vec![0.0; Shapes::<f64>::PARAM_LEN];
    for (i, v) in p.iter_mut().enumerate() {
        *v = 0.4 * ((i as f64) * 1.3).cos();
    }
    let f = Shapes::<f64>::from_slice(&p).unwrap();
    worst = worst.max(check("shapes", &f, f.jit().unwrap()));
    assert!(worst < 1e-12, "AOT and JIT disagree: {worst:e}");
    println!("ok");
}
