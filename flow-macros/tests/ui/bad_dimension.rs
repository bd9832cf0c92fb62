use flow_macros::flow;

flow! {
    bijector f(x) = exp(x);
    flow g(x: R^0) { base normal; elementwise(f); }
}

fn main() {}
