//! Every user-facing error of `flow!` and `flow_file!` as compiler output: each case is a
//! `.rs` file under `tests/ui/` and the exact messages it must produce (`.stderr`).
//! Regenerate with `TRYBUILD=overwrite` after reading the difference.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
