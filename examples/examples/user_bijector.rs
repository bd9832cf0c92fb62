//! A scalar bijector written by the user as a formula: the compiler derives its inverse and
//! log-derivative at build time, checks them, and the macro turns it into a small type.
//!
//! Run it with `cargo run --release -p examples --example user_bijector`.

fn main() {
    examples::user_bijector::run();
}
