#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what it needs (setup.sh),
# then formatting, lints, the build without libtorch, and every unit and
# integration test (real libtorch, real mpiexec, real files).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export PATH="$HOME/.cargo/bin:$PATH"
bash scripts/setup.sh

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy -D warnings"
cargo clippy --release --all-targets --quiet -- -D warnings

step "pi-mpi without the torch feature (TACC MPI images)"
cargo build --release --quiet --no-default-features --bin pi-mpi --target-dir target/no-torch
if ldd target/no-torch/release/pi-mpi | grep -q libtorch; then
  echo "pi-mpi built without torch still links libtorch" >&2; exit 1
fi
HPCML_PROGRESS=off timeout 60 mpiexec -n 2 target/no-torch/release/pi-mpi 1e8 --seed 7 | grep -q "^Final Estimate: "

step "cargo test"
cargo test --release -- --test-threads="${HPCML_TEST_THREADS:-2}"
