"""The action set is the one definition of what may change and what it costs: every consumer's form agrees.

Property tests on random schemas (:mod:`strategies`): a plain per-value reference of
:math:`\\mathcal{A}_j(x)` against :meth:`ActionSet.code_bounds`, the polish's and the MILP's
bounds; points inside are admissible with no violations and inside the solver's scaled bounds;
a point outside in one feature is not admissible and its violation names that feature; the cost
on codes, per feature, on scaled columns and on DataFrames agree.
"""
from __future__ import annotations

import math
import types

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import codes_for, schemas

from recourse.actionset import CHECKS, ActionSet
from recourse.milp import ExactSolver, LinearMargin
from recourse.constraints import admissible, violations
from recourse.encoding import TabularEncoder
from recourse.polish import CostPolish
from recourse.repair import DiscreteRepair
from recourse.schema import Feature, FeatureSchema

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
N_ROWS = 4


# ---------------------------------------------------------------------- the reference definition
def allowed_levels(feat: Feature, v: float) -> set[int]:
    """The levels a categorical or ordinal feature may take from level v: its transitions (and staying)."""
    names = feat.level_names
    if feat.transitions is None:
        return set(range(len(names)))
    here = names[int(v)]
    return {int(v)} | {names.index(t) for t in feat.transitions.get(here, [])}


def reference_interval(feat: Feature, v: float, pinned: bool) -> tuple[float, float]:
    """𝒜_j(x) as an interval, one value at a time (the module docstring of recourse.actionset)."""
    if pinned:
        return v, v
    if feat.kind == "categorical":
        return 0.0, float(len(feat.levels) - 1)
    lo, hi = feat.range if feat.is_numeric else (0.0, 1.0 if feat.kind == "binary" else float(len(feat.levels) - 1))
    if feat.direction == "increase":
        lo = max(lo, v)
    if feat.direction == "decrease":
        hi = min(hi, v)
    if feat.max_change is not None:
        lo, hi = max(lo, v - feat.max_change), min(hi, v + feat.max_change)
    if feat.kind == "ordinal" and feat.transitions is not None:
        reach = allowed_levels(feat, v)
        lo, hi = max(lo, min(reach)), min(hi, max(reach))
    q = 10.0 ** feat.precision if feat.kind == "continuous" and feat.precision is not None else 1.0
    if feat.step is not None:
        lo, hi = math.ceil(lo / feat.step - 1e-9) * feat.step, math.floor(hi / feat.step + 1e-9) * feat.step
    elif not (feat.kind == "continuous" and feat.precision is None):
        lo, hi = math.ceil(lo * q - 1e-9) / q, math.floor(hi * q + 1e-9) / q
    return min(lo, v), max(hi, v)


def reference_bounds(schema: FeatureSchema, codes: np.ndarray, frozen: np.ndarray | None = None):
    lo, hi = np.empty_like(codes), np.empty_like(codes)
    for r in range(len(codes)):
        for j, feat in enumerate(schema.features):
            pinned = feat.immutable or not feat.actionable or (frozen is not None and bool(frozen[j]))
            lo[r, j], hi[r, j] = reference_interval(feat, float(codes[r, j]), pinned)
    return lo, hi


def step_of(feat: Feature) -> float:
    """One lattice step (free continuous: a small fraction of the range)."""
    if feat.step is not None:
        return feat.step
    if feat.kind == "continuous":
        return 10.0 ** -feat.precision if feat.precision is not None else 1e-6 * (feat.range[1] - feat.range[0]) + 1e-6
    return 1.0


@st.composite
def cases(draw, off_lattice: bool = True):
    schema = draw(schemas())
    codes = draw(codes_for(schema, N_ROWS, off_lattice=off_lattice))
    return schema, TabularEncoder(schema), codes


@st.composite
def inside_points(draw, schema: FeatureSchema, codes: np.ndarray, lo: np.ndarray, hi: np.ndarray, m: int) -> np.ndarray:
    """Points with every feature in [lo, hi] on its lattice (or at the original) and at most m changes."""
    out = codes.copy()
    n_feat = len(schema.features)
    for r in range(len(codes)):
        move = draw(st.lists(st.integers(0, n_feat - 1), max_size=m, unique=True))
        for j in move:
            feat, a, b = schema.features[j], lo[r, j], hi[r, j]
            if feat.kind == "continuous" and feat.precision is None and feat.step is None:
                out[r, j] = draw(st.one_of(st.just(a), st.just(b), st.floats(a, b)))
            elif feat.kind in ("categorical", "ordinal"):  # a level the transitions allow
                reach = sorted(k for k in allowed_levels(feat, codes[r, j]) if a - 1e-9 <= k <= b + 1e-9)
                if reach and draw(st.booleans()):
                    out[r, j] = float(draw(st.sampled_from(reach)))
            else:  # a lattice point: k·step, or k / q
                step = step_of(feat)
                k_lo, k_hi = math.ceil(a / step - 1e-9), math.floor(b / step + 1e-9)
                if k_lo <= k_hi and draw(st.booleans()):
                    k = draw(st.integers(k_lo, k_hi))
                    out[r, j] = k * feat.step if feat.step is not None else k / round(1.0 / step)
            if feat.min_change and 1e-9 < abs(out[r, j] - codes[r, j]) < feat.min_change - 1e-9:
                out[r, j] = codes[r, j]  # a change below the smallest meaningful one is not a point of 𝒜
    return out


