//! A 3-class classifier's outputs recalibrated with flows on the simplex.
//!
//! Run it with `cargo run --release -p examples --example calibrate [-- STEPS OUT_DIR]`
//! (defaults: 3000 steps per class, figures in `flowc-calibrate/`).

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let steps = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3000);
    let out = args.get(2).cloned().unwrap_or_else(|| "flowc-calibrate".into());
    examples::calibrate::run(steps, Some(std::path::Path::new(&out)));
}
