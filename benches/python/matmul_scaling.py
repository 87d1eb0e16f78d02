#!/usr/bin/env python3
"""The tutorial's matmul scaling test (pytorch_matmul_scaling_test.py), timed
properly, as the PyTorch peer of `matmul-scaling`: the same work, done the same
way, so a side-by-side run compares only what wraps libtorch.

For each dtype, then each size: random normal A and B (seeded), an output C
allocated once, `--warmup` untimed products, then `--repeats` timed
`torch.matmul(a, b, out=c)`, each between two device synchronisations
(perf_counter). tf32 is float32 with cuBLAS's TF32 switch on for that cell only.

    .venv/bin/python benches/python/matmul_scaling.py --sizes 2048,4096 --dtype f32,bf16 --threads 2 --no-gpu
Prints one JSON line: torch version, device, threads, and per cell the times,
median/min/max and GFLOPS (2 n^3 / median).
"""
import argparse
import json
import statistics
import time

import torch

DTYPES = {"f32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}


def size(text):
    t = text.strip().lower()
    return int(t[:-1]) * 1024 if t.endswith("k") else int(t)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_cell(n, dtype, device, warmup, repeats, seed):
    if device.type == "cuda":
        # The legacy switch, as the Rust side sets it: mixing it with the newer
        # fp32_precision API makes libtorch's getter throw.
        torch.backends.cuda.matmul.allow_tf32 = dtype == "tf32"
    torch.manual_seed(seed)
    a = torch.randn(n, n, dtype=DTYPES[dtype], device=device)
    b = torch.randn(n, n, dtype=DTYPES[dtype], device=device)
    c = torch.empty(n, n, dtype=DTYPES[dtype], device=device)
    for _ in range(warmup):
        sync(device)
        torch.matmul(a, b, out=c)
        sync(device)
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        torch.matmul(a, b, out=c)
        sync(device)
        times.append(time.perf_counter() - t0)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
    median = statistics.median(times)
    return {"size": n, "dtype": dtype, "device": str(device), "times_s": times, "median_s": median,
            "min_s": min(times), "max_s": max(times), "gflops": 2 * n ** 3 / median / 1e9}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="2048,4096,8192")
    p.add_argument("--dtype", default="f32")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--gpu", dest="gpu", action="store_true", default=True)
    p.add_argument("--no-gpu", dest="gpu", action="store_false")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.gpu and torch.cuda.is_available() else "cpu")
    sizes = [size(s) for s in args.sizes.split(",")]
    dtypes = [d.strip() for d in args.dtype.split(",")]
    cells = [run_cell(n, d, device, args.warmup, args.repeats, args.seed) for d in dtypes for n in sizes]
    print(json.dumps({"peer": "pytorch", "torch": torch.__version__, "device": str(device),
                      "threads": torch.get_num_threads(), "cells": cells}))


if __name__ == "__main__":
    main()
