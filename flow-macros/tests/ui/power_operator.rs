use flow_macros::flow;

flow! {
    bijector f(x) = x ^ 3;
}

fn main() {}
