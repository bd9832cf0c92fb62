//! Reading and writing tables of points as CSV or NPY files.
//!
//! A [`Table`] is a dense row-major matrix of `f64`: each row is a point,
//! each column a coordinate. [`read_table`] and [`write_table`] pick the
//! file format from the extension ([`format_of`]).
//!
//! For tables too large to hold in memory, [`RowReader`] and [`RowWriter`]
//! read and write the same files a chunk of rows at a time, with the same
//! checks, errors and atomicity; [`read_table`] and [`write_table`] are built
//! on them.
//!
//! Guarantees:
//! - No input makes these functions panic; every problem is an [`IoError`]
//!   naming the file and, where it applies, the 1-based data row and column.
//! - By default NaN and infinities are rejected on reading
//!   ([`ReadOptions::allow_nonfinite`]).
//! - [`write_table`] is atomic: `path` ends up with the whole new file or is
//!   left as it was, never with a partial file.
//! - What [`write_table`] writes, [`read_table`] reads back bit for bit
//!   (NaN and infinities only with `allow_nonfinite`; NaN payloads are not kept in CSV).
//!
//! Formats:
//! - **CSV**: comma-separated, one point per line. Blank lines are skipped,
//!   whitespace around fields is ignored, fields may be quoted. The first
//!   row is a header when any of its fields is not a number; otherwise it
//!   is data. Every row has the same number of fields.
//! - **NPY**: NumPy's `.npy` format (versions 1.0, 2.0, 3.0). Reading takes
//!   little-endian float64 or float32 (widened to `f64`), 1-D (one column)
//!   or 2-D, in C or Fortran order; writing gives 2-D float64 in C order.

mod atomic;
mod csv;
mod error;
mod npy;
mod stream;

use std::path::Path;

pub use error::IoError;
pub use stream::{RowReader, RowWriter};

/// A dense row-major table of `f64`: rows are points, columns are coordinates.
///
/// The value at row `i`, column `j` (0-based) is `data[i * cols + j]`.
///
/// `PartialEq` compares values with `==`, so `-0.0 == 0.0` and a table
/// holding NaN is not equal to itself; compare `to_bits()` when that matters.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Number of rows (points).
    pub rows: usize,
    /// Number of columns (coordinates of each point).
    pub cols: usize,
    /// `rows * cols` values, row after row.
    pub data: Vec<f64>,
}

impl Table {
    /// Makes a table from row-major `data`.
    ///
    /// # Panics
    ///
    /// If `data.len() != rows * cols`.
    pub fn new(rows: usize, cols: usize, data: Vec<f64>) -> Self {
        assert!(
            rows.checked_mul(cols) == Some(data.len()),
            "Table::new: {rows} rows × {cols} columns needs {} values, got {}",
            rows as u128 * cols as u128,
            data.len()
        );
        Table { rows, cols, data }
    }

    /// Row `i` (0-based) as a slice of `cols` values.
    ///
    /// # Panics
    ///
    /// If `i >= rows`.
    pub fn row(&self, i: usize) -> &[f64] {
        assert!(i < self.rows, "Table::row: row {i} out of range for {} rows", self.rows);
        &self.data[i * self.cols..(i + 1) * self.cols]
    }
}

/// A file format that [`read_table`] and [`write_table`] understand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Comma-separated values, `.csv`.
    Csv,
    /// NumPy array file, `.npy`.
    Npy,
}

/// The format of `path`, from its extension: `.csv` or `.npy`, in any case.
///
/// Any other extension, or none, is an [`IoError`] that lists the supported ones.
///
/// ```
/// use runtime::io::{format_of, Format};
/// use std::path::Path;
///
/// assert_eq!(format_of(Path::new("x/points.CSV")).unwrap(), Format::Csv);
/// assert_eq!(format_of(Path::new("samples.npy")).unwrap(), Format::Npy);
/// assert!(format_of(Path::new("notes.txt")).unwrap_err().to_string().contains(".csv"));
/// ```
pub fn format_of(path: &Path) -> Result<Format, IoError> {
    const SUPPORTED: &str = "supported extensions are .csv and .npy";
    let Some(ext) = path.extension() else {
        return Err(IoError::new(path, format!("file name has no extension; {SUPPORTED}")));
    };
    let ext = ext.to_string_lossy();
    if ext.eq_ignore_ascii_case("csv") {
        Ok(Format::Csv)
    } else if ext.eq_ignore_ascii_case("npy") {
        Ok(Format::Npy)
    } else {
        Err(IoError::new(path, format!("unsupported file extension `.{ext}`; {SUPPORTED}")))
    }
}

/// Options for [`read_table`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// Accept NaN, `inf` and `-inf` values. Off by default: a non-finite
    /// value is then an error naming its row and column.
    pub allow_nonfinite: bool,
}

