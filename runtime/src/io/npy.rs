//! NPY reading and writing, row by row, with a small, strict parser of our own.
//!
//! The reader is hand-written rather than `npyz`'s so that a corrupt header
//! (say, a shape whose product overflows) is an error rather than a panic,
//! and so that sizes are checked against the file before anything is
//! allocated. The format, from NumPy's `numpy.lib.format`:
//!
//! ```text
//! b"\x93NUMPY"  major minor  header_len (u16 LE for 1.0; u32 LE for 2.0 and 3.0)
//! header: a Python dict literal, e.g.
//!     {'descr': '<f8', 'fortran_order': False, 'shape': (3, 2), }
//! padded with spaces and a final '\n'; then the raw data.
//! ```
//! Version 1.0 and 2.0 headers are Latin-1, 3.0 headers UTF-8.
//!
//! The writer does not know the number of rows until the end, so it writes a
//! header with room for a row count of up to 20 digits (any `u64`), and
//! rewrites the shape in place when it is done, as NumPy's own
//! `open_memmap` leaves room for the shape to grow.

use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::error::nonfinite_message;
use super::{IoError, ReadOptions};

const MAGIC: &[u8] = b"\x93NUMPY";
const SUPPORTED_DTYPES: &str = "supported: '<f8' (float64) and '<f4' (float32), little-endian";

/// Values decoded per read of the data: bounds the scratch buffer to 512 KiB.
const VALUES_PER_READ: usize = 1 << 16;

/// Digits reserved for the row count in a written header: enough for any `u64`.
const ROW_DIGITS: usize = 20;

/// Written headers are padded so that the data starts at a multiple of this.
const ALIGN: usize = 64;

/// The element types we read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DType {
    F64,
    F32,
}

impl DType {
    fn size(self) -> usize {
        match self {
            DType::F64 => 8,
            DType::F32 => 4,
        }
    }

    /// Decodes `bytes`, a whole number of little-endian values, appending them to `out`.
    fn decode_all(self, bytes: &[u8], out: &mut Vec<f64>) {
        match self {
            DType::F64 => out.extend(bytes.chunks_exact(8).map(|b| {
                let mut v = [0u8; 8];
                v.copy_from_slice(b);
                f64::from_le_bytes(v)
            })),
            DType::F32 => out.extend(bytes.chunks_exact(4).map(|b| {
                let mut v = [0u8; 4];
                v.copy_from_slice(b);
                f64::from(f32::from_le_bytes(v))
            })),
        }
    }
}

/// The three entries of an NPY header dict.
#[derive(Debug, PartialEq)]
struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<u64>,
}

/// The rows of an NPY array, read a chunk at a time.
///
/// `open` reads and checks the header, and checks the data size against the
/// input length, so a truncated or oversized file is an error before any row
/// is read. Rows are then decoded a chunk at a time from `input` (which the
/// caller buffers), so memory use is one chunk.
///
/// A 2-D array in Fortran (column-major) order cannot be read row by row
/// without seeking all over the file, so `open` reads it whole, into
/// row-major order, and rows are handed out from memory.
pub(super) struct NpyRows<R> {
    input: R,
    path: PathBuf,
    allow_nonfinite: bool,
    dtype: DType,
    rows: usize,
    cols: usize,
    /// Rows handed out so far.
    done: usize,
    /// The whole array in row-major order, for the Fortran-order fallback.
    whole: Option<Vec<f64>>,
    /// Raw bytes of the values being decoded.
    scratch: Vec<u8>,
}

