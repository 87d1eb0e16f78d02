//! Running a classifier over texts: class probabilities (`predict`) and, on
//! labelled texts, loss, accuracy and the confusion matrix (`evaluate`, and
//! validation during training).
//!
//! Work is split over ranks batch by batch (length-sorted batches, each padded
//! to its own longest text) and the results are summed or gathered on every
//! rank, so any number of ranks gives the same numbers.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tch::Device;

use super::class_folders::ClassSet;
use super::config::BertConfig;
use super::data::{self, Column, Columns, Encoded, Labels, Split};
use super::hub::{self, ModelFiles};
use super::model::{self, BertClassifier, InferenceWeights, Pass};
use super::tokenize::TextTokenizer;
use super::{weights, Classifier};
use crate::bail_usage;
use crate::cluster::Cluster;
use crate::device::{self, DeviceRequest};
use crate::train::metrics::{ClassificationReport, ConfusionMatrix, MultiLabelCounts};
use crate::train::Precision;

/// Loss, accuracy and confusion over a labelled set.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Evaluation {
    pub rows: u64,
    /// Mean loss per example ([`model::loss`]).
    pub loss: f64,
    /// The share of examples classified right (for multiple labels, with
    /// every label right).
    pub accuracy: f64,
    /// Classes: true against predicted (empty for multi-label models).
    pub confusion: ConfusionMatrix,
    /// A multi-label model's decisions, label by label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multi_label: Option<MultiLabelCounts>,
}

impl Evaluation {
    /// scikit-learn's `classification_report` of the evaluation.
    pub fn report(&self, names: &[String]) -> ClassificationReport {
        match &self.multi_label {
            Some(m) => m.report(names),
            None => self.confusion.report(names),
        }
    }
}

/// The batches this rank evaluates: every `size`-th, starting at its rank.
fn my_batches(batches: Vec<Vec<usize>>, cluster: &Cluster) -> Vec<Vec<usize>> {
    batches.into_iter().enumerate().filter(|(i, _)| i % cluster.size() == cluster.rank()).map(|(_, b)| b).collect()
}

/// The longest input the model takes (the token budget of a batch is
/// `batch_size` texts this long).
fn max_len(clf: &Classifier) -> usize {
    clf.model.config.max_tokens().clamp(1, 128) as usize
}

/// A classifier with its weights prepared for inference once
/// ([`BertClassifier::for_inference`]: cast, packed or quantized), as a
/// Python user's model is loaded and quantized before it runs.
pub struct Prepared<'a> {
    clf: &'a Classifier,
    copy: Option<BertClassifier>,
    precision: Precision,
}

