"""Checks of decoded counterfactuals against the schema: the last gate before an answer leaves.

A counterfactual violates its constraints when it changes an immutable feature, leaves a
feature's range, moves against an allowed direction, exceeds ``max_change``, changes more than
``m`` features (a categorical feature counting once), or breaks a type (a non-integral integer,
an unknown level).  All checks are vectorised over rows.  :func:`admissible` runs the same checks
on the encoder's array form (codes, see :meth:`recourse.encoding.TabularEncoder.to_codes`),
vectorised over rows and features, for the engine's hot path.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .encoding import TabularEncoder, level_positions
from .schema import Feature, FeatureSchema

TOLERANCE = 1e-9


def _ordered_values(feat: Feature, column: pd.Series) -> np.ndarray:
    """Numeric view of a column in which the feature's direction can be compared."""
    if feat.is_numeric:
        return pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)
    if feat.kind == "binary":
        return column.astype(float).to_numpy()
    return level_positions(feat, column)


def changed_features(schema: FeatureSchema, originals: pd.DataFrame, counterfactuals: pd.DataFrame) -> np.ndarray:
    """Boolean (N, F) matrix: which features differ between the two tables."""
    a, b = originals.reset_index(drop=True), counterfactuals.reset_index(drop=True)
    cols = []
    for feat in schema.features:
        if feat.is_numeric:
            va, vb = _ordered_values(feat, a[feat.name]), _ordered_values(feat, b[feat.name])
            cols.append(np.abs(va - vb) > TOLERANCE)
        else:
            cols.append(a[feat.name].to_numpy() != b[feat.name].to_numpy())
    return np.stack(cols, axis=1) if cols else np.zeros((len(a), 0), dtype=bool)


def violations(
    schema: FeatureSchema, originals: pd.DataFrame, counterfactuals: pd.DataFrame, max_changes: int | None
) -> list[list[str]]:
    """Per row, the list of broken constraints (empty list = the counterfactual is admissible)."""
    a, b = originals.reset_index(drop=True), counterfactuals.reset_index(drop=True)
    n = len(a)
    found: list[list[str]] = [[] for _ in range(n)]

    def flag(mask: np.ndarray, message: str) -> None:
        for r in np.flatnonzero(mask):
            found[r].append(message)

    changed = changed_features(schema, a, b)
    for j, feat in enumerate(schema.features):
        name = feat.name
        moved = changed[:, j]
        if feat.immutable:
            flag(moved, f"{name}: immutable feature changed")
            continue
        va, vb = _ordered_values(feat, a[name]), _ordered_values(feat, b[name])
        flag(np.isnan(vb), f"{name}: not a valid value")
        if feat.is_numeric:
            lo, hi = feat.range
            flag((vb < lo - TOLERANCE) | (vb > hi + TOLERANCE), f"{name}: outside its range")
            if feat.kind == "integer":
                flag(np.abs(vb - np.round(vb)) > TOLERANCE, f"{name}: not a whole number")
        if feat.direction == "increase":
            flag(vb < va - TOLERANCE, f"{name}: decreased but may only increase")
        elif feat.direction == "decrease":
            flag(vb > va + TOLERANCE, f"{name}: increased but may only decrease")
        if feat.max_change is not None and feat.kind != "categorical":
            flag(np.abs(vb - va) > feat.max_change + TOLERANCE, f"{name}: changed by more than {feat.max_change}")
    if max_changes is not None:
        flag(changed.sum(axis=1) > max_changes, f"more than {max_changes} features changed")
    return found


def admissible(encoder: TabularEncoder, originals: np.ndarray, counterfactuals: np.ndarray,
               max_changes: int | None) -> np.ndarray:
    """(N,) True where :func:`violations` would list nothing, computed on codes (N, F)."""
    a, b = originals, counterfactuals
    changed = encoder.changed_codes(a, b)
    with np.errstate(invalid="ignore"):
        bad = (changed & encoder.immutable[None, :]).any(axis=1)
        mutable = ~encoder.immutable
        checks = np.isnan(b)
        num = encoder.is_numeric
        checks |= num & ((b < encoder.raw_low - TOLERANCE) | (b > encoder.raw_high + TOLERANCE))
        checks |= encoder.is_integer & (np.abs(b - np.round(b)) > TOLERANCE)
        checks |= encoder.increase & (b < a - TOLERANCE)
        checks |= encoder.decrease & (b > a + TOLERANCE)
        checks |= np.abs(b - a) > encoder.max_change + TOLERANCE
        bad |= (checks & mutable).any(axis=1)
    if max_changes is not None:
        bad |= changed.sum(axis=1) > max_changes
    return ~bad
