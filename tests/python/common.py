"""Shared pieces of modeconn's end-to-end test fixtures.

Everything here is independent of the Rust code under test: the small CNN is built with
`onnx.helper`, curve coefficients follow the formulas of docs/DESIGN ("The mathematics") in
float64, and networks are run with the Python onnxruntime on the CPU.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
IMAGE_SHAPE = (3, 8, 8)
CLASSES = 5
OPSET = 17
# onnx 1.23 writes IR version 14 by default; onnxruntime 1.31 reads at most 13.
IR_VERSION = 10

# Trainable parameters of the CNN, in graph order.
PARAM_SHAPES: "OrderedDict[str, tuple[int, ...]]" = OrderedDict(
    [
        ("conv1.weight", (4, 3, 3, 3)),
        ("conv1.bias", (4,)),
        ("bn1.weight", (4,)),
        ("bn1.bias", (4,)),
        ("conv2.weight", (6, 4, 3, 3)),
        ("conv2.bias", (6,)),
        ("bn2.weight", (6,)),
        ("bn2.bias", (6,)),
        ("fc.weight", (CLASSES, 6)),
        ("fc.bias", (CLASSES,)),
    ]
)

# Batch-norm running statistics (inputs 3 and 4 of the BatchNormalization nodes).
BN_STAT_SHAPES: "OrderedDict[str, tuple[int, ...]]" = OrderedDict(
    [
        ("bn1.running_mean", (4,)),
        ("bn1.running_var", (4,)),
        ("bn2.running_mean", (6,)),
        ("bn2.running_var", (6,)),
    ]
)

ALL_SHAPES: "OrderedDict[str, tuple[int, ...]]" = OrderedDict(
    list(PARAM_SHAPES.items()) + list(BN_STAT_SHAPES.items())
)


# --------------------------------------------------------------------------------------------
# Random values


def random_params(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One random point in parameter space, scaled so that logits stay of order one."""

    def normal(shape, std):
        return (rng.standard_normal(shape) * std).astype(np.float32)

    out = {}
    for name, shape in PARAM_SHAPES.items():
        if name.endswith(".weight") and name.startswith("bn"):
            out[name] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        elif name.endswith(".bias"):
            out[name] = normal(shape, 0.2)
        else:  # convolution / linear weights: He-like initialisation
            fan_in = int(np.prod(shape[1:]))
            out[name] = normal(shape, math.sqrt(2.0 / fan_in))
    return out


