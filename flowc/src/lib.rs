//! flowc: a compiler for normalizing flows.
//!
//! The pipeline, one stage per module: [`dsl::parse`] → [`ir::build`] → [`derive::derive`]
//! → [`check::check`], and [`lower::lower`] to backend-neutral kernels, translated by
//! [`codegen::clif`] (the JIT, [`jit`]) or [`codegen::rust`] (the `flow!` macro, whose whole
//! expansion is [`expand()`]). Each stage takes the previous stage's output and returns its
//! own or [`diag::Diagnostics`]. [`interp`] evaluates whole flows with the derived formulas,
//! [`report`] renders derivations as text, LaTeX or JSON, and [`cli`] is the command line.

pub mod check;
pub mod cli;
pub mod codegen;
pub mod demo;
pub mod derive;
pub mod diag;
pub mod dsl;
pub mod expand;
pub mod grad;
pub mod interp;
pub mod ir;
pub mod jit;
pub mod jit_flow;
pub mod lower;
pub mod objective;
pub mod params;
pub mod plot;
pub mod ratio;
pub mod report;
pub mod train;
pub mod ulp;

pub use expand::{expand, expand_file};

/// Prints a stage's text form on stderr when the environment variable `FLOWC_DUMP` lists
/// the stage (comma-separated: `ir`, `derive`, `kernel`, `clif`; `all` for every stage).
pub fn dump(stage: &str, text: impl FnOnce() -> String) {
    if let Ok(v) = std::env::var("FLOWC_DUMP") {
        if v.split(',').any(|s| s.trim() == stage || s.trim() == "all") {
            eprintln!("=== FLOWC_DUMP {stage} ===\n{}", text());
        }
    }
}
