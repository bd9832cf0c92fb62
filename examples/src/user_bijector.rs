//! A scalar bijector written by the user as a formula: the compiler derives its inverse and
//! log-derivative at build time, checks them, and the macro turns it into a small type.
//!
//! Run it with `cargo run --release -p examples --example user_bijector`.

use flow_macros::flow;

flow! {
    /// Compresses the tails: linear near 0, logarithmic far out.
    bijector squash(x; s: positive) = s * asinh(x / s);

    /// A map with no closed-form inverse: inverted by a certified root-find.
    bijector wiggle(x) = x + 0.5 * tanh(x)
        where inverse = numeric;

    /// Both, with learnable per-coordinate scales, on R^3.
    flow squashed(x: R^3) {
        base normal;
        elementwise(squash);
        elementwise(wiggle);
    }
}

pub fn run() -> f64 {
    let b = Squash::<f64>::new(2.0);
    println!("squash: y = {}", Squash::<f64>::FORWARD);
    println!("  inverse   x = {}", Squash::<f64>::INVERSE);
    println!("  log|f'|     {}", Squash::<f64>::LOG_DET);
    let mut worst = 0.0f64;
    for x in [-1e6, -30.0, -1.0, 0.0, 1e-9, 0.5, 3.0, 1e12] {
        let y = b.forward(x);
        let back = b.inverse(y);
        // the derived log-derivative against a central difference
        let h = 1e-6 * (1.0 + x.abs());
        let fd = ((b.forward(x + h) - b.forward(x - h)) / (2.0 * h)).ln();
        println!("  x = {x:>9e}  y = {y:>12.6e}  x back = {back:>9e}  log|f'| = {:>10.6}  (difference quotient {fd:.6})", b.log_det(x));
        worst = worst.max((back - x).abs() / (1.0 + x.abs()));
    }
    println!("wiggle: inverse {}", Wiggle::INVERSE);
    for y in [-5.0f64, 0.25, 40.0] {
        let x = Wiggle.inverse(y);
        println!("  y = {y}  x = {x:.17}  f(x) = {}", Wiggle.forward(x));
        worst = worst.max((Wiggle.forward(x) - y).abs() / (1.0 + y.abs()));
    }
    // the flow: scales set by name, as a parameter file would
    let mut f = Squashed::<f64>::default();
    f.set_param("layers.0.s", &[0.5, 1.0, 4.0]).unwrap();
    let x = [0.3, -2.0, 10.0];
    let (z, ld) = f.inverse(&x);
    println!("squashed: log p({x:?}) = {:.6}  (z = {z:?}, sum log|det J| = {ld:.6})", f.log_prob(&x));
    println!("largest relative round-trip error: {worst:e}");
    worst
}
