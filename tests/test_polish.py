"""The cost polish (recourse/polish.py): never dearer, never inadmissible, every answer verified.

The polish only sees a margin function on encoded rows and the schema, so the tests drive it with
synthetic margins (linear and non-linear) on random schemas, plus a hand-checked example and an
end-to-end check on the tiny bundle.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recourse.constraints import admissible
from recourse.encoding import TabularEncoder
from recourse.polish import CostPolish
from recourse.schema import FeatureSchema

KINDS = ["continuous", "integer", "binary", "categorical", "ordinal"]


@st.composite
def schemas(draw) -> FeatureSchema:
    features = []
    for i in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(KINDS))
        spec: dict = {"name": f"f{i}", "kind": kind, "cost_scale": draw(st.sampled_from([0.5, 1.0, 3.0]))}
        if kind == "continuous":
            lo = draw(st.sampled_from([-10.0, 0.0, 2.5]))
            spec["range"] = [lo, lo + draw(st.sampled_from([1.0, 7.5, 50.0]))]
            precision = draw(st.sampled_from([None, 0, 1, 2]))
            if precision is not None:
                spec["precision"] = precision
        elif kind == "integer":
            lo = draw(st.sampled_from([0, 1, 18]))
            spec["range"] = [lo, lo + draw(st.integers(1, 40))]
        elif kind in ("categorical", "ordinal"):
            spec["levels"] = [f"L{k}" for k in range(draw(st.integers(2, 4)))]
        if i > 0 and draw(st.integers(0, 3)) == 0:
            spec["immutable"] = True
        if kind != "categorical":
            spec["direction"] = draw(st.sampled_from(["any", "any", "increase", "decrease"]))
        if kind in ("continuous", "integer", "ordinal") and draw(st.integers(0, 3)) == 0:
            span = spec["range"][1] - spec["range"][0] if "range" in spec else len(spec["levels"]) - 1
            spec["max_change"] = max(1.0, round(span / 2))
        features.append(spec)
    return FeatureSchema.from_dict({"name": "random", "features": features})


def random_codes(encoder: TabularEncoder, rng: np.random.Generator, n: int) -> np.ndarray:
    """Valid codes: values on each feature's lattice inside its range."""
    out = np.empty((n, encoder.n_features))
    for j, fc in enumerate(encoder.layout):
        f = fc.feature
        if f.kind in ("categorical", "ordinal"):
            out[:, j] = rng.integers(0, len(f.levels), n)
        elif f.kind == "binary":
            out[:, j] = rng.integers(0, 2, n)
        else:
            lo, hi = f.range
            v = rng.uniform(lo, hi, n)
            if f.kind == "integer":
                v = np.round(v)
            elif f.precision is not None:
                v = np.clip(np.round(v, f.precision), lo, hi)
            out[:, j] = v
    return out


def random_moves(encoder: TabularEncoder, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random points inside each row's allowed box (may break the change budget; filtered by the caller)."""
    polish = CostPolish(encoder)
    lo, hi = polish.bounds(x)
    y = x.copy()
    other = random_codes(encoder, rng, len(x))
    move = rng.random(x.shape) < 0.5
    for j, fc in enumerate(encoder.layout):
        if fc.feature.immutable:
            continue
        if fc.feature.kind == "categorical":
            y[:, j] = np.where(move[:, j], other[:, j], x[:, j])
        else:
            v = np.clip(other[:, j], lo[:, j], hi[:, j])
            if fc.feature.kind in ("integer", "ordinal", "binary"):
                v = np.clip(np.round(v), np.ceil(lo[:, j] - 1e-9), np.floor(hi[:, j] + 1e-9))
            elif fc.feature.precision is not None:
                q = 10.0 ** fc.feature.precision
                v = np.clip(np.round(v * q) / q, np.ceil(lo[:, j] * q - 1e-9) / q, np.floor(hi[:, j] * q + 1e-9) / q)
            y[:, j] = np.where(move[:, j], v, x[:, j])
    return y


def margin_function(kind: str, d: int, rng: np.random.Generator):
    a = rng.normal(0, 2, d)
    b = float(rng.normal(-0.5, 0.5))
    if kind == "linear":
        return lambda z, t: z @ a + b
    c = rng.normal(0, 2, d)
    return lambda z, t: np.tanh(z @ a + b) + 0.5 * np.sin(3 * z @ c)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema=schemas(), seed=st.integers(0, 10_000), kind=st.sampled_from(["linear", "nonlinear"]),
       m=st.integers(1, 3), with_frozen=st.booleans())
