//! Runnable examples of flowc. Each is a module here with a `run` function, a binary in
//! `examples/` that calls it (`cargo run --release -p examples --example NAME`), and a test
//! that runs it on small inputs.
//!
//! - [`user_bijector`]: scalar bijectors written as formulas, their derived inverse and
//!   log-derivative as Rust types, and a flow of them.
//! - [`aot_vs_jit`]: the same flow compiled by `flow_file!` and by the JIT: equal values,
//!   and the speed of each.
//! - [`train_moons`]: a RealNVP flow trained on 2-D data with the runtime's trainer and with
//!   `flowc train`, its weights scored by the `flow_file!` type.
//! - [`calibrate`]: a 3-class classifier's outputs recalibrated by class-conditional flows
//!   on the simplex.
//! - `quickstart` (`examples/quickstart.rs`): the README's example, checked to be identical
//!   to it.

pub mod aot_vs_jit;
pub mod calibrate;
pub mod train_moons;
pub mod user_bijector;
