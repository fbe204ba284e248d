"""Model bundles: everything needed to answer recourse questions, saved without pickle.

A bundle is a directory::

    metadata.json            format, data set, classes, defaults, training figures, SHA-256 of
                             every file, and the bundle hash (SHA-256 over all of that: every
                             field but ``hash`` itself; see :data:`HASH_VERSION`)
    schema.json              the completed feature schema (ranges and cost scales filled from data)
    model.json               layer spec of the classifier (plain JSON)
    model.safetensors        its weights
    density-<name>.json      hyper-parameters (given and chosen from data) of each density
    density-<name>.safetensors   its fitted state
    data.safetensors         scaled training rows and their class indices (for LOF and k-NN)
    verifier.json            (tree-ensemble bundles) the real model as arrays; model.* is then its
    verifier.safetensors     distilled differentiable surrogate, used only to steer the solver
    family-<k>.json          (bundles built with a family) refit k of the model, the same recipe on a
    family-<k>.safetensors   bootstrap resample: the committee of robust requests

Loading reads JSON and safetensors only (no code runs).  Every file it reads must be listed in
``metadata.json`` with a matching SHA-256 (and the bundle hash must match those and the rest of
``metadata.json``), the metadata fields must have the right shape (:class:`BundleMetadata`) and
the parts must fit together (the schema's encoded width is the model's input width); anything
else is a :class:`BundleError` naming the bundle and the file or field.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Callable, Collection, Iterator, Literal, Sequence

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, StringConstraints, field_validator, model_validator
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from .config import DEFAULT_DENSITY
from .data import Dataset, dataset_schema, load_dataset
from .density import ClassConditionalDensity, available_densities, fit_class_conditional
from .encoding import TabularEncoder, complete_schema
from .errors import BundleError
from .model_io import MODEL_JSON, MODEL_TENSORS, check_bundle_json, file_sha256, load_classifier, read_bundle_json, save_classifier
from .models import TorchClassifier, from_sklearn, get_model_kind
from .pipelines import is_raw_pipeline, raw_pipeline_model, raw_pipeline_regressor
from .runtime import parse_device
from .schema import FeatureSchema
from .surrogate import distill
from .trees import FORMAT as TREES_FORMAT
from .trees import TreeEnsemble, is_tree_model, tree_classifier
from .scfe import RecourseEngine, SCFEConfig

FORMAT = "recourse-bundle/1"
EXTERNAL = "external"
DEFAULT_MAX_CHANGES = {"german_credit": 3, "wine": 2, "adult": 3}
DEFAULT_MIN_PROBABILITY: float | None = 0.6
"""The confidence a new bundle asks of every answer (``defaults.min_probability``): no answer sits
on the decision boundary.  Measured with ``recourse bench scfe`` and ``bench robustness`` (README):
0.6 costs +10 % (German) / +4 % (Wine) over the bare decision; higher levels cost more and, on
their own, barely protect against a retrained model."""
RECIPE_VERSION = 3
"""Version of the bundles' training recipes and defaults (2: the MLP's weight decay chosen on
validation rows; 3: the Gaussian mixture as the default density); demo bundles built by another
version are built again."""


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
    family: list[TorchClassifier] = field(default_factory=list)
    """Refits of the model (the same recipe on bootstrap resamples, new seeds): the committee of
    ``robust`` requests (:mod:`recourse.committee`)."""

    @property
    def hash(self) -> str:
        return self.metadata.get("hash", "")

    def engine(self, config: SCFEConfig | None = None, device: str | torch.device | None = None) -> RecourseEngine:
        """A :class:`RecourseEngine` with the bundle's defaults (m, density) unless ``config`` says otherwise."""
        if self.verifier is None and (self.metadata.get("verifier") or {}).get("format") == EXTERNAL:
            raise BundleError(f"{self.path}: this bundle's model is supplied at load time (a black box): "
                              "use recourse.blackbox.with_black_box(bundle, predict_proba) before asking for recourse")
        defaults = self.metadata.get("defaults", {})
        density = defaults["density"] if "density" in defaults else _default_density(DEFAULT_DENSITY, self.densities)
        config = config or SCFEConfig(max_changes=defaults.get("max_changes", 3), density=density,
                                      min_probability=defaults.get("min_probability"))
        return RecourseEngine(self.schema, self.classifier, self.densities, self.train_encoded, self.train_labels,
                              config=config, device=device, verifier=self.verifier, family=self.family,
                              score_scale=(self.metadata.get("score") or {}).get("scale"))


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
    densities: Sequence[str] | None = None,
    test: tuple[pd.DataFrame, np.ndarray] | None = None,
    max_changes: int = 3,
    default_density: str = DEFAULT_DENSITY,
    min_probability: float | None = DEFAULT_MIN_PROBABILITY,
    seed: int = 0,
    dataset: str | None = None,
    external_model: str | None = None,
    family: int = 0,
    progress: StageProgress | None = None,
    model_options: dict[str, Any] | None = None,
    force: bool = False,
) -> Bundle:
    """Fit (or wrap) a model and the densities on ``train`` and save a bundle to ``out``.

    ``model``: "mlp" (d→20→20→1 ReLU network), "logistic", or an already-trained model
    (see :func:`to_classifier`) which must take the schema's scaled encoding as input.
    ``family``: also fit this many refits of the model (the same recipe on bootstrap resamples of
    ``train``, seeds ``FAMILY_SEED + k``) for ``robust`` requests; a registered differentiable
    model kind only (the recipe of a model trained elsewhere is not known).
    ``model_options``: recipe options of a registered model kind (``{"hidden": [32, 16]}`` for
    ``mlp``, ``{"C": 0.5}`` for ``logistic``), used for the refits and the held-out refit too.
    ``force``: write the bundle even when its held-out (or test) accuracy is no better than always
    answering the most frequent class (refused otherwise: such a model has learned nothing to explain).
    ``progress``: called as ``progress(done, total, stage)`` before each stage (model, each density,
    each refit, the held-out refit, saving) and once at the end with ``done == total``.
    """
    if schema.target is None:
        raise BundleError("the schema needs a target (name, classes, favourable) to build a bundle")
    if densities is None:  # every registered density, the default one first
        densities = sorted(available_densities(), key=lambda name: (name != default_density, name))
    densities = list(densities)
    if schema.score_target is not None:
        if family:
            raise BundleError("family: refits for robust requests are built for classification targets only")
        return _build_score_bundle(schema, train, labels, out, model, densities, default_density, max_changes, seed,
                                   test, dataset, progress, model_options, force)
    schema = complete_schema(schema, train)
    encoder = TabularEncoder(schema)
    x = encoder.encode(train)
    classes = list(schema.target.classes)
    index = {str(c): i for i, c in enumerate(classes)}
    unknown = sorted({str(v) for v in labels} - set(index))
    if unknown:
        raise BundleError(f"target values {unknown} are not among the schema's classes {classes}")
    y_idx = np.array([index[str(v)] for v in labels])  # registered kinds train on these: column j is classes[j]
    started = time.perf_counter()
    verifier, surrogate_info = None, None
    kind = get_model_kind(model) if isinstance(model, str) else None  # the registry (recourse.models)
    if model_options:
        if kind is None:
            raise BundleError("model_options: recipe options apply to a registered model kind (mlp, logistic, ...), "
                              "not to a model trained elsewhere")
        try:
            kind = kind.configured(**model_options)
        except ValueError as exc:
            raise BundleError(str(exc)) from None
    holdout = test is None and kind is not None and len(x) >= 50
    refits = family if isinstance(family, int) and family > 0 else 0
    stage = _Stages(progress, 2 + len(densities) + refits + int(holdout))
    stage("fitting the model")
    if kind is not None and kind.differentiable:
        clf = kind.train(x, y_idx, seed)
        chosen = getattr(clf, "recipe", None)  # choices made on validation rows: refits reuse them
        if chosen:
            kind = kind.configured(**chosen)
    elif is_raw_pipeline(model):  # a scikit-learn Pipeline on raw records (recourse.pipelines)
        converted, trees = raw_pipeline_model(model, encoder, train)
        if trees:
            verifier = converted
            clf, surrogate_info = _surrogate(verifier, x, encoder, seed)
        else:
            clf = converted
        model = "raw pipeline: " + " → ".join(type(step).__name__ for _, step in model.steps)
    elif kind is not None or is_tree_model(model):
        estimator = kind.train(x, y_idx, seed) if kind is not None else model
        verifier = tree_classifier(estimator)
        clf, surrogate_info = _surrogate(verifier, x, encoder, seed,
                                         teacher=getattr(estimator, "predict_proba", None))  # a bare Booster has none
        model = model if isinstance(model, str) else type(model).__name__
    else:
        clf = to_classifier(model, encoder.n_columns)
    clf.classes = _schema_classes(clf.classes, classes, "the model")
    if verifier is not None:
        verifier.classes = _schema_classes(verifier.classes, classes, "the model")
    fitted = _fit_densities(densities, x, y_idx, len(classes), stage)
    members = _fit_family(kind, family, x, y_idx, classes, stage)
    seconds = time.perf_counter() - started
    metadata = _metadata(schema, dataset, classes, encoder, model if isinstance(model, str) else type(model).__name__,
                         densities, default_density, max_changes, min_probability,
                         {"rows": len(train), "seconds": round(seconds, 3), "seed": seed, "recipe_version": RECIPE_VERSION,
                          "accuracy": _accuracy(verifier or clf, x, y_idx)},
                         dict(kind.options) if kind is not None and kind.options else None, verifier, surrogate_info)
    if verifier is None and external_model is not None:  # the real model is a black box given again at load time
        metadata["verifier"] = {"format": EXTERNAL, "about": external_model}
    if members:
        metadata["family"] = {"size": len(members), "seed": FAMILY_SEED, "resample": "bootstrap",
                              "about": "refits of the model with the same recipe, for robust requests"}
    if holdout:
        stage("held-out accuracy (a refit on 80 % of the rows)")
        metadata["training"].update(_holdout(kind, x, y_idx, seed, verifier is not None))
    if test is not None:
        metadata["training"]["test_rows"] = len(test[0])
        scores = _scores(verifier or clf, encoder.encode(test[0]), np.array([index[str(v)] for v in test[1]]))
        metadata["training"].update({f"test_{k}": v for k, v in scores.items()})
    _check_better_than_majority(metadata["training"], force)
    return _save(Bundle(None, schema, clf, fitted, x, y_idx, metadata, verifier, members), out, stage)


