"""Hypothesis strategies shared by the property tests: random completed schemas and records (codes).

``schemas()`` draws a mix of every feature kind (continuous with and without ``precision``,
integer, ordinal, binary, categorical) with random ranges, immutables, features that cannot be
acted on, level transitions, steps, smallest meaningful changes, directions, ``max_change`` and
cost scales; ``codes_for(schema)`` draws records of it as codes (one float per feature, see
:meth:`recourse.encoding.TabularEncoder.to_codes`), on the lattice or, for continuous features
with a precision, sometimes off it.
"""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from recourse.schema import FeatureSchema

KINDS = ("continuous", "integer", "binary", "categorical", "ordinal")


@st.composite
def feature_dicts(draw, index: int) -> dict:
    """One feature of a completed schema (range and cost scale set) as a schema-JSON dict."""
    kind = draw(st.sampled_from(KINDS))
    spec: dict = {"name": f"f{index}_{kind[:3]}", "kind": kind}
    if kind == "continuous":
        lo = draw(st.sampled_from([-10.0, 0.0, 0.13, 2.5, 11.03, 100.0]))
        spec["range"] = [lo, lo + draw(st.sampled_from([0.53, 1.0, 3.8, 7.5, 50.0, 1000.0]))]
        precision = draw(st.sampled_from([None, None, 0, 1, 2, 3]))
        if precision is not None:
            spec["precision"] = precision
    elif kind == "integer":
        lo = draw(st.integers(-20, 30))
        spec["range"] = [lo, lo + draw(st.integers(1, 60))]
    elif kind in ("categorical", "ordinal"):
        spec["levels"] = [f"L{i}" for i in range(draw(st.integers(2, 6)))]
    if draw(st.integers(0, 4)) == 0:
        spec["immutable"] = True
    elif draw(st.integers(0, 6)) == 0:
        spec["actionable"] = False
    if kind in ("categorical", "ordinal") and draw(st.booleans()):
        levels = spec["levels"]
        spec["transitions"] = {src: draw(st.lists(st.sampled_from(levels), unique=True, max_size=len(levels)))
                               for src in levels if draw(st.integers(0, 3)) > 0}
    if kind != "categorical":
        spec["direction"] = draw(st.sampled_from(["any", "any", "increase", "decrease"]))
    if draw(st.integers(0, 2)) == 0:
        spec["max_change"] = draw(st.sampled_from([0.3, 0.5, 1.0, 1.7, 2.0, 3.0, 10.0, 250.0]))
    if kind == "integer" and draw(st.integers(0, 3)) == 0:
        spec["step"] = draw(st.sampled_from([2, 5, 10]))
    if kind == "continuous" and spec.get("precision") is None and draw(st.integers(0, 3)) == 0:
        spec["step"] = draw(st.sampled_from([0.05, 0.25, 2.0, 50.0]))
    if kind in ("continuous", "integer", "ordinal") and draw(st.integers(0, 3)) == 0:
        spec["min_change"] = draw(st.sampled_from([0.5, 1.0, 2.0, 3.0, 100.0]))
    spec["cost_scale"] = draw(st.sampled_from([0.25, 1.0, 2.7, 13.0]))
    return spec


@st.composite
def schemas(draw, min_features: int = 1, max_features: int = 7) -> FeatureSchema:
    """A completed schema of random features (every kind may occur, each with random rules)."""
    n = draw(st.integers(min_features, max_features))
    return FeatureSchema.from_dict({"name": "random", "features": [draw(feature_dicts(i)) for i in range(n)]})


@st.composite
def codes_for(draw, schema: FeatureSchema, n_rows: int = 1, off_lattice: bool = True) -> np.ndarray:
    """(n_rows, F) valid records of ``schema`` as codes: in range, whole where required; continuous
    features with a precision sometimes off their lattice (``off_lattice``), range ends often."""
    out = np.empty((n_rows, len(schema.features)))
    for j, feat in enumerate(schema.features):
        for r in range(n_rows):
            if feat.is_numeric:
                lo, hi = feat.range
                u = draw(st.one_of(st.just(0.0), st.just(1.0), st.floats(0.0, 1.0)))
                v = min(max(lo + u * (hi - lo), lo), hi)
                if feat.kind == "integer":
                    v = float(round(v))
                elif feat.precision is not None and not (off_lattice and draw(st.booleans())):
                    v = min(max(round(v, feat.precision), lo), hi)
                out[r, j] = v
            elif feat.kind == "binary":
                out[r, j] = float(draw(st.booleans()))
            else:
                out[r, j] = float(draw(st.integers(0, len(feat.levels) - 1)))
    return out
