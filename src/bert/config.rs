//! A checkpoint's `config.json`, as Hugging Face writes it for BERT-family
//! models. Every hyper-parameter the model uses comes from here (never a
//! hard-coded constant), and the fields we don't use are kept so an export
//! writes them back unchanged.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::data::Labels;
use crate::bail_usage;

/// The feed-forward activation (`hidden_act`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// The exact erf form: BERT's `gelu`.
    Gelu,
    /// The tanh approximation (`gelu_new`, `gelu_pytorch_tanh`, `gelu_fast`).
    GeluTanh,
    Relu,
    Silu,
}

impl Activation {
    pub fn parse(name: &str) -> Result<Activation> {
        Ok(match name {
            "gelu" => Activation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            "silu" | "swish" => Activation::Silu,
            other => bail_usage!(
                "config.json: hidden_act '{other}' is not supported (use gelu, gelu_new, gelu_pytorch_tanh, relu or silu)"
            ),
        })
    }
}

/// The fields of a BERT `config.json` the model needs, with Hugging Face's
/// defaults for the ones old checkpoints leave out. Everything else in the
/// file rides along in `extra`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BertConfig {
    #[serde(default = "default_model_type")]
    pub model_type: String,
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    pub intermediate_size: i64,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default = "default_dropout")]
    pub hidden_dropout_prob: f64,
    #[serde(default = "default_dropout")]
    pub attention_probs_dropout_prob: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classifier_dropout: Option<f64>,
    #[serde(default = "default_positions")]
    pub max_position_embeddings: i64,
    /// ELECTRA's embedding width, when it is not the hidden size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_size: Option<i64>,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: i64,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_init_range")]
    pub initializer_range: f64,
    #[serde(default)]
    pub pad_token_id: Option<i64>,
    #[serde(default = "default_position_type")]
    pub position_embedding_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id2label: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn default_model_type() -> String {
    "bert".into()
}
fn default_act() -> String {
    "gelu".into()
}
fn default_dropout() -> f64 {
    0.1
}
fn default_positions() -> i64 {
    512
}
fn default_type_vocab() -> i64 {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_init_range() -> f64 {
    0.02
}
fn default_position_type() -> String {
    "absolute".into()
}

/// The module trees bert-classifier loads. RoBERTa's encoder is BERT's
/// (same layers, same names under `roberta.`); it differs in where positions
/// start (after the padding id) and in its head: no pooler, a
/// `classifier.dense` + tanh + `classifier.out_proj` on `[CLS]` instead.
/// DistilBERT is BERT's layer under other names, without token types or the
/// dropout after attention, and with `pre_classifier` + ReLU as its pooler.
/// ELECTRA is BERT under `electra.` with embeddings of their own width
/// (`embedding_size`, projected to the hidden size) and RoBERTa's head with
/// GELU in place of tanh. ALBERT has such embeddings too, and one set of
/// layer weights (per group) run for every layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Bert,
    Roberta,
    DistilBert,
    Electra,
    Albert,
}

impl Family {
    /// The encoder's name in `*ForSequenceClassification` checkpoints.
    pub fn prefix(self) -> &'static str {
        match self {
            Family::Bert => "bert",
            Family::Roberta => "roberta",
            Family::DistilBert => "distilbert",
            Family::Electra => "electra",
            Family::Albert => "albert",
        }
    }

    /// The head's output layer, whose rows are the classes.
    pub fn head_weight(self) -> &'static str {
        match self {
            Family::Bert | Family::DistilBert | Family::Albert => "classifier.weight",
            Family::Roberta | Family::Electra => "classifier.out_proj.weight",
        }
    }
}

