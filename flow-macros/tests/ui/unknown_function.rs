use flow_macros::flow;

flow! {
    bijector f(x) = exq(x);
}

fn main() {}
