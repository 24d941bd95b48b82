"""Writes the ONNX graphs the trainer's import is tested on, with an input batch and ONNX
Runtime's logits for it: torchvision's classification models at random weights and small
inputs, and networks written here that use the rest of the supported operators.

usage: import_cases.py OUT_DIR [CASE ...]   (default: every case)
For each case it writes OUT_DIR/CASE.onnx, CASE.x.npy (float32 input) and CASE.y.npy (ONNX
Runtime's output for it) and prints the case's name.
"""

import os
import sys

import numpy as np
import onnxruntime as ort
import torch
import torch.nn.functional as F
from torch import nn


class Gadgets(nn.Module):
    """Transposed convolution, reflection padding, pooling with ceil mode and padding,
    activations, slicing, softmax, split and concatenation."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.up = nn.ConvTranspose2d(8, 6, 2, stride=2)
        self.dw = nn.Conv2d(6, 6, 3, groups=3, dilation=2, padding=2)
        self.head = nn.Linear(6 * 5 * 5 + 4, 7)
        self.gate = nn.Linear(6 * 5 * 5, 4)

    def forward(self, x):
        y = F.leaky_relu(self.bn(self.conv(x)), 0.2)
        y = F.avg_pool2d(y, 3, stride=2, padding=1, ceil_mode=True)
        y = torch.tanh(self.up(y))
        y = F.pad(y, (1, 2, 0, 1), mode="reflect")
        y = F.hardswish(self.dw(y)) + F.hardsigmoid(y)
        y = F.max_pool2d(y, 3, stride=2, ceil_mode=True)
        y = y[:, :, 1:6, 1:6]
        a, b = torch.split(y, [2, 4], dim=1)
        c, d = torch.chunk(b, 2, dim=1)
        y = torch.cat([d, c * torch.sigmoid(a).mean(1, keepdim=True), a], dim=1)
        flat = torch.flatten(y, 1)
        g = torch.softmax(self.gate(flat), dim=-1)
        return self.head(torch.cat([F.relu6(flat), g], dim=1))


class Mixer(nn.Module):
    """Patches as tokens: layer normalisation, matrix products, GELU, transposes, a residual
    and a mean over tokens."""

    def __init__(self, dim=16):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 4, stride=4)
        self.norm1 = nn.LayerNorm(dim)
        self.tokens = nn.Linear(16, 16)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, 2 * dim)
        self.fc2 = nn.Linear(2 * dim, dim)
        self.w = nn.Parameter(torch.randn(dim, 5) * 0.3)

    def forward(self, x):
        t = self.patch(x).flatten(2).transpose(1, 2)  # [N, 16 tokens, dim]
        t = t + self.tokens(self.norm1(t).transpose(1, 2)).transpose(1, 2)
        t = t + self.fc2(F.gelu(self.fc1(self.norm2(t)), approximate="tanh"))
        return torch.matmul(t.mean(dim=1) - t[:, 0], self.w)


def torchvision_case(name):
    import torchvision

    return getattr(torchvision.models, name)(num_classes=10), (3, 32, 32)


CASES = {
    "resnet18": lambda: torchvision_case("resnet18"),
    "vgg11_bn": lambda: torchvision_case("vgg11_bn"),
    "mobilenet_v2": lambda: torchvision_case("mobilenet_v2"),
    "densenet121": lambda: torchvision_case("densenet121"),
    "efficientnet_b0": lambda: torchvision_case("efficientnet_b0"),
    "gadgets": lambda: (Gadgets(), (3, 16, 16)),
    "mixer": lambda: (Mixer(), (3, 16, 16)),
}


def randomize_statistics(model, gen):
    """Batch-norm statistics away from 0 and 1, so that the test sees them used."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)


def export(name, out_dir):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    model, shape = CASES[name]()
    model.eval()
    with torch.no_grad():
        randomize_statistics(model, gen)
    x = torch.randn((3, *shape), generator=gen)
    path = os.path.join(out_dir, f"{name}.onnx")
    torch.onnx.export(
        model,
        (x,),
        path,
        dynamo=True,
        optimize=False,
        external_data=False,
        dynamic_shapes={"x": {0: torch.export.Dim("batch")}},
    )
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x.numpy()}
    (y,) = session.run(None, feed)
    np.save(os.path.join(out_dir, f"{name}.x.npy"), x.numpy().astype(np.float32))
    np.save(os.path.join(out_dir, f"{name}.y.npy"), y.astype(np.float32))
    print(name, flush=True)


def main():
    out_dir = sys.argv[1]
    names = sys.argv[2:] or list(CASES)
    for name in names:
        export(name, out_dir)


if __name__ == "__main__":
    main()
