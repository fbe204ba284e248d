"""Property tests of the recourse engine on random schemas, data and applicants.

Every answer the engine calls ``recourse_found`` must be admissible: immutables and features a
person cannot act on never move, categorical and ordinal moves follow the schema's transitions,
no change is below its feature's ``min_change`` or off its ``step``,
directions and max_change hold, integers stay whole, categorical/ordinal values are real levels,
at most m features change, and the counterfactual, fed back in, is ``already_favourable``.
With consequences (random one-step edges) all of that holds for the interventions (the listed
actions), and the counterfactual equals the structural model applied to the applicant and them.
"""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recourse.bundle import build_bundle
from recourse.constraints import changed_features, violations
from recourse.encoding import TabularEncoder, complete_schema
from recourse.schema import FeatureSchema
from recourse.scfe import SCFEConfig

STATUSES = {"recourse_found", "no_recourse_found", "already_favourable"}
KINDS = ["continuous", "integer", "binary", "categorical", "ordinal"]
N_ROWS = 200
_counter = itertools.count()


# ---------------------------------------------------------------------- random schemas and data
@st.composite
def feature_specs(draw, index: int, force_mutable: bool) -> dict:
    kind = draw(st.sampled_from(KINDS))
    spec: dict = {"name": f"f{index}_{kind[:3]}", "kind": kind}
    if kind == "continuous":
        lo = draw(st.sampled_from([-10.0, 0.0, 2.5, 100.0]))
        spec["range"] = [lo, lo + draw(st.sampled_from([1.0, 7.5, 50.0, 1000.0]))]
        precision = draw(st.sampled_from([None, 0, 1, 2]))
        if precision is not None:
            spec["precision"] = precision
    elif kind == "integer":
        lo = draw(st.sampled_from([0, 1, 18]))
        spec["range"] = [lo, lo + draw(st.integers(2, 40))]
    elif kind in ("categorical", "ordinal"):
        n_levels = draw(st.integers(2, 4) if kind == "categorical" else st.integers(3, 4))
        spec["levels"] = [f"L{i}" for i in range(n_levels)]
    if not force_mutable and draw(st.integers(0, 3)) == 0:
        spec["immutable"] = True
    elif not force_mutable and draw(st.integers(0, 5)) == 0:
        spec["actionable"] = False
    if kind in ("categorical", "ordinal") and draw(st.booleans()):  # allowed moves between levels
        levels = spec["levels"]
        spec["transitions"] = {src: draw(st.lists(st.sampled_from(levels), unique=True, min_size=1 if force_mutable else 0,
                                                  max_size=len(levels))) for src in levels}
    if kind != "categorical":
        spec["direction"] = draw(st.sampled_from(["any", "any", "increase", "decrease"]))
    if kind in ("continuous", "integer", "ordinal") and draw(st.integers(0, 4)) == 0:
        span = spec["range"][1] - spec["range"][0] if "range" in spec else len(spec["levels"]) - 1
        spec["max_change"] = max(1.0, round(span / 2))
    if kind in ("continuous", "integer") and spec.get("precision") is None and draw(st.integers(0, 3)) == 0:
        span = spec["range"][1] - spec["range"][0]
        spec["step"] = max(1, round(span / 10)) if kind == "integer" else round(span / 20, 2)
    if kind in ("continuous", "integer", "ordinal") and draw(st.integers(0, 3)) == 0:
        span = spec["range"][1] - spec["range"][0] if "range" in spec else len(spec["levels"]) - 1
        spec["min_change"] = max(1.0, round(span / 8)) if kind != "continuous" else span / 8
    return spec


