//! Streaming I/O: `RowReader` and `RowWriter` against `read_table` and `write_table`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use npyz::WriterBuilder;
use runtime::io::{read_table, write_table, IoError, ReadOptions, RowReader, RowWriter, Table};

const CHUNK_SIZES: [usize; 3] = [1, 3, 1000];

fn bits(values: &[f64]) -> Vec<u64> {
    values.iter().map(|v| v.to_bits()).collect()
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

fn file(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, bytes).unwrap();
    path
}

/// 10 rows × 3 columns of values that are easy to get wrong.
fn tricky() -> Table {
    let mut data = vec![1e-300, -0.0, 5e-324, 1.7976931348623157e308, 0.1, -2.5];
    data.extend((0..24).map(|k| (k as f64 - 11.5) * 0.37));
    Table::new(10, 3, data)
}

/// An NPY 1.0 file made by hand, with the header padded to 64 bytes.
fn npy_v1(dict: &str, data: &[u8]) -> Vec<u8> {
    let mut header = dict.as_bytes().to_vec();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(b' ');
    }
    header.push(b'\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend(u16::try_from(header.len()).unwrap().to_le_bytes());
    bytes.extend(&header);
    bytes.extend(data);
    bytes
}

fn le_f64(values: &[f64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn le_f32(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Reads `path` in chunks of `chunk` rows, checking the size of every chunk;
/// returns the concatenated rows.
fn read_chunked(path: &Path, chunk: usize, opts: &ReadOptions) -> Result<Table, IoError> {
    let mut reader = RowReader::open(path, opts)?;
    let cols = reader.cols();
    let hint = reader.rows_hint();
    let mut buf = vec![42.0; 7]; // cleared by next_chunk
    let mut data = Vec::new();
    let mut rows = 0;
    loop {
        let n = reader.next_chunk(chunk, &mut buf)?;
        assert_eq!(buf.len(), n * cols);
        if n == 0 {
            break;
        }
        assert!(n <= chunk);
        rows += n;
        data.extend_from_slice(&buf);
        if let Some(total) = hint {
            assert_eq!(n, chunk.min(total - (rows - n)), "chunks are full but for the last");
        }
    }
    // The end is sticky.
    assert_eq!(reader.next_chunk(chunk, &mut buf)?, 0);
    assert!(buf.is_empty());
    if let Some(total) = hint {
        assert_eq!(rows, total);
    }
    Ok(Table::new(rows, cols, data))
}

/// Chunked reading gives exactly what `read_table` gives, at every chunk size.
fn assert_chunked_equals_whole(path: &Path, opts: &ReadOptions) -> Table {
    let whole = read_table(path, opts).unwrap();
    for chunk in CHUNK_SIZES {
        let streamed = read_chunked(path, chunk, opts).unwrap();
        assert_eq!((streamed.rows, streamed.cols), (whole.rows, whole.cols), "{} chunk {chunk}", path.display());
        assert_eq!(bits(&streamed.data), bits(&whole.data), "{} chunk {chunk}", path.display());
    }
    whole
}

/// The error from chunked reading is exactly the error of `read_table`, and
/// the rows before the bad one are delivered first.
fn assert_same_error(path: &Path, chunk: usize, opts: &ReadOptions) -> IoError {
    let want = read_table(path, opts).unwrap_err();
    let mut reader = match RowReader::open(path, opts) {
        Ok(reader) => reader,
        Err(e) => {
            assert_eq!(e, want);
            return e;
        }
    };
    let mut buf = Vec::new();
    let mut rows = 0;
    let got = loop {
        match reader.next_chunk(chunk, &mut buf) {
            Ok(0) => panic!("{}: no error in chunks of {chunk}; want {want}", path.display()),
            Ok(n) => rows += n,
            Err(e) => break e,
        }
    };
    assert_eq!(got, want, "chunk {chunk}");
    assert!(buf.is_empty(), "the buffer is left empty on an error");
    if let Some(bad_row) = got.row {
        // Every full chunk before the one holding the bad row was delivered.
        assert_eq!(rows, (bad_row - 1) / chunk * chunk, "chunk {chunk}");
    }
    // Errors are sticky.
    assert_eq!(reader.next_chunk(chunk, &mut buf).unwrap_err(), want);
    got
}

// ---------------------------------------------------------------- reading

#[test]
fn csv_chunks_equal_read_table_with_and_without_header() {
    let dir = tempfile::tempdir().unwrap();
    let t = tricky();
    let plain = dir.path().join("plain.csv");
    write_table(&plain, &t, None).unwrap();
    let named = dir.path().join("named.csv");
    write_table(&named, &t, Some(&["a".into(), "b, c".into(), "d".into()])).unwrap();
    for path in [&plain, &named] {
        let back = assert_chunked_equals_whole(path, &ReadOptions::default());
        assert_eq!(bits(&back.data), bits(&t.data));
        assert_eq!(RowReader::open(path, &ReadOptions::default()).unwrap().rows_hint(), None);
    }

    // Hand-written: CRLF, blank lines, whitespace, quotes, a byte order mark.
    let messy = file(dir.path(), "messy.csv", "\u{feff} x ,\"y\"\r\n\r\n1, 2\r\n\n\"3\",4e1\r\n 5 ,-6\r\n\r\n");
    let back = assert_chunked_equals_whole(&messy, &ReadOptions::default());
    assert_eq!(back, Table::new(3, 2, vec![1.0, 2.0, 3.0, 40.0, 5.0, -6.0]));
    let one = file(dir.path(), "one.csv", "7");
    assert_eq!(assert_chunked_equals_whole(&one, &ReadOptions::default()), Table::new(1, 1, vec![7.0]));
}

#[test]
fn csv_nonfinite_values_stream_when_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(dir.path(), "nf.csv", "1,nan\ninf,2\n3,-infinity\n");
    let opts = ReadOptions { allow_nonfinite: true };
    let t = assert_chunked_equals_whole(&path, &opts);
    assert!(t.data[1].is_nan());
    assert_eq!(&t.data[2..], &[f64::INFINITY, 2.0, 3.0, f64::NEG_INFINITY]);
}

#[test]
fn npy_chunks_equal_read_table_f64_f32_c_and_fortran_order() {
    let dir = tempfile::tempdir().unwrap();
    let t = tricky();
    let f64_c = dir.path().join("f64_c.npy");
    write_table(&f64_c, &t, None).unwrap();

    let f32_values: Vec<f32> = (0..30).map(|k| (k as f32 - 14.5) * 0.1).collect();
    let f32_c = file(dir.path(), "f32_c.npy", npy_v1("{'descr': '<f4', 'fortran_order': False, 'shape': (10, 3), }", &le_f32(&f32_values)));

    // Column-major storage of `t`.
    let column_major: Vec<f64> = (0..30).map(|k| t.data[(k % 10) * 3 + k / 10]).collect();
    let f64_f =
        file(dir.path(), "f64_f.npy", npy_v1("{'descr': '<f8', 'fortran_order': True, 'shape': (10, 3), }", &le_f64(&column_major)));
    let column_major_f32: Vec<f32> = (0..30).map(|k| f32_values[(k % 10) * 3 + k / 10]).collect();
    let f32_f =
        file(dir.path(), "f32_f.npy", npy_v1("{'descr': '<f4', 'fortran_order': True, 'shape': (10, 3), }", &le_f32(&column_major_f32)));

    let one_d = file(dir.path(), "one_d.npy", npy_v1("{'descr': '<f8', 'fortran_order': False, 'shape': (7,), }", &le_f64(&t.data[..7])));
    let one_col_f =
        file(dir.path(), "one_col_f.npy", npy_v1("{'descr': '<f4', 'fortran_order': True, 'shape': (5, 1), }", &le_f32(&f32_values[..5])));

    let by_npyz = dir.path().join("npyz.npy");
    let mut w =
        npyz::WriteOptions::<f32>::new().default_dtype().shape(&[10, 3]).writer(fs::File::create(&by_npyz).unwrap()).begin_nd().unwrap();
    w.extend(f32_values.iter().copied()).unwrap();
    w.finish().unwrap();

    for path in [&f64_c, &f64_f] {
        let back = assert_chunked_equals_whole(path, &ReadOptions::default());
        assert_eq!(bits(&back.data), bits(&t.data), "{}", path.display());
    }
    let want_f32: Vec<f64> = f32_values.iter().map(|&v| f64::from(v)).collect();
    for path in [&f32_c, &f32_f, &by_npyz] {
        let back = assert_chunked_equals_whole(path, &ReadOptions::default());
        assert_eq!(bits(&back.data), bits(&want_f32), "{}", path.display());
    }
    assert_eq!(assert_chunked_equals_whole(&one_d, &ReadOptions::default()), Table::new(7, 1, t.data[..7].to_vec()));
    let back = assert_chunked_equals_whole(&one_col_f, &ReadOptions::default());
    assert_eq!(bits(&back.data), bits(&want_f32[..5]));

    let reader = RowReader::open(&f32_f, &ReadOptions::default()).unwrap();
    assert_eq!((reader.cols(), reader.rows_hint()), (3, Some(10)));
}

#[test]
fn csv_errors_in_a_later_chunk_name_the_row_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<String> = (1..=9).map(|i| format!("{i},{}", i * 10)).collect();
    let with = |row: usize, text: &str, header: bool| {
        let mut lines = rows.clone();
        lines[row - 1] = text.to_string();
        if header {
            lines.insert(0, "x,y".to_string());
        }
        lines.join("\n") + "\n"
    };

    let path = file(dir.path(), "a.csv", with(7, "7,abc", true));
    for chunk in CHUNK_SIZES {
        let e = assert_same_error(&path, chunk, &ReadOptions::default());
        assert_eq!(e.to_string(), format!("{}: row 7 (line 8), column 2: `abc` is not a number", path.display()));
    }

    let path = file(dir.path(), "b.csv", with(8, "8", false));
    for chunk in CHUNK_SIZES {
        let e = assert_same_error(&path, chunk, &ReadOptions::default());
        assert_eq!((e.row, e.column, e.line), (Some(8), None, Some(8)));
        assert!(e.to_string().ends_with("row 8: has 1 fields, but row 1 has 2"), "{e}");
    }

    let path = file(dir.path(), "c.csv", with(5, "-inf,5", true));
    for chunk in CHUNK_SIZES {
        let e = assert_same_error(&path, chunk, &ReadOptions::default());
        assert_eq!((e.row, e.column, e.line), (Some(5), Some(1), Some(6)));
        assert!(e.message.starts_with("-inf is not allowed"), "{e}");
    }

    // Blank lines and CRLF shift the line, not the row.
    let path = file(dir.path(), "d.csv", "x,y\r\n\r\n1,2\r\n3,4\r\n\r\n\r\n5,6\r\n7,q\r\n");
    for chunk in CHUNK_SIZES {
        let e = assert_same_error(&path, chunk, &ReadOptions::default());
        assert!(e.to_string().ends_with("row 4 (line 8), column 2: `q` is not a number"), "{e}");
    }

    // An error in the first data row is found by open, which needs the row for the column count.
    let path = file(dir.path(), "e.csv", "x,y\n1,zz\n3,4\n");
    let e = RowReader::open(&path, &ReadOptions::default()).err().unwrap();
    assert_eq!(e, read_table(&path, &ReadOptions::default()).unwrap_err());
    assert!(e.to_string().ends_with("row 1 (line 2), column 2: `zz` is not a number"), "{e}");
}

#[test]
fn csv_error_deep_in_a_large_file_has_the_right_line() {
    // Far beyond the reader's buffer, so the line is found by re-reading the file.
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("a,b,c\n");
    for i in 1..=30_000 {
        if i == 12_345 {
            text.push('\n');
        }
        if i == 29_999 {
            text.push_str("1,2,three\n");
        } else {
            text.push_str(&format!("{i},{}.5,-{i}e-3\n", i * 7));
        }
    }
    let path = file(dir.path(), "big.csv", text);
    for chunk in [1000, 4096] {
        let e = assert_same_error(&path, chunk, &ReadOptions::default());
        assert!(e.to_string().ends_with("row 29999 (line 30001), column 3: `three` is not a number"), "{e}");
    }
}

#[test]
fn npy_errors_in_a_later_chunk_name_the_row_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let mut values = vec![0.25; 30];
    values[7 * 3 + 1] = f64::NAN; // row 8, column 2
    let path = file(dir.path(), "c.npy", npy_v1("{'descr': '<f8', 'fortran_order': False, 'shape': (10, 3), }", &le_f64(&values)));
    for chunk in CHUNK_SIZES {
        let e = assert_same_error(&path, chunk, &ReadOptions::default());
        assert_eq!(
            e.to_string(),
            format!(
                "{}: row 8, column 2: NaN is not allowed: input values must be finite (see ReadOptions::allow_nonfinite)",
                path.display()
            )
        );
    }
    assert_chunked_equals_whole(&path, &ReadOptions { allow_nonfinite: true });

    // Fortran order, f32: the value stored 4th of a 3×2 array is row 1, column 2,
    // and one stored last is row 3, column 2.
    let mut stored = [1.0f32; 6];
    stored[5] = f32::INFINITY;
    let path = file(dir.path(), "f.npy", npy_v1("{'descr': '<f4', 'fortran_order': True, 'shape': (3, 2), }", &le_f32(&stored)));
    for chunk in CHUNK_SIZES {
        let e = assert_same_error(&path, chunk, &ReadOptions::default());
        assert_eq!((e.row, e.column), (Some(3), Some(2)));
        assert!(e.message.starts_with("inf is not allowed"), "{e}");
    }
}

