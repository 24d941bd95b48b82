#!/usr/bin/env bash
# The figures of docs/robustness.md: every serving mode of the demo's curve and FGE set
# (scripts/demo.sh writes them) against PGD, EOT-PGD, a transfer from an endpoint, SPSA and
# Square, L∞ eps 0.02, 0.05, 0.1 and 0.2, on the 360 held-out digits. Writes one report per
# bundle and mode into the demo's folder (attack-<bundle>-<mode>.json) and prints the table.
#
#   scripts/robustness.sh            # after scripts/demo.sh
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
for f in curve fge a; do
  [[ -f "$out/$f.safetensors" ]] || { echo "no $out/$f.safetensors: run scripts/demo.sh first" >&2; exit 1; }
done
eps=${MODECONN_ATTACK_EPS:-0.02,0.05,0.1,0.2}
attacks=pgd,eot-pgd,transfer,spsa,square
common=(--data digits --device auto --quiet --attack "$attacks" --eps "$eps" --seed 1)

# The curve: transfer from its first endpoint (t = 0); `at` is that endpoint itself.
for mode in at ensemble randomized keyed; do
  echo "curve, mode $mode"
  "$bin" attack "$out/curve.safetensors" --mode "$mode" "${common[@]}" --source-t 0 \
    --json "$out/attack-curve-$mode.json" >/dev/null
done
# The FGE set: transfer from the endpoint FGE started from (a.safetensors).
for mode in at ensemble randomized keyed; do
  echo "FGE set, mode $mode"
  "$bin" attack "$out/fge.safetensors" --mode "$mode" "${common[@]}" \
    --source "$out/a.safetensors" --json "$out/attack-fge-$mode.json" >/dev/null
done
"$MODECONN_PYTHON" - "$out" <<'PY'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
print("| bundle | mode | clean | attack | " + " | ".join(f"eps {e}" for e in
      json.loads((out / "attack-curve-at.json").read_text())["settings"]["eps"]) + " |")
print("|---|---|---|---|" + "---|" * len(json.loads((out / "attack-curve-at.json").read_text())["settings"]["eps"]))
for bundle in ["curve", "fge"]:
    for mode in ["at", "ensemble", "randomized", "keyed"]:
        r = json.loads((out / f"attack-{bundle}-{mode}.json").read_text())
        clean = f"{100 * r['clean']['accuracy']:.1f}"
        names = r["settings"]["attacks"] + ["worst case"]
        for name in names:
            rows = r["worst_case"] if name == "worst case" else [x for x in r["results"] if x["attack"] == name]
            cells = []
            for x in rows:
                cell = f"{100 * x['accuracy']:.1f}"
                if "majority_vote_accuracy" in x:
                    cell += f" ({100 * x['majority_vote_accuracy']:.1f})"
                cells.append(cell)
            print(f"| {bundle} | {mode} | {clean} | {name} | " + " | ".join(cells) + " |")
PY
