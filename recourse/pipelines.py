r"""Models trained on raw records: a scikit-learn ``Pipeline`` whose first steps turn the raw
DataFrame into numbers (a ``ColumnTransformer`` with ``OneHotEncoder``, ``OrdinalEncoder``,
scalers, imputers, ``"passthrough"``), then any supported estimator.

The engine works on the schema's scaled encoding z (see :mod:`recourse.encoding`).  The
pipeline's preprocessing T (raw record → its feature vector) is read off the fitted pipeline by
evaluating it, feature by feature, on records that differ from a baseline in that feature only:

.. math::  T(x) = T(x^0) + \sum_j g_j(x_j), \qquad g_j(v) = T(x^0 \text{ with } x_j = v) - T(x^0).

This holds exactly when every output column of T depends on one feature at most (checked on the
training rows).  Each g_j is then written in z:

* numeric feature: :math:`g_j` must be affine in the value (checked at several values), so
  :math:`g_j = a_j z_j` with z_j = (v − low)/span;
* binary feature: :math:`g_j = z_j\,(T(1) − T(0))`;
* categorical feature (one-hot columns z_{j,c}): :math:`g_j = \sum_c z_{j,c}\, d_{j,c}`, exact
  because exactly one z_{j,c} is 1;
* ordinal feature with levels k = 0 … L−1 at z = k/(L−1): affine when the level vectors are
  (an ordinal code, scaled); otherwise (a one-hot encoding of the levels) the piecewise-linear
  interpolation :math:`g_j(z) = s_0 z + \sum_{k=1}^{L-2} (s_k − s_{k-1})\,\mathrm{ReLU}(z − z_k)`
  through the level vectors, exact on every level.

So :math:`T(z) = W_2\,\mathrm{ReLU}(W_1 z + b_1) + b_2` (the pass-through units are
:math:`\mathrm{ReLU}(z + 1) − 1`, which is z with slope 1 everywhere on the box), or simply
:math:`T(z) = A z + b` when no ordinal needs knots.  A linear or MLP estimator's first layer
absorbs :math:`W_2` (or A); a tree ensemble (scikit-learn's, XGBoost's or LightGBM's,
:func:`recourse.trees.export_trees`) evaluates its splits on T(z).  The result is checked
against ``pipeline.predict_proba`` on the training rows: a pipeline whose preprocessing is not of
this form (interactions, a log transform, binning of a continuous feature) is refused with the
reason, and can still be used as a black box (:mod:`recourse.blackbox`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from .encoding import TabularEncoder
from .errors import BundleError

PROBA_TOLERANCE = 1e-5
"""Largest difference allowed between the converted model's probabilities and the pipeline's."""


THRESHOLD_SLACK = 1e-9
"""Relative slack added to a tree's splits read through an input map (:meth:`TreeEnsemble.widen_thresholds`),
beside :meth:`InputMap.rounding_bound`."""


def is_raw_pipeline(model: Any) -> bool:
    """A fitted scikit-learn Pipeline that starts with a ColumnTransformer (it takes raw DataFrames)."""
    try:
        from sklearn.compose import ColumnTransformer
        from sklearn.pipeline import Pipeline
    except ImportError:  # pragma: no cover - scikit-learn is a core dependency
        return False
    return isinstance(model, Pipeline) and len(model.steps) >= 2 and isinstance(model.steps[0][1], ColumnTransformer)


@dataclass
class InputMap:
    r"""The pipeline's preprocessing written on the scaled encoding: T(z) = W2 ReLU(W1 z + b1) + b2,
    or T(z) = w2 z + b2 (``w1`` None) when it is affine.  float64 arrays."""

    w1: np.ndarray | None
    b1: np.ndarray | None
    w2: np.ndarray
    b2: np.ndarray

    @property
    def in_features(self) -> int:
        return int(self.w2.shape[1] if self.w1 is None else self.w1.shape[1])

    @property
    def out_features(self) -> int:
        return int(self.w2.shape[0])

    def __call__(self, z: np.ndarray) -> np.ndarray:
        hidden = z if self.w1 is None else np.maximum(z @ self.w1.T + self.b1, 0.0)
        return hidden @ self.w2.T + self.b2

    def rounding_bound(self, unit: float = 2.0**-24) -> np.ndarray:
        r"""Per output column, a bound on the change of T(z) when every z_i (in [0, 1]) is rounded to
        float32: :math:`2u \sum_i |\partial T_o / \partial z_i|` with u the unit roundoff, the
        Jacobian bounded by :math:`|W_2|\,|W_1|` through the hidden layer."""
        jacobian = np.abs(self.w2) if self.w1 is None else np.abs(self.w2) @ np.abs(self.w1)
        return 2.0 * unit * jacobian.sum(axis=1)

    def modules(self, dtype: torch.dtype = torch.float64) -> list[nn.Module]:
        """``[Linear, ReLU]`` for the hidden part (empty when affine); the output layer is returned by
        :meth:`fold` so that it merges with the estimator's first layer."""
        if self.w1 is None:
            return []
        return [_linear(self.w1, self.b1, dtype), nn.ReLU()]

    def fold(self, weight: np.ndarray, bias: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The estimator's first layer ``x ↦ weight x + bias`` applied to T's output layer: one layer."""
        b = np.zeros(weight.shape[0]) if bias is None else np.asarray(bias, dtype=np.float64)
        return weight @ self.w2, weight @ self.b2 + b


def _linear(w: np.ndarray, b: np.ndarray | None, dtype: torch.dtype) -> nn.Linear:
    lin = nn.Linear(w.shape[1], w.shape[0], bias=b is not None, dtype=dtype)
    with torch.no_grad():
        lin.weight.copy_(torch.as_tensor(w, dtype=dtype))
        if b is not None:
            lin.bias.copy_(torch.as_tensor(b, dtype=dtype))
    return lin


def _transform(pre: Any, encoder: TabularEncoder, codes: np.ndarray, columns: list[str]) -> np.ndarray:
    """The preprocessing's output (float64, dense) on the raw records of ``codes``."""
    frame = encoder.frame_from_codes(codes)
    frame = frame[columns] if columns else frame
    out = pre.transform(frame)
    out = out.toarray() if hasattr(out, "toarray") else np.asarray(out)
    try:
        return out.astype(np.float64)
    except (TypeError, ValueError):
        raise BundleError("the pipeline's preprocessing gives values that are not numbers; "
                          "its output must be numeric features") from None


def _fails(pre: Any, encoder: TabularEncoder, codes: np.ndarray, columns: list[str]) -> bool:
    try:
        _transform(pre, encoder, codes[None, :], columns)
        return False
    except ValueError:
        return True


def input_map(pre: Any, encoder: TabularEncoder, train: pd.DataFrame, tol: float = 1e-7) -> InputMap:
    """Read the preprocessing ``pre`` (the pipeline without its estimator) off as an :class:`InputMap`
    on ``encoder``'s scaled encoding (see the module docstring); ``BundleError`` when it is not additive
    and piecewise linear in the features."""
    columns = list(getattr(pre, "feature_names_in_", [])) or []
    unknown = [c for c in columns if c not in encoder.schema.names]
    if unknown:
        raise BundleError(f"the pipeline reads columns the schema does not have: {', '.join(map(repr, unknown))}")
    acts = encoder.action_set
    low, span = acts.low.astype(np.float64), acts.span.astype(np.float64)
    base = low.copy()  # the baseline record: every feature at its lowest value or first level
    base[encoder.is_categorical] = 0.0
    t0 = _transform(pre, encoder, base[None, :], columns)[0]
    n_out, d = len(t0), encoder.n_columns
    linear = np.zeros((n_out, d))
    knots: list[tuple[int, float, np.ndarray]] = []  # (column, knot z, slope change vector)
    owner = np.full(n_out, -1)

    def vary(j: int, values: np.ndarray) -> np.ndarray:
        rows = np.repeat(base[None, :], len(values), axis=0)
        rows[:, j] = values
        try:
            return _transform(pre, encoder, rows, columns) - t0
        except ValueError as exc:  # e.g. a level the encoder never saw, with handle_unknown="error"
            feat = encoder.layout[j].feature
            bad = next((v for v in values if _fails(pre, encoder, np.where(np.arange(len(base)) == j, v, base), columns)), None)
            what = f"the value {encoder.feature_values(j, np.array([bad]))[0]!r}" if bad is not None else "its values"
            raise BundleError(f"feature '{feat.name}': the pipeline cannot transform {what} ({exc}); every level and "
                              "value of the schema must be accepted: fit the encoder with handle_unknown='ignore' (or "
                              "'use_encoded_value'), or leave the level out of the schema") from None

    for j, fc in enumerate(encoder.layout):
        feat = fc.feature
        if feat.kind == "categorical":
            deltas = vary(j, np.arange(len(feat.levels), dtype=np.float64))  # (L, n_out)
            linear[:, fc.start:fc.stop] = deltas.T
            moved = np.abs(deltas).max(0) > tol
        elif feat.kind == "ordinal":
            levels = np.arange(int(low[j]), int(low[j] + span[j]) + 1, dtype=np.float64)
            deltas = vary(j, levels)  # level k at z = (k - low)/span
            z = (levels - low[j]) / span[j]
            slopes = np.diff(deltas, axis=0) / np.diff(z)[:, None]  # (L-1, n_out)
            linear[:, fc.start] = slopes[0]
            for k in range(1, len(slopes)):
                change = slopes[k] - slopes[k - 1]
                if np.abs(change).max() > tol * max(1.0, np.abs(slopes).max()):
                    knots.append((fc.start, float(z[k]), change))
            moved = np.abs(deltas).max(0) > tol
        else:  # continuous, integer, binary: affine in the value
            probe = low[j] + span[j] * np.array([0.0, 1.0, 0.25, 0.5, 0.75])
            if feat.kind in ("integer", "binary"):
                probe = np.unique(np.round(probe))
            deltas = vary(j, probe)
            slope = (deltas[1] - deltas[0]) / (probe[1] - probe[0]) if len(probe) > 1 else np.zeros(n_out)
            predicted = (probe - probe[0])[:, None] * slope[None, :]
            if not np.allclose(deltas, predicted, rtol=1e-6, atol=tol * (1 + np.abs(deltas).max())):
                raise BundleError(f"feature '{feat.name}': the pipeline's preprocessing of it is not linear "
                                  "(e.g. a log transform or binning); only one-hot, ordinal, scaling and "
                                  "pass-through steps can be converted exactly; wrap the pipeline as a black box "
                                  "(recourse.blackbox) instead")
            linear[:, fc.start] = slope * span[j]
            moved = np.abs(deltas).max(0) > tol
        clash = moved & (owner >= 0)
        if clash.any():
            other = encoder.layout[int(owner[np.flatnonzero(clash)[0]])].feature.name
            raise BundleError(f"the pipeline's output column {int(np.flatnonzero(clash)[0])} depends on both "
                              f"'{other}' and '{feat.name}'; a preprocessing that mixes features cannot be "
                              "converted exactly; wrap the pipeline as a black box (recourse.blackbox) instead")
        owner[moved] = j
    # z of the baseline record: every scalar column 0, the first level of each categorical on
    z0 = encoder.encode_codes(base[None, :])[0]
    bias = t0 - linear @ z0
    if not knots:
        result = InputMap(None, None, linear, bias)
    else:  # hidden units: ReLU(z_i + 1) for every column (minus 1 in the output), ReLU(z_c − knot) per knot
        w1 = np.vstack([np.eye(d), np.zeros((len(knots), d))])
        b1 = np.concatenate([np.ones(d), np.zeros(len(knots))])
        w2 = np.hstack([linear, np.zeros((n_out, len(knots)))])
        for i, (column, knot, change) in enumerate(knots):
            w1[d + i, column] = 1.0
            b1[d + i] = -knot
            w2[:, d + i] = change
        result = InputMap(w1, b1, w2, bias - linear.sum(1))
    check = encoder.encode(train)
    expected = _transform(pre, encoder, encoder.to_codes(train), columns)
    worst = float(np.abs(result(check) - expected).max()) if len(check) else 0.0
    if worst > 1e-6 * (1.0 + float(np.abs(expected).max(initial=0.0))):
        raise BundleError(f"the pipeline's preprocessing is not additive in the features (off by {worst:.3g} on the "
                          "training rows); wrap the pipeline as a black box (recourse.blackbox) instead")
    return result


def split_pipeline(pipeline: Any) -> tuple[Any, Any]:
    """(preprocessing, final estimator) of a fitted raw pipeline."""
    from sklearn.pipeline import Pipeline

    steps = pipeline.steps
    pre = steps[0][1] if len(steps) == 2 else Pipeline(steps[:-1])
    return pre, steps[-1][1]


def raw_pipeline_model(pipeline: Any, encoder: TabularEncoder, train: pd.DataFrame) -> tuple[Any, bool]:
    """The pipeline as a model on the scaled encoding: (TorchClassifier, is_tree_ensemble).

    A linear or MLP estimator becomes ``[Linear, ReLU,] Linear(folded), ...`` (exact); a tree
    ensemble becomes a :class:`~recourse.trees.TreeEnsemble` whose splits read T(z).  Either is
    checked against ``pipeline.predict_proba`` on the training rows."""
    from .models import TorchClassifier, _final_layers
    from .boosters import strict_splits
    from .trees import export_trees, is_tree_model, tree_classes

    pre, estimator = split_pipeline(pipeline)
    mapping = input_map(pre, encoder, train)
    if is_tree_model(estimator):
        try:
            module = export_trees(estimator)
        except (TypeError, ValueError) as exc:
            raise BundleError(f"the pipeline's estimator: {exc}") from None
        _check_sparse_zeros(pre, estimator, encoder, train)
        if module.n_features != mapping.out_features:
            raise BundleError(f"the estimator reads {module.n_features} features, the preprocessing gives {mapping.out_features}")
        module.set_input_map(mapping)
        # XGBoost sends x < c left: a value at a split (its cuts are data values) goes right, so its
        # splits move down by the slack; the others (x ≤ t) move up
        sign = -1.0 if strict_splits(estimator) else 1.0
        module.widen_thresholds(sign * torch.as_tensor(mapping.rounding_bound()), sign * THRESHOLD_SLACK)
        module.mark_midpoints(torch.as_tensor(encoder.encode(train), dtype=torch.float64))
        model = TorchClassifier(module, output=module.output, classes=tree_classes(estimator), n_features=encoder.n_columns)
        trees = True
    else:
        try:
            head, output = _final_layers(estimator, torch.float64, None)
        except TypeError as exc:
            raise BundleError(f"the pipeline's estimator: {exc}") from None
        first = head[0]
        weight, bias = mapping.fold(first.weight.detach().numpy().astype(np.float64),
                                    None if first.bias is None else first.bias.detach().numpy().astype(np.float64))
        layers = [*mapping.modules(), _linear(weight, bias, torch.float64), *head[1:]]
        model = TorchClassifier(nn.Sequential(*layers).float(), output=output, classes=np.asarray(estimator.classes_).tolist(),
                                n_features=encoder.n_columns)
        trees = False
    _check_against_pipeline(model, pipeline, encoder, train)
    return model, trees


def raw_pipeline_regressor(pipeline: Any, encoder: TabularEncoder, train: pd.DataFrame) -> Any:
    """A score model's raw pipeline (a ColumnTransformer, then a linear, MLP or tree-ensemble
    regressor) as a function of the scaled encoding: an ``nn.Sequential`` (the input map folded
    into the first layer) or a :class:`~recourse.trees.TreeEnsemble` reading T(z); checked
    against ``pipeline.predict`` on the training rows."""
    from .scores import regressor_module
    from .trees import is_tree_regressor, regressor_trees

    pre, estimator = split_pipeline(pipeline)
    mapping = input_map(pre, encoder, train)
    try:
        if is_tree_regressor(estimator):
            model = regressor_trees(estimator)
            if model.n_features != mapping.out_features:
                raise TypeError(f"the estimator reads {model.n_features} features, the preprocessing gives {mapping.out_features}")
            model.set_input_map(mapping)
            model.widen_thresholds(torch.as_tensor(mapping.rounding_bound()), THRESHOLD_SLACK)
            model.mark_midpoints(torch.as_tensor(encoder.encode(train), dtype=torch.float64))
        else:
            head = list(regressor_module(estimator, mapping.out_features).double())
            first = head[0]
            weight, bias = mapping.fold(first.weight.detach().numpy(),
                                        None if first.bias is None else first.bias.detach().numpy())
            model = nn.Sequential(*mapping.modules(), _linear(weight, bias, torch.float64), *head[1:]).float()
    except TypeError as exc:
        raise BundleError(f"the pipeline's estimator: {exc}") from None
    columns = list(getattr(pipeline, "feature_names_in_", [])) or encoder.schema.names
    expected = np.asarray(pipeline.predict(encoder.frame_from_codes(encoder.to_codes(train))[columns]), dtype=np.float64)
    with torch.no_grad():
        x = torch.as_tensor(encoder.encode(train), dtype=torch.float32 if isinstance(model, nn.Sequential) else torch.float64)
        got = model(x).double().reshape(-1).numpy()
    worst = float(np.abs(got - expected).max()) if len(got) else 0.0
    if worst > PROBA_TOLERANCE * max(1.0, float(np.abs(expected).max())) * 10:
        raise BundleError(f"the converted pipeline's scores differ from predict by {worst:.3g} on the training rows")
    return model


def _check_sparse_zeros(pre: Any, estimator: Any, encoder: TabularEncoder, train: pd.DataFrame) -> None:
    """XGBoost reads a scipy sparse matrix's absent entries (its zeros) as missing values: refuse a
    sparse preprocessing in front of an XGBoost model with splits that send 0 elsewhere than missing."""
    from .boosters import strict_splits, xgboost_zero_conflicts

    if not strict_splits(estimator):  # XGBoost's
        return
    columns = list(getattr(pre, "feature_names_in_", [])) or []
    frame = encoder.frame_from_codes(encoder.to_codes(train.head(5)))
    if not hasattr(pre.transform(frame[columns] if columns else frame), "toarray"):
        return
    conflicts = xgboost_zero_conflicts(estimator)
    if conflicts:
        raise BundleError(f"the preprocessing gives sparse matrices, which XGBoost reads with every zero as a missing "
                          f"value, and {conflicts} of the model's splits send missing values elsewhere than 0; set "
                          "sparse_threshold=0 on the ColumnTransformer (dense output) and fit the pipeline again")


def _check_against_pipeline(model: Any, pipeline: Any, encoder: TabularEncoder, train: pd.DataFrame) -> None:
    expected = predict_proba_raw(pipeline, encoder, train).astype(np.float64)
    with torch.no_grad():
        got = model.predict_proba(torch.as_tensor(encoder.encode(train), dtype=model.dtype)).double().numpy()
    worst = float(np.abs(got - expected).max()) if len(got) else 0.0
    if worst > PROBA_TOLERANCE:
        raise BundleError(f"the converted pipeline's probabilities differ from predict_proba by {worst:.3g} on the "
                          "training rows; wrap the pipeline as a black box (recourse.blackbox) instead")


def predict_proba_raw(pipeline: Any, encoder: TabularEncoder, records: pd.DataFrame) -> np.ndarray:
    """The user's own pipeline on raw records in the schema's terms (for re-checking answers)."""
    columns = list(getattr(pipeline, "feature_names_in_", [])) or encoder.schema.names
    return np.asarray(pipeline.predict_proba(encoder.frame_from_codes(encoder.to_codes(records))[columns]))


__all__ = ["InputMap", "input_map", "is_raw_pipeline", "raw_pipeline_model", "raw_pipeline_regressor", "predict_proba_raw", "split_pipeline",
           "PROBA_TOLERANCE"]
