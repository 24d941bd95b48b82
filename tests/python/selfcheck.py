"""Checks that the fixture scripts agree with independent computations (no modeconn involved).

    selfcheck.py [--torch DIR]   (DIR: the output of torch_case.py; made afresh when omitted)

- cnn_case curves: the reference at a knot of a polychain / an end of a Bezier curve equals the
  network built directly from that control point and that bn_grid slice; the bundle's own graph
  (conv1.weight fed as a graph input, the other tensors from its initializers) gives the
  reference at t = 0; a temperature bundle's reference is softmax(log p / T).
- cnn_case snapshots: each member{i}.onnx run by run_onnx.py equals ref[i].
- torch_case: model.onnx and legacy.onnx run by onnxruntime equal PyTorch on snapshot 0; the
  dynamo export with snap1's tensors put in by name equals PyTorch on snapshot 1; the chain
  reference at its middle knot equals snapshot 1; the chain at t = 0.25 equals the ONNX graph
  with w = (snap0 + snap1) / 2.
Prints one line per check and exits non-zero on the first failure.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper
from safetensors.numpy import load_file

import common as C

HERE = Path(__file__).resolve().parent
TOL = 1e-5


def check(name: str, a: np.ndarray, b: np.ndarray, tol: float = TOL) -> None:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise SystemExit(f"FAIL {name}: shapes {a.shape} and {b.shape}")
    diff = float(np.max(np.abs(a - b))) if a.size else 0.0
    if not diff <= tol:
        raise SystemExit(f"FAIL {name}: max |difference| {diff:.3g} > {tol}")
    print(f"ok   {name} (max |difference| {diff:.2g})")


def script(name: str, *args) -> None:
    subprocess.run([sys.executable, str(HERE / name), *map(str, args)], check=True)


def point_model(bundle: dict, fixed_graph: onnx.ModelProto, i: int, g: int | None) -> onnx.ModelProto:
    """Static network from control point / member i and bn_grid slice g (None: use i)."""
    meta_grid = {"bn1.running_mean", "bn1.running_var", "bn2.running_mean", "bn2.running_var"}
    values = {init.name: numpy_helper.to_array(init) for init in fixed_graph.graph.initializer}
    for name, stack in bundle.items():
        if name == "modeconn.graph":
            continue
        values[name] = stack[g if (g is not None and name in meta_grid) else i]
    return C.build_cnn(values)


def load_case(d: Path):
    bundle = load_file(str(d / "bundle.safetensors"))
    graph = onnx.load_from_string(bundle["modeconn.graph"].tobytes())
    x = np.load(d / "x.npy")
    return bundle, graph, x, np.load(d / "ref.npy")


def check_cnn(tmp: Path) -> None:
    d = tmp / "poly"
    script("cnn_case.py", "--out", d, "--kind", "curve", "--basis", "polychain", "--points", 3,
           "--grid", 5, "--at", "0,0.5,1", "--seed", 3)
    bundle, graph, x, ref = load_case(d)
    for j, (i, g) in enumerate([(0, 0), (1, 2), (2, 4)]):
        p = C.softmax(C.run_logits(point_model(bundle, graph, i, g), x))
        check(f"polychain K=3 ref at knot {i} equals control point {i} with bn_grid slice {g}", ref[j], p)
    feed = {"input": x, "conv1.weight": bundle["conv1.weight"][0]}
    (logits,) = C.session(graph).run(["logits"], feed)
    check("bundle graph at t=0 (conv1.weight fed, rest initializers) equals ref", ref[0], C.softmax(logits))

    d = tmp / "bez"
    script("cnn_case.py", "--out", d, "--kind", "curve", "--basis", "bezier", "--points", 4,
           "--grid-values", "0,0.3,0.45,1", "--at", "0,0.3,1", "--seed", 4)
    bundle, graph, x, ref = load_case(d)
    check("bezier K=4 ref at t=0 equals P_0", ref[0], C.softmax(C.run_logits(point_model(bundle, graph, 0, 0), x)))
    check("bezier K=4 ref at t=1 equals P_3", ref[2], C.softmax(C.run_logits(point_model(bundle, graph, 3, 3), x)))
    c = C.bezier_coefficients(0.3, 4)
    check("bezier coefficients sum to 1", c.sum(), 1.0, 1e-12)
    check("hat coefficients on a non-uniform grid", C.grid_coefficients(0.3, [0, 0.3, 0.45, 1]), [0, 1, 0, 0], 0)
    check("hat coefficients between grid points", C.grid_coefficients(0.4, [0, 0.3, 0.45, 1]),
          [0, 1 / 3, 2 / 3, 0], 1e-12)

    for temp, sub in [(None, "t1"), (2.0, "t2")]:
        extra = [] if temp is None else ["--temperature", temp]
        script("cnn_case.py", "--out", tmp / sub, "--kind", "curve", "--basis", "bezier", "--points", 3,
               "--grid", 3, "--at", "0.3,0.7", "--seed", 9, *extra)
    r1, r2 = np.load(tmp / "t1" / "ref.npy"), np.load(tmp / "t2" / "ref.npy")
    check("temperature 2 reference is softmax(log p / 2)", r2, C.softmax(np.log(r1.astype(np.float64)), 2.0))

    d = tmp / "snap"
    script("cnn_case.py", "--out", d, "--kind", "snapshots", "--members", 3, "--seed", 5)
    bundle, graph, x, ref = load_case(d)
    for i in range(3):
        script("run_onnx.py", d / f"member{i}.onnx", d / "x.npy", tmp / "p.npy")
        check(f"snapshot member{i}.onnx via run_onnx.py equals ref[{i}]", np.load(tmp / "p.npy"), ref[i])
        check(f"snapshot member {i} from bundle slices equals ref[{i}]",
              C.softmax(C.run_logits(point_model(bundle, graph, i, None), x)), ref[i])


def check_torch(d: Path, tmp: Path) -> None:
    ref_members = np.load(d / "ref_members.npy")
    ref_chain = np.load(d / "ref_chain.npy")
    x = np.load(d / "x.npy")
    for name in ["model.onnx", "legacy.onnx"]:
        script("run_onnx.py", d / name, d / "x.npy", tmp / "p.npy")
        check(f"torch {name} via run_onnx.py equals PyTorch (snapshot 0)", np.load(tmp / "p.npy"), ref_members[0])
    check("torch ref_mean is the mean of ref_members", np.load(d / "ref_mean.npy"), ref_members.mean(0), 1e-6)
    check("torch chain at t=0.5 equals snapshot 1", ref_chain[1], ref_members[1])

    model = onnx.load(str(d / "model.onnx"))
    snaps = [load_file(str(d / f"snap{i}.safetensors")) for i in range(3)]

    def with_weights(values: dict) -> onnx.ModelProto:
        m = onnx.ModelProto()
        m.CopyFrom(model)
        names = {init.name for init in m.graph.initializer}
        for init in m.graph.initializer:
            init.CopyFrom(numpy_helper.from_array(values[init.name].astype(np.float32), init.name))
        unused = sorted(k for k, v in values.items() if k not in names and v.dtype.kind == "f")
        if unused:
            raise SystemExit(f"FAIL float tensors of the snapshot missing from the graph: {unused}")
        return m

    check("dynamo export with snap1 put in by name equals PyTorch (snapshot 1)",
          C.softmax(C.run_logits(with_weights(snaps[1]), x)), ref_members[1])
    mid = {k: (snaps[0][k].astype(np.float64) + snaps[1][k]) / 2 for k in snaps[0] if snaps[0][k].dtype.kind == "f"}
    check("torch chain at t=0.25 equals the graph at (snap0 + snap1) / 2",
          C.softmax(C.run_logits(with_weights(mid), x)), ref_chain[0])
    if not any(k.endswith("num_batches_tracked") for k in snaps[0]):
        raise SystemExit("FAIL snapshots lack num_batches_tracked")
    print("ok   snapshots hold num_batches_tracked")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--torch", type=Path, help="output folder of torch_case.py (made afresh if omitted)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="modeconn-selfcheck-") as tmp:
        tmp = Path(tmp)
        check_cnn(tmp)
        torch_dir = args.torch
        if torch_dir is None:
            torch_dir = tmp / "torch"
            script("torch_case.py", torch_dir)
        check_torch(torch_dir, tmp)
    print("all fixture checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
