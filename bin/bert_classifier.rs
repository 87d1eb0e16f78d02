//! bert-classifier: fine-tune BERT-family text classifiers (the tutorial's
//! bert_classifier.py), predict, evaluate and export them; data-parallel over
//! MPI ranks, on CPUs or GPUs.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use hpcml::bail_usage;
use hpcml::bert::data::{self, Column};
use hpcml::bert::export::{self, Which};
use hpcml::bert::output::{self, Reporter};
use hpcml::bert::predict::{self, PredictConfig};
use hpcml::bert::source::Shares;
use hpcml::bert::table;
use hpcml::bert::train::{self, Outcome, TrainConfig};
use hpcml::cluster::Cluster;
use hpcml::device::DeviceRequest;
use hpcml::train::Precision;

/// Fine-tune a BERT model to classify texts (fake/real news, spam/ham, ...),
/// then predict, evaluate and export. Without a subcommand it trains, with the
/// tutorial's flags: bert-classifier -d cpu -s DATA_DIR -o OUT_DIR
#[derive(Parser, Debug)]
#[command(name = "bert-classifier", version, args_conflicts_with_subcommands = true, allow_negative_numbers = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    train: TrainArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Fine-tune on DIR/train.csv, validate on valid.csv, test on test.csv (the default).
    #[command(allow_negative_numbers = true)]
    Train(TrainArgs),
    /// Classify texts given as arguments, in a file, on stdin or in a CSV column.
    #[command(allow_negative_numbers = true)]
    Predict(PredictArgs),
    /// Classification report and confusion matrix of a fine-tuned model on a labelled CSV.
    #[command(allow_negative_numbers = true)]
    Evaluate(EvaluateArgs),
    /// Write a fine-tuned model as a Hugging Face directory (transformers loads it).
    #[command(allow_negative_numbers = true)]
    Export(ExportArgs),
}

#[derive(Args, Debug, Clone)]
struct Placement {
    /// The device to run on: cpu, cuda (each rank its node-local GPU), cuda:N, or auto (a GPU if there is one).
    #[arg(short = 'd', long, default_value = "auto")]
    device: DeviceRequest,
    /// CPU threads per rank [default: the physical cores this rank may use, divided among the ranks of its node bound to the same ones].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=4096))]
    threads: Option<u16>,
    /// Compute precision: fp32, or bf16 (matmuls in bfloat16 on fp32 weights; GPUs, and CPUs with AVX512-BF16 or AMX).
    #[arg(long, default_value = "fp32")]
    precision: Precision,
}

#[derive(Args, Debug, Clone)]
struct TrainArgs {
    #[command(flatten)]
    placement: Placement,
    /// The output folder: best model, checkpoint, plots, report, JSON record.
    #[arg(short = 'o', long, default_value = ".")]
    output: PathBuf,
    /// The folder with train.csv, valid.csv and (optionally) test.csv, or one labelled CSV
    /// file, split by class into train, valid and test (--split). A folder without valid.csv
    /// has a tenth of train.csv held out for validation. TSV, semicolon-separated, JSON lines
    /// and Parquet files (.tsv, .jsonl, .json, .parquet) are read as well; so is a folder per
    /// class of text files (aclImdb) or a data file per class (Fake.csv, True.csv).
    #[arg(short = 's', long, default_value = ".")]
    source: PathBuf,
    /// With -s FILE: percent of its rows for train, valid and test, split by class
    /// (the same split for the same --seed) [default: 80,10,10]. With a folder of
    /// train.csv and test.csv only: how train.csv is split [default: 90,10,0].
    #[arg(long, value_name = "TRAIN,VALID,TEST")]
    split: Option<Shares>,
    /// The pre-trained BERT, ALBERT, DistilBERT, ELECTRA or RoBERTa model: a directory, or a Hugging Face name such as
    /// bert-base-uncased, distilbert-base-uncased or roberta-base (from the HF cache, downloaded unless HF_HUB_OFFLINE=1) [default: the offline all-MiniLM-L6-v2].
    #[arg(short = 'm', long)]
    model: Option<String>,
    /// Passes over the training set.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    epochs: u32,
    /// Texts per optimizer step, over all ranks together.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    batch_size: u32,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 2e-5, value_parser = parse_lr)]
    lr: f64,
    /// Tokens per text, [CLS] and [SEP] included; longer texts are cut.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(2..=100_000))]
    max_len: u32,
    /// Seed of the head's initialisation, the shuffles and the dropout masks.
    #[arg(long, default_value_t = 42, value_parser = hpcml::cli::parse_seed, allow_negative_numbers = true)]
    seed: u64,
    #[command(flatten)]
    csv: LabelledCsvArgs,
    /// Names for the classes in the report, plots, predictions and exported config, given to
    /// their values in the CSVs: 0=REAL,1=FAKE for the tutorial's data [default: the values].
    #[arg(long, value_name = "VALUE=NAME,...", value_parser = class_names)]
    class_names: Option<ClassNames>,
    /// Continue from the checkpoint in the output folder (a fresh start if there is none).
    #[arg(long)]
    resume: bool,
    /// Validate every this many steps [default: every half epoch, as the tutorial].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    eval_every: Option<u32>,
    /// Texts per batch when validating and testing (more when they are short).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    eval_batch_size: u32,
    /// Also write the run's JSON record here (it is always in OUTPUT/results.json).
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Stop after this many steps (benchmarks and smoke tests).
    #[arg(long, hide = true, value_parser = clap::value_parser!(u32).range(1..))]
    max_steps: Option<u32>,
}

