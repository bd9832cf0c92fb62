//! Streaming reading and writing: [`RowReader`] and [`RowWriter`] handle a
//! table a chunk of rows at a time, so memory use is bounded by the chunk
//! size rather than the file size.

use std::fs::File;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};

use super::atomic::AtomicFile;
use super::csv::{CsvRows, CsvWriter};
use super::npy::{NpyRows, NpyWriter};
use super::{check_header, format_of, Format, IoError, ReadOptions};

/// Bytes read from an NPY file at a time.
const NPY_BUFFER_BYTES: usize = 1 << 16;

/// Reads a CSV or NPY table chunk by chunk (format by extension, as [`format_of`]).
///
/// It reads the same files as [`read_table`](super::read_table), with the
/// same checks and the same error messages (rows and columns are counted
/// from the start of the file, not of the chunk), but holds only one chunk
/// of rows in memory at a time (plus fixed-size buffers).
///
/// - **CSV**: records are streamed from the file. [`open`](Self::open)
///   reads the header, if any, and the first data row, to know the number
///   of columns; an error in the first data row, or a file without data
///   rows, is reported by `open`.
/// - **NPY**: `open` reads and checks the header, and checks the file size
///   against the shape, so a truncated file is reported by `open`. Rows are
///   then decoded chunk by chunk through a buffered reader. A 2-D array in
///   **Fortran order** cannot be read row by row without seeking all over
///   the file, so it is read whole, once, by `open` (memory: the whole
///   array as `f64`), and chunks are handed out from memory. C-order
///   arrays, 1-D arrays and Fortran-order arrays with one row or one column
///   (the same layout as C order) are streamed.
///
/// After an error, every later call to [`next_chunk`](Self::next_chunk)
/// returns the same error.
///
/// ```
/// use runtime::io::{write_table, ReadOptions, RowReader, Table};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("points.npy");
/// write_table(&path, &Table::new(5, 2, (0..10).map(f64::from).collect()), None)?;
///
/// let mut reader = RowReader::open(&path, &ReadOptions::default())?;
/// assert_eq!((reader.cols(), reader.rows_hint()), (2, Some(5)));
/// let mut chunk = Vec::new();
/// let mut sizes = Vec::new();
/// loop {
///     let n = reader.next_chunk(2, &mut chunk)?;
///     if n == 0 {
///         break;
///     }
///     assert_eq!(chunk.len(), n * 2);
///     sizes.push(n);
/// }
/// assert_eq!(sizes, [2, 2, 1]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RowReader {
    source: Source,
    /// The first error, returned again by every later call.
    failed: Option<IoError>,
}

enum Source {
    Csv(CsvRows<File>),
    Npy(NpyRows<BufReader<File>>),
}

impl RowReader {
    /// Opens `path`, in the format given by its extension, and reads its header.
    ///
    /// Errors: an unsupported extension; the file cannot be opened; (NPY) any
    /// problem with the header or the file size, as [`read_table`](super::read_table)
    /// reports it; (CSV) a file with no data rows or an error in the first data row.
    pub fn open(path: &Path, opts: &ReadOptions) -> Result<RowReader, IoError> {
        let source = match format_of(path)? {
            Format::Csv => {
                let file = File::open(path).map_err(|e| IoError::new(path, format!("cannot open for reading: {e}")))?;
                Source::Csv(CsvRows::open(file, path, opts)?)
            }
            Format::Npy => {
                let cannot_read = |e: io::Error| IoError::new(path, format!("cannot read: {e}"));
                let file = File::open(path).map_err(cannot_read)?;
                let len = file.metadata().map_err(cannot_read)?.len();
                Source::Npy(NpyRows::open(BufReader::with_capacity(NPY_BUFFER_BYTES, file), len, path, opts)?)
            }
        };
        Ok(RowReader { source, failed: None })
    }

    /// Number of columns (known after open: from the NPY header, or the first CSV data row).
    pub fn cols(&self) -> usize {
        match &self.source {
            Source::Csv(rows) => rows.cols(),
            Source::Npy(rows) => rows.cols(),
        }
    }

    /// Total rows if known up front (NPY: `Some(n)`; CSV: `None`).
    pub fn rows_hint(&self) -> Option<usize> {
        match &self.source {
            Source::Csv(_) => None,
            Source::Npy(rows) => Some(rows.rows()),
        }
    }

    /// Appends up to `max_rows` rows (row-major `f64`, [`cols`](Self::cols)
    /// values each) to `buf`, which is cleared first; returns the number of
    /// rows read, 0 at the end (and on every call after that).
    ///
    /// Same validation and error messages as [`read_table`](super::read_table),
    /// with row and column numbers counted from the start of the file. On an
    /// error `buf` is left empty, and every later call returns the same error.
    ///
    /// # Panics
    ///
    /// If `max_rows` is 0 (which could not be told apart from the end).
    pub fn next_chunk(&mut self, max_rows: usize, buf: &mut Vec<f64>) -> Result<usize, IoError> {
        assert!(max_rows > 0, "RowReader::next_chunk: max_rows must be at least 1");
        buf.clear();
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let result = match &mut self.source {
            Source::Csv(rows) => rows.read_rows(max_rows, buf),
            Source::Npy(rows) => rows.read_rows(max_rows, buf),
        };
        if let Err(e) = &result {
            buf.clear();
            self.failed = Some(e.clone());
        }
        result
    }
}

