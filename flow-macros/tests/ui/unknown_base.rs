use flow_macros::flow;

flow! {
    bijector f(x) = x + 1;
    flow g(x: R^2) { base cauchy; elementwise(f); }
}

fn main() {}