#[test]
fn empty_and_broken_tables_are_reported_by_open_as_by_read_table() {
    let dir = tempfile::tempdir().unwrap();
    let t = tricky();
    let full = dir.path().join("full.npy");
    write_table(&full, &t, None).unwrap();
    let bytes = fs::read(&full).unwrap();

    let cases = [
        ("empty.csv", b"".to_vec(), "no data rows (the file is empty)"),
        ("blank.csv", b"\n\r\n\n".to_vec(), "no data rows (the file is empty)"),
        ("header.csv", b"x,y\n\n".to_vec(), "no data rows (the file has only a header)"),
        ("empty.npy", npy_v1("{'descr': '<f8', 'fortran_order': False, 'shape': (0, 3), }", &[]), "no data rows (shape (0, 3))"),
        ("nocols.npy", npy_v1("{'descr': '<f8', 'fortran_order': False, 'shape': (3, 0), }", &[]), "no columns (shape (3, 0))"),
        (
            "short.npy",
            bytes[..bytes.len() - 1].to_vec(),
            "truncated file: shape (10, 3) of <f8 needs 240 bytes of data, but only 239 follow",
        ),
        ("long.npy", [&bytes[..], &[0u8; 3]].concat(), "corrupt file: 3 unexpected bytes after the 240 bytes of data for shape (10, 3)"),
        ("int.npy", npy_v1("{'descr': '<i8', 'fortran_order': False, 'shape': (1,), }", &[0; 8]), "unsupported dtype '<i8' (int64)"),
        ("text.npy", b"1,2\n".to_vec(), "not an NPY file"),
        ("cut.npy", bytes[..9].to_vec(), "ends inside the NPY preamble"),
        ("cuthead.npy", bytes[..40].to_vec(), "truncated file: the header should be"),
    ];
    for (name, contents, want) in cases {
        let path = file(dir.path(), name, contents);
        let whole = read_table(&path, &ReadOptions::default()).unwrap_err();
        let open = RowReader::open(&path, &ReadOptions::default()).err().unwrap_or_else(|| panic!("{name}: open succeeded"));
        assert_eq!(open, whole, "{name}");
        assert!(open.message.contains(want), "{name}: {open}");
    }
}

