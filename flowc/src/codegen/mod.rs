//! Stage 6: kernels → machine code. `clif` translates a [`crate::lower::Kernel`] into
//! Cranelift IR; `host` holds the functions compiled code calls for ops without a native
//! instruction; `x64` translates kernels of plain arithmetic into AVX-512 machine code
//! (16 f32 / 8 f64 rows per instruction, where Cranelift lowers 128-bit vectors). The JIT
//! wrapper is [`crate::jit`]. `rust` translates the same kernels into Rust source (what the `flow!` macro expands to, see [`crate::expand()`]).

pub mod clif;
pub mod host;
pub mod rust;
pub mod tile;
pub mod vmath;
pub mod x64;
