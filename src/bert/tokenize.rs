//! Text to token ids with the `tokenizers` crate, as `transformers`' fast BERT
//! tokenizer does: the checkpoint's `tokenizer.json`, or, for checkpoints that
//! ship only `vocab.txt`, a WordPiece tokenizer built like `BertTokenizerFast`
//! (BERT normaliser, BERT pre-tokeniser, `[CLS] text [SEP]`).
//!
//! Lower-casing follows the checkpoint: `do_lower_case` (and `strip_accents`,
//! `tokenize_chinese_chars`) from `tokenizer_config.json` override what
//! `tokenizer.json` says, as `BertTokenizerFast` does. Texts are truncated to
//! `max_len` tokens, `[CLS]` and `[SEP]` included; never padded here (batches
//! are padded to their own longest text).

use std::path::Path;

use anyhow::{anyhow, Result};
use serde_json::Value;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{AddedToken, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::bail_usage;

pub struct TextTokenizer {
    inner: Tokenizer,
    pub max_len: usize,
    pub pad_id: i64,
    /// `tokenizer.json` or `vocab.txt`, for the log.
    pub source: &'static str,
    pub lowercase: bool,
}

/// Settings from `tokenizer_config.json` and `special_tokens_map.json`.
struct TokenizerConfig {
    do_lower_case: Option<bool>,
    strip_accents: Option<bool>,
    tokenize_chinese_chars: Option<bool>,
    cls: String,
    sep: String,
    pad: String,
    unk: String,
    mask: String,
}

fn read_json(path: &Path) -> Option<Value> {
    std::fs::read_to_string(path).ok().and_then(|t| serde_json::from_str(&t).ok())
}

/// A special token's text: a plain string or `{"content": ...}`.
fn token_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(|c| c.as_str()).map(str::to_string),
        _ => None,
    }
}

impl TokenizerConfig {
    fn read(dir: &Path) -> TokenizerConfig {
        let cfg = read_json(&dir.join("tokenizer_config.json")).unwrap_or(Value::Null);
        let map = read_json(&dir.join("special_tokens_map.json")).unwrap_or(Value::Null);
        let special = |key: &str, default: &str| {
            token_text(map.get(key)).or_else(|| token_text(cfg.get(key))).unwrap_or_else(|| default.to_string())
        };
        TokenizerConfig {
            do_lower_case: cfg.get("do_lower_case").and_then(Value::as_bool),
            strip_accents: cfg.get("strip_accents").and_then(Value::as_bool),
            tokenize_chinese_chars: cfg.get("tokenize_chinese_chars").and_then(Value::as_bool),
            cls: special("cls_token", "[CLS]"),
            sep: special("sep_token", "[SEP]"),
            pad: special("pad_token", "[PAD]"),
            unk: special("unk_token", "[UNK]"),
            mask: special("mask_token", "[MASK]"),
        }
    }
}

impl TextTokenizer {
    /// The tokenizer of the checkpoint in `dir`, truncating to `max_len`.
    pub fn load(dir: &Path, max_len: usize) -> Result<TextTokenizer> {
        if max_len < 2 {
            bail_usage!("--max-len {max_len}: needs room for [CLS] and [SEP], so at least 2");
        }
        let cfg = TokenizerConfig::read(dir);
        let json = dir.join("tokenizer.json");
        let vocab = dir.join("vocab.txt");
        let (mut inner, source, lowercase) = if json.is_file() {
            let (t, lower) = from_tokenizer_json(&json, &cfg)?;
            (t, "tokenizer.json", lower)
        } else if vocab.is_file() {
            let lower = cfg.do_lower_case.unwrap_or(true);
            (from_vocab(&vocab, &cfg, lower)?, "vocab.txt", lower)
        } else {
            bail_usage!("{} has neither tokenizer.json nor vocab.txt: no tokenizer to read texts with", dir.display());
        };
        inner
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| anyhow!("tokenizer truncation: {e}"))?;
        inner.with_padding(None);
        // RoBERTa's `<pad>` where the tokenizer's own files name no padding token.
        let pad_id = [cfg.pad.as_str(), "<pad>"].iter().find_map(|t| inner.token_to_id(t)).map_or(0, i64::from);
        Ok(TextTokenizer { inner, max_len, pad_id, source, lowercase })
    }

    /// Token ids of each text, `[CLS]` ... `[SEP]`, at most `max_len` of them.
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        let enc = self.inner.encode_batch(texts.to_vec(), true).map_err(|e| anyhow!("tokenizing: {e}"))?;
        Ok(enc.into_iter().map(|e| e.get_ids().to_vec()).collect())
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}

