r"""Evaluation metrics for counterfactual explanations (the project's reference definitions).

All metrics are computed on *raw* counterfactual records (decoded values, one column per
feature, as a DataFrame) against the raw originals, and re-check everything with the model:
nothing a solver reports about itself is trusted.  Targets are class *indices* (positions in
the model's class list / the columns of ``predict_proba``).  ``predict_proba`` is any function
from the scaled encoding (N, D) to probabilities (N, C), e.g. ``RecourseEngine.predict_proba``.

A row "has a counterfactual" when the method returned one (``found``; by default: no missing
value in the row).  Definitions:

* **validity** – share of the *queried* points with a counterfactual that the model, called on
  the encoding of the final decoded values, puts in the target class (arg-max of the
  probabilities).  Rows without a counterfactual count as invalid.
* **ℓ0** – number of changed features (a categorical feature counts once, whatever its one-hot
  width); see :func:`recourse.constraints.changed_features`.
* **ℓ2** – Euclidean norm (not squared) of the change on the scaled encoding (min-max to [0, 1]
  for numeric features, level index / (L−1) for ordinals, 0/1 for binaries, one-hot for
  categoricals, so a category switch adds √2).
* **cost** – :meth:`recourse.encoding.TabularEncoder.change_costs` (Σ_j |Δ_j| / s_j, raw units).
* **violations** – number of returned counterfactuals that break at least one constraint: change
  an immutable, leave a range, move against a direction, exceed ``max_change`` or m changes,
  or break a type (non-integral integer, unknown level); see :func:`recourse.constraints.violations`.
* **LOF** (plausibility) – target-class local outlier factor against the training points of
  class t (scaled space), k = min(30, n_t − 1): :class:`recourse.density.lof.NoveltyLOF`, the
  value of scikit-learn's ``−LocalOutlierFactor(novelty=True).score_samples`` (≈1 inlier, larger
  = outlier).  NaN when class t has fewer than 3 points.
* **yNN** (plausibility) – share of the k = 5 nearest training points (Euclidean, scaled space,
  all classes) that the model puts in the target class (1 = the neighbourhood agrees).
* **redundancy** – for a valid counterfactual, the number of changed features that can each be
  reset, one at a time, to its original value with the counterfactual staying in the target
  class (0 = minimal: every change is needed).
* **time** – wall time of the whole batch (``seconds``) and ``per_second`` = queried points / seconds.

ℓ0, ℓ2, cost, LOF and yNN are averaged over the rows with a counterfactual; redundancy over the
valid ones.  Standard deviations are population (ddof = 0); a mean over no rows is NaN.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd

from .constraints import changed_features, violations
from .density.lof import NoveltyLOF
from .encoding import TabularEncoder
from .schema import FeatureSchema

PredictProba = Callable[[np.ndarray], np.ndarray]

__all__ = [
    "PredictProba",
    "RowMetrics",
    "Evaluator",
    "l0_distance",
    "l2_distance",
    "valid_mask",
    "validity",
    "violation_flags",
    "count_violations",
    "violation_kinds",
    "NoveltyLOF",
    "lof_scores",
    "ynn_scores",
    "redundancy",
    "summarise",
    "summarise_rows",
    "throughput",
]


# ---------------------------------------------------------------------- elementary metrics
def _frame(schema: FeatureSchema, df: pd.DataFrame) -> pd.DataFrame:
    return df.reset_index(drop=True)[schema.names]


def l0_distance(schema: FeatureSchema, originals: pd.DataFrame, counterfactuals: pd.DataFrame) -> np.ndarray:
    """(N,) number of changed features per row (a categorical counts once)."""
    return changed_features(schema, _frame(schema, originals), _frame(schema, counterfactuals)).sum(axis=1).astype(int)


def l2_distance(encoder: TabularEncoder, originals: pd.DataFrame, counterfactuals: pd.DataFrame) -> np.ndarray:
    """(N,) Euclidean norm (not squared) of the change on the scaled encoding."""
    return np.linalg.norm(encoder.encode(counterfactuals) - encoder.encode(originals), axis=1)


def valid_mask(predict_proba: PredictProba, encoded: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(N,) whether the model's arg-max class of each encoded row is its target index."""
    if len(encoded) == 0:
        return np.zeros(0, dtype=bool)
    return np.asarray(predict_proba(encoded)).argmax(axis=1) == np.asarray(targets)


