use flow_macros::flow;

flow! {
    bijector sas(x; eps: real, delta: positive) = sinh(delta * asinh(x) - eps);
    flow g(x: R^2) { base normal; elementwise(sass); }
}

fn main() {}
