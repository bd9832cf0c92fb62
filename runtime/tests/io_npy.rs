//! NPY reading and writing through the public API, on real files.

use std::fs;
use std::path::{Path, PathBuf};

use npyz::WriterBuilder;
use runtime::io::{read_table, write_table, IoError, ReadOptions, Table};

const TRICKY: [f64; 6] = [1e-300, -0.0, 5e-324, 1.7976931348623157e308, 0.1, -2.5];

fn bits(t: &Table) -> Vec<u64> {
    t.data.iter().map(|v| v.to_bits()).collect()
}

/// An NPY 1.0 file made by hand: magic, version, header length, the header
/// dict padded with spaces and a newline to a multiple of 64 bytes, then data.
fn npy_v1(dict: &str, data: &[u8]) -> Vec<u8> {
    let mut header = dict.as_bytes().to_vec();
    let preamble = 6 + 2 + 2;
    while !(preamble + header.len() + 1).is_multiple_of(64) {
        header.push(b' ');
    }
    header.push(b'\n');
    let mut bytes = b"\x93NUMPY".to_vec();
    bytes.extend([1u8, 0]);
    bytes.extend(u16::try_from(header.len()).unwrap().to_le_bytes());
    bytes.extend(&header);
    assert!(bytes.len().is_multiple_of(64));
    bytes.extend(data);
    bytes
}

fn le_f64(values: &[f64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn le_f32(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, bytes).unwrap();
    path
}

fn read_bytes(bytes: &[u8], opts: &ReadOptions) -> Result<Table, IoError> {
    let dir = tempfile::tempdir().unwrap();
    read_table(&file(dir.path(), "a.npy", bytes), opts)
}

fn read_err(bytes: &[u8]) -> String {
    read_bytes(bytes, &ReadOptions::default()).unwrap_err().to_string()
}

#[test]
fn round_trip_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.npy");
    let table = Table::new(3, 2, TRICKY.to_vec());
    write_table(&path, &table, None).unwrap();
    let back = read_table(&path, &ReadOptions::default()).unwrap();
    assert_eq!((back.rows, back.cols), (3, 2));
    assert_eq!(bits(&back), bits(&table));
}

#[test]
fn written_file_is_2d_c_order_f64_for_an_independent_reader() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.npy");
    let table = Table::new(3, 2, TRICKY.to_vec());
    write_table(&path, &table, Some(&["x".into(), "y".into()])).unwrap();
    let bytes = fs::read(&path).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    assert_eq!(npy.shape(), &[3, 2]);
    assert_eq!(npy.order(), npyz::Order::C);
    assert_eq!(npy.dtype().descr(), "'<f8'");
    let values: Vec<f64> = npy.into_vec().unwrap();
    assert_eq!(values.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), bits(&table));
}

#[test]
fn reads_1d_as_one_column() {
    let bytes = npy_v1("{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }", &le_f64(&[1.0, 2.0, 3.0]));
    let t = read_bytes(&bytes, &ReadOptions::default()).unwrap();
    assert_eq!(t, Table::new(3, 1, vec![1.0, 2.0, 3.0]));
}

#[test]
fn reads_f32_widened_exactly() {
    let values = [0.1f32, -0.0, f32::MIN_POSITIVE, f32::MAX, 1.5, -3.25];
    let bytes = npy_v1("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", &le_f32(&values));
    let t = read_bytes(&bytes, &ReadOptions::default()).unwrap();
    assert_eq!((t.rows, t.cols), (2, 3));
    let want: Vec<u64> = values.iter().map(|&v| f64::from(v).to_bits()).collect();
    assert_eq!(bits(&t), want);
    assert_eq!(t.data[0], 0.10000000149011612);
}

#[test]
fn reads_f32_written_by_npyz() {
    let mut bytes = Vec::new();
    let mut w = npyz::WriteOptions::<f32>::new().default_dtype().shape(&[2, 2]).writer(&mut bytes).begin_nd().unwrap();
    w.extend([1.0f32, 2.0, 3.0, 0.1]).unwrap();
    w.finish().unwrap();
    let t = read_bytes(&bytes, &ReadOptions::default()).unwrap();
    assert_eq!(t, Table::new(2, 2, vec![1.0, 2.0, 3.0, f64::from(0.1f32)]));
}

#[test]
fn reads_fortran_order_made_by_hand() {
    // The 3×2 matrix [[1, 2], [3, 4], [5, 6]] stored column by column.
    let bytes = npy_v1("{'descr': '<f8', 'fortran_order': True, 'shape': (3, 2), }", &le_f64(&[1.0, 3.0, 5.0, 2.0, 4.0, 6.0]));
    let t = read_bytes(&bytes, &ReadOptions::default()).unwrap();
    assert_eq!(t, Table::new(3, 2, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]));
    assert_eq!(t.row(1), &[3.0, 4.0]);
}

