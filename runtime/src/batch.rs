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

use std::sync::{Arc, Mutex, OnceLock};

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
    if n <= CHUNK_ROWS || threads == 1 {
        // one task: no threads to wake
        rows.chunks(CHUNK_ROWS * dim).zip(out.chunks_mut(CHUNK_ROWS * outputs)).for_each(|(r, o)| kernel(r, o));
        return Ok(());
    }
    pool(threads)?.install(|| {
        use rayon::prelude::*;
        rows.par_chunks(CHUNK_ROWS * dim).zip(out.par_chunks_mut(CHUNK_ROWS * outputs)).for_each(|(r, o)| kernel(r, o));
    });
    Ok(())
}

/// The pools started so far, by thread count.
type Pools = Vec<(usize, Arc<rayon::ThreadPool>)>;

/// The process's pool of `threads` threads (0: one per core), started on first use and kept:
/// a call costs waking the threads, not starting them.
pub fn pool(threads: usize) -> Result<Arc<rayon::ThreadPool>, String> {
    static POOLS: OnceLock<Mutex<Pools>> = OnceLock::new();
    let mut pools = POOLS.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, p)) = pools.iter().find(|(t, _)| *t == threads) {
        return Ok(p.clone());
    }
    let p =
        Arc::new(rayon::ThreadPoolBuilder::new().num_threads(threads).build().map_err(|e| format!("cannot start {threads} threads: {e}"))?);
    pools.push((threads, p.clone()));
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_do_not_depend_on_threads_and_pools_are_kept() {
        // rows of 3: output (sum, product), over several chunks and a partial one
        let n = 3 * CHUNK_ROWS + 17;
        let rows: Vec<f64> = (0..n * 3).map(|i| (i as f64 * 0.37).sin()).collect();
        let kernel = |r: &[f64], o: &mut [f64]| {
            for (row, out) in r.chunks(3).zip(o.chunks_mut(2)) {
                out[0] = row.iter().sum();
                out[1] = row.iter().product();
            }
        };
        let mut want = vec![0.0; n * 2];
        kernel(&rows, &mut want);
        for threads in [1, 2, 3, 0, 2] {
            let mut got = vec![f64::NAN; n * 2];
            run_rows(&rows, 3, &mut got, 2, threads, &kernel).unwrap();
            assert_eq!(got, want, "{threads} threads");
        }
        assert!(Arc::ptr_eq(&pool(3).unwrap(), &pool(3).unwrap()));
        assert_eq!(pool(3).unwrap().current_num_threads(), 3);
        let mut short = vec![0.0; 5];
        assert!(run_rows(&rows[..9], 3, &mut short, 2, 2, &kernel).unwrap_err().contains("3 rows need 6 output values"));
    }
}
