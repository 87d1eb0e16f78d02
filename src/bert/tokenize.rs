//! Text to token ids with the `tokenizers` crate, as `transformers`' fast BERT
//! tokenizer does: the checkpoint's `tokenizer.json`, or, for checkpoints that
//! ship only `vocab.txt`, a WordPiece tokenizer built like `BertTokenizerFast`
//! (BERT normaliser, BERT pre-tokeniser, `[CLS] text [SEP]`), or, for
//! RoBERTa-family checkpoints that ship only `vocab.json` and `merges.txt`
//! (the slow `RobertaTokenizer`'s files), a byte-level BPE built like
//! `RobertaTokenizerFast` (`<s> text </s>`), or, for ALBERT checkpoints that
//! ship only SentencePiece's `spiece.model`, a Unigram tokenizer built as
//! `transformers`' `AlbertTokenizer` builds one from it.
//!
//! Lower-casing follows the checkpoint: `do_lower_case` (and `strip_accents`,
//! `tokenize_chinese_chars`) from `tokenizer_config.json` override what
//! `tokenizer.json` says, as `BertTokenizerFast` does. Texts are truncated to
//! `max_len` tokens, `[CLS]` and `[SEP]` included; never padded here (batches
//! are padded to their own longest text).

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use serde_json::Value;
use tokenizers::models::bpe::BPE;
use tokenizers::models::unigram::Unigram;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::precompiled::Precompiled;
use tokenizers::normalizers::replace::Replace;
use tokenizers::normalizers::strip::StripAccents;
use tokenizers::normalizers::unicode::NFKD;
use tokenizers::normalizers::utils::{Lowercase, Sequence as NormalizerSequence};
use tokenizers::normalizers::{BertNormalizer, NormalizerWrapper};
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::whitespace::WhitespaceSplit;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::processors::roberta::RobertaProcessing;
use tokenizers::{AddedToken, EncodeInput, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use super::sentencepiece::SentencePieceModel;
use crate::bail_usage;

/// The files a tokenizer may be read from, fetched with a Hub model and
/// copied beside a trained one, so that an output directory is a complete
/// Hugging Face checkpoint.
pub const FILES: [&str; 7] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "spiece.model",
];

/// Copies the tokenizer files of [`FILES`] that `from` has into `to`
/// (atomically); returns the paths written.
pub fn copy_files(from: &Path, to: &Path) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for f in FILES {
        let src = from.join(f);
        if src.is_file() {
            let dst = to.join(f);
            let bytes = std::fs::read(&src).with_context(|| format!("cannot read {}", src.display()))?;
            crate::report::write_atomic(&dst, |w| Ok(w.write_all(&bytes)?))?;
            written.push(dst);
        }
    }
    Ok(written)
}

/// The bit of a token id that marks it as the second text's of a pair (no
/// vocabulary comes near 2^31 entries).
pub const SECOND_SEGMENT: u32 = 1 << 31;

pub struct TextTokenizer {
    inner: Tokenizer,
    pub max_len: usize,
    pub pad_id: i64,
    /// `tokenizer.json`, `vocab.txt`, `vocab.json + merges.txt` or `spiece.model`, for the log.
    pub source: &'static str,
    pub lowercase: bool,
}

