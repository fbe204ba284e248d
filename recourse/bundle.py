"""Model bundles: everything needed to answer recourse questions, saved without pickle.

A bundle is a directory::

    metadata.json            format, data set, classes, training figures, SHA-256 of every file,
                             and the bundle hash (SHA-256 over the sorted file hashes)
    schema.json              the completed feature schema (ranges and cost scales filled from data)
    model.json               layer spec of the classifier (plain JSON)
    model.safetensors        its weights
    density-<name>.json      hyper-parameters (given and chosen from data) of each density
    density-<name>.safetensors   its fitted state
    data.safetensors         scaled training rows and their class indices (for LOF and k-NN)
    verifier.json            (tree-ensemble bundles) the real model as arrays; model.* is then its
    verifier.safetensors     distilled differentiable surrogate, used only to steer the solver

Loading reads JSON and safetensors only (no code runs), and checks every file's hash.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from .data import Dataset, load_dataset
from .density import ClassConditionalDensity, fit_class_conditional
from .encoding import TabularEncoder, complete_schema
from .errors import BundleError
from .model_io import file_sha256, load_classifier, read_bundle_json, save_classifier
from .models import TorchClassifier, from_sklearn, train_logistic, train_mlp
from .schema import FeatureSchema
from .surrogate import distill
from .trees import TREE_MODELS, TreeEnsemble, is_tree_model, train_tree_model, tree_classifier
from .scfe import RecourseEngine, SCFEConfig

FORMAT = "recourse-bundle/1"
DENSITIES = ("kde", "gmm", "knn")
EXTERNAL = "external"
DEFAULT_MAX_CHANGES = {"german_credit": 3, "wine": 2}


def recourse_home() -> Path:
    """Where built demo bundles live: ``$RECOURSE_HOME`` or ``~/.cache/recourse``."""
    return Path(os.environ.get("RECOURSE_HOME", Path.home() / ".cache" / "recourse"))


@dataclass
class Bundle:
    """A loaded bundle: schema, classifier, densities, training data and metadata."""

    path: Path | None
    schema: FeatureSchema
    classifier: TorchClassifier
    densities: dict[str, ClassConditionalDensity]
    train_encoded: np.ndarray
    train_labels: np.ndarray
    metadata: dict[str, Any]
    verifier: TorchClassifier | None = None
    """The real model when ``classifier`` is a differentiable surrogate of it (tree ensembles)."""

    @property
    def hash(self) -> str:
        return self.metadata.get("hash", "")

    def engine(self, config: SCFEConfig | None = None, device: str | torch.device | None = None) -> RecourseEngine:
        """A :class:`RecourseEngine` with the bundle's defaults (m, density) unless ``config`` says otherwise."""
        if self.verifier is None and self.metadata.get("verifier", {}).get("format") == EXTERNAL:
            raise BundleError(f"{self.path}: this bundle's model is supplied at load time (a black box): "
                              "use recourse.blackbox.with_black_box(bundle, predict_proba) before asking for recourse")
        defaults = self.metadata.get("defaults", {})
        config = config or SCFEConfig(max_changes=defaults.get("max_changes", 3), density=defaults.get("density", "kde"))
        return RecourseEngine(self.schema, self.classifier, self.densities, self.train_encoded, self.train_labels,
                              config=config, device=device, verifier=self.verifier)


# ---------------------------------------------------------------------- building
def to_classifier(model: Any, n_features: int) -> TorchClassifier:
    """Accept a TorchClassifier, a torch module returning logits, or a fitted scikit-learn model."""
    if isinstance(model, TorchClassifier):
        return model
    if isinstance(model, torch.nn.Module):
        return TorchClassifier(model, output="logits", n_features=n_features)
    if hasattr(model, "predict_proba"):
        return from_sklearn(model)
    raise TypeError(f"unsupported model {type(model).__name__}: give a torch nn.Module or a scikit-learn "
                    "LogisticRegression / MLPClassifier (optionally after a scaler in a Pipeline)")