def random_bn_stats(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Running statistics of the two batch norms; variances are strictly positive."""
    out = {}
    for name, shape in BN_STAT_SHAPES.items():
        if name.endswith("running_var"):
            out[name] = rng.uniform(0.3, 2.5, shape).astype(np.float32)
        else:
            out[name] = (rng.standard_normal(shape) * 0.4).astype(np.float32)
    return out


# --------------------------------------------------------------------------------------------
# The network


def build_cnn(
    values: Mapping[str, np.ndarray],
    graph_inputs: Iterable[str] = (),
    name: str = "modeconn_test_cnn",
) -> onnx.ModelProto:
    """The test CNN as an ONNX model (opset 17, IR version 10).

    input [N,3,8,8] -> Conv conv1 (3->4, 3x3, pad 1) -> BatchNormalization bn1 -> Relu
    -> MaxPool 2x2 -> Conv conv2 (4->6, 3x3, pad 1) -> BatchNormalization bn2 -> Relu
    -> GlobalAveragePool -> Flatten -> Gemm fc (transB=1) -> logits [N,5].

    `values` gives every tensor of ALL_SHAPES. Names in `graph_inputs` become graph inputs
    *without* an initializer (their value in `values` is ignored); all other tensors are
    initializers.
    """
    graph_inputs = list(graph_inputs)
    unknown = set(graph_inputs) - set(ALL_SHAPES)
    if unknown:
        raise ValueError(f"unknown tensors for graph inputs: {sorted(unknown)}")
    for tname, shape in ALL_SHAPES.items():
        if tname in graph_inputs:
            continue
        if tname not in values:
            raise ValueError(f"no value for {tname}")
        if tuple(values[tname].shape) != shape:
            raise ValueError(f"{tname}: shape {values[tname].shape}, expected {shape}")

    def bn(prefix, x, y):
        return helper.make_node(
            "BatchNormalization",
            [x, f"{prefix}.weight", f"{prefix}.bias", f"{prefix}.running_mean", f"{prefix}.running_var"],
            [y],
            name=prefix,
            epsilon=1e-5,
        )

    nodes = [
        helper.make_node("Conv", [INPUT_NAME, "conv1.weight", "conv1.bias"], ["conv1_out"],
                         name="conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        bn("bn1", "conv1_out", "bn1_out"),
        helper.make_node("Relu", ["bn1_out"], ["relu1_out"], name="relu1"),
        helper.make_node("MaxPool", ["relu1_out"], ["pool1_out"], name="pool1",
                         kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["pool1_out", "conv2.weight", "conv2.bias"], ["conv2_out"],
                         name="conv2", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        bn("bn2", "conv2_out", "bn2_out"),
        helper.make_node("Relu", ["bn2_out"], ["relu2_out"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["relu2_out"], ["gap_out"], name="gap"),
        helper.make_node("Flatten", ["gap_out"], ["flat_out"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat_out", "fc.weight", "fc.bias"], [OUTPUT_NAME],
                         name="fc", transB=1),
    ]
    inputs = [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", *IMAGE_SHAPE])]
    inputs += [
        helper.make_tensor_value_info(t, TensorProto.FLOAT, list(ALL_SHAPES[t])) for t in graph_inputs
    ]
    outputs = [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", CLASSES])]
    initializers = [
        numpy_helper.from_array(np.ascontiguousarray(values[t], dtype=np.float32), name=t)
        for t in ALL_SHAPES
        if t not in graph_inputs
    ]
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=initializers)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="modeconn-tests",
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def save_model(model: onnx.ModelProto, path: str | Path) -> None:
    if model.ir_version > 13:
        model.ir_version = IR_VERSION
    onnx.save_model(model, str(path))


# --------------------------------------------------------------------------------------------
# Coefficients (DESIGN.md, "The mathematics"), float64


def bezier_coefficients(t: float, k: int) -> np.ndarray:
    """c_j(t) = C(K-1, j) t^j (1-t)^(K-1-j)."""
    n = k - 1
    return np.array([math.comb(n, j) * t**j * (1.0 - t) ** (n - j) for j in range(k)], dtype=np.float64)


def polychain_coefficients(t: float, k: int) -> np.ndarray:
    """c_j(t) = max(0, 1 - |t (K-1) - j|): bends evenly spaced in t."""
    return np.array([max(0.0, 1.0 - abs(t * (k - 1) - j)) for j in range(k)], dtype=np.float64)


def curve_coefficients(basis: str, t: float, k: int) -> np.ndarray:
    if basis == "bezier":
        return bezier_coefficients(t, k)
    if basis == "polychain":
        return polychain_coefficients(t, k)
    raise ValueError(f"unknown basis {basis!r}")


def grid_coefficients(t: float, grid: Sequence[float]) -> np.ndarray:
    """Linear interpolation (hat basis) on an increasing, possibly non-uniform grid."""
    g = np.asarray(grid, dtype=np.float64)
    c = np.zeros(len(g), dtype=np.float64)
    if t <= g[0]:
        c[0] = 1.0
    elif t >= g[-1]:
        c[-1] = 1.0
    else:
        i = int(np.searchsorted(g, t, side="right")) - 1  # g[i] <= t < g[i+1]
        a = (t - g[i]) / (g[i + 1] - g[i])
        c[i] = 1.0 - a
        c[i + 1] = a
    return c


def combine(stack: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """sum_j coef[j] * stack[j], in float64, returned as float32."""
    assert stack.shape[0] == coef.shape[0], (stack.shape, coef.shape)
    out = np.tensordot(coef.astype(np.float64), stack.astype(np.float64), axes=(0, 0))
    return out.astype(np.float32)


# --------------------------------------------------------------------------------------------
# Running networks


def session(model: onnx.ModelProto | str | Path, optimize: bool = True) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    src = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(src, sess_options=opts, providers=["CPUExecutionProvider"])


def run_logits(model: onnx.ModelProto | str | Path, x: np.ndarray, optimize: bool = True) -> np.ndarray:
    """Runs a one-input classifier and returns its first output (the logits) as float64."""
    sess = session(model, optimize=optimize)
    inputs = sess.get_inputs()
    if len(inputs) != 1:
        raise ValueError(f"the model has {len(inputs)} inputs to feed, expected 1: {[i.name for i in inputs]}")
    (logits,) = sess.run([sess.get_outputs()[0].name], {inputs[0].name: x.astype(np.float32)})
    return np.asarray(logits, dtype=np.float64)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """softmax(logits / T) along the last axis, in float64."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


# --------------------------------------------------------------------------------------------
# Files


def parse_floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def save_npy(path: str | Path, array: np.ndarray, dtype) -> None:
    np.save(str(path), np.ascontiguousarray(np.asarray(array, dtype=dtype)))


def json_compact(value) -> str:
    return json.dumps(value, separators=(",", ":"))
