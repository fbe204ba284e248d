r"""Encoding between raw records and the scaled vector the model and the solver work on.

Scaled encoding (every column in [0, 1]):

* continuous / integer:  z = (v − lo) / (hi − lo) with ``range = [lo, hi]``;
* ordinal with L levels: z = index / (L − 1);
* binary:                z ∈ {0, 1};
* categorical:           one-hot columns (the group counts as one feature).

Cost of a change (reported as ``cost``): :math:`\sum_j |\Delta_j| / s_j` over features, with
:math:`\Delta_j` in raw units (levels for ordinals, 1 for a binary or categorical switch) and
:math:`s_j` the feature's ``cost_scale`` (default: median absolute deviation in the data).
What may change and the cost are defined once, in :mod:`recourse.actionset` (the encoder's
``action_set``); the bounds, the decoding's clipping and the costs here delegate to it.
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

from .actionset import ActionSet, feature_span
from .errors import SchemaError
from .schema import MAX_ABS_VALUE, Feature, FeatureSchema

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
                if max(abs(lo), abs(hi)) > MAX_ABS_VALUE:
                    raise SchemaError(f"feature '{feat.name}': the data reach {lo:g} .. {hi:g}, beyond ±{MAX_ABS_VALUE:g}; "
                                      "rescale the column (e.g. to thousands)")
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
        self.action_set = ActionSet(schema)
        """What may change and what it costs (the one definition: :mod:`recourse.actionset`)."""
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
        self._prepare_arrays()

    # ------------------------------------------------------------------ array form ("codes")
    def _prepare_arrays(self) -> None:
        """Per-feature index and parameter arrays for the array paths (computed once per schema).

        A record's *codes* are one float per feature: the value of a numeric feature, the level
        index of an ordinal or categorical one, 0/1 for a binary one (NaN: an unknown level).
        """
        feats = [fc.feature for fc in self.layout]
        self.starts = np.array([fc.start for fc in self.layout], dtype=np.int64)
        self.level_names = [np.asarray(f.level_names, dtype=object) if f.levels else None for f in feats]
        self._level_index = [{name: i for i, name in enumerate(f.level_names)} if f.kind in ("categorical", "ordinal")
                             else None for f in feats]
        actions = self.action_set
        self.is_numeric, self.is_integer = actions.is_numeric, actions.is_integer
        self.is_binary, self.is_ordinal, self.is_categorical = actions.is_binary, actions.is_ordinal, actions.is_categorical
        self.immutable, self.increase, self.decrease = actions.immutable, actions.increase, actions.decrease
        self.raw_low, self.raw_high = actions.low, actions.high  # levels for ordinals, {0, 1} for binaries
        self.max_change, self.cost_scale = actions.max_change, actions.cost_scale  # max_change inf: none
        # scalar (one-column) features: z = (code - offset) / divisor; decoding: code = offset + z * divisor
        self.scalar = np.flatnonzero(~self.is_categorical)
        self.scalar_columns = self.starts[self.scalar]
        self._offset = actions.low[self.scalar]
        self._divisor = actions.span[self.scalar]
        self._dec_binary = self.is_binary[self.scalar]
        self._dec_free = actions.free[self.scalar]
        # categorical features: (G, L) column layout padded with -1
        self.categorical = np.flatnonzero(self.is_categorical)
        width = max((self.layout[j].stop - self.layout[j].start for j in self.categorical), default=0)
        self._cat_cols = np.full((len(self.categorical), width), -1, dtype=np.int64)
        for g, j in enumerate(self.categorical):
            fc = self.layout[j]
            self._cat_cols[g, : fc.stop - fc.start] = np.arange(fc.start, fc.stop)
        self._cat_valid = self._cat_cols >= 0
        self._cat_starts = self.starts[self.categorical]

    def to_codes(self, records: pd.DataFrame | Iterable[dict[str, Any]]) -> np.ndarray:
        """Codes (N, F) of validated records (a DataFrame or dicts); NaN marks an unknown level."""
        if isinstance(records, pd.DataFrame):
            frame = records
            n = len(frame)
            column = lambda name: frame[name].to_numpy()  # noqa: E731
        else:
            rows = records if isinstance(records, list) else list(records)
            n = len(rows)
            column = lambda name: [r[name] for r in rows]  # noqa: E731
        out = np.empty((n, self.n_features), dtype=np.float64)
        for j, fc in enumerate(self.layout):
            feat, values = fc.feature, column(fc.feature.name)
            if feat.is_numeric:
                out[:, j] = np.asarray(values, dtype=float) if n else 0.0
            elif feat.kind == "binary":
                out[:, j] = np.asarray(values).astype(bool) if n else 0.0
            else:
                index = self._level_index[j]
                out[:, j] = [index.get(v, np.nan) if isinstance(v, str) else np.nan for v in values]
        return out

    def encode_codes(self, codes: np.ndarray) -> np.ndarray:
        """Scaled encoding (N, D) of codes (see the module docstring); ``SchemaError`` on an unknown level."""
        n = len(codes)
        out = np.zeros((n, self.n_columns), dtype=np.float64)
        out[:, self.scalar_columns] = (codes[:, self.scalar] - self._offset) / self._divisor
        if self.categorical.size:
            idx = codes[:, self.categorical]
            if np.isnan(idx).any():
                r, g = np.argwhere(np.isnan(idx))[0]
                raise SchemaError(f"feature '{self.layout[self.categorical[g]].feature.name}': unknown category in the data")
            cols = self._cat_starts[None, :] + idx.astype(np.int64)
            out[np.repeat(np.arange(n), len(self.categorical)), cols.reshape(-1)] = 1.0
        return out

    def decode_codes(self, z: np.ndarray, x: np.ndarray, codes: np.ndarray, rounding: Rounding = "nearest",
                     actions: ActionSet | None = None) -> np.ndarray:
        """:meth:`decode` on arrays: codes of the decoded rows from scaled rows ``z``.

        ``x`` = ``encode_codes(codes)`` are the originals' scaled rows.  Same rules as
        :meth:`decode`, vectorised over rows and features; ``actions``: the call's action set
        (default: the schema's, :attr:`action_set`).
        """
        actions = self.action_set if actions is None else actions
        out = codes.copy()
        if len(z) == 0:
            return out
        update = self.moved_features(z, x, actions)
        if not update.any():
            return out
        s = self.scalar
        if s.size:
            values = self._decode_scalar(z[:, self.scalar_columns], x[:, self.scalar_columns], rounding, actions)
            out[:, s] = np.where(update[:, s], values, codes[:, s])
        c = self.categorical
        if c.size:
            out[:, c] = np.where(update[:, c], self._decode_categorical(z, x, rounding, actions), codes[:, c])
        return out

    def moved_features(self, z: np.ndarray, x: np.ndarray, actions: ActionSet | None = None) -> np.ndarray:
        """(N, F): mutable features (of ``actions``, default the schema's) with a column that moved by more than ``NO_CHANGE``."""
        if z.shape[1] == 0:
            return np.zeros((len(z), self.n_features), dtype=bool)
        immutable = self.immutable if actions is None else actions.immutable
        return (np.maximum.reduceat(np.abs(z - x), self.starts, axis=1) > NO_CHANGE) & ~immutable

    def _decode_scalar(self, z1: np.ndarray, x1: np.ndarray, rounding: Rounding, actions: ActionSet) -> np.ndarray:
        """Codes of every one-column feature, decoded from (N, S) scaled values (the rules of :meth:`decode`).

        The rounded value is clipped into the original's :meth:`ActionSet.box` (range ∩ direction ∩
        max_change on the lattice); an ordinal level the transitions do not allow moves to the
        nearest allowed one (:meth:`ActionSet.allowed_levels`); a change smaller than the feature's
        ``min_change`` goes to the nearer of the original and the smallest allowed change
        (``"away"``: always the latter; :meth:`ActionSet.push_out`).
        """
        low, span = self._offset, self._divisor
        raw, raw_x = low + z1 * span, low + x1 * span
        lower, upper = actions.box(raw_x, self.scalar)
        index = actions.lattice_index
        with np.errstate(invalid="ignore"):
            rounded = actions.lattice_value(_round(index(raw, self.scalar), index(raw_x, self.scalar), rounding), self.scalar)
            empty = lower > upper  # no lattice point in the box (an off-lattice original with a tight limit): stay
            lattice = np.where(empty, raw_x, np.clip(rounded, lower, upper))
            free = np.clip(raw, lower, upper)
        if rounding == "away":
            binary = np.where(np.abs(z1 - x1) > 0.25, 1.0 - x1, x1)
        else:
            binary = (z1 > 0.5).astype(float)
        binary = (np.clip(binary, lower, upper) > 0.5).astype(float)
        lattice = actions.allowed_levels(self.scalar, raw_x, lattice, lower, upper)
        numbers = np.where(self._dec_free, free, lattice)
        numbers = actions.push_out(self.scalar, raw_x, numbers, lower, upper, away=rounding == "away")
        return np.where(self._dec_binary, binary, numbers)

    def _decode_categorical(self, z: np.ndarray, x: np.ndarray, rounding: Rounding, actions: ActionSet) -> np.ndarray:
        """Level index of every categorical feature: the arg-max level among those the action set's
        ``transitions`` allow from the original one (``"away"``: see :meth:`decode`)."""
        cols = np.where(self._cat_valid, self._cat_cols, 0)
        xs = np.where(self._cat_valid, x[:, cols], -np.inf)
        orig = xs.argmax(axis=2)
        width = cols.shape[1]
        allowed = actions.transition[self.categorical[None, :], orig][..., :width]
        zs = np.where(self._cat_valid & allowed, z[:, cols], -np.inf)
        pick = zs.argmax(axis=2)
        if rounding == "away":
            moved = np.where(self._cat_valid, np.abs(z[:, cols] - x[:, cols]), 0.0).max(axis=2) > 0.25
            np.put_along_axis(zs, orig[..., None], -np.inf, axis=2)
            other = np.isfinite(zs).any(axis=2)
            pick = np.where(moved & other, zs.argmax(axis=2), pick)
        return pick.astype(float)

    def feature_values(self, j: int, codes: np.ndarray) -> np.ndarray:
        """Raw values of feature ``j`` from its codes: int64, float, bool or level names (object)."""
        feat = self.layout[j].feature
        if feat.kind == "integer":
            return codes.astype(np.int64)
        if feat.kind == "continuous":
            return codes.astype(float)
        if feat.kind == "binary":
            return codes > 0.5
        return self.level_names[j][codes.astype(np.int64)]

    def frame_from_codes(self, codes: np.ndarray) -> pd.DataFrame:
        """Raw records (a DataFrame in schema order) from codes."""
        return pd.DataFrame({fc.feature.name: self.feature_values(j, codes[:, j]) for j, fc in enumerate(self.layout)},
                            columns=[fc.feature.name for fc in self.layout])

    def records_from_codes(self, codes: np.ndarray) -> list[dict[str, Any]]:
        """Raw records as dicts of plain Python values (int, float, bool, str) from codes."""
        names = [fc.feature.name for fc in self.layout]
        columns = [self.feature_values(j, codes[:, j]).tolist() for j in range(self.n_features)]
        return [dict(zip(names, row)) for row in zip(*columns)] if columns else [{} for _ in range(len(codes))]

    def change_costs_codes(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        r""":meth:`change_costs` on codes: :math:`\sum_j |\Delta_j| / s_j` per row (:meth:`ActionSet.cost`)."""
        return self.action_set.cost(a, b)

    def changed_codes(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Boolean (N, F): which features differ (numeric: by more than 1e-9; :meth:`ActionSet.changed`)."""
        return self.action_set.changed(a, b)

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
        codes = self.to_codes(frame)
        unknown = np.isnan(codes) & (self.is_categorical | self.is_ordinal)
        if unknown.any():
            j = int(np.flatnonzero(unknown.any(axis=0))[0])
            name = self.layout[j].feature.name
            bad = frame[name].iloc[int(np.flatnonzero(unknown[:, j])[0])]
            raise SchemaError(f"feature '{name}': unknown category {bad!r} in the data")
        return self.encode_codes(codes)

    # ------------------------------------------------------------------ bounds
    def bounds(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-row bounds (lower ≤ 0 ≤ upper) on the scaled displacement w = y − x (:meth:`ActionSet.scaled_bounds`).

        The box [0, 1] of every column, pinned for immutables, one-sided for increase/decrease,
        and within ±max_change (raw units, or levels for ordinals).
        """
        return self.action_set.scaled_bounds(x)

    _span = staticmethod(feature_span)

    def simplex_groups(self) -> list[list[int]]:
        """Column indices of each mutable categorical feature's one-hot group."""
        return [list(range(fc.start, fc.stop)) for j, fc in enumerate(self.layout)
                if fc.feature.kind == "categorical" and not self.action_set.immutable[j]]

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
        group moved by more than 0.25).  (The array form is :meth:`decode_codes`.)
        """
        codes = self.to_codes(originals)
        x = self.encode(originals)
        new = self.decode_codes(z, x, codes, rounding)
        out = originals.reset_index(drop=True).copy()
        update = self.moved_features(z, x)
        for j in np.flatnonzero(update.any(axis=0)):
            rows = np.flatnonzero(update[:, j])
            name = self.layout[j].feature.name
            column = out[name].to_numpy().copy()
            column[rows] = self.feature_values(int(j), new[rows, j])
            out[name] = column
        return out

    # ------------------------------------------------------------------ costs
    def change_costs(self, originals: pd.DataFrame, counterfactuals: pd.DataFrame) -> np.ndarray:
        """:math:`\\sum_j |\\Delta_j| / s_j` per row (see the module docstring; :meth:`ActionSet.cost` on the codes)."""
        return self.action_set.cost(self.to_codes(originals), self.to_codes(counterfactuals))


def _round(values: np.ndarray, originals: np.ndarray, rounding: Rounding) -> np.ndarray:
    if rounding == "nearest":
        return np.round(values)
    up = values > originals + 1e-6
    down = values < originals - 1e-6
    return np.where(up, np.ceil(values - 1e-6), np.where(down, np.floor(values + 1e-6), np.round(values)))
