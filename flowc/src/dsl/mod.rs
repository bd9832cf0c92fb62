//! Stage 1: source text or macro tokens → [`Ast`].
//!
//! ```
//! let ast = flowc::dsl::parse("bijector shift(x; t: real) = x + t;").unwrap();
//! assert_eq!(ast.items.len(), 1);
//! ```

pub mod ast;
mod parser;

pub use ast::*;
pub use parser::parse_tokens;

use crate::diag::{Diagnostic, Diagnostics, Span};

/// Parses the text of a `.flow` file (or any string in the flow language).
pub fn parse(src: &str) -> Result<Ast, Diagnostics> {
    let mut diags = Diagnostics::new();
    for (i, line) in src.lines().enumerate() {
        let t = line.trim_start();
        if t.starts_with('#') && !t.starts_with("#[") {
            let col = line.len() - t.len();
            diags.push(
                Diagnostic::error(Span::new(i + 1, col, 1), "`#` does not start a comment in the flow language")
                    .help("write comments as `// ...` or `/* ... */`"),
            );
        }
    }
    if diags.has_errors() {
        return Err(diags);
    }
    let tokens: proc_macro2::TokenStream = match src.parse() {
        Ok(t) => t,
        Err(e) => {
            let d = Diagnostic::error(Span::of(e.span()), format!("cannot read this as flow-language tokens: {e}"))
                .help("check for an unclosed `(`, `[`, `{`, string or comment");
            return Err(d.into());
        }
    };
    parse_tokens(tokens)
}
