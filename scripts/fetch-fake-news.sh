#!/usr/bin/env bash
# Downloads the tutorial's fake-news CSVs (data/fake-news.md) and checks their
# sha256. Usage: bash scripts/fetch-fake-news.sh [DIR]   (default data/cache/fake-news)
# FAKE_NEWS_BASE_URL points at a mirror; FAKE_NEWS_TEST_SHA256 pins test.csv.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$root/data/cache/fake-news}
base=${FAKE_NEWS_BASE_URL:-https://raw.githubusercontent.com/eriksf/bert-classifier/main}
declare -A sha=(
  [train.csv]=9f18c18a4f25a1f534baedec5c4103ba20e4258d02a66dedc36a69b88ffd6baa
  [valid.csv]=05fbf7cd1cce965ca1431036878cc3432c0c8232d574e322bdba523d1f24227f
  [test.csv]=${FAKE_NEWS_TEST_SHA256:-}
)
mkdir -p "$dir"

fetch() { # URL DEST
  if command -v curl >/dev/null; then
    curl -fsSL --retry 3 --connect-timeout 20 -o "$2" "$1"
  elif command -v wget >/dev/null; then
    wget -q --tries=3 --timeout=20 -O "$2" "$1"
  else
    echo "fetch-fake-news: needs curl or wget" >&2; exit 1
  fi
}

for f in train.csv valid.csv test.csv; do
  dest=$dir/$f
  want=${sha[$f]}
  if [[ -n $want && -f $dest ]] && echo "$want  $dest" | sha256sum -c --status; then
    echo "$f: already there, sha256 ok"
    continue
  fi
  if ! fetch "$base/$f" "$dest.part"; then
    rm -f "$dest.part"
    if [[ $f == test.csv ]]; then
      echo "fetch-fake-news: cannot download $base/$f; without it bert-classifier evaluates on valid.csv" >&2
      continue
    fi
    echo "fetch-fake-news: cannot download $base/$f (offline? set FAKE_NEWS_BASE_URL to a mirror)" >&2
    exit 1
  fi
  got=$(sha256sum "$dest.part" | cut -d' ' -f1)
  if [[ -n $want && $got != "$want" ]]; then
    rm -f "$dest.part"
    echo "fetch-fake-news: $f has sha256 $got, expected $want; not keeping it" >&2
    exit 1
  fi
  mv "$dest.part" "$dest"
  if [[ -n $want ]]; then
    echo "$f: $(($(wc -l <"$dest"))) lines, sha256 ok"
  else
    echo "$f: $(($(wc -l <"$dest"))) lines, sha256 $got (not pinned; FAKE_NEWS_TEST_SHA256=$got pins it)"
  fi
done
echo "Data in $dir; train with: bert-classifier -s $dir -o out"
