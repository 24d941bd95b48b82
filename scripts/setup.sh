#!/usr/bin/env bash
# Sets up everything modeconn needs outside Cargo, idempotently:
#   - a Python environment with the pinned packages of scripts/requirements.txt, kept outside the
#     checkout under ${MODECONN_CACHE:-~/.cache/modeconn}/py-<key>, where <key> is a hash of the
#     pins, so a second run (or another checkout) reuses it at once; making one removes those
#     of other pins (MODECONN_KEEP_OLD_ENVS=1 keeps them);
#   - the digits data set as an .npz beside it;
#   - an env file, <venv>/modeconn.env, exporting LIBTORCH_USE_PYTORCH, LD_LIBRARY_PATH (torch's
#     libraries and the CUDA libraries of its nvidia-* wheels), ORT_DYLIB_PATH and
#     MODECONN_PYTHON.
# Prints the env file's path on its last line. Everything comes from the package registries.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
req="$repo/scripts/requirements.txt"
cache=${MODECONN_CACHE:-"$HOME/.cache/modeconn"}
py=${MODECONN_BOOTSTRAP_PYTHON:-python3}
key=$( (cat "$req"; "$py" -c 'import sys; print(sys.version_info[:2])') | sha256sum | cut -c1-16)
venv="$cache/py-$key"
envfile="$venv/modeconn.env"

if [[ ! -f "$venv/.complete" ]]; then
  echo "modeconn setup: creating the Python environment in $venv (first run only)" >&2
  mkdir -p "$cache"
  # Each environment takes about 5 GB, and a change of the pins makes a new one; the ones made
  # for earlier pins would fill the disk of a machine that keeps its cache (CI's does), so they
  # go first, unless MODECONN_KEEP_OLD_ENVS=1. A checkout on older pins makes its own again.
  if [[ "${MODECONN_KEEP_OLD_ENVS:-0}" != 1 ]]; then
    for old in "$cache"/py-*; do
      [[ "$old" == "$venv" || ! -d "$old" ]] && continue
      echo "modeconn setup: removing the environment of other pins, $old" >&2
      rm -rf "$old"
    done
  fi
  rm -rf "$venv.partial"
  "$py" -m venv "$venv.partial"
  "$venv.partial/bin/python" -m pip install --quiet --disable-pip-version-check \
    --no-cache-dir -r "$req"
  # A venv records its own path in its scripts, so it is built in place under a temporary name
  # only to keep a half-made one from being taken for a finished one: move, then fix the paths.
  rm -rf "$venv"
  mv "$venv.partial" "$venv"
  grep -rlI --null "$venv.partial" "$venv/bin" | xargs -0 -r sed -i "s#$venv.partial#$venv#g"
  touch "$venv/.complete"
fi

site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
ortlib=$(ls "$site"/onnxruntime/capi/libonnxruntime.so.* | head -n 1)
# The CUDA libraries of torch's nvidia-* wheels (cuBLAS, cuDNN, the CUDA runtime, ...), which
# libtorch_cuda and ONNX Runtime's CUDA execution provider load; only the driver (libcuda.so.1)
# comes from the machine.
cudalibs=$(find "$site/nvidia" -mindepth 2 -maxdepth 2 -type d -name lib 2>/dev/null | sort | paste -sd: -)
digits="$cache/digits.npz"
if [[ ! -f "$digits" ]]; then
  "$venv/bin/python" "$repo/scripts/write_digits.py" "$digits.tmp.npz"
  mv "$digits.tmp.npz" "$digits"
fi

cat > "$envfile.tmp" <<ENV
# Written by modeconn's scripts/setup.sh; source it before building or running.
export LIBTORCH_USE_PYTORCH=1
export PATH="$venv/bin:\$PATH"
export LD_LIBRARY_PATH="$site/torch/lib${cudalibs:+:$cudalibs}\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export ORT_DYLIB_PATH="$ortlib"
export MODECONN_PYTHON="$venv/bin/python"
export MODECONN_DIGITS="$digits"
ENV
mv "$envfile.tmp" "$envfile"
echo "$envfile"