def _build_score_bundle(schema: FeatureSchema, train: pd.DataFrame, labels: Sequence[Any], out: str | Path, model: Any,
                        densities: list[str], default_density: str, max_changes: int, seed: int,
                        test: tuple[pd.DataFrame, Sequence[Any]] | None, dataset: str | None,
                        progress: "StageProgress | None", model_options: dict[str, Any] | None, force: bool) -> Bundle:
    """:func:`build_bundle` for a score target (:mod:`recourse.scores`): fit (or convert) the score
    model, fold it into the binary decision reached / not reached at the schema's threshold, fit
    the densities on each side of the threshold, report R², MAE and the decision's accuracy."""
    from .scores import (REGRESSORS, ScoreReading, as_module, fold_regressor, predict_scores, reached, regression_scores,
                         train_regressor)

    target = schema.score_target
    schema = complete_schema(schema, train)
    encoder = TabularEncoder(schema)
    x = encoder.encode(train)
    scores = np.asarray(labels, dtype=np.float64)
    if not np.isfinite(scores).all():
        raise BundleError(f"the scores of '{target.name}' must be finite numbers")
    y_idx = reached(scores, target)
    classes = list(target.classes)
    sides = np.bincount(y_idx, minlength=2)
    if sides.min() < 5:
        raise BundleError(f"'{target.name}': {target.labels[target.favourable]} holds for {sides[1]} of {len(y_idx)} "
                          "training rows; each side of the threshold needs at least 5 rows")
    kind = model if isinstance(model, str) else None
    if kind is not None and kind not in REGRESSORS:
        raise BundleError(f"model: a score target is fitted with one of {', '.join(REGRESSORS)}, not {kind!r}")
    holdout = test is None and kind is not None and len(x) >= 50
    stage = _Stages(progress, 2 + len(densities) + int(holdout))
    started = time.perf_counter()
    stage("fitting the model")
    try:
        if kind is None and is_raw_pipeline(model):  # a scikit-learn Pipeline on raw records (recourse.pipelines)
            regressor = raw_pipeline_regressor(model, encoder, train)
            model = "raw pipeline: " + " → ".join(type(step).__name__ for _, step in model.steps)
        else:
            estimator = train_regressor(kind, x, scores, seed, model_options) if kind is not None else model
            regressor = as_module(estimator, encoder.n_columns)
    except (TypeError, ValueError) as exc:
        raise BundleError(str(exc)) from None
    reading = ScoreReading.of(target, float(np.std(scores)) or 1.0)
    folded = fold_regressor(regressor, reading, classes, encoder.n_columns)
    verifier = None
    surrogate_info = None
    if isinstance(regressor, TreeEnsemble):
        verifier = folded
        clf, surrogate_info = _surrogate(verifier, x, encoder, seed)
        clf.classes = classes
    else:
        clf = folded
    fitted = _fit_densities(densities, x, y_idx, 2, stage)
    training: dict[str, Any] = {"rows": len(train), "seconds": 0.0, "seed": seed, "recipe_version": RECIPE_VERSION,
                                **regression_scores(predict_scores(regressor, x), scores, target)}
    if holdout:
        stage("held-out figures (a refit on 80 % of the rows)")
        order = np.random.default_rng(seed).permutation(len(x))
        held, fit = order[: int(round(HOLDOUT_SHARE * len(x)))], order[int(round(HOLDOUT_SHARE * len(x))):]
        refit = as_module(train_regressor(kind, x[fit], scores[fit], seed, model_options), encoder.n_columns)
        training["holdout_rows"] = int(len(held))
        training.update({f"holdout_{k}": v for k, v in
                         regression_scores(predict_scores(refit, x[held]), scores[held], target).items()})
    if test is not None:
        test_scores = np.asarray(test[1], dtype=np.float64)
        training["test_rows"] = len(test[0])
        training.update({f"test_{k}": v for k, v in
                         regression_scores(predict_scores(regressor, encoder.encode(test[0])), test_scores, target).items()})
    training["seconds"] = round(time.perf_counter() - started, 3)
    for split in ("test", "holdout"):
        r2 = training.get(f"{split}_r2")
        if r2 is not None and r2 <= 0 and not force:
            raise BundleError(f"the score model's {'test' if split == 'test' else 'held-out'} R² {r2:.3f} is no better than "
                              "predicting the mean score: it has learned nothing to explain; improve the data or the "
                              "recipe, or pass `force=True` to write it anyway")
    metadata = _metadata(schema, dataset, classes, encoder,
                         kind if kind is not None else model if isinstance(model, str) else type(model).__name__,
                         densities, default_density, max_changes, None, training, dict(model_options) if model_options else None,
                         verifier, surrogate_info)
    metadata["score"] = {"name": target.name, "threshold": target.threshold, "direction": target.direction,
                         "scale": reading.scale}
    return _save(Bundle(None, schema, clf, fitted, x, y_idx, metadata, verifier, []), out, stage)