def test_polish_never_dearer_never_inadmissible(schema, seed, kind, m, with_frozen):
    """Never dearer, never inadmissible; with a per-row ``frozen`` mask (the alternatives' pinned
    features) no polished answer changes a frozen feature."""
    encoder = TabularEncoder(schema)
    rng = np.random.default_rng(seed)
    margin = margin_function(kind, encoder.n_columns, rng)
    n = 12
    x = random_codes(encoder, rng, n)
    targets = np.ones(n, dtype=np.int64)
    frozen = rng.random((n, encoder.n_features)) < 0.4 if with_frozen else None
    y = random_moves(encoder, x, rng)
    if frozen is not None:
        y = np.where(frozen, x, y)
    found = admissible(encoder, x, y, m) & (margin(encoder.encode_codes(y), targets) > 0)
    found &= margin(encoder.encode_codes(x), targets) <= 0
    new_found, new = CostPolish(encoder)(x, y.copy(), found.copy(), targets, m, margin, frozen=frozen)
    if frozen is not None:
        assert not (encoder.changed_codes(x, new) & frozen)[new_found].any()
    # answers are only added, never lost; unfound rows keep the original
    assert np.all(new_found[found])
    assert np.array_equal(new[~new_found], x[~new_found])
    # cost never increases
    before = encoder.change_costs_codes(x, y)
    after = encoder.change_costs_codes(x, new)
    assert np.all(after[found] <= before[found] + 1e-9)
    # every returned row is admissible and accepted by the margin
    rows = np.flatnonzero(new_found)
    if rows.size:
        assert admissible(encoder, x[rows], new[rows], m).all()
        assert (margin(encoder.encode_codes(new[rows]), targets[rows]) > 0).all()


def _line_schema() -> FeatureSchema:
    return FeatureSchema.from_dict({"name": "line", "features": [
        {"name": "duration", "kind": "integer", "range": [0, 10], "cost_scale": 1.0},
        {"name": "amount", "kind": "continuous", "range": [0, 100], "precision": 1, "cost_scale": 10.0},
        {"name": "owner", "kind": "binary", "cost_scale": 1.0},
        {"name": "region", "kind": "categorical", "levels": ["a", "b", "c"], "cost_scale": 1.0},
    ]})


def test_hand_checked_minimal_moves():
    """Margin = duration + amount/10 + 5·[region = c] − 9.5 (raw units; cost: duration 1, amount 0.1
    per unit, a switch 1).

    Row 0: duration 3, amount 20, region a (margin −4.5), answer duration 10 (cost 7): the cheapest
    is region → c (cost 1, margin +0.5); any numeric route costs ≥ 4.5.
    Row 1: duration 7, amount 20, region a (margin −0.5), answer duration 9 + amount 60 (cost 6):
    the cheapest is amount 25.1 (cost 0.51; 25.0 gives margin 0, which is not accepted).
    Row 2: region c, duration 2, amount 20 (margin −0.5), answer amount 50 (cost 3): amount 25.1.
    """
    encoder = TabularEncoder(_line_schema())

    def margin(z, t):
        return z[:, 0] * 10 + z[:, 1] * 10 + 5 * z[:, 5] - 9.5

    x = np.array([[3, 20, 0, 0], [7, 20, 0, 0], [2, 20, 0, 2]], dtype=float)
    y = np.array([[10, 20, 0, 0], [9, 60, 0, 0], [2, 50, 0, 2]], dtype=float)
    targets = np.ones(3, dtype=np.int64)
    assert (margin(encoder.encode_codes(y), targets) > 0).all()
    found, new = CostPolish(encoder)(x, y, np.ones(3, bool), targets, 3, margin)
    assert found.all()
    np.testing.assert_allclose(new, [[3, 20, 0, 2], [7, 25.1, 0, 0], [2, 25.1, 0, 2]])
    np.testing.assert_allclose(encoder.change_costs_codes(x, new), [1.0, 0.51, 0.51])


def test_back_off_reaches_the_cheapest_pair():
    """Margin = duration + amount/10 − 9.45 from duration 5, amount 20 (margin −2.45), amount limited
    to ±5: duration alone needs 8 (cost 3), amount alone cannot; the optimum mixes both: duration 7
    (cost 2) + amount 24.6 (cost 0.46) = 2.46.  The engine's answer (duration 10) costs 5."""
    schema = FeatureSchema.from_dict({"name": "pair", "features": [
        {"name": "duration", "kind": "integer", "range": [0, 10], "cost_scale": 1.0},
        {"name": "amount", "kind": "continuous", "range": [0, 100], "precision": 1, "cost_scale": 10.0,
         "max_change": 5},
    ]})
    encoder = TabularEncoder(schema)

    def margin(z, t):
        return z[:, 0] * 10 + z[:, 1] * 10 - 9.45

    x = np.array([[5.0, 20.0]])
    y = np.array([[10.0, 20.0]])
    found, new = CostPolish(encoder)(x, y, np.ones(1, bool), np.ones(1, np.int64), 2, margin)
    assert found[0] and margin(encoder.encode_codes(new), None)[0] > 0
    np.testing.assert_allclose(new[0], [7.0, 24.6])
    assert encoder.change_costs_codes(x, new)[0] == pytest.approx(2.46)


