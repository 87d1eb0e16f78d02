//! Fine-tuning, the tutorial's way: Adam, a fixed learning rate, validation
//! every half epoch, the model with the lowest validation loss kept, then a
//! classification report on the test set.
//!
//! Data-parallel over MPI through `crate::train`: every rank holds the model,
//! each global batch is dealt out over the ranks, gradients are all-reduced in
//! one fused buffer weighted by shard size, and all ranks step alike. Batches,
//! dropout masks and initial weights are pure functions of the seed and the
//! step, so an interrupted run resumed from its checkpoint ends exactly where
//! an uninterrupted one does, and 2 ranks train like 1 (float rounding aside).
//!
//! Rank 0 writes, atomically: `model.safetensors` (the best model, Hugging
//! Face names, loadable by `transformers` with `config.json` and the tokenizer
//! files beside it), `checkpoint.safetensors` (model, Adam state and trainer
//! state, at every validation and when a signal asks to stop).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tch::{Kind, Tensor};

use super::config::BertConfig;
use super::data::{self, Column, Columns, Encoded, Labels, Split};
use super::dropout::{Dropout, DropoutKeys};
use super::hub::{self, ModelFiles};
use super::model::{self, InferenceWeights, Pass};
use super::predict::{self, Evaluation};
use super::source::{self, Shares, Source};
use super::tokenize::{self, TextTokenizer};
use super::{weights, Classifier};
use crate::bail_usage;
use crate::cluster::Cluster;
use crate::device::{self, DeviceRequest};
use crate::report::write_json;
use crate::train::checkpoint::{write_safetensors_with_metadata, Checkpoint};
use crate::train::metrics::ClassificationReport;
use crate::train::rng::{derive, seed_torch_for_step};
use crate::train::{Adam, DataParallel, Optimizer, Params, Precision, SparseRows, StopSignal};

pub const MODEL_FILE: &str = "model.safetensors";
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
/// An unlabelled test file's predicted classes, in `-o`.
pub const TEST_PREDICTIONS_FILE: &str = "test_predictions.csv";

/// Everything a training run depends on; saved as `run_config.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainConfig {
    /// `None`: the offline MiniLM.
    pub model: Option<String>,
    pub source: PathBuf,
    pub output: PathBuf,
    #[serde(with = "device_text")]
    pub device: DeviceRequest,
    pub threads: Option<usize>,
    pub precision: Precision,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub max_len: usize,
    pub seed: u64,
    /// `None`: the first usual name the training file has (`titletext`,
    /// `text`, `sentence`, ...; see [`data::TEXT_COLUMNS`]). `run` records the
    /// columns it read.
    #[serde(default)]
    pub text_column: Option<String>,
    /// `None`: `label` or another usual name ([`data::LABEL_COLUMNS`]).
    #[serde(default)]
    pub label_column: Option<String>,
    /// The second text of pairs. `None`: a usual pair where no text column
    /// was named ([`super::columns::PAIR_COLUMNS`]), else single texts.
    #[serde(default)]
    pub text_pair_column: Option<String>,
    pub skip_bad_rows: bool,
    pub resume: bool,
    /// Validate every this many steps; `None`: every half epoch.
    pub eval_every: Option<usize>,
    /// Texts per evaluation batch (more when they are short: the budget is
    /// this many texts of 128 tokens).
    pub eval_batch_size: usize,
    /// Stop after this many steps (benchmarks, smoke tests); `None`: all epochs.
    #[serde(default)]
    pub max_steps: Option<usize>,
    /// Names for the classes, as (value in the CSVs, name); empty: the values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub class_names: Vec<(String, String)>,
    /// `--split`: how a single source file is split; `None`: 80/10/10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<Shares>,
}

/// `--device` as the text the user typed.
mod device_text {
    use crate::device::DeviceRequest;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &DeviceRequest, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&d.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DeviceRequest, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// What fixes a run's trajectory: a checkpoint resumes only a run with the
/// same identity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Identity {
    model: String,
    train_data: String,
    labels: Vec<String>,
    epochs: usize,
    batch_size: usize,
    lr: f64,
    max_len: usize,
    seed: u64,
    precision: Precision,
    eval_every: usize,
    total_steps: u64,
}

/// Losses and validation results so far (the tutorial's metrics.pt).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct History {
    pub global_steps: Vec<u64>,
    pub train_loss: Vec<f64>,
    pub valid_loss: Vec<f64>,
    pub valid_accuracy: Vec<f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Best {
    pub step: u64,
    pub valid_loss: f64,
}

/// The trainer's own state in a checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct TrainerState {
    identity: Identity,
    step: u64,
    /// Sum over steps since the last validation of the global batch's mean loss.
    running_loss: f64,
    steps_since_eval: u64,
    history: History,
    best: Option<Best>,
    train_seconds: f64,
    samples: u64,
}

