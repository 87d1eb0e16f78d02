"""fp32 linear layers on the CPU: libtorch's `linear` (MKL sgemm) against
oneDNN's inner product on a packed weight, the two operators
src/bert/packed_linear.rs calls (mkldnn::_reorder_linear_weight,
mkldnn::_linear_pointwise). Shapes are BERT's: a batch of 16 texts of 128
tokens (2,048 rows) through MiniLM's (384, 1536) and bert-base's (768, 3072)
projections. Prints GFLOP/s per row, best of REPEATS timings:

  inference:  linear | oneDNN, weight packed once | oneDNN, packed per call
  training:   linear forward + both gradients (MKL) | ours: oneDNN forward and
              input gradient, weights packed per call, weight gradient on MKL

    .venv/bin/python benches/python/onednn_linear.py [--threads 1] [--repeats 5]
"""

import argparse
import time

import torch


def best(f, repeats, calls=5):
    f()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(calls):
            f()
        times.append((time.perf_counter() - t) / calls)
    return min(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pack = torch.ops.mkldnn._reorder_linear_weight
    dnn = torch.ops.mkldnn._linear_pointwise
    rows = 16 * 128
    shapes = [(384, 384), (384, 1536), (1536, 384), (768, 768), (768, 3072), (3072, 768)]
    print(f"fp32 GFLOP/s, {rows} rows, {args.threads} thread(s), torch {torch.__version__}\n")
    print("| in -> out | linear (MKL) | oneDNN packed once | oneDNN packed per call | training: linear | training: ours |")
    print("|---|---:|---:|---:|---:|---:|")
    for k, n in shapes:
        x, w, b, g = torch.randn(rows, k), torch.randn(n, k), torch.randn(n), torch.randn(rows, n)
        packed = pack(w, None)
        flops = 2 * rows * k * n

        def mkl_train():
            torch.nn.functional.linear(x, w, b)
            g.mm(w)
            g.t().mm(x)
            g.sum(0)

        def our_train():
            dnn(x, pack(w, None), b, "none", [], "")
            dnn(g, pack(w.t().contiguous(), None), None, "none", [], "")
            g.t().mm(x)
            g.sum(0)

        figures = [
            flops / best(lambda: torch.nn.functional.linear(x, w, b), args.repeats),
            flops / best(lambda: dnn(x, packed, b, "none", [], ""), args.repeats),
            flops / best(lambda: dnn(x, pack(w, None), b, "none", [], ""), args.repeats),
            3 * flops / best(mkl_train, args.repeats),
            3 * flops / best(our_train, args.repeats),
        ]
        print(f"| {k} -> {n} | " + " | ".join(f"{f / 1e9:.1f}" for f in figures) + " |")


if __name__ == "__main__":
    main()
