//! bert-classifier's BERT against `transformers`: the same token ids, last
//! hidden states and logits (within 1e-4) on the offline MiniLM, and on a
//! tiny RoBERTa, from reference values that `tests/reference/make_bert_reference.py`
//! and `make_roberta_reference.py` wrote.

mod common;

use std::collections::HashMap;
use std::path::Path;

use hpcml::bert::config::{BertConfig, Family};
use hpcml::bert::model::{Batch, Pass};
use hpcml::bert::tokenize::TextTokenizer;
use hpcml::bert::{hub, torch_pickle};
use hpcml::bert::{weights, Classifier};
use hpcml::train::checkpoint::read_safetensors;
use hpcml::train::Precision;
use serde_json::Value;
use tch::{Device, Kind, Tensor};

fn reference_file(name: &str) -> Value {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference").join(name))
        .expect("reference JSON");
    serde_json::from_str(&text).expect("reference parses")
}

fn reference() -> Value {
    reference_file("bert_reference.json")
}

fn ids(v: &Value) -> Vec<Vec<u32>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect())
        .collect()
}

fn texts(r: &Value) -> Vec<String> {
    r["texts"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect()
}

fn strip_padding(rows: Vec<Vec<u32>>) -> Vec<Vec<u32>> {
    rows.into_iter().map(|r| r.into_iter().filter(|&i| i != 0).collect()).collect()
}

#[test]
fn tokenizers_give_transformers_ids() {
    let r = reference();
    let files = hub::resolve(None).unwrap();
    let max_len = r["max_len"].as_u64().unwrap() as usize;
    let t = texts(&r);
    let refs: Vec<&str> = t.iter().map(String::as_str).collect();
    let fast = TextTokenizer::load(&files.dir, max_len).unwrap();
    assert_eq!(fast.source, "tokenizer.json");
    assert_eq!(fast.encode(&refs).unwrap(), strip_padding(ids(&r["input_ids"])));
    // A checkpoint with only vocab.txt: the WordPiece fallback must agree with
    // transformers' slow BertTokenizer.
    let dir = tempfile::tempdir().unwrap();
    for f in ["vocab.txt", "tokenizer_config.json", "special_tokens_map.json"] {
        std::fs::copy(files.dir.join(f), dir.path().join(f)).unwrap();
    }
    let slow = TextTokenizer::load(dir.path(), max_len).unwrap();
    assert_eq!(slow.source, "vocab.txt");
    assert!(slow.lowercase);
    assert_eq!(slow.encode(&refs).unwrap(), ids(&r["slow_input_ids"]));
    // Truncation keeps [CLS] and [SEP].
    let short = TextTokenizer::load(&files.dir, 5).unwrap();
    assert_eq!(short.encode(&[refs[0]]).unwrap()[0], vec![101, 1996, 4248, 2829, 102]);
}

fn reference_model() -> (Classifier, Batch, Value) {
    let r = reference();
    let files = hub::resolve(None).unwrap();
    let config = BertConfig::from_file(&files.config).unwrap();
    let mut tensors = weights::read_checkpoint(&files).unwrap();
    let head = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/bert_head.safetensors");
    let (head, _) = read_safetensors(&head).unwrap();
    tensors.extend(head);
    let (clf, report) = Classifier::build(&config, 3, Device::Cpu, &tensors, "MiniLM", true).unwrap();
    assert!(report.new.is_empty(), "{:?}", report.new);
    assert_eq!(report.unused, vec!["embeddings.position_ids".to_string()]);
    let batch = reference_batch(&r);
    (clf, batch, r)
}

/// The padded token ids and mask `transformers` ran on.
fn reference_batch(r: &Value) -> Batch {
    let rows = ids(&r["input_ids"]);
    let (b, t) = (rows.len() as i64, rows[0].len() as i64);
    let flat: Vec<i64> = rows.iter().flatten().map(|&i| i as i64).collect();
    let mask: Vec<i64> = ids(&r["attention_mask"]).iter().flatten().map(|&i| i as i64).collect();
    Batch { ids: Tensor::from_slice(&flat).view([b, t]), mask: Tensor::from_slice(&mask).view([b, t]), types: None }
}

fn max_abs_diff(ours: &Tensor, theirs: &[f64]) -> f64 {
    let ours: Vec<f64> = Vec::try_from(ours.to_kind(Kind::Double).flatten(0, -1)).unwrap();
    assert_eq!(ours.len(), theirs.len());
    ours.iter().zip(theirs).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max)
}