/// What happens during a run, for rank 0 to show as it happens.
pub enum Event<'a> {
    Started(&'a Started),
    Resumed {
        step: u64,
        total: u64,
        path: &'a Path,
    },
    NothingToResume {
        path: &'a Path,
    },
    Validated {
        epoch: usize,
        epochs: usize,
        step: u64,
        total: u64,
        train_loss: f64,
        valid: &'a Evaluation,
    },
    Saved {
        path: &'a Path,
    },
    Stopped {
        signal: &'a str,
        step: u64,
        total: u64,
        path: &'a Path,
    },
    Finished {
        steps: u64,
        seconds: f64,
        samples_per_second: f64,
    },
    BestLoaded {
        path: &'a Path,
        best: &'a Best,
    },
    /// `set`: the file (or a file's split) evaluated; `missing`: the test set
    /// there is not, when it is the validation set instead.
    Testing {
        set: &'a str,
        rows: usize,
        missing: Option<&'a str>,
    },
}

/// Receives events and step progress; rank 0's shows them, others ignore.
pub trait Sink {
    fn event(&mut self, event: Event);
    fn step(&mut self, step: u64, total: u64, loss: f64);
}

/// The run as it starts: model, data, placement.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Started {
    pub model: String,
    pub model_dir: PathBuf,
    pub parameters: usize,
    pub layers: i64,
    pub hidden: i64,
    pub new_parameters: Vec<String>,
    pub tokenizer: String,
    pub device: String,
    pub precision: Precision,
    pub cpu_engine: Option<String>,
    pub threads_per_rank: usize,
    pub ranks: usize,
    pub nodes: usize,
    pub labels: Vec<String>,
    /// The labels are a multi-label set's: each text may have any of them.
    #[serde(default)]
    pub multi_label: bool,
    /// The classes' values in the CSVs, where `--class-names` named them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub label_values: Vec<String>,
    pub train_rows: usize,
    pub valid_rows: usize,
    pub test_rows: Option<usize>,
    /// The train, valid and test files' names (the test file's expected name
    /// where there is none).
    #[serde(default)]
    pub files: Vec<String>,
    /// The test file has no label column.
    #[serde(default)]
    pub test_unlabelled: bool,
    /// The columns read.
    #[serde(default)]
    pub text_column: String,
    #[serde(default)]
    pub label_column: String,
    /// How the columns were found, when not by their names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns_found_by: Option<String>,
    /// The second text's column, for pairs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_pair_column: Option<String>,
    /// How one source file was split (`spam.csv split 80/10/10 by class (seed 42)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_by: Option<String>,
    pub skipped_rows: Vec<(String, usize)>,
    pub max_len: usize,
    pub truncated_fraction: f64,
    pub mean_tokens: f64,
    pub batch_size: usize,
    pub steps: u64,
    pub eval_every: u64,
}

/// The whole run, as `results.json` records it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainRun {
    pub workload: String,
    pub version: String,
    pub config: TrainConfig,
    pub started: Started,
    pub steps: u64,
    pub resumed_from: Option<u64>,
    pub history: History,
    pub best: Option<Best>,
    pub train_seconds: f64,
    pub train_samples_per_second: f64,
    pub test_file: PathBuf,
    /// Wall time of the test evaluation (inference only).
    pub test_seconds: f64,
    pub test_samples_per_second: f64,
    /// Validation accuracy of the best model.
    pub best_valid_accuracy: Option<f64>,
    pub test: Evaluation,
    pub report: ClassificationReport,
    pub report_text: String,
    /// The classes of an unlabelled test file's rows, written beside the
    /// record as a CSV file (not into it: a test set may be large).
    #[serde(skip)]
    pub test_predictions: Option<TestPredictions>,
}

/// An unlabelled test file's rows classified by the best model.
#[derive(Clone, Debug)]
pub struct TestPredictions {
    /// Each row's index among the file's records (see [`Split::records`]).
    pub index: Vec<u64>,
    pub rows: PredictedRows,
}

/// What the model says of each row of [`TestPredictions`].
#[derive(Clone, Debug)]
pub enum PredictedRows {
    /// Class id and its probability.
    Classes(Vec<(usize, f32)>),
    /// A multi-label model's probability of each label.
    Labels(Vec<Vec<f32>>),
}

impl TestPredictions {
    fn new(split: &Split, logits: &[Vec<f32>], multi: bool) -> TestPredictions {
        let rows = match multi {
            true => PredictedRows::Labels(logits.iter().map(|l| predict::sigmoid(l)).collect()),
            false => PredictedRows::Classes(logits.iter().map(|l| predict::argmax(&predict::softmax(l))).collect()),
        };
        TestPredictions { index: split.records.clone(), rows }
    }
}

