"""A tiny curve checkpoint in the layout of dnn-mode-connectivity, for scripts/convert_reference.py.

    reference_case.py OUT_DIR --curve bezier|polychain --x X.npy --ts T,T,...

The curve network here is written from the checkpoint format alone: a `CurveNet` whose
`coeff_layer` holds the curve's buffers and whose `net` holds every parameter once per control
point (`net.conv1.weight_0` ... `_2`) and one set of batch-norm running statistics per layer.
`Base` is the same network without the curve (`conv1`, `bn1`, `conv2`, `bn2`, `fc`: conv,
batch norm, ReLU, a residual add, global average pooling, linear); `base_model` is the factory
that `convert_reference.py --model reference_case:base_model` calls. `renamed_base` gives the
same network under other layer names in the same order (for `--match order`),
`misordered_base` the same names in another order, `spare_base` an unused layer more.

Writes into OUT_DIR:
  checkpoint.pt   torch.save({"epoch", "model_state", "optimizer_state"}) of a CurveNet with
                  K = 3 control points of random values and non-trivial running statistics
  missing.pt      the same without net.conv2.weight_1
  extra.pt        the same with an extra net.head.weight_0, which the base model lacks
  spare.pt        the same curve with a layer `spare` that forward never uses (`spare_base`)
  ref_t.npy       float32 [len(ts), B, 5]: softmax of the CurveNet's own forward at each t
                  (w(t) = sum_k c_k(t) w_k, the single running statistics, eval), in float64
  ref_points.npy  float32 [K, B, 5]: softmax of Base loaded with control point k's parameters
                  and the checkpoint's statistics, eval, in float64
Checks on the way that the two agree where the curve passes through a point (t = 0, t = 1, and
the polygonal chain's knots).
"""

from __future__ import annotations

import argparse
import copy
import logging
import math
import os
import sys
from pathlib import Path

os.environ["CUDA_VISIBLE_DEVICES"] = ""  # CPU only, before torch is imported

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import common as C

POINTS = 3
CHANNELS = 4


class Base(nn.Module):
    """The base network: what a user's own architecture would be."""

    def __init__(self, classes: int = C.CLASSES, channels: int = CHANNELS, spare: bool = False):
        super().__init__()
        self.conv1 = nn.Conv2d(3, channels, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(channels)
        self.fc = nn.Linear(channels, classes)
        if spare:  # a layer that forward never uses
            self.spare = nn.Linear(channels, classes)

    def forward(self, x):
        h = torch.relu(self.bn1(self.conv1(x)))
        h = torch.relu(self.bn2(self.conv2(h)) + h)
        return self.fc(h.mean(dim=(2, 3)))


def base_model(classes: int = C.CLASSES) -> Base:
    return Base(classes)


def spare_base(classes: int = C.CLASSES) -> Base:
    return Base(classes, spare=True)


class RenamedBase(nn.Module):
    """Base under other layer names (`features.0` for `conv1`, ..., `classifier.0` for `fc`),
    registered in the same order, as the reference's own base classes are."""

    def __init__(self, classes: int = C.CLASSES, channels: int = CHANNELS):
        super().__init__()
        self.features = nn.ModuleList([nn.Conv2d(3, channels, 3, padding=1), nn.BatchNorm2d(channels),
                                       nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels)])
        self.classifier = nn.Sequential(nn.Linear(channels, classes))

    def forward(self, x):
        conv1, bn1, conv2, bn2 = self.features
        h = torch.relu(bn1(conv1(x)))
        h = torch.relu(bn2(conv2(h)) + h)
        return self.classifier(h.mean(dim=(2, 3)))


def renamed_base(classes: int = C.CLASSES) -> RenamedBase:
    return RenamedBase(classes)


