"""Trains three small convolutional networks with batch norm on the 8x8 digits and exports them
the way `modeconn pack` expects: the state_dicts as safetensors files and the architecture as
ONNX from torch.onnx.export(dynamo=True, optimize=False).

Usage: demo_models.py DIGITS.npz OUT_DIR
Writes OUT_DIR/net{0,1,2}.safetensors, model.onnx, x_test.npy, y_test.npy.
"""
import os
import sys

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(32)
        self.fc = nn.Linear(32 * 2 * 2, 10)

    def forward(self, x):
        x = torch.max_pool2d(torch.relu(self.bn1(self.conv1(x))), 2)
        x = torch.max_pool2d(torch.relu(self.bn2(self.conv2(x))), 2)
        return self.fc(torch.flatten(x, 1))


def train(seed, x, y, epochs=12):
    torch.manual_seed(seed)
    net = Net()
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    n = len(y)
    for _ in range(epochs):
        net.train()
        order = torch.randperm(n)
        for i in range(0, n, 64):
            idx = order[i : i + 64]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
            loss.backward()
            opt.step()
    return net.eval()


def main(digits, out):
    torch.set_num_threads(2)
    data = np.load(digits)
    x = torch.from_numpy(data["x_train"])
    y = torch.from_numpy(data["y_train"])
    nets = []
    for seed in range(3):
        net = train(seed, x, y)
        save_file(net.state_dict(), os.path.join(out, f"net{seed}.safetensors"))
        nets.append(net)
        print(f"trained network {seed}", file=sys.stderr)
    example = (torch.zeros(2, 1, 8, 8),)
    torch.onnx.export(
        nets[0],
        example,
        os.path.join(out, "model.onnx"),
        dynamo=True,
        optimize=False,
        input_names=["image"],
        output_names=["logits"],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
    )
    np.save(os.path.join(out, "x_test.npy"), data["x_test"].astype(np.float32))
    np.save(os.path.join(out, "y_test.npy"), data["y_test"].astype(np.int64))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
