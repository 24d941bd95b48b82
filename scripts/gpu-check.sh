#!/usr/bin/env bash
# The GPU check: trains and predicts on a device and prints one JSON report (docs/gpu.md):
# `modeconn doctor`; seconds per epoch of single-model and Bezier-curve training of
# PreResNet-20 on CIFAR-shaped data, their ratio and the peak GPU memory; a curve and an FGE
# set trained on the device whose bundles the CPU runtime reproduces (the trainer's own
# evaluation against the runtime's predictions); predictions on the GPU against the CPU;
# dynamic-t prediction against the same points materialised, at batch 1 and 128; an M-member
# ensemble against M single runs; served throughput against in-process prediction.
#
#   scripts/gpu-check.sh [--device cuda|cuda:N|cpu] [--quick] [--out REPORT.json]
#       the project's environment (scripts/setup.sh) and binaries (built here, in release);
#   scripts/gpu-check.sh --prebuilt BIN_DIR [--device ...] [--quick] [--out ...]
#       binaries built elsewhere (modeconn and libmodeconn_trainer.so in BIN_DIR), on a machine
#       with torch and numpy in its python3 and no Rust: libtorch and the CUDA libraries are
#       found through that Python; ONNX Runtime comes from ORT_DYLIB_PATH (with
#       libonnxruntime_providers_cuda.so beside it for CUDA). DEVICE.md-style machines use this.
#   scripts/gpu-check.sh --parts PREFIX [--device ...] [--quick] [--out ...]
#       the same, from the parts scripts/gpu-pack.sh wrote (PREFIX1/, PREFIX2/, ... carried one
#       per run): they are joined, checked against the manifest and unpacked into a scratch
#       folder, whose binaries and ONNX Runtime libraries are then used.
#
# Exits non-zero when a step fails or the CPU runtime does not reproduce the bundles. With
# --device cpu every step runs on the CPU (the test suite runs it with --quick).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
prebuilt=""
parts=""
args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --prebuilt) prebuilt=$2; shift 2 ;;
    --parts) parts=$2; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [[ -n "$parts" ]]; then
  manifest="${parts}1/manifest"
  if [[ ! -f "$manifest" ]]; then
    echo "gpu-check: $manifest is missing: carry the folders scripts/gpu-pack.sh wrote (${parts}1 first)" >&2
    exit 1
  fi
  count=$(awk '$1 == "parts" { print $2 }' "$manifest")
  digest=$(awk '$1 == "sha256" { print $2 }' "$manifest")
  files=()
  for ((i = 1; i <= count; i++)); do
    part=$(find "$parts$i" -maxdepth 1 -name 'part.*' 2>/dev/null | head -n 1 || true)
    if [[ -z "$part" ]]; then
      echo "gpu-check: part $i of $count is missing (${parts}$i/): the machine may have gone back between runs; carry the parts again" >&2
      exit 1
    fi
    files+=("$part")
  done
  cat "${files[@]}" >"$work/pack.tar.xz"
  if [[ $(sha256sum "$work/pack.tar.xz" | cut -d' ' -f1) != "$digest" ]]; then
    echo "gpu-check: the joined parts do not match the manifest's SHA-256: a part is stale or cut short; run scripts/gpu-pack.sh and carry them again" >&2
    exit 1
  fi
  mkdir -p "$work/pack"
  xz -d -c "$work/pack.tar.xz" | tar -C "$work/pack" -xf -
  rm "$work/pack.tar.xz"
  prebuilt="$work/pack/bin"
  export ORT_DYLIB_PATH="$work/pack/ort/libonnxruntime.so.1.31.1"
fi

if [[ -n "$prebuilt" ]]; then
  bin=$(cd "$prebuilt" && pwd)
  py=${MODECONN_PYTHON:-python3}
  site=$("$py" -c 'import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))')
  cudalibs=$(find "$site/nvidia" -mindepth 2 -maxdepth 2 -type d -name lib 2>/dev/null | sort | paste -sd: -)
  export LD_LIBRARY_PATH="$site/torch/lib${cudalibs:+:$cudalibs}${ORT_DYLIB_PATH:+:$(dirname "$ORT_DYLIB_PATH")}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  : "${ORT_DYLIB_PATH:?set ORT_DYLIB_PATH to libonnxruntime.so.1.31.1 (with its CUDA provider beside it)}"
else
  envfile=$(bash "$repo/scripts/setup.sh" | tail -n 1)
  # shellcheck disable=SC1090
  source "$envfile"
  py=$MODECONN_PYTHON
  bin=${MODECONN_GPU_CHECK_BIN:-}
  if [[ -z "$bin" ]]; then
    (cd "$repo" && cargo build --release --quiet -p modeconn -p modeconn-trainer)
    bin="$repo/target/release"
  fi
fi
"$py" "$repo/scripts/gpu_check.py" --bin "$bin" --work "$work" "${args[@]}"
