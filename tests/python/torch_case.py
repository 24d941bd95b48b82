"""A small PyTorch CNN, three snapshots of it and its ONNX exports, for `modeconn pack`.

    torch_case.py OUT_DIR [--batch B]

Writes into OUT_DIR:
  snap{0,1,2}.safetensors  state_dicts of three independently initialised networks with
                           non-trivial batch-norm running statistics (all tensors, including
                           the int64 `num_batches_tracked`), via safetensors.torch.save_file
  snap_renamed.safetensors snap1 with `fc.weight` saved as `head.weight` (a name the graph lacks)
  model.onnx               torch.onnx.export(dynamo=True, optimize=False), dynamic batch:
                           initializer names equal the state_dict keys, batch norm unfused
  legacy.onnx              torch.onnx.export(dynamo=False): batch norm folded, tensors renamed
  static.onnx              torch.onnx.export(dynamo=True, optimize=False) without dynamic_shapes:
                           the batch axis is fixed at 2, the size it was traced with
  bn{0..4}.safetensors     batch-norm statistics recomputed along the polygonal chain through
                           snap0, snap1, snap2 at t = BN_GRID (0, 0.25, 0.5, 0.75, 1): the chain's
                           parameters at t, running statistics reset and gathered in train mode
                           over a few batches; only the running_mean, running_var and
                           num_batches_tracked tensors
  x.npy                    float32 [B,3,8,8]
  ref_members.npy          float32 [3,B,5]: softmax of each snapshot, eval mode, in PyTorch
  ref_mean.npy             float32 [B,5]: their mean
  ref_chain.npy            float32 [3,B,5]: the polygonal chain through snap0, snap1, snap2
                           (knots at t = 0, 0.5, 1) at t = 0.25, 0.5, 0.8; every float tensor
                           (parameters and running statistics) interpolated linearly between
                           neighbouring knots, loaded into the model, eval mode
  ref_bn.npy               float32 [2,B,5]: the same chain at t = BN_TS (0.25, on the grid, and
                           0.6, between 0.5 and 0.75) with the running statistics of bn*.safetensors
                           interpolated linearly on BN_GRID (hat basis), eval mode
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from pathlib import Path

os.environ["CUDA_VISIBLE_DEVICES"] = ""  # CPU only, before torch is imported

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

import common as C

SEEDS = (11, 22, 33)
CHAIN_TS = (0.25, 0.5, 0.8)
BN_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)
BN_TS = (0.25, 0.6)


class Net(nn.Module):
    def __init__(self, classes: int = C.CLASSES):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(6)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, classes)

    def forward(self, x):
        x = self.pool(torch.relu(self.bn1(self.conv1(x))))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(torch.flatten(self.gap(x), 1))


def snapshot(seed: int) -> Net:
    """A network from `seed` whose batch-norm statistics and affine parameters are not defaults."""
    torch.manual_seed(seed)
    net = Net()
    with torch.no_grad():
        for bn in (net.bn1, net.bn2):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0.0, 0.2)
        net.fc.weight.mul_(4.0)  # logits of order one, so probabilities are far from uniform
        net.train()
        for _ in range(4):  # running statistics from a few batches of shifted, scaled data
            net(torch.randn(16, *C.IMAGE_SHAPE) * 1.5 + 0.3)
    return net.eval()


def probabilities(net: Net, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return C.softmax(net.eval()(x).double().numpy())


def chain_state(states: list[dict], t: float) -> dict:
    """The polygonal chain through `states` at t: interpolation between neighbouring knots."""
    coef = C.polychain_coefficients(t, len(states))
    out = {}
    for name, ref in states[0].items():
        if ref.is_floating_point():
            acc = sum(float(c) * s[name].double() for c, s in zip(coef, states))
            out[name] = acc.to(ref.dtype)
        else:  # num_batches_tracked: irrelevant in eval mode
            out[name] = ref.clone()
    return out


def is_bn_stat(name: str) -> bool:
    return name.endswith((".running_mean", ".running_var", ".num_batches_tracked"))


def recomputed_stats(state: dict, seed: int) -> dict:
    """The batch-norm statistics of the network with `state`'s parameters, recomputed from
    scratch in train mode (cumulative average) over a few batches of shifted, scaled data."""
    net = Net()
    net.load_state_dict(state)
    for bn in (net.bn1, net.bn2):
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average, as the trainer recomputes them
    gen = torch.Generator().manual_seed(seed)
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(16, *C.IMAGE_SHAPE, generator=gen) * 1.2 - 0.2)
    return {k: v.detach().clone().contiguous() for k, v in net.state_dict().items() if is_bn_stat(k)}


def with_grid_stats(state: dict, grid_stats: list[dict], t: float) -> dict:
    """`state` with its running statistics interpolated on BN_GRID at t (hat basis)."""
    coef = C.grid_coefficients(t, BN_GRID)
    out = dict(state)
    for name, ref in grid_stats[0].items():
        if ref.is_floating_point():
            acc = sum(float(c) * s[name].double() for c, s in zip(coef, grid_stats))
            out[name] = acc.to(ref.dtype)
    return out


def export(net: Net, x: torch.Tensor, path: Path, dynamo: bool, dynamic: bool = True) -> None:
    kwargs = dict(input_names=[C.INPUT_NAME], output_names=[C.OUTPUT_NAME])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            batch = torch.export.Dim("batch", min=1)
            # external_data=False: one self-contained file (torch 2.11 otherwise writes the
            # weights to a separate `model.onnx.data`). Without dynamic_shapes the batch axis
            # is fixed at the size traced with.
            shapes = dict(dynamic_shapes={"x": {0: batch}}) if dynamic else {}
            torch.onnx.export(net, (x,), str(path), dynamo=True, optimize=False, external_data=False,
                              verbose=False, **shapes, **kwargs)
        else:
            torch.onnx.export(net, (x,), str(path), dynamo=False, opset_version=17,
                              dynamic_axes={C.INPUT_NAME: {0: "batch"}, C.OUTPUT_NAME: {0: "batch"}},
                              **kwargs)
    import onnx

    model = onnx.load(str(path))
    if model.ir_version > 13:  # onnxruntime 1.31 reads IR versions up to 13
        model.ir_version = C.IR_VERSION
        onnx.save_model(model, str(path))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path)
    p.add_argument("--batch", type=int, default=6)
    args = p.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    logging.getLogger("torch").setLevel(logging.ERROR)  # e.g. "torchvision is not installed"
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    nets = [snapshot(s) for s in SEEDS]
    states = [{k: v.detach().clone().contiguous() for k, v in n.state_dict().items()} for n in nets]
    for i, state in enumerate(states):
        save_file(state, str(out / f"snap{i}.safetensors"))
    renamed = dict(states[1])
    renamed["head.weight"] = renamed.pop("fc.weight")
    save_file(renamed, str(out / "snap_renamed.safetensors"))

    gen = torch.Generator().manual_seed(5)
    x = torch.randn(args.batch, *C.IMAGE_SHAPE, generator=gen)
    C.save_npy(out / "x.npy", x.numpy(), np.float32)

    members = np.stack([probabilities(n, x) for n in nets])
    C.save_npy(out / "ref_members.npy", members, np.float32)
    C.save_npy(out / "ref_mean.npy", members.mean(axis=0), np.float32)

    chain = []
    probe = Net()
    for t in CHAIN_TS:
        probe.load_state_dict(chain_state(states, t))
        chain.append(probabilities(probe, x))
    C.save_npy(out / "ref_chain.npy", np.stack(chain), np.float32)

    grid_stats = [recomputed_stats(chain_state(states, t), 100 + i) for i, t in enumerate(BN_GRID)]
    for i, stats in enumerate(grid_stats):
        save_file(stats, str(out / f"bn{i}.safetensors"))
    on_grid = []
    for t in BN_TS:
        probe.load_state_dict(with_grid_stats(chain_state(states, t), grid_stats, t))
        on_grid.append(probabilities(probe, x))
    C.save_npy(out / "ref_bn.npy", np.stack(on_grid), np.float32)

    # Exported with snapshot 0's weights; a batch of 2 to trace with, batch left dynamic.
    export(nets[0], x[:2], out / "model.onnx", dynamo=True)
    export(nets[0], x[:2], out / "legacy.onnx", dynamo=False)
    export(nets[0], x[:2], out / "static.onnx", dynamo=True, dynamic=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