/// How a run ended.
pub enum Outcome {
    /// Trained (or resumed to the end) and tested; rank 0 holds the record.
    Done(Option<Box<TrainRun>>),
    /// A signal asked to stop; the checkpoint is saved.
    Stopped,
}

/// Loads data, model and (with `--resume`) the checkpoint; trains; tests the
/// best model. Every rank runs this; rank 0 writes files and gets the record.
pub fn run(cluster: &Cluster, cfg: &TrainConfig, sink: &mut dyn Sink) -> Result<Outcome> {
    let signal = StopSignal::install()?;
    let dev = cluster.agree(device::resolve(cfg.device, cluster.local_rank()))?;
    device::set_cudnn_attention_from_env();
    // Setting up CUDA replaces signal handlers; ours go back.
    signal.reassert();
    let threads = device::apply_threads(cfg.threads, cluster.default_threads());
    device::host_memory::keep_freed_memory();
    let out = &cfg.output;

    // Rank 0 resolves the model (downloading it if need be), the others use
    // the directory it found, so a job downloads once.
    let files = resolve_model_once(cluster, cfg.model.as_deref())?;
    let config = cluster.agree(BertConfig::from_file(&files.config))?;
    if cfg.max_len as i64 > config.max_tokens() {
        return cluster.agree(Err(crate::cli::usage(format!(
            "--max-len {} is longer than the model's {} positions: pass --max-len {} or less",
            cfg.max_len,
            config.max_tokens(),
            config.max_tokens()
        ))));
    }
    let tokenizer = cluster.agree(TextTokenizer::load(&files.dir, cfg.max_len))?;
    let data = cluster.agree(load_data(cfg, &tokenizer))?;
    // From here on, the columns are the ones read: run_config.json and the
    // model record name them, so `evaluate` and `predict` read the same.
    let cfg = &TrainConfig {
        text_column: Some(data.train_split.text_column.clone()),
        label_column: data.train_split.label_column.clone(),
        text_pair_column: data.train_split.pair_column.clone(),
        ..cfg.clone()
    };

    let eval_every = cfg.eval_every.unwrap_or(data.batches_per_epoch / 2).max(1) as u64;
    let mut total = (data.batches_per_epoch * cfg.epochs) as u64;
    if let Some(max) = cfg.max_steps {
        total = total.min(max.max(1) as u64);
    }
    let identity = Identity {
        model: files.name.clone(),
        train_data: data::fingerprint(&data.train_split),
        labels: data.labels.names.clone(),
        epochs: cfg.epochs,
        batch_size: cfg.batch_size,
        lr: cfg.lr,
        max_len: cfg.max_len,
        seed: cfg.seed,
        precision: cfg.precision,
        eval_every: eval_every as usize,
        total_steps: total,
    };

    // The pre-trained weights, the new head drawn from the seed.
    let pretrained = cluster.agree(weights::read_checkpoint(&files))?;
    tch::manual_seed((derive(cfg.seed, "init", 0) >> 1) as i64);
    let (clf, report) = cluster.agree(Classifier::build(
        &config,
        data.labels.len() as i64,
        dev.tch(),
        &pretrained,
        &files.name,
        false,
    ))?;
    drop(pretrained);
    let params = Params::trainable(&clf.vs);
    let mut dp = DataParallel::new(cluster);
    let mut opt = Adam::new(&params)?;

    let ck_path = out.join(CHECKPOINT_FILE);
    let model_path = out.join(MODEL_FILE);
    let mut state = TrainerState {
        identity: identity.clone(),
        step: 0,
        running_loss: 0.0,
        steps_since_eval: 0,
        history: History::default(),
        best: None,
        train_seconds: 0.0,
        samples: 0,
    };
    let mut resumed_from = None;
    let resume = if cfg.resume && ck_path.is_file() {
        Some(cluster.agree(load_checkpoint(&ck_path, &identity, &params, &mut opt))?)
    } else {
        None
    };
    match resume {
        Some(saved) => {
            state = saved;
            resumed_from = Some(state.step);
            if !cluster.is_root() {
                // Rank 0 carries the saved running sum; the others start from zero.
                state.running_loss = 0.0;
            }
        }
        None => dp.broadcast(&params)?,
    }

    let started = Started {
        model: files.name.clone(),
        model_dir: files.dir.clone(),
        parameters: params.numel(),
        layers: config.num_hidden_layers,
        hidden: config.hidden_size,
        new_parameters: report.new.clone(),
        tokenizer: tokenizer.source.to_string(),
        device: dev.to_string(),
        precision: cfg.precision,
        cpu_engine: if dev.is_cuda() { None } else { cfg.precision.cpu_engine().map(str::to_string) },
        threads_per_rank: threads,
        ranks: cluster.size(),
        nodes: cluster.nodes(),
        labels: data.labels.names.clone(),
        multi_label: data.labels.multi,
        label_values: if data.labels.is_named() { data.labels.values.clone() } else { Vec::new() },
        train_rows: data.train.len(),
        valid_rows: data.valid.len(),
        test_rows: data.test.as_ref().map(|t| t.0.len()),
        files: data.files.to_vec(),
        test_unlabelled: data.unlabelled_test.is_some(),
        text_column: data.train_split.text_column.clone(),
        label_column: data.train_split.label_column.clone().unwrap_or_default(),
        columns_found_by: data.train_split.found_by.clone(),
        text_pair_column: data.train_split.pair_column.clone(),
        split_by: data.split_by.clone(),
        skipped_rows: data.skipped.clone(),
        max_len: cfg.max_len,
        truncated_fraction: data.truncated_fraction,
        mean_tokens: data.mean_tokens,
        batch_size: cfg.batch_size,
        steps: total,
        eval_every,
    };
    if cluster.is_root() {
        cluster.agree(prepare_output(out, &files, &config, &data.labels, cfg))?;
    } else {
        cluster.agree(Ok(()))?;
    }
    sink.event(Event::Started(&started));
    if cfg.resume {
        match resumed_from {
            Some(step) => sink.event(Event::Resumed { step, total, path: &ck_path }),
            None => sink.event(Event::NothingToResume { path: &ck_path }),
        }
    }

    let ctx = StepContext { cluster, cfg, clf: &clf, params: &params, data: &data, pad_id: tokenizer.pad_id };
    let mut epoch_batches: Option<(usize, Vec<Vec<usize>>)> = None;
    let mut pending_loss: Option<(u64, Tensor)> = None;
    // Validation and test in the training precision, on weights cast once (and
    // packed for oneDNN where that pays, see packed_linear::packs_for_inference).
    let inference = InferenceWeights::Cast(cfg.precision);
    while state.step < total {
        let step = state.step;
        let epoch = (step / data.batches_per_epoch as u64) as usize;
        if epoch_batches.as_ref().map(|(e, _)| *e) != Some(epoch) {
            epoch_batches =
                Some((epoch, data::train_batches(&data.train.lengths(), cfg.batch_size, cfg.seed, epoch as u64)));
        }
        let batch = match &epoch_batches {
            Some((_, b)) => b[(step % data.batches_per_epoch as u64) as usize].clone(),
            None => unreachable!("batches are made above"),
        };
        let began = Instant::now();
        let (loss, stop) = ctx.train_step(&mut dp, &mut opt, &batch, step, signal.requested().is_some())?;
        let evaluates = (step + 1).is_multiple_of(eval_every) || step + 1 == total;
        // The loss is read one step late, once the GPU is past it: reading it
        // now would make the host wait for this step before queueing the next.
        let reads_now = evaluates || stop;
        for (at, loss) in pending_loss.take().into_iter().chain(reads_now.then_some((step + 1, loss.shallow_clone()))) {
            let value = loss.f_double_value(&[])?;
            state.running_loss += value;
            sink.step(at, total, value);
        }
        if !reads_now {
            pending_loss = Some((step + 1, loss));
        }
        state.train_seconds += began.elapsed().as_secs_f64();
        state.samples += batch.len() as u64;
        state.steps_since_eval += 1;
        state.step += 1;

        if evaluates {
            let mut sums = [state.running_loss];
            dp.sum_metrics(&mut sums);
            let train_loss = sums[0] / state.steps_since_eval.max(1) as f64;
            let model = predict::Prepared::new(&clf, inference)?;
            let valid = predict::evaluate(cluster, &model, &data.valid, tokenizer.pad_id, cfg.eval_batch_size)?;
            state.history.global_steps.push(state.step);
            state.history.train_loss.push(train_loss);
            state.history.valid_loss.push(valid.loss);
            state.history.valid_accuracy.push(valid.accuracy);
            state.running_loss = 0.0;
            state.steps_since_eval = 0;
            sink.event(Event::Validated {
                epoch: epoch + 1,
                epochs: cfg.epochs,
                step: state.step,
                total,
                train_loss,
                valid: &valid,
            });
            if state.best.as_ref().is_none_or(|b| valid.loss < b.valid_loss) {
                state.best = Some(Best { step: state.step, valid_loss: valid.loss });
                root_writes(cluster, || save_model(&model_path, &clf, cfg, &data.labels, &config, &state))?;
                sink.event(Event::Saved { path: &model_path });
            }
            root_writes(cluster, || save_checkpoint(&ck_path, &params, &opt, &state))?;
            root_writes(cluster, || write_json(&out.join("metrics.json"), &state.history))?;
        }
        if stop && state.step < total {
            if state.steps_since_eval > 0 {
                let mut sums = [state.running_loss];
                dp.sum_metrics(&mut sums);
                let mut saved = state.clone();
                saved.running_loss = sums[0];
                root_writes(cluster, || save_checkpoint(&ck_path, &params, &opt, &saved))?;
            }
            let name = signal.requested().unwrap_or("a signal from another rank");
            sink.event(Event::Stopped { signal: name, step: state.step, total, path: &ck_path });
            return Ok(Outcome::Stopped);
        }
    }
    let samples_per_second = state.samples as f64 / state.train_seconds.max(1e-9);
    let train_seconds = cluster.max_f64(state.train_seconds);
    let samples_per_second = cluster.min_f64(samples_per_second);
    sink.event(Event::Finished { steps: total, seconds: train_seconds, samples_per_second });

    // The best model, on the test set (or the validation set without one).
    let best = state.best.clone().unwrap_or(Best { step: state.step, valid_loss: f64::NAN });
    let saved = cluster.agree(Checkpoint::load(&model_path))?;
    let all = Params::all(&clf.vs);
    cluster.agree(saved.restore(&all.names, &all.tensors))?;
    sink.event(Event::BestLoaded { path: &model_path, best: &best });
    let (test_set, test_file, test_name, missing) = match &data.test {
        Some((set, path, name)) => (set, path.clone(), name.as_str(), None),
        None => {
            let missing = match (&data.split_by, &data.unlabelled_test) {
                (Some(_), _) => "test split (--split ...,0)".to_string(),
                (None, Some(u)) => format!(
                    "labels in {} ({}; its predictions go to {})",
                    u.split.path.display(),
                    u.why,
                    cfg.output.join(TEST_PREDICTIONS_FILE).display()
                ),
                (None, None) => cfg.source.join("test.csv").display().to_string(),
            };
            (&data.valid, data.valid_path.clone(), data.valid_name.as_str(), Some(missing))
        }
    };
    sink.event(Event::Testing { set: test_name, rows: test_set.len(), missing: missing.as_deref() });
    // Prepared before the clock starts, as the Python side loads its best
    // weights before it times the test set.
    let model = predict::Prepared::new(&clf, inference)?;
    cluster.barrier();
    let t0 = cluster.wtime();
    let test = predict::evaluate(cluster, &model, test_set, tokenizer.pad_id, cfg.eval_batch_size)?;
    let test_predictions = match &data.unlabelled_test {
        Some(u) => {
            let logits = predict::logits(cluster, &model, &u.ids, tokenizer.pad_id, cfg.eval_batch_size)?;
            Some(TestPredictions::new(&u.split, &logits, data.labels.multi))
        }
        None => None,
    };
    dev.synchronize();
    let test_seconds = cluster.max_f64(cluster.wtime() - t0);
    if !cluster.is_root() {
        return Ok(Outcome::Done(None));
    }
    let report = test.report(&data.labels.names);
    let report_text = report.to_text(4);
    let best_valid_accuracy = state.best.as_ref().and_then(|b| {
        let h = &state.history;
        h.global_steps.iter().position(|&s| s == b.step).and_then(|i| h.valid_accuracy.get(i).copied())
    });
    Ok(Outcome::Done(Some(Box::new(TrainRun {
        workload: "bert-classifier".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        config: cfg.clone(),
        started,
        steps: total,
        resumed_from,
        history: state.history,
        best: state.best,
        train_seconds,
        train_samples_per_second: samples_per_second,
        test_file,
        test_seconds,
        test_samples_per_second: test.rows as f64 / test_seconds.max(1e-9),
        best_valid_accuracy,
        test,
        report,
        report_text,
        test_predictions,
    }))))
}