/// How `train` and `evaluate` read labelled CSV files.
#[derive(Args, Debug, Clone)]
struct LabelledCsvArgs {
    /// The CSV column with the text, or columns joined with + (title+text: "title. text", as the tutorial's titletext) [default: titletext, else text, sentence, review, ... (the first the file has); evaluate: the one the model was trained on].
    #[arg(long)]
    text_column: Option<String>,
    /// The CSV column with the class, integers or names; or, for multi-label data, the label columns of 0s and 1s listed with commas (toxic,insult,threat) [default: label, else labels, class, category, target, sentiment, polarity, stars, rating, score, overall, else several columns of 0s and 1s; evaluate: as trained].
    #[arg(long)]
    label_column: Option<String>,
    /// The CSV column with the second text of each pair (sentence pairs: paraphrase, entailment, question answering), read after --text-column's [default: with no --text-column, a usual pair such as sentence1 and sentence2, question and sentence, premise and hypothesis; evaluate: as trained].
    #[arg(long)]
    text_pair_column: Option<String>,
    /// Leave out rows that cannot be read (and say how many) instead of stopping.
    #[arg(long)]
    skip_bad_rows: bool,
}

#[derive(Args, Debug)]
struct ModelArgs {
    /// The fine-tuned model: a `train` output folder, an exported one, or a Hugging Face classifier.
    #[arg(short = 'm', long)]
    model: String,
    #[command(flatten)]
    placement: Placement,
    /// Tokens per text [default: what the model was trained with, else 128].
    #[arg(long, value_parser = clap::value_parser!(u32).range(2..=100_000))]
    max_len: Option<u32>,
    /// Texts per batch (more when they are short).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    batch_size: u32,
    /// Quantize the encoder's linear layers to int8 (PyTorch's dynamic quantization, on fbgemm):
    /// faster on CPUs, most of all without AVX-512; logits within about 1% of fp32. CPU only.
    #[arg(long)]
    int8: bool,
}