def validity(found: np.ndarray, valid: np.ndarray) -> float:
    """Share of queried rows that have a counterfactual which the model puts in the target class."""
    found, valid = np.asarray(found, dtype=bool), np.asarray(valid, dtype=bool)
    return float((found & valid).mean()) if len(found) else float("nan")


def violation_flags(schema: FeatureSchema, originals: pd.DataFrame, counterfactuals: pd.DataFrame,
                    max_changes: int | None) -> np.ndarray:
    """(N,) whether each counterfactual breaks at least one constraint (see the module docstring)."""
    broken = violations(schema, _frame(schema, originals), _frame(schema, counterfactuals), max_changes)
    return np.array([bool(b) for b in broken], dtype=bool)


def violation_kinds(schema: FeatureSchema, originals: pd.DataFrame, counterfactuals: pd.DataFrame,
                    max_changes: int | None) -> dict[str, int]:
    """How many counterfactuals break each kind of constraint (the feature name left out), e.g.
    ``{"immutable feature changed": 2, "more than 3 features changed": 5}``."""
    counts: dict[str, int] = {}
    for row in violations(schema, _frame(schema, originals), _frame(schema, counterfactuals), max_changes):
        for kind in {msg.split(": ", 1)[-1] for msg in row}:
            counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items()))


def count_violations(schema: FeatureSchema, originals: pd.DataFrame, counterfactuals: pd.DataFrame,
                     max_changes: int | None) -> int:
    """Number of counterfactuals that break at least one constraint (must be 0 for S-CFE)."""
    return int(violation_flags(schema, originals, counterfactuals, max_changes).sum())


def _lof_model(points: np.ndarray, n_neighbors: int = 30) -> NoveltyLOF | None:
    """The class's LOF scorer (k = min(n_neighbors, n − 1)), or None below 3 points."""
    if len(points) < 3:
        return None
    return NoveltyLOF(points, n_neighbors)


def lof_scores(train_encoded: np.ndarray, train_labels: np.ndarray, encoded: np.ndarray, targets: np.ndarray,
               n_neighbors: int = 30, cache: dict | None = None) -> np.ndarray:
    """(N,) target-class LOF of each encoded row (NaN if the class has < 3 points).

    ``cache``: a dict the fitted per-class scorers are kept in between calls (same training data).
    """
    cache = {} if cache is None else cache
    targets = np.asarray(targets)
    out = np.full(len(encoded), np.nan)
    for t in np.unique(targets):
        if t not in cache:
            cache[t] = _lof_model(np.asarray(train_encoded)[np.asarray(train_labels) == t], n_neighbors)
        if cache[t] is not None:
            rows = targets == t
            out[rows] = cache[t].lof(encoded[rows])
    return out


def ynn_scores(train_encoded: np.ndarray, train_predictions: np.ndarray, encoded: np.ndarray, targets: np.ndarray,
               k: int = 5, _index: Any = None) -> np.ndarray:
    """(N,) share of the k nearest training points (scaled space) that the model puts in the target class.

    ``train_predictions`` are the model's class indices for the training points.
    """
    if len(encoded) == 0:
        return np.zeros(0)
    k = min(k, len(train_encoded))
    if _index is None:
        from sklearn.neighbors import NearestNeighbors

        _index = NearestNeighbors(n_neighbors=k).fit(train_encoded)
    _, idx = _index.kneighbors(encoded, n_neighbors=k)
    return (np.asarray(train_predictions)[idx] == np.asarray(targets)[:, None]).mean(axis=1)


