"""Queries the demo's `modeconn serve` with tritonclient: the held-out digits in each mode, one
request per 36 samples in binary, and prints the test errors as JSON.

Usage: demo_http.py OUT_DIR SERVE_LOG
"""
import json
import sys
import time
from pathlib import Path

import numpy as np
import tritonclient.http as th

out, log = Path(sys.argv[1]), Path(sys.argv[2])
address = None
for _ in range(600):
    for line in log.read_text().splitlines():
        fields = json.loads(line).get("fields", {})
        if fields.get("message") == "listening":
            address = fields["address"]
    if address:
        break
    time.sleep(0.1)
if address is None:
    sys.exit(f"the server did not start:\n{log.read_text()}")

x = np.load(out / "x_test.npy")
y = np.load(out / "y_test.npy")
client = th.InferenceServerClient(address)
name = client.get_model_metadata("curve")["inputs"][0]["name"]


def error(model, mode):
    wrong = 0
    for start in range(0, len(x), 36):
        batch = x[start:start + 36]
        inp = th.InferInput(name, list(batch.shape), "FP32")
        inp.set_data_from_numpy(batch, binary_data=True)
        r = client.infer(model, [inp], parameters={"mode": mode},
                         outputs=[th.InferRequestedOutput("class", binary_data=True)])
        wrong += int((r.as_numpy("class") != y[start:start + 36]).sum())
    return wrong / len(x)


print(json.dumps({
    "curve ensemble": error("curve", "ensemble"),
    "fge ensemble": error("fge", "ensemble"),
    "curve randomized": error("curve", "randomized"),
    "curve keyed": error("curve", "keyed"),
}))