/// `tokenizer.json`, with the BERT normaliser's options set from
/// `tokenizer_config.json` and the file's own truncation and padding dropped.
fn from_tokenizer_json(path: &Path, cfg: &TokenizerConfig) -> Result<(Tokenizer, bool)> {
    let text = std::fs::read_to_string(path).map_err(|e| anyhow!("cannot read {}: {e}", path.display()))?;
    let mut v: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => bail_usage!("{} is not valid JSON ({e})", path.display()),
    };
    let mut lowercase = false;
    if let Some(norm) = v.get_mut("normalizer").and_then(Value::as_object_mut) {
        if norm.get("type").and_then(Value::as_str) == Some("BertNormalizer") {
            if let Some(l) = cfg.do_lower_case {
                norm.insert("lowercase".into(), Value::Bool(l));
            }
            if let Some(s) = cfg.strip_accents {
                norm.insert("strip_accents".into(), Value::Bool(s));
            }
            if let Some(c) = cfg.tokenize_chinese_chars {
                norm.insert("handle_chinese_chars".into(), Value::Bool(c));
            }
            lowercase = norm.get("lowercase").and_then(Value::as_bool).unwrap_or(false);
        }
    }
    if let Some(o) = v.as_object_mut() {
        o.insert("truncation".into(), Value::Null);
        o.insert("padding".into(), Value::Null);
    }
    match Tokenizer::from_bytes(v.to_string().as_bytes()) {
        Ok(t) => Ok((t, lowercase)),
        Err(e) => bail_usage!("{} is not a tokenizer this build can read ({e})", path.display()),
    }
}

/// A WordPiece tokenizer from `vocab.txt`, built as `BertTokenizerFast` builds one.
fn from_vocab(path: &Path, cfg: &TokenizerConfig, lowercase: bool) -> Result<Tokenizer> {
    let file = path.to_string_lossy().into_owned();
    let wp = match WordPiece::from_file(&file).unk_token(cfg.unk.clone()).build() {
        Ok(w) => w,
        Err(e) => bail_usage!("{} is not a WordPiece vocabulary ({e})", path.display()),
    };
    let mut t = Tokenizer::new(wp);
    let id = |tok: &str| -> Result<u32> {
        t.token_to_id(tok).ok_or_else(|| crate::cli::usage(format!("{} lacks the token {tok}", path.display())))
    };
    let (cls, sep) = (id(&cfg.cls)?, id(&cfg.sep)?);
    t.with_normalizer(Some(BertNormalizer::new(
        true,
        cfg.tokenize_chinese_chars.unwrap_or(true),
        cfg.strip_accents,
        lowercase,
    )));
    t.with_pre_tokenizer(Some(BertPreTokenizer));
    t.with_post_processor(Some(BertProcessing::new((cfg.sep.clone(), sep), (cfg.cls.clone(), cls))));
    let specials: Vec<AddedToken> = [&cfg.pad, &cfg.unk, &cfg.cls, &cfg.sep, &cfg.mask]
        .iter()
        .filter(|s| t.token_to_id(s).is_some())
        .map(|s| AddedToken::from((*s).clone(), true))
        .collect();
    t.add_special_tokens(&specials);
    Ok(t)
}
