"""Safe saving and loading of :class:`~recourse.models.TorchClassifier` models.

Loading never unpickles anything: a model is a directory with

* ``model.json`` -- plain JSON: format and version, output kind, classes, ``n_features``, dtype,
  the layer spec (see :func:`module_to_spec`) and the SHA-256 of the tensor file;
* ``model.safetensors`` -- the weights (a JSON header plus raw little-endian buffers, read with
  ``safetensors.torch.load_file``, which cannot execute code).

Only ``nn.Sequential`` models (nested Sequentials are flattened) built from ``nn.Linear``,
:class:`~recourse.models.Affine`, ``nn.Conv2d``, ``nn.MaxPool2d``, ``nn.ReLU``, ``nn.Tanh``,
``nn.Sigmoid``, ``nn.Identity``, ``nn.LeakyReLU``, ``nn.ELU``, ``nn.Softmax`` and ``nn.Flatten``
can be saved; layer types are matched exactly, so a subclass with a custom ``forward`` is
refused.  The layer spec (:func:`module_to_spec`, :data:`LayerSpec`) is the one network format of
the project: the vision bundles (:mod:`recourse.vision.models`) store their CNNs in it too.

Why there is no ``torch.export`` fallback (checked against the torch 2.13 sources):
``torch.export.load`` documents "uses pickle under the hood ... Never load data from an untrusted
source", and indeed ``torch/export/pt2_archive/_package.py`` loads every weight or constant whose
archive entry says ``use_pickle`` with ``torch.load(..., weights_only=False)`` and "opaque" constants
with ``pickle.loads``, while ``torch/_export/serde/serialize.py::deserialize_torch_artifact`` retries
a failed ``weights_only=True`` load with ``weights_only=False``.  Those paths are chosen by the
*file's* contents, not by how we saved it, so a crafted ``.pt2`` runs arbitrary code on load
(verified: flipping ``use_pickle`` to true in ``weights_config.json`` and storing a pickle with a
malicious ``__reduce__`` as the weight executes it inside ``torch.export.load``).
:func:`save_classifier` therefore raises ``TypeError`` for other modules (asking to express the
model as a supported ``nn.Sequential``) and :func:`load_classifier` refuses ``"torch.export"``
directories.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, TypeVar, Union

import torch
from pydantic import (BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, TypeAdapter,
                      ValidationError)
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from recourse.errors import BundleError
from recourse.models import Affine, TorchClassifier
from recourse.schema import read_json_file

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MODEL_JSON",
    "MODEL_TENSORS",
    "LayerSpec",
    "module_to_spec",
    "module_from_spec",
    "parse_layers",
    "save_classifier",
    "load_classifier",
    "file_sha256",
]

FORMAT = "recourse.sequential"
FORMAT_VERSION = 1
MODEL_JSON = "model.json"
MODEL_TENSORS = "model.safetensors"
_M = TypeVar("_M", bound=BaseModel)

_DTYPES: dict[str, torch.dtype] = {
    "float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64,
}


# ---------------------------------------------------------------------- the layer spec
# One vocabulary for every saved network (tabular classifiers, vision CNNs): a layer is a JSON
# object {"type": <torch class name>, <hyper-parameters under torch's own names>}; its tensors are
# stored under "<i>.<name>" (i = the layer's index in the flattened Sequential).
_PosInt = Annotated[StrictInt, Field(ge=1)]
_NonNegInt = Annotated[StrictInt, Field(ge=0)]
_Number = Annotated[Union[StrictInt, StrictFloat], Field(allow_inf_nan=False)]
_Pair = tuple[_PosInt, _PosInt]


class _Layer(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def build(self, dtype: torch.dtype, device: torch.device | None) -> nn.Module:
        raise NotImplementedError

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Expected shape of each tensor of the layer (by name)."""
        return {}


class LinearSpec(_Layer):
    type: Literal["Linear"]
    in_features: _PosInt
    out_features: _PosInt
    bias: StrictBool = True

    def build(self, dtype, device):
        return nn.Linear(self.in_features, self.out_features, bias=self.bias, dtype=dtype, device=device)

    def shapes(self):
        out = {"weight": (self.out_features, self.in_features)}
        return {**out, "bias": (self.out_features,)} if self.bias else out


