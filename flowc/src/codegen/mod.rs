//! Stage 6: kernels → machine code. `clif` translates a [`crate::lower::Kernel`] into
//! Cranelift IR; `host` holds the functions compiled code calls for ops without a native
//! instruction. The JIT wrapper is [`crate::jit`]. `rust` translates the same kernels into
//! Rust source (what the `flow!` macro expands to, see [`crate::expand()`]).

pub mod clif;
pub mod host;
pub mod rust;
pub mod tile;
pub mod vmath;
