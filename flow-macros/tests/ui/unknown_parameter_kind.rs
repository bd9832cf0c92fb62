use flow_macros::flow;

flow! {
    bijector f(x; a: reel) = x + a;
}

fn main() {}