impl<R: Read> NpyRows<R> {
    /// Reads and checks the header. `len` is the length in bytes of the
    /// whole input, header included; `path` is only used in errors.
    pub(super) fn open(mut input: R, len: u64, path: &Path, opts: &ReadOptions) -> Result<Self, IoError> {
        let err = |message: String| IoError::new(path, message);
        let (header_text, header_end) = read_preamble(&mut input, len).map_err(err)?;
        let header = parse_header(&header_text).map_err(err)?;

        let dtype = match header.descr.as_str() {
            "<f8" => DType::F64,
            "<f4" => DType::F32,
            other => return Err(err(format!("unsupported dtype {}; {SUPPORTED_DTYPES}", describe_descr(other)))),
        };
        let (rows, cols) = match header.shape[..] {
            [n] => (n, 1),
            [n, m] => (n, m),
            _ => {
                return Err(err(format!(
                    "unsupported {}-dimensional array of shape {}; supported: 1-D (one column) or 2-D",
                    header.shape.len(),
                    shape_text(&header.shape)
                )))
            }
        };
        if rows == 0 {
            return Err(err(format!("no data rows (shape {})", shape_text(&header.shape))));
        }
        if cols == 0 {
            return Err(err(format!("no columns (shape {})", shape_text(&header.shape))));
        }

        let too_big = || err(format!("array of shape {} is too large", shape_text(&header.shape)));
        let rows = usize::try_from(rows).map_err(|_| too_big())?;
        let cols = usize::try_from(cols).map_err(|_| too_big())?;
        let count = rows.checked_mul(cols).ok_or_else(too_big)?;
        let expected = count.checked_mul(dtype.size()).ok_or_else(too_big)?;
        let available = len - header_end; // read_preamble checked that the header fits
        if available < expected as u64 {
            return Err(err(format!(
                "truncated file: shape {} of {} needs {expected} bytes of data, but only {available} follow the header",
                shape_text(&header.shape),
                header.descr,
            )));
        }
        if available > expected as u64 {
            return Err(err(format!(
                "corrupt file: {} unexpected bytes after the {expected} bytes of data for shape {}",
                available - expected as u64,
                shape_text(&header.shape)
            )));
        }

        let mut reader = NpyRows {
            input,
            path: path.to_path_buf(),
            allow_nonfinite: opts.allow_nonfinite,
            dtype,
            rows,
            cols,
            done: 0,
            whole: None,
            scratch: Vec::new(),
        };
        if header.fortran_order && rows > 1 && cols > 1 {
            reader.whole = Some(reader.read_fortran_order()?);
        }
        Ok(reader)
    }

    /// Number of rows of the array.
    pub(super) fn rows(&self) -> usize {
        self.rows
    }

    /// Number of values in each row.
    pub(super) fn cols(&self) -> usize {
        self.cols
    }

    /// Appends up to `max_rows` rows to `out`; returns how many, 0 at the end.
    pub(super) fn read_rows(&mut self, max_rows: usize, out: &mut Vec<f64>) -> Result<usize, IoError> {
        let n = max_rows.min(self.rows - self.done);
        if n == 0 {
            return Ok(0);
        }
        let start = out.len();
        let (from, to) = (self.done * self.cols, (self.done + n) * self.cols); // at most rows * cols
        match &mut self.whole {
            // Hand over the whole array without copying it when that is what is asked for.
            Some(whole) if from == 0 && to == whole.len() && out.is_empty() => *out = std::mem::take(whole),
            Some(whole) => out.extend_from_slice(&whole[from..to]),
            None => self.read_values(to - from, out)?,
        }
        self.check_finite(&out[start..])?;
        self.done += n;
        Ok(n)
    }

    /// Reads the whole array, stored column by column, into row-major order.
    fn read_fortran_order(&mut self) -> Result<Vec<f64>, IoError> {
        let (rows, cols) = (self.rows, self.cols);
        let count = rows * cols;
        let mut row_major = vec![0.0; count];
        let mut piece = Vec::with_capacity(VALUES_PER_READ.min(count));
        // Element (i, j) is stored at k = j * rows + i.
        let mut k = 0;
        while k < count {
            piece.clear();
            self.read_values((count - k).min(VALUES_PER_READ), &mut piece)?;
            for &value in &piece {
                row_major[(k % rows) * cols + k / rows] = value;
                k += 1;
            }
        }
        Ok(row_major)
    }

    /// Reads the next `count` stored values, appending them to `out`.
    fn read_values(&mut self, count: usize, out: &mut Vec<f64>) -> Result<(), IoError> {
        out.reserve(count); // no more than the file holds: `open` checked its size
        let size = self.dtype.size();
        let mut left = count;
        while left > 0 {
            let piece = left.min(VALUES_PER_READ);
            self.scratch.resize(piece * size, 0);
            self.input.read_exact(&mut self.scratch).map_err(|e| IoError::new(&self.path, format!("cannot read: {e}")))?;
            self.dtype.decode_all(&self.scratch, out);
            left -= piece;
        }
        Ok(())
    }