def build_bundle(
    schema: FeatureSchema,
    train: pd.DataFrame,
    labels: np.ndarray,
    out: str | Path,
    *,
    model: str | Any = "mlp",
    densities: Sequence[str] = DENSITIES,
    test: tuple[pd.DataFrame, np.ndarray] | None = None,
    max_changes: int = 3,
    default_density: str = "kde",
    seed: int = 0,
    dataset: str | None = None,
    external_model: str | None = None,
) -> Bundle:
    """Fit (or wrap) a model and the densities on ``train`` and save a bundle to ``out``.

    ``model``: "mlp" (d→20→20→1 ReLU network), "logistic", or an already-trained model
    (see :func:`to_classifier`) which must take the schema's scaled encoding as input.
    """
    if schema.target is None:
        raise BundleError("the schema needs a target (name, classes, favourable) to build a bundle")
    schema = complete_schema(schema, train)
    encoder = TabularEncoder(schema)
    x = encoder.encode(train)
    classes = list(schema.target.classes)
    index = {str(c): i for i, c in enumerate(classes)}
    unknown = sorted({str(v) for v in labels} - set(index))
    if unknown:
        raise BundleError(f"target values {unknown} are not among the schema's classes {classes}")
    y_idx = np.array([index[str(v)] for v in labels])
    y_values = np.array([classes[i] for i in y_idx])
    started = time.perf_counter()
    verifier, surrogate_info = None, None
    if model == "mlp":
        clf = train_mlp(x, y_values, seed=seed)
    elif model == "logistic":
        clf = train_logistic(x, y_values, seed=seed)
    elif model in TREE_MODELS or is_tree_model(model):
        estimator = train_tree_model(model, x, y_values, seed=seed) if isinstance(model, str) else model
        verifier = tree_classifier(estimator)
        clf, fidelity = distill(verifier, x, [fc.slice for fc in encoder.layout], _numeric_columns(encoder),
                                seed=seed, teacher=estimator.predict_proba)
        surrogate_info = {"kind": "distilled mlp", **asdict(fidelity)}
        model = model if isinstance(model, str) else type(model).__name__
    else:
        clf = to_classifier(model, encoder.n_columns)
    if [str(c) for c in clf.classes] != [str(c) for c in classes]:
        clf.classes = classes
    if verifier is not None and [str(c) for c in verifier.classes] != [str(c) for c in classes]:
        verifier.classes = classes
    fitted = {name: fit_class_conditional(name, x, y_idx, classes=range(len(classes))) for name in densities}
    seconds = time.perf_counter() - started
    metadata: dict[str, Any] = {
        "format": FORMAT,
        "dataset": dataset or schema.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "classes": classes,
        "columns": encoder.columns,
        "model": model if isinstance(model, str) else type(model).__name__,
        "densities": list(densities),
        "defaults": {"max_changes": max_changes, "density": default_density if default_density in densities else (list(densities) or [None])[0]},
        "training": {"rows": len(train), "seconds": round(seconds, 3), "seed": seed,
                     "accuracy": _accuracy(verifier or clf, x, y_idx)},
    }
    if verifier is not None:
        metadata["verifier"] = {"format": "recourse-trees/1", "output": verifier.output}
        metadata["surrogate"] = {k: round(v, 4) if isinstance(v, float) else v for k, v in surrogate_info.items()}
    elif external_model is not None:  # the real model is a black box given again at load time
        metadata["verifier"] = {"format": EXTERNAL, "about": external_model}
    if test is not None:
        metadata["training"]["test_rows"] = len(test[0])
        metadata["training"]["test_accuracy"] = _accuracy(verifier or clf, encoder.encode(test[0]), np.array([index[str(v)] for v in test[1]]))
    bundle = Bundle(None, schema, clf, fitted, x, y_idx, metadata, verifier)
    save_bundle(bundle, out)
    return bundle


def build_dataset_bundle(name: str, out: str | Path | None = None, model: str = "mlp", seed: int = 0) -> Bundle:
    """Bundle for a bundled data set ("german" or "wine"), trained on its seeded training split."""
    data: Dataset = load_dataset(name)
    train, y_train, test, y_test = data.split()
    out = Path(out) if out is not None else recourse_home() / "bundles" / (name if model == "mlp" else f"{name}-{model}")
    return build_bundle(data.schema, train, y_train, out, model=model, test=(test, y_test),
                        max_changes=DEFAULT_MAX_CHANGES.get(data.schema.name, 3), seed=seed, dataset=name)


