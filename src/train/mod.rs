//! What every trainer shares (MNIST and BERT alike):
//!
//! - [`params`]: a model's trainable tensors in a fixed order, by name;
//! - [`parallel`]: data parallelism over MPI the Horovod way: parameters broadcast
//!   from rank 0, each rank a shard of every global batch, gradients packed into
//!   one fused buffer, all-reduced, weighted by shard size; the stop flag of a
//!   signal rides along in the same all-reduce;
//! - [`optim`]: SGD with momentum and Adam whose state we own, so checkpoints
//!   hold it and a resumed run continues exactly;
//! - [`checkpoint`]: atomic safetensors checkpoints with a JSON state beside the
//!   tensors in the same file;
//! - [`signals`]: SIGTERM / SIGUSR1 / SIGINT turned into "checkpoint and stop";
//! - [`rng`]: counter-based seeds for shuffles and dropout, so a run depends only
//!   on its seed and step, never on how it was interrupted;
//! - [`metrics`]: confusion matrix and scikit-learn's classification report;
//! - [`precision`]: fp32 or bf16 compute with fp32 master weights.

pub mod checkpoint;
pub mod fused;
pub mod metrics;
pub mod optim;
pub mod parallel;
pub mod params;
pub mod precision;
pub mod rng;
pub mod signals;

pub use checkpoint::Checkpoint;
pub use optim::{Adam, Elementwise, Optimizer, Sgd};
pub use parallel::{DataParallel, SparseRows};
pub use params::Params;
pub use precision::Precision;
pub use signals::StopSignal;