    /// Rejects the first non-finite value of `values`, the rows from `self.done` on,
    /// unless allowed.
    fn check_finite(&self, values: &[f64]) -> Result<(), IoError> {
        if self.allow_nonfinite {
            return Ok(());
        }
        match values.iter().position(|v| !v.is_finite()) {
            None => Ok(()),
            Some(k) => Err(IoError::new(&self.path, nonfinite_message(values[k]))
                .at_row(self.done + k / self.cols + 1)
                .at_column(k % self.cols + 1)),
        }
    }
}

/// Reads the preamble and the header of an input of `len` bytes, checking
/// them against `len`; returns the header text and where the data starts.
fn read_preamble(input: &mut impl Read, len: u64) -> Result<(String, u64), String> {
    let io_error = |e: io::Error| format!("cannot read: {e}");
    let mut start = [0u8; 8];
    let got = start.len().min(usize::try_from(len).unwrap_or(usize::MAX));
    input.read_exact(&mut start[..got]).map_err(io_error)?;
    let bytes = &start[..got];
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err("not an NPY file: it does not start with \\x93NUMPY".to_string());
    }
    let truncated = || "truncated file: it ends inside the NPY preamble".to_string();
    let (major, minor) = match bytes.get(6..8) {
        Some(&[major, minor]) => (major, minor),
        _ => return Err(truncated()),
    };
    let (len_size, utf8) = match (major, minor) {
        (1, 0) => (2, false),
        (2, 0) => (4, false),
        (3, 0) => (4, true),
        _ => return Err(format!("unsupported NPY format version {major}.{minor}; supported: 1.0, 2.0, 3.0")),
    };
    let header_start = 8 + len_size as u64;
    if len < header_start {
        return Err(truncated());
    }
    let mut len_bytes = [0u8; 4];
    input.read_exact(&mut len_bytes[..len_size]).map_err(io_error)?;
    let header_len = u64::from(u32::from_le_bytes(len_bytes)); // the unused high bytes are 0
    let after_preamble = len - header_start;
    if header_len > after_preamble {
        return Err(format!(
            "truncated file: the header should be {header_len} bytes, but the file has only {after_preamble} after the preamble"
        ));
    }
    // At most `len` bytes, which the caller has (or holds in memory already).
    let mut header_bytes = vec![0u8; header_len as usize];
    input.read_exact(&mut header_bytes).map_err(io_error)?;
    let text = if utf8 {
        String::from_utf8(header_bytes).map_err(|_| "corrupt header: not valid UTF-8".to_string())?
    } else {
        header_bytes.iter().map(|&b| char::from(b)).collect() // Latin-1
    };
    Ok((text, header_start + header_len))
}

/// Parses the header dict. Strict: exactly the keys `descr`, `fortran_order`
/// and `shape` (as NumPy requires), no nesting beyond what they need.
fn parse_header(text: &str) -> Result<Header, String> {
    let corrupt = |what: &str| format!("corrupt header: {what} in {}", quoted_header(text));
    let mut p = Parser { text, pos: 0 };
    let mut descr = None;
    let mut fortran_order = None;
    let mut shape = None;

    p.expect(b'{').map_err(|()| corrupt("expected `{`"))?;
    loop {
        if p.eat(b'}') {
            break;
        }
        let key = p.string().map_err(|()| corrupt("expected a quoted key or `}`"))?;
        p.expect(b':').map_err(|()| corrupt("expected `:`"))?;
        let duplicate = match key {
            "descr" => descr.replace(p.value().map_err(|()| corrupt("bad value for 'descr'"))?),
            "fortran_order" => fortran_order.replace(p.value().map_err(|()| corrupt("bad value for 'fortran_order'"))?),
            "shape" => shape.replace(p.value().map_err(|()| corrupt("bad value for 'shape'"))?),
            other => {
                return Err(format!(
                    "unexpected key '{other}' in the header; an NPY header has exactly 'descr', 'fortran_order' and 'shape'"
                ))
            }
        };
        if duplicate.is_some() {
            return Err(corrupt(&format!("key '{key}' appears twice")));
        }
        if !p.eat(b',') {
            p.expect(b'}').map_err(|()| corrupt("expected `,` or `}`"))?;
            break;
        }
    }
    p.skip_space();
    if p.pos != text.len() {
        return Err(corrupt("unexpected text after `}`"));
    }

    let missing = |key: &str| format!("corrupt header: no '{key}' in {}", quoted_header(text));
    let descr = match descr.ok_or_else(|| missing("descr"))? {
        Value::Str(s) => s.to_string(),
        Value::Other(kind) => return Err(format!("unsupported dtype: 'descr' is {kind} (a structured dtype); {SUPPORTED_DTYPES}")),
        _ => return Err(corrupt("'descr' is not a string")),
    };
    let fortran_order = match fortran_order.ok_or_else(|| missing("fortran_order"))? {
        Value::Bool(b) => b,
        _ => return Err(corrupt("'fortran_order' is not True or False")),
    };
    let shape = match shape.ok_or_else(|| missing("shape"))? {
        Value::Ints(dims) => dims,
        _ => return Err(corrupt("'shape' is not a tuple of integers")),
    };
    Ok(Header { descr, fortran_order, shape })
}

