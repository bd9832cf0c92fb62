//! The two generic volume ratios — the determinant identity |det(F P + n_y n_xᵀ)| (no bases)
//! and |det(T_yᵀ F T_x)| with Householder tangent bases formed, as the ratio is defined —
//! against each other and against the closed forms, compiled (f64), at 10⁴ points pushed from
//! the base of sphere and simplex flows.

use flowc::codegen::clif::Float;
use flowc::lower::{self, Kind};

const FLOWS: &str = "
flow s3(x: sphere(3)) { base uniform; normalized_affine; normalized_translation; normalized_linear; }
flow s5(x: sphere(5)) { base vmf(2); normalized_affine; normalized_affine; }
flow c3(x: simplex(3)) { base dirichlet([4, 4, 4]); calibration; generalized_calibration; }
flow c4(x: simplex(4)) { base dirichlet([3, 2, 5, 4]); generalized_calibration; }
";

#[test]
fn generic_ratios_with_and_without_bases_agree_with_the_closed_forms() {
    let (_, _, d) = flowc::cli::load_str("ratio.flow", FLOWS).unwrap_or_else(|f| panic!("{}", f.message));
    let p = lower::lower(&d).unwrap();
    let rows = 10_000;
    for name in ["s3", "s5", "c3", "c4"] {
        let f = d.flow(name).unwrap();
        let fwd = p.kernel(name, Kind::Forward).unwrap();
        let n = f.dim;
        let mut g = flowc::derive::dual::Gen(17);
        let params: Vec<f64> = (0..fwd.param_len()).map(|_| 0.4 * g.uniform()).collect();
        let z = flowc::interp::base_rows(f, 0x5eed, 0, rows);
        let run = |k: &lower::Kernel| {
            let c = flowc::jit::compile(k, Float::F64).unwrap();
            let mut out = vec![0.0; rows * (n + 1)];
            c.run_f64(&z, &params, &mut out).unwrap();
            out
        };
        let closed = run(fwd);
        let identity = run(&flowc::ratio::generic(fwd, f.space).unwrap());
        let bases = run(&flowc::ratio::generic_bases(fwd, f.space).unwrap());
        let mut worst = [0.0f64; 3];
        for r in 0..rows {
            let at = r * (n + 1) + n;
            let (c, i, b) = (closed[at], identity[at], bases[at]);
            let scale = c.abs().max(1.0);
            worst[0] = worst[0].max((b - c).abs() / scale);
            worst[1] = worst[1].max((i - c).abs() / scale);
            worst[2] = worst[2].max((0..n).map(|j| (bases[r * (n + 1) + j] - closed[r * (n + 1) + j]).abs()).fold(0.0, f64::max));
        }
        println!(
            "{name}: |bases − closed| {:.1e}, |identity − closed| {:.1e} (relative to max(1, |log R|)); images {:.1e}",
            worst[0], worst[1], worst[2]
        );
        assert!(worst[0] <= 1e-12 && worst[1] <= 1e-12 && worst[2] == 0.0, "{name}: {worst:?}");
    }
}