/// Rank 0 resolves (and maybe downloads) the model; the others then look in
/// the directory it found.
fn resolve_model_once(cluster: &Cluster, model: Option<&str>) -> Result<ModelFiles> {
    let mine = if cluster.is_root() { hub::resolve(model).map(Some) } else { Ok(None) };
    let mine = cluster.agree(mine)?;
    let dir = cluster.broadcast_value(&mine.as_ref().map(|f| (f.name.clone(), f.dir.clone())))?;
    let files = match (mine, dir) {
        (Some(files), _) => Ok(files),
        (None, Some((name, dir))) => ModelFiles::in_dir(&name, &dir),
        (None, None) => Err(anyhow::anyhow!("rank 0 resolved no model")),
    };
    cluster.agree(files)
}

/// A test file without labels, tokenised.
struct Unlabelled {
    split: Split,
    ids: Vec<Vec<u32>>,
    /// Why its labels are none, for the log.
    why: &'static str,
}

/// The splits, tokenised, with what the log says about them.
struct Data {
    train_split: Split,
    train: Encoded,
    valid: Encoded,
    valid_path: PathBuf,
    /// `valid.csv`, or `spam.csv (valid split)`, for the log.
    valid_name: String,
    /// The test set, its file and its name for the log.
    test: Option<(Encoded, PathBuf, String)>,
    /// A test file without labels (as Kaggle's and GLUE's are): not scored,
    /// but classified.
    unlabelled_test: Option<Unlabelled>,
    /// The train, valid and test files' names, for the log.
    files: [String; 3],
    /// How a single source file was split, for the log.
    split_by: Option<String>,
    labels: Labels,
    skipped: Vec<(String, usize)>,
    batches_per_epoch: usize,
    truncated_fraction: f64,
    mean_tokens: f64,
}

