use flow_macros::flow;

flow! {
    bijector a_b(x) = x + 1;
    bijector a__b(x) = x + 2;
}

fn main() {}
