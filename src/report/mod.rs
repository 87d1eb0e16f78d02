//! How results leave a run: terminal tables, JSON records, PNG plots, progress,
//! and the atomic file writes all of them go through. Workload code returns
//! records; rank 0 hands them to these.

pub mod files;
pub mod progress;
pub mod table;
pub mod units;

#[cfg(feature = "torch")]
pub mod plot;

#[cfg(feature = "torch")]
pub use files::write_csv;
pub use files::{write_atomic, write_json};
pub use progress::Progress;
pub use table::{Align, Table};
