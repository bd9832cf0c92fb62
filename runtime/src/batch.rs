//! Batch evaluation: a row kernel applied to chunks of rows on a pool of threads.
//!
//! ```
//! // a "kernel" that doubles each value of 2-column rows and writes one output per row
//! let kernel = |rows: &[f64], out: &mut [f64]| {
//!     for (r, o) in rows.chunks(2).zip(out.iter_mut()) {
//!         *o = 2.0 * (r[0] + r[1]);
//!     }
//! };
//! let rows = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
//! let mut out = vec![0.0; 3];
//! runtime::batch::run_rows(&rows, 2, &mut out, 1, 2, &kernel).unwrap();
//! assert_eq!(out, vec![6.0, 14.0, 22.0]);
//! ```

/// Rows per task: large enough to amortize scheduling, small enough to balance threads
/// and stay in cache.
pub const CHUNK_ROWS: usize = 4096;

/// Applies `kernel` to every row of `rows` (`dim` values each), writing `outputs` values
/// per row to `out`, on `threads` threads (0 = all cores). The result does not depend on
/// the thread count.
pub fn run_rows<T: Send + Sync>(
    rows: &[T],
    dim: usize,
    out: &mut [T],
    outputs: usize,
    threads: usize,
    kernel: &(dyn Fn(&[T], &mut [T]) + Sync),
) -> Result<(), String> {
    if dim == 0 || !rows.len().is_multiple_of(dim) {
        return Err(format!("{} values are not whole rows of {dim}", rows.len()));
    }
    let n = rows.len() / dim;
    if out.len() != n * outputs {
        return Err(format!("{n} rows need {} output values, got {}", n * outputs, out.len()));
    }
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().map_err(|e| e.to_string())?;
    pool.install(|| {
        use rayon::prelude::*;
        rows.par_chunks(CHUNK_ROWS * dim).zip(out.par_chunks_mut(CHUNK_ROWS * outputs)).for_each(|(r, o)| kernel(r, o));
    });
    Ok(())
}