impl<'a> Prepared<'a> {
    pub fn new(clf: &'a Classifier, weights: InferenceWeights) -> Result<Prepared<'a>> {
        let _guard = tch::no_grad_guard();
        Ok(Prepared { clf, copy: clf.model.for_inference(weights)?, precision: weights.precision() })
    }

    fn model(&self) -> &BertClassifier {
        self.copy.as_ref().unwrap_or(&self.clf.model)
    }

    fn device(&self) -> Device {
        self.clf.vs.device()
    }

    fn classes(&self) -> usize {
        self.clf.model.num_labels as usize
    }

    /// Runs the model over this rank's share ([`my_batches`]) of the
    /// length-sorted batches of rows as long as `lengths`, each made by
    /// `collate`, and hands each batch's rows and logits to `each`.
    fn run_batches(
        &self,
        cluster: &Cluster,
        lengths: &[usize],
        batch_size: usize,
        collate: impl Fn(&[usize], Device) -> Result<model::Batch>,
        mut each: impl FnMut(&[usize], tch::Tensor) -> Result<()>,
    ) -> Result<()> {
        let _guard = tch::no_grad_guard();
        let pass = Pass::eval(self.precision);
        let model = self.model();
        for rows in my_batches(data::eval_batches(lengths, batch_size, max_len(self.clf)), cluster) {
            let batch = collate(&rows, self.device())?;
            each(&rows, model.logits(&batch, &pass)?)?;
        }
        Ok(())
    }
}

/// Evaluates `model` on `set` over all ranks; every rank gets the totals.
pub fn evaluate(
    cluster: &Cluster,
    model: &Prepared,
    set: &Encoded,
    pad_id: i64,
    batch_size: usize,
) -> Result<Evaluation> {
    let classes = model.classes();
    let multi = set.is_multi_label();
    let mut confusion = ConfusionMatrix::new(if multi { 0 } else { classes });
    let mut labelled = MultiLabelCounts::new(if multi { classes } else { 0 });
    let mut loss_sum = 0.0f64;
    let collate = |rows: &[usize], device| set.batch(rows, pad_id, device);
    model.run_batches(cluster, &set.lengths(), batch_size, collate, |rows, logits| {
        let labels = set.labels_of(rows, model.device())?;
        loss_sum += model::loss_sum(&logits, &labels)?.f_double_value(&[])?;
        if multi {
            // A label is given where its sigmoid reaches 0.5: its logit is 0 or more.
            let given = Vec::<bool>::try_from(logits.f_ge(0.0)?.f_flatten(0, -1)?.f_to_device(Device::Cpu)?)?;
            for (r, predicted) in rows.iter().zip(given.chunks(classes.max(1))) {
                labelled.add(&set.sets[*r], predicted);
            }
            return Ok(());
        }
        let predicted: Vec<i64> = Vec::<i64>::try_from(logits.f_argmax(-1, false)?.f_to_device(Device::Cpu)?)?;
        for (r, p) in rows.iter().zip(predicted) {
            confusion.add(set.labels[*r] as usize, p as usize);
        }
        Ok(())
    })?;
    let mut totals = confusion.to_flat();
    totals.extend(labelled.to_flat());
    totals.push(loss_sum);
    cluster.sum_f64_slice(&mut totals);
    let loss_sum = totals.pop().unwrap_or(0.0);
    let cells = confusion.classes() * confusion.classes();
    let confusion = ConfusionMatrix::from_flat(confusion.classes(), &totals[..cells]);
    let labelled = MultiLabelCounts::from_flat(labelled.labels(), &totals[cells..]);
    let (rows, accuracy, multi_label) = match multi {
        true => (labelled.rows, labelled.accuracy(), Some(labelled)),
        false => (confusion.total(), confusion.accuracy(), None),
    };
    Ok(Evaluation { rows, loss: loss_sum / rows.max(1) as f64, accuracy, confusion, multi_label })
}

/// Class logits of every row (in row order), on every rank.
pub fn logits(
    cluster: &Cluster,
    model: &Prepared,
    ids: &[Vec<u32>],
    pad_id: i64,
    batch_size: usize,
) -> Result<Vec<Vec<f32>>> {
    let classes = model.classes();
    let lengths: Vec<usize> = ids.iter().map(Vec::len).collect();
    let mut flat = vec![0f32; ids.len() * classes];
    let collate = |rows: &[usize], device| data::collate(rows.iter().map(|&r| ids[r].as_slice()), pad_id, device);
    model.run_batches(cluster, &lengths, batch_size, collate, |rows, logits| {
        let probs: Vec<f32> = Vec::<f32>::try_from(logits.f_to_device(Device::Cpu)?.f_flatten(0, -1)?)?;
        for (k, r) in rows.iter().enumerate() {
            flat[r * classes..(r + 1) * classes].copy_from_slice(&probs[k * classes..(k + 1) * classes]);
        }
        Ok(())
    })?;
    if cluster.size() > 1 {
        // Each row was computed by exactly one rank; the others hold zeros.
        let mut wide: Vec<f64> = flat.iter().map(|&p| f64::from(p)).collect();
        cluster.sum_f64_slice(&mut wide);
        flat = wide.into_iter().map(|p| p as f32).collect();
    }
    Ok(flat.chunks(classes.max(1)).map(<[f32]>::to_vec).collect())
}

/// A fine-tuned classifier ready to run: model, tokenizer, class names.
pub struct LoadedClassifier {
    pub clf: Classifier,
    pub tokenizer: TextTokenizer,
    pub labels: Labels,
    pub files: ModelFiles,
    /// The training run's record in `model.safetensors`, if we trained it.
    pub trained: Option<serde_json::Value>,
}

/// Loads a fine-tuned classifier: a training output directory (`-o` of
/// `train`), an exported one, or any Hugging Face sequence-classification
/// checkpoint (a directory or a Hub name). `max_len` overrides the length the
/// model was trained with.
pub fn load_classifier(model: &str, max_len: Option<usize>, device: tch::Device) -> Result<LoadedClassifier> {
    let files = hub::resolve(Some(model))?;
    let config = BertConfig::from_file(&files.config)?;
    let tensors = weights::read_checkpoint(&files)?;
    let trained = trained_record(&files);
    let classes = match weights::head_classes(&tensors, config.family()) {
        Some(n) => n,
        None => bail_usage!(
            "{} has no classification head ({}): it is a base model; fine-tune it first with `bert-classifier train`",
            files.dir.display(),
            config.family().head_weight()
        ),
    };
    let labels = config.class_labels(classes, &files.config)?;
    let max_len = max_len
        .or_else(|| trained.as_ref().and_then(|t| t["max_len"].as_u64()).map(|m| m as usize))
        .unwrap_or(128)
        .min(config.max_tokens() as usize);
    let tokenizer = TextTokenizer::load(&files.dir, max_len)?;
    let (clf, _) = Classifier::build(&config, classes, device, &tensors, &files.dir.display().to_string(), true)?;
    Ok(LoadedClassifier { clf, tokenizer, labels, files, trained })
}

/// What `train` recorded in its `model.safetensors` (max length, step, ...).
fn trained_record(files: &ModelFiles) -> Option<serde_json::Value> {
    match &files.weights {
        hub::Weights::Safetensors(paths) if paths.len() == 1 => {
            // Only the header: 8 bytes of length, then JSON with `__metadata__`.
            use std::io::Read;
            let mut f = std::fs::File::open(&paths[0]).ok()?;
            let mut len = [0u8; 8];
            f.read_exact(&mut len).ok()?;
            let len = usize::try_from(u64::from_le_bytes(len)).ok().filter(|&n| n <= 100 << 20)?;
            let mut header = vec![0u8; len];
            f.read_exact(&mut header).ok()?;
            let header: serde_json::Value = serde_json::from_slice(&header).ok()?;
            serde_json::from_str(header.get("__metadata__")?.get("hpcml")?.as_str()?).ok()
        }
        _ => None,
    }
}

/// The CSV columns to read for `model` (`[text, label, text pair]`): those
/// given, else the ones the model was trained on (recorded by `train`) where
/// the file has them, else the usual names (`titletext`, `text`, `sentence`,
/// ...; `label`, ...; a usual pair where the model recorded none). Only
/// local models are looked at; a Hub name gets the usual names.
pub fn columns_for(model: &str, given: [Option<String>; 3]) -> Columns {
    let [text, label, pair] = given;
    let trained = if text.is_some() && label.is_some() || !Path::new(model).is_dir() {
        None
    } else {
        hub::resolve(Some(model)).ok().and_then(|files| trained_record(&files))
    };
    let recorded = |key: &str| trained.as_ref().and_then(|r| r.get(key)?.as_str()).map(str::to_string);
    let column = |given: Option<String>, key: &str| match given {
        Some(c) => Column::Named(c),
        None => recorded(key).map_or(Column::Usual, Column::Trained),
    };
    let pair = match (pair, recorded("text_pair_column")) {
        (Some(c), _) => Some(Column::Named(c)),
        (None, Some(c)) => Some(Column::Trained(c)),
        (None, None) if text.is_none() && trained.is_none() => Some(Column::Usual),
        (None, None) => None,
    };
    Columns { text: column(text, "text_column"), label: Some(column(label, "label_column")), pair }
}

/// Settings of `predict` and `evaluate`.
#[derive(Clone, Debug)]
pub struct PredictConfig {
    pub model: String,
    pub device: DeviceRequest,
    pub threads: Option<usize>,
    pub precision: Precision,
    /// Quantize the encoder's linear layers to int8 (CPU, fp32 only).
    pub int8: bool,
    pub max_len: Option<usize>,
    pub batch_size: usize,
}

impl PredictConfig {
    /// The weights the flags ask for ([`placement`] rejects int8 with bf16).
    fn weights(&self) -> InferenceWeights {
        match self.int8 {
            true => InferenceWeights::Int8,
            false => InferenceWeights::Cast(self.precision),
        }
    }
}

/// One text's prediction.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Prediction {
    pub text: String,
    /// The second text, for pairs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pair: Option<String>,
    /// The class; for a multi-label model, the labels it has joined by
    /// ", " (or "none").
    pub label: String,
    /// The class's probability; for a multi-label model, the highest label's.
    pub probability: f32,
    /// A multi-label model's labels that the text has (probability at least
    /// [`MULTI_LABEL_THRESHOLD`]), most probable first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// One per class: a softmax over them, or for a multi-label model each
    /// label's own sigmoid.
    pub probabilities: Vec<f32>,
    pub logits: Vec<f32>,
}

