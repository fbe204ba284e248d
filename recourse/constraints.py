"""Checks of decoded counterfactuals against the schema: the last gate before an answer leaves.

A counterfactual violates its constraints when it changes an immutable feature, leaves a
feature's range, moves against an allowed direction, exceeds ``max_change``, changes more than
``m`` features (a categorical feature counting once), or breaks a type (a non-integral integer,
an unknown level).  With consequences (:mod:`recourse.consequences`) the checks apply to the
interventions behind a counterfactual.  The checks are defined once, in :class:`recourse.actionset.ActionSet`
(:meth:`~recourse.actionset.ActionSet.violations`, :meth:`~recourse.actionset.ActionSet.admissible`);
:func:`violations` converts the tables to codes (numbers, level positions, 0/1) and lists the
messages, :func:`admissible` runs the same checks on the encoder's codes for the engine's hot path.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .actionset import TOLERANCE, ActionSet
from .encoding import TabularEncoder, level_positions
from .schema import Feature, FeatureSchema

__all__ = ["TOLERANCE", "admissible", "changed_features", "violations"]


def _ordered_values(feat: Feature, column: pd.Series) -> np.ndarray:
    """Numeric view (codes) of a column in which the feature's direction can be compared (NaN: not a valid value)."""
    if feat.is_numeric:
        return pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)
    if feat.kind == "binary":
        try:
            return column.astype(float).to_numpy()
        except (TypeError, ValueError):  # e.g. a string: not a valid value
            return pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)
    return level_positions(feat, column)


def changed_features(schema: FeatureSchema, originals: pd.DataFrame, counterfactuals: pd.DataFrame) -> np.ndarray:
    """Boolean (N, F) matrix: which features a person changes between the two tables (the
    interventions: a feature moved only as a consequence of others does not count)."""
    a, b = originals.reset_index(drop=True), counterfactuals.reset_index(drop=True)
    cols = []
    for feat in schema.features:
        if feat.is_numeric:
            va, vb = _ordered_values(feat, a[feat.name]), _ordered_values(feat, b[feat.name])
            cols.append(np.abs(va - vb) > TOLERANCE)
        else:
            cols.append(a[feat.name].to_numpy() != b[feat.name].to_numpy())
    changed = np.stack(cols, axis=1) if cols else np.zeros((len(a), 0), dtype=bool)
    if schema.consequences and len(a):
        actions = ActionSet(schema)
        codes_a = _codes(schema, a)
        acted = actions.changed(codes_a, actions.consequences.interventions(codes_a, _codes(schema, b)))
        changed = np.where(actions.consequences.is_effect, acted, changed)
    return changed


def _codes(schema: FeatureSchema, frame: pd.DataFrame) -> np.ndarray:
    """(N, F) codes of a table, tolerant of invalid entries (NaN)."""
    cols = [_ordered_values(feat, frame[feat.name]) for feat in schema.features]
    return np.stack(cols, axis=1) if cols else np.zeros((len(frame), 0))


def violations(
    schema: FeatureSchema, originals: pd.DataFrame, counterfactuals: pd.DataFrame, max_changes: int | None
) -> list[list[str]]:
    """Per row, the list of broken constraints (empty list = the counterfactual is admissible).

    Which features changed is read off the raw values (:func:`changed_features`); the checks are
    :meth:`ActionSet.violations` on the codes.
    """
    a, b = originals.reset_index(drop=True), counterfactuals.reset_index(drop=True)
    changed = changed_features(schema, a, b)
    actions = ActionSet(schema)
    codes_a = _codes(schema, a)
    acted = actions.consequences.interventions(codes_a, _codes(schema, b))  # the rules hold for the interventions
    return actions.violations(codes_a, acted, max_changes, changed=changed)


def admissible(encoder: TabularEncoder, originals: np.ndarray, counterfactuals: np.ndarray,
               max_changes: int | None) -> np.ndarray:
    """(N,) True where :func:`violations` would list nothing, computed on codes (N, F) (:meth:`ActionSet.admissible`)."""
    return encoder.action_set.admissible(originals, counterfactuals, max_changes)