/// The training set less a share held out by class for validation, where
/// the data has a test set but no validation set.
fn hold_out(train: Split, cfg: &TrainConfig) -> Result<(Split, Split)> {
    let shares = cfg.split.unwrap_or(source::HELD_OUT);
    if shares.test > 0 {
        bail_usage!(
            "--split {shares}: {} has its own test set, so the test share must be 0 (such as --split 90,10,0)",
            cfg.source.display()
        );
    }
    let (part, mut valid, _) = source::split_by_class(&train, shares, cfg.seed)?;
    valid.name = format!("valid held out of {} ({}% by class, seed {})", train.name, shares.valid, cfg.seed);
    Ok((Split { name: train.name.clone(), ..part }, valid))
}

/// The splits of all the labelled data, by class in `--split`'s shares.
type Splits = (Split, Split, Option<Split>, Option<String>, [String; 3]);

fn split_whole(all: Split, cfg: &TrainConfig) -> Result<Splits> {
    if all.is_empty() {
        bail_usage!("{} has no rows to train on", all.path.display());
    }
    let shares = cfg.split.unwrap_or_default();
    let (train, valid, test) = source::split_by_class(&all, shares, cfg.seed)?;
    let how = format!("{} split {shares} by class (seed {})", all.name, cfg.seed);
    Ok((train, valid, test, Some(how), ["train", "valid", "test"].map(str::to_string)))
}