def _default_density(preferred: str, fitted: Collection[str]) -> str | None:
    """A bundle's default density: ``preferred`` if it was fitted, else the first fitted one (None: none)."""
    return preferred if preferred in fitted else next(iter(fitted), None)


def _surrogate(verifier: TorchClassifier, x: np.ndarray, encoder: TabularEncoder, seed: int,
               teacher: Callable | None = None) -> tuple[TorchClassifier, dict[str, Any]]:
    """The differentiable surrogate distilled from a tree model (the verifier) that steers the solver,
    and its description for the metadata (kind and fidelity)."""
    clf, fidelity = distill(verifier, x, [fc.slice for fc in encoder.layout], _numeric_columns(encoder), seed=seed,
                            teacher=teacher)
    return clf, {"kind": "distilled mlp", **asdict(fidelity)}


def _fit_densities(names: Sequence[str], x: np.ndarray, y_idx: np.ndarray, n_classes: int,
                   stage: "_Stages") -> dict[str, ClassConditionalDensity]:
    """Each named class-conditional density fitted on the scaled rows (one stage each)."""
    fitted = {}
    for name in names:
        stage(f"fitting the {name} density")
        fitted[name] = fit_class_conditional(name, x, y_idx, classes=range(n_classes))
    return fitted


def _metadata(schema: FeatureSchema, dataset: str | None, classes: list, encoder: TabularEncoder, model: str,
              densities: Sequence[str], default_density: str, max_changes: int, min_probability: float | None,
              training: dict[str, Any], recipe: dict[str, Any] | None, verifier: TorchClassifier | None,
              surrogate: dict[str, Any] | None) -> dict[str, Any]:
    """The metadata.json fields every bundle has (hashes are added on saving), and the tree verifier's
    format and its surrogate's fidelity when there is one."""
    metadata: dict[str, Any] = {
        "format": FORMAT,
        "dataset": dataset or schema.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "classes": classes,
        "columns": encoder.columns,
        "model": model,
        "densities": list(densities),
        "defaults": {"max_changes": max_changes,
                     "density": _default_density(default_density, densities),
                     "min_probability": min_probability},
        "training": training,
        **({"recipe": recipe} if recipe else {}),
    }
    if verifier is not None:
        metadata["verifier"] = {"format": "recourse-trees/1", "output": verifier.output}
        metadata["surrogate"] = {k: round(v, 4) if isinstance(v, float) else v for k, v in (surrogate or {}).items()}
    return metadata


