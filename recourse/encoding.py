r"""Encoding between raw records and the scaled vector the model and the solver work on.

Scaled encoding (every column in [0, 1]):

* continuous / integer:  z = (v − lo) / (hi − lo) with ``range = [lo, hi]``;
* ordinal with L levels: z = index / (L − 1);
* binary:                z ∈ {0, 1};
* categorical:           one-hot columns (the group counts as one feature).

Cost of a change (reported as ``cost``): :math:`\sum_j |\Delta_j| / s_j` over features, with
:math:`\Delta_j` in raw units (levels for ordinals, 1 for a binary or categorical switch) and
:math:`s_j` the feature's ``cost_scale`` (default: median absolute deviation in the data).
The solver's smooth proximity term is the matching weighted squared distance on the scaled
encoding, :math:`\sum_c W_c (y_c - x_c)^2` with :math:`W_c = (\text{span}_c / s_c)^2`
normalised by its median over columns and clipped to [1/25, 25].
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Literal

import numpy as np
import pandas as pd

from .errors import SchemaError
from .schema import Feature, FeatureSchema

Rounding = Literal["nearest", "away"]
NO_CHANGE = 1e-6  # scaled units; above float32 round-off on [0, 1]


def level_positions(feat: Feature, values: pd.Series | np.ndarray) -> np.ndarray:
    """Position of each value among the feature's levels (float; NaN for an unknown value)."""
    pos = pd.Index(feat.level_names).get_indexer(np.asarray(values, dtype=object)).astype(float)
    pos[pos < 0] = np.nan
    return pos


def complete_schema(schema: FeatureSchema, data: pd.DataFrame) -> FeatureSchema:
    """Fill data-derived defaults: numeric ranges (data min/max) and cost scales (MAD).

    The MAD falls back to the standard deviation, then to a quarter of the span, when zero.
    Categorical and binary features get cost scale 1 (one switch costs 1).
    """
    features = []
    for feat in schema.features:
        updates: dict[str, Any] = {}
        if feat.name not in data.columns:
            raise SchemaError(f"feature '{feat.name}' is not a column of the training data")
        col = data[feat.name]
        if feat.is_numeric:
            values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float)
            if np.isnan(values).any():
                raise SchemaError(f"feature '{feat.name}': non-numeric or missing values in the data")
            if feat.range is None:
                lo, hi = float(values.min()), float(values.max())
                if feat.kind == "integer":
                    lo, hi = math.floor(lo), math.ceil(hi)
                if hi <= lo:
                    hi = lo + 1.0
                updates["range"] = (lo, hi)
            span = (updates.get("range") or feat.range)
            if feat.cost_scale is None:
                updates["cost_scale"] = _robust_scale(values, span[1] - span[0])
        elif feat.kind == "ordinal" and feat.cost_scale is None:
            idx = level_positions(feat, col)
            updates["cost_scale"] = _robust_scale(idx, len(feat.level_names) - 1)
        elif feat.cost_scale is None:
            updates["cost_scale"] = 1.0
        features.append(feat.model_copy(update=updates))
    return schema.model_copy(update={"features": features})


def _robust_scale(values: np.ndarray, span: float) -> float:
    mad = float(np.median(np.abs(values - np.median(values))))
    if mad > 0:
        return mad
    std = float(np.std(values))
    return std if std > 0 else max(span / 4.0, 1e-6)


@dataclass(frozen=True)
class FeatureColumns:
    """Where one feature lives in the scaled vector."""

    feature: Feature
    start: int
    stop: int

    @property
    def slice(self) -> slice:
        return slice(self.start, self.stop)