#[test]
fn open_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["absent.csv", "absent.npy"] {
        let path = dir.path().join(name);
        let e = RowReader::open(&path, &ReadOptions::default()).err().unwrap();
        assert_eq!(e, read_table(&path, &ReadOptions::default()).unwrap_err());
        assert_eq!(e.path, path);
        assert!(e.to_string().contains("No such file or directory"), "{e}");
    }
    let e = RowReader::open(&dir.path().join("a.txt"), &ReadOptions::default()).err().unwrap();
    assert!(e.to_string().contains("supported extensions are .csv and .npy"), "{e}");
    let sub = dir.path().join("sub.npy");
    fs::create_dir(&sub).unwrap();
    assert!(RowReader::open(&sub, &ReadOptions::default()).is_err());
}

#[test]
#[should_panic(expected = "max_rows must be at least 1")]
fn zero_max_rows_panics() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(dir.path(), "a.csv", "1\n");
    let _ = RowReader::open(&path, &ReadOptions::default()).unwrap().next_chunk(0, &mut Vec::new());
}

// ---------------------------------------------------------------- writing

/// Writes `t` with a `RowWriter`, in chunks of the given row counts (cycled), including empty ones.
fn write_chunked(path: &Path, t: &Table, header: Option<&[String]>, chunk_rows: &[usize]) {
    let mut w = RowWriter::create(path, t.cols, header).unwrap();
    assert_eq!(w.cols(), t.cols);
    let mut row = 0;
    for &n in chunk_rows.iter().cycle() {
        if row == t.rows {
            break;
        }
        let n = n.min(t.rows - row);
        w.write_chunk(&t.data[row * t.cols..(row + n) * t.cols]).unwrap();
        row += n;
        assert_eq!(w.rows(), row as u64);
        assert!(!path.exists() || fs::read(path).unwrap() == b"old", "nothing new at the path before finish");
    }
    w.finish().unwrap();
}

