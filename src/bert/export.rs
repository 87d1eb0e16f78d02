//! A fine-tuned model as a plain Hugging Face directory: `config.json` (with
//! `BertForSequenceClassification` or its RoBERTa twin, `id2label`, `label2id`),
//! `model.safetensors` (float32, Hugging Face names, `format: pt`) and the
//! tokenizer files. `transformers.AutoModelForSequenceClassification` and
//! `AutoTokenizer` load it and give the logits we give.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::config::BertConfig;
use super::tokenize;
use super::train::CHECKPOINT_FILE;
use super::{hub, weights, Classifier};
use crate::bail_usage;
use crate::train::checkpoint::{read_safetensors, write_safetensors_with_metadata};

/// Which weights of a training directory to export.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Which {
    /// `model.safetensors`: the lowest validation loss.
    Best,
    /// `checkpoint.safetensors`: where training stopped.
    Last,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExportRun {
    pub from: PathBuf,
    pub which: Which,
    pub to: PathBuf,
    pub labels: Vec<String>,
    /// The model is a multi-label classifier.
    pub multi_label: bool,
    pub tensors: usize,
    pub files: Vec<PathBuf>,
}

/// Exports the classifier in `from` (a `train -o` directory or any
/// fine-tuned BERT directory) to `to`.
pub fn export(from: &str, which: Which, to: &Path) -> Result<ExportRun> {
    let files = hub::resolve(Some(from))?;
    let config = BertConfig::from_file(&files.config)?;
    let tensors = match which {
        Which::Best => weights::read_checkpoint(&files)?,
        Which::Last => {
            let ck = files.dir.join(CHECKPOINT_FILE);
            if !ck.is_file() {
                bail_usage!("--checkpoint last: {} has no {CHECKPOINT_FILE}", files.dir.display());
            }
            let (t, _) = read_safetensors(&ck)?;
            t.into_iter().filter(|(n, _)| !n.starts_with("optim.")).collect()
        }
    };
    let classes = match weights::head_classes(&tensors, config.family()) {
        Some(n) => n,
        None => bail_usage!(
            "{} has no classification head ({}): nothing fine-tuned to export",
            files.dir.display(),
            config.family().head_weight()
        ),
    };
    let labels = config.class_labels(classes, &files.config)?;
    // Through our model, so whatever names the source used, the export has
    // Hugging Face's current ones, in float32.
    let (clf, _) = Classifier::build(&config, classes, tch::Device::Cpu, &tensors, from, true)?;
    let named = weights::named_float_tensors(&clf.vs)?;
    if to.exists() && to.canonicalize().ok() == files.dir.canonicalize().ok() {
        bail_usage!("-o/--output {} is the model's own directory; export to a new one", to.display());
    }
    std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    let mut written = Vec::new();
    let cfg_path = to.join("config.json");
    crate::report::write_json(&cfg_path, &config.for_classification(&labels))?;
    written.push(cfg_path);
    let model_path = to.join("model.safetensors");
    write_safetensors_with_metadata(&model_path, &named, None, &[("format", "pt")])?;
    written.push(model_path);
    written.extend(tokenize::copy_files(&files.dir, to)?);
    let has = |written: &[PathBuf], name: &str| written.iter().any(|p| p.ends_with(name));
    // A SentencePiece model alone needs Python's sentencepiece to be read;
    // the same tokenizer as tokenizer.json needs nothing more than transformers.
    if has(&written, "spiece.model") && !has(&written, "tokenizer.json") {
        let dst = to.join("tokenizer.json");
        // Any length: the file is written without truncation.
        let json = tokenize::TextTokenizer::load(&files.dir, 2)?.to_json()?;
        crate::report::write_atomic(&dst, |w| Ok(w.write_all(json.as_bytes())?))?;
        written.push(dst);
    }
    let has = |name: &str| has(&written, name);
    if !(has("tokenizer.json") || has("vocab.txt") || has("vocab.json") && has("merges.txt") || has("spiece.model")) {
        bail_usage!(
            "{} has no tokenizer files (tokenizer.json, vocab.txt, vocab.json with merges.txt, or spiece.model) to export with the model",
            files.dir.display()
        );
    }
    Ok(ExportRun {
        from: files.dir,
        which,
        to: to.to_path_buf(),
        multi_label: labels.multi,
        labels: labels.names,
        tensors: named.len(),
        files: written,
    })
}