class TabularEncoder:
    """Raw records ⇄ scaled vectors for one completed :class:`FeatureSchema`."""

    def __init__(self, schema: FeatureSchema):
        for feat in schema.features:
            if feat.is_numeric and feat.range is None:
                raise SchemaError(f"feature '{feat.name}' has no range; complete the schema with data first")
        self.schema = schema
        self.layout: list[FeatureColumns] = []
        columns: list[str] = []
        for feat in schema.features:
            width = len(feat.levels) if feat.kind == "categorical" else 1
            self.layout.append(FeatureColumns(feat, len(columns), len(columns) + width))
            if feat.kind == "categorical":
                columns += [f"{feat.name}={lvl}" for lvl in feat.level_names]
            else:
                columns.append(feat.name)
        self.columns = columns
        self.groups = np.concatenate([np.full(fc.stop - fc.start, i) for i, fc in enumerate(self.layout)])

    @property
    def n_columns(self) -> int:
        return len(self.columns)

    @property
    def n_features(self) -> int:
        return len(self.layout)

    # ------------------------------------------------------------------ encode
    def encode(self, records: pd.DataFrame | Iterable[dict[str, Any]]) -> np.ndarray:
        """Scaled encoding (N, D) of validated records or a DataFrame with one column per feature."""
        frame = records if isinstance(records, pd.DataFrame) else pd.DataFrame(list(records))
        out = np.zeros((len(frame), self.n_columns), dtype=np.float64)
        for fc in self.layout:
            feat = fc.feature
            col = frame[feat.name]
            if feat.is_numeric:
                lo, hi = feat.range
                out[:, fc.start] = (col.to_numpy(dtype=float) - lo) / (hi - lo)
            elif feat.kind == "binary":
                out[:, fc.start] = col.astype(bool).to_numpy(dtype=float)
            else:
                pos = level_positions(feat, col)
                if np.isnan(pos).any():
                    bad = col.iloc[int(np.flatnonzero(np.isnan(pos))[0])]
                    raise SchemaError(f"feature '{feat.name}': unknown category {bad!r} in the data")
                idx = pos.astype(int)
                if feat.kind == "ordinal":
                    out[:, fc.start] = idx / (len(feat.levels) - 1)
                else:
                    out[np.arange(len(frame)), fc.start + idx] = 1.0
        return out

    # ------------------------------------------------------------------ bounds
    def bounds(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-row bounds (lower ≤ 0 ≤ upper) on the scaled displacement w = y − x.

        The box [0, 1] of every column, pinned for immutables, one-sided for increase/decrease,
        and within ±max_change (raw units, or levels for ordinals).
        """
        lower, upper = -x.copy(), 1.0 - x
        for fc in self.layout:
            feat, s = fc.feature, fc.slice
            if feat.immutable:
                lower[:, s] = 0.0
                upper[:, s] = 0.0
                continue
            if feat.direction == "increase":
                lower[:, s] = 0.0
            elif feat.direction == "decrease":
                upper[:, s] = 0.0
            if feat.max_change is not None and feat.kind != "categorical":
                step = feat.max_change / self._span(feat)
                lower[:, s] = np.maximum(lower[:, s], -step)
                upper[:, s] = np.minimum(upper[:, s], step)
        return np.minimum(lower, 0.0), np.maximum(upper, 0.0)

    @staticmethod
    def _span(feat: Feature) -> float:
        if feat.is_numeric:
            return feat.range[1] - feat.range[0]
        if feat.kind == "ordinal":
            return float(len(feat.levels) - 1)
        return 1.0

    def simplex_groups(self) -> list[list[int]]:
        """Column indices of each mutable categorical feature's one-hot group."""
        return [list(range(fc.start, fc.stop)) for fc in self.layout
                if fc.feature.kind == "categorical" and not fc.feature.immutable]

    def proximity_weights(self) -> np.ndarray:
        """Column weights W_c of the smooth proximity term (see the module docstring)."""
        w = np.empty(self.n_columns)
        for fc in self.layout:
            feat = fc.feature
            scale = feat.cost_scale or 1.0
            if feat.kind == "categorical":
                w[fc.slice] = 0.5 / scale**2  # a switch moves two columns by 1
            else:
                w[fc.slice] = (self._span(feat) / scale) ** 2
        w = w / np.median(w)
        return np.clip(w, 1 / 25, 25)

    # ------------------------------------------------------------------ decode
    def decode(self, z: np.ndarray, originals: pd.DataFrame, rounding: Rounding = "nearest") -> pd.DataFrame:
        """Raw records (a DataFrame) from scaled rows, repaired onto each feature's type and bounds.

        Features whose columns did not move keep the original value exactly.  Integers and
        ordinal levels round to the nearest value (``rounding="nearest"``) or away from the
        original (``"away"``), then clip to the row's allowed values; one-hot groups become
        their arg-max level (with ``"away"``, the best level other than the original once the
        group moved by more than 0.25).
        """
        x = self.encode(originals)
        moved = np.abs(z - x) > NO_CHANGE
        out = originals.reset_index(drop=True).copy()
        for fc in self.layout:
            feat, s = fc.feature, fc.slice
            changed = moved[:, s].any(axis=1)
            if feat.immutable or not changed.any():
                continue
            rows = np.flatnonzero(changed)
            column = out[feat.name].to_numpy().copy()
            column[rows] = self._decode_feature(feat, z[rows, s], x[rows, s], rounding)
            out[feat.name] = column
        return out

    def _decode_feature(self, feat: Feature, zs: np.ndarray, xs: np.ndarray, rounding: Rounding) -> np.ndarray:
        if feat.kind == "categorical":
            orig = xs.argmax(axis=1)
            pick = zs.argmax(axis=1)
            if rounding == "away":
                moved = np.abs(zs - xs).max(axis=1) > 0.25
                others = zs.copy()
                others[np.arange(len(zs)), orig] = -np.inf
                pick = np.where(moved, others.argmax(axis=1), pick)
            return np.asarray(feat.level_names, dtype=object)[pick]
        z1, x1 = zs[:, 0], xs[:, 0]
        if feat.kind == "binary":
            if rounding == "away":
                out = np.where(np.abs(z1 - x1) > 0.25, 1.0 - x1, x1)
            else:
                out = (z1 > 0.5).astype(float)
            if feat.direction == "increase":
                out = np.maximum(out, x1)
            elif feat.direction == "decrease":
                out = np.minimum(out, x1)
            return out > 0.5
        span = self._span(feat)
        lo = feat.range[0] if feat.is_numeric else 0.0
        raw, raw_x = lo + z1 * span, lo + x1 * span
        lower, upper = self._raw_bounds(feat, raw_x)
        if feat.kind == "continuous":
            if feat.precision is None:
                return np.clip(raw, lower, upper)
            q = 10.0 ** feat.precision
            rounded = _round(raw * q, raw_x * q, rounding) / q
            lower_q, upper_q = np.ceil(lower * q - 1e-9) / q, np.floor(upper * q + 1e-9) / q
            return np.clip(rounded, lower_q, upper_q)
        rounded = np.clip(_round(raw, raw_x, rounding), np.ceil(lower - 1e-9), np.floor(upper + 1e-9))
        if feat.kind == "integer":
            return rounded.astype(np.int64)
        return np.asarray(feat.level_names, dtype=object)[rounded.astype(int)]

    def _raw_bounds(self, feat: Feature, raw_x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Allowed raw values (index for ordinals) per row: range ∩ direction ∩ max_change."""
        lo, hi = feat.range if feat.is_numeric else (0.0, float(len(feat.levels) - 1))
        lower, upper = np.full_like(raw_x, lo), np.full_like(raw_x, hi)
        if feat.direction == "increase":
            lower = np.maximum(lower, raw_x)
        elif feat.direction == "decrease":
            upper = np.minimum(upper, raw_x)
        if feat.max_change is not None:
            lower = np.maximum(lower, raw_x - feat.max_change)
            upper = np.minimum(upper, raw_x + feat.max_change)
        return lower, upper

    # ------------------------------------------------------------------ costs
    def change_costs(self, originals: pd.DataFrame, counterfactuals: pd.DataFrame) -> np.ndarray:
        """:math:`\\sum_j |\\Delta_j| / s_j` per row (see the module docstring)."""
        a, b = originals.reset_index(drop=True), counterfactuals.reset_index(drop=True)
        total = np.zeros(len(a))
        for fc in self.layout:
            feat = fc.feature
            if feat.is_numeric:
                delta = np.abs(b[feat.name].to_numpy(dtype=float) - a[feat.name].to_numpy(dtype=float))
            elif feat.kind == "ordinal":
                delta = np.abs(level_positions(feat, b[feat.name]) - level_positions(feat, a[feat.name]))
            else:
                delta = (a[feat.name].to_numpy() != b[feat.name].to_numpy()).astype(float)
            total += delta / (feat.cost_scale or 1.0)
        return total


def _round(values: np.ndarray, originals: np.ndarray, rounding: Rounding) -> np.ndarray:
    if rounding == "nearest":
        return np.round(values)
    up = values > originals + 1e-6
    down = values < originals - 1e-6
    return np.where(up, np.ceil(values - 1e-6), np.where(down, np.floor(values + 1e-6), np.round(values)))
