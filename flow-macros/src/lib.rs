//! `flow! { ... }`: normalizing flows declared in Rust source. The compiler runs inside
//! rustc: it derives each layer's inverse and log-determinant, checks them, and the macro
//! expands to plain Rust that depends only on the `runtime` crate (package `flowc-runtime`),
//! with no JIT or compiler in the built program.
//!
//! This crate is glue: tokens in, [`flowc::expand()`], tokens out. Errors in the flow are
//! `compile_error!`s at the tokens they are about.
//!
//! ```
//! use flow_macros::flow;
//!
//! flow! {
//!     /// Sinh-arcsinh: skew and tail weight.
//!     bijector sinh_arcsinh(x; eps: real, delta: positive) = sinh(delta * asinh(x) - eps);
//!
//!     flow skewed(x: R^2) {
//!         base normal;
//!         elementwise(sinh_arcsinh(eps = 0.5, delta = 0.7));
//!     }
//! }
//!
//! let f = Skewed::<f64>::default();
//! let x = [0.3, -1.2];
//! let (z, _) = f.inverse(&x);
//! assert!((f.forward(&z).0[0] - x[0]).abs() < 1e-14);
//! assert!(f.log_prob(&x).is_finite());
//! assert!(Skewed::<f64>::INVERSE[0].contains("asinh"));
//! ```

use proc_macro::TokenStream;

/// Compiles the flow language into Rust items: a struct per flow (`flow sas2` → `Sas2<T>`,
/// with `log_prob`, `log_prob_batch`, `forward`, `inverse`, `sample`, constructors and the
/// derived formulas as consts) and a type per bijector (`forward`, `inverse`, `log_det`).
#[proc_macro]
pub fn flow(input: TokenStream) -> TokenStream {
    flowc::expand(input.into()).into()
}

/// Like [`flow!`], for a `.flow` file: `flow_file!("models/m.flow")`, the path relative to
/// the crate's `Cargo.toml`. The build reruns when the file changes.
#[proc_macro]
pub fn flow_file(input: TokenStream) -> TokenStream {
    flowc::expand_file(input.into()).into()
}
