"""Small CNNs for NCHW images, trained in seconds, saved as JSON + safetensors bundles.

A vision bundle is a directory with ``model.json`` (format, layer spec, input shape, value range,
classes, data set, split seed, accuracies, SHA-256 of the weights) and ``model.safetensors``.
Loading reads JSON and safetensors only (no pickle), refuses weights whose hash differs, checks
``model.json``'s keys (:class:`VisionMeta`) and runs one dry forward pass at ``input_shape``;
every problem is a :class:`~recourse.errors.BundleError` naming the file and the key.
The layers are written in the project's one network format (:func:`recourse.model_io.module_to_spec`,
the tabular classifiers' format); bundles of version 1, with the older vision layer vocabulary,
still load (:func:`legacy_layers`).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, StrictInt, StrictStr, field_validator, model_validator
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from recourse.errors import BundleError
from recourse.model_io import (LayerSpec, check_bundle_json, file_sha256, module_from_spec, module_to_spec,
                               read_bundle_json)
from recourse.runtime import parse_device

from .data import DATASETS, SHAPES

FORMAT = "recourse.vision.cnn"
FORMAT_VERSION = 2
"""2: layers in the project's one network format (:func:`recourse.model_io.module_to_spec`); 1 is still read."""


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
# The layers are stored in the project's one network format (recourse.model_io.module_to_spec).
# Bundles of format version 1 used their own layer vocabulary; it is still read:
_LEGACY_KEYS = {"Conv2d": {"in": "in_channels", "out": "out_channels", "kernel": "kernel_size"},
                "Linear": {"in": "in_features", "out": "out_features"},
                "MaxPool2d": {"kernel": "kernel_size"}}


def legacy_layers(layers: Any) -> Any:
    """Version-1 vision layers (``{"type": "Conv2d", "in", "out", "kernel", ...}``) in the current
    spec's vocabulary; anything unrecognised is passed through for validation to name it."""
    if not isinstance(layers, list):
        return layers
    out = []
    for layer in layers:
        if isinstance(layer, dict) and layer.get("type") in _LEGACY_KEYS:
            names = _LEGACY_KEYS[layer["type"]]
            layer = {names.get(k, k): v for k, v in layer.items()}
            if layer["type"] == "MaxPool2d" and "kernel_size" in layer and "stride" not in layer:
                k = layer["kernel_size"]
                layer["stride"] = layer["kernel_size"] = [k, k] if isinstance(k, int) else k
        out.append(layer)
    return out


_Finite = Annotated[float, Field(allow_inf_nan=False)]


class VisionMeta(BaseModel):
    """The fields of ``model.json`` that loading and the commands rely on (others pass through)."""

    model_config = ConfigDict(extra="allow")

    layers: list[LayerSpec] = Field(min_length=1)
    input_shape: tuple[PositiveInt, PositiveInt, PositiveInt]
    value_range: tuple[_Finite, _Finite]
    dataset: Literal[DATASETS]  # type: ignore[valid-type]
    seed: StrictInt = 0
    classes: list[StrictInt] = Field(default_factory=lambda: list(range(10)), min_length=2)
    sha256: StrictStr

    @model_validator(mode="before")
    @classmethod
    def _version_1_layers(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("version") == 1 and "layers" in data:
            return {**data, "layers": legacy_layers(data["layers"])}
        return data

    @field_validator("value_range")
    @classmethod
    def _box(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not v[0] < v[1]:
            raise ValueError(f"the pixel box needs lower < upper, got {list(v)}")
        return v

    @model_validator(mode="after")
    def _shape_of_the_data(self) -> "VisionMeta":
        if self.input_shape != SHAPES[self.dataset]:
            raise ValueError(f"input_shape: {list(self.input_shape)} is not the shape of the {self.dataset!r} "
                             f"images {list(SHAPES[self.dataset])}")
        return self


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

        dev = parse_device(device) if device is not None else next(self.model.parameters()).device
        return ImageAdapter(self.model, *self.value_range, device=dev, channels_last=dev.type == "cpu")

    def split(self):
        from .data import load_split

        return load_split(self.dataset, seed=self.meta.get("seed", 0))


def save_bundle(model: nn.Sequential, out: str | Path, meta: dict[str, Any]) -> VisionBundle:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    spec, tensors = module_to_spec(model)
    save_file({k: v.cpu().contiguous() for k, v in tensors.items()}, str(out / "model.safetensors"))
    meta = {"format": FORMAT, "version": FORMAT_VERSION, **meta, "layers": spec["layers"],
            "sha256": file_sha256(out / "model.safetensors")}
    (out / "model.json").write_text(json.dumps(meta, indent=2))
    return VisionBundle(out, model.eval(), meta)


def load_bundle(path: str | Path, device: str | torch.device | None = None) -> VisionBundle:
    """Load a vision bundle (JSON + safetensors, hash-checked, checked by a dry forward pass).

    Anything wrong with the files raises :class:`BundleError` naming the file and the key; a bad
    ``device`` raises ``ValueError("device: ...")``.
    """
    path = Path(path)
    device = parse_device(device)
    spec_file, weights = path / "model.json", path / "model.safetensors"
    if not spec_file.is_file() or not weights.is_file():
        raise BundleError(f"{path}: not a vision bundle (needs model.json and model.safetensors)")
    meta = read_bundle_json(spec_file, FORMAT)
    spec = check_bundle_json(VisionMeta, meta, spec_file)
    if file_sha256(weights) != spec.sha256:
        raise BundleError(f"{weights}: SHA-256 does not match model.json; refusing to load")
    layers = {"type": "Sequential", "layers": [layer.model_dump() for layer in spec.layers]}
    try:
        model = module_from_spec(layers, load_file(str(weights)))
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise BundleError(f"{weights}: weights do not fit the layers of model.json ({exc})") from None
    model.to(device).eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(1, *spec.input_shape, device=device))
    except RuntimeError as exc:
        raise BundleError(f"{spec_file}: input_shape {list(spec.input_shape)} does not fit the layers ({exc})") from None
    if tuple(out.shape) != (1, len(spec.classes)):
        raise BundleError(f"{spec_file}: the layers output shape {tuple(out.shape[1:])} for one image, "
                          f"expected ({len(spec.classes)},) (one logit per class of 'classes')")
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
    """The data set's CNN bundle, trained and saved on first use (seconds) and again when damaged."""
    device = parse_device(device)  # a bad device is the caller's error, not a reason to rebuild
    path = default_bundle_dir(dataset)
    if (path / "model.json").is_file():
        try:
            vb = load_bundle(path, device=device)
            if vb.dataset == dataset:
                return vb
        except BundleError:
            pass  # damaged or from another version: train it again, as the tabular demo bundle does
    build_vision_bundle(dataset, path)
    return load_bundle(path, device=device)