def test_unfound_rows_get_the_cheapest_single_feature_answer():
    encoder = TabularEncoder(_line_schema())

    def margin(z, t):
        return z[:, 0] * 10 - 6.5  # duration ≥ 7

    x = np.array([[3, 20, 0, 0]], dtype=float)
    found, new = CostPolish(encoder)(x, x.copy(), np.zeros(1, bool), np.ones(1, np.int64), 3, margin)
    assert found[0]
    np.testing.assert_allclose(new[0], [7, 20, 0, 0])


def test_engine_answers_verified_and_not_dearer_than_without_polish(tiny_bundle, monkeypatch):
    """End to end on the tiny bundle: every polished answer is verified and never dearer than without polish."""
    from dataclasses import fields, replace

    from recourse.scfe import SCFEConfig
    from tests.conftest import tiny_frame

    engine = tiny_bundle.engine()
    frame, _ = tiny_frame(80, seed=3)
    records = engine.validate(frame.to_dict(orient="records")).to_dict(orient="records")
    on = engine.explain(records)
    if "polish" in {f.name for f in fields(SCFEConfig)}:
        engine.config = replace(engine.config, polish=False)
    else:
        monkeypatch.setattr(SCFEConfig, "polish", False, raising=False)
    off = engine.explain(records)
    assert any(a.found for a in on)
    for a, b in zip(on, off):
        assert a.status == b.status or (a.found and b.status == "no_recourse_found")
        if b.found:
            assert a.metrics["cost"] <= b.metrics["cost"] + 1e-9
    checks = engine.explain([a.counterfactual for a in on if a.found])
    assert all(c.status == "already_favourable" for c in checks)


def test_cost_weights_and_frozen_features_steer_the_polish():
    """With duration 10× dearer (ω = 10) the amount route wins; a frozen feature never moves."""
    encoder = TabularEncoder(_line_schema())

    def margin(z, t):
        return z[:, 0] * 10 + z[:, 1] * 10 - 9.5

    x = np.array([[7.0, 20.0, 0, 0]])
    y = np.array([[9.0, 20.0, 0, 0]])
    plain = CostPolish(encoder)(x, y.copy(), np.ones(1, bool), np.ones(1, np.int64), 3, margin)[1]
    np.testing.assert_allclose(plain[0], [7, 25.1, 0, 0])  # 0.51 < duration 8 (1)
    weighted = CostPolish(encoder, weights=np.array([1.0, 10.0, 1.0, 1.0]))
    np.testing.assert_allclose(weighted(x, y.copy(), np.ones(1, bool), np.ones(1, np.int64), 3, margin)[1][0],
                               [8, 20, 0, 0])  # amount now costs 5.1, duration 8 costs 1
    frozen = CostPolish(encoder, frozen=np.array([False, True, False, False]))
    np.testing.assert_allclose(frozen(x, y.copy(), np.ones(1, bool), np.ones(1, np.int64), 3, margin)[1][0],
                               [8, 20, 0, 0])


def test_chunked_batches_match_one_batch(monkeypatch):
    import recourse.polish as polish_module

    encoder = TabularEncoder(_line_schema())

    def margin(z, t):
        return z[:, 0] * 10 + z[:, 1] * 10 + 5 * z[:, 5] - 9.5

    rng = np.random.default_rng(0)
    x = random_codes(encoder, rng, 40)
    y = x.copy()
    y[:, 0] = 10.0  # duration at its top: accepted for every row (margin ≥ 0.5)
    found = np.ones(len(x), bool)
    targets = np.ones(len(x), np.int64)
    whole = CostPolish(encoder)(x, y.copy(), found, targets, 3, margin)
    monkeypatch.setattr(polish_module, "ROW_CHUNK", 7)
    chunked = CostPolish(encoder)(x, y.copy(), found, targets, 3, margin)
    np.testing.assert_array_equal(whole[0], chunked[0])
    np.testing.assert_allclose(whole[1], chunked[1])