/// The probability from which a multi-label model gives a text a label
/// (`transformers`' pipelines and scikit-learn's reports use the same).
pub const MULTI_LABEL_THRESHOLD: f32 = 0.5;

impl Prediction {
    /// The prediction of a classifier over `names` from its `logits`.
    pub fn from_logits(text: String, pair: Option<String>, logits: Vec<f32>, labels: &Labels) -> Prediction {
        if !labels.multi {
            let probabilities = softmax(&logits);
            let (best, probability) = argmax(&probabilities);
            let label = labels.names[best].clone();
            return Prediction { text, pair, label, probability, labels: Vec::new(), probabilities, logits };
        }
        let probabilities = sigmoid(&logits);
        let mut order: Vec<usize> = (0..probabilities.len()).collect();
        order.sort_by(|&a, &b| probabilities[b].total_cmp(&probabilities[a]).then(a.cmp(&b)));
        let has: Vec<String> = order
            .iter()
            .filter(|&&i| probabilities[i] >= MULTI_LABEL_THRESHOLD)
            .map(|&i| labels.names[i].clone())
            .collect();
        let probability = order.first().map_or(0.0, |&i| probabilities[i]);
        let label = if has.is_empty() { "none".to_string() } else { has.join(", ") };
        Prediction { text, pair, label, probability, labels: has, probabilities, logits }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PredictRun {
    pub workload: String,
    pub model: String,
    pub labels: Vec<String>,
    /// The model is a multi-label classifier ([`Labels::multi`]).
    #[serde(default)]
    pub multi_label: bool,
    pub device: String,
    pub precision: Precision,
    /// The encoder's linear layers ran on int8 weights (`--int8`).
    #[serde(default)]
    pub int8: bool,
    pub ranks: usize,
    /// Preparing the weights for inference (cast, packed, quantized), before `seconds`.
    #[serde(default)]
    pub prepare_seconds: f64,
    pub seconds: f64,
    pub texts_per_second: f64,
    pub predictions: Vec<Prediction>,
}

/// The device and threads of a prediction job.
pub fn placement(cluster: &Cluster, cfg: &PredictConfig) -> Result<crate::device::Device> {
    let dev = cluster.agree(device::resolve(cfg.device, cluster.local_rank()))?;
    if cfg.int8 {
        if let Some(why) = super::int8_linear::unavailable(dev.tch()) {
            bail_usage!("{why}");
        }
        if cfg.precision != Precision::Fp32 {
            bail_usage!(
                "--int8 quantizes the fp32 weights and computes in fp32 around them: leave --precision at fp32"
            );
        }
    }
    device::set_cudnn_attention_from_env();
    device::apply_threads(cfg.threads, cluster.default_threads());
    device::host_memory::keep_freed_memory();
    Ok(dev)
}

/// Runs `work` on every rank from a barrier to the device's synchronisation;
/// returns the result all ranks agree on and the slowest rank's seconds.
fn timed<T>(cluster: &Cluster, dev: &crate::device::Device, work: impl FnOnce() -> Result<T>) -> Result<(T, f64)> {
    cluster.barrier();
    let t0 = cluster.wtime();
    let out = cluster.agree(work())?;
    dev.synchronize();
    Ok((out, cluster.max_f64(cluster.wtime() - t0)))
}

/// Predicts a class for each text, or each pair of `texts` and `pairs`
/// (empty for single texts); rank 0 gets the run, others `None`.
pub fn predict(
    cluster: &Cluster,
    cfg: &PredictConfig,
    texts: Vec<String>,
    pairs: Vec<String>,
) -> Result<Option<PredictRun>> {
    let dev = placement(cluster, cfg)?;
    let loaded = cluster.agree(load_classifier(&cfg.model, cfg.max_len, dev.tch()))?;
    let ids = match pairs.is_empty() {
        true => loaded.tokenizer.encode(&texts)?,
        false => loaded.tokenizer.encode_pairs(&texts, &pairs)?,
    };
    let (model, prepare_seconds) = timed(cluster, &dev, || Prepared::new(&loaded.clf, cfg.weights()))?;
    let (logits, seconds) =
        timed(cluster, &dev, || logits(cluster, &model, &ids, loaded.tokenizer.pad_id, cfg.batch_size))?;
    if !cluster.is_root() {
        return Ok(None);
    }
    let mut pairs = pairs.into_iter();
    let predictions = texts
        .into_iter()
        .zip(logits)
        .map(|(text, logits)| Prediction::from_logits(text, pairs.next(), logits, &loaded.labels))
        .collect::<Vec<_>>();
    Ok(Some(PredictRun {
        workload: "bert-classifier predict".into(),
        model: loaded.files.name.clone(),
        labels: loaded.labels.names.clone(),
        multi_label: loaded.labels.multi,
        device: dev.to_string(),
        precision: cfg.precision,
        int8: cfg.int8,
        ranks: cluster.size(),
        prepare_seconds,
        seconds,
        texts_per_second: predictions.len() as f64 / seconds.max(1e-9),
        predictions,
    }))
}

/// Softmax in float64, rounded to float32.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f64> = logits.iter().map(|&l| f64::from(l - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|e| (e / sum) as f32).collect()
}

/// Each logit's own sigmoid, in float64, rounded to float32.
pub fn sigmoid(logits: &[f32]) -> Vec<f32> {
    logits.iter().map(|&l| (1.0 / (1.0 + (-f64::from(l)).exp())) as f32).collect()
}

pub fn argmax(p: &[f32]) -> (usize, f32) {
    p.iter().enumerate().fold((0, f32::NEG_INFINITY), |(bi, bp), (i, &x)| if x > bp { (i, x) } else { (bi, bp) })
}

/// The result of `evaluate` on a labelled CSV file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EvaluateRun {
    pub workload: String,
    pub model: String,
    pub file: PathBuf,
    pub labels: Vec<String>,
    /// The file's labels were class ids (0, 1, ...), not the model's names.
    #[serde(default)]
    pub labels_by_id: bool,
    pub skipped_rows: usize,
    pub device: String,
    pub precision: Precision,
    /// The encoder's linear layers ran on int8 weights (`--int8`).
    #[serde(default)]
    pub int8: bool,
    pub ranks: usize,
    /// Preparing the weights for inference (cast, packed, quantized), before `seconds`.
    #[serde(default)]
    pub prepare_seconds: f64,
    pub seconds: f64,
    pub texts_per_second: f64,
    pub evaluation: Evaluation,
    pub report: ClassificationReport,
}