def _save(bundle: Bundle, out: str | Path, stage: "_Stages") -> Bundle:
    """Write the bundle (the last stage) and close the stages."""
    stage("saving")
    save_bundle(bundle, out)
    stage.finish()
    return bundle


StageProgress = Callable[[int, int, str], None]
"""``progress(done, total, stage)``: told before each stage of a long job, and at the end."""


class _Stages:
    """Counts the stages of :func:`build_bundle` for its ``progress`` callback (None: silent)."""

    def __init__(self, progress: StageProgress | None, total: int) -> None:
        self.progress, self.total, self.done = progress, total, -1

    def __call__(self, name: str) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total, name)

    def finish(self) -> None:
        if self.progress is not None:
            self.progress(self.total, self.total, "done")


HOLDOUT_SHARE = 0.2
"""Share of the rows a bundle built without a test set holds out to estimate its accuracy honestly."""


def _holdout(kind: Any, x: np.ndarray, y_idx: np.ndarray, seed: int, trees: bool) -> dict[str, Any]:
    """Held-out accuracy of the recipe: a refit on a stratified 80 % of the rows, scored on the other
    20 % (the bundle's own model is fitted on every row; its training accuracy alone flatters it)."""
    from sklearn.model_selection import train_test_split

    counts = np.bincount(y_idx)
    stratify = y_idx if counts[counts > 0].min() >= 2 else None
    fit, held = train_test_split(np.arange(len(x)), test_size=HOLDOUT_SHARE, random_state=seed, stratify=stratify)
    model = kind.train(x[fit], y_idx[fit], seed)
    if trees:
        model = tree_classifier(model)
    return {"holdout_rows": int(len(held)), **{f"holdout_{k}": v for k, v in _scores(model, x[held], y_idx[held]).items()}}