#[test]
fn writer_round_trip_csv_and_npy() {
    let dir = tempfile::tempdir().unwrap();
    let t = tricky();
    let header = ["x".to_string(), "y y".to_string(), "\"z\"".to_string()];
    for name in ["a.csv", "a.npy"] {
        for header in [None, Some(&header[..])] {
            let path = dir.path().join(name);
            let reference = dir.path().join(format!("ref.{name}"));
            write_table(&reference, &t, header).unwrap();
            fs::write(&path, "old").unwrap();
            write_chunked(&path, &t, header, &[3, 0, 1, 4]);
            let back = read_table(&path, &ReadOptions::default()).unwrap();
            assert_eq!((back.rows, back.cols), (t.rows, t.cols));
            assert_eq!(bits(&back.data), bits(&t.data), "{name}");
            let streamed = read_chunked(&path, 4, &ReadOptions::default()).unwrap();
            assert_eq!(bits(&streamed.data), bits(&t.data), "{name}");
            // Same bytes as write_table.
            assert_eq!(fs::read(&path).unwrap(), fs::read(&reference).unwrap(), "{name}");
            fs::remove_file(&reference).unwrap();
        }
    }
    assert_eq!(names_in(dir.path()), ["a.csv", "a.npy"]);
}

#[test]
fn writer_csv_text_is_what_write_table_documents() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.csv");
    let mut w = RowWriter::create(&path, 2, Some(&["a,b".into(), "c".into()])).unwrap();
    w.write_chunk(&[0.5, -1.0]).unwrap();
    w.write_chunk(&[1e-300, f64::NAN, 1000.0, f64::NEG_INFINITY]).unwrap();
    w.finish().unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), "\"a,b\",c\n0.5,-1\n1e-300,NaN\n1e3,-inf\n");
}