/// A value in the header dict.
#[derive(Debug, PartialEq)]
enum Value<'a> {
    Str(&'a str),
    Bool(bool),
    Ints(Vec<u64>),
    /// Anything else we can skip over, e.g. "a list".
    Other(&'static str),
}

/// A cursor over the header text. Every method works on ASCII bytes and
/// only slices at ASCII positions, so slicing never splits a character.
struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    /// Skips whitespace, then consumes `byte` if it is next.
    fn eat(&mut self, byte: u8) -> bool {
        self.skip_space();
        if self.peek() == Some(byte) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), ()> {
        if self.eat(byte) {
            Ok(())
        } else {
            Err(())
        }
    }

    /// A quoted string; its raw contents (escapes are kept as written).
    fn string(&mut self) -> Result<&'a str, ()> {
        self.skip_space();
        let quote = match self.peek() {
            Some(q @ (b'\'' | b'"')) => q,
            _ => return Err(()),
        };
        let start = self.pos + 1;
        let mut i = start;
        loop {
            match self.text.as_bytes().get(i) {
                None => return Err(()),
                Some(b'\\') => i += 2,
                Some(&b) if b == quote => break,
                Some(_) => i += 1,
            }
        }
        self.pos = i + 1;
        self.text.get(start..i).ok_or(())
    }

    fn value(&mut self) -> Result<Value<'a>, ()> {
        self.skip_space();
        match self.peek().ok_or(())? {
            b'\'' | b'"' => Ok(Value::Str(self.string()?)),
            b'(' => {
                self.pos += 1;
                Ok(Value::Ints(self.int_tuple()?))
            }
            b'[' => {
                self.skip_bracketed()?;
                Ok(Value::Other("a list"))
            }
            b'{' => {
                self.skip_bracketed()?;
                Ok(Value::Other("a dict"))
            }
            _ => {
                let word = self.word();
                match word {
                    "True" => Ok(Value::Bool(true)),
                    "False" => Ok(Value::Bool(false)),
                    _ => Err(()),
                }
            }
        }
    }

    /// A run of ASCII letters, digits and underscores.
    fn word(&mut self) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_') {
            self.pos += 1;
        }
        self.text.get(start..self.pos).unwrap_or("")
    }

    /// The rest of a tuple of non-negative integers, after its `(`:
    /// `)`, `3,)`, `3, 2)` or `3, 2,)`. Python 2's `3L` is accepted.
    fn int_tuple(&mut self) -> Result<Vec<u64>, ()> {
        let mut items = Vec::new();
        loop {
            if self.eat(b')') {
                return Ok(items);
            }
            self.skip_space();
            let word = self.word();
            let digits = word.strip_suffix(['L', 'l']).unwrap_or(word);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(());
            }
            items.push(digits.parse::<u64>().map_err(|_| ())?);
            if !self.eat(b',') {
                self.expect(b')')?;
                return Ok(items);
            }
        }
    }

    /// Skips a bracketed value, however nested, honoring quoted strings.
    fn skip_bracketed(&mut self) -> Result<(), ()> {
        let mut depth = 0usize;
        loop {
            match self.peek().ok_or(())? {
                b'[' | b'(' | b'{' => {
                    depth += 1;
                    self.pos += 1;
                }
                b']' | b')' | b'}' => {
                    depth -= 1; // >= 1 here: we start on an opening bracket
                    self.pos += 1;
                    if depth == 0 {
                        return Ok(());
                    }
                }
                b'\'' | b'"' => {
                    self.string()?;
                }
                _ => self.pos += 1,
            }
        }
    }
}

