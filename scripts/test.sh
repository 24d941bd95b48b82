#!/usr/bin/env bash
# Sets up everything (scripts/setup.sh) and runs every check and test: formatting, clippy with
# warnings as errors, and the whole workspace's tests (the runtime, the CLI end to end against
# the Python reference implementations, and the trainer crate); then, with a nightly toolchain,
# every fuzz target for a short, fixed time (scripts/fuzz.sh).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
envfile=$(bash scripts/setup.sh | tail -n 1)
# shellcheck disable=SC1090
source "$envfile"
# A run of this script builds everything once, so incremental compilation's caches (over 1 GB
# for this workspace) would only take disk.
export CARGO_INCREMENTAL=0
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
RUSTDOCFLAGS=-Dwarnings cargo doc --workspace --no-deps --locked --quiet
# Every test binary prints its own `test result:` line; the last line sums them up, so the
# run closes on the whole count rather than on the last (often empty) doc-test binary.
# The CLI's tests load the trainer plugin (a cdylib) from the build folder.
cargo build --workspace --locked --quiet
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --locked 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
# Fuzzing (fuzz/, scripts/fuzz.sh): every target for 20 s, with a nightly toolchain and
# cargo-fuzz (installed once into the default cargo home). Without them the step is skipped and
# says why; a target that finds something fails the run.
fuzz_status=0
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz: skipped: no nightly toolchain (cargo +nightly --version fails)"
elif ! cargo fuzz --version >/dev/null 2>&1 && ! cargo install cargo-fuzz --locked --quiet; then
  echo "fuzz: skipped: cargo-fuzz is not installed and cannot be installed (cargo install cargo-fuzz --locked)"
else
  bash scripts/fuzz.sh 20 || fuzz_status=$?
fi
if [[ $status -eq 0 ]]; then
  status=$fuzz_status
fi
exit "$status"
