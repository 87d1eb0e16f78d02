//! The parts of a SentencePiece model file (`spiece.model`, a `ModelProto`
//! protocol buffer) that a Unigram tokenizer is built from: the pieces with
//! their scores, the model type, and the normaliser's precompiled character
//! map. ALBERT checkpoints fine-tuned before `tokenizer.json` existed ship
//! only this file.
//!
//! Only the few fields needed are decoded, by their numbers in
//! sentencepiece's `sentencepiece_model.proto`; every other field is skipped
//! by its wire type, as protocol buffers allow.

use std::path::Path;

use anyhow::{bail, Result};

/// `TrainerSpec.model_type`'s values.
const UNIGRAM: u64 = 1;
const MODEL_TYPES: [&str; 5] = ["", "Unigram", "BPE", "word", "char"];
/// `SentencePiece.type`'s value for the unknown piece.
const UNKNOWN: u64 = 2;

pub struct SentencePieceModel {
    /// Each piece and its score (a log probability), in id order.
    pub pieces: Vec<(String, f64)>,
    /// The id of the piece whose type is UNKNOWN.
    pub unk_id: Option<usize>,
    /// The normaliser's rules, compiled (empty when there are none).
    pub precompiled_charsmap: Vec<u8>,
}

impl SentencePieceModel {
    /// The model in `path`; only Unigram models, the type ALBERT's are.
    pub fn read(path: &Path) -> Result<SentencePieceModel> {
        let bytes = std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        match Self::parse(&bytes) {
            Ok(m) => Ok(m),
            Err(e) => crate::bail_usage!("{} is not a SentencePiece model this can read ({e:#})", path.display()),
        }
    }

    fn parse(bytes: &[u8]) -> Result<SentencePieceModel> {
        let mut model = SentencePieceModel { pieces: Vec::new(), unk_id: None, precompiled_charsmap: Vec::new() };
        let mut model_type = UNIGRAM;
        for field in Fields(bytes) {
            match field? {
                (1, Wire::Bytes(piece)) => {
                    let (mut text, mut score, mut kind) = (None, 0.0f32, 1);
                    for f in Fields(piece) {
                        match f? {
                            (1, Wire::Bytes(t)) => text = Some(std::str::from_utf8(t)?.to_string()),
                            (2, Wire::Fixed32(s)) => score = f32::from_le_bytes(s),
                            (3, Wire::Varint(k)) => kind = k,
                            _ => {}
                        }
                    }
                    let Some(text) = text else { bail!("piece {} has no text", model.pieces.len()) };
                    if kind == UNKNOWN && model.unk_id.is_none() {
                        model.unk_id = Some(model.pieces.len());
                    }
                    model.pieces.push((text, f64::from(score)));
                }
                (2, Wire::Bytes(trainer)) => {
                    for f in Fields(trainer) {
                        if let (3, Wire::Varint(t)) = f? {
                            model_type = t;
                        }
                    }
                }
                (3, Wire::Bytes(normalizer)) => {
                    for f in Fields(normalizer) {
                        if let (2, Wire::Bytes(map)) = f? {
                            model.precompiled_charsmap = map.to_vec();
                        }
                    }
                }
                _ => {}
            }
        }
        if model_type != UNIGRAM {
            let name = MODEL_TYPES.get(model_type as usize).copied().unwrap_or("unknown");
            bail!("a {name} model; only Unigram SentencePiece models (ALBERT's) are read without a tokenizer.json");
        }
        if model.pieces.is_empty() {
            bail!("no pieces");
        }
        Ok(model)
    }
}

/// A field's value by its wire type.
enum Wire<'a> {
    Varint(u64),
    Fixed64,
    Bytes(&'a [u8]),
    Fixed32([u8; 4]),
}

/// The fields of one protocol-buffer message, in order: (number, value).
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let Some((&b, rest)) = self.0.split_first() else { bail!("the file ends inside a number") };
            self.0 = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        bail!("a number longer than 64 bits")
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8]> {
        if n > self.0.len() as u64 {
            bail!("a field of {n} bytes runs past the end of the file (is it truncated?)");
        }
        let (head, rest) = self.0.split_at(n as usize);
        self.0 = rest;
        Ok(head)
    }

    fn field(&mut self) -> Result<(u64, Wire<'a>)> {
        let key = self.varint()?;
        let value = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Wire::Fixed64
            }
            2 => {
                let n = self.varint()?;
                Wire::Bytes(self.take(n)?)
            }
            5 => {
                let b = self.take(4)?;
                Wire::Fixed32([b[0], b[1], b[2], b[3]])
            }
            w => bail!("wire type {w}, which protocol buffers do not have"),
        };
        Ok((key >> 3, value))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Wire<'a>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let field = self.field();
        if field.is_err() {
            self.0 = &[];
        }
        Some(field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn bytes_field(n: u64, data: &[u8], out: &mut Vec<u8>) {
        varint(n << 3 | 2, out);
        varint(data.len() as u64, out);
        out.extend_from_slice(data);
    }

    fn piece(text: &str, score: f32, kind: u64) -> Vec<u8> {
        let mut p = Vec::new();
        bytes_field(1, text.as_bytes(), &mut p);
        varint(2 << 3 | 5, &mut p);
        p.extend_from_slice(&score.to_le_bytes());
        varint(3 << 3, &mut p);
        varint(kind, &mut p);
        p
    }

    fn model(model_type: u64) -> Vec<u8> {
        let mut m = Vec::new();
        bytes_field(1, &piece("<pad>", 0.0, 3), &mut m);
        bytes_field(1, &piece("<unk>", 0.0, UNKNOWN), &mut m);
        bytes_field(1, &piece("\u{2581}the", -2.5, 1), &mut m);
        let mut trainer = Vec::new();
        varint(3 << 3, &mut trainer);
        varint(model_type, &mut trainer);
        // A field this reader skips: a fixed64 (wire type 1).
        varint(99 << 3 | 1, &mut trainer);
        trainer.extend_from_slice(&[0; 8]);
        bytes_field(2, &trainer, &mut m);
        let mut normalizer = Vec::new();
        bytes_field(1, b"nmt_nfkc", &mut normalizer);
        bytes_field(2, &[1, 2, 3], &mut normalizer);
        bytes_field(3, &normalizer, &mut m);
        m
    }

    #[test]
    fn reads_pieces_scores_the_unknown_piece_and_the_charsmap() {
        let m = SentencePieceModel::parse(&model(UNIGRAM)).unwrap();
        let texts: Vec<&str> = m.pieces.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(texts, ["<pad>", "<unk>", "\u{2581}the"]);
        assert_eq!(m.pieces[2].1, -2.5);
        assert_eq!(m.unk_id, Some(1));
        assert_eq!(m.precompiled_charsmap, [1, 2, 3]);
    }

    #[test]
    fn refuses_bpe_models_and_truncated_files() {
        let e = SentencePieceModel::parse(&model(2)).err().unwrap().to_string();
        assert!(e.contains("a BPE model; only Unigram"), "{e}");
        let whole = model(UNIGRAM);
        let e = SentencePieceModel::parse(&whole[..whole.len() - 2]).err().unwrap().to_string();
        assert!(e.contains("truncated"), "{e}");
    }
}
