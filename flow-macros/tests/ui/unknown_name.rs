use flow_macros::flow;

flow! {
    bijector f(x) = x + b;
}

fn main() {}