class AffineSpec(_Layer):
    type: Literal["Affine"]
    n_features: _PosInt

    def build(self, dtype, device):
        return Affine(torch.ones(self.n_features, dtype=dtype, device=device),
                      torch.zeros(self.n_features, dtype=dtype, device=device))

    def shapes(self):
        return {"scale": (self.n_features,), "shift": (self.n_features,)}


class Conv2dSpec(_Layer):
    type: Literal["Conv2d"]
    in_channels: _PosInt
    out_channels: _PosInt
    kernel_size: _Pair
    stride: _Pair = (1, 1)
    padding: tuple[_NonNegInt, _NonNegInt] = (0, 0)
    bias: StrictBool = True

    def build(self, dtype, device):
        return nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size, self.stride, self.padding,
                         bias=self.bias, dtype=dtype, device=device)

    def shapes(self):
        out = {"weight": (self.out_channels, self.in_channels, *self.kernel_size)}
        return {**out, "bias": (self.out_channels,)} if self.bias else out


class MaxPool2dSpec(_Layer):
    type: Literal["MaxPool2d"]
    kernel_size: _Pair
    stride: _Pair
    padding: tuple[_NonNegInt, _NonNegInt] = (0, 0)

    def build(self, dtype, device):
        return nn.MaxPool2d(self.kernel_size, self.stride, self.padding)


class _Plain(_Layer):
    def build(self, dtype, device):
        return _PLAIN[self.type]()


class ReLUSpec(_Plain):
    type: Literal["ReLU"]


class TanhSpec(_Plain):
    type: Literal["Tanh"]


class SigmoidSpec(_Plain):
    type: Literal["Sigmoid"]


class IdentitySpec(_Plain):
    type: Literal["Identity"]


class LeakyReLUSpec(_Layer):
    type: Literal["LeakyReLU"]
    negative_slope: _Number = 0.01

    def build(self, dtype, device):
        return nn.LeakyReLU(float(self.negative_slope))


class ELUSpec(_Layer):
    type: Literal["ELU"]
    alpha: _Number = 1.0

    def build(self, dtype, device):
        return nn.ELU(float(self.alpha))


class SoftmaxSpec(_Layer):
    type: Literal["Softmax"]
    dim: Optional[StrictInt]

    def build(self, dtype, device):
        return nn.Softmax(dim=self.dim)


class FlattenSpec(_Layer):
    type: Literal["Flatten"]
    start_dim: StrictInt = 1
    end_dim: StrictInt = -1

    def build(self, dtype, device):
        return nn.Flatten(self.start_dim, self.end_dim)


_PLAIN: dict[str, type[nn.Module]] = {"ReLU": nn.ReLU, "Tanh": nn.Tanh, "Sigmoid": nn.Sigmoid, "Identity": nn.Identity}
LayerSpec = Annotated[Union[LinearSpec, AffineSpec, Conv2dSpec, MaxPool2dSpec, ReLUSpec, TanhSpec, SigmoidSpec,
                            IdentitySpec, LeakyReLUSpec, ELUSpec, SoftmaxSpec, FlattenSpec], Field(discriminator="type")]
"""One layer of a spec (pydantic, discriminated by ``type``): use it to validate layer lists."""
_LAYERS = TypeAdapter(list[LayerSpec])
_SUPPORTED = "Linear, Affine, Conv2d, MaxPool2d, ReLU, Tanh, Sigmoid, Identity, LeakyReLU, ELU, Softmax, Flatten"


def _pair(v: int | tuple[int, ...]) -> list[int]:
    return [int(v), int(v)] if isinstance(v, int) else [int(a) for a in v]


def _flatten(module: nn.Module) -> list[nn.Module]:
    if type(module) is nn.Sequential:
        return [leaf for child in module for leaf in _flatten(child)]
    return [module]


def _unsupported(m: nn.Module, why: str = "") -> TypeError:
    t = type(m)
    return TypeError(f"unsupported layer {t.__module__}.{t.__qualname__}{why}; supported: {_SUPPORTED}")


