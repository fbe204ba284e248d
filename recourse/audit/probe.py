r"""Direct-discrimination probe: flip a protected attribute, hold everything else fixed, ask the model.

For applicant x and protected feature a with alternative values :math:`\{a'_1,\dots,a'_K\}`
(every other level of a categorical/binary feature; for a numeric one, the training median of
every other band of its grouping bins), the probe counts

.. math:: F_a(x) = \#\{k : \hat y(x_{a \leftarrow a'_k}) \ne \hat y(x)\},

one model call per alternative on the whole chunk.  An applicant is *affected* when
:math:`F_a(x) > 0`: the model's decision depends on the protected attribute alone.  This queries
the model itself, so it cannot be fooled by a manipulated attribution map.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..schema import Feature, FeatureSchema


def alternatives(feat: Feature, bins: list[float] | None, train_values: np.ndarray | None) -> list[tuple]:
    """(value, band) pairs a protected feature is flipped to: levels, or band medians for numeric features.

    ``band`` is the index of the numeric band (rows already in that band are not flipped) or None.
    """
    if feat.kind in ("categorical", "ordinal"):
        return [(v, None) for v in feat.level_names]
    if feat.kind == "binary":
        return [(False, None), (True, None)]
    edges = [-np.inf, *(bins or []), np.inf]
    out = []
    for band, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        if train_values is not None:
            inside = train_values[(train_values >= lo) & (train_values < hi)]
            value = float(np.median(inside)) if inside.size else None
        else:
            value = None
        if value is None:
            a, b = max(lo, feat.range[0]), min(hi, feat.range[1])
            value = (a + b) / 2
        out.append((int(round(value)) if feat.kind == "integer" else value, band))
    return out


def probe_chunk(engine, frame: pd.DataFrame, pred: np.ndarray, protected: dict[str, list[tuple]],
                bins: dict[str, list[float]], encoded: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per protected feature: F_a(x) for each row of the validated ``frame`` (model predictions ``pred``).

    The alternatives are built on the scaled encoding (the protected feature's columns replaced by
    the encoding of the alternative value) and scored in a single model call.
    """
    x = engine.encoder.encode(frame) if encoded is None else encoded
    n = len(frame)
    blocks, owners = [], []
    for name, values in protected.items():
        fc = next(c for c in engine.encoder.layout if c.feature.name == name)
        current = frame[name].to_numpy()
        for value, band in values:
            same = _equal(current, value) if band is None else \
                np.digitize(current.astype(float), bins[name], right=False) == band
            if same.all():
                continue
            one = frame.iloc[:1].copy()
            one[name] = [value]
            alt = x.copy()
            alt[:, fc.slice] = engine.encoder.encode(one)[0, fc.slice]
            blocks.append(alt)
            owners.append((name, same))
    out = {name: np.zeros(n, dtype=np.int64) for name in protected}
    if not blocks or n == 0:
        return out
    p = engine.predict_proba(np.vstack(blocks)).argmax(1).reshape(len(blocks), n)
    for (name, same), pk in zip(owners, p):
        out[name] += (~same & (pk != pred)).astype(np.int64)
    return out


def _equal(current: np.ndarray, value) -> np.ndarray:
    if isinstance(value, (bool, np.bool_)):
        return current.astype(bool) == value
    if isinstance(value, str):
        return current.astype(object) == value
    return np.isclose(current.astype(float), float(value))


def protected_values(schema: FeatureSchema, names: list[str], bins: dict[str, list[float]],
                     train_raw: dict[str, np.ndarray]) -> dict[str, list]:
    """Alternative values per protected feature that is a model input (others cannot be probed)."""
    known = set(schema.names)
    return {n: alternatives(schema.feature(n), bins.get(n), train_raw.get(n)) for n in names if n in known}
