use flow_macros::flow;

flow! {
    bijector f(x) = exp(x);
    flow g(x: R^2) { base normal; elementwise(f); calibration; elementwse(f); }
}

fn main() {}
