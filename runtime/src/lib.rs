//! The flowc runtime: what a compiled normalizing flow needs at run time,
//! with no dependency on the compiler.
//!
//! - [`io`]: read and write tables of points ([`io::Table`]) as CSV or NPY
//!   files, with precise errors and atomic writes; whole tables, or chunk by
//!   chunk in bounded memory ([`io::RowReader`], [`io::RowWriter`]).
//! - [`base`]: the standard normal base distribution.
//! - [`batch`]: row kernels over chunks of rows on a thread pool.
//! - [`math`]: the composite scalar functions (sigmoid, softplus, logcosh, ...).
//! - [`param_file`]: parameter files (safetensors, PyTorch-style names).
//! - [`sample`]: seeded random numbers, the same whatever the thread count.
//! - [`real`]: the scalars and lane blocks that compiled flows compute with.
//! - [`rootfind`]: the numeric inverse of monotone scalar maps.
//! - [`flow`], [`params`], [`rng`]: what flows compiled to Rust (`flow!`) are built on: the
//!   [`flow::Flow`] trait and batch row loop, parameter tables, a seeded generator.
//!
//! ```
//! use runtime::base::std_normal_log_pdf;
//! use runtime::io::{read_table, write_table, ReadOptions, Table};
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("points.csv");
//!
//! // Two points in 2-D, with column names.
//! let table = Table::new(2, 2, vec![0.5, -1.0, 1e-300, 3.0]);
//! write_table(&path, &table, Some(&["x".to_string(), "y".to_string()]))?;
//! assert_eq!(std::fs::read_to_string(&path)?, "x,y\n0.5,-1\n1e-300,3\n");
//!
//! // The header is detected and skipped; the values come back exactly.
//! let back = read_table(&path, &ReadOptions::default())?;
//! assert_eq!(back, table);
//!
//! // Log density of each point under a 2-D standard normal.
//! let log_p: Vec<f64> = (0..back.rows)
//!     .map(|i| back.row(i).iter().map(|&z| std_normal_log_pdf(z)).sum())
//!     .collect();
//! assert!((log_p[0] - (-0.625 - runtime::base::LN_2PI)).abs() < 1e-15);
//!
//! // Errors say where: file, data row, column.
//! std::fs::write(&path, "x,y\n1,2\n3,abc\n")?;
//! let err = read_table(&path, &ReadOptions::default()).unwrap_err();
//! assert!(err.to_string().ends_with("row 2 (line 3), column 2: `abc` is not a number"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod base;
pub mod batch;
pub mod flow;
pub mod io;
pub mod made;
pub mod manifold;
pub mod math;
pub mod param_file;
pub mod params;
pub mod real;
pub mod rng;
pub mod rootfind;
pub mod sample;
pub mod spline;
pub mod train;

pub use flow::{Bijector, Flow};
pub use params::{Kind, ParamError, Slot};
pub use real::{Block, Lanes, Ops, Real};
pub use rng::Rng;
