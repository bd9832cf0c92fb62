use flow_macros::flow;

flow! {
    /// x² is not monotone on the real line.
    bijector square(x) = x * x;
}

fn main() {}