#[test]
fn hidden_states_and_logits_match_transformers() {
    let (clf, batch, r) = reference_model();
    assert_matches_transformers(&clf, &batch, &r);
}

fn assert_matches_transformers(clf: &Classifier, batch: &Batch, r: &Value) {
    let _guard = tch::no_grad_guard();
    let pass = Pass::eval(Precision::Fp32);
    let hidden = clf.model.hidden_states(batch, &pass).unwrap();
    let mut worst = 0.0f64;
    for (b, rows) in r["last_hidden_state"].as_array().unwrap().iter().enumerate() {
        let rows = rows.as_array().unwrap();
        let theirs: Vec<f64> =
            rows.iter().flat_map(|v| v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap())).collect();
        let ours = hidden.get(b as i64).narrow(0, 0, rows.len() as i64);
        worst = worst.max(max_abs_diff(&ours, &theirs));
    }
    eprintln!("max |hidden - transformers| = {worst:e}");
    assert!(worst < 1e-4, "last hidden state differs from transformers by {worst}");
    let logits = clf.model.logits(batch, &pass).unwrap();
    let theirs: Vec<f64> = r["logits"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()))
        .collect();
    let diff = max_abs_diff(&logits, &theirs);
    eprintln!("max |logits - transformers| = {diff:e}");
    assert!(diff < 1e-4, "logits differ from transformers by {diff}");
    // The comparison can fail: a wrong layer norm eps shows up here.
    let theirs_shifted: Vec<f64> = theirs.iter().map(|x| x + 1e-3).collect();
    assert!(max_abs_diff(&logits, &theirs_shifted) > 1e-4);
}

/// A tiny model of `tests/reference` (made by make_tiny_references.py): its
/// directory's files and config, and its reference values. Our tokenizer
/// gives transformers' ids, and the fine-tuned classifier loads with every
/// tensor used and gives transformers' hidden states and logits.
fn tiny_model_matches_transformers(name: &str, family: Family, pad_id: i64) -> (BertConfig, HashMap<String, Tensor>) {
    let r = reference_file(&format!("{name}_reference.json"));
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference").join(format!("{name}-tiny"));
    let files = hub::resolve(Some(dir.to_str().unwrap())).unwrap();
    let config = BertConfig::from_file(&files.config).unwrap();
    assert_eq!(config.family(), family);
    let max_len = r["max_len"].as_u64().unwrap() as usize;
    let tokenizer = TextTokenizer::load(&files.dir, max_len).unwrap();
    assert_eq!(tokenizer.pad_id, pad_id);
    let unpadded: Vec<Vec<u32>> = ids(&r["input_ids"])
        .into_iter()
        .zip(ids(&r["attention_mask"]))
        .map(|(row, mask)| row.into_iter().zip(mask).filter(|(_, m)| *m == 1).map(|(i, _)| i).collect())
        .collect();
    let t = texts(&r);
    let refs: Vec<&str> = t.iter().map(String::as_str).collect();
    assert_eq!(tokenizer.encode(&refs).unwrap(), unpadded);
    let tensors = weights::read_checkpoint(&files).unwrap();
    let (clf, report) = Classifier::build(&config, 3, Device::Cpu, &tensors, name, true).unwrap();
    assert!(report.new.is_empty() && report.unused.is_empty(), "{report:?}");
    assert_matches_transformers(&clf, &reference_batch(&r), &r);
    (config, tensors)
}