class MisorderedBase(Base):
    """Base with the classifier registered first: its state_dict is not in the curve's order."""

    def __init__(self, classes: int = C.CLASSES, channels: int = CHANNELS):
        nn.Module.__init__(self)
        self.fc = nn.Linear(channels, classes)
        self.conv1 = nn.Conv2d(3, channels, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(channels)


def misordered_base(classes: int = C.CLASSES) -> MisorderedBase:
    return MisorderedBase(classes)


# --------------------------------------------------------------------------------------------
# The curve network, from the checkpoint layout


class Bezier(nn.Module):
    def __init__(self, points: int):
        super().__init__()
        n = points - 1
        self.register_buffer("binom", torch.tensor([float(math.comb(n, k)) for k in range(points)]))
        self.register_buffer("range", torch.arange(points, dtype=torch.float32))
        self.register_buffer("rev_range", n - torch.arange(points, dtype=torch.float32))

    def forward(self, t: float) -> torch.Tensor:
        return self.binom * t ** self.range * (1.0 - t) ** self.rev_range


class PolyChain(nn.Module):
    def __init__(self, points: int):
        super().__init__()
        self.points = points
        self.register_buffer("range", torch.arange(points, dtype=torch.float32))

    def forward(self, t: float) -> torch.Tensor:
        return torch.clamp(1.0 - torch.abs(t * (self.points - 1) - self.range), min=0.0)


class CurveLayer(nn.Module):
    """Parameters `<name>_<k>` for k = 0 .. K-1; `mix` gives sum_k c_k <name>_k."""

    def __init__(self, points: int, shapes: dict[str, tuple[int, ...]]):
        super().__init__()
        self.points = points
        self.names = list(shapes)
        for name, shape in shapes.items():
            for k in range(points):
                self.register_parameter(f"{name}_{k}", nn.Parameter(torch.zeros(shape)))

    def mix(self, name: str, coef: torch.Tensor) -> torch.Tensor:
        return sum(coef[k] * getattr(self, f"{name}_{k}") for k in range(self.points))


class CurveConv2d(CurveLayer):
    def __init__(self, points, cin, cout):
        super().__init__(points, {"weight": (cout, cin, 3, 3), "bias": (cout,)})

    def forward(self, x, coef):
        return F.conv2d(x, self.mix("weight", coef), self.mix("bias", coef), padding=1)


class CurveLinear(CurveLayer):
    def __init__(self, points, cin, cout):
        super().__init__(points, {"weight": (cout, cin), "bias": (cout,)})

    def forward(self, x, coef):
        return F.linear(x, self.mix("weight", coef), self.mix("bias", coef))


class CurveBatchNorm2d(CurveLayer):
    """Affine parameters per point, one set of running statistics for the whole curve."""

    def __init__(self, points, channels):
        super().__init__(points, {"weight": (channels,), "bias": (channels,)})
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x, coef):
        return F.batch_norm(x, self.running_mean, self.running_var, self.mix("weight", coef),
                            self.mix("bias", coef), training=False, eps=1e-5)


class CurveBody(nn.Module):
    def __init__(self, points, classes=C.CLASSES, channels=CHANNELS, spare=False):
        super().__init__()
        self.conv1 = CurveConv2d(points, 3, channels)
        self.bn1 = CurveBatchNorm2d(points, channels)
        self.conv2 = CurveConv2d(points, channels, channels)
        self.bn2 = CurveBatchNorm2d(points, channels)
        self.fc = CurveLinear(points, channels, classes)
        if spare:
            self.spare = CurveLinear(points, channels, classes)

    def forward(self, x, coef):
        h = torch.relu(self.bn1(self.conv1(x, coef), coef))
        h = torch.relu(self.bn2(self.conv2(h, coef), coef) + h)
        return self.fc(h.mean(dim=(2, 3)), coef)


class CurveNet(nn.Module):
    def __init__(self, curve: str, points: int = POINTS, spare: bool = False):
        super().__init__()
        self.coeff_layer = {"bezier": Bezier, "polychain": PolyChain}[curve](points)
        self.net = CurveBody(points, spare=spare)

    def forward(self, x, t: float):
        return self.net(x, self.coeff_layer(t))


# --------------------------------------------------------------------------------------------


