"""Writes a modeconn bundle (format version 1) for a small CNN, with inputs and references.

Curve:      cnn_case.py --out DIR --kind curve --basis bezier|polychain --points K
                        [--grid G | --grid-values 0,0.3,1] [--at T1,T2,...] [--temperature T]
Snapshots:  cnn_case.py --out DIR --kind snapshots --members M [--temperature T]

Writes into DIR:
  bundle.safetensors   the bundle: `modeconn.graph` (uint8 ONNX bytes), varying tensors
                       ([K,...] control points, [G,...] batch-norm statistics on bn_grid, or
                       [M,...] members) and the `modeconn.*` metadata of DESIGN.md
  x.npy                float32 [B,3,8,8] inputs
  y.npy                int64 [B] labels in [0,5)
  ref.npy              float32 probabilities softmax(logits / T):
                       curves: [len(--at), B, 5], one slice per t (only with --at);
                       snapshots: [M, B, 5], one slice per member
  member{i}.onnx       snapshots only: member i as a static model (all weights initializers)
  info.json            what was written (t values, grid, names), for people reading failures

The references are computed independently of modeconn: w(t) from the coefficient formulas of
DESIGN.md in float64 (Bezier: binomial, polychain: hat), batch-norm statistics linearly
interpolated on bn_grid, then the plain network with those weights as initializers is run by
the Python onnxruntime (graph optimisations off).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

import common as C


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path, help="output folder (created)")
    p.add_argument("--kind", required=True, choices=["curve", "snapshots"])
    p.add_argument("--basis", choices=["bezier", "polychain"], help="curve basis")
    p.add_argument("--points", type=int, help="curves: number of control points K (>= 2)")
    p.add_argument("--grid", type=int, default=5,
                   help="curves: G points of a uniform bn_grid, linspace(0,1,G); 0 = no batch-norm "
                        "grid (statistics fixed in the graph)")
    p.add_argument("--grid-values", help="curves: explicit increasing bn_grid, e.g. 0,0.3,1")
    p.add_argument("--members", type=int, help="snapshots: number of members M (>= 1)")
    p.add_argument("--at", help="curves: comma-separated t values for ref.npy")
    p.add_argument("--temperature", type=float, help="writes modeconn.temperature; refs use it")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=7, help="rows of x.npy")
    p.add_argument("--graph-inputs", default="conv1.weight",
                   help="varying tensors held as graph inputs only (no initializer); the other "
                        "varying tensors are initializers holding the first slice")
    p.add_argument("--fixed", default="bn2.bias",
                   help="tensors that do not vary: plain initializers, absent from the bundle's tensors")
    args = p.parse_args(argv)

    if args.kind == "curve":
        if args.basis is None or args.points is None:
            p.error("--kind curve needs --basis and --points")
        if args.points < 2:
            p.error("--points must be at least 2")
        if args.members is not None:
            p.error("--members is for --kind snapshots")
    else:
        if args.members is None or args.members < 1:
            p.error("--kind snapshots needs --members M >= 1")
        if args.basis is not None or args.points is not None or args.grid_values or args.at:
            p.error("--basis/--points/--grid-values/--at are for --kind curve")
    if args.temperature is not None and not args.temperature > 0:
        p.error("--temperature must be positive")
    args.graph_inputs = [s for s in args.graph_inputs.split(",") if s]
    args.fixed = [s for s in args.fixed.split(",") if s]
    for name in args.graph_inputs + args.fixed:
        if name not in C.ALL_SHAPES:
            p.error(f"unknown tensor {name!r}; known: {', '.join(C.ALL_SHAPES)}")
    if set(args.graph_inputs) & set(args.fixed):
        p.error("a tensor cannot be both a graph input and fixed")
    return args


def bn_grid_of(args) -> list[float]:
    if args.grid_values:
        grid = C.parse_floats(args.grid_values)
    elif args.grid == 0:
        return []
    else:
        if args.grid < 2:
            raise SystemExit("--grid must be 0 or at least 2")
        grid = [float(v) for v in np.linspace(0.0, 1.0, args.grid)]
    if len(grid) < 2 or grid[0] != 0.0 or grid[-1] != 1.0 or any(b <= a for a, b in zip(grid, grid[1:])):
        raise SystemExit(f"bn_grid must be increasing from 0 to 1, got {grid}")
    return grid


def main(argv=None) -> int:
    args = parse_args(argv)
    rng = np.random.default_rng(args.seed)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    temperature = 1.0 if args.temperature is None else args.temperature

    # Fixed tensors take their value from one extra random draw.
    fixed_values = {**C.random_params(rng), **C.random_bn_stats(rng)}
    fixed = {name: fixed_values[name] for name in args.fixed}

    stacks: dict[str, np.ndarray] = {}  # varying tensor -> [K|G|M, ...]
    metadata = {
        "modeconn.format": "1",
        "modeconn.kind": args.kind,
        "modeconn.input": C.json_compact({"name": C.INPUT_NAME, "shape": [-1, *C.IMAGE_SHAPE]}),
        "modeconn.output": C.json_compact({"name": C.OUTPUT_NAME, "classes": C.CLASSES}),
    }
    if args.temperature is not None:
        metadata["modeconn.temperature"] = repr(float(args.temperature))

    grid: list[float] = []
    grid_tensors: list[str] = []
    if args.kind == "curve":
        k = args.points
        points = [C.random_params(rng) for _ in range(k)]
        for name in C.PARAM_SHAPES:
            if name not in fixed:
                stacks[name] = np.stack([pt[name] for pt in points])
        grid = bn_grid_of(args)
        stat_names = [n for n in C.BN_STAT_SHAPES if n not in fixed]
        if grid:
            per_grid = [C.random_bn_stats(rng) for _ in grid]
            for name in stat_names:
                stacks[name] = np.stack([g[name] for g in per_grid])
            grid_tensors = stat_names
            metadata["modeconn.bn_grid"] = C.json_compact(grid)
            metadata["modeconn.grid_tensors"] = C.json_compact(grid_tensors)
        else:
            # Without a grid the statistics cannot vary along the curve: they are fixed.
            stats = C.random_bn_stats(rng)
            for name in stat_names:
                fixed[name] = stats[name]
        metadata["modeconn.basis"] = args.basis
        metadata["modeconn.points"] = str(k)
    else:
        m = args.members
        members = [{**C.random_params(rng), **C.random_bn_stats(rng)} for _ in range(m)]
        for name in C.ALL_SHAPES:
            if name not in fixed:
                stacks[name] = np.stack([mem[name] for mem in members])
        metadata["modeconn.points"] = str(m)

    for name in args.graph_inputs:
        if name not in stacks:
            raise SystemExit(f"{name} is a graph input but does not vary")

    # The bundle's graph: varying tensors as graph inputs or as initializers holding slice 0.
    first = {**fixed, **{name: s[0] for name, s in stacks.items()}}
    graph = C.build_cnn(first, graph_inputs=args.graph_inputs)
    graph_bytes = np.frombuffer(graph.SerializeToString(), dtype=np.uint8).copy()

    tensors = {"modeconn.graph": graph_bytes}
    for name, s in stacks.items():
        tensors[name] = np.ascontiguousarray(s, dtype=np.float32)
    save_file(tensors, str(out / "bundle.safetensors"), metadata=metadata)

    batch = args.batch
    x = rng.standard_normal((batch, *C.IMAGE_SHAPE)).astype(np.float32)
    y = rng.integers(0, C.CLASSES, size=batch).astype(np.int64)
    C.save_npy(out / "x.npy", x, np.float32)
    C.save_npy(out / "y.npy", y, np.int64)

    def probabilities(values: dict[str, np.ndarray]) -> np.ndarray:
        model = C.build_cnn({**fixed, **values})
        return C.softmax(C.run_logits(model, x, optimize=False), temperature)

    info = {
        "kind": args.kind,
        "seed": args.seed,
        "batch": batch,
        "temperature": temperature,
        "varying": sorted(stacks),
        "graph_inputs": args.graph_inputs,
        "fixed": sorted(fixed),
    }
    if args.kind == "curve":
        ts = C.parse_floats(args.at) if args.at else []
        for t in ts:
            if not 0.0 <= t <= 1.0:
                raise SystemExit(f"--at: t = {t} is outside [0, 1]")
        refs = []
        for t in ts:
            coef = C.curve_coefficients(args.basis, t, args.points)
            gcoef = C.grid_coefficients(t, grid) if grid else None
            values = {}
            for name, s in stacks.items():
                values[name] = C.combine(s, gcoef if name in grid_tensors else coef)
            refs.append(probabilities(values))
        if ts:
            C.save_npy(out / "ref.npy", np.stack(refs), np.float32)
        info.update(basis=args.basis, points=args.points, bn_grid=grid, grid_tensors=grid_tensors, at=ts)
    else:
        refs = []
        for i in range(args.members):
            values = {name: s[i] for name, s in stacks.items()}
            static = C.build_cnn({**fixed, **values}, name=f"member{i}")
            C.save_model(static, out / f"member{i}.onnx")
            refs.append(C.softmax(C.run_logits(static, x, optimize=False), temperature))
        C.save_npy(out / "ref.npy", np.stack(refs), np.float32)
        info.update(members=args.members)

    (out / "info.json").write_text(json.dumps(info, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
