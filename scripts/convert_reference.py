"""Converts a curve checkpoint of dnn-mode-connectivity, the reference implementation of
Garipov et al. (2018), into what `modeconn pack` takes: one ONNX export of the base network and
one weight file per control point.

    python scripts/convert_reference.py CHECKPOINT --model package.module:factory \\
        [--model-args JSON] --input-shape C,H,W --out DIR [--curve bezier|polychain] \\
        [--match names|order]

CHECKPOINT is a `torch.save` of a dict whose `model_state` is the state_dict of a `CurveNet`:
every parameter of the network is stored once per control point k = 0 .. K-1 as
`net.<layer path>.<param>_<k>` (`net.conv1.weight_0`, `net.conv1.weight_1`, ...), each
batch-norm layer keeps one set of running statistics (`net.bn1.running_mean`, without `_k`), and
tensors outside `net.` (the curve's own buffers, such as `coeff_layer.range`) are ignored. Other
keys of the checkpoint (`epoch`, `optimizer_state`) are not read.

`--model` names a callable that returns the base network, the architecture without the curve,
whose state_dict has the same layer paths (`conv1.weight`, `bn1.running_mean`, ...):
`package.module:factory` (imported with the current folder on the path) or
`path/to/file.py:factory`; `--model-args` is a JSON object of keyword arguments (or an array of
positional ones) for it. `--input-shape` is the shape of one input without the batch axis.
`--match order` pairs the checkpoint's tensors with the base state_dict's by position instead
(each `net.<name>_<k>` counted once, every pair ending alike: `weight` with `weight`), for base
models registered in the curve's order under other names, as the reference's own base classes
are (`classifier.1.weight` for `fc1.weight_<k>`, `downsample.0.weight` for `downsample.weight_<k>`).

Writes DIR/model.onnx (torch.onnx.export with dynamo=True, optimize=False, a dynamic batch axis
and no external data, so tensors keep their state_dict names) and DIR/point_{k}.safetensors, the
base network's state_dict with point k's parameters and the checkpoint's single set of batch-norm
statistics, then prints the `modeconn pack` command that makes the bundle. Those statistics are
only a starting value: the reference recomputes them at each t, so recompute them along the curve
from your data with `modeconn bn` before using the bundle.

As a module: `convert(checkpoint, base_model, example_input, out_dir, curve="bezier",
match="names")` does the same and returns a `Conversion`; it raises `ConversionError` with a
one-line message naming the tensors that do not fit.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import importlib.util
import json
import os
import pickle
import re
import shlex
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from safetensors.torch import save_file

CURVES = ("bezier", "polychain")
MATCHES = ("names", "order")
PREFIX = "net."
# ONNX Runtime 1.31 reads IR versions up to 13; newer exports are written down to this one.
MAX_IR_VERSION = 13
IR_VERSION = 10
_POINT = re.compile(r"^(?P<name>.+)_(?P<k>[0-9]+)$")


class ConversionError(Exception):
    """A checkpoint, model or argument that cannot be converted; the message is one line."""


@dataclass
class Conversion:
    """What `convert` wrote and the commands that follow it."""

    points: int
    curve: str
    onnx: Path
    point_files: list[Path]
    # Base names taken once per control point, and those copied from the checkpoint's single set.
    per_point: list[str]
    shared: list[str]
    # Tensors of the checkpoint outside `net.`, not read.
    ignored: list[str]
    # With match="order": checkpoint names (without `net.` and `_k`) to the base names they took.
    renamed: dict[str, str] = field(default_factory=dict)
    # Float tensors of the base model that its exported graph does not use (pack leaves them out).
    unused: list[str] = field(default_factory=list)
    bundle: str = "curve.safetensors"
    pack_argv: list[str] = field(default_factory=list)
    bn_argv: list[str] = field(default_factory=list)

    @property
    def pack_command(self) -> str:
        return shlex.join(self.pack_argv)

    @property
    def bn_command(self) -> str:
        return shlex.join(self.bn_argv)

    def describe(self) -> str:
        """What a user reads after the conversion: what was written and what to run next."""
        lines = [
            f"{self.points} control points, {_count(len(self.per_point), 'tensor')} per point"
            + (f", {len(self.shared)} shared by all points" if self.shared else "")
            + (f"; ignored: {_names(self.ignored)}" if self.ignored else ""),
            *(
                [f"matched by order, {_count(len(self.renamed), 'name')} differing: "
                 + _names([f"{a} -> {b}" for a, b in self.renamed.items()], 3)]
                if self.renamed
                else []
            ),
            *(
                [f"the exported network never uses {_count(len(self.unused), 'tensor')} (pack leaves "
                 f"them out with --allow-unmatched): {_names(self.unused, 4)}"]
                if self.unused
                else []
            ),
            f"wrote {self.onnx} and {len(self.point_files)} point files in {self.onnx.parent}",
            "make the bundle with:",
            f"  {self.pack_command}",
        ]
        if self.bn_argv:
            lines += [
                "then recompute the batch-norm statistics along the curve from your data (the",
                "checkpoint holds one set, copied into every point only as a starting value):",
                f"  {self.bn_command}",
            ]
        return "\n".join(lines)


def _count(n: int, what: str) -> str:
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


def _names(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"


def load_checkpoint(path: str | os.PathLike, allow_pickle: bool = False) -> Mapping[str, Any]:
    """The checkpoint at `path`, loaded on the CPU; only tensors and plain containers unless
    `allow_pickle` (which runs whatever code the file holds: only for files you trust)."""
    try:
        return torch.load(str(path), map_location="cpu", weights_only=not allow_pickle)
    except FileNotFoundError:
        raise ConversionError(f"no checkpoint at {path}") from None
    except pickle.UnpicklingError as e:
        # torch's weights-only loader says what stopped it after "WeightsUnpickler error:".
        text = str(e)
        after = text.split("WeightsUnpickler error:", 1)[-1] if "WeightsUnpickler error:" in text else text
        detail = next((line.strip() for line in after.splitlines() if line.strip()), type(e).__name__)
        if allow_pickle or not detail.startswith("Unsupported global"):
            raise ConversionError(f"cannot load {path}: not a file torch.save wrote ({detail})") from None
        raise ConversionError(
            f"cannot load {path} with weights_only=True: it holds Python objects other than tensors and "
            f"plain containers ({detail.split('. ')[0].rstrip('.')}); if you trust the file, pass --allow-pickle"
        ) from None
    except Exception as e:  # noqa: BLE001 - torch raises many kinds; all mean "cannot read"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        hint = "" if allow_pickle else " (if the file holds other objects and you trust it, pass --allow-pickle)"
        raise ConversionError(f"cannot load {path}: {first}{hint}") from None


def curve_state(checkpoint: Mapping[str, Any]) -> Mapping[str, torch.Tensor]:
    """The CurveNet state_dict of a checkpoint: its `model_state`, or the dict itself when it is a
    state_dict already."""
    if not isinstance(checkpoint, Mapping):
        raise ConversionError(f"the checkpoint is a {type(checkpoint).__name__}, not a dict with `model_state`")
    state = checkpoint.get("model_state", checkpoint)
    if not isinstance(state, Mapping):
        raise ConversionError(f"`model_state` is a {type(state).__name__}, not a state_dict")
    not_tensors = [str(k) for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        where = "`model_state`" if "model_state" in checkpoint else "the checkpoint (it has no `model_state`)"
        raise ConversionError(f"{where} holds values that are not tensors: {_names(not_tensors)}")
    return state


def _last(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _by_order(
    entries: list[tuple[str, torch.Tensor, str, int | None]], base: Mapping[str, torch.Tensor]
) -> dict[str, str]:
    """Checkpoint names (without `net.` and `_k`) to base names, position by position: for base
    models whose layers are named differently from the curve's but registered in the same order.
    Each pair must end alike (`weight` with `weight`, `running_mean` with `running_mean`)."""
    order = list(dict.fromkeys(name for _, _, name, _ in entries))
    names = list(base)
    for i, (ours, theirs) in enumerate(zip(order, names)):
        if _last(ours) != _last(theirs):
            raise ConversionError(
                f"--match order: tensor {i} of the checkpoint, {PREFIX}{ours}, lines up with the base model's "
                f"{theirs}: the base model's layers are not in the curve's order"
            )
    if len(order) != len(names):
        extra = order[len(names):] or names[len(order):]
        whose = "checkpoint" if len(order) > len(names) else "base model"
        shown = [f"{PREFIX}{n}" for n in extra] if whose == "checkpoint" else extra
        raise ConversionError(
            f"--match order: the checkpoint has {_count(len(order), 'tensor')} (each net.<name>_<k> counted once), "
            f"the base model's state_dict {len(names)}; left over in the {whose}: {_names(shown)}"
        )
    return dict(zip(order, names))


def split_points(
    state: Mapping[str, torch.Tensor], base_model: torch.nn.Module, match: str = "names"
) -> tuple[list[dict[str, torch.Tensor]], list[str], list[str], list[str], dict[str, str]]:
    """The control points of a CurveNet state_dict as state_dicts of `base_model`.

    `match` is "names" (`net.X_k` and `net.X` give base tensor X) or "order" (the checkpoint's
    tensors, each `net.X_k` counted once, line up with the base state_dict's in order).

    Returns (points, per-point base names, shared base names, ignored checkpoint names, renamed:
    checkpoint names that differ from their base names). Every float parameter of the base model
    must be given once per point (`net.X_k`); every float buffer once per point or once for all
    (`net.X`); other buffers (`num_batches_tracked`) keep the base model's value when the
    checkpoint lacks them. Every `net.` tensor must be used.
    """
    if match not in MATCHES:
        raise ConversionError(f"--match is {match!r}; it is {' or '.join(MATCHES)}")
    base = base_model.state_dict()
    parameters = {name for name, _ in base_model.named_parameters()}

    entries: list[tuple[str, torch.Tensor, str, int | None]] = []  # key, value, name, k
    ignored, unmatched = [], []
    for key, value in state.items():
        if not key.startswith(PREFIX):
            ignored.append(key)
            continue
        rest = key[len(PREFIX):]
        m = _POINT.match(rest)
        if match == "order":
            entries.append((key, value, m["name"], int(m["k"])) if m else (key, value, rest, None))
        elif m and m["name"] in base:
            entries.append((key, value, m["name"], int(m["k"])))
        elif rest in base:
            entries.append((key, value, rest, None))
        else:
            unmatched.append(key)
    if unmatched:
        example = _names(list(base)[:3], 3)
        raise ConversionError(
            f"{_count(len(unmatched), 'tensor')} of the checkpoint {'matches' if len(unmatched) == 1 else 'match'} "
            f"no tensor of the base model: {_names(unmatched)} (expected net.<name>_<k> or net.<name> for a base "
            f"state_dict name such as {example}; if its layers are named differently but come in the curve's "
            f"order, pass --match order)"
        )
    renamed: dict[str, str] = {}
    if match == "order":
        if not any(k is not None for *_, k in entries):
            entries = []  # reported below as not a CurveNet checkpoint
        else:
            names = _by_order(entries, base)
            renamed = {ours: theirs for ours, theirs in names.items() if ours != theirs}
            entries = [(key, value, names[name], k) for key, value, name, k in entries]

    per_point: dict[str, dict[int, tuple[str, torch.Tensor]]] = {}
    shared: dict[str, tuple[str, torch.Tensor]] = {}
    for key, value, name, k in entries:
        if k is None:
            shared[name] = (key, value)
        else:
            per_point.setdefault(name, {})[k] = (key, value)
    if not per_point:
        raise ConversionError(
            f"no tensor of the checkpoint is named {PREFIX}<name>_<k> for a tensor of the base model "
            f"(its names are like {_names(list(base)[:3], 3)}): is this a CurveNet checkpoint?"
        )
    both = sorted(set(per_point) & set(shared))
    if both:
        raise ConversionError(
            "tensors given both per point and once for all points: "
            + _names([f"{PREFIX}{n}" for n in both])
        )
    shared_parameters = sorted(set(shared) & parameters)
    if shared_parameters:
        raise ConversionError(
            "parameters given once instead of once per control point: "
            + _names([f"{PREFIX}{n}" for n in shared_parameters])
        )

    count = 1 + max(k for ks in per_point.values() for k in ks)
    if count < 2:
        raise ConversionError(
            f"the checkpoint has a single control point ({PREFIX}<name>_0); a curve needs at least 2"
        )
    # Missing tensors are named as the checkpoint would name them.
    theirs = {b: a for a, b in renamed.items()}
    missing = []
    for name, ref in base.items():
        ours = f"{PREFIX}{theirs.get(name, name)}"
        if name in per_point:
            missing += [f"{ours}_{k}" for k in range(count) if k not in per_point[name]]
        elif name in parameters and ref.is_floating_point():
            missing += [f"{ours}_{k}" for k in range(count)]
        elif name not in shared and ref.is_floating_point():
            missing.append(ours)
    if missing:
        raise ConversionError(
            f"the checkpoint ({count} control points) lacks {_count(len(missing), 'tensor')} of the base model: {_names(missing)}"
        )

    wrong = []
    for name, (key, value) in [(n, kv) for n, ks in per_point.items() for kv in ks.values()] + list(shared.items()):
        if tuple(value.shape) != tuple(base[name].shape):
            wrong.append(f"{key} {list(value.shape)} (base {name} {list(base[name].shape)})")
    if wrong:
        raise ConversionError(f"tensors whose shape differs from the base model's: {_names(wrong, 4)}")

    points = []
    for k in range(count):
        point = {}
        for name, ref in base.items():
            if name in per_point:
                value = per_point[name][k][1]
            elif name in shared:
                value = shared[name][1]
            else:
                value = ref
            point[name] = value.detach().to(dtype=ref.dtype).clone().contiguous()
        points.append(point)
    return points, sorted(per_point), sorted(shared), ignored, renamed


def export_onnx(model: torch.nn.Module, example_input: torch.Tensor, path: Path) -> set[str]:
    """`torch.onnx.export` as `modeconn pack` needs it: dynamo, not optimised (batch norm unfused,
    tensors keep their state_dict names), batch axis 0 of the first argument dynamic, one file.
    Returns the names of the graph's initializers and inputs."""
    x = example_input
    if x.dim() < 1:
        raise ConversionError("the example input needs a batch axis")
    if x.shape[0] < 2:  # torch.export specialises axes of size 1, which would fix the batch at 1
        x = x.expand(2, *x.shape[1:]).contiguous()
    batch = torch.export.Dim("batch", min=1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model.eval(),
                (x,),
                str(path),
                dynamo=True,
                optimize=False,
                external_data=False,
                dynamic_shapes=({0: batch},),
                verbose=False,
            )
    except Exception as e:  # noqa: BLE001 - the exporter raises many kinds
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConversionError(f"torch.onnx.export of the base model failed: {first}") from None

    import onnx  # torch.onnx's dynamo exporter needs it, so it is there

    exported = onnx.load(str(path))
    if exported.ir_version > MAX_IR_VERSION:
        exported.ir_version = IR_VERSION
        onnx.save_model(exported, str(path))
    graph = exported.graph
    return {t.name for t in graph.initializer} | {i.name for i in graph.input}


def convert(
    checkpoint: str | os.PathLike | Mapping[str, Any],
    base_model: torch.nn.Module,
    example_input: torch.Tensor,
    out_dir: str | os.PathLike,
    curve: str = "bezier",
    *,
    match: str = "names",
    bundle: str = "curve.safetensors",
    allow_pickle: bool = False,
) -> Conversion:
    """Converts a CurveNet checkpoint (a path or the loaded dict) into `out_dir/model.onnx` and
    `out_dir/point_{k}.safetensors`, k = 0 .. K-1, and returns what was written with the
    `modeconn pack` command (`Conversion.pack_command`) and the `modeconn bn` one that follows.

    `base_model` is not changed: a copy is loaded with point 0 and exported in eval mode.
    Nothing is written when the checkpoint does not fit the base model.
    """
    curve = curve.lower()  # the reference spells them Bezier and PolyChain
    if curve not in CURVES:
        raise ConversionError(f"--curve is {curve!r}; the reference's curves are {' or '.join(CURVES)}")
    if not isinstance(base_model, torch.nn.Module):
        raise ConversionError(f"the base model is a {type(base_model).__name__}, not a torch.nn.Module")
    if isinstance(checkpoint, (str, os.PathLike)):
        checkpoint = load_checkpoint(checkpoint, allow_pickle)
    points, per_point, shared, ignored, renamed = split_points(curve_state(checkpoint), base_model, match)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = copy.deepcopy(base_model).cpu()
    model.load_state_dict(points[0])
    onnx_path = out / "model.onnx"
    with torch.no_grad():
        in_graph = export_onnx(model, example_input.detach().cpu().float(), onnx_path)
    # Tensors the network never uses (its forward skips their layers) are not in the graph, and
    # pack refuses them unless told to leave them out.
    unused = [n for n, v in points[0].items() if v.is_floating_point() and n not in in_graph]
    files = []
    for k, point in enumerate(points):
        files.append(out / f"point_{k}.safetensors")
        save_file(point, str(files[-1]))

    pack = ["modeconn", "pack", "--onnx", str(onnx_path), "--curve", curve, "--points"]
    pack += [str(f) for f in files] + (["--allow-unmatched"] if unused else []) + ["--out", bundle]
    has_bn = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    stem = bundle[: -len(".safetensors")] if bundle.endswith(".safetensors") else bundle
    bn = ["modeconn", "bn", bundle, "--data", "DATA", "--bn-grid", "21", "--out", f"{stem}-bn.safetensors"]
    return Conversion(
        points=len(points),
        curve=curve,
        onnx=onnx_path,
        point_files=files,
        per_point=per_point,
        shared=shared,
        ignored=ignored,
        renamed=renamed,
        unused=unused,
        bundle=bundle,
        pack_argv=pack,
        bn_argv=bn if has_bn else [],
    )


def load_factory(spec: str):
    """The callable named by `package.module:factory` or `path/to/file.py:factory`."""
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        raise ConversionError(f"--model {spec!r} is not package.module:factory or file.py:factory")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_file():
                raise ConversionError(f"--model: no file {path}")
            module_spec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[path.stem] = module
            module_spec.loader.exec_module(module)
        else:
            if os.getcwd() not in sys.path:
                sys.path.insert(0, os.getcwd())
            module = importlib.import_module(module_name)
    except ConversionError:
        raise
    except Exception as e:  # noqa: BLE001 - importing user code may raise anything
        raise ConversionError(f"--model: cannot import {module_name}: {type(e).__name__}: {e}") from None
    factory = module
    for part in attr.split("."):
        factory = getattr(factory, part, None)
        if factory is None:
            raise ConversionError(f"--model: {module_name} has no {attr}")
    if not callable(factory):
        raise ConversionError(f"--model: {module_name}:{attr} is not callable")
    return factory


def build_model(spec: str, model_args: str | None) -> torch.nn.Module:
    factory = load_factory(spec)
    args, kwargs = [], {}
    if model_args:
        try:
            parsed = json.loads(model_args)
        except json.JSONDecodeError as e:
            raise ConversionError(f"--model-args is not JSON: {e}") from None
        if isinstance(parsed, dict):
            kwargs = parsed
        elif isinstance(parsed, list):
            args = parsed
        else:
            raise ConversionError("--model-args must be a JSON object (keyword arguments) or array")
    try:
        model = factory(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - user code may raise anything
        raise ConversionError(f"--model: {spec} failed: {type(e).__name__}: {e}") from None
    if not isinstance(model, torch.nn.Module):
        raise ConversionError(f"--model: {spec} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(d) for d in text.split(","))
    except ValueError:
        shape = ()
    if not shape or any(d < 1 for d in shape):
        raise ConversionError(f"--input-shape {text!r} is not positive integers like 3,32,32")
    return shape


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="convert_reference.py",
        description=__doc__.split("\n\n")[0],
        epilog="See docs/architectures.md, 'Curves from the reference implementation'.",
    )
    p.add_argument("checkpoint", type=Path, help="the checkpoint written by the reference's train.py --curve")
    p.add_argument("--model", required=True, metavar="MODULE:FACTORY",
                   help="callable returning the base network: package.module:factory or file.py:factory")
    p.add_argument("--model-args", metavar="JSON", help="its arguments: a JSON object or array")
    p.add_argument("--input-shape", required=True, metavar="C,H,W", help="one input, without the batch axis")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder for model.onnx and point_{k}.safetensors")
    p.add_argument("--curve", default="bezier", choices=CURVES, type=str.lower, help="the curve the checkpoint was trained as (default bezier)")
    p.add_argument("--match", default="names", choices=MATCHES,
                   help="how checkpoint tensors find the base model's: by name (default), or by order "
                        "for base models whose layers are named differently but come in the curve's order")
    p.add_argument("--bundle", default="curve.safetensors", metavar="CURVE.safetensors",
                   help="the bundle named in the printed pack command (default curve.safetensors)")
    p.add_argument("--allow-pickle", action="store_true",
                   help="load checkpoints holding arbitrary Python objects (runs their code: trusted files only)")
    args = p.parse_args(argv)
    try:
        shape = parse_shape(args.input_shape)
        model = build_model(args.model, args.model_args)
        example = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
        info = convert(args.checkpoint, model, example, args.out, args.curve, match=args.match,
                       bundle=args.bundle, allow_pickle=args.allow_pickle)
    except ConversionError as e:
        print(f"convert_reference.py: error: {e}", file=sys.stderr)
        return 1
    print(info.describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
