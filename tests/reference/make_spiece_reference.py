#!/usr/bin/env python3
"""A SentencePiece Unigram model in ALBERT's shape and the token ids that
`transformers` gives with it, for ALBERT checkpoints that ship only
`spiece.model` (no `tokenizer.json`).

No PyPI package ships an ALBERT `spiece.model`, so this trains one on a fixed
generated corpus, with ALBERT's special pieces (<pad> 0, <unk> 1, [CLS] 2,
[SEP] 3, [MASK] 4) and SentencePiece's default normalisation (nmt_nfkc, whose
precompiled rules the model file carries). It writes

  tests/reference/albert-spiece/spiece.model
  tests/reference/albert_spiece_reference.json   texts and, for ALBERT's
        default tokenizer settings and for do_lower_case false with
        keep_accents true, the ids AutoTokenizer gives

`tests/bert_numerics.rs` builds our tokenizer from that file alone and
requires the same ids. Regenerate with:

  .venv/bin/python tests/reference/make_spiece_reference.py
"""
import json
import pathlib
import random
import tempfile

import sentencepiece as spm
from transformers import AutoTokenizer

HERE = pathlib.Path(__file__).resolve().parent
OUT = HERE / "albert-spiece"

TEXTS = [
    "The cat sat on the mat.",
    "Hello  World, it cost 1,000 dollars and 42, more",
    "  leading and trailing spaces  ",
    "tabs\tand\nline breaks\r\nhere",
    "Über naïve café résumé ÉCOLE",
    "``quoted'' and 'single' and \"double\"",
    "full-width ＡＢＣ１２３ and the ﬁ ligature",
    "emoji 🎉 and 漢字 are unknown here",
    "a [MASK] token inside",
    "kato rimesu brastel",
    "",
]


def main():
    random.seed(0)
    syllables = ["ka", "to", "ri", "me", "su", "no", "la", "pe", "zu", "xo", "qi", "bra", "stel", "ing", "ed"]
    base = "the cat sat on a mat café naïve über résumé 1,000 42, dollars text fake news report said".split()
    words = base + ["".join(random.choice(syllables) for _ in range(random.randint(1, 4))) for _ in range(300)]
    OUT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = pathlib.Path(tmp) / "corpus.txt"
        corpus.write_text("\n".join(" ".join(random.choice(words) for _ in range(12)) for _ in range(3000)))
        spm.SentencePieceTrainer.train(
            input=str(corpus), model_prefix=str(OUT / "spiece"), vocab_size=300, hard_vocab_limit=False,
            model_type="unigram", control_symbols=["[CLS]", "[SEP]", "[MASK]"], pad_id=0, unk_id=1,
            bos_id=-1, eos_id=-1, pad_piece="<pad>", unk_piece="<unk>", character_coverage=1.0,
            num_threads=1, minloglevel=2,
        )
    (OUT / "spiece.vocab").unlink()
    ref = {"texts": TEXTS, "ids": {}}
    for name, config in [("default", {}), ("cased_accents", {"do_lower_case": False, "keep_accents": True})]:
        with tempfile.TemporaryDirectory() as tmp:
            d = pathlib.Path(tmp)
            (d / "spiece.model").write_bytes((OUT / "spiece.model").read_bytes())
            (d / "config.json").write_text(json.dumps({"model_type": "albert"}))
            (d / "tokenizer_config.json").write_text(json.dumps(config))
            tok = AutoTokenizer.from_pretrained(d)
            ref["ids"][name] = [tok(t)["input_ids"] for t in TEXTS]
    (HERE / "albert_spiece_reference.json").write_text(json.dumps(ref, ensure_ascii=False, indent=1) + "\n")


if __name__ == "__main__":
    main()