def _layer_spec(m: nn.Module) -> dict[str, Any]:
    t = type(m)
    if t is nn.Linear:
        return {"type": "Linear", "in_features": int(m.in_features), "out_features": int(m.out_features),
                "bias": m.bias is not None}
    if t is Affine:
        return {"type": "Affine", "n_features": m.n_features}
    if t is nn.Conv2d:
        if (isinstance(m.padding, str) or tuple(m.dilation) != (1, 1) or m.groups != 1
                or m.padding_mode != "zeros"):
            raise _unsupported(m, " (only integer padding, dilation 1, groups 1, zero padding mode)")
        return {"type": "Conv2d", "in_channels": int(m.in_channels), "out_channels": int(m.out_channels),
                "kernel_size": _pair(m.kernel_size), "stride": _pair(m.stride), "padding": _pair(m.padding),
                "bias": m.bias is not None}
    if t is nn.MaxPool2d:
        if _pair(m.dilation) != [1, 1] or m.ceil_mode or m.return_indices:
            raise _unsupported(m, " (only dilation 1, ceil_mode and return_indices off)")
        return {"type": "MaxPool2d", "kernel_size": _pair(m.kernel_size), "stride": _pair(m.stride),
                "padding": _pair(m.padding)}
    for name, cls in _PLAIN.items():
        if t is cls:
            return {"type": name}
    if t is nn.LeakyReLU:
        return {"type": "LeakyReLU", "negative_slope": float(m.negative_slope)}
    if t is nn.ELU:
        return {"type": "ELU", "alpha": float(m.alpha)}
    if t is nn.Softmax:
        return {"type": "Softmax", "dim": None if m.dim is None else int(m.dim)}
    if t is nn.Flatten:
        return {"type": "Flatten", "start_dim": int(m.start_dim), "end_dim": int(m.end_dim)}
    raise _unsupported(m)