/// Evaluates a fine-tuned classifier on a labelled CSV file.
pub fn evaluate_file(
    cluster: &Cluster,
    cfg: &PredictConfig,
    file: &Path,
    cols: &Columns,
    skip_bad: bool,
) -> Result<Option<EvaluateRun>> {
    let dev = placement(cluster, cfg)?;
    let loaded = cluster.agree(load_classifier(&cfg.model, cfg.max_len, dev.tch()))?;
    let read = || {
        if !file.is_dir() {
            return data::read_split(file, cols, skip_bad);
        }
        // A folder of class folders (or class files), as `train` reads them.
        match ClassSet::find(file) {
            Some(set) => set.read(&cols.text, skip_bad),
            None => bail_usage!(
                "{}: a folder to evaluate on needs a folder or data file per class (as aclImdb/test/neg and pos); give a labelled file otherwise",
                file.display()
            ),
        }
    };
    let split: Split = cluster.agree(read())?;
    let (set, labels_by_id) = match loaded.labels.multi {
        true => {
            (cluster.agree(Encoded::labelled(&loaded.tokenizer, &split, &loaded.labels, &loaded.files.name))?, false)
        }
        false => {
            let by_name = loaded.labels.ids(&split, &loaded.files.name);
            let by_number = if by_name.is_err() { loaded.labels.ids_by_number(&split) } else { None };
            let labels_by_id = by_number.is_some();
            let labels = cluster.agree(by_number.map_or(by_name, Ok))?;
            let ids = data::encode_texts(&loaded.tokenizer, &split)?;
            (Encoded { ids, labels, sets: Vec::new() }, labels_by_id)
        }
    };
    let (model, prepare_seconds) = timed(cluster, &dev, || Prepared::new(&loaded.clf, cfg.weights()))?;
    let (ev, seconds) =
        timed(cluster, &dev, || evaluate(cluster, &model, &set, loaded.tokenizer.pad_id, cfg.batch_size))?;
    if !cluster.is_root() {
        return Ok(None);
    }
    let report = ev.report(&loaded.labels.names);
    Ok(Some(EvaluateRun {
        workload: "bert-classifier evaluate".into(),
        model: loaded.files.name.clone(),
        file: file.to_path_buf(),
        labels: loaded.labels.names.clone(),
        labels_by_id,
        skipped_rows: split.skipped.len(),
        device: dev.to_string(),
        precision: cfg.precision,
        int8: cfg.int8,
        ranks: cluster.size(),
        prepare_seconds,
        seconds,
        texts_per_second: split.len() as f64 / seconds.max(1e-9),
        evaluation: ev,
        report,
    }))
}

/// Reads the texts of a CSV file for prediction: `cols`' text column, and
/// the second texts where they are pairs (else empty).
pub fn texts_from_csv(path: &Path, cols: &Columns, skip_bad: bool) -> Result<(Vec<String>, Vec<String>)> {
    let cols = Columns { label: None, ..cols.clone() };
    let split = data::read_split(path, &cols, skip_bad).with_context(|| format!("reading {}", path.display()))?;
    Ok((split.texts, split.pairs))
}
