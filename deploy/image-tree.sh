#!/usr/bin/env bash
# Assembles the file tree of modeconn's container image into a folder: what deploy/Dockerfile
# copies into its runtime stage, made by this same script there, so that the tree can be run and
# checked on a machine that cannot build images (tests/deploy.rs does).
#
#   deploy/image-tree.sh VARIANT OUT [--bin MODECONN] [--site SITE_PACKAGES]
#
# VARIANT is cpu or cuda. MODECONN is the release binary (default target/release/modeconn). SITE is
# the site-packages folder holding onnxruntime (and, for cuda, the nvidia-* libraries), by default
# that of $MODECONN_PYTHON. The tree:
#   usr/local/bin/modeconn
#   opt/modeconn/lib/libonnxruntime.so.<version>            (ORT_DYLIB_PATH)
#   opt/modeconn/lib/libonnxruntime_providers_*.so          (cuda: the CUDA execution provider)
#   opt/modeconn/lib/lib*.so.*                              (cuda: the CUDA libraries it needs)
#   mnt/models/                                             (the model volume)
set -euo pipefail
variant=${1:?usage: image-tree.sh cpu|cuda OUT [--bin MODECONN] [--site SITE]}
out=${2:?usage: image-tree.sh cpu|cuda OUT [--bin MODECONN] [--site SITE]}
shift 2
bin=target/release/modeconn
site=""
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin=$2; shift 2 ;;
    --site) site=$2; shift 2 ;;
    *) echo "image-tree.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$variant" in
  cpu | cuda) ;;
  *) echo "image-tree.sh: the variant is cpu or cuda, not $variant" >&2; exit 2 ;;
esac
if [ -z "$site" ]; then
  python=${MODECONN_PYTHON:?give --site, or source the env file of scripts/setup.sh}
  site=$("$python" -c 'import onnxruntime, os; print(os.path.dirname(os.path.dirname(onnxruntime.__file__)))')
fi
capi="$site/onnxruntime/capi"
ort=$(find "$capi" -maxdepth 1 -name 'libonnxruntime.so.*' | sort | tail -n 1)
[ -n "$ort" ] || { echo "image-tree.sh: no libonnxruntime.so.* in $capi" >&2; exit 1; }
[ -x "$bin" ] || { echo "image-tree.sh: $bin is not an executable (build it first)" >&2; exit 1; }

# A file into the tree: a hard link when the tree is on the same file system (the CUDA libraries
# take 2 GB), else a copy.
put() {
  ln -f "$1" "$2/" 2>/dev/null || install -m 0644 "$1" "$2/"
}

rm -rf "$out"
mkdir -p "$out/usr/local/bin" "$out/opt/modeconn/lib" "$out/mnt/models"
install -m 0755 "$bin" "$out/usr/local/bin/modeconn"
put "$ort" "$out/opt/modeconn/lib"
lib="$out/opt/modeconn/lib"
if [ "$variant" = cuda ]; then
  for p in libonnxruntime_providers_shared.so libonnxruntime_providers_cuda.so; do
    [ -f "$capi/$p" ] || { echo "image-tree.sh: $capi/$p is missing (onnxruntime-gpu?)" >&2; exit 1; }
    put "$capi/$p" "$lib"
  done
  # The CUDA libraries the provider links, found in the nvidia-* wheels, those it opens at run
  # time by name (cuDNN, cuFFT, NVRTC), and what they link in turn; the driver (libcuda.so.1)
  # comes from the host.
  search=$(find "$site/nvidia" -maxdepth 3 -type d -name lib 2>/dev/null | tr '\n' ':')
  todo=("$lib/libonnxruntime_providers_cuda.so")
  for f in "$site"/nvidia/cudnn/lib/libcudnn*.so.* "$site"/nvidia/*/lib/libcufft.so.* \
           "$site"/nvidia/*/lib/libnvrtc.so.* "$site"/nvidia/*/lib/libnvrtc-builtins.so.*; do
    [ -f "$f" ] || continue
    put "$f" "$lib"
    todo+=("$lib/$(basename "$f")")
  done
  while [ ${#todo[@]} -gt 0 ]; do
    f=${todo[0]}
    todo=("${todo[@]:1}")
    for need in $(LD_LIBRARY_PATH="$lib:$search" ldd "$f" 2>/dev/null | awk '/=> \// {print $3}'); do
      case "$need" in
        "$site"/nvidia/*)
          name=$(basename "$need")
          if [ ! -e "$lib/$name" ]; then
            put "$need" "$lib"
            todo+=("$lib/$name")
          fi
          ;;
      esac
    done
  done
fi
echo "$out"
