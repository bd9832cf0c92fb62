//! [`IoError`]: the one error type of [`crate::io`].

use std::fmt;
use std::path::{Path, PathBuf};

/// What went wrong while reading or writing a table, and where.
///
/// `row` and `column` are 1-based and count *data* rows and columns: a CSV
/// header line is not a row. For CSV input, `line` is the 1-based line of the
/// file on which the row starts; [`Display`](fmt::Display) shows it only when
/// it differs from `row` (because of a header or blank lines).
///
/// ```
/// use runtime::io::IoError;
///
/// let e = IoError {
///     path: "data.csv".into(),
///     row: Some(3),
///     column: Some(2),
///     line: Some(4),
///     message: "`abc` is not a number".into(),
/// };
/// assert_eq!(e.to_string(), "data.csv: row 3 (line 4), column 2: `abc` is not a number");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct IoError {
    /// The file being read or written.
    pub path: PathBuf,
    /// 1-based data row, when the error is about one row.
    pub row: Option<usize>,
    /// 1-based column, when the error is about one value.
    pub column: Option<usize>,
    /// 1-based line of the file where `row` starts (CSV only).
    pub line: Option<usize>,
    /// What went wrong, without the location.
    pub message: String,
}

impl IoError {
    /// An error about the file as a whole.
    pub(crate) fn new(path: &Path, message: impl Into<String>) -> Self {
        IoError { path: path.to_path_buf(), row: None, column: None, line: None, message: message.into() }
    }

    /// Attaches a 1-based data row.
    pub(crate) fn at_row(mut self, row: usize) -> Self {
        self.row = Some(row);
        self
    }

    /// Attaches a 1-based column.
    pub(crate) fn at_column(mut self, column: usize) -> Self {
        self.column = Some(column);
        self
    }

    /// Attaches the 1-based file line where the row starts.
    pub(crate) fn at_line(mut self, line: Option<usize>) -> Self {
        self.line = line;
        self
    }
}

impl fmt::Display for IoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(row) = self.row {
            write!(f, ": row {row}")?;
            match self.line {
                Some(line) if line != row => write!(f, " (line {line})")?,
                _ => {}
            }
            if let Some(column) = self.column {
                write!(f, ", column {column}")?;
            }
        } else if let Some(column) = self.column {
            write!(f, ": column {column}")?;
        } else if let Some(line) = self.line {
            write!(f, ": line {line}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for IoError {}

/// The message for a value rejected because it is NaN or infinite.
pub(crate) fn nonfinite_message(value: f64) -> String {
    let what = if value.is_nan() {
        "NaN"
    } else if value > 0.0 {
        "inf"
    } else {
        "-inf"
    };
    format!("{what} is not allowed: input values must be finite (see ReadOptions::allow_nonfinite)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_whole_file() {
        let e = IoError::new(Path::new("a/b.npy"), "no data rows");
        assert_eq!(e.to_string(), "a/b.npy: no data rows");
    }

    #[test]
    fn display_row_only_and_line_equal_to_row() {
        let e = IoError::new(Path::new("d.csv"), "m").at_row(2).at_line(Some(2));
        assert_eq!(e.to_string(), "d.csv: row 2: m");
    }

    #[test]
    fn display_row_column_without_line() {
        let e = IoError::new(Path::new("d.npy"), "m").at_row(3).at_column(2);
        assert_eq!(e.to_string(), "d.npy: row 3, column 2: m");
    }

    #[test]
    fn display_line_only() {
        let e = IoError::new(Path::new("d.csv"), "m").at_line(Some(7));
        assert_eq!(e.to_string(), "d.csv: line 7: m");
    }

    #[test]
    fn nonfinite_messages_name_the_value() {
        assert!(nonfinite_message(f64::NAN).starts_with("NaN is not allowed"));
        assert!(nonfinite_message(f64::INFINITY).starts_with("inf is not allowed"));
        assert!(nonfinite_message(f64::NEG_INFINITY).starts_with("-inf is not allowed"));
        assert!(nonfinite_message(f64::NAN).contains("must be finite"));
    }
}
