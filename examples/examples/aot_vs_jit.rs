//! One flow, two backends: compiled ahead of time into Rust by `flow_file!` and at run time
//! by the Cranelift JIT from the same kernel program. They compute the same values; this
//! prints how fast each scores rows (log_prob, one thread, f64 and f32).
//!
//! Run it with `cargo run --release -p examples --example aot_vs_jit`.

fn main() {
    examples::aot_vs_jit::run(1 << 20, 9);
    examples::aot_vs_jit::run_w1(1 << 18, 9);
}