fn load_data(cfg: &TrainConfig, tokenizer: &TextTokenizer) -> Result<Data> {
    if cfg.epochs == 0 || cfg.batch_size == 0 {
        bail_usage!("--epochs and --batch-size must be at least 1");
    }
    let read = |p: &Path, cols: &Columns| data::read_labelled(p, cols, cfg.skip_bad_rows);
    let pair = match (&cfg.text_pair_column, &cfg.text_column) {
        (Some(c), _) => Some(Column::Named(c.clone())),
        (None, None) => Some(Column::Usual),
        (None, Some(_)) => None,
    };
    let flags = Columns {
        text: Column::from_flag(cfg.text_column.clone()),
        label: Some(Column::from_flag(cfg.label_column.clone())),
        pair,
    };
    let mut unlabelled_test = None;
    let (train_split, valid_split, test_split, split_by, files) = match Source::find(&cfg.source)? {
        Source::Dir { valid: Some(_), .. } if cfg.split.is_some() => bail_usage!(
            "--split divides a single file given as -s FILE, or a directory's train.csv where it has no valid.csv; {} has its own train.csv and valid.csv",
            cfg.source.display()
        ),
        Source::Dir { train, valid, test } => {
            let train = read(&train, &flags)?;
            // The other files are read by the columns the training file had.
            let others = Columns {
                text: Column::Named(train.text_column.clone()),
                label: train.label_column.clone().map(Column::Named).or(flags.label),
                pair: train.pair_column.clone().map(Column::Named),
            };
            let (train, valid) = match valid {
                Some(v) => (train, read(&v, &others)?),
                None => hold_out(train, cfg)?,
            };
            let test_name = test.as_deref().map_or_else(|| "test.csv".to_string(), data::file_name);
            let test = match test {
                Some(p) => {
                    // Read now, so a bad row stops the run before training, not after.
                    let (split, labelled) = data::read_maybe_labelled(&p, &others, cfg.skip_bad_rows)
                        .with_context(|| format!("reading {}", p.display()))?;
                    if labelled {
                        Some(split)
                    } else {
                        let ids = data::encode_texts(tokenizer, &split)?;
                        unlabelled_test = Some(Unlabelled { ids, split, why: "it has no label column" });
                        None
                    }
                }
                None => None,
            };
            let files = [train.name.clone(), valid.name.clone(), test_name];
            (train, valid, test, None, files)
        }
        Source::File(path) => split_whole(read(&path, &flags)?, cfg)?,
        Source::Classes { train, test: None } => split_whole(train.read(&flags.text, cfg.skip_bad_rows)?, cfg)?,
        Source::Classes { train, test: Some(test) } => {
            let (train, valid) = hold_out(train.read(&flags.text, cfg.skip_bad_rows)?, cfg)?;
            // Read as train was: by the same flag, or the same usual names.
            let test = test.read(&flags.text, cfg.skip_bad_rows)?;
            let files = [train.name.clone(), valid.name.clone(), test.name.clone()];
            (train, valid, Some(test), None, files)
        }
    };
    if train_split.is_empty() {
        bail_usage!("{} has no rows to train on", train_split.path.display());
    }
    let labels = Labels::from_split(&train_split)?;
    // The flag's names, else those the file gives (Hugging Face's ClassLabel).
    let names = match cfg.class_names.is_empty() {
        true => labels.names_from_file(&train_split),
        false => cfg.class_names.clone(),
    };
    let labels = labels.named(&names, &train_split.path)?;
    if valid_split.is_empty() {
        bail_usage!("{} has no rows to validate on", valid_split.path.display());
    }
    // Hugging Face's exports of GLUE's test sets mark every label -1: none.
    let test_split = match test_split {
        Some(t) if !t.is_empty() && t.labels.iter().all(|l| l == "-1") && !labels.values.iter().any(|v| v == "-1") => {
            let ids = data::encode_texts(tokenizer, &t)?;
            unlabelled_test =
                Some(Unlabelled { ids, split: t, why: "its labels are all -1, Hugging Face's mark for none" });
            None
        }
        t => t,
    };
    let encode = |s: &Split| -> Result<Encoded> { Encoded::labelled(tokenizer, s, &labels, &train_split.name) };
    let train = encode(&train_split)?;
    let valid = encode(&valid_split)?;
    // The log names a file, or a file's part.
    let describe = |s: &Split, part: &str| match &split_by {
        Some(_) => format!("the {part} split of {}", s.path.display()),
        None if s.path == train_split.path && part != "train" => format!("the {part} split of {}", s.path.display()),
        None => s.path.display().to_string(),
    };
    let test = match &test_split {
        Some(s) if !s.is_empty() => Some((encode(s)?, s.path.clone(), describe(s, "test"))),
        _ => None,
    };
    let mut skipped = vec![
        (train_split.name.clone(), train_split.skipped.len()),
        (valid_split.name.clone(), valid_split.skipped.len()),
    ];
    if let Some(t) = &test_split {
        skipped.push((t.name.clone(), t.skipped.len()));
    }
    skipped.retain(|(_, n)| *n > 0);
    let lengths = train.lengths();
    let truncated = lengths.iter().filter(|&&l| l >= tokenizer.max_len).count();
    Ok(Data {
        batches_per_epoch: train.len().div_ceil(cfg.batch_size),
        truncated_fraction: truncated as f64 / lengths.len().max(1) as f64,
        mean_tokens: lengths.iter().sum::<usize>() as f64 / lengths.len().max(1) as f64,
        valid_path: valid_split.path.clone(),
        valid_name: describe(&valid_split, "valid"),
        split_by,
        train_split,
        train,
        valid,
        test,
        unlabelled_test,
        files,
        labels,
        skipped,
    })
}