#[test]
fn reads_fortran_order_written_by_npyz() {
    let mut bytes = Vec::new();
    let mut w =
        npyz::WriteOptions::<f64>::new().default_dtype().order(npyz::Order::Fortran).shape(&[2, 3]).writer(&mut bytes).begin_nd().unwrap();
    // Column-major for [[1, 2, 3], [4, 5, 6]].
    w.extend([1.0, 4.0, 2.0, 5.0, 3.0, 6.0]).unwrap();
    w.finish().unwrap();
    let t = read_bytes(&bytes, &ReadOptions::default()).unwrap();
    assert_eq!(t, Table::new(2, 3, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]));
}

#[test]
fn truncated_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.npy");
    write_table(&path, &Table::new(3, 2, TRICKY.to_vec()), None).unwrap();
    let full = fs::read(&path).unwrap();
    let e = read_err(&full[..full.len() - 1]);
    assert!(e.contains("truncated file: shape (3, 2) of <f8 needs 48 bytes of data, but only 47 follow"), "{e}");
    for len in [0, 5, 9, 20] {
        let e = read_err(&full[..len]);
        assert!(e.contains("not an NPY file") || e.contains("truncated"), "{len}: {e}");
    }
}

#[test]
fn trailing_bytes_are_an_error() {
    let mut bytes = npy_v1("{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }", &le_f64(&[1.0]));
    bytes.push(0);
    assert!(read_err(&bytes).contains("1 unexpected bytes after the 8 bytes of data"));
}

#[test]
fn unsupported_dtype_says_what_was_found_and_what_is_supported() {
    for (descr, found) in [("<i8", "'<i8' (int64)"), (">f8", "'>f8' (big-endian float64)"), ("<f2", "'<f2' (float16)")] {
        let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': (1,), }}");
        let e = read_err(&npy_v1(&dict, &[0; 8]));
        assert!(e.contains(&format!("unsupported dtype {found}")), "{e}");
        assert!(e.contains("supported: '<f8' (float64) and '<f4' (float32), little-endian"), "{e}");
    }
}

#[test]
fn unsupported_ndim_says_what_was_found_and_what_is_supported() {
    let e = read_err(&npy_v1("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 1, 1), }", &[0; 16]));
    assert!(e.contains("unsupported 3-dimensional array of shape (2, 1, 1); supported: 1-D (one column) or 2-D"), "{e}");
    let e = read_err(&npy_v1("{'descr': '<f8', 'fortran_order': False, 'shape': (), }", &[0; 8]));
    assert!(e.contains("unsupported 0-dimensional array of shape ()"), "{e}");
}

#[test]
fn empty_arrays_are_errors() {
    let e = read_err(&npy_v1("{'descr': '<f8', 'fortran_order': False, 'shape': (0, 3), }", &[]));
    assert!(e.contains("no data rows"), "{e}");
    let e = read_err(&npy_v1("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 0), }", &[]));
    assert!(e.contains("no columns"), "{e}");
}

#[test]
fn nonfinite_error_names_row_and_column() {
    // Fortran order: the NaN stored 4th is at row 1, column 2 of a 3×2 matrix.
    let bytes = npy_v1("{'descr': '<f8', 'fortran_order': True, 'shape': (3, 2), }", &le_f64(&[1.0, 2.0, 3.0, f64::NAN, 5.0, 6.0]));
    let e = read_bytes(&bytes, &ReadOptions::default()).unwrap_err();
    assert_eq!((e.row, e.column), (Some(1), Some(2)));
    assert!(
        e.to_string()
            .ends_with("a.npy: row 1, column 2: NaN is not allowed: input values must be finite (see ReadOptions::allow_nonfinite)"),
        "{e}"
    );

    let bytes = npy_v1("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", &le_f32(&[1.0, f32::NEG_INFINITY]));
    let e = read_bytes(&bytes, &ReadOptions::default()).unwrap_err();
    assert!(e.to_string().contains("row 2, column 1: -inf is not allowed"), "{e}");
    let t = read_bytes(&bytes, &ReadOptions { allow_nonfinite: true }).unwrap();
    assert_eq!(t.data, [1.0, f64::NEG_INFINITY]);
}

#[test]
fn not_an_npy_file() {
    let e = read_err(b"1,2\n3,4\n");
    assert!(e.contains("not an NPY file"), "{e}");
}

#[test]
fn missing_file_gives_the_os_message() {
    let dir = tempfile::tempdir().unwrap();
    let e = read_table(&dir.path().join("absent.npy"), &ReadOptions::default()).unwrap_err();
    assert!(e.to_string().contains("No such file or directory"), "{e}");
}
