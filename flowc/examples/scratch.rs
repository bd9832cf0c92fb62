fn main() {
    use flowc::ir::{hp, parse_expr};
    let e = parse_expr("(exp x)");
    for x in [0.0, 1e-300, 1.0] {
        let fd = hp::central_difference(&e, "x", x, &|_| f64::NAN);
        println!("{x}: {fd}");
    }
    let a = astro_float::BigFloat::from_f64(1e-300, 1024);
    let b = a.mul(&astro_float::BigFloat::from_f64(2f64.powi(-120), 1024), 1024, astro_float::RoundingMode::ToEven);
    println!("{:?} {}", hp::to_f64(&b), hp::to_f64(&a));
}