struct StepContext<'a> {
    cluster: &'a Cluster,
    cfg: &'a TrainConfig,
    clf: &'a Classifier,
    params: &'a Params,
    data: &'a Data,
    pad_id: i64,
}

impl StepContext<'_> {
    /// One optimizer step on a global batch; returns this rank's share of the
    /// batch's mean loss and whether any rank was asked to stop.
    fn train_step(
        &self,
        dp: &mut DataParallel,
        opt: &mut Adam,
        batch: &[usize],
        step: u64,
        stop: bool,
    ) -> Result<(Tensor, bool)> {
        let dealt = data::deal(batch, self.cluster.size());
        let rows = &dealt[dp.shard(dealt.len())];
        let weight = rows.len() as f64 / batch.len().max(1) as f64;
        let device = self.clf.vs.device();
        let mut loss_value = Tensor::f_zeros([], (Kind::Double, tch::Device::Cpu))?;
        if !rows.is_empty() {
            seed_torch_for_step(self.cfg.seed, step);
            let keys = DropoutKeys::new(
                self.cfg.seed,
                step,
                rows.iter().map(|&r| r as u64).collect(),
                self.clf.model.config.max_position_embeddings,
            );
            let dropout = if device == tch::Device::Cpu { Dropout::Keyed(&keys) } else { Dropout::Torch };
            let pass = Pass { precision: self.cfg.precision, dropout };
            let input = self.data.train.batch(rows, self.pad_id, device)?;
            let labels = self.data.train.labels_of(rows, device)?;
            let logits = self.clf.model.logits(&input, &pass)?;
            // Scaled by the shard's share here, the gradients need no pass of
            // their own before they are summed over ranks.
            let loss = model::loss(&logits, &labels)?;
            let share = if weight == 1.0 { loss } else { loss.f_mul_scalar(weight)? };
            DataParallel::fresh_gradients(&share, self.params)?;
            loss_value = share.f_detach()?;
        } else {
            self.params.zero_grad();
        }
        // The vocabulary is half the model; only the rows looked up carry gradient.
        let looked_up: Vec<i64> =
            rows.iter().flat_map(|&r| self.data.train.ids[r].iter().map(|&t| i64::from(t))).collect();
        let word_embeddings = format!("{}.embeddings.word_embeddings.weight", self.clf.model.config.family().prefix());
        let sparse = [SparseRows { param: word_embeddings, rows: looked_up }];
        let any_stop = dp.all_reduce_gradients_sparse(self.params, 1.0, stop, &sparse)?;
        opt.step(self.params, self.cfg.lr)?;
        Ok((loss_value, any_stop))
    }
}

