#!/usr/bin/env bash
# pi-mpi side by side with its Python peers, one thread per rank everywhere,
# on 1 and 2 ranks; prints a Markdown table (the README's).
#   bash benches/pi_side_by_side.sh [RUST_SAMPLES] [LOOP_SAMPLES] [NUMPY_SAMPLES]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh >/dev/null
cargo build --release --quiet --bin pi-mpi
py=.venv/bin/python
rust_n=${1:-2e10}
loop_n=${2:-2e7}
numpy_n=${3:-4e8}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

rate() { "$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["samples_per_second"])' "$1"; }

declare -A R
for ranks in 1 2; do
  HPCML_PROGRESS=off mpiexec -n "$ranks" target/release/pi-mpi "$rust_n" --threads 1 --json "$tmp/rust$ranks.json" >/dev/null
  R[rust$ranks]=$(rate "$tmp/rust$ranks.json")
  R[loop$ranks]=$(mpiexec -n "$ranks" "$py" benches/python/pi_loop.py "$loop_n" | "$py" -c 'import json,sys; print(json.load(sys.stdin)["samples_per_second"])')
  R[numpy$ranks]=$(mpiexec -n "$ranks" "$py" benches/python/pi_numpy.py "$numpy_n" | "$py" -c 'import json,sys; print(json.load(sys.stdin)["samples_per_second"])')
done

"$py" - "${R[rust1]}" "${R[rust2]}" "${R[loop1]}" "${R[loop2]}" "${R[numpy1]}" "${R[numpy2]}" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)" <<'PY'
import sys
r1, r2, l1, l2, n1, n2 = map(float, sys.argv[1:7])
cpu = sys.argv[7].strip()
print(f"pi, samples/s, one thread per rank, {cpu}\n")
print("| implementation | 1 rank | 2 ranks | 2 ranks / 1 rank | pi-mpi / it, per core |")
print("|---|---:|---:|---:|---:|")
for name, a, b in [("pi-mpi (Rust)", r1, r2), ("tutorial pure-Python loop (mpi4py)", l1, l2), ("NumPy vectorised (mpi4py)", n1, n2)]:
    print(f"| {name} | {a:.3e} | {b:.3e} | {b / a:.2f}x | {r1 / a:.0f}x |")
PY
