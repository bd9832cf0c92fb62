//! Stage 6: kernels → machine code. `clif` translates a [`crate::lower::Kernel`] into
//! Cranelift IR; `host` holds the functions compiled code calls for ops without a native
//! instruction. The JIT wrapper is [`crate::jit`].

pub mod clif;
pub mod host;
pub mod vmath;
