"""Prints the demo's table from the reports `scripts/demo.sh` wrote into OUT_DIR."""
import json
import sys
from pathlib import Path

out = Path(sys.argv[1])
load = lambda name: json.loads((out / name).read_text())
curve = load("curve-eval.json")
fge = load("fge-eval.json")
served = {k: load(f"serve-{k}.json") for k in ["a", "b", "curve", "fge", "random"]}
http = load("serve-http.json")
attacked = load("attack-random.json")["results"][0]
points = curve["curve"]["points"]
pct = lambda e: f"{100 * e:6.2f}%"
err = lambda r: pct(1 - r["accuracy"])

rows = [
    ("endpoint 1 (t = 0)", pct(points[0]["test_error"]), err(served["a"])),
    ("endpoint 2 (t = 1)", pct(points[-1]["test_error"]), err(served["b"])),
    ("straight segment, worst point", pct(curve["segment"]["summary"]["test_error"]["max"]), ""),
    ("Bezier curve, worst point", pct(curve["curve"]["summary"]["test_error"]["max"]), ""),
    ("curve ensemble, 21 points", pct(curve["curve"]["ensemble"]["test_error"]), ""),
    ("curve ensemble, 5 points", "", err(served["curve"])),
    ("FGE ensemble", pct(fge["ensemble"]["test_error"]), err(served["fge"])),
    ("randomised point per query", "", err(served["random"])),
    ("  the same under EOT-PGD, L-inf eps 0.1", "", err(attacked)),
    ("over HTTP: curve ensemble, 5 points", "", pct(http["curve ensemble"])),
    ("over HTTP: FGE ensemble", "", pct(http["fge ensemble"])),
    ("over HTTP: randomised point per query", "", pct(http["curve randomized"])),
    ("over HTTP: keyed point per input", "", pct(http["curve keyed"])),
]
print()
print(f"{'test error on the 360 held-out digits':40s} {'trainer':>8s} {'runtime':>8s}")
for name, trainer, runtime in rows:
    print(f"{name:40s} {trainer:>8s} {runtime:>8s}")
print(f"\ncurve length / segment length: {curve['length_ratio']:.3f}; FGE members: {len(fge['members'])};"
      f" served on {served['fge']['provider']}")
