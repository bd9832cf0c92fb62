//! CSV reading and writing, row by row.

use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use ::csv::{ByteRecord, Position, Reader, ReaderBuilder, Trim, Writer, WriterBuilder};

use super::error::nonfinite_message;
use super::{IoError, ReadOptions};

/// Longest field text quoted in an error message, in characters.
const MAX_QUOTED_CHARS: usize = 40;

/// Buffer size of the `csv` reader and writer.
const BUFFER_BYTES: usize = 1 << 16;

/// Parses one (already trimmed) field. `nan`, `inf`, `infinity` in any case,
/// with an optional sign, are numbers here; finiteness is checked elsewhere.
pub(super) fn parse_number(field: &str) -> Option<f64> {
    field.trim().parse::<f64>().ok()
}

/// The data rows of a CSV input, read one record at a time.
///
/// `open` reads up to and including the first data row, so the number of
/// columns is known from the start; memory use is one record, whatever the
/// size of the input. `input` must be seekable only so that an error can
/// name the line on which the bad row starts (see [`start_line`]); after an
/// error the reader must not be used again.
pub(super) struct CsvRows<R> {
    reader: Reader<R>,
    record: ByteRecord,
    path: PathBuf,
    allow_nonfinite: bool,
    /// Number of fields of the header, if the file has one.
    header_len: Option<usize>,
    /// Number of fields of every data row.
    cols: usize,
    /// Data rows parsed so far.
    rows: usize,
    /// The first data row, parsed by `open` and not yet handed out.
    first: Option<Vec<f64>>,
}

impl<R: Read + Seek> CsvRows<R> {
    /// Reads the header, if any, and the first data row; `path` is only used in errors.
    ///
    /// A file with no data rows is an error here.
    pub(super) fn open(input: R, path: &Path, opts: &ReadOptions) -> Result<Self, IoError> {
        let reader = ReaderBuilder::new()
            .has_headers(false) // detected below
            .flexible(true) // field counts are checked in `parse_record`, with a better message
            .trim(Trim::All)
            .buffer_capacity(BUFFER_BYTES)
            .from_reader(input);
        let mut rows = CsvRows {
            reader,
            record: ByteRecord::new(),
            path: path.to_path_buf(),
            allow_nonfinite: opts.allow_nonfinite,
            header_len: None,
            cols: 0,
            rows: 0,
            first: None,
        };

        // The first record is a header when any of its fields is not a number.
        let mut found = rows.read_record()?;
        if found {
            let all_numbers = rows.record.iter().all(|field| std::str::from_utf8(field).ok().and_then(parse_number).is_some());
            if !all_numbers {
                rows.header_len = Some(rows.record.len());
                found = rows.read_record()?;
            }
        }
        if !found {
            let what =
                if rows.header_len.is_some() { "no data rows (the file has only a header)" } else { "no data rows (the file is empty)" };
            return Err(IoError::new(path, what));
        }

        rows.cols = rows.header_len.unwrap_or(rows.record.len());
        let mut first = Vec::with_capacity(rows.cols);
        rows.parse_record(&mut first)?;
        rows.first = Some(first);
        Ok(rows)
    }

    /// Number of values in each row.
    pub(super) fn cols(&self) -> usize {
        self.cols
    }

    /// Appends up to `max_rows` rows to `out`; returns how many, 0 at the end.
    pub(super) fn read_rows(&mut self, max_rows: usize, out: &mut Vec<f64>) -> Result<usize, IoError> {
        if max_rows == 0 {
            return Ok(0);
        }
        let mut n = 0;
        if let Some(first) = self.first.take() {
            out.extend_from_slice(&first);
            n += 1;
        }
        while n < max_rows && self.read_record()? {
            self.parse_record(out)?;
            n += 1;
        }
        Ok(n)
    }

    /// Reads the next record into `self.record`; false at the end of the input.
    fn read_record(&mut self) -> Result<bool, IoError> {
        self.reader.read_byte_record(&mut self.record).map_err(|e| {
            let line = e.position().and_then(|p| usize::try_from(p.line()).ok());
            IoError::new(&self.path, format!("cannot read: {e}")).at_line(line)
        })
    }

