use flow_macros::flow;

flow! {
    bijector s(x; d: positive) = d * x;
    flow g(x: R^1) { base normal; elementwise(s(d = -1)); }
}

fn main() {}
