use flow_macros::flow;

flow! {
    bijector f(x; a: real, a: real) = x + a;
}

fn main() {}
