#!/usr/bin/env bash
# Installs everything this project needs on a fresh Debian 12 (as root or with
# sudo), idempotently: system packages, Rust, the project venv (.venv) with torch
# and the offline model and data, and .cargo/config.toml so plain `cargo build`,
# `cargo test` and `cargo bench` work with no environment set.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
install="$root/containers/install.sh"

"$install" system
"$install" rust
"$install" venv "$root/.venv" "$root/containers/requirements.txt" "$root/containers/requirements-dev.txt" \
  --no-deps "$root/containers/requirements-data.txt"
"$install" cargo-config "$root" "$root/.venv"