#[derive(Args, Debug)]
struct PredictArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Texts to classify (else --file, --csv, or lines on stdin).
    texts: Vec<String>,
    /// A file with one text per line ('-': stdin).
    #[arg(long, value_name = "PATH", conflicts_with = "csv")]
    file: Option<PathBuf>,
    /// A CSV file with a header (or TSV, or JSON lines); classifies its --text-column.
    #[arg(long, value_name = "PATH")]
    csv: Option<PathBuf>,
    /// The CSV column with the text [default: the one the model was trained on, else the first usual name the file has: titletext, text, sentence, ...].
    #[arg(long)]
    text_column: Option<String>,
    /// The CSV column with the second text of each pair [default: the one the model was trained on].
    #[arg(long)]
    text_pair_column: Option<String>,
    /// Leave out CSV rows that cannot be read.
    #[arg(long)]
    skip_bad_rows: bool,
    /// Also write the predictions (labels, probabilities, logits) as JSON here.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct EvaluateArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The labelled CSV file (or TSV, or JSON lines).
    #[arg(value_name = "CSV", required_unless_present = "csv_flag")]
    csv: Option<PathBuf>,
    /// The labelled CSV file, named as predict names it.
    #[arg(long = "csv", value_name = "PATH", conflicts_with = "csv")]
    csv_flag: Option<PathBuf>,
    #[command(flatten)]
    columns: LabelledCsvArgs,
    /// Write the report, confusion_matrix.png and evaluation.json into this folder.
    #[arg(short = 'o', long)]
    output: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct ExportArgs {
    /// The fine-tuned model folder (a `train` output folder).
    #[arg(short = 'm', long)]
    model: String,
    /// The new Hugging Face model folder.
    #[arg(short = 'o', long)]
    output: PathBuf,
    /// Which weights: the best by validation loss, or the last checkpoint.
    #[arg(long, value_enum, default_value = "best")]
    checkpoint: CheckpointArg,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum CheckpointArg {
    Best,
    Last,
}

fn parse_lr(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("--lr must be a positive number like 2e-5, got '{s}'")),
    }
}

/// `--class-names` pairs (one flag, not one pair per flag).
#[derive(Clone, Debug)]
struct ClassNames(Vec<(String, String)>);

fn class_names(s: &str) -> Result<ClassNames, String> {
    data::parse_class_names(s).map(ClassNames)
}

fn main() -> ExitCode {
    hpcml::cli::main("bert-classifier", |cluster, cli: Cli| match cli.command {
        None => run_train(cluster, cli.train),
        Some(Command::Train(a)) => run_train(cluster, a),
        Some(Command::Predict(a)) => run_predict(cluster, a),
        Some(Command::Evaluate(a)) => run_evaluate(cluster, a),
        Some(Command::Export(a)) => run_export(cluster, a),
    })
}

fn run_train(cluster: &Cluster, a: TrainArgs) -> anyhow::Result<()> {
    let cfg = TrainConfig {
        model: a.model,
        source: a.source,
        output: a.output.clone(),
        device: a.placement.device,
        threads: a.placement.threads.map(usize::from),
        precision: a.placement.precision,
        epochs: a.epochs as usize,
        batch_size: a.batch_size as usize,
        lr: a.lr,
        max_len: a.max_len as usize,
        seed: a.seed,
        text_column: a.csv.text_column,
        label_column: a.csv.label_column,
        text_pair_column: a.csv.text_pair_column,
        skip_bad_rows: a.csv.skip_bad_rows,
        resume: a.resume,
        eval_every: a.eval_every.map(|e| e as usize),
        eval_batch_size: a.eval_batch_size as usize,
        max_steps: a.max_steps.map(|m| m as usize),
        class_names: a.class_names.map(|c| c.0).unwrap_or_default(),
        split: a.split,
    };
    let mut reporter = Reporter::new(cluster.is_root());
    let outcome = train::run(cluster, &cfg, &mut reporter);
    reporter.finish();
    let Outcome::Done(Some(run)) = outcome? else {
        return Ok(());
    };
    for line in output::report_lines(&run) {
        cluster.say(line);
    }
    let written = output::write_train_outputs(&run, &a.output)?;
    if let Some(path) = &a.json {
        hpcml::report::write_json(path, &run)?;
    }
    cluster.say(output::wrote_line(&written));
    Ok(())
}

fn predict_config(m: &ModelArgs) -> PredictConfig {
    PredictConfig {
        model: m.model.clone(),
        device: m.placement.device,
        threads: m.placement.threads.map(usize::from),
        precision: m.placement.precision,
        int8: m.int8,
        max_len: m.max_len.map(|v| v as usize),
        batch_size: m.batch_size as usize,
    }
}

fn run_predict(cluster: &Cluster, a: PredictArgs) -> anyhow::Result<()> {
    let (texts, pairs) = cluster.agree(gather_texts(&a))?;
    let cfg = predict_config(&a.model);
    let Some(run) = predict::predict(cluster, &cfg, texts, pairs)? else {
        return Ok(());
    };
    for line in output::prediction_lines(&run) {
        cluster.say(line);
    }
    if let Some(path) = &a.json {
        hpcml::report::write_json(path, &run)?;
    }
    Ok(())
}