@st.composite
def consequence_edges(draw, features: list[dict]) -> list[dict]:
    """Random one-step edges between numeric and ordinal features (no chains), rates scaled to the spans."""
    linkable = [f for f in features if f["kind"] in ("continuous", "integer", "ordinal")]
    if len(linkable) < 2 or draw(st.integers(0, 2)) == 0:
        return []
    span = lambda f: f["range"][1] - f["range"][0] if "range" in f else len(f["levels"]) - 1  # noqa: E731
    order = draw(st.permutations(linkable))
    k = draw(st.integers(1, len(order) - 1))
    causes, effects = order[:k], order[k:]
    edges = []
    for effect in effects:
        for cause in draw(st.lists(st.sampled_from(causes), unique_by=lambda f: f["name"], min_size=1, max_size=2)):
            rate = draw(st.sampled_from([-1.0, -0.5, 0.25, 0.5, 1.0, 2.0])) * span(effect) / span(cause)
            edges.append({"cause": cause["name"], "effect": effect["name"], "rate": rate})
    return edges


@st.composite
def problems(draw, consequences: bool = True) -> dict:
    n = draw(st.integers(2, 6))
    features = [draw(feature_specs(i, force_mutable=(i == 0))) for i in range(n)]
    return {
        "schema": {"name": "random", "target": {"name": "y", "classes": [0, 1], "favourable": 1},
                   "features": features, "consequences": draw(consequence_edges(features)) if consequences else []},
        "seed": draw(st.integers(0, 2**31 - 1)),
        "m": draw(st.integers(1, 3)),
    }


def random_frame(schema: FeatureSchema, n: int, rng: np.random.Generator) -> pd.DataFrame:
    cols = {}
    for f in schema.features:
        if f.kind == "continuous":
            lo, hi = f.range
            values = rng.uniform(lo, hi, n)
            cols[f.name] = np.clip(np.round(values, f.precision), lo, hi) if f.precision is not None else values
        elif f.kind == "integer":
            lo, hi = f.range
            cols[f.name] = rng.integers(int(lo), int(hi) + 1, n)
        elif f.kind == "binary":
            cols[f.name] = rng.integers(0, 2, n).astype(bool)
        else:
            cols[f.name] = rng.choice(f.level_names, n)
    return pd.DataFrame(cols)


