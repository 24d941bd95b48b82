#!/usr/bin/env bash
# Packs what the GPU check needs on a GPU machine that has no Rust and no onnxruntime-gpu (the
# project's GPU test machine, DEVICE.md): the release binaries and ONNX Runtime's libraries
# (the runtime, its shared provider library and the CUDA provider, taken from the project's
# environment) as one xz archive, split into parts of at most 45 MiB, each in a folder of its
# own (PREFIX1, PREFIX2, ...), so that each run to that machine carries one part. The first
# folder also holds a manifest (the number of parts and the archive's SHA-256). There,
# `scripts/gpu-check.sh --parts PREFIX` joins, checks and unpacks them, and runs the check.
#
#   scripts/gpu-pack.sh [--prefix PREFIX] [--bin DIR] [--level N]
#
# PREFIX defaults to .dev/gpu (ignored by git); --bin takes `modeconn` and
# `libmodeconn_trainer.so` from DIR instead of building them in release; --level is xz's
# compression level (default 9: about 200 MB in 5 parts, two minutes on two cores).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
prefix="$repo/.dev/gpu"
bin=""
level=9
while [[ $# -gt 0 ]]; do
  case "$1" in
    --prefix) prefix=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --level) level=$2; shift 2 ;;
    *) echo "gpu-pack: unknown argument \`$1\` (see the comment at the top of $0)" >&2; exit 2 ;;
  esac
done
if [[ -z "${MODECONN_PYTHON:-}" ]]; then
  envfile=$(bash "$repo/scripts/setup.sh" | tail -n 1)
  # shellcheck disable=SC1090
  source "$envfile"
fi
if [[ -z "$bin" ]]; then
  (cd "$repo" && cargo build --release --quiet -p modeconn -p modeconn-trainer)
  bin="$repo/target/release"
fi
capi=$("$MODECONN_PYTHON" -c 'import onnxruntime, os; print(os.path.join(os.path.dirname(onnxruntime.__file__), "capi"))')
libs=(libonnxruntime.so.1.31.1 libonnxruntime_providers_shared.so libonnxruntime_providers_cuda.so)
for lib in "${libs[@]}"; do
  if [[ ! -f "$capi/$lib" ]]; then
    echo "gpu-pack: $capi/$lib is missing: the environment needs onnxruntime-gpu==1.31.1 (scripts/setup.sh installs it on Linux x86-64)" >&2
    exit 1
  fi
done
for exe in modeconn libmodeconn_trainer.so; do
  if [[ ! -f "$bin/$exe" ]]; then
    echo "gpu-pack: $bin/$exe is missing" >&2
    exit 1
  fi
done

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/pack/bin" "$stage/pack/ort" "$stage/parts"
cp "$bin/modeconn" "$bin/libmodeconn_trainer.so" "$stage/pack/bin/"
# Debug information is most of a release binary and nothing the check needs.
strip --strip-debug "$stage/pack/bin/modeconn" "$stage/pack/bin/libmodeconn_trainer.so"
for lib in "${libs[@]}"; do
  cp "$capi/$lib" "$stage/pack/ort/"
done
tar -C "$stage/pack" -cf - bin ort | xz -T2 "-$level" >"$stage/pack.tar.xz"
digest=$(sha256sum "$stage/pack.tar.xz" | cut -d' ' -f1)
split -b 45M -d -a 2 "$stage/pack.tar.xz" "$stage/parts/part."
parts=("$stage"/parts/part.*)
rm -rf "$prefix"[0-9]*
mkdir -p "$(dirname "$prefix")"
for i in "${!parts[@]}"; do
  folder="$prefix$((i + 1))"
  mkdir -p "$folder"
  mv "${parts[$i]}" "$folder/"
done
printf 'parts %d\nsha256 %s\n' "${#parts[@]}" "$digest" >"${prefix}1/manifest"
echo "gpu-pack: ${#parts[@]} parts of $(du -h "$stage/pack.tar.xz" | cut -f1) in all: ${prefix}1 ... ${prefix}${#parts[@]}"
echo "carry one folder per run, back to back; in the last: scripts/gpu-check.sh --parts ${prefix#"$repo"/} --device cuda"
