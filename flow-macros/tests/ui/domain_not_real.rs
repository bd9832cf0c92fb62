use flow_macros::flow;

flow! {
    bijector lg(x: positive) = log(x);
    flow g(x: R^2) { base normal; elementwise(lg); }
}

fn main() {}