/// Writes a CSV or NPY table chunk by chunk to a temporary file next to
/// `path`; the file appears at `path` only when [`finish`](Self::finish)
/// succeeds (dropping without `finish` leaves nothing, and a file already at
/// `path` untouched).
///
/// It writes what [`write_table`](super::write_table) writes, but holds only
/// fixed-size buffers in memory:
/// - **CSV**: the header line, if given, then one line per row, values
///   formatted as by `write_table`.
/// - **NPY**: a 2-D little-endian float64 array in C order (format 1.0). The
///   number of rows is not known until the end, so the header is written
///   with room for a row count of up to 20 digits (the header is still a
///   multiple of 64 bytes long) and `finish` rewrites the shape in place.
///   NPY has no place for column names, so `header` is checked but not stored.
///
/// After an I/O error, every later call returns the same error (and
/// `finish` removes the temporary file).
///
/// ```
/// use runtime::io::{read_table, ReadOptions, RowWriter};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("out.csv");
/// let mut writer = RowWriter::create(&path, 2, Some(&["x".to_string(), "y".to_string()]))?;
/// writer.write_chunk(&[1.0, 2.0, 3.0, 4.0])?;
/// writer.write_chunk(&[5.0, 6.0])?;
/// assert!(!path.exists(), "nothing at `path` before finish");
/// writer.finish()?;
/// assert_eq!(std::fs::read_to_string(&path)?, "x,y\n1,2\n3,4\n5,6\n");
/// assert_eq!(read_table(&path, &ReadOptions::default())?.rows, 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RowWriter {
    path: PathBuf,
    cols: usize,
    rows: u64,
    sink: Sink,
    /// The first I/O error, returned again by every later call.
    failed: Option<IoError>,
}

enum Sink {
    Csv(Box<CsvWriter<AtomicFile>>),
    Npy(NpyWriter<AtomicFile>),
}

impl RowWriter {
    /// Creates the temporary file for `path`, in the format given by its
    /// extension, and writes the header (CSV: `header`, if given).
    ///
    /// Errors, before anything is written: an unsupported extension; `cols`
    /// is 0; a `header` whose length is not `cols`, or (CSV) whose names all
    /// parse as numbers, so that it would be read back as a data row. Then
    /// any OS error (e.g. a missing directory).
    pub fn create(path: &Path, cols: usize, header: Option<&[String]>) -> Result<RowWriter, IoError> {
        let format = format_of(path)?;
        if cols == 0 {
            return Err(IoError::new(path, "refusing to write a table with no columns: read_table would reject it"));
        }
        check_header(path, cols, header, format)?;
        let file = AtomicFile::create(path)?;
        let sink = match format {
            Format::Csv => CsvWriter::new(file, cols, header).map(|writer| Sink::Csv(Box::new(writer))),
            Format::Npy => NpyWriter::new(file, cols).map(Sink::Npy),
        }
        .map_err(|e| write_error(path, e))?;
        Ok(RowWriter { path: path.to_path_buf(), cols, rows: 0, sink, failed: None })
    }

    /// Appends the rows in `data` (row-major, [`cols`](Self::cols) values
    /// per row). Non-finite values are written as they are.
    ///
    /// Errors: `data.len()` is not a multiple of `cols` (nothing is written,
    /// and the writer can still be used); an I/O error.
    pub fn write_chunk(&mut self, data: &[f64]) -> Result<(), IoError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if !data.len().is_multiple_of(self.cols) {
            return Err(IoError::new(
                &self.path,
                format!("chunk of {} values is not a whole number of rows of {} columns", data.len(), self.cols),
            ));
        }
        let written = match &mut self.sink {
            Sink::Csv(writer) => writer.write_rows(data),
            Sink::Npy(writer) => writer.write_rows(data),
        };
        if let Err(e) = written {
            let e = write_error(&self.path, e);
            self.failed = Some(e.clone());
            return Err(e);
        }
        self.rows += (data.len() / self.cols) as u64;
        Ok(())
    }

    /// Number of columns of each row.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Number of rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Completes the file (NPY: writes the final shape into the header),
    /// flushes it to disk and renames it to `path`, replacing any file there.
    ///
    /// Errors: no rows were written (an empty table, which
    /// [`read_table`](super::read_table) would reject); an earlier I/O error;
    /// any I/O error now. On error the temporary file is removed and `path`
    /// is left as it was.
    pub fn finish(self) -> Result<(), IoError> {
        let RowWriter { path, cols, rows, sink, failed } = self;
        if let Some(e) = failed {
            return Err(e);
        }
        if rows == 0 {
            return Err(IoError::new(
                &path,
                format!("refusing to write an empty table (0 rows × {cols} columns): read_table would reject it"),
            ));
        }
        let file = match sink {
            Sink::Csv(writer) => writer.finish(),
            Sink::Npy(writer) => writer.finish(),
        }
        .map_err(|e| write_error(&path, e))?;
        file.commit()
    }
}

fn write_error(path: &Path, e: io::Error) -> IoError {
    IoError::new(path, format!("cannot write: {e}"))
}
