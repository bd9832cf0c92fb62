use flow_macros::flow;

/// A type of the user's, with the name the bijector `affine` becomes.
struct Affine;

flow! {
    bijector affine(x; shift: real) = x + shift;
}

fn main() {}