    /// Checks and parses `self.record`, the next data row, appending its values to `out`.
    fn parse_record(&mut self, out: &mut Vec<f64>) -> Result<(), IoError> {
        self.rows += 1;
        let row = self.rows;
        let (record, reader, path) = (&self.record, &mut self.reader, &self.path);
        // Only computed for an error: it re-reads the input.
        let mut at = |message: String| {
            let line = record.position().and_then(|p| start_line(reader.get_mut(), p));
            IoError::new(path, message).at_row(row).at_line(line)
        };

        if record.len() != self.cols {
            let against = if self.header_len.is_some() { "the header" } else { "row 1" };
            return Err(at(format!("has {} fields, but {against} has {}", record.len(), self.cols)));
        }

        for (j, field) in record.iter().enumerate() {
            let column = j + 1;
            let text = std::str::from_utf8(field).ok();
            let Some(value) = text.and_then(parse_number) else {
                return Err(at(not_a_number(field)).at_column(column));
            };
            if !value.is_finite() && !self.allow_nonfinite {
                return Err(at(nonfinite_message(value)).at_column(column));
            }
            out.push(value);
        }
        Ok(())
    }
}

/// The 1-based line on which the record read from `pos` starts.
///
/// The `csv` crate gives each record the position where the reader stood
/// before reading it, which is before any blank lines it skipped, and, with
/// `\r\n` line ends, before the `\n` that ends the previous line. So start
/// there and count the line ends up to the record's first byte.
fn start_line(input: &mut (impl Read + Seek), pos: &Position) -> Option<usize> {
    input.seek(SeekFrom::Start(pos.byte())).ok()?;
    let mut line = pos.line();
    let mut bytes = BufReader::new(input);
    'scan: loop {
        let buf = bytes.fill_buf().ok()?;
        if buf.is_empty() {
            break;
        }
        let mut used = 0;
        for &b in buf {
            match b {
                b'\n' => line += 1,
                b'\r' => {}
                _ => break 'scan,
            }
            used += 1;
        }
        bytes.consume(used);
    }
    usize::try_from(line).ok()
}

/// "`abc` is not a number", with long or binary text shortened.
fn not_a_number(field: &[u8]) -> String {
    if field.is_empty() {
        return "empty field, expected a number".to_string();
    }
    let text = String::from_utf8_lossy(field);
    let mut shown: String = text.chars().take(MAX_QUOTED_CHARS).collect();
    if text.chars().nth(MAX_QUOTED_CHARS).is_some() {
        shown.push('…');
    }
    format!("`{shown}` is not a number")
}

/// Formats `value` so that it parses back to the same bits, as briefly as
/// Rust's shortest-round-trip formatting allows: `{}` or `{:e}`, whichever is
/// shorter (`{}` on a tie). NaN and infinities come out as `NaN`, `inf`, `-inf`.
pub(super) fn format_value(value: f64) -> String {
    let plain = format!("{value}");
    if value.is_finite() {
        let scientific = format!("{value:e}");
        if scientific.len() < plain.len() {
            return scientific;
        }
    }
    plain
}

/// Writes a CSV table row by row: the header line, if given, then one line per row.
pub(super) struct CsvWriter<W: Write> {
    writer: Writer<W>,
    cols: usize,
}

impl<W: Write> CsvWriter<W> {
    /// Starts the table, writing `header` (quoted where needed) if given.
    /// `cols` must not be 0.
    pub(super) fn new(out: W, cols: usize, header: Option<&[String]>) -> io::Result<Self> {
        let mut writer = WriterBuilder::new().buffer_capacity(BUFFER_BYTES).from_writer(out);
        if let Some(names) = header {
            writer.write_record(names)?;
        }
        Ok(CsvWriter { writer, cols })
    }

    /// Writes the rows in `data`, whose length is a multiple of `cols`.
    pub(super) fn write_rows(&mut self, data: &[f64]) -> io::Result<()> {
        for row in data.chunks_exact(self.cols) {
            for &value in row {
                self.writer.write_field(format_value(value))?;
            }
            self.writer.write_record(None::<&[u8]>)?;
        }
        Ok(())
    }

