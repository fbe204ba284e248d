"""Small CNNs for NCHW images, trained in seconds, saved as JSON + safetensors bundles.

A vision bundle is a directory with ``model.json`` (format, layer spec, input shape, value range,
classes, data set, split seed, accuracies, SHA-256 of the weights) and ``model.safetensors``.
Loading reads JSON and safetensors only (no pickle) and refuses weights whose hash differs.
Supported layers: Conv2d, Linear, ReLU, MaxPool2d, Flatten (types matched exactly).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from recourse.errors import BundleError
from recourse.model_io import file_sha256, read_bundle_json

FORMAT = "recourse.vision.cnn"
FORMAT_VERSION = 1


def small_cnn(shape: tuple[int, int, int], n_classes: int = 10) -> nn.Sequential:
    """A two-conv CNN sized for the input: 8×8 digits or 28×28 MNIST (any H, W ≥ 4)."""
    c, h, w = shape
    if h >= 16:
        return nn.Sequential(
            nn.Conv2d(c, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * (h // 4) * (w // 4), 64), nn.ReLU(), nn.Linear(64, n_classes),
        )
    return nn.Sequential(
        nn.Conv2d(c, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * (h // 2) * (w // 2), n_classes),
    )


def train_classifier(model: nn.Module, x: np.ndarray, y: np.ndarray, *, epochs: int = 8, batch_size: int = 64,
                     lr: float = 2e-3, seed: int = 0, device: str | torch.device | None = None) -> nn.Module:
    """Adam on cross-entropy, shuffled mini-batches; returns the model in eval mode."""
    torch.manual_seed(seed)
    device = torch.device(device or "cpu")
    model.to(device).train()
    xt = torch.as_tensor(x, device=device)
    yt = torch.as_tensor(y, device=device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=gen).to(device)
        for i in range(0, len(xt), batch_size):
            idx = perm[i:i + batch_size]
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
    return model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray, device: str | torch.device | None = None) -> float:
    dev = next(model.parameters()).device if device is None else torch.device(device)
    pred = model(torch.as_tensor(x, device=dev)).argmax(1).cpu().numpy()
    return float((pred == y).mean())


# ---------------------------------------------------------------------------------- spec
def module_to_spec(model: nn.Sequential) -> tuple[list[dict[str, Any]], dict[str, torch.Tensor]]:
    """Layer list (JSON-able) and named tensors of a supported ``nn.Sequential``."""
    layers: list[dict[str, Any]] = []
    tensors: dict[str, torch.Tensor] = {}
    for i, m in enumerate(model):
        t = type(m)
        if t is nn.Conv2d:
            layers.append({"type": "Conv2d", "in": m.in_channels, "out": m.out_channels, "kernel": list(m.kernel_size),
                           "stride": list(m.stride), "padding": list(m.padding)})
            tensors[f"{i}.weight"], tensors[f"{i}.bias"] = m.weight, m.bias
        elif t is nn.Linear:
            layers.append({"type": "Linear", "in": m.in_features, "out": m.out_features})
            tensors[f"{i}.weight"], tensors[f"{i}.bias"] = m.weight, m.bias
        elif t is nn.ReLU:
            layers.append({"type": "ReLU"})
        elif t is nn.MaxPool2d:
            layers.append({"type": "MaxPool2d", "kernel": m.kernel_size})
        elif t is nn.Flatten:
            layers.append({"type": "Flatten"})
        else:
            raise TypeError(f"layer {i} ({t.__name__}) is not supported; use Conv2d, Linear, ReLU, MaxPool2d, Flatten")
    return layers, {k: v.detach().cpu().contiguous() for k, v in tensors.items()}


def module_from_spec(layers: list[dict[str, Any]]) -> nn.Sequential:
    mods: list[nn.Module] = []
    for spec in layers:
        kind = spec.get("type")
        if kind == "Conv2d":
            mods.append(nn.Conv2d(spec["in"], spec["out"], tuple(spec["kernel"]), tuple(spec["stride"]), tuple(spec["padding"])))
        elif kind == "Linear":
            mods.append(nn.Linear(spec["in"], spec["out"]))
        elif kind == "ReLU":
            mods.append(nn.ReLU())
        elif kind == "MaxPool2d":
            mods.append(nn.MaxPool2d(spec["kernel"]))
        elif kind == "Flatten":
            mods.append(nn.Flatten())
        else:
            raise BundleError(f"unknown layer type {kind!r} in the model spec")
    return nn.Sequential(*mods)


@dataclass
class VisionBundle:
    """A loaded CNN with its metadata (input shape, value range, classes, data set, split seed)."""

    path: Path
    model: nn.Sequential
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def dataset(self) -> str:
        return self.meta["dataset"]

    @property
    def value_range(self) -> tuple[float, float]:
        lo, hi = self.meta["value_range"]
        return float(lo), float(hi)

    def adapter(self, device: str | torch.device | None = None):
        from .adapter import ImageAdapter

        dev = torch.device(device) if device is not None else next(self.model.parameters()).device
        return ImageAdapter(self.model, *self.value_range, device=device, channels_last=dev.type == "cpu")

    def split(self):
        from .data import load_split

        return load_split(self.dataset, seed=self.meta.get("seed", 0))


def save_bundle(model: nn.Sequential, out: str | Path, meta: dict[str, Any]) -> VisionBundle:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    layers, tensors = module_to_spec(model)
    save_file(tensors, str(out / "model.safetensors"))
    meta = {"format": FORMAT, "version": FORMAT_VERSION, **meta, "layers": layers,
            "sha256": file_sha256(out / "model.safetensors")}
    (out / "model.json").write_text(json.dumps(meta, indent=2))
    return VisionBundle(out, model.eval(), meta)


def load_bundle(path: str | Path, device: str | torch.device | None = None) -> VisionBundle:
    """Load a vision bundle (JSON + safetensors, hash-checked)."""
    path = Path(path)
    spec_file, weights = path / "model.json", path / "model.safetensors"
    if not spec_file.is_file() or not weights.is_file():
        raise BundleError(f"{path}: not a vision bundle (needs model.json and model.safetensors)")
    meta = read_bundle_json(spec_file, FORMAT)
    if file_sha256(weights) != meta.get("sha256"):
        raise BundleError(f"{weights}: SHA-256 does not match model.json; refusing to load")
    model = module_from_spec(meta["layers"])
    state = load_file(str(weights))
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise BundleError(f"{weights}: weights do not fit the layer spec ({exc})") from None
    model.to(torch.device(device or "cpu")).eval()
    return VisionBundle(path, model, meta)


def build_vision_bundle(dataset: str, out: str | Path, *, epochs: int | None = None, seed: int = 0,
                        device: str | torch.device | None = None) -> VisionBundle:
    """Train the small CNN on a data set's training split and save it as a bundle."""
    from .data import load_split

    split = load_split(dataset, seed=seed)
    t0 = time.perf_counter()
    model = small_cnn(split.shape, 10)
    epochs = epochs if epochs is not None else (25 if dataset == "digits" else 6)
    train_classifier(model, split.x_train, split.y_train, epochs=epochs, seed=seed, device=device)
    seconds = time.perf_counter() - t0
    meta = {"dataset": dataset, "seed": seed, "input_shape": list(split.shape), "value_range": [0.0, 1.0],
            "classes": list(range(10)), "epochs": epochs, "seconds": round(seconds, 2),
            "train_accuracy": round(accuracy(model, split.x_train, split.y_train), 4),
            "test_accuracy": round(accuracy(model, split.x_test, split.y_test), 4),
            "n_train": int(len(split.y_train)), "n_test": int(len(split.y_test))}
    return save_bundle(model.cpu(), out, meta)


def default_bundle_dir(dataset: str) -> Path:
    """``$RECOURSE_HOME/vision/<dataset>`` (default ``~/.cache/recourse``)."""
    home = Path(os.environ.get("RECOURSE_HOME", Path.home() / ".cache" / "recourse"))
    return home / "vision" / dataset


def demo_vision_bundle(dataset: str, device: str | torch.device | None = None) -> VisionBundle:
    """The data set's CNN bundle, trained and saved on first use (seconds)."""
    path = default_bundle_dir(dataset)
    if not (path / "model.json").is_file():
        build_vision_bundle(dataset, path)
    return load_bundle(path, device=device)