/// `model_type`s bert-classifier runs, their family and the class
/// `transformers` builds for sequence classification.
const MODEL_TYPES: [(&str, Family, &str); 7] = [
    ("bert", Family::Bert, "BertForSequenceClassification"),
    ("albert", Family::Albert, "AlbertForSequenceClassification"),
    ("distilbert", Family::DistilBert, "DistilBertForSequenceClassification"),
    ("electra", Family::Electra, "ElectraForSequenceClassification"),
    ("roberta", Family::Roberta, "RobertaForSequenceClassification"),
    ("xlm-roberta", Family::Roberta, "XLMRobertaForSequenceClassification"),
    ("camembert", Family::Roberta, "CamembertForSequenceClassification"),
];

impl BertConfig {
    pub fn from_file(path: &Path) -> Result<BertConfig> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        Self::from_json(&text).with_context(|| format!("{}", path.display()))
    }

    pub fn from_json(text: &str) -> Result<BertConfig> {
        let mut v: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => bail_usage!("config.json is not JSON ({e})"),
        };
        if let Value::Object(map) = &mut v {
            match map.get("model_type").and_then(Value::as_str) {
                Some("distilbert") => distilbert_to_bert(map),
                Some("albert") => rename(map, ALBERT_HEAD_DROPOUT, "classifier_dropout"),
                _ => {}
            }
        }
        let cfg: BertConfig = match serde_json::from_value(v) {
            Ok(c) => c,
            Err(e) => bail_usage!("not a BERT config.json ({e})"),
        };
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<()> {
        if self.model_type_entry().is_none() {
            bail_usage!(
                "model_type '{}' is not a BERT-family model; bert-classifier loads model_type bert (bert-base-uncased, MiniLM, BioBERT, ...), albert, distilbert, electra, roberta, xlm-roberta and camembert",
                self.model_type
            );
        }
        if self.position_embedding_type != "absolute" {
            bail_usage!(
                "position_embedding_type '{}' is not supported (only \"absolute\")",
                self.position_embedding_type
            );
        }
        Activation::parse(&self.hidden_act)?;
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
            ("embedding_size", self.embedding_width()),
        ];
        for (name, v) in positive {
            if v <= 0 {
                bail_usage!("{name} must be positive, got {v}");
            }
        }
        if self.max_tokens() < 2 {
            bail_usage!(
                "max_position_embeddings {} leaves no room for a text after pad_token_id {}",
                self.max_position_embeddings,
                self.pad_id()
            );
        }
        let (groups, _) = self.layer_groups();
        if self.family() == Family::Albert && groups > self.num_hidden_layers {
            bail_usage!("num_hidden_groups {groups} is more than num_hidden_layers {}", self.num_hidden_layers);
        }
        if self.hidden_size % self.num_attention_heads != 0 {
            bail_usage!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size,
                self.num_attention_heads
            );
        }
        for (name, p) in [
            ("hidden_dropout_prob", Some(self.hidden_dropout_prob)),
            ("attention_probs_dropout_prob", Some(self.attention_probs_dropout_prob)),
            ("classifier_dropout", self.classifier_dropout),
        ] {
            if let Some(p) = p {
                if !(0.0..1.0).contains(&p) {
                    bail_usage!("{name} must be in [0, 1), got {p}");
                }
            }
        }
        Ok(())
    }

    /// This config's row of [`MODEL_TYPES`]; `None` for a type we do not run.
    fn model_type_entry(&self) -> Option<&'static (&'static str, Family, &'static str)> {
        MODEL_TYPES.iter().find(|(t, _, _)| *t == self.model_type)
    }

    pub fn family(&self) -> Family {
        self.model_type_entry().map_or(Family::Bert, |(_, f, _)| *f)
    }

    /// The longest input, special tokens included: RoBERTa's positions start
    /// after the padding id, so its first `pad_token_id + 1` rows are never used.
    pub fn max_tokens(&self) -> i64 {
        match self.family() {
            Family::Bert | Family::DistilBert | Family::Electra | Family::Albert => self.max_position_embeddings,
            Family::Roberta => self.max_position_embeddings - self.pad_id() - 1,
        }
    }

    pub fn activation(&self) -> Activation {
        Activation::parse(&self.hidden_act).unwrap_or(Activation::Gelu)
    }

    pub fn head_dim(&self) -> i64 {
        self.hidden_size / self.num_attention_heads
    }

    /// The dropout before the classification head (BERT falls back to the
    /// hidden dropout).
    pub fn head_dropout(&self) -> f64 {
        self.classifier_dropout.unwrap_or(self.hidden_dropout_prob)
    }

    /// ALBERT's layer sharing: (groups of shared weights, layers per group).
    pub fn layer_groups(&self) -> (i64, i64) {
        let get = |key: &str| self.extra.get(key).and_then(Value::as_i64).unwrap_or(1).max(1);
        (get("num_hidden_groups"), get("inner_group_num"))
    }

    /// The width of the embeddings (ELECTRA's and ALBERT's may be narrower than the layers).
    pub fn embedding_width(&self) -> i64 {
        self.embedding_size.unwrap_or(self.hidden_size)
    }

    /// The id of `[PAD]`, whose embedding row gets no gradient.
    pub fn pad_id(&self) -> i64 {
        self.pad_token_id.unwrap_or(0)
    }

    /// The class names a fine-tuned checkpoint records, in id order, if it
    /// records real ones (not the `LABEL_0`, `LABEL_1` placeholders).
    pub fn labels(&self) -> Option<Vec<String>> {
        let map = self.id2label.as_ref()?;
        let mut pairs: Vec<(i64, &String)> =
            map.iter().filter_map(|(k, v)| k.parse::<i64>().ok().map(|k| (k, v))).collect();
        pairs.sort();
        let contiguous = pairs.iter().enumerate().all(|(i, (k, _))| *k == i as i64);
        if !contiguous || pairs.is_empty() {
            return None;
        }
        Some(pairs.into_iter().map(|(_, v)| v.clone()).collect())
    }

    /// The classes of a classifier's `classes` outputs: the recorded names,
    /// else `LABEL_i` as `transformers` names them, with the values they had
    /// in the training CSVs where the run named them (`label_values`); the
    /// `LABEL_i` placeholders have the values `i`. A count
    /// that disagrees with the head is a usage error naming `path` (this
    /// config's file).
    pub fn class_labels(&self, classes: i64, path: &Path) -> Result<Labels> {
        let placeholders: Vec<String> = (0..classes).map(|i| format!("LABEL_{i}")).collect();
        let names = self.labels().unwrap_or_else(|| placeholders.clone());
        if names.len() as i64 != classes {
            bail_usage!(
                "{}: config.json names {} classes but the classifier has {classes}",
                path.display(),
                names.len()
            );
        }
        let values: Option<Vec<String>> = self
            .extra
            .get(LABEL_VALUES)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect());
        let multi = self.multi_label();
        Ok(match values {
            Some(values) if values.len() == names.len() => Labels { names, values, multi },
            // transformers' placeholders stand for the class ids, which is
            // how labelled data sets number their classes (0 and 1, not LABEL_1).
            _ if names == placeholders => {
                Labels { names, values: (0..classes).map(|i| i.to_string()).collect(), multi }
            }
            _ => Labels { multi, ..Labels::unnamed(names) },
        })
    }

    /// Whether the checkpoint is a multi-label classifier (`problem_type`
    /// `multi_label_classification`, as toxic-comment models are): each
    /// class a yes-or-no label of its own.
    pub fn multi_label(&self) -> bool {
        self.extra.get("problem_type").and_then(Value::as_str) == Some(MULTI_LABEL)
    }

    /// The `config.json` of this model fine-tuned as a classifier over `labels`:
    /// what `transformers.AutoModelForSequenceClassification` reads. Classes
    /// the run named keep their CSV values under `label_values`, so `evaluate`
    /// reads CSVs labelled either way.
    pub fn for_classification(&self, labels: &Labels) -> Value {
        let mut cfg = self.clone();
        cfg.id2label = Some(labels.names.iter().enumerate().map(|(i, l)| (i.to_string(), l.clone())).collect());
        cfg.extra.remove(LABEL_VALUES);
        let mut v = serde_json::to_value(&cfg).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut v {
            let label2id: Map<String, Value> =
                labels.names.iter().enumerate().map(|(i, l)| (l.clone(), Value::from(i as u64))).collect();
            map.insert("label2id".into(), Value::Object(label2id));
            if labels.is_named() {
                map.insert(LABEL_VALUES.into(), serde_json::json!(labels.values));
            }
            let arch = self.model_type_entry().map_or("", |(_, _, a)| *a);
            map.insert("architectures".into(), serde_json::json!([arch]));
            let problem = if labels.multi { MULTI_LABEL } else { "single_label_classification" };
            map.insert("problem_type".into(), Value::from(problem));
            map.insert("torch_dtype".into(), Value::from("float32"));
            map.remove("num_labels");
            map.remove("_name_or_path");
            match self.family() {
                Family::DistilBert => bert_to_distilbert(map),
                Family::Albert => rename(map, "classifier_dropout", ALBERT_HEAD_DROPOUT),
                _ => {}
            }
        }
        v
    }
}