#[test]
fn writer_npy_is_2d_c_order_f64_with_an_aligned_header() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.npy");
    let t = tricky();
    write_chunked(&path, &t, None, &[7]);
    let bytes = fs::read(&path).unwrap();
    let header_len = usize::from(u16::from_le_bytes([bytes[8], bytes[9]]));
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    assert!((10 + header_len).is_multiple_of(64));
    assert_eq!(bytes[10 + header_len - 1], b'\n');
    assert_eq!(bytes.len(), 10 + header_len + 8 * 30);
    let text = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(text.starts_with("{'descr': '<f8', 'fortran_order': False, 'shape': (10, 3), }   "), "{text:?}");
    // An independent reader.
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    assert_eq!(npy.shape(), &[10, 3]);
    assert_eq!(npy.order(), npyz::Order::C);
    assert_eq!(npy.dtype().descr(), "'<f8'");
    let values: Vec<f64> = npy.into_vec().unwrap();
    assert_eq!(bits(&values), bits(&t.data));
}

#[test]
fn writer_dropped_without_finish_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["a.csv", "a.npy"] {
        let path = dir.path().join(name);
        {
            let mut w = RowWriter::create(&path, 2, Some(&["x".into(), "y".into()])).unwrap();
            w.write_chunk(&[1.0; 2 * 100_000]).unwrap();
            assert_eq!(names_in(dir.path()).len(), 1, "just the temporary file");
        }
        assert!(!path.exists());
        assert!(names_in(dir.path()).is_empty(), "{:?}", names_in(dir.path()));

        // An existing file is left untouched.
        fs::write(&path, "precious").unwrap();
        {
            let mut w = RowWriter::create(&path, 2, None).unwrap();
            w.write_chunk(&[1.0, 2.0]).unwrap();
        }
        assert_eq!(fs::read_to_string(&path).unwrap(), "precious");
        assert_eq!(names_in(dir.path()), [name]);
        fs::remove_file(&path).unwrap();
    }
}