# ---------------------------------------------------------------------- the bounds
@SETTINGS
@given(case=cases(), data=st.data())
def test_code_bounds_are_the_reference_interval_and_every_consumer_uses_them(case, data):
    schema, enc, codes = case
    actions = enc.action_set
    frozen = np.array(data.draw(st.lists(st.booleans(), min_size=enc.n_features, max_size=enc.n_features)))
    for fz in (None, frozen):
        lo, hi = actions.code_bounds(codes, fz)
        ref_lo, ref_hi = reference_bounds(schema, codes, fz)
        np.testing.assert_allclose(lo, ref_lo, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(hi, ref_hi, rtol=1e-12, atol=1e-12)
        assert (lo <= codes).all() and (codes <= hi).all()
        # the polish: the same interval, categoricals pinned (their levels are enumerated)
        p_lo, p_hi = CostPolish(enc, frozen=fz).bounds(codes)
        cat = actions.is_categorical
        np.testing.assert_array_equal(p_lo, np.where(cat, codes, lo))
        np.testing.assert_array_equal(p_hi, np.where(cat, codes, hi))
    # the MILP: the box [v - L, v + U] of numeric / ordinal features, the switch of a binary one
    lo, hi = reference_bounds(schema, codes)
    solver = ExactSolver(types.SimpleNamespace(encoder=enc), LinearMargin(np.ones(enc.n_columns), 0.0), 1)
    data_by_name = {f["feat"].name: f for f in solver._feature_data(enc.frame_from_codes(codes))}
    for j, feat in enumerate(schema.features):
        f = data_by_name.get(feat.name)
        assert (f is None) == (feat.immutable or not feat.actionable)
        if f is not None and f["kind"] == "num":
            np.testing.assert_allclose(f["v"] - f["L"], lo[:, j], rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(f["v"] + f["U"], hi[:, j], rtol=1e-12, atol=1e-12)
            assert f["rate"] == 1.0 / feat.cost_scale
        elif f is not None and f["kind"] == "bin":
            np.testing.assert_array_equal(f["allowed"], hi[:, j] > lo[:, j])
        elif f is not None and f["kind"] == "cat":  # the levels the transitions allow, and no other
            expected = [[k in allowed_levels(feat, codes[r, j]) for k in range(len(feat.levels))] for r in range(len(codes))]
            np.testing.assert_array_equal(f["allowed"], np.array(expected))


@SETTINGS
@given(case=cases(), data=st.data())
def test_points_inside_are_admissible_and_inside_the_scaled_bounds(case, data):
    schema, enc, codes = case
    actions = enc.action_set
    m = data.draw(st.integers(1, enc.n_features), label="m")
    lo, hi = actions.code_bounds(codes)
    y = data.draw(inside_points(schema, codes, lo, hi, m), label="y")
    assert actions.admissible(codes, y, m).all()
    assert admissible(enc, codes, y, m).all()
    assert actions.violations(codes, y, m) == [[] for _ in range(N_ROWS)]
    assert violations(schema, enc.frame_from_codes(codes), enc.frame_from_codes(y), m) == [[] for _ in range(N_ROWS)]
    x_s, y_s = enc.encode_codes(codes), enc.encode_codes(y)
    lower, upper = actions.scaled_bounds(x_s)
    np.testing.assert_array_equal(lower, enc.bounds(x_s)[0])
    assert (lower <= 0).all() and (upper >= 0).all()
    assert (y_s - x_s >= lower - 1e-9).all() and (y_s - x_s <= upper + 1e-9).all()
    mask = actions.level_mask(codes)
    for j in np.flatnonzero(~actions.is_numeric):
        assert mask[np.arange(N_ROWS), j, y[:, j].astype(int)].all()


@SETTINGS
@given(case=cases(), data=st.data())
def test_a_point_outside_in_one_feature_is_refused_naming_it(case, data):
    schema, enc, codes = case
    actions = enc.action_set
    lo, hi = actions.code_bounds(codes)
    r = data.draw(st.integers(0, N_ROWS - 1), label="row")
    options = []
    for j, feat in enumerate(schema.features):
        x, step = codes[r, j], step_of(feat)
        if feat.kind == "categorical":
            if feat.immutable or not feat.actionable:
                options.append((j, float((x + 1) % len(feat.levels))))
            else:  # a level its transitions do not allow from here
                options += [(j, float(k)) for k in range(len(feat.levels)) if k not in allowed_levels(feat, x)]
            continue
        for value in (hi[r, j] + step, lo[r, j] - step):
            if feat.is_numeric or actions.low[j] <= value <= actions.high[j]:  # a level index stays a level
                options.append((j, value))
    if not options:
        return
    j, value = data.draw(st.sampled_from(options), label="outside")
    y = codes[r:r + 1].copy()
    y[0, j] = value
    name = schema.features[j].name
    assert not actions.admissible(codes[r:r + 1], y, None)[0]
    assert any(msg.startswith(f"{name}: ") for msg in actions.violations(codes[r:r + 1], y, None)[0])
    frames = enc.frame_from_codes(codes[r:r + 1]), enc.frame_from_codes(y)
    assert any(msg.startswith(f"{name}: ") for msg in violations(schema, *frames, None)[0])


@SETTINGS
@given(case=cases(off_lattice=False), data=st.data(), rounding=st.sampled_from(["nearest", "away"]))
def test_decoding_lands_inside_the_code_bounds(case, data, rounding):
    schema, enc, codes = case
    actions = enc.action_set
    q = np.where(actions.free, 1.0, actions.q)
    on_lattice = (actions.free | (np.abs(codes * q - np.round(codes * q)) < 1e-9)).all(1)
    x_s = enc.encode_codes(codes)
    z = np.array(data.draw(st.lists(st.floats(-0.5, 1.5), min_size=x_s.size, max_size=x_s.size))).reshape(x_s.shape)
    new = enc.decode_codes(z, x_s, codes, rounding)
    lo, hi = actions.code_bounds(codes)
    inside = ((new >= lo - 1e-9) & (new <= hi + 1e-9)).all(1)
    assert inside[on_lattice].all()
    assert actions.admissible(codes, new, None)[on_lattice].all()


# ---------------------------------------------------------------------- the cost
@SETTINGS
@given(case=cases(), data=st.data())
def test_every_form_of_the_cost_agrees(case, data):
    schema, enc, a = case
    actions = enc.action_set
    b = data.draw(codes_for(schema, N_ROWS), label="b")
    b = np.where(np.array(data.draw(st.lists(st.booleans(), min_size=b.size, max_size=b.size))).reshape(b.shape), a, b)
    w = np.array(data.draw(st.lists(st.sampled_from([0.2, 1.0, 3.0]), min_size=enc.n_features,
                                    max_size=enc.n_features)), dtype=float)
    per = actions.feature_costs(a, b)
    cost = actions.cost(a, b)
    np.testing.assert_array_equal(cost, per.sum(1))
    np.testing.assert_allclose(actions.cost(a, b, w), (per * w).sum(1), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(actions.cost(a, b, w), actions.feature_costs(a, b, w).sum(1), rtol=1e-12)
    # by hand: |Δ| / s, a switch counting 1
    delta = np.where(actions.is_switch, (a != b).astype(float), np.abs(b - a))
    np.testing.assert_allclose(per, delta / np.array([f.cost_scale for f in schema.features]), rtol=1e-12)
    # the scaled columns (the repair's form) and the DataFrames (metrics) and the encoder's wrappers
    dz = np.abs(enc.encode_codes(b) - enc.encode_codes(a))
    np.testing.assert_allclose(dz @ actions.column_cost_coefficients(), cost, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(dz @ actions.column_cost_coefficients(w), actions.cost(a, b, w), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(DiscreteRepair(enc).cost(enc.encode_codes(a), enc.encode_codes(b)), cost,
                               rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(enc.change_costs(enc.frame_from_codes(a), enc.frame_from_codes(b)), cost, rtol=1e-12)
    np.testing.assert_array_equal(enc.change_costs_codes(a, b), cost)
    # the polish's per-feature form
    polish = CostPolish(enc, w)
    np.testing.assert_array_equal(polish.costs(a, b), actions.feature_costs(a, b, w))
    f = np.arange(enc.n_features)
    np.testing.assert_array_equal(polish._feature_cost(f, a[0], b[0]), actions.feature_costs(a, b, w)[0])
    np.testing.assert_array_equal(actions.cost_rates(w), w / actions.cost_scale)


# ---------------------------------------------------------------------- fixed cases
SCHEMA = FeatureSchema.from_dict({"name": "fixed", "features": [
    {"name": "income", "kind": "continuous", "range": [0, 100], "precision": 1, "max_change": 10},
    {"name": "years", "kind": "integer", "range": [0, 40], "direction": "increase"},
    {"name": "owner", "kind": "binary", "direction": "decrease"},
    {"name": "region", "kind": "categorical", "levels": ["north", "south", "east"], "immutable": True},
    {"name": "grade", "kind": "ordinal", "levels": ["low", "mid", "high"], "cost_scale": 2.0},
    {"name": "colour", "kind": "categorical", "levels": ["red", "blue"]},
]})


def test_messages_name_the_feature_and_the_check_in_schema_order():
    actions = ActionSet(SCHEMA)
    a = np.array([[50.0, 10.0, 0.0, 0.0, 1.0, 0.0]])
    b = np.array([[70.0, 9.5, 1.0, 1.0, 1.0, 1.0]])
    assert actions.violations(a, b, 2) == [[
        "income: changed by more than 10.0",
        "years: not a whole number",
        "years: decreased but may only increase",
        "owner: increased but may only decrease",
        "region: immutable feature changed",
        "more than 2 features changed",
    ]]
    assert not actions.admissible(a, b, 2)[0]
    assert actions.violation_masks(a, b).shape == (1, 6, len(CHECKS))
    assert actions.admissible(a, a, 1)[0] and actions.violations(a, a, 1) == [[]]


def test_code_bounds_level_mask_and_frozen_features():
    actions = ActionSet(SCHEMA)
    x = np.array([[95.0, 10.0, 1.0, 2.0, 1.0, 0.0]])
    lo, hi = actions.code_bounds(x)
    np.testing.assert_array_equal(lo, [[85.0, 10.0, 0.0, 2.0, 0.0, 0.0]])
    np.testing.assert_array_equal(hi, [[100.0, 40.0, 1.0, 2.0, 2.0, 1.0]])
    frozen = np.array([False, True, False, False, False, True])
    lo, hi = actions.code_bounds(x, frozen)
    assert lo[0, 1] == hi[0, 1] == 10.0 and lo[0, 5] == hi[0, 5] == 0.0
    mask = actions.level_mask(x, frozen)
    assert mask.shape == (1, 6, 3)
    assert not mask[0, :2].any()  # numeric features have no levels
    assert mask[0, 2, :2].all() and not mask[0, 2, 2]  # binary: both values (decrease from true)
    assert mask[0, 3].tolist() == [False, False, True]  # immutable categorical: its own level
    assert mask[0, 4].all()  # ordinal, any direction
    assert mask[0, 5].tolist() == [True, False, False]  # frozen categorical: its own level of two
    lower, upper = actions.scaled_bounds(np.zeros((1, actions.n_columns)) + 0.5, frozen)
    enc = TabularEncoder(SCHEMA)
    assert actions.n_columns == enc.n_columns and (actions.groups == enc.groups).all()
    assert (lower[0, enc.groups == 1] == 0).all() and (upper[0, enc.groups == 5] == 0).all()


def test_a_binary_max_change_below_one_forbids_the_switch_everywhere():
    schema = FeatureSchema.from_dict({"name": "b", "features": [
        {"name": "flag", "kind": "binary", "max_change": 0.5},
        {"name": "v", "kind": "continuous", "range": [0, 1]},
    ]})
    enc = TabularEncoder(schema)
    x = np.array([[0.0, 0.5]])
    lo, hi = enc.action_set.code_bounds(x)
    assert lo[0, 0] == hi[0, 0] == 0.0
    x_s = enc.encode_codes(x)
    decoded = enc.decode_codes(np.array([[1.0, 0.5]]), x_s, x)  # the solver's relaxation asks for a switch
    assert decoded[0, 0] == 0.0 and enc.action_set.admissible(x, decoded, None)[0]
    solver = ExactSolver(types.SimpleNamespace(encoder=enc), LinearMargin(np.ones(enc.n_columns), 0.0), 1)
    flag = solver._feature_data(enc.frame_from_codes(x))[0]
    assert flag["kind"] == "bin" and not flag["allowed"][0]


def test_repair_cost_weights_scale_its_columns():
    enc = TabularEncoder(SCHEMA)
    repair = DiscreteRepair(enc)
    w = np.array([1.0, 2.0, 0.5, 1.0, 3.0, 4.0])
    weighted = repair.with_cost_weights(w)
    np.testing.assert_array_equal(weighted.cost_coef, repair.cost_coef * w[enc.groups])
    np.testing.assert_array_equal(weighted._pair_coef, weighted.cost_coef[weighted._pair_col])
    assert repair.cost_coef is not weighted.cost_coef
    np.testing.assert_array_equal(repair.cost_coef, enc.action_set.column_cost_coefficients())


def test_the_encoder_holds_the_action_set_and_a_schema_needs_ranges():
    enc = TabularEncoder(SCHEMA)
    assert ActionSet.from_encoder(enc) is enc.action_set
    from recourse.errors import SchemaError

    with pytest.raises(SchemaError, match="has no range"):
        ActionSet(FeatureSchema.from_dict({"name": "n", "features": [{"name": "v", "kind": "continuous"}]}))