/// `(3, 2)`, `(3,)` or `()`, as Python writes a shape.
fn shape_text(shape: &[u64]) -> String {
    match shape {
        [n] => format!("({n},)"),
        _ => {
            let dims: Vec<String> = shape.iter().map(u64::to_string).collect();
            format!("({})", dims.join(", "))
        }
    }
}

/// `'<i8' (int64)`: the descr, with a plain name when it is a simple one.
fn describe_descr(descr: &str) -> String {
    let (big_endian, rest) = match descr.as_bytes().first() {
        Some(b'>') => (true, &descr[1..]),
        Some(b'<' | b'|' | b'=') => (false, &descr[1..]),
        _ => (false, descr),
    };
    let mut chars = rest.chars();
    let kind = chars.next();
    // Item size in bytes, when it is a plausible one.
    let size: Option<u32> = chars.as_str().parse().ok().filter(|&n| (1..=64).contains(&n));
    let name = match (kind, size) {
        (Some('f'), Some(n)) => format!("float{}", n * 8),
        (Some('i'), Some(n)) => format!("int{}", n * 8),
        (Some('u'), Some(n)) => format!("uint{}", n * 8),
        (Some('c'), Some(n)) => format!("complex{}", n * 8),
        (Some('b'), Some(1)) => "bool".to_string(),
        (Some('U'), _) => "unicode string".to_string(),
        (Some('S'), _) => "byte string".to_string(),
        (Some('O'), _) => "Python object".to_string(),
        (Some('M'), _) => "datetime".to_string(),
        (Some('m'), _) => "timedelta".to_string(),
        _ => return format!("'{descr}'"),
    };
    let order = if big_endian { "big-endian " } else { "" };
    format!("'{descr}' ({order}{name})")
}

/// The header for an error message, trimmed and shortened.
fn quoted_header(text: &str) -> String {
    let text = text.trim();
    let shown: String = text.chars().take(120).collect();
    if shown.len() < text.len() {
        format!("`{shown}…`")
    } else {
        format!("`{shown}`")
    }
}

/// Writes a 2-D little-endian float64 array in C order, row by row.
///
/// The header is written first with a row count of 0 and room for any row
/// count; `finish` seeks back and writes the real one.
pub(super) struct NpyWriter<W: Write + Seek> {
    out: BufWriter<W>,
    /// Where the header starts in `out`.
    start: u64,
    cols: usize,
    rows: u64,
}

impl<W: Write + Seek> NpyWriter<W> {
    /// Starts the array at the current position of `out` (normally its start).
    /// `cols` must not be 0.
    pub(super) fn new(mut out: W, cols: usize) -> io::Result<Self> {
        let start = out.stream_position()?;
        let mut out = BufWriter::with_capacity(1 << 16, out);
        out.write_all(&header_bytes(0, cols))?;
        Ok(NpyWriter { out, start, cols, rows: 0 })
    }

    /// Writes the rows in `data`, whose length is a multiple of `cols`.
    pub(super) fn write_rows(&mut self, data: &[f64]) -> io::Result<()> {
        let mut bytes = [0u8; 8 * 512];
        for values in data.chunks(512) {
            for (value, slot) in values.iter().zip(bytes.chunks_exact_mut(8)) {
                slot.copy_from_slice(&value.to_le_bytes());
            }
            self.out.write_all(&bytes[..8 * values.len()])?;
        }
        self.rows += (data.len() / self.cols) as u64;
        Ok(())
    }

    /// Writes the final shape into the header and gives back the output,
    /// positioned just after the header.
    pub(super) fn finish(self) -> io::Result<W> {
        let mut out = self.out.into_inner().map_err(|e| e.into_error())?;
        out.seek(SeekFrom::Start(self.start))?;
        out.write_all(&header_bytes(self.rows, self.cols))?;
        Ok(out)
    }
}

