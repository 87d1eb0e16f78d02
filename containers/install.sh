#!/usr/bin/env bash
# One install script for the container images and for scripts/setup.sh, so the
# test suite exercises the same steps the images run. Idempotent: each step
# checks before it installs, so a second run takes seconds.
#
#   install.sh system [--no-mpi]      apt packages: compilers, libclang (bindgen), patchelf,
#                                     MPICH (unless the base image brings its own MPI)
#   install.sh build-tools            only what building pi-mpi adds to a base that brings
#                                     its own compilers and MPI (the TACC images)
#   install.sh rust                   a Rust toolchain via rustup, if rustc is missing or too old
#   install.sh venv DIR REQ... [--no-deps REQ...]
#                                     a Python venv at DIR with the requirement files REQ;
#                                     those after --no-deps without their dependencies
#   install.sh cargo-config ROOT VENV ROOT/.cargo/config.toml pointing tch at VENV's torch
#   install.sh runtime                what the binaries need at run time beside the venv:
#                                     MPICH and the Python the venv points at
#   install.sh mpi-abi [BIN...]       provide MPICH as libmpi.so.12, the soname Intel MPI and
#                                     MVAPICH2 share (MPICH ABI), and make BINs load it by it
#   install.sh slurm                  Slurm and munge, for the local Slurm in the test suite
#   install.sh shellcheck             the shell linter the test suite runs
#   install.sh steps                  these step names, one a line
#
# INSTALL_CLEAN=1 drops apt's lists and caches afterwards (image layers stay small).
set -euo pipefail
# ldconfig lives in sbin, which some shells leave off PATH.
export PATH=$PATH:/usr/sbin:/sbin

log() { echo "[install] $*" >&2; }
die() { echo "[install] error: $*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else die "need root for: $*"; fi
}

apt_missing() {
  local p missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  echo "${missing[@]:-}"
}

apt_updated=0
apt_update() {
  [ "$apt_updated" = 1 ] && return 0
  command -v apt-get >/dev/null || die "no apt-get: install the packages this step names by hand"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
  apt_updated=1
}

apt_install() {
  local missing
  missing=$(apt_missing "$@")
  [ -z "$missing" ] && return 0
  log "apt-get install $missing"
  apt_update
  # shellcheck disable=SC2086
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >/dev/null
  if [ "${INSTALL_CLEAN:-0}" = 1 ]; then
    as_root apt-get clean
    as_root rm -rf /var/lib/apt/lists/*
  fi
}

# bindgen needs libclang >= 9; Ubuntu 18.04's default libclang-dev is 6.0, but its
# updates pocket carries newer versioned ones. Prints the package to install.
libclang_pkg() {
  local v
  v=$(apt-cache policy libclang-dev 2>/dev/null | sed -n 's/^ *Candidate: *\([0-9]*:\)\{0,1\}\([0-9]*\).*/\2/p')
  if [ -n "$v" ] && [ "$v" -ge 9 ] 2>/dev/null; then echo libclang-dev; return; fi
  v=$(apt-cache pkgnames libclang- 2>/dev/null | sed -n 's/^libclang-\([0-9][0-9]*\)-dev$/\1/p' | sort -n | tail -n1)
  if [ -z "$v" ] || [ "$v" -lt 9 ]; then die "no libclang >= 9 in this system's apt sources (bindgen needs it)"; fi
  echo "libclang-$v-dev"
}

cmd_system() {
  local pkgs=(build-essential pkg-config ca-certificates curl git libclang-dev clang patchelf python3 python3-venv python3-dev)
  if [ "${1:-}" != "--no-mpi" ]; then pkgs+=(mpich libmpich-dev); fi
  apt_install "${pkgs[@]}"
}

