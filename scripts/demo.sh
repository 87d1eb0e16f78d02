#!/usr/bin/env bash
# The main job on its embedded defaults, on 2 MPI ranks: installs what it needs,
# builds, and runs it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export PATH="$HOME/.cargo/bin:$PATH"
bash scripts/setup.sh
cargo build --release --quiet --bins

echo "== mpiexec -n 2 pi-mpi 1e9"
mpiexec -n 2 target/release/pi-mpi 1e9
