use flow_macros::flow;

flow! {
    bijector f(x) = pow(x);
}

fn main() {}