/// The preamble and header of a version 1.0 file holding a `rows × cols`
/// float64 array in C order. Its length depends on `cols` only: the dict is
/// padded with spaces so that a row count of up to [`ROW_DIGITS`] digits
/// fits, and so that the data starts at a multiple of [`ALIGN`] bytes.
fn header_bytes(rows: u64, cols: usize) -> Vec<u8> {
    let dict = |rows: &str| format!("{{'descr': '<f8', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    let preamble = MAGIC.len() + 2 + 2;
    // Room for the longest row count and the final newline.
    let total = (preamble + dict("").len() + ROW_DIGITS + 1).next_multiple_of(ALIGN);
    let header_len = total - preamble; // < 200: `cols` has at most 20 digits
    let mut bytes = Vec::with_capacity(total);
    bytes.extend_from_slice(MAGIC);
    bytes.extend([1, 0]);
    bytes.extend((header_len as u16).to_le_bytes());
    bytes.extend(dict(&rows.to_string()).bytes());
    bytes.resize(total - 1, b' ');
    bytes.push(b'\n');
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::Table;
    use std::io::Cursor;

    /// Reads a whole NPY file held in memory, as `read_table` does.
    fn parse(bytes: &[u8], path: &Path, opts: &ReadOptions) -> Result<Table, IoError> {
        let mut rows = NpyRows::open(bytes, bytes.len() as u64, path, opts)?;
        let mut data = Vec::new();
        let n = rows.read_rows(usize::MAX, &mut data)?;
        assert_eq!(n, rows.rows());
        assert_eq!(rows.read_rows(usize::MAX, &mut data)?, 0);
        Ok(Table::new(n, rows.cols(), data))
    }

    /// Writes a whole table, as `write_table` does.
    fn write(out: &mut Vec<u8>, table: &Table) -> io::Result<()> {
        let mut writer = NpyWriter::new(Cursor::new(std::mem::take(out)), table.cols)?;
        writer.write_rows(&table.data)?;
        *out = writer.finish()?.into_inner();
        Ok(())
    }

    /// A version 1.0 file: `dict` padded so that the data starts at byte 64.
    fn npy_bytes(dict: &str, data: &[u8]) -> Vec<u8> {
        let mut header = dict.as_bytes().to_vec();
        while !(10 + header.len() + 1).is_multiple_of(64) {
            header.push(b' ');
        }
        header.push(b'\n');
        let mut bytes = MAGIC.to_vec();
        bytes.extend([1, 0]);
        bytes.extend((header.len() as u16).to_le_bytes());
        bytes.extend(header);
        bytes.extend(data);
        bytes
    }

    fn f64_bytes(values: &[f64]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    fn parse_ok(bytes: &[u8]) -> Table {
        parse(bytes, Path::new("t.npy"), &ReadOptions::default()).unwrap()
    }

    fn parse_err(bytes: &[u8]) -> String {
        parse(bytes, Path::new("t.npy"), &ReadOptions::default()).unwrap_err().to_string()
    }

    #[test]
    fn header_parsing() {
        let h = parse_header("{'descr': '<f8', 'fortran_order': False, 'shape': (3, 2), }    \n").unwrap();
        assert_eq!(h, Header { descr: "<f8".into(), fortran_order: false, shape: vec![3, 2] });
        let h = parse_header("{\"shape\":(7,),\"fortran_order\":True,\"descr\":\"<f4\"}").unwrap();
        assert_eq!(h, Header { descr: "<f4".into(), fortran_order: true, shape: vec![7] });
        let h = parse_header("{'descr': '<f8', 'fortran_order': False, 'shape': (3L, 2L), }").unwrap();
        assert_eq!(h.shape, [3, 2]);
        let h = parse_header("{'descr': '<f8', 'fortran_order': False, 'shape': (), }").unwrap();
        assert!(h.shape.is_empty());
    }

    #[test]
    fn header_errors() {
        let cases = [
            ("", "expected `{`"),
            ("{", "expected a quoted key"),
            ("{'descr'", "expected `:`"),
            ("{'descr': '<f8' 'x'", "expected `,` or `}`"),
            ("{'descr': '<f8'} junk", "unexpected text after `}`"),
            ("{'descr': '<f8', 'descr': '<f8'}", "key 'descr' appears twice"),
            ("{'descr': '<f8', 'fortran_order': False}", "no 'shape'"),
            ("{'descr': '<f8', 'fortran_order': 0, 'shape': (1,)}", "bad value for 'fortran_order'"),
            ("{'descr': '<f8', 'fortran_order': None, 'shape': (1,)}", "bad value for 'fortran_order'"),
            ("{'descr': '<f8', 'fortran_order': False, 'shape': [1]}", "'shape' is not a tuple"),
            ("{'descr': '<f8', 'fortran_order': False, 'shape': (-1,)}", "bad value for 'shape'"),
            ("{'descr': '<f8', 'fortran_order': False, 'shape': (1 2)}", "bad value for 'shape'"),
            ("{'descr': '<f8', 'fortran_order': False, 'shape': (99999999999999999999,)}", "bad value for 'shape'"),
            ("{'descr': True, 'fortran_order': False, 'shape': (1,)}", "'descr' is not a string"),
            ("{'descr': '<f8", "bad value for 'descr'"),
            ("{'descr': [('a', '<f8')", "bad value for 'descr'"),
            ("{'foo': 1}", "unexpected key 'foo'"),
        ];
        for (text, want) in cases {
            let got = parse_header(text).unwrap_err();
            assert!(got.contains(want), "{text:?}: got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn structured_dtype_is_reported_as_such() {
        let e = parse_header("{'descr': [('x', '<f8'), ('y', '<f8')], 'fortran_order': False, 'shape': (2,), }").unwrap_err();
        assert!(e.contains("'descr' is a list (a structured dtype)"), "{e}");
        assert!(e.contains("supported: '<f8' (float64) and '<f4' (float32)"), "{e}");
    }

    #[test]
    fn dtype_descriptions() {
        assert_eq!(describe_descr("<i8"), "'<i8' (int64)");
        assert_eq!(describe_descr(">f8"), "'>f8' (big-endian float64)");
        assert_eq!(describe_descr("<f2"), "'<f2' (float16)");
        assert_eq!(describe_descr("|b1"), "'|b1' (bool)");
        assert_eq!(describe_descr("<U5"), "'<U5' (unicode string)");
        assert_eq!(describe_descr("|O"), "'|O' (Python object)");
        assert_eq!(describe_descr("<c16"), "'<c16' (complex128)");
        assert_eq!(describe_descr("<f99999999999"), "'<f99999999999'");
        assert_eq!(describe_descr("<f999999999"), "'<f999999999'");
        assert_eq!(describe_descr(""), "''");
        assert_eq!(describe_descr("é"), "'é'");
    }

    #[test]
    fn reads_1d_as_one_column() {
        let bytes = npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }", &f64_bytes(&[1.0, 2.0, 3.0]));
        assert_eq!(parse_ok(&bytes), Table::new(3, 1, vec![1.0, 2.0, 3.0]));
    }

    #[test]
    fn reads_versions_2_and_3() {
        for major in [2u8, 3] {
            let dict = b"{'descr': '<f8', 'fortran_order': False, 'shape': (1, 1), }\n";
            let mut bytes = MAGIC.to_vec();
            bytes.extend([major, 0]);
            bytes.extend((dict.len() as u32).to_le_bytes());
            bytes.extend(dict);
            bytes.extend(2.5f64.to_le_bytes());
            assert_eq!(parse_ok(&bytes), Table::new(1, 1, vec![2.5]));
        }
    }

    #[test]
    fn preamble_errors() {
        assert!(parse_err(b"").contains("not an NPY file"));
        assert!(parse_err(b"\x93NUMP").contains("not an NPY file"));
        assert!(parse_err(b"PK\x03\x04 an npz perhaps").contains("not an NPY file"));
        assert!(parse_err(b"\x93NUMPY").contains("ends inside the NPY preamble"));
        assert!(parse_err(b"\x93NUMPY\x01\x00\x10").contains("ends inside the NPY preamble"));
        assert!(parse_err(b"\x93NUMPY\x04\x00\x10\x00").contains("unsupported NPY format version 4.0"));
        assert!(parse_err(b"\x93NUMPY\x01\x00\x10\x00{}").contains("header should be 16 bytes, but the file has only 2"));
        assert!(parse_err(b"\x93NUMPY\x03\x00\x02\x00\x00\x00\xff\xff").contains("not valid UTF-8"));
    }

    #[test]
    fn huge_shapes_are_errors_not_panics_or_allocations() {
        for shape in ["(18446744073709551615, 18446744073709551615)", "(4294967296, 4294967296)", "(2305843009213693952, 1)"] {
            let dict = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {shape}, }}");
            let e = parse_err(&npy_bytes(&dict, &[0; 16]));
            assert!(e.contains("too large") || e.contains("truncated"), "{shape}: {e}");
        }
    }

    #[test]
    fn every_truncation_and_byte_flip_is_handled() {
        let data = f64_bytes(&[1.0, -2.0, 3.5, 4.25, 0.0, -0.0]);
        let good = npy_bytes("{'descr': '<f8', 'fortran_order': True, 'shape': (3, 2), }", &data);
        let want = parse_ok(&good);
        assert_eq!(want, Table::new(3, 2, vec![1.0, 4.25, -2.0, 0.0, 3.5, -0.0]));
        for len in 0..good.len() {
            assert!(parse(&good[..len], Path::new("t.npy"), &ReadOptions::default()).is_err(), "len {len}");
        }
        for i in 0..good.len() {
            for flip in [0x01u8, 0x20, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[i] ^= flip;
                for allow_nonfinite in [false, true] {
                    let _ = parse(&bad, Path::new("t.npy"), &ReadOptions { allow_nonfinite });
                }
            }
        }
    }

    #[test]
    fn write_then_parse() {
        let t = Table::new(2, 3, vec![0.1, -0.0, 5e-324, f64::MAX, 1e-300, -7.0]);
        let mut out = Vec::new();
        write(&mut out, &t).unwrap();
        let back = parse_ok(&out);
        assert_eq!(back.rows, 2);
        assert_eq!(back.cols, 3);
        let bits = |t: &Table| t.data.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back), bits(&t));
    }

    #[test]
    fn written_header_has_a_fixed_aligned_length_and_parses() {
        for cols in [1usize, 16, 12345, usize::MAX] {
            let len = header_bytes(0, cols).len();
            assert!(len.is_multiple_of(ALIGN), "{cols}: {len}");
            for rows in [0u64, 1, 1 << 24, u64::MAX] {
                let bytes = header_bytes(rows, cols);
                assert_eq!(bytes.len(), len, "{rows} × {cols}");
                let (text, end) = read_preamble(&mut &bytes[..], bytes.len() as u64).unwrap();
                assert_eq!(end, len as u64);
                assert!(text.ends_with(" \n"), "{text:?}");
                let h = parse_header(&text).unwrap();
                assert_eq!(h, Header { descr: "<f8".into(), fortran_order: false, shape: vec![rows, cols as u64] });
            }
        }
        // What NumPy writes for a small array, padded further.
        let bytes = header_bytes(3, 2);
        assert_eq!(bytes.len(), 128);
        assert!(bytes.starts_with(b"\x93NUMPY\x01\x00\x76\x00{'descr': '<f8', 'fortran_order': False, 'shape': (3, 2), }   "));
    }

    #[test]
    fn chunks_report_rows_counted_from_the_start() {
        let mut values = vec![0.5; 10 * 3];
        values[7 * 3 + 2] = f64::INFINITY; // row 8, column 3
        for fortran in [false, true] {
            let stored = if fortran { (0..30).map(|k| values[(k % 10) * 3 + k / 10]).collect() } else { values.clone() };
            let dict = format!("{{'descr': '<f8', 'fortran_order': {}, 'shape': (10, 3), }}", if fortran { "True" } else { "False" });
            let bytes = npy_bytes(&dict, &f64_bytes(&stored));
            let mut rows = NpyRows::open(&bytes[..], bytes.len() as u64, Path::new("t.npy"), &ReadOptions::default()).unwrap();
            let mut out = Vec::new();
            assert_eq!(rows.read_rows(4, &mut out).unwrap(), 4);
            assert_eq!(rows.read_rows(3, &mut out).unwrap(), 3);
            assert_eq!(out, vec![0.5; 21]);
            let e = rows.read_rows(3, &mut out).unwrap_err();
            assert_eq!(e.to_string(), format!("t.npy: row 8, column 3: {}", nonfinite_message(f64::INFINITY)));
        }
    }

    #[test]
    fn fortran_order_is_reordered_in_pieces() {
        // More values than one read, in a shape where rows and columns differ.
        let (rows, cols) = (VALUES_PER_READ / 3 + 7, 5);
        let stored: Vec<f64> = (0..rows * cols).map(|k| k as f64).collect();
        let dict = format!("{{'descr': '<f8', 'fortran_order': True, 'shape': ({rows}, {cols}), }}");
        let t = parse_ok(&npy_bytes(&dict, &f64_bytes(&stored)));
        for i in [0, 1, rows / 2, rows - 1] {
            for j in 0..cols {
                assert_eq!(t.row(i)[j], (j * rows + i) as f64);
            }
        }
    }
}
