//! A RealNVP flow trained on two moons, in-process with the runtime and with `flowc train`,
//! then scored by the `flow_file!` type.
//!
//! Run it with `cargo run --release -p examples --example train_moons`.

fn main() {
    examples::train_moons::run(3000);
}
