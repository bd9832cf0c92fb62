//! Diagnostics: located messages collected across a stage and rendered with a caret.
//!
//! ```
//! use flowc::diag::{Diagnostic, Diagnostics, Span};
//! let src = "bijector f(x) = foo(x);";
//! let d = Diagnostic::error(Span::new(1, 16, 3), "unknown function `foo`")
//!     .help("known functions: exp, log, ...");
//! let text = Diagnostics::from(d).render("model.flow", src);
//! assert!(text.contains("model.flow:1:17"));
//! assert!(text.contains("^^^"));
//! ```

use std::fmt;

/// A location in the user's source: 1-based line, 0-based column (in chars), and a length in chars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
pub struct Span {
    pub line: usize,
    pub col: usize,
    pub len: usize,
}

impl Span {
    pub fn new(line: usize, col: usize, len: usize) -> Span {
        Span { line, col, len: len.max(1) }
    }

    /// The span of a token tree, from proc-macro2's location info.
    pub fn of(span: proc_macro2::Span) -> Span {
        let start = span.start();
        let end = span.end();
        let len = if end.line == start.line && end.column > start.column { end.column - start.column } else { 1 };
        Span::new(start.line, start.column, len)
    }

    /// Covers `self` through `other` when both are on one line.
    pub fn join(self, other: Span) -> Span {
        if self.line == other.line && other.col + other.len >= self.col {
            Span::new(self.line, self.col, other.col + other.len - self.col)
        } else {
            self
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Severity {
    Error,
    Warning,
}

/// One message about the user's input.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub span: Option<Span>,
    pub message: String,
    /// What to write instead.
    pub help: Option<String>,
    /// The proc-macro span to report at, when the input came from macro tokens.
    #[serde(skip)]
    pub token_span: Option<proc_macro2::Span>,
}

impl Diagnostic {
    pub fn error(span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic { severity: Severity::Error, span: Some(span), message: message.into(), help: None, token_span: None }
    }

    pub fn at(span: proc_macro2::Span, message: impl Into<String>) -> Diagnostic {
        let mut d = Diagnostic::error(Span::of(span), message);
        d.token_span = Some(span);
        d
    }

    pub fn unlocated(message: impl Into<String>) -> Diagnostic {
        Diagnostic { severity: Severity::Error, span: None, message: message.into(), help: None, token_span: None }
    }

    pub fn help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }
}

/// A collection of diagnostics; a stage fails when it holds at least one error.
#[derive(Debug, Clone, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Self {
        Diagnostics(vec![d])
    }
}

impl Diagnostics {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d)
    }
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|d| d.severity == Severity::Error)
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0)
    }
    /// `Ok(value)` when no error was collected.
    pub fn into_result<T>(self, value: T) -> Result<T, Diagnostics> {
        if self.has_errors() {
            Err(self)
        } else {
            Ok(value)
        }
    }

    /// Renders every diagnostic as `error: msg` / ` --> file:line:col` / source line / caret.
    pub fn render(&self, file: &str, src: &str) -> String {
        let lines: Vec<&str> = src.lines().collect();
        let mut out = String::new();
        for d in &self.0 {
            let sev = match d.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            out.push_str(&format!("{sev}: {}\n", d.message));
            if let Some(span) = d.span {
                out.push_str(&format!(" --> {file}:{}:{}\n", span.line, span.col + 1));
                if let Some(line) = lines.get(span.line.wrapping_sub(1)) {
                    let num = span.line.to_string();
                    let pad = " ".repeat(num.len());
                    let caret_pad: String = line.chars().take(span.col).map(|c| if c == '\t' { '\t' } else { ' ' }).collect();
                    let width = span.len.min(line.chars().count().saturating_sub(span.col).max(1));
                    out.push_str(&format!("{pad} |\n{num} | {line}\n{pad} | {caret_pad}{}\n", "^".repeat(width)));
                }
            } else {
                out.push_str(&format!(" --> {file}\n"));
            }
            if let Some(help) = &d.help {
                out.push_str(&format!("  = help: {help}\n"));
            }
        }
        out
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            match d.span {
                Some(s) => writeln!(f, "{}:{}: {}", s.line, s.col + 1, d.message)?,
                None => writeln!(f, "{}", d.message)?,
            }
        }
        Ok(())
    }
}
