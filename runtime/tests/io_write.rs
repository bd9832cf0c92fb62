//! `write_table`'s atomicity and up-front checks.

use std::fs;
use std::path::Path;

use runtime::io::{read_table, write_table, ReadOptions, Table};

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

fn small() -> Table {
    Table::new(2, 2, vec![1.0, 2.0, 3.0, 4.0])
}

#[test]
fn success_leaves_no_temporary_files() {
    let dir = tempfile::tempdir().unwrap();
    write_table(&dir.path().join("a.csv"), &small(), None).unwrap();
    write_table(&dir.path().join("b.npy"), &small(), None).unwrap();
    assert_eq!(names_in(dir.path()), ["a.csv", "b.npy"]);
}

#[test]
fn existing_file_is_replaced_on_success() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.csv");
    fs::write(&path, "old\n").unwrap();
    write_table(&path, &small(), None).unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), "1,2\n3,4\n");
    assert_eq!(names_in(dir.path()), ["a.csv"]);
}

#[test]
fn missing_directory_is_an_error_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["a.csv", "a.npy"] {
        let path = dir.path().join("no/such/dir").join(name);
        let e = write_table(&path, &small(), None).unwrap_err();
        assert_eq!(e.path, path);
        assert!(e.to_string().contains("No such file or directory"), "{e}");
        assert!(!path.exists());
    }
    assert!(names_in(dir.path()).is_empty());
}

#[test]
fn failed_writes_leave_an_existing_file_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let inconsistent = Table { rows: 3, cols: 2, data: vec![1.0; 5] };
    let cases: [(&str, Table, Option<Vec<String>>, &str); 5] = [
        ("a.csv", small(), Some(vec!["only one".into()]), "header has 1 names but the table has 2 columns"),
        ("a.csv", small(), Some(vec!["1".into(), "2".into()]), "would be read back as a data row"),
        ("a.npy", inconsistent, None, "table is inconsistent: 3 rows × 2 columns but 5 values"),
        ("a.npy", Table::new(0, 2, vec![]), None, "refusing to write an empty table (0 rows × 2 columns)"),
        ("a.csv", Table::new(3, 0, vec![]), None, "refusing to write an empty table (3 rows × 0 columns)"),
    ];
    for (name, table, header, want) in cases {
        let path = dir.path().join(name);
        fs::write(&path, "precious").unwrap();
        let e = write_table(&path, &table, header.as_deref()).unwrap_err();
        assert!(e.to_string().contains(want), "{e}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "precious");
        fs::remove_file(&path).unwrap();
        assert!(names_in(dir.path()).is_empty());
    }
}

#[test]
fn failed_rename_leaves_the_target_and_no_temporary_file() {
    // The target is a non-empty directory: the temporary file is written,
    // but cannot be renamed over it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("taken.csv");
    fs::create_dir(&path).unwrap();
    fs::write(path.join("keep"), "precious").unwrap();
    let e = write_table(&path, &small(), None).unwrap_err();
    assert!(e.to_string().contains("cannot replace the file"), "{e}");
    assert_eq!(names_in(dir.path()), ["taken.csv"]);
    assert_eq!(fs::read_to_string(path.join("keep")).unwrap(), "precious");
}

#[test]
fn unsupported_extension_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let e = write_table(&dir.path().join("a.json"), &small(), None).unwrap_err();
    assert!(e.to_string().contains("supported extensions are .csv and .npy"), "{e}");
    assert!(names_in(dir.path()).is_empty());
}

#[test]
fn npy_ignores_the_header_but_checks_its_length() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.npy");
    write_table(&path, &small(), Some(&["1".into(), "2".into()])).unwrap();
    assert_eq!(read_table(&path, &ReadOptions::default()).unwrap(), small());
    assert!(write_table(&path, &small(), Some(&["x".into()])).is_err());
}
