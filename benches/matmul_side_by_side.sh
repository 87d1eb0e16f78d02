#!/usr/bin/env bash
# matmul-scaling side by side with its PyTorch peer (benches/python/matmul_scaling.py):
# same libtorch, threads, sizes, dtypes, seed, warm-up and repeats, on the CPU by
# default. The two alternate for ROUNDS rounds (which one goes first swaps each
# round, so drift on a shared machine hits both alike); each cell's figure is the
# median over rounds of each run's median GFLOPS. Prints a Markdown table.
#   bash benches/matmul_side_by_side.sh [SIZES] [DTYPES] [THREADS] [REPEATS] [ROUNDS] [DEVICE]
#   defaults:                           2048,4096,8192 f32,bf16 all-cores 5 3 cpu
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
sizes=${1:-2048,4096,8192}
dtypes=${2:-f32,bf16}
threads=${3:-$(nproc)}
repeats=${4:-5}
rounds=${5:-3}
device=${6:-cpu}
py=.venv/bin/python
if [[ ! -x $py ]]; then
  echo "no $py: run 'bash scripts/setup.sh' first" >&2
  exit 2
fi
case $device in
  cpu) rust_dev=(--no-gpu); py_dev=(--no-gpu) ;;
  cuda) rust_dev=(--device cuda); py_dev=(--gpu) ;;
  *) echo "DEVICE must be cpu or cuda, got '$device'" >&2; exit 2 ;;
esac
cargo build --release --quiet --bin matmul-scaling
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

common=(--sizes "$sizes" --dtype "$dtypes" --threads "$threads" --repeats "$repeats" --warmup 1 --seed 1)
run_rust() { HPCML_PROGRESS=off target/release/matmul-scaling "${common[@]}" "${rust_dev[@]}" --no-plot --json "$tmp/rust$1.json" >/dev/null; }
run_py() { "$py" benches/python/matmul_scaling.py "${common[@]}" "${py_dev[@]}" >"$tmp/py$1.json"; }
for ((r = 1; r <= rounds; r++)); do
  if ((r % 2)); then run_py "$r"; run_rust "$r"; else run_rust "$r"; run_py "$r"; fi
done

"$py" - "$tmp" "$rounds" "$threads" "$repeats" "$sizes" "$dtypes" "$device" <<'PY'
import json, statistics, sys
tmp, rounds, threads, repeats, sizes, dtypes, device = sys.argv[1], int(sys.argv[2]), *sys.argv[3:]
rust, py = {}, {}
for r in range(1, rounds + 1):
    for c in json.load(open(f"{tmp}/rust{r}.json"))["cells"]:
        g = c["per_rank"][0]["gflops"]
        if g is not None:
            rust.setdefault((c["dtype"], c["size"]), []).append(g)
    for c in json.load(open(f"{tmp}/py{r}.json"))["cells"]:
        py.setdefault((c["dtype"], c["size"]), []).append(c["gflops"])
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown CPU")
torch_version = json.load(open(f"{tmp}/py1.json"))["torch"]
print(f"matmul, GFLOPS (median over {rounds} rounds of the median of {repeats} products), {device}, "
      f"{threads} thread(s), torch {torch_version}, {cpu}\n")
print("| size | dtype | PyTorch (Python) | matmul-scaling (Rust) | Rust / PyTorch |")
print("|---:|---|---:|---:|---:|")
for key in py:
    if key not in rust:
        print(f"| {key[1]} | {key[0]} | {statistics.median(py[key]):.1f} | failed | - |")
        continue
    p, q = statistics.median(py[key]), statistics.median(rust[key])
    print(f"| {key[1]} | {key[0]} | {p:.1f} | {q:.1f} | {q / p:.3f} |")
PY