/// The variables of `clf` under the `new` prefixes hold transformers' fresh
/// initialisation (weights from normal(0, initializer_range), zero biases);
/// every other one holds its tensor in `checkpoint`.
fn assert_initialised_as_transformers(clf: &Classifier, checkpoint: &HashMap<String, Tensor>, new: &[&str]) {
    let r = clf.model.config.initializer_range;
    assert!(r > 0.0, "the model's config lost its initializer_range: {r}");
    for (name, var) in clf.vs.variables() {
        if !new.iter().any(|p| name.starts_with(p)) {
            let stored = &checkpoint[&name];
            assert!(var.equal(stored), "{name} differs from the checkpoint");
            continue;
        }
        let (mean, std) = (var.mean(Kind::Float).double_value(&[]), var.std(true).double_value(&[]));
        if name.ends_with(".bias") {
            assert_eq!(var.abs().max().double_value(&[]), 0.0, "{name} is not zero");
        } else {
            let n = var.numel() as f64;
            assert!(mean.abs() < 5.0 * r / n.sqrt(), "{name}: mean {mean} for normal(0, {r})");
            // 5 standard errors of each estimate.
            assert!((std - r).abs() < 5.0 * r / (2.0 * n).sqrt(), "{name}: std {std} for normal(0, {r})");
        }
    }
}

/// `tensors` without the classification head, plus `extra` (zeros).
fn base_model(tensors: &HashMap<String, Tensor>, head: &[&str], extra: &str) -> HashMap<String, Tensor> {
    let mut base: HashMap<String, Tensor> = tensors
        .iter()
        .filter(|(k, _)| !head.iter().any(|h| k.starts_with(h)))
        .map(|(k, v)| (k.clone(), v.shallow_clone()))
        .collect();
    base.insert(extra.into(), Tensor::zeros([32, 32], (Kind::Float, Device::Cpu)));
    base
}

#[test]
fn roberta_matches_transformers() {
    // Byte-level BPE, <s> ... </s>, <pad> = 1; positions after the padding
    // id, the head on <s>.
    let (config, tensors) = tiny_model_matches_transformers("roberta", Family::Roberta, 1);
    // A pre-trained RoBERTa: no classifier, and a pooler the classifier does not read.
    let base = base_model(&tensors, &["classifier."], "roberta.pooler.dense.weight");
    let (_, report) = Classifier::build(&config, 2, Device::Cpu, &base, "base", false).unwrap();
    assert_eq!(
        report.new,
        ["classifier.dense.bias", "classifier.dense.weight", "classifier.out_proj.bias", "classifier.out_proj.weight"]
    );
    assert_eq!(report.unused, ["roberta.pooler.dense.weight"]);
    let e = Classifier::build(&config, 2, Device::Cpu, &base, "base", true).err().unwrap();
    assert!(e.to_string().contains("no classification head (classifier.out_proj.weight)"), "{e}");
}

/// A RoBERTa checkpoint that ships the slow tokenizer's `vocab.json` and
/// `merges.txt` and no `tokenizer.json` (many Hub fine-tunes do): the tiny
/// RoBERTa's vocabulary and merges in that format must give transformers' ids
/// (which its `tokenizer.json` gives).
#[test]
fn roberta_from_vocab_json_and_merges_txt_gives_transformers_ids() {
    let r = reference_file("roberta_reference.json");
    let tiny = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/roberta-tiny");
    let dir = tempfile::tempdir().unwrap();
    common::with_slow_roberta_tokenizer(&tiny, dir.path(), false);
    let max_len = r["max_len"].as_u64().unwrap() as usize;
    let t = texts(&r);
    let refs: Vec<&str> = t.iter().map(String::as_str).collect();
    let unpadded: Vec<Vec<u32>> = ids(&r["input_ids"])
        .into_iter()
        .zip(ids(&r["attention_mask"]))
        .map(|(row, mask)| row.into_iter().zip(mask).filter(|(_, m)| *m == 1).map(|(i, _)| i).collect())
        .collect();
    // Without tokenizer_config.json (RoBERTa's special tokens are the
    // defaults), and with the checkpoint's.
    for config in [false, true] {
        if config {
            std::fs::copy(tiny.join("tokenizer_config.json"), dir.path().join("tokenizer_config.json")).unwrap();
        }
        let slow = TextTokenizer::load(dir.path(), max_len).unwrap();
        assert_eq!(slow.source, "vocab.json + merges.txt");
        assert_eq!(slow.pad_id, 1);
        assert_eq!(slow.encode(&refs).unwrap(), unpadded, "tokenizer_config.json: {config}");
    }
    // The same ids as tokenizer.json on what byte-level BPE finds hard:
    // runs of spaces, tabs and line breaks, emoji, a special token in the text.
    let hard = ["  two  spaces\tand a tab\nand a line", "emoji 🎉🎉 and ZWJ 👩‍💻", "a <mask> inside", "x"];
    let slow = TextTokenizer::load(dir.path(), max_len).unwrap();
    let json = TextTokenizer::load(&tiny, max_len).unwrap();
    assert_eq!(slow.encode(&hard).unwrap(), json.encode(&hard).unwrap());
    // Merges without their vocabulary say which files are wrong.
    std::fs::write(dir.path().join("vocab.json"), "{\"a\": 0}").unwrap();
    let e = TextTokenizer::load(dir.path(), max_len).err().unwrap().to_string();
    assert!(e.contains("vocab.json and") && e.contains("merges.txt are not a BPE vocabulary"), "{e}");
}

