use flow_macros::flow;

flow! {
    bijector wave(x) = sin(x) where inverse = numeric;
}

fn main() {}