FAMILY_SEED = 50_000
"""Seeds of a bundle's refits: bootstrap resample ``FAMILY_SEED``, member k's training seed
``FAMILY_SEED + k`` (apart from the seeds a benchmark's fresh refits use)."""


def _fit_family(kind: Any, size: int, x: np.ndarray, y: np.ndarray, classes: list,
                stage: Callable[[str], None] = lambda name: None) -> list[TorchClassifier]:
    """``size`` refits of a registered differentiable model kind on bootstrap resamples."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise BundleError(f"family: expected a whole number ≥ 0, got {size!r}")
    if size == 0:
        return []
    if kind is None or not kind.differentiable:
        raise BundleError("family: refits need the recipe of a registered differentiable model kind "
                          "(mlp, logistic), not a model trained elsewhere or a tree ensemble")
    rng = np.random.default_rng(FAMILY_SEED)
    members = []
    for k in range(size):
        stage(f"refit {k + 1} of {size}")
        rows = rng.integers(0, len(x), len(x))
        member = kind.train(x[rows], y[rows], FAMILY_SEED + k)
        member.classes = list(classes)
        members.append(member)
    return members


def _schema_classes(model_classes: Sequence[Any], classes: list, what: str) -> list:
    """The schema's classes as the labels of a model's output columns (column j is ``classes[j]``).

    A model trained here on class indices, or one whose columns are unnamed (0..C-1), is simply
    labelled; a model whose own labels are the schema's classes in another order is refused: its
    columns would be mislabelled (every decision inverted for two classes)."""
    got, want = [str(c) for c in model_classes], [str(c) for c in classes]
    if got != want and sorted(got) == sorted(want) and got != [str(i) for i in range(len(got))]:
        raise BundleError(f"{what} orders its classes {list(model_classes)} but the schema's target lists {classes}: "
                          "list the schema's target classes in the model's order")
    return list(classes)


def _same_rules(a: FeatureSchema, b: FeatureSchema) -> bool:
    """Whether two schemas declare the same features and rules (data-derived ranges and cost scales aside)."""
    rules = lambda s: [f.model_dump(exclude={"range", "cost_scale"}) for f in s.features]  # noqa: E731
    return rules(a) == rules(b) and a.target == b.target and a.consequences == b.consequences


def build_dataset_bundle(name: str, out: str | Path | None = None, model: str = "mlp", seed: int = 0,
                         family: int = 0, progress: StageProgress | None = None,
                         model_options: dict[str, Any] | None = None, force: bool = False) -> Bundle:
    """Bundle for a bundled data set ("german", "wine" or "adult"), trained on its seeded training split
    (``family``: refits for robust requests, see :func:`build_bundle`)."""
    data: Dataset = load_dataset(name)
    train, y_train, test, y_test = data.split()
    out = Path(out) if out is not None else recourse_home() / "bundles" / (name if model == "mlp" else f"{name}-{model}")
    return build_bundle(data.schema, train, y_train, out, model=model, test=(test, y_test),
                        max_changes=DEFAULT_MAX_CHANGES.get(data.schema.name, 3), seed=seed, dataset=name,
                        family=family, progress=progress, model_options=model_options, force=force)


def _numeric_columns(encoder: TabularEncoder) -> np.ndarray:
    """Mask of the encoded columns that hold numeric or ordinal values (not one-hot or binary)."""
    mask = np.zeros(encoder.n_columns, dtype=bool)
    for fc in encoder.layout:
        if fc.feature.kind in ("continuous", "integer", "ordinal"):
            mask[fc.slice] = True
    return mask


def _scores(clf: TorchClassifier, x: np.ndarray, y_idx: np.ndarray) -> dict[str, float | None]:
    r"""Accuracy, ROC AUC (binary; one-vs-rest macro for more classes; None when a class is missing),
    Brier score :math:`\frac1N \sum_i \sum_c (p_{ic} - [y_i = c])^2` and the share of the most frequent class."""
    from sklearn.metrics import roc_auc_score

    with torch.no_grad():
        proba = clf.predict_proba(torch.as_tensor(x, dtype=clf.dtype, device=clf.device)).double().cpu().numpy()
    onehot = np.eye(proba.shape[1])[y_idx]
    present = np.unique(y_idx)
    try:
        if proba.shape[1] == 2:
            auc = roc_auc_score(y_idx, proba[:, 1]) if len(present) == 2 else None
        else:
            auc = roc_auc_score(y_idx, proba, multi_class="ovr") if len(present) == proba.shape[1] else None
    except ValueError:
        auc = None
    majority = float(np.bincount(y_idx).max() / len(y_idx)) if len(y_idx) else 0.0
    return {"accuracy": round(float((proba.argmax(1) == y_idx).mean()), 4),
            "auc": None if auc is None else round(float(auc), 4),
            "brier": round(float(((proba - onehot) ** 2).sum(1).mean()), 4),
            "majority": round(majority, 4)}


def _check_better_than_majority(training: dict[str, Any], force: bool) -> None:
    """Refuse a model whose held-out (or test) accuracy does not beat always answering the majority class."""
    for split in ("test", "holdout"):
        accuracy, majority = training.get(f"{split}_accuracy"), training.get(f"{split}_majority")
        if accuracy is not None and majority is not None and accuracy <= majority and not force:
            raise BundleError(f"the model's {'test' if split == 'test' else 'held-out'} accuracy {accuracy:.3f} is no better "
                              f"than always answering the most frequent class ({majority:.3f}): it has learned nothing "
                              "to explain; improve the data or the recipe, or pass `force=True` to write it anyway")


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
    for k, member in enumerate(bundle.family):
        save_classifier(member, out, stem=f"family-{k}")
    for name, density in bundle.densities.items():
        (out / f"density-{name}.json").write_text(json.dumps(density.config(), indent=2) + "\n")
        save_file({k: v.detach().cpu().contiguous() for k, v in density.tensors().items()}, str(out / f"density-{name}.safetensors"))
    save_file({"x": torch.as_tensor(bundle.train_encoded, dtype=torch.float32).contiguous(),
               "y": torch.as_tensor(bundle.train_labels, dtype=torch.long).contiguous()}, str(out / "data.safetensors"))
    files = sorted(p.name for p in out.iterdir() if p.is_file() and p.name != "metadata.json")
    hashes = {name: file_sha256(out / name) for name in files}
    metadata = {k: v for k, v in bundle.metadata.items() if k != "hash"}
    metadata.update(files=hashes, hash_version=HASH_VERSION)
    metadata["hash"] = metadata_hash(json.loads(json.dumps(metadata)))  # hashed as it will be read back
    (out / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    bundle.metadata, bundle.path = metadata, out
    return out


HASH_VERSION = 2
"""The ``hash_version`` of the bundles this code writes: the bundle hash is SHA-256 of the canonical
JSON of the whole of ``metadata.json`` except ``hash`` itself (so it covers the file digests in
``files``, the defaults, classes, columns, training figures and every other field).

