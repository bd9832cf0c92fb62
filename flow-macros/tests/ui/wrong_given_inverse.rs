use flow_macros::flow;

flow! {
    bijector shift(x; t: real) = x + t where inverse = y + t;
}

fn main() {}