cmd_build_tools() {
  # The TACC images carry Intel's and Mellanox's apt sources, whose signing keys
  # have expired: with them, apt-get update fails. This step needs only Ubuntu's
  # archive, so it sets them aside (in a build stage that is thrown away anyway).
  local f
  for f in /etc/apt/sources.list.d/*.list; do
    [ -e "$f" ] || continue
    if grep -qE 'intel\.com|mellanox\.com' "$f"; then as_root mv "$f" "$f.disabled"; fi
  done
  apt_update
  local clang
  clang=$(libclang_pkg)
  apt_install pkg-config ca-certificates curl "$clang"
}

cmd_runtime() {
  # python3: the venv's interpreter is a symlink to it (the binaries locate the
  # venv's packages, and users may run its Python); mpich: mpiexec and libmpich.
  apt_install ca-certificates python3 mpich
}

cmd_mpi_abi() {
  local lib dir bin
  lib=$(ldconfig -p | sed -n 's/^[[:space:]]*libmpich\.so\.12 .*=> //p' | head -n1)
  [ -n "$lib" ] || die "libmpich.so.12 not found: run install.sh runtime (or system) first"
  dir=$(dirname "$lib")
  if [ ! -e "$dir/libmpi.so.12" ]; then
    log "linking $dir/libmpi.so.12 -> libmpich.so.12"
    as_root ln -s libmpich.so.12 "$dir/libmpi.so.12"
    as_root ldconfig
  fi
  [ $# = 0 ] && return 0
  command -v patchelf >/dev/null || apt_install patchelf
  for bin in "$@"; do
    if patchelf --print-needed "$bin" | grep -qx 'libmpich\.so\.12'; then
      patchelf --replace-needed libmpich.so.12 libmpi.so.12 "$bin"
    fi
    patchelf --print-needed "$bin" | grep -qx 'libmpi\.so\.12' || die "$bin does not load libmpi.so.12"
  done
}

cmd_slurm() {
  local pkgs=(slurmctld slurmd slurm-client munge) policy=/usr/sbin/policy-rc.d
  [ -z "$(apt_missing "${pkgs[@]}")" ] && return 0
  # Their maintainer scripts would start the system's munge and Slurm daemons,
  # unconfigured; the tests run their own. Debian's policy-rc.d says "not now".
  if [ -e "$policy" ]; then apt_install "${pkgs[@]}"; return; fi
  trap 'as_root rm -f /usr/sbin/policy-rc.d' EXIT
  printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
  as_root chmod 755 "$policy"
  apt_install "${pkgs[@]}"
  as_root rm -f "$policy"
  trap - EXIT
}

cmd_shellcheck() {
  apt_install shellcheck
}

# The oldest rustc the locked crates build with (Cargo.toml's rust-version).
RUST_MIN=1.88

cmd_rust() {
  local rustc have
  rustc=$(command -v rustc || echo "$HOME/.cargo/bin/rustc")
  if [ -x "$rustc" ]; then
    have=$("$rustc" --version | awk '{print $2}')
    if [ "$(printf '%s\n%s\n' "$RUST_MIN" "$have" | sort -V | head -1)" = "$RUST_MIN" ]; then return 0; fi
    if command -v rustup >/dev/null || [ -x "$HOME/.cargo/bin/rustup" ]; then
      log "Rust $have is older than $RUST_MIN: updating the stable toolchain"
      "$(command -v rustup || echo "$HOME/.cargo/bin/rustup")" toolchain install stable --profile minimal >/dev/null
      return 0
    fi
    die "rustc $have is older than $RUST_MIN, which the crates need; install a newer Rust (https://rustup.rs)"
  fi
  log "installing Rust (rustup, stable, minimal profile)"
  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain stable >/dev/null
}

cmd_venv() {
  local dir=${1:?usage: install.sh venv DIR REQ... [--no-deps REQ...]}; shift
  [ $# -gt 0 ] || die "usage: install.sh venv DIR REQ... [--no-deps REQ...]"
  local py=${PYTHON:-python3} stamp want
  want=$( (printf '%s\n' "$@"; cat "${@/--no-deps//dev/null}") | sha256sum | cut -d' ' -f1)
  stamp="$dir/.hpcml-requirements"
  if [ -x "$dir/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then return 0; fi
  if [ ! -x "$dir/bin/python" ]; then
    log "creating venv $dir"
    "$py" -m venv "$dir" 2>/dev/null || { cmd_system --no-mpi; "$py" -m venv "$dir"; }
  fi
  local args=() bare=() f into=args
  for f in "$@"; do
    if [ "$f" = --no-deps ]; then into=bare; elif [ $into = args ]; then args+=(-r "$f"); else bare+=(-r "$f"); fi
  done
  [ ${#args[@]} -gt 0 ] || die "install.sh venv: no requirement file before --no-deps"
  local avail
  if ! compgen -G "$dir/lib/python3*/site-packages/torch" >/dev/null; then
    avail=$(df -Pk "$dir" | awk 'NR == 2 {print $4}')
    if [ "${avail:-0}" -lt $((8 * 1024 * 1024)) ]; then
      die "only $((${avail:-0} / 1024)) MiB free under $dir: the venv needs about 8 GiB (torch and its CUDA libraries); free some space and run this again"
    fi
  fi
  log "pip install ${*} (torch is large: this takes a few minutes the first time)"
  # torch and its CUDA wheels are about 5 GB (a CI run once ran out of space
  # in this step): pip's cache would keep a second copy, and a small /tmp
  # (tmpfs on some machines) cannot hold the wheels while they unpack, so
  # there is no cache and the temporary files stay beside the venv.
  local tmp="$dir/.pip-tmp"
  mkdir -p "$tmp"
  PIP_NO_CACHE_DIR=1 TMPDIR="$tmp" "$dir/bin/pip" install -q --disable-pip-version-check "${args[@]}"
  # Packages installed for the files they ship, whose pinned dependencies
  # would otherwise replace the venv's numpy and friends.
  if [ ${#bare[@]} -gt 0 ]; then
    PIP_NO_CACHE_DIR=1 TMPDIR="$tmp" "$dir/bin/pip" install -q --disable-pip-version-check --no-deps "${bare[@]}"
  fi
  rm -rf "$tmp"
  echo "$want" > "$stamp"
}

cmd_cargo_config() {
  local root=${1:?usage: install.sh cargo-config ROOT VENV} venv=${2:?usage: install.sh cargo-config ROOT VENV}
  local torch found=("$venv"/lib/python3*/site-packages/torch)
  torch=${found[0]}
  [ -d "$torch/lib" ] || die "no torch in $venv: run install.sh venv first"
  # The physical path: checkouts that share one venv through a symlink then
  # share one LIBTORCH, and cargo does not rebuild torch-sys between them.
  torch=$(cd "$torch" && pwd -P)
  mkdir -p "$root/.cargo"
  local conf="$root/.cargo/config.toml" new
  new=$(printf '# generated by containers/install.sh: build against the venv'"'"'s libtorch\n[env]\nLIBTORCH = "%s"\nLIBTORCH_CXX11_ABI = "1"\n' "$torch")
  if [ "$(cat "$conf" 2>/dev/null)" != "$new" ]; then
    printf '%s\n' "$new" > "$conf"
    log "wrote $conf"
  fi
}

steps="system build-tools rust venv cargo-config runtime mpi-abi slurm shellcheck steps"

case "${1:-}" in
  system) shift; cmd_system "$@" ;;
  build-tools) cmd_build_tools ;;
  rust) cmd_rust ;;
  venv) shift; cmd_venv "$@" ;;
  cargo-config) shift; cmd_cargo_config "$@" ;;
  runtime) cmd_runtime ;;
  mpi-abi) shift; cmd_mpi_abi "$@" ;;
  slurm) cmd_slurm ;;
  shellcheck) cmd_shellcheck ;;
  steps) printf '%s\n' "${steps// /$'\n'}" ;;
  *) echo "usage: $0 {${steps// /|}} ARGS... (see the top of this file)" >&2; exit 2 ;;
esac