Bundles written before had no ``hash_version`` (version 1): their hash covers only the file
digests.  They still load (refusing them would break every bundle on users' disks, and the demo
bundles are rebuilt anyway), but an edit of their other metadata fields goes unnoticed; saving
such a bundle again writes version 2.  Dropping ``hash_version`` from a version-2 bundle does not
downgrade it: its stored hash then no longer matches the version-1 hash and loading refuses it."""


def _bundle_hash(hashes: dict[str, str]) -> str:
    """Version-1 bundle hash: SHA-256 over the sorted ``name:sha256`` lines of the files."""
    digest = hashlib.sha256()
    for name in sorted(hashes):
        digest.update(f"{name}:{hashes[name]}\n".encode())
    return digest.hexdigest()


def metadata_hash(metadata: dict[str, Any]) -> str:
    """The bundle hash ``metadata`` (as read from metadata.json) must carry, by its ``hash_version``.

    Version 2: SHA-256 of the canonical JSON (sorted keys, no spaces) of every field but ``hash``;
    no ``hash_version``: the version-1 hash of ``files`` only (see :data:`HASH_VERSION`)."""
    if metadata.get("hash_version") is None:
        return _bundle_hash(metadata["files"])
    body = {k: v for k, v in metadata.items() if k != "hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


_Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class _Defaults(BaseModel):
    model_config = ConfigDict(extra="allow")

    max_changes: StrictInt = Field(3, ge=1)
    density: StrictStr | None = DEFAULT_DENSITY
    min_probability: float | None = Field(None, gt=0.0, lt=1.0)


class _Verifier(BaseModel):
    model_config = ConfigDict(extra="allow")

    format: Literal[TREES_FORMAT, EXTERNAL]  # type: ignore[valid-type]


class _Family(BaseModel):
    model_config = ConfigDict(extra="allow")

    size: StrictInt = Field(ge=1, le=64)


class _Score(BaseModel):
    model_config = ConfigDict(extra="allow")

    scale: float = Field(gt=0.0, allow_inf_nan=False)


class BundleMetadata(BaseModel):
    """The fields of ``metadata.json`` that loading relies on, checked in one step (others pass through)."""

    model_config = ConfigDict(extra="allow")

    files: dict[str, _Sha256]
    hash: _Sha256
    hash_version: Literal[2] | None = None  # type: ignore[valid-type]
    """None: a bundle written before the hash covered all of metadata.json (see HASH_VERSION)."""
    densities: list[StrictStr] = Field(default_factory=list)
    defaults: _Defaults = Field(default_factory=_Defaults)
    verifier: _Verifier | None = None
    family: _Family | None = None
    score: _Score | None = None

    @field_validator("files")
    @classmethod
    def _plain_names(cls, files: dict[str, str]) -> dict[str, str]:
        for name in files:
            if name in ("", ".", "..") or Path(name).name != name or "\\" in name:
                raise ValueError(f"{name!r} is not a plain file name inside the bundle")
        return files

    @field_validator("densities")
    @classmethod
    def _known_densities(cls, names: list[str]) -> list[str]:
        unknown = [n for n in names if n not in available_densities()]
        if unknown:
            raise ValueError(f"unknown density {unknown[0]!r}; known densities: {', '.join(available_densities())}")
        if len(set(names)) != len(names):
            raise ValueError(f"a density is listed twice: {names}")
        return names

    @model_validator(mode="after")
    def _default_is_fitted(self) -> "BundleMetadata":
        density = self.defaults.density
        if density is not None and density not in self.densities:
            raise ValueError(f"defaults.density: density {density!r} is not fitted in this bundle "
                             f"(densities: {', '.join(self.densities) or 'none'})")
        return self

    @property
    def loaded_files(self) -> list[str]:
        """Every file :func:`load_bundle` reads (each must be listed in ``files`` with its SHA-256)."""
        names = ["schema.json", MODEL_JSON, MODEL_TENSORS, "data.safetensors"]
        names += [f"density-{name}.{ext}" for name in self.densities for ext in ("json", "safetensors")]
        if self.verifier is not None and self.verifier.format != EXTERNAL:
            names += ["verifier.json", "verifier.safetensors"]
        if self.family is not None:
            names += [f"family-{k}.{ext}" for k in range(self.family.size) for ext in ("json", "safetensors")]
        return names


def _check_files(path: Path, meta: BundleMetadata, metadata: dict[str, Any]) -> None:
    """Every file loading reads is listed, present and matches its SHA-256; the bundle hash matches
    the file hashes and (``hash_version`` 2) every other field of ``metadata`` as read from disk."""
    unlisted = [name for name in meta.loaded_files if name not in meta.files]
    if unlisted:
        raise BundleError(f"{path / 'metadata.json'}: files: {', '.join(unlisted)} not listed with a SHA-256; "
                          "every file the bundle loads must be (rebuild the bundle)")
    for name, expected in meta.files.items():
        file = path / name
        if not file.is_file():
            raise BundleError(f"{path}: missing file {name}")
        if file_sha256(file) != expected:
            raise BundleError(f"{path}: {name} does not match its recorded hash (modified or corrupt)")
    if metadata_hash(metadata) != meta.hash:
        covered = "file hashes" if meta.hash_version is None else "file hashes and metadata fields"
        raise BundleError(f"{path / 'metadata.json'}: hash does not match the {covered} (metadata.json was modified "
                          "after the bundle was built; rebuild the bundle)")


@contextmanager
def _reading(path: Path, name: str) -> Iterator[None]:
    """Turn a failure to read bundle file ``name`` into a BundleError naming the bundle and the file."""
    try:
        yield
    except BundleError:
        raise
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path / name}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    except UnicodeDecodeError:
        raise BundleError(f"{path / name}: not a UTF-8 text file") from None
    except SafetensorError as exc:
        raise BundleError(f"{path / name}: not a readable safetensors file ({exc})") from None
    except KeyError as exc:
        raise BundleError(f"{path / name}: missing entry {exc.args[0]!r}") from None
    except (ValueError, TypeError, IndexError, AttributeError, OSError, RuntimeError) as exc:
        message = str(exc) or type(exc).__name__
        raise BundleError(message if message.startswith(str(path)) else f"{path / name}: {message}") from None


def _check_fit(path: Path, schema: FeatureSchema, classifier: TorchClassifier, verifier: TorchClassifier | None,
               densities: dict[str, ClassConditionalDensity], x: Tensor, y: Tensor,
               family: Sequence[TorchClassifier] = ()) -> None:
    """The parts agree: the schema's encoded width is what the models, densities and data have."""
    with _reading(path, "schema.json"):
        width = TabularEncoder(schema).n_columns
    if schema.target is None:
        raise BundleError(f"{path / 'schema.json'}: no target (name, classes, favourable)")
    classes = [str(c) for c in schema.target.classes]
    models = [(MODEL_JSON, classifier), ("verifier.json", verifier), *((f"family-{k}.json", m) for k, m in enumerate(family))]
    for name, model in models:
        if model is None:
            continue
        try:
            with torch.no_grad():
                model.logits(torch.zeros(1, width, dtype=model.dtype, device=model.device))
        except (ValueError, RuntimeError):
            raise BundleError(f"{path}: schema.json encodes an applicant as {width} columns but {name}'s model "
                              f"takes {model.n_features or 'another number of'} inputs") from None
        if [str(c) for c in model.classes] != classes:
            raise BundleError(f"{path}: {name}'s classes {model.classes} differ from schema.json's target classes "
                              f"{list(schema.target.classes)}")
    for name, density in densities.items():
        for c, part in density.densities.items():
            if getattr(part, "n_features_in_", width) != width or not 0 <= c < len(classes):
                raise BundleError(f"{path}: density-{name} (class {c}) does not fit schema.json "
                                  f"({width} columns, {len(classes)} classes)")
    if x.ndim != 2 or x.shape[1] != width or y.shape != (x.shape[0],) or x.shape[0] == 0:
        raise BundleError(f"{path}: data.safetensors holds x {tuple(x.shape)} and y {tuple(y.shape)}; "
                          f"expected (N, {width}) and (N,)")
    if y.is_floating_point() or bool(((y < 0) | (y >= len(classes))).any()) or not bool(torch.isfinite(x).all()):
        raise BundleError(f"{path}: data.safetensors: class indices outside 0..{len(classes) - 1} or non-finite rows")