#[test]
fn writer_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.csv");
    fs::write(&path, "precious").unwrap();

    let create_err = |path: &Path, cols: usize, header: Option<&[String]>| RowWriter::create(path, cols, header).err().unwrap().to_string();
    assert!(create_err(&path, 0, None).contains("no columns"));
    assert!(create_err(&path, 2, Some(&["x".into()])).contains("header has 1 names but the table has 2 columns"));
    assert!(create_err(&path, 2, Some(&["1".into(), "2".into()])).contains("would be read back as a data row"));
    assert!(create_err(&dir.path().join("a.json"), 2, None).contains("supported extensions are .csv and .npy"));
    let e = create_err(&dir.path().join("no/such/dir/a.npy"), 2, None);
    assert!(e.contains("No such file or directory"), "{e}");
    assert_eq!(names_in(dir.path()), ["a.csv"]);

    // A chunk that is not whole rows is refused, and the writer goes on.
    let mut w = RowWriter::create(&path, 3, None).unwrap();
    let e = w.write_chunk(&[1.0; 4]).unwrap_err();
    assert!(e.to_string().contains("chunk of 4 values is not a whole number of rows of 3 columns"), "{e}");
    w.write_chunk(&[1.0, 2.0, 3.0]).unwrap();
    w.finish().unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), "1,2,3\n");

    // No rows: refused, and nothing changes.
    for name in ["a.csv", "b.npy"] {
        let path = dir.path().join(name);
        let before = fs::read(&path).ok();
        let mut w = RowWriter::create(&path, 2, None).unwrap();
        w.write_chunk(&[]).unwrap();
        let e = w.finish().unwrap_err();
        assert!(e.to_string().contains("refusing to write an empty table (0 rows × 2 columns)"), "{e}");
        assert_eq!(fs::read(&path).ok(), before);
    }
    assert_eq!(names_in(dir.path()), ["a.csv"]);

    // The rename fails: the target is a non-empty directory.
    let taken = dir.path().join("taken.npy");
    fs::create_dir(&taken).unwrap();
    fs::write(taken.join("keep"), "x").unwrap();
    let mut w = RowWriter::create(&taken, 1, None).unwrap();
    w.write_chunk(&[1.0]).unwrap();
    assert!(w.finish().unwrap_err().to_string().contains("cannot replace the file"));
    assert_eq!(names_in(dir.path()), ["a.csv", "taken.npy"]);
}

// ---------------------------------------------------------------- large

