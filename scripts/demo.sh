#!/usr/bin/env bash
# The main job: sets up everything, builds modeconn, trains three small networks on the
# scikit-learn digits with PyTorch, packs them into a snapshot-set bundle and a polygonal-chain
# curve bundle with `modeconn pack`, and serves predictions on the held-out digits through the
# runtime (ONNX Runtime), printing each member's and the ensembles' test error.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
envfile=$(bash scripts/setup.sh | tail -n 1)
# shellcheck disable=SC1090
source "$envfile"
cargo build --release --locked --quiet
bin="$repo/target/release/modeconn"
out=${MODECONN_DEMO_DIR:-"$repo/target/demo"}
mkdir -p "$out"

"$MODECONN_PYTHON" scripts/demo_models.py "$MODECONN_DIGITS" "$out"
"$bin" pack --onnx "$out/model.onnx" --snapshots "$out"/net{0,1,2}.safetensors \
  --labels 0,1,2,3,4,5,6,7,8,9 --out "$out/snapshots.safetensors"
"$bin" pack --onnx "$out/model.onnx" --curve polychain --points "$out"/net{0,1,2}.safetensors \
  --labels 0,1,2,3,4,5,6,7,8,9 --out "$out/chain.safetensors"
echo
"$bin" inspect "$out/snapshots.safetensors"
echo
error() { "$bin" predict "$@" --input "$out/x_test.npy" --labels "$out/y_test.npy" --json |
  "$MODECONN_PYTHON" -c 'import json,sys; r=json.load(sys.stdin); a=r["accuracy"]; n=r["nll"]; p=r["provider"]; print(f"{100*(1-a):6.2f}%   NLL {n:.4f}   ({p})")'; }
printf '%-40s %s\n' "what (held-out digits, 360 images)" "test error"
for i in 0 1 2; do printf '%-40s ' "network $i alone"; error "$out/snapshots.safetensors" --members "$i"; done
printf '%-40s ' "ensemble of the 3 networks"; error "$out/snapshots.safetensors" --members all
printf "%-40s " "straight segment midway, nets 0-1"; error "$out/chain.safetensors" --at 0.25
printf '%-40s ' "chain ensemble, 9 points"; error "$out/chain.safetensors" --grid 9
printf '%-40s ' "randomised member per query"; error "$out/snapshots.safetensors" --randomized