def module_to_spec(module: nn.Module) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Describe an ``nn.Sequential`` of supported layers as ``(spec, tensors)``.

    ``spec = {"type": "Sequential", "layers": [{"type": ..., <hyper-parameters>}, ...]}`` is
    JSON-serialisable (layer types and keys are torch's names, see :data:`LayerSpec`);
    ``tensors`` maps ``"<i>.<name>"`` (i = index in the flattened layer list, the key of
    ``nn.Sequential(*layers).state_dict()``) to detached tensors.  A bare supported layer counts
    as a one-layer Sequential.  Unsupported layer (or option) -> ``TypeError`` naming it.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    layers = _flatten(module)
    specs = [_layer_spec(m) for m in layers]
    tensors: dict[str, Tensor] = {}
    for i, m in enumerate(layers):
        tensors.update({f"{i}.{name}": t.detach() for name, t in m.state_dict().items()})
    return {"type": "Sequential", "layers": specs}, tensors


def parse_layers(layers: Any) -> list[_Layer]:
    """The validated layers of a spec's ``layers`` list; ``ValueError`` naming each bad field
    (``layers.<i>.<key>: problem``) on one line."""
    try:
        return _LAYERS.validate_python(layers)
    except ValidationError as exc:
        problems = validation_problems(exc, ("layers",)).split("\n  - ")[1:]
        raise ValueError("invalid layer spec: " + "; ".join(problems)) from None


def module_from_spec(spec: dict[str, Any], tensors: dict[str, Tensor]) -> nn.Sequential:
    """Rebuild the ``nn.Sequential`` described by :func:`module_to_spec`, strictly validated.

    Checks layer types and hyper-parameters (:func:`parse_layers`), that consecutive
    ``Linear``/``Affine`` widths and ``Conv2d`` channels agree, and that ``tensors`` has exactly
    the expected keys with the expected shapes, finite values and one floating dtype.  The
    module is built in the tensors' dtype, on their device.  Problems -> ``ValueError``.
    """
    if not isinstance(spec, dict) or spec.get("type") != "Sequential" or not isinstance(spec.get("layers"), list):
        raise ValueError("spec must be a dict {'type': 'Sequential', 'layers': [...]}")
    if not spec["layers"]:
        raise ValueError("spec has no layers")
    if not isinstance(tensors, dict) or not all(isinstance(k, str) and isinstance(v, Tensor)
                                                for k, v in tensors.items()):
        raise ValueError("tensors must be a dict of str -> torch.Tensor")
    dtypes = {t.dtype for t in tensors.values()}
    if len(dtypes) > 1:
        raise ValueError(f"tensors have mixed dtypes {sorted(map(str, dtypes))}")
    dtype = dtypes.pop() if dtypes else torch.get_default_dtype()
    if not dtype.is_floating_point:
        raise ValueError(f"tensors must be floating point, got {dtype}")
    device = next(iter(tensors.values())).device if tensors else None

    specs = parse_layers(spec["layers"])
    shapes: dict[str, tuple[int, ...]] = {}
    width: int | None = None  # features out of the last Linear/Affine (None: unknown)
    channels: int | None = None  # channels out of the last Conv2d
    for i, layer in enumerate(specs):
        if isinstance(layer, LinearSpec):
            if width is not None and width != layer.in_features:
                raise ValueError(f"layer {i} (Linear): in_features={layer.in_features} but the previous layer "
                                 f"outputs {width}")
            width, channels = layer.out_features, None
        elif isinstance(layer, AffineSpec):
            if width is not None and width != layer.n_features:
                raise ValueError(f"layer {i} (Affine): n_features={layer.n_features} but the previous layer "
                                 f"outputs {width}")
            width = layer.n_features
        elif isinstance(layer, Conv2dSpec):
            if channels is not None and channels != layer.in_channels:
                raise ValueError(f"layer {i} (Conv2d): in_channels={layer.in_channels} but the previous "
                                 f"convolution outputs {channels}")
            width, channels = None, layer.out_channels
        elif isinstance(layer, MaxPool2dSpec):
            width = None
        shapes.update({f"{i}.{name}": shape for name, shape in layer.shapes().items()})

    missing, extra = sorted(set(shapes) - set(tensors)), sorted(set(tensors) - set(shapes))
    if missing or extra:
        raise ValueError(f"tensors do not match the spec: missing {missing}, unexpected {extra}")
    for key, shape in shapes.items():
        if tuple(tensors[key].shape) != shape:
            raise ValueError(f"tensor {key!r} has shape {tuple(tensors[key].shape)}, expected {shape}")
        if not bool(torch.isfinite(tensors[key]).all()):
            raise ValueError(f"tensor {key!r} contains non-finite values")
    module = nn.Sequential(*(layer.build(dtype, device) for layer in specs))
    module.load_state_dict(tensors, strict=True)
    return module


# ---------------------------------------------------------------------- files
def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_bundle_json(file: Path, fmt: str) -> dict[str, Any]:
    """The JSON object in a bundle's description file, checked to carry ``"format": fmt``.

    Raises :class:`~recourse.errors.BundleError` naming the file for unreadable JSON, a
    non-object document or another format."""
    doc = read_json_file(file, BundleError)
    if not isinstance(doc, dict):
        raise BundleError(f"{file}: expected a JSON object, got {type(doc).__name__}")
    if doc.get("format") != fmt:
        raise BundleError(f"{file}: unsupported bundle format {doc.get('format')!r} (expected {fmt!r})")
    return doc


def validation_problems(exc: ValidationError, prefix: tuple[str, ...] = ()) -> str:
    """A pydantic error as one ``\\n  - key.path: problem`` line per bad field."""
    lines = []
    for e in exc.errors():
        loc = ".".join(str(p) for p in (*prefix, *e["loc"]))
        lines.append(f"\n  - {loc + ': ' if loc else ''}{e['msg'].removeprefix('Value error, ')}")
    return "".join(lines)


def check_bundle_json(model: type[_M], doc: dict[str, Any], file: Path) -> _M:
    """``doc`` (read from ``file``) validated by the pydantic ``model``; else a
    :class:`~recourse.errors.BundleError` naming the file and every bad field."""
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        raise BundleError(f"{file}: invalid fields{validation_problems(exc)}") from None


def _dtype_name(dtype: torch.dtype) -> str:
    for name, dt in _DTYPES.items():
        if dt == dtype:
            return name
    raise TypeError(f"cannot save dtype {dtype}; supported: {sorted(_DTYPES)}")


def _atomic_write(path: Path, write: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def save_classifier(clf: TorchClassifier, directory: str | os.PathLike[str], stem: str = "model") -> list[Path]:
    """Write ``model.json`` and ``model.safetensors`` into ``directory`` (created if needed);
    ``stem``: another file name stem (``family-1`` → ``family-1.json``, ``family-1.safetensors``).

    Returns the written paths ``[model.json, model.safetensors]``.  Tensors are stored contiguous,
    on CPU, in the classifier's dtype.  A module that is not an ``nn.Sequential`` of supported
    layers raises ``TypeError`` (see the module docstring for why ``torch.export`` is not used).
    """
    if not isinstance(clf, TorchClassifier):
        raise TypeError(f"clf must be a TorchClassifier, got {type(clf).__name__}")
    try:
        spec, tensors = module_to_spec(clf.module)
    except TypeError as e:
        raise TypeError(
            f"cannot save a {type(clf.module).__name__}: {e}. Only nn.Sequential models of supported "
            "layers are saved (weights in safetensors, architecture in JSON); torch.export is not used "
            "because torch.export.load unpickles data from the file. Express the model as an "
            "nn.Sequential of these layers."
        ) from e
    dtype_name = _dtype_name(clf.dtype)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    st_path, json_path = directory / f"{stem}.safetensors", directory / f"{stem}.json"
    cpu = {k: v.cpu().clone().contiguous() for k, v in tensors.items()}  # clone: no shared storage
    _atomic_write(st_path, lambda p: save_file(cpu, str(p), metadata={"format": FORMAT}))
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "output": clf.output,
        "classes": list(clf.classes),
        "n_features": clf.n_features,
        "n_classes": clf.n_classes,
        "dtype": dtype_name,
        "spec": spec,
        "tensors_file": st_path.name,
        "tensors_sha256": file_sha256(st_path),
    }
    text = json.dumps(meta, indent=2, allow_nan=False)
    _atomic_write(json_path, lambda p: p.write_text(text + "\n", encoding="utf-8"))
    return [json_path, st_path]


def _read_meta(json_path: Path) -> dict[str, Any]:
    if not json_path.is_file():
        raise ValueError(f"{json_path}: file is missing")
    try:
        meta = json.loads(json_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{json_path}: not valid JSON ({e})") from e
    if not isinstance(meta, dict):
        raise ValueError(f"{json_path}: top level must be a JSON object")
    fmt = meta.get("format")
    if fmt == "torch.export":
        raise ValueError(f"{json_path}: refusing to load a torch.export archive (torch.export.load unpickles "
                         "data from the file); re-save the model as an nn.Sequential")
    if fmt != FORMAT:
        raise ValueError(f"{json_path}: format must be {FORMAT!r}, got {fmt!r}")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{json_path}: unsupported format_version {meta.get('format_version')!r} "
                         f"(this version reads {FORMAT_VERSION})")
    for key in ("output", "classes", "n_features", "dtype", "spec", "tensors_sha256"):
        if key not in meta:
            raise ValueError(f"{json_path}: missing key {key!r}")
    if meta["dtype"] not in _DTYPES:
        raise ValueError(f"{json_path}: dtype must be one of {sorted(_DTYPES)}, got {meta['dtype']!r}")
    if not isinstance(meta["classes"], list):
        raise ValueError(f"{json_path}: classes must be a list")
    if not isinstance(meta["tensors_sha256"], str):
        raise ValueError(f"{json_path}: tensors_sha256 must be a string")
    return meta


def load_classifier(directory: str | os.PathLike[str], device: torch.device | str | None = None,
                    stem: str = "model") -> TorchClassifier:
    """Load a classifier written by :func:`save_classifier` (with the same ``stem``), without unpickling anything.

    Verifies the SHA-256 of ``model.safetensors`` against ``model.json`` and validates the spec
    (:func:`module_from_spec`).  Missing or malformed files -> ``ValueError`` naming the file.
    ``device``: where to put the model (default: where safetensors loads it, i.e. CPU).
    """
    directory = Path(directory)
    json_path, st_path = directory / f"{stem}.json", directory / f"{stem}.safetensors"
    meta = _read_meta(json_path)
    if not st_path.is_file():
        raise ValueError(f"{st_path}: file is missing")
    digest = file_sha256(st_path)
    if digest != meta["tensors_sha256"]:
        raise ValueError(f"{st_path}: SHA-256 {digest} does not match {json_path.name} "
                         f"({meta['tensors_sha256']}); the file was modified or corrupted")
    try:
        tensors = load_file(str(st_path))
    except Exception as e:  # safetensors raises its own error types
        raise ValueError(f"{st_path}: cannot read safetensors ({e})") from e
    dtype = _DTYPES[meta["dtype"]]
    bad = sorted(k for k, t in tensors.items() if t.dtype != dtype)
    if bad:
        raise ValueError(f"{st_path}: tensors {bad} are not {meta['dtype']} as declared in {json_path.name}")
    try:
        module = module_from_spec(meta["spec"], tensors)
        module.to(device=device, dtype=dtype)
        return TorchClassifier(module, output=meta["output"], classes=meta["classes"], n_features=meta["n_features"])
    except (ValueError, TypeError) as e:
        raise ValueError(f"{json_path}: invalid model description ({e})") from e
