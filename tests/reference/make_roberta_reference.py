#!/usr/bin/env python3
"""A tiny RoBERTa classifier and its reference values, from `transformers`.

No RoBERTa checkpoint ships on PyPI, so this makes one: a byte-level BPE
tokenizer trained on a fixed corpus (RoBERTa's special tokens and
post-processor), and a seeded random `RobertaForSequenceClassification`
(2 layers, hidden 32, 3 classes) with weights of order one, so logits are
too and 1e-4 is a real check. It writes

  tests/reference/roberta-tiny/            the model as transformers saves it
                                           (config.json, model.safetensors,
                                           tokenizer files)
  tests/reference/roberta_reference.json   token ids, attention mask, last
                                           hidden states and logits

`tests/bert_numerics.rs` loads the directory into our model and requires the
same ids and values within 1e-4. Regenerate with:

  .venv/bin/python tests/reference/make_roberta_reference.py
"""
import json
import pathlib

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, processors, trainers
from transformers import RobertaConfig, RobertaForSequenceClassification, RobertaTokenizerFast

HERE = pathlib.Path(__file__).resolve().parent
OUT = HERE / "roberta-tiny"

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Free entry in 2 a wkly comp to win FA Cup final tkts 21st May 2005!",
    "Hillary Clinton and Donald Trump scored resounding wins in New York.",
    "Ça coûte 20€ — naïve CAFÉ façade, 東京 and an unbelievably-long-hyphenated-word",
    "ok",
]
CORPUS = TEXTS + [
    "the meeting is moved to thursday afternoon, see you there",
    "WINNER! you have been selected for a cash prize, call now to claim",
    "the senate passed the bill after a long debate on the budget",
    "please send me the report before the end of the week",
    "urgent: your account has won a free holiday, reply yes to claim",
] * 4
MAX_LEN = 24
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]

tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
tok.train_from_iterator(
    CORPUS,
    trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()),
)
tok.post_processor = processors.RobertaProcessing(("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")))
fast = RobertaTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>",
                            cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>")

config = RobertaConfig(
    vocab_size=tok.get_vocab_size(),
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=MAX_LEN + 2 + 8,
    type_vocab_size=1,
    pad_token_id=tok.token_to_id("<pad>"),
    bos_token_id=tok.token_to_id("<s>"),
    eos_token_id=tok.token_to_id("</s>"),
    layer_norm_eps=1e-5,
    initializer_range=0.5,
    num_labels=3,
    id2label={0: "negative", 1: "neutral", 2: "positive"},
    label2id={"negative": 0, "neutral": 1, "positive": 2},
)
torch.manual_seed(0)
model = RobertaForSequenceClassification(config).eval()
# LayerNorms start at (1, 0); move them so their parameters are checked too.
with torch.no_grad():
    for name, p in model.named_parameters():
        if "LayerNorm" in name:
            p.add_(torch.randn_like(p) * 0.1)
model.save_pretrained(str(OUT), safe_serialization=True)
fast.save_pretrained(str(OUT))

enc = fast(TEXTS, padding=True, truncation=True, max_length=MAX_LEN, return_tensors="pt")
with torch.no_grad():
    out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], output_hidden_states=True)
hidden = out.hidden_states[-1]
mask = enc["attention_mask"]
ref = {
    "generator": "tests/reference/make_roberta_reference.py",
    "transformers": __import__("transformers").__version__,
    "torch": torch.__version__,
    "model": "roberta-tiny (random, seeded)",
    "max_len": MAX_LEN,
    "texts": TEXTS,
    "input_ids": enc["input_ids"].tolist(),
    "attention_mask": mask.tolist(),
    # Hidden states of real tokens only (padding rows are not part of the contract).
    "last_hidden_state": [[[round(v, 6) for v in hidden[b, t].tolist()] for t in range(int(mask[b].sum()))] for b in range(len(TEXTS))],
    "logits": [[round(v, 6) for v in row] for row in out.logits.tolist()],
}
(HERE / "roberta_reference.json").write_text(json.dumps(ref, ensure_ascii=False) + "\n")
print(f"wrote {OUT} and {HERE / 'roberta_reference.json'}")
