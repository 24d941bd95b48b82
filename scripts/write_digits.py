"""Writes scikit-learn's bundled 8x8 digits as an .npz with a fixed train/test split.

x_* are float32 in [0, 1] shaped [n, 1, 8, 8]; y_* are int64 class indices.
"""
import sys

import numpy as np
from sklearn.datasets import load_digits


def main(path: str) -> None:
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(y))
    x, y = x[order], y[order]
    n_test = 360
    np.savez(path, x_train=x[n_test:], y_train=y[n_test:], x_test=x[:n_test], y_test=y[:n_test])


if __name__ == "__main__":
    main(sys.argv[1])