    /// Flushes what is buffered and gives back the output.
    pub(super) fn finish(self) -> io::Result<W> {
        self.writer.into_inner().map_err(|e| e.into_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::Table;
    use std::io::Cursor;

    /// Reads a whole CSV table, as `read_table` does.
    fn read(input: impl Read + Seek, path: &Path, opts: &ReadOptions) -> Result<Table, IoError> {
        let mut rows = CsvRows::open(input, path, opts)?;
        let mut data = Vec::new();
        let n = rows.read_rows(usize::MAX, &mut data)?;
        Ok(Table::new(n, rows.cols(), data))
    }

    /// Writes a whole table as CSV, as `write_table` does.
    fn write(out: &mut Vec<u8>, table: &Table, header: Option<&[String]>) -> io::Result<()> {
        let mut writer = CsvWriter::new(out, table.cols, header)?;
        writer.write_rows(&table.data)?;
        writer.finish().map(drop)
    }

    fn read_str(text: &str) -> Result<Table, IoError> {
        read(Cursor::new(text), Path::new("t.csv"), &ReadOptions::default())
    }

    fn read_err(text: &str) -> String {
        read_str(text).unwrap_err().to_string()
    }

    #[test]
    fn reads_without_header() {
        let t = read_str("1,2\n3,4\n").unwrap();
        assert_eq!(t, Table::new(2, 2, vec![1.0, 2.0, 3.0, 4.0]));
    }

    #[test]
    fn reads_with_header_whitespace_quotes_crlf_and_blank_lines() {
        let t = read_str(" x ,\"y, the second\"\r\n\r\n 1.5 ,\"-2\"\r\n\n3e2,  .5\r\n").unwrap();
        assert_eq!(t, Table::new(2, 2, vec![1.5, -2.0, 300.0, 0.5]));
    }

    #[test]
    fn utf8_byte_order_mark_is_ignored() {
        // Otherwise `\u{feff}1` would not parse and the first row would be
        // taken for a header and silently dropped.
        assert_eq!(read_str("\u{feff}1,2\n3,4\n").unwrap(), Table::new(2, 2, vec![1.0, 2.0, 3.0, 4.0]));
        assert_eq!(read_str("\u{feff}x,y\n3,4\n").unwrap(), Table::new(1, 2, vec![3.0, 4.0]));
    }

    #[test]
    fn no_trailing_newline_is_fine() {
        assert_eq!(read_str("1,2").unwrap(), Table::new(1, 2, vec![1.0, 2.0]));
    }

    #[test]
    fn header_is_detected_by_any_non_number() {
        // One non-number field is enough to make the first row a header.
        let t = read_str("x,2\n3,4\n").unwrap();
        assert_eq!(t, Table::new(1, 2, vec![3.0, 4.0]));
    }

    #[test]
    fn nan_and_inf_in_first_row_do_not_make_a_header() {
        let opts = ReadOptions { allow_nonfinite: true };
        let t = read(Cursor::new("nan,inf\n-inf,1\n"), Path::new("t.csv"), &opts).unwrap();
        assert_eq!(t.rows, 2);
        assert!(t.data[0].is_nan());
        assert_eq!(&t.data[1..], &[f64::INFINITY, f64::NEG_INFINITY, 1.0]);
    }

    #[test]
    fn empty_and_header_only_have_no_data_rows() {
        assert_eq!(read_err(""), "t.csv: no data rows (the file is empty)");
        assert_eq!(read_err("\n\n"), "t.csv: no data rows (the file is empty)");
        assert_eq!(read_err("x,y\n"), "t.csv: no data rows (the file has only a header)");
    }

    #[test]
    fn ragged_rows_name_row_and_counts() {
        assert_eq!(read_err("1,2\n3\n"), "t.csv: row 2: has 1 fields, but row 1 has 2");
        assert_eq!(read_err("a,b\n1,2\n1,2,3\n"), "t.csv: row 2 (line 3): has 3 fields, but the header has 2");
        assert_eq!(read_err("a,b,c\n1,2\n"), "t.csv: row 1 (line 2): has 2 fields, but the header has 3");
    }

    #[test]
    fn non_number_names_row_column_and_text() {
        assert_eq!(read_err("1,2\n3,abc\n"), "t.csv: row 2, column 2: `abc` is not a number");
        assert_eq!(read_err("x,y\n1,2\n3,4\n5,abc\n"), "t.csv: row 3 (line 4), column 2: `abc` is not a number");
        assert_eq!(read_err("1,2\n,4\n"), "t.csv: row 2, column 1: empty field, expected a number");
        assert_eq!(read_err("1,2\n1_000,4\n"), "t.csv: row 2, column 1: `1_000` is not a number");
    }

    #[test]
    fn blank_lines_shift_the_line_number() {
        assert_eq!(read_err("1\n\n\nz\n"), "t.csv: row 2 (line 4), column 1: `z` is not a number");
        assert_eq!(read_err("\n\nz,y\n\n1,2\n3,x\n"), "t.csv: row 2 (line 6), column 2: `x` is not a number");
    }

    #[test]
    fn line_numbers_with_crlf_cr_and_multiline_fields() {
        assert_eq!(read_err("1\r\n\r\nz\r\n"), "t.csv: row 2 (line 3), column 1: `z` is not a number");
        assert_eq!(read_err("a,b\r\n1,2\r\n3\r\n"), "t.csv: row 2 (line 3): has 1 fields, but the header has 2");
        // A quoted header spanning two lines; the bad row starts on line 4.
        assert_eq!(read_err("\"a\nb\",c\n1,2\nq,3\n"), "t.csv: row 2 (line 4), column 1: `q` is not a number");
        // A bad row that itself spans lines is reported at its first line.
        assert_eq!(read_err("1\n\"2\n3\"\n"), "t.csv: row 2, column 1: `2\n3` is not a number");
    }

    #[test]
    fn long_and_binary_fields_are_shortened_in_errors() {
        let long = "a".repeat(100);
        let e = read_err(&format!("1\n{long}\n"));
        assert!(e.ends_with(&format!("`{}…` is not a number", "a".repeat(40))), "{e}");
        let e = read(Cursor::new(b"1\n\xff\xfe\n"), Path::new("t.csv"), &ReadOptions::default()).unwrap_err();
        assert_eq!(e.to_string(), "t.csv: row 2, column 1: `\u{fffd}\u{fffd}` is not a number");
    }

    #[test]
    fn nonfinite_rejected_by_default() {
        let e = read_err("1,2\n3,NaN\n");
        assert!(e.starts_with("t.csv: row 2, column 2: NaN is not allowed"), "{e}");
        assert!(e.contains("must be finite"), "{e}");
        let e = read_err("h\n1\n-Infinity\n");
        assert!(e.starts_with("t.csv: row 2 (line 3), column 1: -inf is not allowed"), "{e}");
        let e = read_err("inf\n");
        assert!(e.starts_with("t.csv: row 1, column 1: inf is not allowed"), "{e}");
    }

    #[test]
    fn format_value_picks_the_shorter_round_trip_form() {
        assert_eq!(format_value(0.1), "0.1");
        assert_eq!(format_value(1.0), "1");
        assert_eq!(format_value(100.0), "100");
        assert_eq!(format_value(1000.0), "1e3");
        assert_eq!(format_value(-0.0), "-0");
        assert_eq!(format_value(1e-300), "1e-300");
        assert_eq!(format_value(5e-324), "5e-324");
        assert_eq!(format_value(f64::MAX), "1.7976931348623157e308");
        assert_eq!(format_value(0.000123), "1.23e-4");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::NEG_INFINITY), "-inf");
    }

