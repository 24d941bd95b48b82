#!/usr/bin/env bash
# Sets up everything (scripts/setup.sh) and runs every check and test: formatting, clippy with
# warnings as errors, and the whole workspace's tests (the runtime, the CLI end to end against
# the Python reference implementations, and the trainer crate).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
envfile=$(bash scripts/setup.sh | tail -n 1)
# shellcheck disable=SC1090
source "$envfile"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
RUSTDOCFLAGS=-Dwarnings cargo doc --workspace --no-deps --locked --quiet
cargo test --workspace --locked