def redundancy(encoder: TabularEncoder, predict_proba: PredictProba, originals: pd.DataFrame,
               counterfactuals: pd.DataFrame, targets: np.ndarray) -> np.ndarray:
    """(N,) per counterfactual, how many changed features can each be reset alone and stay valid.

    Every (row, changed feature) reset is evaluated in one batched model call: the feature's
    encoded columns are set back to the original's.  With consequences, a changed feature is an
    intervention, and resetting it takes its consequences back too.
    """
    schema = encoder.schema
    a, b = _frame(schema, originals), _frame(schema, counterfactuals)
    n = len(a)
    if n == 0:
        return np.zeros(0, dtype=int)
    changed = changed_features(schema, a, b)
    rows, feats = np.nonzero(changed)
    if rows.size == 0:
        return np.zeros(n, dtype=int)
    cons = encoder.action_set.consequences
    if cons.active:
        ca = encoder.to_codes(a)
        acted = cons.interventions(ca, encoder.to_codes(b))[rows]
        acted[np.arange(rows.size), feats] = ca[rows, feats]
        trial = encoder.encode_codes(cons.apply(ca[rows], acted))
    else:
        xa, xb = encoder.encode(a), encoder.encode(b)
        trial = xb[rows].copy()
        cols = encoder.groups[None, :] == feats[:, None]  # (K, D): the reset feature's columns
        trial[cols] = xa[rows][cols]
    still = valid_mask(predict_proba, trial, np.asarray(targets)[rows])
    return np.bincount(rows[still], minlength=n).astype(int)


def throughput(n: int, seconds: float) -> float:
    """Queried points per second of wall time."""
    return float(n / seconds) if seconds > 0 else float("inf")


# ---------------------------------------------------------------------- per-row evaluation
@dataclass
class RowMetrics:
    """Per-row metrics of one batch (arrays of length N = queried points; NaN/False where no counterfactual)."""

    found: np.ndarray
    valid: np.ndarray
    l0: np.ndarray
    l2: np.ndarray
    cost: np.ndarray
    lof: np.ndarray
    ynn: np.ndarray
    redundancy: np.ndarray
    violated: np.ndarray
    violation_kinds: dict[str, int] | None = None

    @property
    def n(self) -> int:
        return len(self.found)


class Evaluator:
    """Computes every metric for batches of counterfactuals against one model and training set.

    The LOF models (one per target class), the k-NN index and the model's training-set
    predictions are fitted once, at first use, and reused across batches and methods.
    """

    def __init__(self, schema: FeatureSchema, predict_proba: PredictProba, train_encoded: np.ndarray,
                 train_labels: np.ndarray, *, lof_neighbors: int = 30, ynn_k: int = 5):
        self.schema = schema
        self.encoder = TabularEncoder(schema)
        self.predict_proba = predict_proba
        self.train_encoded = np.asarray(train_encoded, dtype=np.float64)
        self.train_labels = np.asarray(train_labels)
        self.lof_neighbors = lof_neighbors
        self.ynn_k = ynn_k
        self._lof: dict = {}
        self._index: Any = None
        self._train_pred: np.ndarray | None = None

    def prepare(self, targets: np.ndarray | None = None) -> "Evaluator":
        """Fit the k-NN index, training predictions and the LOF models for ``targets`` (all classes if None)."""
        from sklearn.neighbors import NearestNeighbors

        if self._index is None:
            self._index = NearestNeighbors(n_neighbors=min(self.ynn_k, len(self.train_encoded))).fit(self.train_encoded)
            self._train_pred = np.asarray(self.predict_proba(self.train_encoded)).argmax(axis=1)
        classes = np.unique(self.train_labels) if targets is None else np.unique(targets)
        for t in classes:
            if t not in self._lof:
                self._lof[t] = _lof_model(self.train_encoded[self.train_labels == t], self.lof_neighbors)
        return self

    def evaluate(self, originals: pd.DataFrame, counterfactuals: pd.DataFrame, targets: np.ndarray | list,
                 max_changes: int | None, found: np.ndarray | None = None) -> RowMetrics:
        """Per-row metrics.  ``counterfactuals`` is aligned with ``originals``; rows without one may hold
        anything (e.g. NaN or the original) as long as ``found`` marks them False."""
        originals = _frame(self.schema, originals)
        counterfactuals = counterfactuals.reset_index(drop=True)
        targets = np.asarray(targets, dtype=np.int64)
        n = len(originals)
        if found is None:
            found = ~counterfactuals[self.schema.names].isna().any(axis=1).to_numpy()
        found = np.asarray(found, dtype=bool)
        self.prepare(targets)
        rows = np.flatnonzero(found)
        a, b, t = originals.iloc[rows].reset_index(drop=True), _frame(self.schema, counterfactuals.iloc[rows]), targets[rows]
        out = RowMetrics(found, np.zeros(n, bool), np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan),
                         np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan), np.zeros(n, bool))
        if rows.size == 0:
            return out
        # type problems (unknown level, non-numeric value) make encoding impossible: such rows are
        # violations and invalid, and get no distances
        out.violated[rows] = violation_flags(self.schema, a, b, max_changes)
        out.violation_kinds = violation_kinds(self.schema, a, b, max_changes)
        encodable = self._encodable(b)
        ok = rows[encodable]
        a, b, t = a[encodable].reset_index(drop=True), b[encodable].reset_index(drop=True), t[encodable]
        enc_a, enc_b = self.encoder.encode(a), self.encoder.encode(b)
        out.valid[ok] = valid_mask(self.predict_proba, enc_b, t)
        out.l0[ok] = l0_distance(self.schema, a, b)
        out.l2[ok] = np.linalg.norm(enc_b - enc_a, axis=1)
        out.cost[ok] = self.encoder.change_costs(a, b)
        out.lof[ok] = lof_scores(self.train_encoded, self.train_labels, enc_b, t, self.lof_neighbors, self._lof)
        out.ynn[ok] = ynn_scores(self.train_encoded, self._train_pred, enc_b, t, self.ynn_k, self._index)
        v = out.valid[ok]
        out.redundancy[ok[v]] = redundancy(self.encoder, self.predict_proba, a[v], b[v], t[v])
        return out

    def _encodable(self, frame: pd.DataFrame) -> np.ndarray:
        good = np.ones(len(frame), dtype=bool)
        for feat in self.schema.features:
            col = frame[feat.name]
            if feat.is_numeric:
                good &= np.isfinite(pd.to_numeric(col, errors="coerce").to_numpy(dtype=float))
            elif feat.kind == "binary":
                good &= col.isin([True, False]).to_numpy()
            else:
                good &= col.isin(feat.level_names).to_numpy()
        return good

    def summarise(self, originals: pd.DataFrame, counterfactuals: pd.DataFrame, targets: np.ndarray | list,
                  max_changes: int | None, found: np.ndarray | None = None, seconds: float | None = None) -> dict[str, Any]:
        """:func:`summarise_rows` of :meth:`evaluate`."""
        return summarise_rows(self.evaluate(originals, counterfactuals, targets, max_changes, found), seconds)


