//! CSV reading and writing through the public API, on real files.

use std::fs;
use std::path::{Path, PathBuf};

use runtime::io::{read_table, write_table, IoError, ReadOptions, Table};

/// Values that are easy to mangle in text: tiny, subnormal, huge, negative zero.
const TRICKY: [f64; 8] = [1e-300, -0.0, 5e-324, 1.7976931348623157e308, 0.1, -2.5, 1e21, 0.30000000000000004];

fn bits(t: &Table) -> Vec<u64> {
    t.data.iter().map(|v| v.to_bits()).collect()
}

fn file(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, contents).unwrap();
    path
}

fn read_err(contents: &str) -> IoError {
    let dir = tempfile::tempdir().unwrap();
    let path = file(dir.path(), "data.csv", contents);
    read_table(&path, &ReadOptions::default()).unwrap_err()
}

#[test]
fn round_trip_is_exact_with_and_without_header() {
    let dir = tempfile::tempdir().unwrap();
    let table = Table::new(4, 2, TRICKY.to_vec());
    let header = ["x".to_string(), "y".to_string()];
    for (name, header) in [("with.csv", Some(&header[..])), ("without.csv", None)] {
        let path = dir.path().join(name);
        write_table(&path, &table, header).unwrap();
        let back = read_table(&path, &ReadOptions::default()).unwrap();
        assert_eq!((back.rows, back.cols), (4, 2), "{name}");
        assert_eq!(bits(&back), bits(&table), "{name}");
    }
}

#[test]
fn written_text_is_short_and_exact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.csv");
    write_table(&path, &Table::new(4, 2, TRICKY.to_vec()), Some(&["a".into(), "b c".into()])).unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), "a,b c\n1e-300,-0\n5e-324,1.7976931348623157e308\n0.1,-2.5\n1e21,0.30000000000000004\n");
}

#[test]
fn round_trip_of_nonfinite_needs_allow_nonfinite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.csv");
    let table = Table::new(1, 3, vec![f64::NAN, f64::INFINITY, f64::NEG_INFINITY]);
    write_table(&path, &table, None).unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), "NaN,inf,-inf\n");
    let e = read_table(&path, &ReadOptions::default()).unwrap_err();
    assert_eq!((e.row, e.column), (Some(1), Some(1)));
    let back = read_table(&path, &ReadOptions { allow_nonfinite: true }).unwrap();
    assert!(back.data[0].is_nan());
    assert_eq!(&back.data[1..], &[f64::INFINITY, f64::NEG_INFINITY]);
}

#[test]
fn header_detected_when_first_row_has_a_non_number() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(dir.path(), "h.csv", "z0, z1\n1, 2\n3, 4\n");
    let t = read_table(&path, &ReadOptions::default()).unwrap();
    assert_eq!(t, Table::new(2, 2, vec![1.0, 2.0, 3.0, 4.0]));
}

#[test]
fn no_header_when_first_row_parses() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(dir.path(), "n.csv", "  1 ,2\n3,4\n");
    let t = read_table(&path, &ReadOptions::default()).unwrap();
    assert_eq!(t, Table::new(2, 2, vec![1.0, 2.0, 3.0, 4.0]));
}

#[test]
fn extension_is_case_insensitive() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(dir.path(), "UPPER.CSV", "1\n");
    assert_eq!(read_table(&path, &ReadOptions::default()).unwrap(), Table::new(1, 1, vec![1.0]));
}

#[test]
fn non_number_error_names_row_column_line_and_text() {
    let e = read_err("a,b\n1,2\n3,4\n5,abc\n");
    assert_eq!((e.row, e.column, e.line), (Some(3), Some(2), Some(4)));
    assert!(e.path.ends_with("data.csv"));
    assert!(e.to_string().ends_with("data.csv: row 3 (line 4), column 2: `abc` is not a number"), "{e}");

    let e = read_err("1,2\n3,abc\n");
    assert!(e.to_string().ends_with("data.csv: row 2, column 2: `abc` is not a number"), "{e}");
}

#[test]
fn ragged_row_error_names_row_and_both_counts() {
    let e = read_err("1,2,3\n4,5,6\n7,8\n");
    assert_eq!((e.row, e.column), (Some(3), None));
    assert!(e.to_string().ends_with("data.csv: row 3: has 2 fields, but row 1 has 3"), "{e}");

    let e = read_err("x,y\n1,2,3\n");
    assert!(e.to_string().ends_with("data.csv: row 1 (line 2): has 3 fields, but the header has 2"), "{e}");
}

#[test]
fn empty_file_and_header_only_have_no_data_rows() {
    let e = read_err("");
    assert_eq!((e.row, e.column), (None, None));
    assert!(e.to_string().contains("no data rows"), "{e}");
    let e = read_err("x,y\n");
    assert!(e.to_string().contains("no data rows (the file has only a header)"), "{e}");
}

#[test]
fn nonfinite_values_are_errors_by_default() {
    for (text, what, row, column) in [("1,2\n3,nan\n", "NaN", 2, 2), ("x\n1\ninf\n", "inf", 2, 1), ("-Infinity,0\n", "-inf", 1, 1)] {
        let e = read_err(text);
        assert_eq!((e.row, e.column), (Some(row), Some(column)), "{text:?}");
        let shown = e.to_string();
        assert!(shown.contains(&format!("column {column}: {what} is not allowed")), "{shown}");
        assert!(shown.contains("must be finite"), "{shown}");
    }
}

#[test]
fn nonfinite_values_are_read_when_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(dir.path(), "d.csv", "nan, inf\n-inf, 1\n");
    let t = read_table(&path, &ReadOptions { allow_nonfinite: true }).unwrap();
    assert!(t.data[0].is_nan());
    assert_eq!(&t.data[1..], &[f64::INFINITY, f64::NEG_INFINITY, 1.0]);
}

#[test]
fn missing_file_gives_the_os_message() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.csv");
    let e = read_table(&path, &ReadOptions::default()).unwrap_err();
    assert_eq!(e.path, path);
    assert!(e.to_string().contains("No such file or directory"), "{e}");
}

#[test]
fn directory_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("folder.csv");
    fs::create_dir(&path).unwrap();
    let e = read_table(&path, &ReadOptions::default()).unwrap_err();
    assert!(e.to_string().contains("cannot"), "{e}");
}

#[test]
fn unsupported_extension_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(dir.path(), "data.tsv", "1\t2\n");
    let e = read_table(&path, &ReadOptions::default()).unwrap_err();
    assert!(e.to_string().contains("unsupported file extension `.tsv`; supported extensions are .csv and .npy"), "{e}");
}
