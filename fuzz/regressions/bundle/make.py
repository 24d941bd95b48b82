"""Writes the bundle regressions of this folder from the `no-tensors` seed
(fuzz/corpus/bundle/no-tensors.safetensors, a curve of 2 points with no varying tensor):

  points-2e40.safetensors            the curve claiming 2^40 control points
  snapshots-2e40.safetensors         a snapshot set claiming 2^40 members
  classes-1e12.safetensors           the curve with 10^12 classes, its graph output's class
                                     dimension symbolic (so the graph does not contradict it)

They were made by hand from what the `bundle` target can only reach with difficulty (the
safetensors header's length must change with the numbers). Run with the Python of
scripts/setup.sh (it needs onnx): python fuzz/regressions/bundle/make.py
"""

import json
import struct
from pathlib import Path

import onnx

here = Path(__file__).resolve().parent
seed = (here / "../../corpus/bundle/no-tensors.safetensors").read_bytes()
n = struct.unpack("<Q", seed[:8])[0]
header = json.loads(seed[8 : 8 + n])
begin, end = header["modeconn.graph"]["data_offsets"]
graph = seed[8 + n + begin : 8 + n + end]


def write(name: str, metadata: dict, graph_bytes: bytes) -> None:
    h = {
        "__metadata__": metadata,
        "modeconn.graph": {"dtype": "U8", "shape": [len(graph_bytes)], "data_offsets": [0, len(graph_bytes)]},
    }
    text = json.dumps(h, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    (here / name).write_bytes(struct.pack("<Q", len(text)) + text + graph_bytes)


meta = dict(header["__metadata__"])
write("points-2e40.safetensors", {**meta, "modeconn.points": str(2**40)}, graph)
snapshots = {k: v for k, v in meta.items() if k != "modeconn.basis"}
write("snapshots-2e40.safetensors", {**snapshots, "modeconn.kind": "snapshots", "modeconn.points": str(2**40)}, graph)
model = onnx.load_from_string(graph)
dim = model.graph.output[0].type.tensor_type.shape.dim[1]
dim.ClearField("dim_value")
dim.dim_param = "classes"
write(
    "classes-1e12.safetensors",
    {**meta, "modeconn.output": json.dumps({"name": "logits", "classes": 10**12})},
    model.SerializeToString(),
)
