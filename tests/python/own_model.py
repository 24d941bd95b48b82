"""A user's own PyTorch classifier of the digits (batch norm, a residual Add, a Concat), for
the tests of training and connecting users' networks.

usage:
  own_model.py train DIR     trains two endpoints in PyTorch (seeds 1 and 2) and writes
                             DIR/model.onnx (the README's export), DIR/a.safetensors,
                             DIR/b.safetensors (their state_dicts), DIR/x.npy (the test
                             inputs), DIR/y.npy (their labels) and DIR/torch.json (each
                             endpoint's test error in PyTorch)
  own_model.py same A B      prints "same" when the trained tensors of state_dicts A and B
                             are equal
  own_model.py run STATE X OUT
                             loads the state_dict STATE into the model (as a user would) and
                             writes its softmax probabilities on X to OUT; prints the keys the
                             state_dict lacks or has too many, as JSON
"""

import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn


class OwnNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv = nn.Conv2d(16, 16, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.side = nn.Conv2d(16, 8, 1)
        self.fc = nn.Linear(24 * 4 * 4, 10)

    def forward(self, x):
        h = F.relu(self.bn1(self.stem(x)))
        h = h + F.relu(self.bn2(self.conv(h)))
        h = torch.cat([h, F.relu(self.side(h))], dim=1)
        h = F.max_pool2d(h, 2)
        return self.fc(torch.flatten(h, 1))


def digits():
    d = np.load(os.environ["MODECONN_DIGITS"])
    return (torch.from_numpy(d["x_train"]), torch.from_numpy(d["y_train"]),
            torch.from_numpy(d["x_test"]), torch.from_numpy(d["y_test"]))


def train(seed, x, y, epochs=30):
    torch.manual_seed(seed)
    model = OwnNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), 64):
            batch = order[i:i + 64]
            opt.zero_grad()
            F.cross_entropy(model(x[batch]), y[batch]).backward()
            opt.step()
    return model.eval()


def error(model, x, y):
    with torch.no_grad():
        return float((model(x).argmax(1) != y).float().mean())


def state(model):
    return {k: v.contiguous() for k, v in model.state_dict().items()}


def main():
    torch.set_num_threads(1)
    if sys.argv[1] == "train":
        out = sys.argv[2]
        xtr, ytr, xte, yte = digits()
        a, b = train(1, xtr, ytr), train(2, xtr, ytr)
        save_file(state(a), os.path.join(out, "a.safetensors"))
        save_file(state(b), os.path.join(out, "b.safetensors"))
        torch.onnx.export(a, (xte[:2],), os.path.join(out, "model.onnx"), dynamo=True,
                          optimize=False, external_data=False,
                          dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
        np.save(os.path.join(out, "x.npy"), xte.numpy())
        np.save(os.path.join(out, "y.npy"), yte.numpy())
        with open(os.path.join(out, "torch.json"), "w") as f:
            json.dump({"a": error(a, xte, yte), "b": error(b, xte, yte)}, f)
    elif sys.argv[1] == "run":
        model = OwnNet().eval()
        keys = model.load_state_dict(load_file(sys.argv[2]), strict=False)
        x = torch.from_numpy(np.load(sys.argv[3]))
        with torch.no_grad():
            p = torch.softmax(model(x), dim=1)
        np.save(sys.argv[4], p.numpy().astype(np.float32))
        print(json.dumps({"missing": keys.missing_keys, "unexpected": keys.unexpected_keys}))
    elif sys.argv[1] == "same":
        # Whether the trained tensors (not the running statistics) of two state_dicts are equal.
        a, b = load_file(sys.argv[2]), load_file(sys.argv[3])
        trained = [k for k in b if "running" not in k and "num_batches" not in k]
        diff = [k for k in trained if k not in a or not torch.equal(a[k], b[k])]
        print("same" if not diff else f"different: {diff}")
    else:
        sys.exit(f"unknown command {sys.argv[1]}")


if __name__ == "__main__":
    main()
