//! flowc: a compiler for normalizing flows.
//!
//! The pipeline, one stage per module: [`dsl::parse`] → [`ir::build`] → [`derive::derive`]
//! → [`check::check`], and [`lower::lower`] to backend-neutral kernels. Each stage takes the previous stage's output and returns its own or
//! [`diag::Diagnostics`]. [`interp`] evaluates whole flows with the derived formulas,
//! [`report`] renders derivations as text, LaTeX or JSON, and [`cli`] is the command line.

pub mod check;
pub mod cli;
pub mod codegen;
pub mod derive;
pub mod diag;
pub mod dsl;
pub mod interp;
pub mod ir;
pub mod jit;
pub mod lower;
pub mod report;
