#!/usr/bin/env bash
# mnist-cnn side by side with its PyTorch port (benches/python/mnist_convolutional.py):
# same data (the offline 5,000-digit sample), same model, schedule, batch 64,
# evaluation every 100 steps, same threads. Each configuration runs REPEATS times,
# alternating, and the median is reported. Prints a Markdown table (the README's):
#   1. our fp32 ms/step vs PyTorch's (goal: ours <= 0.9x)
#   2. our bf16 vs our fp32 (goal: >= 1.5x faster, same final error within noise)
#   3. 2 ranks x 1 thread vs 1 rank x 1 thread, examples/s (goal: >= 1.8x),
#      next to what this machine gives two independent 1-rank runs of half
#      the batch at once (no communication, no step-by-step synchronisation):
#      the most any 2-rank run could reach here
#   4. the same with 64 digits per rank (global batch 128 on 2 ranks), the way
#      Horovod-style throughput scaling is usually measured, next to two
#      independent 1-rank runs of batch 64 at once. Twice the epochs, so both
#      sides take the same steps and evaluations.
# ms/step is the training loop's wall time over its steps, evaluations included
# (the tutorial's figure); start-up (libtorch, data) is outside it for both.
# One thread per rank everywhere (the machine has 2 cores).
#   bash benches/mnist_side_by_side.sh [EPOCHS] [REPEATS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh >/dev/null
cargo build --release --quiet --bin mnist-cnn
py=.venv/bin/python
epochs=${1:-2}
repeats=${2:-3}
threads=1
epochs2=$(awk -v e="$epochs" 'BEGIN { print 2 * e }')
bin=target/release/mnist-cnn
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export HPCML_PROGRESS=off

ours() { # NAME RANKS PRECISION
  mpiexec -n "$2" "$bin" --sample --epochs "$epochs" --threads "$threads" --device cpu --precision "$3" \
    -o "$tmp/out-$1-$i" --json "$tmp/$1-$i.json" >/dev/null
}
# 2 ranks of 64 digits each (global batch 128) over twice the epochs.
weak() { # NAME
  mpiexec -n 2 "$bin" --sample --epochs "$epochs2" --threads "$threads" --device cpu --batch-size 128 \
    -o "$tmp/out-$1-$i" --json "$tmp/$1-$i.json" >/dev/null
}
# Two independent single-rank runs of batch BATCH at once (NAME-a, NAME-b).
pair() { # NAME BATCH
  "$bin" --sample --epochs "$epochs" --threads "$threads" --device cpu --batch-size "$2" -o "$tmp/out-$1-a-$i" --json "$tmp/$1-a-$i.json" >/dev/null &
  local other=$!
  "$bin" --sample --epochs "$epochs" --threads "$threads" --device cpu --batch-size "$2" -o "$tmp/out-$1-b-$i" --json "$tmp/$1-b-$i.json" >/dev/null
  wait "$other"
}
theirs() { # NAME [FLAGS...]
  local name=$1
  shift
  OMP_NUM_THREADS=$threads "$py" benches/python/mnist_convolutional.py --epochs "$epochs" --threads "$threads" \
    --json "$tmp/$name-$i.json" "$@" >/dev/null
}

for i in $(seq 1 "$repeats"); do
  echo "round $i of $repeats" >&2
  ours fp32 1 fp32
  theirs torch
  ours bf16 1 bf16
  ours ranks2 2 fp32
  pair halves 32
  weak weak
  pair wholes 64
  theirs torch_cl --channels-last
done

"$py" - "$tmp" "$repeats" "$epochs" "$threads" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)" <<'PY'
import json, statistics, sys
tmp, repeats, epochs, threads, cpu = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5].strip()
def runs(name):
    return [json.load(open(f"{tmp}/{name}-{i}.json")) for i in range(1, repeats + 1)]
def med(name, key):
    return statistics.median(r[key] for r in runs(name))
def spread(name, key, fmt):
    return ", ".join(fmt.format(r[key]) for r in runs(name))
fp32, torch, torch_cl, bf16 = (med(n, "ms_per_step") for n in ("fp32", "torch", "torch_cl", "bf16"))
cfp32, ctorch, ctorch_cl, cbf16 = (med(n, "cpu_ms_per_step") for n in ("fp32", "torch", "torch_cl", "bf16"))
ex1, ex2 = med("fp32", "examples_per_second"), med("ranks2", "examples_per_second")
def pair(name):
    return statistics.median(sum(json.load(open(f"{tmp}/{name}-{ab}-{i}.json"))["examples_per_second"] for ab in "ab") for i in range(1, repeats + 1))
halves, wholes, exw = pair("halves"), pair("wholes"), med("weak", "examples_per_second")
err = lambda n: "/".join(f"{r['test_error']:.1f}" for r in runs(n))
steps = runs("fp32")[0]["steps"]
print(f"mnist-cnn side by side: {epochs} epoch(s) = {steps} steps of 64 on the offline sample, evaluation every 100 steps,")
print(f"{threads} thread per rank, {cpu}; median of {repeats} alternating runs (each run in brackets).")
print("ms/step: wall time of the training loop over its steps, evaluations included; CPU: the process's CPU time per step.\n")
print("| comparison | ours | reference | ratio | ratio of CPU time | goal |")
print("|---|---:|---:|---:|---:|---:|")
print(f"| fp32 ms/step: mnist-cnn vs PyTorch port | {fp32:.1f} [{spread('fp32', 'ms_per_step', '{:.1f}')}] | {torch:.1f} [{spread('torch', 'ms_per_step', '{:.1f}')}] | {fp32 / torch:.2f}x | {cfp32 / ctorch:.2f}x ({cfp32:.1f} / {ctorch:.1f} ms) | <= 0.90x |")
print(f"| (PyTorch port with --channels-last, for reference) | | {torch_cl:.1f} [{spread('torch_cl', 'ms_per_step', '{:.1f}')}] | {fp32 / torch_cl:.2f}x | {cfp32 / ctorch_cl:.2f}x | |")
print(f"| bf16 vs fp32 ms/step (mnist-cnn) | {bf16:.1f} [{spread('bf16', 'ms_per_step', '{:.1f}')}] | {fp32:.1f} | {fp32 / bf16:.2f}x faster | {cfp32 / cbf16:.2f}x | >= 1.5x |")
print(f"| test error % bf16 vs fp32 (250 test digits, each run) | {err('bf16')} | {err('fp32')} | | | same within noise |")
print(f"| examples/s: 2 ranks x 1 thread vs 1 rank x 1 thread | {ex2:.0f} [{spread('ranks2', 'examples_per_second', '{:.0f}')}] | {ex1:.0f} [{spread('fp32', 'examples_per_second', '{:.0f}')}] | {ex2 / ex1:.2f}x | | >= 1.8x |")
print(f"| (two independent 1-rank runs of batch 32 at once, summed: this machine's ceiling for 2 ranks) | {halves:.0f} | {ex1:.0f} | {halves / ex1:.2f}x | | |")
print(f"| examples/s, 64 per rank: 2 ranks x 1 thread (global batch 128) vs 1 rank x 1 thread | {exw:.0f} [{spread('weak', 'examples_per_second', '{:.0f}')}] | {ex1:.0f} | {exw / ex1:.2f}x | | |")
print(f"| (two independent 1-rank runs of batch 64 at once, summed: the ceiling for 64 per rank) | {wholes:.0f} | {ex1:.0f} | {wholes / ex1:.2f}x | | |")
PY
