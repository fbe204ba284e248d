"""A draft feature schema from a table, for a person to review (``recourse schema infer``).

Each column is given a kind by these rules, and every guess is written into the feature's
``note`` so that the reviewer sees why:

* two distinct values (booleans, 0/1, yes/no, or any two labels) → ``binary``;
* numbers, all whole → ``integer``; other numbers → ``continuous`` with ``precision`` = the most
  decimals seen (at most 4);
* text with at most :data:`MAX_LEVELS` distinct values → ``categorical`` (levels by frequency;
  a reviewer who knows an order changes the kind to ``ordinal`` and lists the levels lowest
  first); more distinct values → left out as free text (reported);
* numeric ranges are the data's minimum and maximum widened by :data:`RANGE_MARGIN` of the span
  on each side (not below 0 when no value is negative), rounded outwards to the precision, so a
  later applicant just outside the training rows is still accepted;
* a column whose name looks like a protected attribute (age, sex, gender, race, nationality,
  religion, marital status, ...) is marked ``immutable``;
* the target's classes are its distinct values; the favourable class is guessed as the most
  frequent one and must be checked; a numeric target with more than :data:`MAX_LEVELS` distinct
  values is drafted as a score (regression, favourable: at least its median, to be checked).

Missing cells (empty, NaN, or one of the ``na_values`` markers such as '?') are counted per
column and reported: training needs a value in every cell (``drop_missing``
leaves such rows out).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .schema import FeatureSchema

MAX_LEVELS = 30
"""Most distinct values a text column may have to become a categorical feature."""
RANGE_MARGIN = 0.1
"""Share of a numeric column's span added below its minimum and above its maximum."""
PROTECTED = re.compile(r"(^|_)(age|sex|gender|race|ethnic\w*|nationality|native_country|country_of_birth|foreign\w*|"
                       r"religion|marital\w*|status_sex|personal_status|disability|pregnan\w*|birth\w*)($|_)", re.I)


@dataclass
class Draft:
    """The draft schema (a JSON-ready dict that :class:`FeatureSchema` accepts) and what to review."""

    schema: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    left_out: dict[str, str] = field(default_factory=dict)
    missing: dict[str, int] = field(default_factory=dict)


def _plain(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (np.bool_,)):
        return bool(value)
    return value


def _decimals(values: np.ndarray, limit: int = 4) -> int:
    for d in range(limit + 1):
        if np.allclose(values, np.round(values, d), rtol=0, atol=1e-9):
            return d
    return limit


def _widened(low: float, high: float, decimals: int) -> tuple[float, float]:
    span = high - low if high > low else max(abs(high), 1.0)
    lo, hi = low - RANGE_MARGIN * span, high + RANGE_MARGIN * span
    if low >= 0:
        lo = max(lo, 0.0)
    scale = 10.0 ** decimals
    return math.floor(lo * scale) / scale, math.ceil(hi * scale) / scale


def _numeric(column: pd.Series) -> pd.Series | None:
    """The column as numbers when every present cell is one (text cells such as ' 12' included)."""
    if pd.api.types.is_bool_dtype(column):
        return None
    if pd.api.types.is_numeric_dtype(column):
        return column.astype(float)
    converted = pd.to_numeric(column.astype(str).str.strip(), errors="coerce")
    return converted if converted.notna().sum() == column.notna().sum() else None