def random_labels(schema: FeatureSchema, frame: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    """Labels from a random linear rule on the scaled encoding; both classes occur."""
    x = TabularEncoder(complete_schema(schema, frame)).encode(frame)
    w = rng.normal(size=x.shape[1])
    score = x @ w + rng.normal(0, 0.05, len(x))
    labels = (score > np.median(score)).astype(int)
    assert 0 < labels.sum() < len(labels)
    return labels


# ---------------------------------------------------------------------- admissibility checks
def _index(feat, value) -> float:
    if feat.kind in ("continuous", "integer"):
        return float(value)
    if feat.kind == "binary":
        return float(bool(value))
    return float(feat.level_names.index(value))


def check_admissible(schema: FeatureSchema, applicant: dict, cf: dict, m: int) -> None:
    assert set(cf) == set(schema.names)
    schema.validate_record(cf)  # raises on wrong types, unknown levels, out-of-range values
    n_changed = 0
    for feat in schema.features:
        a, b = applicant[feat.name], cf[feat.name]
        if feat.kind == "integer":
            assert float(b) == int(b), (feat.name, b)
        if feat.kind in ("categorical", "ordinal"):
            assert b in feat.level_names, (feat.name, b)
        if feat.kind == "binary":
            assert isinstance(b, (bool, np.bool_)), (feat.name, b)
        if feat.kind == "continuous" and feat.precision is not None:
            assert abs(b * 10**feat.precision - round(b * 10**feat.precision)) < 1e-6, (feat.name, b)
        if feat.is_numeric:
            lo, hi = feat.range
            assert lo - 1e-9 <= float(b) <= hi + 1e-9, (feat.name, b)
        moved = _index(feat, a) != _index(feat, b) if feat.kind != "continuous" else abs(float(a) - float(b)) > 1e-9
        n_changed += moved
        if moved and feat.kind == "continuous":  # a reported change is a real one, not float round-off
            assert abs(float(a) - float(b)) > 1e-6 * (feat.range[1] - feat.range[0]), (feat.name, a, b)
        if feat.immutable or not feat.actionable:
            assert not moved, f"fixed {feat.name} moved {a!r} -> {b!r}"
            continue
        if moved and feat.transitions is not None:  # only the moves the schema allows
            assert b in feat.transitions.get(a, []), f"{feat.name}: disallowed move {a!r} -> {b!r}"
        if moved and feat.min_change:  # no change below the feature's resolution
            assert abs(_index(feat, b) - _index(feat, a)) >= feat.min_change - 1e-9, (feat.name, a, b, feat.min_change)
        if moved and feat.step:  # changed values on the step
            assert abs(float(b) / feat.step - round(float(b) / feat.step)) < 1e-6, (feat.name, b, feat.step)
        delta = _index(feat, b) - _index(feat, a)
        if feat.direction == "increase":
            assert delta >= -1e-9, f"{feat.name} decreased {a!r} -> {b!r}"
        elif feat.direction == "decrease":
            assert delta <= 1e-9, f"{feat.name} increased {a!r} -> {b!r}"
        if feat.max_change is not None and feat.kind != "categorical":
            assert abs(delta) <= feat.max_change + 1e-9, (feat.name, a, b)
    assert n_changed <= m, f"{n_changed} features changed with m={m}"


def _snap(feat, value: float) -> float:
    """Onto the feature's lattice: whole numbers, levels, its step or its precision (free: as is)."""
    if feat.kind in ("integer", "ordinal"):
        return float(round(value / (feat.step or 1)) * (feat.step or 1))
    if feat.step:
        return round(value / feat.step) * feat.step
    if feat.precision is not None:  # a tie (x.x5) rounds half to even on the scaled number, as the engine does
        return float(np.round(value * 10.0 ** feat.precision) / 10.0 ** feat.precision)
    return value


def structural_model(schema: FeatureSchema, applicant: dict, interventions: dict) -> dict:
    """The schema's consequences applied to ``interventions`` on ``applicant``, written out plainly
    (a reference for :class:`recourse.consequences.Consequences`): each effect whose causes moved
    becomes its own value plus Σ rate · (cause change), snapped onto its lattice and clipped to its range."""
    out = dict(interventions)
    push: dict[str, float] = {}
    for edge in schema.consequences:
        cause = schema.feature(edge.cause)
        change = _index(cause, interventions[edge.cause]) - _index(cause, applicant[edge.cause])
        push[edge.effect] = push.get(edge.effect, 0.0) + edge.rate * change
    for name, p in push.items():
        if abs(p) <= 1e-9:
            continue
        feat = schema.feature(name)
        lo, hi = feat.range if feat.is_numeric else (0, len(feat.levels) - 1)
        value = min(max(_snap(feat, _index(feat, interventions[name]) + p), lo), hi)
        out[name] = feat.level_names[int(value)] if feat.kind == "ordinal" else (int(value) if feat.kind == "integer" else value)
    return out


def _same(feat, a, b) -> bool:
    return abs(float(a) - float(b)) <= 1e-6 * max(1.0, abs(float(a))) if feat.is_numeric else a == b


def check_results(engine, schema: FeatureSchema, rows: pd.DataFrame, results, m: int) -> list[dict]:
    """Assert the properties of one batch of answers; return the counterfactuals found."""
    assert len(results) == len(rows)
    favourable = schema.target.favourable
    cfs = []
    for applicant, r in zip(rows.to_dict(orient="records"), results):
        assert r.status in STATUSES
        assert r.max_changes == min(m, len(schema.features))  # more than the features is clipped
        assert r.target.value == favourable
        assert r.applicant == schema.validate_record(applicant)
        if r.status == "already_favourable":
            assert r.decision.value == favourable and r.counterfactual is None
        elif r.status == "no_recourse_found":
            assert r.decision.value != favourable
            assert r.counterfactual is None and r.actions == [] and r.message
        else:
            assert r.decision.value != favourable
            cf = r.counterfactual
            acted = {**r.applicant, **{a.feature: a.to for a in r.actions}}  # the interventions
            check_admissible(schema, r.applicant, acted, m)  # every rule holds for what the person does
            expected = structural_model(schema, r.applicant, acted)
            assert all(_same(f, cf[f.name], expected[f.name]) for f in schema.features), (r.applicant, acted, cf)
            moved = [f.name for f in schema.features if not _same(f, cf[f.name], acted[f.name])]
            assert [c.feature for c in r.consequences] == moved
            schema.validate_record(cf)
            assert r.counterfactual_decision.value == favourable
            assert r.counterfactual_decision.probability > 0.5
            changed = changed_features(schema, pd.DataFrame([r.applicant]), pd.DataFrame([cf]))[0]
            assert r.metrics["l0"] == int(changed.sum()) == len(r.actions) >= 1
            assert {a.feature for a in r.actions} == {f.name for f, c in zip(schema.features, changed) if c}
            assert violations(schema, pd.DataFrame([r.applicant]), pd.DataFrame([cf]), m) == [[]]
            if not schema.consequences:
                assert cf == acted
            cfs.append(cf)
    return cfs


def check_feedback(engine, cfs: list[dict], m: int) -> None:
    """Counterfactuals fed back into the engine are already favourable."""
    if not cfs:
        return
    again = engine.explain(cfs, max_changes=m)
    assert [r.status for r in again] == ["already_favourable"] * len(cfs)
    single = engine.explain(cfs[0], max_changes=m)
    assert [r.status for r in single] == ["already_favourable"]


# ---------------------------------------------------------------------- the property test
@pytest.mark.slow
@settings(max_examples=10, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(problem=problems())
def test_random_schemas_give_admissible_recourse(problem, tmp_path_factory):
    schema = FeatureSchema.from_dict(problem["schema"])
    rng = np.random.default_rng(problem["seed"])
    frame = random_frame(schema, N_ROWS, rng)
    labels = random_labels(schema, frame, rng)
    out = tmp_path_factory.getbasetemp() / "random_bundles" / f"b{next(_counter)}"
    bundle = build_bundle(schema, frame, labels, out, model="logistic", densities=("gmm",))
    m = problem["m"]
    engine = bundle.engine(SCFEConfig(max_changes=m, density="gmm"))
    schema = bundle.schema  # completed (ranges, cost scales)

    pred = engine.predict_proba(engine.encoder.encode(frame)).argmax(1)
    favourable_index = engine.classes.index(schema.target.favourable)
    need = np.flatnonzero(pred != favourable_index)[:8]
    fine = np.flatnonzero(pred == favourable_index)[:2]
    rows = frame.iloc[np.concatenate([need, fine])].reset_index(drop=True)

    results = engine.explain(rows, max_changes=m)
    statuses = [r.status for r in results]
    assert statuses[len(need):] == ["already_favourable"] * len(fine)
    assert "already_favourable" not in statuses[: len(need)]
    cfs = check_results(engine, schema, rows, results, m)
    check_feedback(engine, cfs, m)


# ---------------------------------------------------------------------- a fixed small engine
def test_tiny_engine_properties(tiny_engine, tiny_schema):
    from tests.conftest import tiny_frame

    frame, _ = tiny_frame()
    engine = tiny_engine
    schema = engine.schema
    pred = engine.predict_proba(engine.encoder.encode(frame)).argmax(1)
    rows = frame.iloc[np.flatnonzero(pred == 0)[:15]].reset_index(drop=True)
    for m in (1, 2):
        results = engine.explain(rows, max_changes=m)
        cfs = check_results(engine, schema, rows, results, m)
        assert len(cfs) >= len(rows) // 2  # income/years/grade can all move
        for cf, r in zip(cfs, [r for r in results if r.found]):
            assert cf["region"] == r.applicant["region"]  # immutable
            assert cf["years"] >= r.applicant["years"]  # increase only
        check_feedback(engine, cfs, m)


def test_tiny_engine_rejects_bad_arguments(tiny_engine):
    from recourse.errors import RecordValidationError
    from tests.conftest import tiny_frame

    frame, _ = tiny_frame(3)
    rows = frame.to_dict(orient="records")
    with pytest.raises(RecordValidationError) as info:
        tiny_engine.explain(rows, max_changes=0)
    assert info.value.errors[0].field == "max_changes"
    with pytest.raises(RecordValidationError) as info:
        tiny_engine.explain(rows, density="kde")
    assert info.value.errors[0].field == "density"
    bad = [dict(rows[0]), dict(rows[1], years=2.5)]
    with pytest.raises(RecordValidationError) as info:
        tiny_engine.explain(bad)
    assert [e.field for e in info.value.errors] == ["1.years"]


# ---------------------------------------------------------------------- the German demo bundle
def test_german_validity_and_constraints(german_engine, german_dataset):
    _, _, test, _ = german_dataset.split()
    engine = german_engine
    schema = engine.schema
    denied = engine.classes.index(2)
    pred = engine.predict_proba(engine.encoder.encode(test)).argmax(1)
    rows = test.iloc[np.flatnonzero(pred == denied)[:30]].reset_index(drop=True)
    assert len(rows) == 30
    results = engine.explain(rows, max_changes=3, density="gmm")
    found = [r for r in results if r.found]
    assert all(r.status in STATUSES for r in results)
    assert "already_favourable" not in {r.status for r in results}
    assert len(found) / len(results) >= 0.95
    originals = pd.DataFrame([r.applicant for r in found], columns=schema.names)
    cfs = pd.DataFrame([r.counterfactual for r in found], columns=schema.names)
    assert violations(schema, originals, cfs, 3) == [[] for _ in found]
    check_results(engine, schema, rows, results, 3)
    for r in found:
        for name in ("status_sex", "foreign_worker", "credit_history", "number_of_people_liable_for", "purpose",
                     "installment_rate", "present_employment"):
            assert r.counterfactual[name] == r.applicant[name]
        waited = r.counterfactual["age"] - r.applicant["age"]  # time passes for everything at once
        assert 0 <= waited <= 5
        assert r.counterfactual["present_residence_since"] == min(4, r.applicant["present_residence_since"] + waited)
    again = engine.explain([r.counterfactual for r in found], max_changes=3, density="gmm")
    assert all(r.status == "already_favourable" for r in again)


# ---------------------------------------------------------------------- float32 round-off (known bug)
def _float32_engine():
    """Two features; the model only cares about ``n`` (lower is better); ``c`` is a bystander."""
    import torch
    from torch import nn

    from recourse.models import TorchClassifier
    from recourse.scfe import RecourseEngine

    schema = FeatureSchema.from_dict({
        "name": "f32", "target": {"name": "y", "classes": [0, 1], "favourable": 1},
        "features": [{"name": "n", "kind": "integer", "range": [1, 3]},
                     {"name": "c", "kind": "continuous", "range": [2.5, 3.5]}],
    })
    linear = nn.Linear(2, 1)
    with torch.no_grad():
        linear.weight[:] = torch.tensor([[-4.0, 0.0]])  # logit = 1 - 4 * scaled(n)
        linear.bias[:] = 1.0
    clf = TorchClassifier(linear, output="logit", classes=[0, 1])
    return RecourseEngine(schema, clf, config=SCFEConfig(max_changes=1, density=None))


def test_float32_engine_control_case():
    """With c exactly representable in float32 the single change n: 2 -> 1 is found."""
    engine = _float32_engine()
    [r] = engine.explain({"n": 2, "c": 3.0}, max_changes=1)
    assert r.status == "recourse_found"
    assert r.counterfactual == {"n": 1, "c": 3.0}


@pytest.mark.parametrize("c", [2.9, 2.9535134248355797])
def test_float32_round_off_does_not_use_up_the_change_budget(c):
    engine = _float32_engine()
    [r] = engine.explain({"n": 2, "c": c}, max_changes=1)
    assert r.status == "recourse_found", r.message
    assert r.counterfactual == {"n": 1, "c": c}


def test_no_recourse_message_never_claims_fewer_changes_than_allowed():
    import re

    engine = _float32_engine()
    [r] = engine.explain({"n": 2, "c": 2.9}, max_changes=1)
    needed = re.search(r"needs (\d+) changes", r.message)
    assert r.status == "recourse_found" or (needed is None or int(needed.group(1)) > 1), r.message
