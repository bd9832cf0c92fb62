//! What the `flow!` and `flow_file!` macros expand to: the whole pipeline, from the user's
//! tokens to Rust source ([`crate::codegen::rust`]) or to `compile_error!`s at the user's
//! spans, one per diagnostic (every error of the stage that failed, not only the first).
//! The proc-macro crate `flow-macros` only converts tokens; everything is tested here on
//! `proc_macro2` tokens.
//!
//! ```
//! let tokens: proc_macro2::TokenStream = "
//!     bijector affine(x; shift: real, log_scale: real) = x * exp(log_scale) + shift;
//!     flow f(x: R^2) { base normal; elementwise(affine(log_scale = 0)); }"
//!     .parse()
//!     .unwrap();
//! let code = flowc::expand(tokens).to_string();
//! assert!(code.contains("pub struct F"));
//!
//! let bad: proc_macro2::TokenStream = "bijector f(x) = foo(x);".parse().unwrap();
//! let code = flowc::expand(bad).to_string();
//! assert!(code.starts_with(":: core :: compile_error !"));
//! assert!(code.contains("unknown function `foo`"));
//! ```

use crate::codegen::rust::{self, Spans};
use crate::derive::{self, Derivation};
use crate::diag::{Diagnostic, Diagnostics, Severity, Span as Loc};
use crate::dsl::{self, Ast, Item};
use crate::ir;
use crate::lower::{self, Program};
use proc_macro2::{Span, TokenStream, TokenTree};
use quote::quote;
use std::collections::HashMap;
use std::path::Path;

/// Parse → build → derive → lower, stopping at the first stage with errors.
pub(crate) fn pipeline(ast: &Ast) -> Result<(Derivation, Program), Diagnostics> {
    let m = ir::build(ast)?;
    let d = derive::derive_configured(&m, derive::run::Limits::default(), true)?;
    let p = lower::lower(&d)?;
    Ok((d, p))
}

/// Where each item and bijector parameter was written.
fn spans_of(ast: &Ast) -> Spans {
    let mut s = HashMap::new();
    for item in &ast.items {
        match item {
            Item::Bijector(b) => {
                s.entry(b.name.name.clone()).or_insert(b.name.span);
                for p in &b.params {
                    s.entry(format!("{}.{}", b.name.name, p.name.name)).or_insert(p.name.span);
                }
            }
            Item::Flow(f) => {
                s.entry(f.name.name.clone()).or_insert(f.name.span);
            }
            Item::Map(m) => {
                s.entry(m.name.name.clone()).or_insert(m.name.span);
            }
        }
    }
    Spans(s)
}

/// Every token's start position → its span (the first token at a position wins).
fn positions(tokens: &TokenStream, out: &mut HashMap<(usize, usize), Span>) {
    for tt in tokens.clone() {
        let at = |s: Span| {
            let l = Loc::of(s);
            (l.line, l.col)
        };
        match &tt {
            TokenTree::Group(g) => {
                out.entry(at(g.span_open())).or_insert(g.span_open());
                positions(&g.stream(), out);
            }
            other => {
                out.entry(at(other.span())).or_insert(other.span());
            }
        }
    }
}

/// One diagnostic's text: the message, then what to write instead.
fn text(d: &Diagnostic) -> String {
    match &d.help {
        Some(h) => format!("{}\n= help: {h}", d.message),
        None => d.message.clone(),
    }
}

/// `compile_error!`s for every error, at the user's token (stages that only keep a line and
/// column are mapped back to the token that starts there).
fn errors(diags: &Diagnostics, tokens: &TokenStream) -> TokenStream {
    let mut at = HashMap::new();
    positions(tokens, &mut at);
    let mut out = TokenStream::new();
    for d in diags.0.iter().filter(|d| d.severity == Severity::Error) {
        let span = d.token_span.or_else(|| d.span.and_then(|s| at.get(&(s.line, s.col)).copied())).unwrap_or_else(Span::call_site);
        out.extend(syn::Error::new(span, text(d)).to_compile_error());
    }
    out
}

/// The expansion of `flow! { ... }`: Rust items for every bijector and flow of the tokens
/// (see [`crate::codegen::rust`]), or `compile_error!`s at the user's spans.
pub fn expand(tokens: TokenStream) -> TokenStream {
    let result = guarded(|| {
        dsl::parse_tokens(tokens.clone()).and_then(|ast| {
            let (d, p) = pipeline(&ast)?;
            rust::emit_with_source(&d, &p, &spans_of(&ast), Some(rust::Source::Tokens(tokens.to_string())))
        })
    });
    match result {
        Ok(code) => code,
        Err(diags) => errors(&diags, &tokens),
    }
}

/// Runs a stage; a panic (a bug in flowc) becomes an internal-error diagnostic instead of
/// aborting the user's build with a backtrace.
fn guarded<T>(f: impl FnOnce() -> Result<T, Diagnostics>) -> Result<T, Diagnostics> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let msg =
            payload.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| payload.downcast_ref::<String>().cloned()).unwrap_or_default();
        Err(Diagnostic::unlocated(format!("internal error in flowc: {msg}"))
            .help("this is a bug in flowc; please report it with the flow that caused it")
            .into())
    })
}

/// The expansion of `flow_file!("models/m.flow")`: the path is relative to the directory of
/// the crate's `Cargo.toml` (`CARGO_MANIFEST_DIR`, else the current directory).
pub fn expand_file(tokens: TokenStream) -> TokenStream {
    let base = std::env::var_os("CARGO_MANIFEST_DIR").map(std::path::PathBuf::from).unwrap_or_default();
    expand_file_in(tokens, &base)
}

/// [`expand_file`] with the path relative to `base`. Errors in the file are reported at the
/// path, rendered as `flowc` prints them (file:line:col and a caret).
pub fn expand_file_in(tokens: TokenStream, base: &Path) -> TokenStream {
    let lit: syn::LitStr = match syn::parse2(tokens) {
        Ok(l) => l,
        Err(e) => {
            return syn::Error::new(e.span(), "expected the path of a `.flow` file as a string, e.g. `flow_file!(\"models/m.flow\")`")
                .to_compile_error()
        }
    };
    let path = base.join(lit.value());
    let src = match std::fs::read_to_string(&path) {
        Ok(s) => s,
        Err(e) => {
            return syn::Error::new(
                lit.span(),
                format!("cannot read `{}`: {e}\n= help: the path is relative to `{}`", path.display(), base.display()),
            )
            .to_compile_error()
        }
    };
    // Inside rustc, text parsed into tokens would get the macro call's location: parse it with
    // proc-macro2's own lexer, which keeps the file's lines and columns for the messages.
    proc_macro2::fallback::force();
    let derived = guarded(|| dsl::parse(&src).and_then(|ast| pipeline(&ast)));
    proc_macro2::fallback::unforce();
    let result =
        derived.and_then(|(d, p)| guarded(|| rust::emit_with_source(&d, &p, &Spans::default(), Some(rust::Source::Text(src.clone())))));
    match result {
        Ok(code) => {
            let file = path.display().to_string();
            // rebuild when the file changes
            quote! {
                const _: &str = include_str!(#file);
                #code
            }
        }
        Err(diags) => {
            let mut out = TokenStream::new();
            for d in diags.0.iter().filter(|d| d.severity == Severity::Error) {
                let one = Diagnostics(vec![d.clone()]);
                let text = one.render(&lit.value(), &src);
                let text = text.trim_end().strip_prefix("error: ").unwrap_or(&text);
                out.extend(syn::Error::new(lit.span(), text).to_compile_error());
            }
            out
        }
    }
}