def draft_feature(name: str, column: pd.Series) -> tuple[dict[str, Any] | None, str]:
    """One feature's draft (None: left out) and the reason, from its present cells."""
    present = column.dropna()
    distinct = present.unique()
    label = name.replace("_", " ").strip()
    feature: dict[str, Any] = {"name": name, "label": label}
    protected = bool(PROTECTED.search(name))
    if len(distinct) == 0:
        return None, "no values"
    numbers = _numeric(present)
    values = sorted((_plain(v) for v in distinct), key=str)
    truthy = {str(v).strip().lower() for v in values}
    boolean = truthy <= {"true", "false"} or truthy <= {"0", "1", "0.0", "1.0"}
    if len(distinct) == 2 and (boolean or numbers is None):
        feature["kind"] = "binary"
        if boolean:
            why = "two values, read as false/true"
        else:
            feature["levels"] = [str(v) for v in values]
            why = f"two values, '{values[0]}' read as false and '{values[1]}' as true"
    elif numbers is not None:
        values = numbers.to_numpy(dtype=float)
        whole = bool(np.allclose(values, np.round(values)))
        decimals = 0 if whole else _decimals(values)
        feature["kind"] = "integer" if whole else "continuous"
        if not whole:
            feature["precision"] = decimals
        low, high = _widened(float(values.min()), float(values.max()), decimals)
        feature["range"] = [int(low) if whole else low, int(high) if whole else high]
        shown = (lambda v: f"{v:.0f}") if whole else (lambda v: f"{v:.{decimals}f}")
        why = (f"{'whole numbers' if whole else f'numbers with up to {decimals} decimals'} from {shown(values.min())} to "
               f"{shown(values.max())}; range widened by {int(RANGE_MARGIN * 100)} % of the span on each side")
    elif len(distinct) <= MAX_LEVELS:
        counts = present.astype(str).str.strip().value_counts()
        feature["kind"] = "categorical"
        feature["levels"] = [str(v) for v in counts.index]
        why = (f"{len(counts)} text values, levels by frequency; if they have an order, make the kind 'ordinal' "
               "and list the levels lowest first")
    else:
        return None, f"free text ({len(distinct)} distinct values, more than {MAX_LEVELS})"
    if protected:
        feature["immutable"] = True
        why += "; the name looks like a protected attribute: immutable"
    feature["note"] = f"Draft: {why}. Review the kind, range, direction and whether a person can act on it."
    return feature, why


def draft_schema(table: pd.DataFrame, target: str | None = None, name: str = "draft") -> Draft:
    """A :class:`Draft` for ``table`` (cells already read with the missing-value markers as NaN)."""
    if target is not None and target not in table.columns:
        raise ValueError(f"`target`: no column {target!r}; columns: {', '.join(map(str, table.columns))}")
    draft = Draft({"name": name, "description": f"Draft schema inferred from a table of {len(table)} rows; review every feature.",
                   "features": []})
    for column in table.columns:
        if column == target:
            continue
        series = table[column]
        if isinstance(series, pd.Series) and series.dtype == object:
            series = series.map(lambda v: v.strip() if isinstance(v, str) else v).replace("", np.nan)
        missing = int(series.isna().sum())
        if missing:
            draft.missing[str(column)] = missing
        feature, why = draft_feature(str(column), series)
        if feature is None:
            draft.left_out[str(column)] = why
            continue
        draft.schema["features"].append(feature)
    if target is not None and _is_score(table[target]):
        scores = pd.to_numeric(table[target], errors="coerce").dropna()
        median = float(scores.median())
        draft.schema["target"] = {"kind": "regression", "name": target, "precision": 2, "at_least": round(median, 4)}
        draft.notes.append(f"target '{target}': a number with {scores.nunique()} distinct values, drafted as a score "
                           f"(regression); the favourable side is guessed as at least the median ({median:g}): set "
                           "at_least or at_most to the threshold your decision uses")
    elif target is not None:
        labels = table[target].dropna()
        labels = labels.map(lambda v: v.strip() if isinstance(v, str) else v)
        counts = labels.value_counts()
        classes = sorted((_plain(v) for v in counts.index), key=lambda v: (isinstance(v, str), v))
        favourable = _plain(counts.index[0])
        draft.schema["target"] = {"name": target, "classes": classes, "favourable": favourable}
        draft.notes.append(f"target '{target}': classes {classes}; the favourable class is guessed as the most frequent "
                           f"one ({favourable!r}): set it to the decision your applicants want")
    for column, count in draft.missing.items():
        draft.notes.append(f"column '{column}': {count} missing cells; training needs every cell (fill them, or "
                           "train with `drop_missing=True` to leave those rows out)")
    for column, why in draft.left_out.items():
        draft.notes.append(f"column '{column}' left out: {why}")
    immutable = [f["name"] for f in draft.schema["features"] if f.get("immutable")]
    if immutable:
        draft.notes.append(f"immutable (protected-looking names): {', '.join(immutable)}")
    FeatureSchema.model_validate(draft.schema)  # the draft is a valid schema as it stands
    return draft


def _is_score(column: pd.Series) -> bool:
    """A target column that is a score rather than classes: every cell a number, and more than
    :data:`MAX_LEVELS` distinct values."""
    values = column.dropna()
    numbers = pd.to_numeric(values, errors="coerce")
    return bool(len(values)) and not numbers.isna().any() and numbers.nunique() > MAX_LEVELS


__all__ = ["Draft", "draft_schema", "draft_feature", "MAX_LEVELS", "RANGE_MARGIN", "PROTECTED"]