/// Runs `write` on rank 0 and makes every rank agree on how it went.
fn root_writes(cluster: &Cluster, write: impl FnOnce() -> Result<()>) -> Result<()> {
    let r = if cluster.is_root() { write() } else { Ok(()) };
    cluster.agree(r)
}

/// `-o`: the directory, the run's config, the tokenizer and `config.json`, so
/// it is a Hugging Face checkpoint as soon as the first model is saved.
fn prepare_output(
    out: &Path,
    files: &ModelFiles,
    config: &BertConfig,
    labels: &Labels,
    cfg: &TrainConfig,
) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create the output directory {}", out.display()))?;
    write_json(&out.join("run_config.json"), cfg)?;
    write_json(&out.join("config.json"), &config.for_classification(labels))?;
    tokenize::copy_files(&files.dir, out)?;
    Ok(())
}

/// The best model: Hugging Face names and `format: pt` (so `transformers`
/// loads the directory), and the run's record for `predict`.
fn save_model(
    path: &Path,
    clf: &Classifier,
    cfg: &TrainConfig,
    labels: &Labels,
    config: &BertConfig,
    state: &TrainerState,
) -> Result<()> {
    let tensors = weights::named_float_tensors(&clf.vs)?;
    let record = serde_json::json!({
        "kind": "bert-classifier model",
        "labels": labels.names,
        "max_len": cfg.max_len,
        "step": state.best.as_ref().map(|b| b.step),
        "valid_loss": state.best.as_ref().map(|b| b.valid_loss),
        "text_column": cfg.text_column,
        "label_column": cfg.label_column,
        "text_pair_column": cfg.text_pair_column,
        "base_model": state.identity.model,
        "config": config.for_classification(labels),
    });
    write_safetensors_with_metadata(path, &tensors, Some(&record), &[("format", "pt")])
}

fn save_checkpoint(path: &Path, params: &Params, opt: &Adam, state: &TrainerState) -> Result<()> {
    let mut tensors: Vec<(String, Tensor)> = params.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect();
    tensors.extend(opt.state(params));
    let state = serde_json::to_value(state)?;
    Checkpoint::save(path, &tensors, &state)
}

fn load_checkpoint(path: &Path, identity: &Identity, params: &Params, opt: &mut Adam) -> Result<TrainerState> {
    let ck = Checkpoint::load(path).map_err(|e| crate::cli::usage(format!("--resume: {e:#}")))?;
    let state: TrainerState = serde_json::from_value(ck.state.clone()).map_err(|e| {
        crate::cli::usage(format!("--resume: {} is not a bert-classifier checkpoint ({e})", path.display()))
    })?;
    if &state.identity != identity {
        let (a, b) = (serde_json::to_value(&state.identity)?, serde_json::to_value(identity)?);
        let diffs: Vec<String> = a
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, v)| b.get(k.as_str()) != Some(v))
            .map(|(k, v)| format!("{k} {v} (now {})", b.get(k.as_str()).unwrap_or(&Value::Null)))
            .collect();
        bail_usage!(
            "--resume: {} comes from a different run: {}; resume with the same settings and data, or use another -o",
            path.display(),
            diffs.join(", ")
        );
    }
    ck.restore(&params.names, &params.tensors).map_err(|e| crate::cli::usage(format!("--resume: {e:#}")))?;
    opt.load_state(params, &ck.tensors).map_err(|e| crate::cli::usage(format!("--resume: {e:#}")))?;
    Ok(state)
}
