#!/usr/bin/env python3
"""The tutorial's bert_classifier.py, with `transformers`, as the peer of
`bert-classifier` in side-by-side benchmarks. It does what the tutorial does:

- every text tokenised and padded to a fixed --max-len (128) tokens;
- batches of --batch-size (16) in the tutorial's BucketIterator order
  (sort=True: the training set sorted by length, the same batches every epoch);
- BertForSequenceClassification from --model, torch.optim.Adam(lr=2e-5),
  --epochs (5) epochs, validation every half epoch, the model with the lowest
  validation loss kept (in memory here, instead of torch.save);
- the best model evaluated on test.csv (valid.csv without one).

Differences from the tutorial, all in its favour or neutral: the attention
mask is passed (the tutorial attends to padding), [SEP] is kept when texts are
cut, and nothing is written to disk.

Prints one JSON object: training samples/s (forward, backward and Adam steps
only), inference samples/s (the final evaluation), validation accuracy of the
best model, test accuracy.

  .venv/bin/python benches/python/bert_classifier.py --source DIR --threads 1
"""
import argparse
import csv
import json
import math
import os
import sys
import time

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, logging as hf_logging


def read(path, text_col, label_col):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r[text_col] for r in rows], [r[label_col].strip() for r in rows]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-s", "--source", required=True)
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--max-len", type=int, default=128)
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0: all)")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--text-column", default="titletext")
    ap.add_argument("--label-column", default="label")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    args = ap.parse_args()

    hf_logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16")

    def sync():
        # GPU work is queued: the clock is read once it is done.
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    train_t, train_l = read(os.path.join(args.source, "train.csv"), args.text_column, args.label_column)
    valid_t, valid_l = read(os.path.join(args.source, "valid.csv"), args.text_column, args.label_column)
    test_path = os.path.join(args.source, "test.csv")
    test_t, test_l = read(test_path, args.text_column, args.label_column) if os.path.exists(test_path) else (valid_t, valid_l)

    names = sorted(set(train_l))
    if all(n.lstrip("-").isdigit() for n in names):
        names = sorted(names, key=int)
    index = {n: i for i, n in enumerate(names)}

    tok = AutoTokenizer.from_pretrained(args.model)

    def encode(texts, labels):
        enc = tok(texts, padding="max_length", truncation=True, max_length=args.max_len, return_tensors="pt")
        # The tutorial's BucketIterator(sort=True): sorted by length, fixed batches.
        lengths = [len(t) for t in tok(texts, truncation=True, max_length=args.max_len)["input_ids"]]
        order = sorted(range(len(texts)), key=lambda i: lengths[i])
        y = torch.tensor([index[l] for l in labels])
        batches = []
        for k in range(0, len(order), args.batch_size):
            idx = torch.tensor(order[k : k + args.batch_size])
            batches.append((enc["input_ids"][idx], enc["attention_mask"][idx], y[idx]))
        return batches

    train_b, valid_b, test_b = encode(train_t, train_l), encode(valid_t, valid_l), encode(test_t, test_l)
    model = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=len(names)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)

    def evaluate(batches):
        model.eval()
        loss_sum, correct, n = 0.0, 0, 0
        with torch.no_grad(), autocast:
            for ids, mask, y in batches:
                ids, mask, y = ids.to(device), mask.to(device), y.to(device)
                out = model(input_ids=ids, attention_mask=mask, labels=y)
                loss_sum += out.loss.item()
                correct += (out.logits.argmax(-1) == y).sum().item()
                n += len(y)
        model.train()
        return loss_sum / len(batches), correct / n

    eval_every = max(1, len(train_b) // 2)
    total = args.epochs * len(train_b)
    if args.max_steps:
        total = min(total, args.max_steps)
    best_loss, best_state, best_acc = math.inf, None, None
    train_seconds, samples, step, running = 0.0, 0, 0, 0.0
    model.train()
    while step < total:
        for ids, mask, y in train_b:
            if step >= total:
                break
            t0 = time.perf_counter()
            ids, mask, y = ids.to(device), mask.to(device), y.to(device)
            with autocast:
                out = model(input_ids=ids, attention_mask=mask, labels=y)
            optimizer.zero_grad()
            out.loss.backward()
            optimizer.step()
            sync()
            train_seconds += time.perf_counter() - t0
            samples += len(y)
            running += out.loss.item()
            step += 1
            if step % eval_every == 0 or step == total:
                vloss, vacc = evaluate(valid_b)
                print(f"Step [{step}/{total}], Train Loss: {running / eval_every:.4f}, Valid Loss: {vloss:.4f}, Valid Accuracy: {vacc:.4f}", file=sys.stderr)
                running = 0.0
                if vloss < best_loss:
                    best_loss, best_acc = vloss, vacc
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    sync()
    t0 = time.perf_counter()
    test_loss, test_acc = evaluate(test_b)
    sync()
    test_seconds = time.perf_counter() - t0
    print(json.dumps({
        "implementation": "transformers " + __import__("transformers").__version__ + ", torch " + torch.__version__,
        "precision": args.precision,
        "device": args.device,
        "threads": args.threads,
        "steps": step,
        "train_samples_per_second": samples / train_seconds,
        "inference_samples_per_second": sum(len(b[2]) for b in test_b) / test_seconds,
        "best_valid_loss": best_loss,
        "valid_accuracy": best_acc,
        "test_accuracy": test_acc,
        "test_rows": sum(len(b[2]) for b in test_b),
    }))


if __name__ == "__main__":
    main()
