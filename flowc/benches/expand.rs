//! Time of the `flow!` expansion (`flowc::expand`: parse, derive, check, lower, emit Rust)
//! on the snapshot corpus and on the W2 flow, median of several runs.
//!
//!     cargo bench -p flowc --bench expand

use std::time::Instant;

/// CPU time of this process (all threads) in ms, where the OS reports it (Linux).
fn cpu_ms() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks * 10.0) // USER_HZ = 100
}

/// Median wall and CPU milliseconds of `runs` expansions, and the size of the output.
fn median_ms(runs: usize, src: &str) -> (f64, f64, usize) {
    let (mut wall, mut cpu) = (Vec::new(), Vec::new());
    let mut len = 0;
    for _ in 0..runs {
        let tokens: proc_macro2::TokenStream = src.parse().unwrap();
        let (start, c0) = (Instant::now(), cpu_ms());
        let code = flowc::expand(tokens);
        wall.push(start.elapsed().as_secs_f64() * 1e3);
        cpu.push(cpu_ms().zip(c0).map(|(b, a)| b - a).unwrap_or(f64::NAN));
        len = code.to_string().len();
    }
    let median = |mut t: Vec<f64>| {
        t.sort_by(|a, b| a.partial_cmp(b).unwrap());
        t[t.len() / 2]
    };
    (median(wall), median(cpu), len)
}

fn main() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    for (name, path) in [("corpus", "snapshots/corpus.flow"), ("sas16", "bench/sas16.flow")] {
        let src = std::fs::read_to_string(format!("{root}/{path}")).unwrap();
        let (ms, cpu, len) = median_ms(5, &src);
        println!("expand {name:<8} {ms:>8.1} ms wall, {cpu:>8.1} ms CPU on {cores} cores ({} KiB of Rust tokens)", len / 1024);
    }
}