def _numeric_columns(encoder: TabularEncoder) -> np.ndarray:
    """Mask of the encoded columns that hold numeric or ordinal values (not one-hot or binary)."""
    mask = np.zeros(encoder.n_columns, dtype=bool)
    for fc in encoder.layout:
        if fc.feature.kind in ("continuous", "integer", "ordinal"):
            mask[fc.slice] = True
    return mask


def _accuracy(clf: TorchClassifier, x: np.ndarray, y_idx: np.ndarray) -> float:
    with torch.no_grad():
        pred = clf.predict(torch.as_tensor(x, dtype=clf.dtype, device=clf.device)).cpu().numpy()
    return round(float((pred == y_idx).mean()), 4)


# ---------------------------------------------------------------------- saving / loading
def save_bundle(bundle: Bundle, out: str | Path) -> Path:
    """Write every file, then metadata.json with the file hashes and the bundle hash."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    bundle.schema.save(out / "schema.json")
    save_classifier(bundle.classifier, out)
    if bundle.verifier is not None:
        bundle.verifier.module.save(out, "verifier")
    for name, density in bundle.densities.items():
        (out / f"density-{name}.json").write_text(json.dumps(density.config(), indent=2) + "\n")
        save_file({k: v.detach().cpu().contiguous() for k, v in density.tensors().items()}, str(out / f"density-{name}.safetensors"))
    save_file({"x": torch.as_tensor(bundle.train_encoded, dtype=torch.float32).contiguous(),
               "y": torch.as_tensor(bundle.train_labels, dtype=torch.long).contiguous()}, str(out / "data.safetensors"))
    files = sorted(p.name for p in out.iterdir() if p.is_file() and p.name != "metadata.json")
    hashes = {name: file_sha256(out / name) for name in files}
    metadata = dict(bundle.metadata, files=hashes, hash=_bundle_hash(hashes))
    (out / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    bundle.metadata, bundle.path = metadata, out
    return out


def _bundle_hash(hashes: dict[str, str]) -> str:
    digest = hashlib.sha256()
    for name in sorted(hashes):
        digest.update(f"{name}:{hashes[name]}\n".encode())
    return digest.hexdigest()


def load_bundle(path: str | Path, device: str | torch.device | None = None) -> Bundle:
    """Load and verify a bundle (no unpickling; every file's SHA-256 is checked)."""
    path = Path(path)
    meta_file = path / "metadata.json"
    if not meta_file.is_file():
        raise BundleError(f"{path}: not a bundle (no metadata.json); build one with `recourse train`")
    metadata = read_bundle_json(meta_file, FORMAT)
    for name, expected in metadata.get("files", {}).items():
        file = path / name
        if not file.is_file():
            raise BundleError(f"{path}: missing file {name}")
        if file_sha256(file) != expected:
            raise BundleError(f"{path}: {name} does not match its recorded hash (modified or corrupt)")
    schema = FeatureSchema.load(path / "schema.json")
    try:
        classifier = load_classifier(path, device=device)
    except ValueError as exc:
        raise BundleError(f"{path}: {exc}") from None
    densities = {}
    for name in metadata.get("densities", []):
        config = json.loads((path / f"density-{name}.json").read_text())
        densities[name] = ClassConditionalDensity.from_state(config, load_file(str(path / f"density-{name}.safetensors")))
    data = load_file(str(path / "data.safetensors"))
    verifier = None
    if metadata.get("verifier") and metadata["verifier"].get("format") != EXTERNAL:
        try:
            trees = TreeEnsemble.load(path, "verifier")
        except (ValueError, KeyError, OSError) as exc:
            raise BundleError(f"{path}: verifier model: {exc}") from None
        verifier = TorchClassifier(trees, output=trees.output, classes=metadata["classes"], n_features=trees.n_features)
        if device is not None:
            verifier = verifier.to(device)
    return Bundle(path, schema, classifier, densities, data["x"].double().numpy(), data["y"].numpy(), metadata, verifier)


def demo_bundle(name: str = "german", device: str | torch.device | None = None) -> Bundle:
    """The demo bundle for a bundled data set, built on first use under :func:`recourse_home`."""
    path = recourse_home() / "bundles" / name
    if (path / "metadata.json").is_file():
        try:
            return load_bundle(path, device=device)
        except BundleError:
            pass
    build_dataset_bundle(name, path)
    return load_bundle(path, device=device)
