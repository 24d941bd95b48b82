#!/usr/bin/env bash
# Builds the cargo-fuzz targets of fuzz/ (nightly toolchain, AddressSanitizer) and runs each for
# SECONDS seconds (default 20), one after the other, then prints the executions of each.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Each target starts from its committed seeds (fuzz/corpus/<target>/, read only) and from what
# earlier runs found (fuzz/target/corpus/<target>/, where new inputs go). libFuzzer runs with
# -malloc_limit_mb and -rss_limit_mb, so one allocation beyond what an input justifies is a
# finding like a crash; findings land in fuzz/artifacts/<target>/. The run fails when any target
# finds something. The targets need ONNX Runtime: the env of scripts/setup.sh is sourced when
# ORT_DYLIB_PATH is not set.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
seconds=${1:-20}
shift || true
if [[ -z "${ORT_DYLIB_PATH:-}" ]]; then
  envfile=$(bash scripts/setup.sh | tail -n 1)
  # shellcheck disable=SC1090
  source "$envfile"
fi
# One allocation of more than 256 MB, or 1 GB resident, is a finding. The fuzzed inputs are a
# few KB; ONNX Runtime and AddressSanitizer's bookkeeping stay well below these.
malloc_mb=${MODECONN_FUZZ_MALLOC_MB:-256}
rss_mb=${MODECONN_FUZZ_RSS_MB:-1024}

cargo +nightly fuzz build
if [[ $# -gt 0 ]]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo +nightly fuzz list)
fi

failed=()
summary=()
for target in "${targets[@]}"; do
  work="fuzz/target/corpus/$target"
  mkdir -p "$work" "fuzz/artifacts/$target"
  log="fuzz/target/$target.log"
  echo "fuzz: running $target for ${seconds}s"
  set +e
  cargo +nightly fuzz run "$target" "$work" "fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb="$rss_mb" \
    -malloc_limit_mb="$malloc_mb" -print_final_stats=1 >"$log" 2>&1
  status=$?
  set -e
  runs=$(awk -F': *' '/^stat::number_of_executed_units/ { n = $2 } END { print n }' "$log")
  if [[ -z "$runs" ]]; then
    # A run stopped by a finding may print no final stats: its last status line counts.
    runs=$(awk '/^#[0-9]+/ { n = substr($1, 2) } END { print n }' "$log")
  fi
  if [[ $status -eq 0 ]]; then
    summary+=("$(printf '%-8s %10s executions in %ss, nothing found' "$target" "${runs:-?}" "$seconds")")
  else
    tail -n 60 "$log"
    artifact=$(awk '/Test unit written to/ { a = $NF } END { print a }' "$log")
    summary+=("$(printf '%-8s %10s executions, FOUND %s (exit %d; log %s)' "$target" "${runs:-?}" \
      "${artifact:-a failure}" "$status" "$log")")
    failed+=("$target")
  fi
done

echo "fuzz: executions per target"
printf '  %s\n' "${summary[@]}"
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzz: ${#failed[@]} target(s) found something: ${failed[*]}" >&2
  echo "fuzz: reproduce with cargo +nightly fuzz run TARGET fuzz/artifacts/TARGET/FILE;" \
    "minimise with cargo +nightly fuzz tmin TARGET FILE" >&2
  exit 1
fi
