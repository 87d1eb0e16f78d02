//! `bert-classifier`: fine-tune, evaluate, predict with and export BERT-family
//! text classifiers, data-parallel over MPI ranks, on CPUs or GPUs.
//!
//! One file per concern: [`config`] (the checkpoint's `config.json`),
//! [`model`] (BERT in tch, Hugging Face's module tree), [`dropout`]
//! (counter-based masks), [`weights`] (checkpoint names and loading),
//! [`tokenize`] ([`sentencepiece`]: ALBERT's `spiece.model`), [`hub`] (model directories, the Hugging Face cache and
//! downloads), [`data`] (labelled texts, classes, length-bucketed batches),
//! [`table`] (a data file's rows: CSV, TSV, JSON lines, gzipped or not),
//! [`torch_pickle`] (`pytorch_model.bin` in both of `torch.save`'s formats),
//! [`columns`] (which columns hold the text and the label, by name or contents),
//! [`source`] (the data directory, or one file split by class),
//! [`class_folders`] (data sets whose folders or files name the classes),
//! [`train`], [`predict`], [`export`], [`output`] (what rank 0 prints and writes),
//! [`packed_linear`] (linear layers on oneDNN with packed weights),
//! [`attention`] (attention for fp32 inference on x86 CPUs).

pub mod attention;
pub mod class_folders;
pub mod columns;
pub mod config;
pub mod data;
pub mod dropout;
pub mod export;
pub mod hub;
pub mod int8_linear;
pub mod model;
pub mod output;
pub mod packed_linear;
pub mod predict;
pub mod sentencepiece;
pub mod source;
pub mod table;
pub mod tokenize;
pub mod torch_pickle;
pub mod train;
pub mod weights;

use std::collections::HashMap;

use anyhow::Result;
use tch::nn::VarStore;
use tch::{Device, Tensor};

use config::BertConfig;
use model::BertClassifier;
use weights::LoadReport;

/// A classifier with the variable store that owns its weights.
pub struct Classifier {
    pub vs: VarStore,
    pub model: BertClassifier,
}

impl Classifier {
    /// Builds a classifier over `num_labels` classes on `device` and loads
    /// `tensors` into it (see [`weights::load_into`]). Parts the checkpoint
    /// lacks get Hugging Face's initialisation, drawn from the current torch
    /// seed; the rest is built as zeros, not drawn (for bert-base, drawing
    /// 110M weights that the checkpoint overwrites took most of a second).
    pub fn build(
        config: &BertConfig,
        num_labels: i64,
        device: Device,
        tensors: &HashMap<String, Tensor>,
        what: &str,
        require_head: bool,
    ) -> Result<(Classifier, LoadReport)> {
        let vs = VarStore::new(device);
        let blank = BertConfig { initializer_range: 0.0, ..config.clone() };
        let mut model = BertClassifier::new(&vs.root(), &blank, num_labels);
        model.config = config.clone();
        let report = weights::load_into(&vs, config, tensors, what, require_head)?;
        Ok((Classifier { vs, model }, report))
    }
}