/// Reads the table in `path`, in the format given by its extension.
///
/// Errors (each an [`IoError`]; none of these panics):
/// - the file cannot be read (the OS message is included);
/// - the file has no data rows, or (NPY) no columns;
/// - CSV: a field is not a number (row, column and the text are given), or a
///   row has a different number of fields from the header or the first row;
/// - NPY: the file is truncated or corrupt, or its dtype is not
///   little-endian float64/float32, or the array is not 1-D or 2-D;
/// - a value is NaN or infinite and `opts.allow_nonfinite` is false
///   (CSV accepts `nan`, `inf`, `-inf`, `infinity` in any case as numbers).
pub fn read_table(path: &Path, opts: &ReadOptions) -> Result<Table, IoError> {
    let mut reader = RowReader::open(path, opts)?;
    let mut data = Vec::new();
    // One chunk of every row; an NPY reader reserves room for all of them at once.
    let rows = reader.next_chunk(usize::MAX, &mut data)?;
    Ok(Table { rows, cols: reader.cols(), data })
}

/// Writes `table` to `path`, in the format given by its extension.
///
/// CSV: the `header` line (column names, quoted where needed) if given, then
/// one line per row. Each value is written as Rust's `{}` or `{:e}`
/// formatting of the `f64`, whichever is shorter (`{}` on a tie): both give
/// the fewest digits that read back to exactly the same `f64`, but `{}`
/// never uses an exponent, so it would spell `5e-324` with 324 digits.
///
/// NPY: a 2-D little-endian float64 array in C order, written as
/// [`RowWriter`] writes it (its header leaves room for a 20-digit row count).
/// NPY has no place for column names, so `header` is checked but not stored.
///
/// The write is atomic: the file is written to a temporary file in the same
/// directory, flushed to disk, then renamed over `path`. On any error the
/// temporary file is removed, no file is created at `path`, and a file
/// already there is left untouched.
///
/// Errors, before anything is written: an unsupported extension; `table.data`
/// not holding `rows * cols` values; a table with no rows or no columns
/// (which [`read_table`] would refuse); a `header` whose length is not
/// `cols`, or (CSV) whose names all parse as numbers, so that it would be
/// read back as a data row. Then any OS error (e.g. a missing directory).
pub fn write_table(path: &Path, table: &Table, header: Option<&[String]>) -> Result<(), IoError> {
    let format = format_of(path)?;
    check_writable(path, table, header, format)?;
    let mut writer = RowWriter::create(path, table.cols, header)?;
    writer.write_chunk(&table.data)?;
    writer.finish()
}

/// Checks everything about a write that can be checked before touching the disk.
fn check_writable(path: &Path, table: &Table, header: Option<&[String]>, format: Format) -> Result<(), IoError> {
    if table.rows.checked_mul(table.cols) != Some(table.data.len()) {
        return Err(IoError::new(
            path,
            format!("table is inconsistent: {} rows × {} columns but {} values", table.rows, table.cols, table.data.len()),
        ));
    }
    if table.rows == 0 || table.cols == 0 {
        return Err(IoError::new(
            path,
            format!("refusing to write an empty table ({} rows × {} columns): read_table would reject it", table.rows, table.cols),
        ));
    }
    check_header(path, table.cols, header, format)
}

/// Checks that `header` names `cols` columns and (CSV) would be read back as a header.
fn check_header(path: &Path, cols: usize, header: Option<&[String]>, format: Format) -> Result<(), IoError> {
    if let Some(names) = header {
        if names.len() != cols {
            return Err(IoError::new(path, format!("header has {} names but the table has {cols} columns", names.len())));
        }
        if format == Format::Csv && names.iter().all(|name| csv::parse_number(name).is_some()) {
            return Err(IoError::new(path, "every header name is a number, so the header would be read back as a data row"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_of_is_case_insensitive() {
        assert_eq!(format_of(Path::new("a.csv")), Ok(Format::Csv));
        assert_eq!(format_of(Path::new("a.Csv")), Ok(Format::Csv));
        assert_eq!(format_of(Path::new("dir.npy/a.NPY")), Ok(Format::Npy));
    }

    #[test]
    fn format_of_rejects_other_extensions() {
        let e = format_of(Path::new("a.txt")).unwrap_err();
        assert_eq!(e.to_string(), "a.txt: unsupported file extension `.txt`; supported extensions are .csv and .npy");
        let e = format_of(Path::new("dir.csv/noext")).unwrap_err();
        assert!(e.to_string().contains("no extension; supported extensions are .csv and .npy"), "{e}");
        assert!(format_of(Path::new("a.csv.gz")).is_err());
        assert!(format_of(Path::new(".csv")).is_err(), "a dot file has no extension");
    }

    #[test]
    fn table_row_slices() {
        let t = Table::new(2, 3, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(t.row(0), &[1.0, 2.0, 3.0]);
        assert_eq!(t.row(1), &[4.0, 5.0, 6.0]);
    }

    #[test]
    #[should_panic(expected = "needs 6 values, got 5")]
    fn table_new_checks_length() {
        Table::new(2, 3, vec![0.0; 5]);
    }

    #[test]
    #[should_panic(expected = "out of range")]
    fn table_row_checks_index() {
        Table::new(1, 1, vec![0.0]).row(1);
    }

    #[test]
    fn read_options_default_rejects_nonfinite() {
        assert!(!ReadOptions::default().allow_nonfinite);
    }
}