def randomise(curve: CurveNet, seed: int) -> None:
    """Random values per control point; logits of order one; non-trivial running statistics."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for path, layer in curve.net.named_children():
            for name, p in layer.named_parameters():
                if path.startswith("bn"):
                    p.copy_(torch.rand(p.shape, generator=gen) + 0.5 if name.startswith("weight")
                            else torch.randn(p.shape, generator=gen) * 0.2)
                elif name.startswith("bias"):
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
                else:
                    fan_in = p[0].numel()
                    scale = 4.0 if path == "fc" else 1.0
                    p.copy_(torch.randn(p.shape, generator=gen) * math.sqrt(2.0 / fan_in) * scale)
            if path.startswith("bn"):
                layer.running_mean.copy_(torch.randn(layer.running_mean.shape, generator=gen) * 0.4)
                layer.running_var.copy_(torch.rand(layer.running_var.shape, generator=gen) * 2.0 + 0.3)
                layer.num_batches_tracked.fill_(117)


def point_state(curve: CurveNet, k: int) -> dict[str, torch.Tensor]:
    """Control point k as a state_dict of Base, read off the curve's modules."""
    out = {}
    for path, layer in curve.net.named_children():
        for name in layer.names:
            out[f"{path}.{name}"] = getattr(layer, f"{name}_{k}").detach().clone()
        if isinstance(layer, CurveBatchNorm2d):
            for buf in ("running_mean", "running_var", "num_batches_tracked"):
                out[f"{path}.{buf}"] = getattr(layer, buf).clone()
    return out


def softmax(logits: torch.Tensor) -> np.ndarray:
    return C.softmax(logits.double().numpy())


def checkpoint(curve: CurveNet, epoch: int = 600) -> dict:
    """What the reference's training script saves: the epoch, the model and the optimiser."""
    opt = torch.optim.SGD(curve.parameters(), lr=0.01, momentum=0.9)
    for p in curve.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()  # momentum buffers in the optimiser's state; zero gradients change nothing
    return {"epoch": epoch, "model_state": curve.state_dict(), "optimizer_state": opt.state_dict()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path)
    p.add_argument("--curve", choices=("bezier", "polychain"), required=True)
    p.add_argument("--x", type=Path, required=True)
    p.add_argument("--ts", required=True)
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    logging.getLogger("torch").setLevel(logging.ERROR)
    torch.set_num_threads(1)

    curve = CurveNet(args.curve)
    randomise(curve, args.seed)
    ckpt = checkpoint(curve)
    torch.save(ckpt, out / "checkpoint.pt")
    state = ckpt["model_state"]
    missing = {k: v for k, v in state.items() if k != "net.conv2.weight_1"}
    assert len(missing) == len(state) - 1
    torch.save({**ckpt, "model_state": missing}, out / "missing.pt")
    extra = dict(state)
    extra["net.head.weight_0"] = torch.zeros(3, 4)
    torch.save({**ckpt, "model_state": extra}, out / "extra.pt")
    # The same curve with a spare layer that neither network uses: the same predictions.
    spare = CurveNet(args.curve, spare=True)
    randomise(spare, args.seed + 1)
    spare.load_state_dict(state, strict=False)
    assert not torch.equal(spare.net.spare.weight_0, torch.zeros_like(spare.net.spare.weight_0))
    torch.save({"epoch": 600, "model_state": spare.state_dict()}, out / "spare.pt")

    x = torch.from_numpy(np.load(args.x)).double()
    ts = [float(t) for t in args.ts.split(",")]
    curve64 = copy.deepcopy(curve).double().eval()
    with torch.no_grad():
        ref_t = np.stack([softmax(curve64(x, t)) for t in ts])
        ref_points = []
        for k in range(POINTS):
            base = Base().double().eval()
            base.load_state_dict(point_state(curve, k))
            ref_points.append(softmax(base(x)))
        ref_points = np.stack(ref_points)

    # Where the curve passes through a control point, its forward and the base model agree.
    through = {0.0: 0, 1.0: POINTS - 1}
    if args.curve == "polychain":
        through.update({k / (POINTS - 1): k for k in range(POINTS)})
    for t, k in through.items():
        if t in ts:
            diff = np.abs(ref_t[ts.index(t)] - ref_points[k]).max()
            assert diff < 1e-12, f"the curve at t = {t} differs from point {k} by {diff}"
    # The points differ, so the comparisons above are not trivially true.
    assert np.abs(ref_points[0] - ref_points[-1]).max() > 1e-2

    C.save_npy(out / "ref_t.npy", ref_t, np.float32)
    C.save_npy(out / "ref_points.npy", ref_points, np.float32)
    return 0


if __name__ == "__main__":
    sys.exit(main())