/// `problem_type` of a multi-label classifier, as `transformers` names it.
pub const MULTI_LABEL: &str = "multi_label_classification";

/// ALBERT's name for the dropout before its classifier.
const ALBERT_HEAD_DROPOUT: &str = "classifier_dropout_prob";

fn rename(map: &mut Map<String, Value>, from: &str, to: &str) {
    if let Some(v) = map.remove(from) {
        map.insert(to.into(), v);
    }
}

type DefaultValue = fn() -> Value;

/// DistilBERT's `config.json` names for BERT's fields, and its defaults
/// (`DistilBertConfig`'s) for a file that leaves them out.
const DISTILBERT_FIELDS: [(&str, &str, DefaultValue); 8] = [
    ("dim", "hidden_size", || Value::from(768)),
    ("n_layers", "num_hidden_layers", || Value::from(6)),
    ("n_heads", "num_attention_heads", || Value::from(12)),
    ("hidden_dim", "intermediate_size", || Value::from(3072)),
    ("activation", "hidden_act", || Value::from("gelu")),
    ("dropout", "hidden_dropout_prob", || Value::from(0.1)),
    ("attention_dropout", "attention_probs_dropout_prob", || Value::from(0.1)),
    ("seq_classif_dropout", "classifier_dropout", || Value::from(0.2)),
];

