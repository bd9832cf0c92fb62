//! NPY reading (a small, strict parser of our own) and writing (via `npyz`).
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

use std::io::{self, Write};
use std::path::Path;

use npyz::WriterBuilder;

use super::error::nonfinite_message;
use super::{IoError, ReadOptions, Table};

const MAGIC: &[u8] = b"\x93NUMPY";
const SUPPORTED_DTYPES: &str = "supported: '<f8' (float64) and '<f4' (float32), little-endian";

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

    fn decode(self, bytes: &[u8]) -> f64 {
        match self {
            DType::F64 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(bytes);
                f64::from_le_bytes(b)
            }
            DType::F32 => {
                let mut b = [0u8; 4];
                b.copy_from_slice(bytes);
                f64::from(f32::from_le_bytes(b))
            }
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

/// Parses a whole `.npy` file held in memory; `path` is only used in errors.
pub(super) fn parse(bytes: &[u8], path: &Path, opts: &ReadOptions) -> Result<Table, IoError> {
    let err = |message: String| IoError::new(path, message);
    let (header_text, data) = split_header(bytes).map_err(err)?;
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
    if data.len() < expected {
        return Err(err(format!(
            "truncated file: shape {} of {} needs {expected} bytes of data, but only {} follow the header",
            shape_text(&header.shape),
            header.descr,
            data.len()
        )));
    }
    if data.len() > expected {
        return Err(err(format!(
            "corrupt file: {} unexpected bytes after the {expected} bytes of data for shape {}",
            data.len() - expected,
            shape_text(&header.shape)
        )));
    }

    let stored: Vec<f64> = data.chunks_exact(dtype.size()).map(|b| dtype.decode(b)).collect();
    let values = if header.fortran_order && rows > 1 && cols > 1 {
        // Column-major: element (i, j) is stored at j * rows + i.
        let mut row_major = Vec::with_capacity(count);
        for i in 0..rows {
            row_major.extend((0..cols).map(|j| stored[j * rows + i]));
        }
        row_major
    } else {
        stored
    };

    if !opts.allow_nonfinite {
        if let Some(k) = values.iter().position(|v| !v.is_finite()) {
            return Err(IoError::new(path, nonfinite_message(values[k])).at_row(k / cols + 1).at_column(k % cols + 1));
        }
    }
    Ok(Table { rows, cols, data: values })
}

/// Splits a file into its header text and its data, checking the preamble.
fn split_header(bytes: &[u8]) -> Result<(String, &[u8]), String> {
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
    let len_bytes = bytes.get(8..8 + len_size).ok_or_else(truncated)?;
    let header_len = len_bytes.iter().rev().fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
    let start = 8 + len_size;
    let header_bytes = start.checked_add(header_len).and_then(|end| bytes.get(start..end)).ok_or_else(|| {
        format!("truncated file: the header should be {header_len} bytes, but the file has only {} after the preamble", bytes.len() - start)
    })?;
    let text = if utf8 {
        std::str::from_utf8(header_bytes).map_err(|_| "corrupt header: not valid UTF-8".to_string())?.to_string()
    } else {
        header_bytes.iter().map(|&b| char::from(b)).collect() // Latin-1
    };
    Ok((text, &bytes[start + header_len..]))
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

/// Writes `table` as a 2-D little-endian float64 array in C order.
pub(super) fn write(out: &mut dyn Write, table: &Table) -> io::Result<()> {
    let shape = [table.rows as u64, table.cols as u64];
    let mut writer = npyz::WriteOptions::<f64>::new().default_dtype().shape(&shape).writer(out).begin_nd()?;
    writer.extend(table.data.iter().copied())?;
    writer.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