    #[test]
    fn format_value_round_trips_bits() {
        let mut x = 0x0123_4567_89ab_cdefu64;
        for _ in 0..20_000 {
            // xorshift over all bit patterns, skipping NaNs (their payload is not kept).
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = f64::from_bits(x);
            if v.is_nan() {
                continue;
            }
            let back = parse_number(&format_value(v)).unwrap();
            assert_eq!(back.to_bits(), v.to_bits(), "{v:e}");
        }
    }

    #[test]
    fn write_quotes_header_names_when_needed() {
        let mut out = Vec::new();
        let t = Table::new(1, 2, vec![1.0, 2.5]);
        let header = ["a,b".to_string(), "say \"hi\"".to_string()];
        write(&mut out, &t, Some(&header)).unwrap();
        assert_eq!(String::from_utf8(out.clone()).unwrap(), "\"a,b\",\"say \"\"hi\"\"\"\n1,2.5\n");
        assert_eq!(read(Cursor::new(&out), Path::new("t.csv"), &ReadOptions::default()).unwrap(), t);
    }

    #[test]
    fn garbage_never_panics() {
        let alphabet = b"0123456789.,-+eE \n\r\"\tnaifxyz\xff";
        let mut state = 12345u64;
        for len in 0..200 {
            let mut bytes = Vec::with_capacity(len);
            for _ in 0..len {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                bytes.push(alphabet[(state >> 33) as usize % alphabet.len()]);
            }
            for allow_nonfinite in [false, true] {
                let _ = read(Cursor::new(&bytes), Path::new("t.csv"), &ReadOptions { allow_nonfinite });
            }
        }
    }
}