/// Settings from `tokenizer_config.json` and `special_tokens_map.json`.
struct TokenizerConfig {
    do_lower_case: Option<bool>,
    strip_accents: Option<bool>,
    tokenize_chinese_chars: Option<bool>,
    add_prefix_space: Option<bool>,
    keep_accents: Option<bool>,
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

/// The special tokens a vocabulary names when its configuration names none:
/// cls, sep, pad, unk and mask.
const WORDPIECE_SPECIALS: [&str; 5] = ["[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]"];
const BPE_SPECIALS: [&str; 5] = ["<s>", "</s>", "<pad>", "<unk>", "<mask>"];
const ALBERT_SPECIALS: [&str; 5] = ["[CLS]", "[SEP]", "<pad>", "<unk>", "[MASK]"];

impl TokenizerConfig {
    fn read(dir: &Path, defaults: [&str; 5]) -> TokenizerConfig {
        let cfg = read_json(&dir.join("tokenizer_config.json")).unwrap_or(Value::Null);
        let map = read_json(&dir.join("special_tokens_map.json")).unwrap_or(Value::Null);
        let special = |key: &str, default: &str| {
            token_text(map.get(key)).or_else(|| token_text(cfg.get(key))).unwrap_or_else(|| default.to_string())
        };
        TokenizerConfig {
            do_lower_case: cfg.get("do_lower_case").and_then(Value::as_bool),
            strip_accents: cfg.get("strip_accents").and_then(Value::as_bool),
            tokenize_chinese_chars: cfg.get("tokenize_chinese_chars").and_then(Value::as_bool),
            add_prefix_space: cfg.get("add_prefix_space").and_then(Value::as_bool),
            keep_accents: cfg.get("keep_accents").and_then(Value::as_bool),
            cls: special("cls_token", defaults[0]),
            sep: special("sep_token", defaults[1]),
            pad: special("pad_token", defaults[2]),
            unk: special("unk_token", defaults[3]),
            mask: special("mask_token", defaults[4]),
        }
    }
}

impl TextTokenizer {
    /// The tokenizer of the checkpoint in `dir`, truncating to `max_len`.
    pub fn load(dir: &Path, max_len: usize) -> Result<TextTokenizer> {
        if max_len < 2 {
            bail_usage!("--max-len {max_len}: needs room for [CLS] and [SEP], so at least 2");
        }
        let json = dir.join("tokenizer.json");
        let vocab = dir.join("vocab.txt");
        let (bpe_vocab, merges) = (dir.join("vocab.json"), dir.join("merges.txt"));
        let spiece = dir.join("spiece.model");
        let (cfg, mut inner, source, lowercase) = if json.is_file() {
            let cfg = TokenizerConfig::read(dir, WORDPIECE_SPECIALS);
            let (t, lower) = from_tokenizer_json(&json, &cfg)?;
            (cfg, t, "tokenizer.json", lower)
        } else if vocab.is_file() {
            let cfg = TokenizerConfig::read(dir, WORDPIECE_SPECIALS);
            let lower = cfg.do_lower_case.unwrap_or(true);
            let t = from_vocab(&vocab, &cfg, lower)?;
            (cfg, t, "vocab.txt", lower)
        } else if bpe_vocab.is_file() && merges.is_file() {
            let cfg = TokenizerConfig::read(dir, BPE_SPECIALS);
            let t = from_bpe(&bpe_vocab, &merges, &cfg)?;
            (cfg, t, "vocab.json + merges.txt", false)
        } else if spiece.is_file() {
            let cfg = TokenizerConfig::read(dir, ALBERT_SPECIALS);
            let lower = cfg.do_lower_case.unwrap_or(true);
            let t = from_spiece(&spiece, &cfg, lower)?;
            (cfg, t, "spiece.model", lower)
        } else {
            bail_usage!(
                "{} has no tokenizer to read texts with: neither tokenizer.json, nor vocab.txt, nor vocab.json with merges.txt, nor spiece.model",
                dir.display()
            );
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
    pub fn encode<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<Vec<u32>>> {
        let texts: Vec<&str> = texts.iter().map(AsRef::as_ref).collect();
        let enc = self.inner.encode_batch(texts, true).map_err(|e| anyhow!("tokenizing: {e}"))?;
        Ok(enc.into_iter().map(|e| e.get_ids().to_vec()).collect())
    }

    /// Pairs of texts (`[CLS] a [SEP] b [SEP]`, the longer cut first), as
    /// `transformers` encodes `tokenizer(a, b)`. Tokens of the second text's
    /// segment (token type 1) carry [`SECOND_SEGMENT`] in their id, so the
    /// pairs travel as plain id rows; [`super::data::collate`] takes it back out.
    pub fn encode_pairs<S: AsRef<str>>(&self, first: &[S], second: &[S]) -> Result<Vec<Vec<u32>>> {
        let pairs: Vec<EncodeInput> = first.iter().zip(second).map(|(a, b)| (a.as_ref(), b.as_ref()).into()).collect();
        let enc = self.inner.encode_batch(pairs, true).map_err(|e| anyhow!("tokenizing: {e}"))?;
        Ok(enc
            .into_iter()
            .map(|e| {
                e.get_ids()
                    .iter()
                    .zip(e.get_type_ids())
                    .map(|(&id, &t)| if t > 0 { id | SECOND_SEGMENT } else { id })
                    .collect()
            })
            .collect())
    }

    /// The tokenizer as a `tokenizer.json`, without truncation.
    pub fn to_json(&self) -> Result<String> {
        let mut t = self.inner.clone();
        t.with_truncation(None).map_err(|e| anyhow!("tokenizer truncation: {e}"))?;
        t.to_string(true).map_err(|e| anyhow!("writing tokenizer.json: {e}"))
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

/// A byte-level BPE from `vocab.json` and `merges.txt`, built as
/// `RobertaTokenizerFast` builds one from the slow tokenizer's files: no
/// normaliser, GPT-2's byte-level pre-tokeniser (a space before the first
/// word only where `add_prefix_space` says), `<s> text </s>`.
fn from_bpe(vocab: &Path, merges: &Path, cfg: &TokenizerConfig) -> Result<Tokenizer> {
    let (v, m) = (vocab.to_string_lossy().into_owned(), merges.to_string_lossy().into_owned());
    let bpe = match BPE::from_file(&v, &m).build() {
        Ok(b) => b,
        Err(e) => {
            bail_usage!("{} and {} are not a BPE vocabulary and its merges ({e})", vocab.display(), merges.display())
        }
    };
    let mut t = Tokenizer::new(bpe);
    let (cls, sep) = cls_sep_ids(&t, cfg, vocab)?;
    let prefix_space = cfg.add_prefix_space.unwrap_or(false);
    t.with_pre_tokenizer(Some(ByteLevel::new(prefix_space, true, true)));
    t.with_post_processor(Some(
        RobertaProcessing::new((cfg.sep.clone(), sep), (cfg.cls.clone(), cls))
            .trim_offsets(true)
            .add_prefix_space(prefix_space),
    ));
    t.with_decoder(Some(ByteLevel::default()));
    add_specials(&mut t, cfg);
    Ok(t)
}

/// The ids of the configuration's `[CLS]` and `[SEP]` (or `<s>` and `</s>`)
/// in the vocabulary read from `vocab`, which must have them.
fn cls_sep_ids(t: &Tokenizer, cfg: &TokenizerConfig, vocab: &Path) -> Result<(u32, u32)> {
    let id = |tok: &str| -> Result<u32> {
        t.token_to_id(tok).ok_or_else(|| crate::cli::usage(format!("{} lacks the token {tok}", vocab.display())))
    };
    Ok((id(&cfg.cls)?, id(&cfg.sep)?))
}

/// The configuration's special tokens that the vocabulary has, matched whole
/// in texts and never split.
fn add_specials(t: &mut Tokenizer, cfg: &TokenizerConfig) {
    let specials: Vec<AddedToken> = [&cfg.pad, &cfg.unk, &cfg.cls, &cfg.sep, &cfg.mask]
        .iter()
        .filter(|s| t.token_to_id(s).is_some())
        .map(|s| AddedToken::from((*s).clone(), true))
        .collect();
    t.add_special_tokens(&specials);
}

/// A WordPiece tokenizer from `vocab.txt`, built as `BertTokenizerFast` builds one.
fn from_vocab(path: &Path, cfg: &TokenizerConfig, lowercase: bool) -> Result<Tokenizer> {
    let file = path.to_string_lossy().into_owned();
    let wp = match WordPiece::from_file(&file).unk_token(cfg.unk.clone()).build() {
        Ok(w) => w,
        Err(e) => bail_usage!("{} is not a WordPiece vocabulary ({e})", path.display()),
    };
    let mut t = Tokenizer::new(wp);
    let (cls, sep) = cls_sep_ids(&t, cfg, path)?;
    t.with_normalizer(Some(BertNormalizer::new(
        true,
        cfg.tokenize_chinese_chars.unwrap_or(true),
        cfg.strip_accents,
        lowercase,
    )));
    t.with_pre_tokenizer(Some(BertPreTokenizer));
    t.with_post_processor(Some(BertProcessing::new((cfg.sep.clone(), sep), (cfg.cls.clone(), cls))));
    add_specials(&mut t, cfg);
    Ok(t)
}

/// A Unigram tokenizer from SentencePiece's `spiece.model`, built as
/// `transformers`' `AlbertTokenizer` builds one: `` and '' become ", accents
/// are stripped (unless `keep_accents`) and case folded (`do_lower_case`),
/// then the model's own normalisation rules; words split at whitespace, each
/// with SentencePiece's `▁` before it; `[CLS] text [SEP]`.
fn from_spiece(path: &Path, cfg: &TokenizerConfig, lowercase: bool) -> Result<Tokenizer> {
    let model = SentencePieceModel::read(path)?;
    let unk = model.unk_id.or_else(|| model.pieces.iter().position(|(p, _)| *p == cfg.unk));
    let unigram = match Unigram::from(model.pieces, unk, false) {
        Ok(u) => u,
        Err(e) => bail_usage!("{} is not a Unigram vocabulary ({e})", path.display()),
    };
    let mut t = Tokenizer::new(unigram);
    let (cls, sep) = cls_sep_ids(&t, cfg, path)?;
    let replace = |from: &str| Replace::new(from, "\"").map_err(|e| anyhow!("{e}"));
    let mut steps: Vec<NormalizerWrapper> = vec![replace("``")?.into(), replace("''")?.into()];
    if !cfg.keep_accents.unwrap_or(false) {
        steps.extend([NFKD.into(), StripAccents.into()]);
    }
    if lowercase {
        steps.push(Lowercase.into());
    }
    if !model.precompiled_charsmap.is_empty() {
        match Precompiled::from(&model.precompiled_charsmap) {
            Ok(p) => steps.push(p.into()),
            Err(e) => bail_usage!("{}: its normalisation rules do not read ({e})", path.display()),
        }
    }
    t.with_normalizer(Some(NormalizerSequence::new(steps)));
    t.with_pre_tokenizer(Some(PreTokenizerSequence::new(vec![
        WhitespaceSplit.into(),
        Metaspace::new('\u{2581}', PrependScheme::Always, true).into(),
    ])));
    t.with_post_processor(Some(BertProcessing::new((cfg.sep.clone(), sep), (cfg.cls.clone(), cls))));
    t.with_decoder(Some(Metaspace::new('\u{2581}', PrependScheme::Always, true)));
    add_specials(&mut t, cfg);
    Ok(t)
}
