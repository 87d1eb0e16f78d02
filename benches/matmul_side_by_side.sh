#!/usr/bin/env bash
# matmul-scaling side by side with its PyTorch peer (benches/python/matmul_scaling.py):
# same libtorch, threads, sizes, dtypes, seed, warm-up and repeats, on the CPU by
# default. Each cell (dtype x size) runs as a pair, Python then Rust or Rust then
# Python (the order swaps every round), ROUNDS times, so load that drifts on a
# shared machine hits both sides of a pair alike. Prints a Markdown table:
# GFLOPS (2 n^3 / median time; median over rounds), the ratio of each pair
# (median over rounds), and the ratio of the best times seen.
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

common=(--threads "$threads" --repeats "$repeats" --warmup 1 --seed 1)
run_rust() {
  HPCML_PROGRESS=off target/release/matmul-scaling --sizes "$2" --dtype "$3" "${common[@]}" "${rust_dev[@]}" \
    --no-plot --json "$tmp/rust-$1-$3-$2.json" >/dev/null
}
run_py() { "$py" benches/python/matmul_scaling.py --sizes "$2" --dtype "$3" "${common[@]}" "${py_dev[@]}" >"$tmp/py-$1-$3-$2.json"; }
for ((r = 1; r <= rounds; r++)); do
  for d in ${dtypes//,/ }; do
    for n in ${sizes//,/ }; do
      if ((r % 2)); then run_py "$r" "$n" "$d"; run_rust "$r" "$n" "$d"; else run_rust "$r" "$n" "$d"; run_py "$r" "$n" "$d"; fi
    done
  done
done

"$py" - "$tmp" "$rounds" "$threads" "$repeats" "$sizes" "$dtypes" "$device" <<'PY'
import glob, json, statistics, sys
tmp, rounds, threads, repeats, sizes, dtypes, device = sys.argv[1], int(sys.argv[2]), *sys.argv[3:]
rows = []
for d in dtypes.split(","):
    for n in sizes.split(","):
        pairs = []
        for r in range(1, rounds + 1):
            rust = json.load(open(f"{tmp}/rust-{r}-{d}-{n}.json"))["cells"][0]["per_rank"][0]
            py = json.load(open(f"{tmp}/py-{r}-{d}-{n}.json"))["cells"][0]
            pairs.append((py, rust))
        size = pairs[0][0]["size"]
        if any(rust["gflops"] is None for _, rust in pairs):
            rows.append(f"| {size} | {d} | {statistics.median(p['gflops'] for p, _ in pairs):.1f} | failed | - | - |")
            continue
        py_g = statistics.median(p["gflops"] for p, _ in pairs)
        rust_g = statistics.median(q["gflops"] for _, q in pairs)
        ratio = statistics.median(q["gflops"] / p["gflops"] for p, q in pairs)
        best = min(p["min_s"] for p, _ in pairs) / min(q["min_s"] for _, q in pairs)
        rows.append(f"| {size} | {d} | {py_g:.1f} | {rust_g:.1f} | {ratio:.3f} | {best:.3f} |")
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown CPU")
torch_version = json.load(open(glob.glob(f"{tmp}/py-*.json")[0]))["torch"]
print(f"matmul GFLOPS, {device}, {threads} thread(s), median of {repeats} products after 1 warm-up, "
      f"{rounds} paired rounds; torch {torch_version}; {cpu}\n")
print("| size | dtype | PyTorch (Python) | matmul-scaling (Rust) | Rust / PyTorch, median of pairs | best / best |")
print("|---:|---|---:|---:|---:|---:|")
print("\n".join(rows))
PY
