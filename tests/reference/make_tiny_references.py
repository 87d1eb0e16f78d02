#!/usr/bin/env python3
"""Tiny RoBERTa, DistilBERT, ELECTRA and ALBERT classifiers and their
reference values, from `transformers`.

None of these ships on PyPI, so this makes one of each: a tokenizer trained on
a fixed corpus (byte-level BPE with RoBERTa's special tokens; lower-cased
WordPiece with BERT's), and a seeded random `*ForSequenceClassification`
(2 layers, hidden 32, 3 classes; ELECTRA's and ALBERT's embeddings 16 wide;
ALBERT's 4 layers in 2 groups of 2 shared layers) with weights of order one,
so logits are too and 1e-4 is a real check. For each NAME in roberta,
distilbert, electra, albert it writes

  tests/reference/NAME-tiny/            the model as transformers saves it
                                        (config.json, model.safetensors,
                                        tokenizer files)
  tests/reference/NAME_reference.json   token ids, attention mask, last
                                        hidden states and logits

`tests/bert_numerics.rs` loads each directory into our model and requires the
same ids and values within 1e-4. Regenerate with:

  .venv/bin/python tests/reference/make_tiny_references.py
"""
import json
import pathlib

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    AlbertConfig,
    AlbertForSequenceClassification,
    DistilBertConfig,
    ElectraConfig,
    ElectraForSequenceClassification,
    ElectraTokenizerFast,
    PreTrainedTokenizerFast,
    DistilBertForSequenceClassification,
    DistilBertTokenizerFast,
    RobertaConfig,
    RobertaForSequenceClassification,
    RobertaTokenizerFast,
)

HERE = pathlib.Path(__file__).resolve().parent

# The texts of the BERT reference (make_bert_reference.py).
TEXTS = json.loads((HERE / "bert_reference.json").read_text())["texts"]
CORPUS = TEXTS + [
    "the meeting is moved to thursday afternoon, see you there",
    "WINNER! you have been selected for a cash prize, call now to claim",
    "the senate passed the bill after a long debate on the budget",
    "please send me the report before the end of the week",
    "urgent: your account has won a free holiday, reply yes to claim",
] * 4
MAX_LEN = 24
LABELS = {"id2label": {0: "negative", 1: "neutral", 2: "positive"}, "label2id": {"negative": 0, "neutral": 1, "positive": 2}}
SIZE = {"vocab_size": 400, "max_position_embeddings": MAX_LEN + 10, "initializer_range": 0.5, "num_labels": 3}


def roberta():
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=SIZE["vocab_size"], special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.post_processor = processors.RobertaProcessing(("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")))
    fast = RobertaTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>",
                                cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>")
    config = RobertaConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, type_vocab_size=1,
        pad_token_id=tok.token_to_id("<pad>"), bos_token_id=tok.token_to_id("<s>"),
        eos_token_id=tok.token_to_id("</s>"), layer_norm_eps=1e-5, **SIZE, **LABELS)
    torch.manual_seed(0)
    return RobertaForSequenceClassification(config), fast


def wordpiece():
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    # A vocabulary made, not trained (WordPiece training breaks ties in no
    # fixed order): every character, alone and as a continuation, and the
    # corpus' repeated words, so every run writes the same files.
    words = [w for text in CORPUS for w, _ in tok.pre_tokenizer.pre_tokenize_str(tok.normalizer.normalize_str(text))]
    chars = sorted({c for w in words for c in w})
    repeated = sorted({w for w in words if words.count(w) > 1 and len(w) > 1})
    pieces = specials + chars + ["##" + c for c in chars] + repeated
    tok.model = models.WordPiece(vocab={p: i for i, p in enumerate(pieces)}, unk_token="[UNK]")
    tok.post_processor = processors.BertProcessing(("[SEP]", tok.token_to_id("[SEP]")), ("[CLS]", tok.token_to_id("[CLS]")))
    return tok


def distilbert():
    fast = DistilBertTokenizerFast(tokenizer_object=wordpiece(), do_lower_case=True)
    # Dropouts unlike BERT's, so a mix-up of the two shows in training.
    config = DistilBertConfig(dim=32, n_layers=2, n_heads=4, hidden_dim=64, pad_token_id=0,
                              seq_classif_dropout=0.3, **SIZE, **LABELS)
    torch.manual_seed(0)
    return DistilBertForSequenceClassification(config), fast


def electra():
    fast = ElectraTokenizerFast(tokenizer_object=wordpiece(), do_lower_case=True)
    config = ElectraConfig(embedding_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=64, pad_token_id=0, **SIZE, **LABELS)
    torch.manual_seed(0)
    return ElectraForSequenceClassification(config), fast


def albert():
    # ALBERT's own tokenizer class wants a SentencePiece (Unigram) model; a
    # WordPiece one loads through the generic class.
    fast = PreTrainedTokenizerFast(tokenizer_object=wordpiece(), pad_token="[PAD]", unk_token="[UNK]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    config = AlbertConfig(embedding_size=16, hidden_size=32, num_hidden_layers=4, num_hidden_groups=2,
                          inner_group_num=2, num_attention_heads=4, intermediate_size=64, pad_token_id=0,
                          hidden_act="gelu_new", classifier_dropout_prob=0.2, **SIZE, **LABELS)
    torch.manual_seed(0)
    return AlbertForSequenceClassification(config), fast


for name, make in [("roberta", roberta), ("distilbert", distilbert), ("electra", electra), ("albert", albert)]:
    model, fast = make()
    model.eval()
    # LayerNorms start at (1, 0); move them so their parameters are checked too.
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if "norm" in pname.lower():
                p.add_(torch.randn_like(p) * 0.1)
    out_dir = HERE / f"{name}-tiny"
    model.save_pretrained(str(out_dir), safe_serialization=True)
    fast.save_pretrained(str(out_dir))

    enc = fast(TEXTS, padding=True, truncation=True, max_length=MAX_LEN, return_tensors="pt")
    with torch.no_grad():
        out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], output_hidden_states=True)
    hidden = out.hidden_states[-1]
    mask = enc["attention_mask"]
    ref = {
        "generator": "tests/reference/make_tiny_references.py",
        "transformers": __import__("transformers").__version__,
        "torch": torch.__version__,
        "model": f"{name}-tiny (random, seeded)",
        "max_len": MAX_LEN,
        "texts": TEXTS,
        "input_ids": enc["input_ids"].tolist(),
        "attention_mask": mask.tolist(),
        # Hidden states of real tokens only (padding rows are not part of the contract).
        "last_hidden_state": [[[round(v, 6) for v in hidden[b, t].tolist()] for t in range(int(mask[b].sum()))] for b in range(len(TEXTS))],
        "logits": [[round(v, 6) for v in row] for row in out.logits.tolist()],
    }
    (HERE / f"{name}_reference.json").write_text(json.dumps(ref, ensure_ascii=False) + "\n")
    print(f"wrote {out_dir} and {HERE / f'{name}_reference.json'}")
