use flow_macros::flow;

flow! {
    bijector f(x) = x;
    bijector f(x) = 2 * x;
}

fn main() {}