/// An ALBERT checkpoint that ships only SentencePiece's `spiece.model` (as
/// fine-tunes saved before `tokenizer.json` existed do): the ids
/// transformers' AlbertTokenizer gives with it, with ALBERT's default
/// settings and with case and accents kept (tests/reference/make_spiece_reference.py).
#[test]
fn albert_from_spiece_model_gives_transformers_ids() {
    let r = reference_file("albert_spiece_reference.json");
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/albert-spiece/spiece.model");
    let texts = texts(&r);
    for (name, config) in
        [("default", None), ("cased_accents", Some(r#"{"do_lower_case": false, "keep_accents": true}"#))]
    {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(&model, dir.path().join("spiece.model")).unwrap();
        if let Some(c) = config {
            std::fs::write(dir.path().join("tokenizer_config.json"), c).unwrap();
        }
        let t = TextTokenizer::load(dir.path(), 512).unwrap();
        assert_eq!((t.source, t.pad_id, t.lowercase), ("spiece.model", 0, config.is_none()));
        let got = t.encode(&texts).unwrap();
        for ((text, got), want) in texts.iter().zip(&got).zip(ids(&r["ids"][name])) {
            assert_eq!(got, &want, "{name}: {text:?}");
        }
    }
    // A damaged file is named, in one line.
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(&model).unwrap();
    std::fs::write(dir.path().join("spiece.model"), &bytes[..bytes.len() / 3]).unwrap();
    let e = TextTokenizer::load(dir.path(), 128).err().unwrap();
    assert_eq!(hpcml::cli::exit_code(&e), 2);
    assert!(e.to_string().contains("spiece.model is not a SentencePiece model this can read"), "{e}");
}

#[test]
fn distilbert_matches_transformers() {
    // DistilBERT's config names (dim, n_layers, ...), layer names, no token
    // types, pre_classifier + ReLU.
    let (config, tensors) = tiny_model_matches_transformers("distilbert", Family::DistilBert, 0);
    assert_eq!((config.hidden_size, config.intermediate_size, config.head_dropout()), (32, 64, 0.3));
    // A pre-trained DistilBERT, as distilbert-base-uncased is: its masked-LM head is not used.
    let base = base_model(&tensors, &["classifier.", "pre_classifier."], "vocab_transform.weight");
    let (clf, report) = Classifier::build(&config, 2, Device::Cpu, &base, "base", false).unwrap();
    assert_eq!(report.new, ["classifier.bias", "classifier.weight", "pre_classifier.bias", "pre_classifier.weight"]);
    assert_eq!(report.unused, ["vocab_transform.weight"]);
    assert_initialised_as_transformers(&clf, &base, &["classifier.", "pre_classifier."]);
    // A fine-tuned model's head of another shape (3 classes here) is drawn anew too.
    let (clf, report) = Classifier::build(&config, 2, Device::Cpu, &tensors, "3 classes", false).unwrap();
    assert_eq!(report.new, ["classifier.bias (checkpoint has [3])", "classifier.weight (checkpoint has [3, 32])"]);
    assert_initialised_as_transformers(&clf, &tensors, &["classifier."]);
    // Written back for transformers under DistilBERT's names.
    let labels = config.class_labels(3, Path::new("config.json")).unwrap();
    let out = config.for_classification(&labels);
    assert_eq!(
        (out["dim"].as_i64(), out["n_layers"].as_i64(), out["seq_classif_dropout"].as_f64()),
        (Some(32), Some(2), Some(0.3))
    );
    assert!(out.get("hidden_size").is_none() && out.get("type_vocab_size").is_none(), "{out}");
    assert_eq!(out["architectures"][0], "DistilBertForSequenceClassification");
}

#[test]
fn electra_matches_transformers() {
    // Embeddings 16 wide, widened to 32 by embeddings_project; the head is
    // RoBERTa's with GELU.
    let (config, tensors) = tiny_model_matches_transformers("electra", Family::Electra, 0);
    assert_eq!((config.embedding_width(), config.hidden_size), (16, 32));
    // The discriminator checkpoints (google/electra-*-discriminator) carry a
    // pre-training head, which is not used.
    let base = base_model(&tensors, &["classifier."], "discriminator_predictions.dense.weight");
    let (_, report) = Classifier::build(&config, 2, Device::Cpu, &base, "base", false).unwrap();
    assert_eq!(
        report.new,
        ["classifier.dense.bias", "classifier.dense.weight", "classifier.out_proj.bias", "classifier.out_proj.weight"]
    );
    assert_eq!(report.unused, ["discriminator_predictions.dense.weight"]);
    let labels = config.class_labels(3, Path::new("config.json")).unwrap();
    let out = config.for_classification(&labels);
    assert_eq!(
        (out["embedding_size"].as_i64(), out["architectures"][0].as_str()),
        (Some(16), Some("ElectraForSequenceClassification"))
    );
}

#[test]
fn albert_matches_transformers() {
    // 4 layers from 2 groups of 2 shared layers (so 8 run), embeddings 16
    // wide widened by embedding_hidden_mapping_in, the tanh GELU, and
    // classifier_dropout_prob read and written back under its own name.
    let (config, tensors) = tiny_model_matches_transformers("albert", Family::Albert, 0);
    assert_eq!((config.layer_groups(), config.head_dropout()), ((2, 2), 0.2));
    let base = base_model(&tensors, &["classifier."], "predictions.dense.weight");
    let (clf, report) = Classifier::build(&config, 2, Device::Cpu, &base, "base", false).unwrap();
    assert_eq!(report.new, ["classifier.bias", "classifier.weight"]);
    assert_eq!(report.unused, ["predictions.dense.weight"]);
    // Shared weights are one variable each: 2 groups x 2 layers x 16 tensors,
    // not 8 layers' worth.
    let layers = clf.vs.variables().keys().filter(|k| k.contains("albert_layers")).count();
    assert_eq!(layers, 64);
    let labels = config.class_labels(3, Path::new("config.json")).unwrap();
    let out = config.for_classification(&labels);
    assert_eq!(out["classifier_dropout_prob"].as_f64(), Some(0.2));
    assert!(out.get("classifier_dropout").is_none(), "{out}");
}

#[test]
fn bf16_stays_close_to_fp32() {
    let (clf, batch, _) = reference_model();
    let _guard = tch::no_grad_guard();
    let fp32 = clf.model.logits(&batch, &Pass::eval(Precision::Fp32)).unwrap();
    let bf16 = clf.model.logits(&batch, &Pass::eval(Precision::Bf16)).unwrap();
    assert_eq!(bf16.kind(), Kind::Float);
    let diff = (&fp32 - &bf16).abs().max().double_value(&[]);
    assert!(diff < 0.1, "bf16 logits differ from fp32 by {diff}");
}

#[test]
fn old_checkpoint_names_load_the_same_model() {
    // gamma/beta LayerNorm names and a `bert.` prefix, as bert-base-uncased has.
    let files = hub::resolve(None).unwrap();
    let config = BertConfig::from_file(&files.config).unwrap();
    let tensors = weights::read_checkpoint(&files).unwrap();
    let renamed: HashMap<String, Tensor> = tensors
        .iter()
        .map(|(k, v)| {
            let k = k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta");
            (format!("bert.{k}"), v.shallow_clone())
        })
        .collect();
    let (a, ra) = Classifier::build(&config, 2, Device::Cpu, &tensors, "a", false).unwrap();
    let (b, rb) = Classifier::build(&config, 2, Device::Cpu, &renamed, "b", false).unwrap();
    assert_eq!(ra.new, vec!["classifier.bias".to_string(), "classifier.weight".to_string()]);
    assert_eq!(ra.loaded, rb.loaded);
    // Everything loaded is the same; the new head is drawn from torch's
    // generator, which other tests in this process draw from too.
    for (name, t) in a.vs.variables().into_iter().filter(|(n, _)| !n.starts_with("classifier.")) {
        assert!(t.equal(&b.vs.variables()[&name]), "{name}");
    }
    // Missing anything but the head is an error naming it.
    let mut broken = tensors;
    broken.remove("encoder.layer.2.output.dense.weight");
    let e = Classifier::build(&config, 2, Device::Cpu, &broken, "broken", false).err().unwrap();
    assert!(e.to_string().contains("bert.encoder.layer.2.output.dense.weight"), "{e}");
    assert_eq!(hpcml::cli::exit_code(&e), 2);
    // A base model used where a fine-tuned one is needed.
    let files = hub::resolve(None).unwrap();
    let base = weights::read_checkpoint(&files).unwrap();
    let e = Classifier::build(&config, 2, Device::Cpu, &base, "MiniLM", true).err().unwrap();
    assert!(e.to_string().contains("no classification head"), "{e}");
}

fn venv_python(script: &str, args: &[&Path]) {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let ok = std::process::Command::new(python).args(["-c", script]).args(args).status().unwrap();
    assert!(ok.success(), "{script}");
}

#[test]
fn pytorch_model_bin_in_either_torch_save_format_loads_the_same_weights() {
    let files = hub::resolve(None).unwrap();
    let reference = weights::read_checkpoint(&files).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(&files.config, dir.path().join("config.json")).unwrap();
    let (safetensors, bin) = (files.dir.join("model.safetensors"), dir.path().join("pytorch_model.bin"));
    for zip in ["True", "False"] {
        // A state dict as transformers' save_pretrained wrote it (an
        // OrderedDict with _metadata), in the zip format and the legacy one.
        venv_python(
            &format!(
                "import sys, collections, torch; from safetensors.torch import load_file
sd = collections.OrderedDict(load_file(sys.argv[1])); sd._metadata = collections.OrderedDict({{'': {{'version': 1}}}})
torch.save(sd, sys.argv[2], _use_new_zipfile_serialization={zip})"
            ),
            &[&safetensors, &bin],
        );
        let files = hub::ModelFiles::in_dir("bin", dir.path()).unwrap();
        assert!(matches!(files.weights, hub::Weights::PytorchBin(_)));
        let loaded = weights::read_checkpoint(&files).unwrap();
        assert_eq!(loaded.len(), reference.len(), "zip {zip}");
        for (name, t) in &reference {
            assert!(loaded[name].equal(t), "{name}, zip {zip}");
        }
        // Cut short, as an interrupted download leaves it: one line, exit 2.
        let whole = std::fs::read(&bin).unwrap();
        std::fs::write(&bin, &whole[..whole.len() / 2]).unwrap();
        let e = weights::read_checkpoint(&files).unwrap_err();
        assert_eq!(hpcml::cli::exit_code(&e), 2);
        assert!(e.to_string().contains("truncated") && e.to_string().contains("save_file"), "zip {zip}: {e}");
    }
    let files = hub::ModelFiles::in_dir("bin", dir.path()).unwrap();
    std::fs::write(&bin, "<html>Not found</html>").unwrap();
    let e = weights::read_checkpoint(&files).unwrap_err();
    assert!(e.to_string().contains("not a PyTorch checkpoint"), "{e}");
    // In shards with an index, as save_pretrained(safe_serialization=False,
    // max_shard_size=...) writes a model larger than the shard size.
    std::fs::remove_file(&bin).unwrap();
    venv_python(
        "import sys, os, json, torch; from safetensors.torch import load_file
sd = load_file(sys.argv[1]); names = sorted(sd); d = sys.argv[2]
parts = {'pytorch_model-00001-of-00002.bin': names[::2], 'pytorch_model-00002-of-00002.bin': names[1::2]}
for f, ns in parts.items():
    torch.save({n: sd[n] for n in ns}, os.path.join(d, f))
json.dump({'metadata': {}, 'weight_map': {n: f for f, ns in parts.items() for n in ns}},
          open(os.path.join(d, 'pytorch_model.bin.index.json'), 'w'))",
        &[&safetensors, dir.path()],
    );
    let files = hub::ModelFiles::in_dir("shards", dir.path()).unwrap();
    assert!(matches!(&files.weights, hub::Weights::PytorchBin(p) if p.len() == 2));
    let loaded = weights::read_checkpoint(&files).unwrap();
    assert_eq!(loaded.len(), reference.len());
    for (name, t) in &reference {
        assert!(loaded[name].equal(t), "{name} from shards");
    }
    std::fs::remove_file(dir.path().join("pytorch_model-00002-of-00002.bin")).unwrap();
    let e = hub::ModelFiles::in_dir("shards", dir.path()).err().unwrap();
    assert!(e.to_string().contains("names the shard") && e.to_string().contains("missing"), "{e}");
}

#[test]
fn torch_save_files_give_back_views_shared_storages_and_every_dtype_in_both_formats() {
    let dir = tempfile::tempdir().unwrap();
    let (legacy, zip, plain) =
        (dir.path().join("legacy.bin"), dir.path().join("zip.bin"), dir.path().join("plain.bin"));
    venv_python(
        "import sys, collections, torch
w = torch.arange(12, dtype=torch.float32).reshape(3, 4)
sd = collections.OrderedDict([('w', w), ('w.t', w.t()), ('w.tail', w[1:, 1:]), ('long', torch.tensor([1, -2, 3])),
    ('half', torch.tensor([1.5, -2.25], dtype=torch.float16)), ('bf16', torch.tensor([0.5], dtype=torch.bfloat16)),
    ('bool', torch.tensor(True)), ('param', torch.nn.Parameter(torch.full((2,), 7.0))), ('empty', torch.zeros(0, 3)),
    ('f64', torch.tensor([[1e300]], dtype=torch.float64)), ('u8', torch.tensor([255], dtype=torch.uint8))])
sd._metadata = collections.OrderedDict({'': {'version': 1}})
wrapped = {'state_dict': sd, 'epoch': 3, 'lr': 1e-5, 'note': b'bytes'}
torch.save(wrapped, sys.argv[1], _use_new_zipfile_serialization=False)
torch.save(wrapped, sys.argv[2])
torch.save({k: v.detach().contiguous() for k, v in sd.items()}, sys.argv[3])",
        &[&legacy, &zip, &plain],
    );
    // libtorch reads the plain dict, the reference, but not the others.
    let want: HashMap<String, Tensor> = Tensor::loadz_multi(&plain).unwrap().into_iter().collect();
    assert!(Tensor::loadz_multi(&zip).is_err());
    for (path, format) in [(&legacy, torch_pickle::Format::Legacy), (&zip, torch_pickle::Format::Zip)] {
        assert_eq!(torch_pickle::Format::of(&std::fs::read(path).unwrap()), Some(format));
        let got: HashMap<String, Tensor> = torch_pickle::read(path, format).unwrap().into_iter().collect();
        assert_eq!(got.len(), want.len());
        for (name, t) in &want {
            let g = &got[name];
            assert_eq!((g.kind(), g.size()), (t.kind(), t.size()), "{name}, {format:?}");
            assert!(g.equal(t), "{name}, {format:?}: {g} against {t}");
        }
        // Tied tensors come back as copies of their own.
        let _ = got["w.t"].shallow_clone().fill_(0.0);
        assert!(got["w"].equal(&want["w"]), "{format:?}");
    }
}