# ---------------------------------------------------------------------- summaries
def _mean(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")


def _std(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(values.std()) if values.size else float("nan")


def summarise_rows(m: RowMetrics, seconds: float | None = None) -> dict[str, Any]:
    """The summary dict: ``n, found, validity, l0_mean, l0_std, l2_mean, l2_std, cost_mean, lof_mean,
    lof_std, ynn_mean, redundancy_mean, violations, violation_kinds`` (+ ``seconds, per_second`` when timed)."""
    out: dict[str, Any] = {
        "n": m.n,
        "found": int(m.found.sum()),
        "validity": validity(m.found, m.valid),
        "l0_mean": _mean(m.l0), "l0_std": _std(m.l0),
        "l2_mean": _mean(m.l2), "l2_std": _std(m.l2),
        "cost_mean": _mean(m.cost),
        "lof_mean": _mean(m.lof), "lof_std": _std(m.lof),
        "ynn_mean": _mean(m.ynn),
        "redundancy_mean": _mean(m.redundancy),
        "violations": int(m.violated.sum()),
        "violation_kinds": dict(m.violation_kinds or {}),
    }
    if seconds is not None:
        out["seconds"] = float(seconds)
        out["per_second"] = throughput(m.n, seconds)
    return out


def summarise(schema: FeatureSchema, predict_proba: PredictProba, originals: pd.DataFrame,
              counterfactuals: pd.DataFrame, targets: np.ndarray | list, max_changes: int | None, *,
              train_encoded: np.ndarray, train_labels: np.ndarray, found: np.ndarray | None = None,
              seconds: float | None = None, lof_neighbors: int = 30, ynn_k: int = 5) -> dict[str, Any]:
    """All metrics of one batch in one dict (see the module docstring for each definition).

    ``targets``: target class indices; ``train_labels``: class indices of ``train_encoded``
    (scaled encoding of the training rows); ``found``: which rows returned a counterfactual
    (default: rows without missing values).
    """
    ev = Evaluator(schema, predict_proba, train_encoded, train_labels, lof_neighbors=lof_neighbors, ynn_k=ynn_k)
    return ev.summarise(originals, counterfactuals, targets, max_changes, found, seconds)