/// The non-blank lines of a text, in whatever encoding a text file comes
/// (UTF-8, UTF-16 with a byte-order mark, Windows-1252).
fn lines_of(bytes: Vec<u8>) -> Vec<String> {
    table::decode_text(bytes).lines().filter(|l| !l.trim().is_empty()).map(str::to_string).collect()
}

fn stdin_bytes() -> anyhow::Result<Vec<u8>> {
    let mut b = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut b) {
        bail_usage!("cannot read stdin: {e}");
    }
    Ok(b)
}

/// The texts to classify: arguments, else --file, else --csv, else stdin;
/// with the second texts, where a CSV holds pairs (else empty).
fn gather_texts(a: &PredictArgs) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let cols = predict::columns_for(&a.model.model, [a.text_column.clone(), None, a.text_pair_column.clone()]);
    let pairs_only = match &cols.pair {
        Some(Column::Named(c) | Column::Trained(c)) => Some(c),
        _ => None,
    };
    if let (Some(pair), None) = (pairs_only, &a.csv) {
        bail_usage!(
            "{} classifies pairs of texts (the second from column '{pair}'): give them in a CSV file with --csv",
            a.model.model
        );
    }
    let mut texts = a.texts.clone();
    if let Some(file) = &a.file {
        let body = if file.as_os_str() == "-" {
            stdin_bytes()?
        } else {
            match std::fs::read(file) {
                Ok(b) => b,
                Err(e) => bail_usage!("--file {}: {e}", file.display()),
            }
        };
        texts.extend(lines_of(body));
    }
    if let Some(csv) = &a.csv {
        let (more, pairs) = predict::texts_from_csv(csv, &cols, a.skip_bad_rows)?;
        if !pairs.is_empty() {
            if !texts.is_empty() {
                bail_usage!("{} holds pairs of texts: give them only there, without texts as arguments", csv.display());
            }
            return Ok((more, pairs));
        }
        texts.extend(more);
    }
    if texts.is_empty() && a.file.is_none() && a.csv.is_none() {
        if std::io::stdin().is_terminal() {
            bail_usage!("nothing to classify: give texts as arguments, --file PATH, --csv PATH, or lines on stdin");
        }
        texts.extend(lines_of(stdin_bytes()?));
    }
    if texts.is_empty() {
        bail_usage!("nothing to classify: the input has no texts");
    }
    Ok((texts, Vec::new()))
}

fn run_evaluate(cluster: &Cluster, a: EvaluateArgs) -> anyhow::Result<()> {
    let Some(csv) = a.csv.as_ref().or(a.csv_flag.as_ref()) else {
        bail_usage!("evaluate needs a labelled CSV: bert-classifier evaluate -m MODEL FILE.csv");
    };
    let cfg = predict_config(&a.model);
    let given = [&a.columns.text_column, &a.columns.label_column, &a.columns.text_pair_column].map(Clone::clone);
    let cols = predict::columns_for(&a.model.model, given);
    let Some(run) = predict::evaluate_file(cluster, &cfg, csv, &cols, a.columns.skip_bad_rows)? else {
        return Ok(());
    };
    for line in output::evaluate_lines(&run) {
        cluster.say(line);
    }
    if let Some(out) = &a.output {
        let written = output::write_evaluate_outputs(&run, out)?;
        cluster.say(output::wrote_line(&written));
    }
    Ok(())
}

fn run_export(cluster: &Cluster, a: ExportArgs) -> anyhow::Result<()> {
    let which = match a.checkpoint {
        CheckpointArg::Best => Which::Best,
        CheckpointArg::Last => Which::Last,
    };
    let result = if cluster.is_root() { export::export(&a.model, which, &a.output).map(Some) } else { Ok(None) };
    let Some(run) = cluster.agree(result)? else {
        return Ok(());
    };
    cluster.say(format!(
        "Exported {} ({} weights, {} tensors, {} {}) to {}",
        run.from.display(),
        if run.which == Which::Best { "best" } else { "last" },
        run.tensors,
        if run.multi_label { "multi-label: labels" } else { "classes" },
        run.labels.join(", "),
        run.to.display()
    ));
    cluster.say(output::wrote_line(&run.files));
    Ok(())
}