def load_bundle(path: str | Path, device: str | torch.device | None = None) -> Bundle:
    """Load and verify a bundle (no unpickling).

    Every file it reads must be listed in ``metadata.json`` with a matching SHA-256, and the
    parts must fit together; anything else raises :class:`BundleError` naming the bundle and the
    file.  A bad ``device`` raises ``ValueError("device: ...")``.
    """
    path = Path(path)
    device = parse_device(device)
    meta_file = path / "metadata.json"
    if not meta_file.is_file():
        raise BundleError(f"{path}: not a bundle (no metadata.json); build one with `recourse train`")
    metadata = read_bundle_json(meta_file, FORMAT)
    meta = check_bundle_json(BundleMetadata, metadata, meta_file)
    _check_files(path, meta, metadata)
    with _reading(path, "schema.json"):
        schema = FeatureSchema.load(path / "schema.json")
    if (schema.score_target is None) != (meta.score is None):
        raise BundleError(f"{path}: metadata.json: score: " + ("missing: schema.json's target is a score" if meta.score is None
                                                              else "given, but schema.json's target is not a score"))
    with _reading(path, MODEL_JSON):
        classifier = load_classifier(path, device=device)
    densities = {}
    for name in meta.densities:
        with _reading(path, f"density-{name}.safetensors"):
            tensors = load_file(str(path / f"density-{name}.safetensors"))
        with _reading(path, f"density-{name}.json"):  # the description, checked against its tensors
            config = json.loads((path / f"density-{name}.json").read_text())
            densities[name] = ClassConditionalDensity.from_state(config, tensors)
    with _reading(path, "data.safetensors"):
        data = load_file(str(path / "data.safetensors"))
        x, y = data["x"], data["y"]
    verifier = None
    if meta.verifier is not None and meta.verifier.format != EXTERNAL:
        with _reading(path, "verifier.json"):
            trees = TreeEnsemble.load(path, "verifier")
            verifier = TorchClassifier(trees, output=trees.output, classes=classifier.classes,
                                       n_features=trees.in_features).to(device)
    family = []
    for k in range(meta.family.size if meta.family is not None else 0):
        with _reading(path, f"family-{k}.json"):
            family.append(load_classifier(path, device=device, stem=f"family-{k}"))
    _check_fit(path, schema, classifier, verifier, densities, x, y, family)
    return Bundle(path, schema, classifier, densities, x.double().numpy(), y.numpy(), metadata, verifier, family)


def demo_bundle(name: str = "german", device: str | torch.device | None = None) -> Bundle:
    """The demo bundle for a bundled data set, built on first use under :func:`recourse_home` (and
    built again when the data set's schema file has changed its rules since, or the training
    recipes have changed: :data:`RECIPE_VERSION`)."""
    device = parse_device(device)  # a bad device is the caller's error, not a reason to rebuild
    path = recourse_home() / "bundles" / name
    if (path / "metadata.json").is_file():
        try:
            bundle = load_bundle(path, device=device)
            current = (bundle.metadata.get("defaults", {}).get("min_probability") == DEFAULT_MIN_PROBABILITY
                       and bundle.metadata.get("training", {}).get("recipe_version") == RECIPE_VERSION)
            if current and _same_rules(bundle.schema, dataset_schema(name)):
                return bundle
        except BundleError:
            pass
    build_dataset_bundle(name, path)
    return load_bundle(path, device=device)
