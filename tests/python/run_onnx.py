"""Runs an ONNX classifier with the Python onnxruntime (CPU) and writes its probabilities.

    run_onnx.py MODEL.onnx X.npy OUT.npy [--temperature T]

The model must have exactly one input left to feed; its first output is taken as the logits.
OUT.npy receives float32 softmax(logits / T), shape [batch, classes].
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

import common as C


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=Path)
    p.add_argument("x", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--temperature", type=float, default=1.0)
    args = p.parse_args(argv)

    x = np.load(args.x)
    if x.dtype != np.float32:
        raise SystemExit(f"{args.x}: dtype {x.dtype}, expected float32")
    logits = C.run_logits(args.model, x)
    if logits.ndim != 2:
        raise SystemExit(f"{args.model}: output has shape {logits.shape}, expected [batch, classes]")
    C.save_npy(args.out, C.softmax(logits, args.temperature), np.float32)
    return 0


if __name__ == "__main__":
    sys.exit(main())