#[test]
fn large_npy_round_trips_in_chunks() {
    const ROWS: usize = 200_000;
    const COLS: usize = 16;
    let value = |i: usize, j: usize| {
        // Distinct, non-trivial bit patterns, all finite.
        let x = (i * COLS + j) as u64;
        f64::from_bits(x.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 2 | 0x3000_0000_0000_0000) - 1.5 * (j as f64)
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.npy");

    let mut w = RowWriter::create(&path, COLS, None).unwrap();
    let mut chunk = Vec::new();
    let mut row = 0;
    for rows in [1usize, 4095, 5000, 10_007].into_iter().cycle() {
        if row == ROWS {
            break;
        }
        let rows = rows.min(ROWS - row);
        chunk.clear();
        chunk.extend((row..row + rows).flat_map(|i| (0..COLS).map(move |j| value(i, j))));
        w.write_chunk(&chunk).unwrap();
        row += rows;
    }
    w.finish().unwrap();
    assert_eq!(fs::metadata(&path).unwrap().len(), 128 + (ROWS * COLS * 8) as u64);

    let mut reader = RowReader::open(&path, &ReadOptions::default()).unwrap();
    assert_eq!((reader.cols(), reader.rows_hint()), (COLS, Some(ROWS)));
    let mut buf = Vec::new();
    let mut row = 0;
    loop {
        let n = reader.next_chunk(4096, &mut buf).unwrap();
        if n == 0 {
            break;
        }
        assert_eq!(n, 4096.min(ROWS - row));
        assert!(buf.capacity() <= 2 * 4096 * COLS, "the buffer holds one chunk");
        for (k, v) in buf.iter().enumerate() {
            let (i, j) = (row + k / COLS, k % COLS);
            assert_eq!(v.to_bits(), value(i, j).to_bits(), "row {i} column {j}");
        }
        row += n;
    }
    assert_eq!(row, ROWS);
}

#[test]
fn large_csv_round_trips_in_chunks() {
    const ROWS: usize = 50_000;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.csv");
    let t = Table::new(ROWS, 3, (0..ROWS * 3).map(|k| (k as f64).sqrt() * if k % 2 == 0 { 1.0 } else { -1e-7 }).collect());
    write_chunked(&path, &t, Some(&["a".into(), "b".into(), "c".into()]), &[4096]);
    let back = read_chunked(&path, 4096, &ReadOptions::default()).unwrap();
    assert_eq!((back.rows, back.cols), (ROWS, 3));
    assert_eq!(bits(&back.data), bits(&t.data));
}

// ---------------------------------------------------------------- numpy

/// Runs `script` with `python3`, if it can import numpy; `None` (with a note) if not.
fn with_numpy(script: &str, args: &[&Path]) -> Option<String> {
    let available = Command::new("python3").args(["-c", "import numpy"]).output().map(|o| o.status.success()).unwrap_or(false);
    if !available {
        println!("note: python3 with numpy is not available; skipping the numpy check");
        return None;
    }
    let out = Command::new("python3").arg("-c").arg(script).args(args).output().unwrap();
    assert!(out.status.success(), "python3 failed:\n{}", String::from_utf8_lossy(&out.stderr));
    Some(String::from_utf8(out.stdout).unwrap())
}

#[test]
fn numpy_loads_what_row_writer_writes_and_writes_what_row_reader_reads() {
    let dir = tempfile::tempdir().unwrap();
    let t = tricky();
    let ours = dir.path().join("ours.npy");
    write_chunked(&ours, &t, None, &[4]);
    let raw = file(dir.path(), "raw.bin", le_f64(&t.data));
    let theirs_c = dir.path().join("theirs_c.npy");
    let theirs_f = dir.path().join("theirs_f.npy");
    let theirs_f32 = dir.path().join("theirs_f32.npy");
    let script = r#"
import sys, numpy
ours, raw, c, f, f32 = sys.argv[1:]
a = numpy.load(ours)
b = numpy.fromfile(raw, dtype='<f8').reshape(10, 3)
assert a.shape == (10, 3) and a.dtype == numpy.dtype('<f8') and a.flags.c_contiguous, (a.shape, a.dtype)
assert (a.view('<u8') == b.view('<u8')).all()
m = numpy.load(ours, mmap_mode='r')
assert m.shape == (10, 3) and (numpy.asarray(m).view('<u8') == b.view('<u8')).all()
numpy.save(c, b)
numpy.save(f, numpy.asfortranarray(b))
with numpy.errstate(over='ignore'):
    numpy.save(f32, numpy.asfortranarray(b.astype('<f4')))
print('ok', a.shape[0], a.shape[1])
"#;
    let Some(out) = with_numpy(script, &[&ours, &raw, &theirs_c, &theirs_f, &theirs_f32]) else {
        return;
    };
    assert_eq!(out.trim(), "ok 10 3");
    for path in [&theirs_c, &theirs_f] {
        let back = assert_chunked_equals_whole(path, &ReadOptions::default());
        assert_eq!(bits(&back.data), bits(&t.data), "{}", path.display());
    }
    // f64::MAX becomes inf in float32.
    let back = assert_chunked_equals_whole(&theirs_f32, &ReadOptions { allow_nonfinite: true });
    let want: Vec<f64> = t.data.iter().map(|&v| f64::from(v as f32)).collect();
    assert_eq!(bits(&back.data), bits(&want));
}