/// BERT's fields DistilBERT does not have: its LayerNorm eps is fixed at
/// 1e-12 (BERT's default) and it has no token types.
const NOT_DISTILBERT: [&str; 3] = ["layer_norm_eps", "type_vocab_size", "position_embedding_type"];

fn distilbert_to_bert(map: &mut Map<String, Value>) {
    for (theirs, ours, default) in DISTILBERT_FIELDS {
        let v = map.remove(theirs).unwrap_or_else(default);
        map.insert(ours.into(), v);
    }
    for field in NOT_DISTILBERT {
        map.remove(field);
    }
    map.entry("vocab_size").or_insert(Value::from(30522));
}

fn bert_to_distilbert(map: &mut Map<String, Value>) {
    for (theirs, ours, _) in DISTILBERT_FIELDS {
        if let Some(v) = map.remove(ours) {
            map.insert(theirs.into(), v);
        }
    }
    for field in NOT_DISTILBERT {
        map.remove(field);
    }
}

/// Where `config.json` keeps the CSV values of classes the run named.
const LABEL_VALUES: &str = "label_values";

#[cfg(test)]
mod tests {
    use super::*;

    const MINI: &str = r#"{"architectures":["BertModel"],"hidden_act":"gelu","hidden_size":384,
        "intermediate_size":1536,"layer_norm_eps":1e-12,"max_position_embeddings":512,"model_type":"bert",
        "num_attention_heads":12,"num_hidden_layers":6,"pad_token_id":0,"type_vocab_size":2,
        "vocab_size":30522,"gradient_checkpointing":false}"#;

    #[test]
    fn reads_every_hyper_parameter_and_keeps_the_rest() {
        let c = BertConfig::from_json(MINI).unwrap();
        assert_eq!(c.head_dim(), 32);
        assert_eq!(c.layer_norm_eps, 1e-12);
        assert_eq!(c.activation(), Activation::Gelu);
        assert_eq!(c.head_dropout(), 0.1);
        assert_eq!(c.extra["gradient_checkpointing"], false);
        let out = c.for_classification(&Labels::unnamed(vec!["ham".into(), "spam".into()]));
        assert_eq!(out["id2label"]["1"], "spam");
        assert_eq!(out["label2id"]["ham"], 0);
        assert!(out.get("label_values").is_none());
        assert_eq!(out["architectures"][0], "BertForSequenceClassification");
        assert_eq!(out["gradient_checkpointing"], false);
        let back: BertConfig = serde_json::from_value(out).unwrap();
        assert_eq!(back.labels().unwrap(), vec!["ham", "spam"]);
    }

    #[test]
    fn named_classes_keep_their_values_through_the_config() {
        let c = BertConfig::from_json(MINI).unwrap();
        let named =
            Labels { names: vec!["REAL".into(), "FAKE".into()], values: vec!["0".into(), "1".into()], multi: false };
        let out = c.for_classification(&named);
        assert_eq!((out["id2label"]["1"].as_str(), out["label2id"]["REAL"].as_u64()), (Some("FAKE"), Some(0)));
        let back: BertConfig = serde_json::from_value(out).unwrap();
        assert_eq!(back.class_labels(2, Path::new("config.json")).unwrap(), named);
        // Written again (an export of the export), the values stay, once.
        let again = back.for_classification(&back.class_labels(2, Path::new("config.json")).unwrap());
        assert_eq!(again["label_values"], serde_json::json!(["0", "1"]));
        let e = back.class_labels(3, Path::new("m/config.json")).unwrap_err();
        assert!(e.to_string().contains("m/config.json: config.json names 2 classes but the classifier has 3"), "{e}");
        // A Hub classifier that kept transformers' placeholder names (or has
        // none): its classes are the ids a data set's labels give, 0 and 1.
        let mut hub = BertConfig::from_json(MINI).unwrap();
        for id2label in [None, Some([("0".to_string(), "LABEL_0".to_string()), ("1".into(), "LABEL_1".into())].into())]
        {
            hub.id2label = id2label;
            let labels = hub.class_labels(2, Path::new("config.json")).unwrap();
            assert_eq!(
                (labels.names, labels.values),
                (vec!["LABEL_0".into(), "LABEL_1".into()], vec!["0".into(), "1".into()])
            );
        }
        // Names of its own are names, not ids.
        hub.id2label = Some([("0".to_string(), "neg".to_string()), ("1".into(), "pos".into())].into());
        assert_eq!(hub.class_labels(2, Path::new("config.json")).unwrap().values, ["neg", "pos"]);
    }

    #[test]
    fn rejects_what_it_cannot_run() {
        let bad = MINI.replace("\"bert\"", "\"gpt2\"");
        let e = BertConfig::from_json(&bad).unwrap_err();
        assert_eq!(crate::cli::exit_code(&e), crate::cli::EXIT_USAGE);
        assert!(e.to_string().contains("gpt2"));
        let bad = MINI.replace("\"gelu\"", "\"quick_gelu\"");
        assert!(BertConfig::from_json(&bad).unwrap_err().to_string().contains("quick_gelu"));
        let bad = MINI.replace("\"num_attention_heads\":12", "\"num_attention_heads\":7");
        assert!(BertConfig::from_json(&bad).is_err());
        assert!(BertConfig::from_json("{}").is_err());
    }

    #[test]
    fn placeholder_labels_are_not_class_names() {
        let mut c = BertConfig::from_json(MINI).unwrap();
        assert!(c.labels().is_none());
        c.id2label = Some([("0".to_string(), "neg".to_string()), ("2".to_string(), "pos".to_string())].into());
        assert!(c.labels().is_none());
    }
}
