#!/usr/bin/env bash
# The main job, on the scikit-learn digits and 2 CPU cores in a few minutes: sets up everything,
# builds modeconn and its trainer plugin, trains two endpoints, fits a Bezier curve between them,
# runs Fast Geometric Ensembling from one of them, evaluates the curve (and the straight segment)
# and the FGE set, then serves predictions on the held-out digits from the bundles through the
# runtime (ONNX Runtime) and over HTTP (`modeconn serve`), attacks the randomised mode with
# EOT-PGD (`modeconn attack`), and prints a table of test errors. It also draws the pictures of
# the paper: the error along the curve and the segment, an 11x11 loss plane through the curve's
# points (`modeconn plane`), the FGE schedule with its members, and the reliability diagram of a
# calibrated curve ensemble (`modeconn calibrate`), as PNG files in its output folder.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
envfile=$(bash scripts/setup.sh | tail -n 1)
# shellcheck disable=SC1090
source "$envfile"
cargo build --release --locked --quiet -p modeconn -p modeconn-trainer
bin="$repo/target/release/modeconn"
export MODECONN_TRAINER="$repo/target/release/libmodeconn_trainer.so"
out=${MODECONN_DEMO_DIR:-"$repo/target/demo"}
mkdir -p "$out"
arch=${MODECONN_DEMO_ARCH:-preresnet8}
epochs=${MODECONN_DEMO_EPOCHS:-20}
common=(--data digits --device auto --quiet)

echo "training two ${arch} endpoints on the digits (${epochs} epochs each)"
"$bin" train --arch "$arch" "${common[@]}" --epochs "$epochs" --lr 0.05 --seed 1 --out "$out/a.safetensors" >/dev/null
"$bin" train --arch "$arch" "${common[@]}" --epochs "$epochs" --lr 0.05 --seed 2 --out "$out/b.safetensors" >/dev/null
echo "fitting a Bezier curve with one bend between them"
"$bin" curve --start "$out/a.safetensors" --end "$out/b.safetensors" --basis bezier --bends 1 \
  "${common[@]}" --epochs "$epochs" --lr 0.05 --out "$out/curve.safetensors" >/dev/null
echo "running FGE from the first endpoint"
"$bin" fge --init "$out/a.safetensors" "${common[@]}" --epochs 8 --cycle 2 --lr1 0.02 --lr2 0.0002 \
  --out "$out/fge.safetensors" --json "$out/fge.json" >/dev/null
echo "evaluating along the curve and the segment, and over the FGE set"
"$bin" eval "$out/curve.safetensors" --data digits --points 21 --segment --quiet --json "$out/curve-eval.json" >/dev/null
"$bin" eval "$out/fge.safetensors" --data digits --quiet --json "$out/fge-eval.json" >/dev/null
echo "evaluating an 11x11 plane through the curve's endpoints and bend"
"$bin" plane "$out/curve.safetensors" --data digits --grid 11 --quiet --json "$out/plane.json" >/dev/null
echo "calibrating the curve's 5-point ensemble on the first 120 test digits"
"$bin" calibrate "$out/curve.safetensors" --data digits --validation 120 --mode ensemble --grid 5 \
  --quiet --out "$out/curve-calibrated.safetensors" --json "$out/calibration.json" >/dev/null

echo "serving predictions from the bundles through ONNX Runtime"
"$MODECONN_PYTHON" - "$MODECONN_DIGITS" "$out" <<'PY'
import sys, numpy as np
d = np.load(sys.argv[1])
np.save(f"{sys.argv[2]}/x_test.npy", d["x_test"].astype(np.float32))
np.save(f"{sys.argv[2]}/y_test.npy", d["y_test"].astype(np.int64))
PY
serve() { "$bin" predict "$@" --input "$out/x_test.npy" --labels "$out/y_test.npy" --json; }
serve "$out/a.safetensors" --members 0 >"$out/serve-a.json"
serve "$out/b.safetensors" --members 0 >"$out/serve-b.json"
serve "$out/curve.safetensors" --grid 5 >"$out/serve-curve.json"
serve "$out/fge.safetensors" --members all >"$out/serve-fge.json"
serve "$out/curve.safetensors" --randomized >"$out/serve-random.json"
echo "attacking the randomised point per query with EOT-PGD (L-infinity eps 0.1)"
"$bin" attack "$out/curve.safetensors" --data digits --device auto --quiet --mode randomized \
  --attack eot-pgd --eps 0.1 --json "$out/attack-random.json" >/dev/null

echo "serving the curve and the FGE set over HTTP (Open Inference Protocol) and querying it"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$out/keyed.key"
cat >"$out/server.toml" <<'TOML'
[server]
keyed_secret_file = "keyed.key"
[defaults]
modes = ["ensemble", "at", "randomized", "keyed"]
TOML
"$bin" serve "curve=$out/curve.safetensors" "fge=$out/fge.safetensors" --config "$out/server.toml" \
  --port 0 2>"$out/serve.log" &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
"$MODECONN_PYTHON" scripts/demo_http.py "$out" "$out/serve.log" >"$out/serve-http.json"
kill -TERM "$server"
wait "$server"
trap - EXIT
"$MODECONN_PYTHON" scripts/demo_table.py "$out"

echo
echo "pictures:"
"$bin" plot "$out/curve-eval.json" --out "$out/curve.png"
"$bin" plot "$out/plane.json" --out "$out/plane.png"
"$bin" plot "$out/fge.json" --out "$out/fge.png"
"$bin" plot "$out/calibration.json" --out "$out/reliability.png"
"$bin" plot "$out/attack-random.json" --out "$out/attack.png"
