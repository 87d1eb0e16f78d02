#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what it needs (setup.sh,
# plus Slurm, munge and shellcheck), then formatting, lints, the build without
# libtorch, and every unit and integration test (real libtorch, real mpiexec,
# a real single-node Slurm, real files). Run it as root: slurmd needs root.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export PATH="$HOME/.cargo/bin:$PATH"
bash scripts/setup.sh
# What only the tests need: the local Slurm (tests/slurm.rs), the shell linter,
# and MPICH under the MPI ABI soname the ML image uses (tests/containers.rs).
containers/install.sh slurm
containers/install.sh shellcheck
containers/install.sh mpi-abi

step() { printf '\n== %s\n' "$*"; }

step "shellcheck"
mapfile -t shell_files < <(find scripts slurm containers benches .ci -type f \( -name '*.sh' -o -name '*.sbatch' -o -path .ci/run \) | sort)
shellcheck -x "${shell_files[@]}"

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy -D warnings"
cargo clippy --release --all-targets --quiet -- -D warnings

step "pi-mpi without the torch feature (TACC MPI images)"
cargo build --release --quiet --no-default-features --bin pi-mpi --target-dir target/no-torch
# Output captured first, not piped into `grep -q`: grep quitting at the match
# would break the pipe under a writer that has more to say, and pipefail would
# fail the step (it did: pi-mpi prints its throughput after the estimate).
libs=$(ldd target/no-torch/release/pi-mpi)
if grep -q libtorch <<<"$libs"; then
  echo "pi-mpi built without torch still links libtorch" >&2; exit 1
fi
pi_out=$(HPCML_PROGRESS=off timeout 60 mpiexec -n 2 target/no-torch/release/pi-mpi 1e8 --seed 7)
grep -q "^Final Estimate: " <<<"$pi_out" || { echo "pi-mpi without torch printed no estimate:" >&2; echo "$pi_out" >&2; exit 1; }

step "cargo test"
cargo test --release -- --test-threads="${HPCML_TEST_THREADS:-2}"
