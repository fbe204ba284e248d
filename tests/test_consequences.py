"""Consequences (the additive structural model of :mod:`recourse.consequences`).

Property tests: the codes, scaled and torch forms agree with a plain reference; interventions are
recovered from counterfactuals; on random schemas where only a consequence can reach the target,
every answer is admissible as interventions, its counterfactual is the structural model applied to
the applicant and the listed actions, the ℓ0 limit and the cost count the interventions, and fixed
features and per-request limits hold for the counterfactual.  Plus the schema's errors, a worked
"wait" example, and the German demo's waiting rule.
"""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recourse.actionset import ActionSet
from recourse.bundle import build_bundle
from recourse.encoding import TabularEncoder
from recourse.errors import SchemaError
from recourse.models import TorchClassifier
from recourse.schema import FeatureSchema
from recourse.scfe import RecourseEngine, SCFEConfig
from tests.strategies import codes_for, schemas
from tests.test_engine_properties import (check_feedback, check_results, feature_specs, random_frame,
                                          structural_model)

_counter = itertools.count()


def _linkable(schema: FeatureSchema) -> list[int]:
    return [j for j, f in enumerate(schema.features) if f.kind in ("continuous", "integer", "ordinal")]


@st.composite
def schemas_with_edges(draw) -> FeatureSchema:
    """A random completed schema (tests/strategies.py) with random one-step consequences."""
    base = draw(schemas(min_features=2, max_features=6))
    ok = _linkable(base)
    if len(ok) < 2:
        return base
    order = draw(st.permutations(ok))
    k = draw(st.integers(1, len(order) - 1))
    edges = []
    for e in order[k:]:
        for c in draw(st.lists(st.sampled_from(order[:k]), unique=True, min_size=1, max_size=2)):
            rate = draw(st.sampled_from([-2.0, -1.0, 0.5, 1.0, 3.0]))
            edges.append({"cause": base.features[c].name, "effect": base.features[e].name, "rate": rate})
    data = base.model_dump(mode="json", exclude_none=True)
    data["consequences"] = edges
    return FeatureSchema.from_dict(data)


def reference_codes(actions: ActionSet, schema: FeatureSchema, x: np.ndarray, a: np.ndarray) -> np.ndarray:
    """The structural model on codes, one row and one edge at a time."""
    out = a.copy()
    for r in range(len(x)):
        push: dict[int, float] = {}
        for edge in schema.consequences:
            c, e = schema.names.index(edge.cause), schema.names.index(edge.effect)
            push[e] = push.get(e, 0.0) + edge.rate * (a[r, c] - x[r, c])
        for e, p in push.items():
            if abs(p) > 1e-9:
                value = actions.snap(np.array([a[r, e] + p]), np.array([e]))[0]
                out[r, e] = min(max(value, actions.low[e]), actions.high[e])
    return out


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_codes_scaled_and_recovered_forms_agree(data):
    schema = data.draw(schemas_with_edges())
    actions = ActionSet(schema)
    cons = actions.consequences
    x = data.draw(codes_for(schema, n_rows=3, off_lattice=False))
    a = data.draw(codes_for(schema, n_rows=3, off_lattice=False))
    a[:, cons.effects] = x[:, cons.effects]  # effects not acted on directly
    y = cons.apply(x, a)
    np.testing.assert_allclose(y, reference_codes(actions, schema, x, a), atol=1e-9)
    assert np.all((y >= actions.low - 1e-9) | ~(actions.is_numeric | actions.is_ordinal))
    assert np.all((y <= actions.high + 1e-9) | ~(actions.is_numeric | actions.is_ordinal))
    # only effects move beyond the interventions
    assert not (actions.changed(a, y) & ~cons.is_effect).any()
    # the interventions behind y are a again
    np.testing.assert_allclose(cons.interventions(x, y), a, atol=1e-9)
    # the scaled form is the encoding of the codes form
    enc = TabularEncoder(schema)
    np.testing.assert_allclose(cons.apply_scaled(enc.encode_codes(x), enc.encode_codes(a)), enc.encode_codes(y),
                               atol=1e-9)
    # without edges: the identity
    plain = ActionSet(FeatureSchema.from_dict({**schema.model_dump(mode="json", exclude_none=True), "consequences": []}))
    assert plain.consequences.apply(x, a) is a or np.array_equal(plain.consequences.apply(x, a), a)


@settings(max_examples=40, deadline=None, database=None)
@given(data=st.data())
def test_solver_relaxation_and_its_gradient(data):
    schema = data.draw(schemas_with_edges())
    cons = ActionSet(schema).consequences
    enc = TabularEncoder(schema)
    x = torch.as_tensor(enc.encode_codes(data.draw(codes_for(schema, n_rows=4))), dtype=torch.float64)
    z = (x + torch.as_tensor(np.random.default_rng(data.draw(st.integers(0, 99))).normal(0, 0.2, x.shape))).clamp(0, 1)
    seen, inside = cons.forward(z, x)
    if not cons.active:
        assert inside is None and seen is z
        return
    reference = z + (z - x) @ _matrix(cons, z.shape[1])
    cols = np.unique(cons.effect_column)
    expected = reference.clone()
    expected[:, cols] = reference[:, cols].clamp(0, 1)
    torch.testing.assert_close(seen, expected)
    g = torch.randn_like(z, dtype=torch.float64)
    zz = z.clone().requires_grad_(True)
    out = zz + (zz - x) @ _matrix(cons, z.shape[1])
    clipped = out.clone()
    clipped[:, cols] = out[:, cols].clamp(0, 1)
    (auto,) = torch.autograd.grad((clipped * g).sum(), zz)
    torch.testing.assert_close(cons.pullback(g, inside), auto)


def _matrix(cons, d: int) -> torch.Tensor:
    m = torch.zeros(d, d, dtype=torch.float64)
    for c, e, r in zip(cons.cause_column, cons.effect_column, cons.scaled_rate):
        m[c, e] += r
    return m


# ---------------------------------------------------------------------- the engine on random schemas
@st.composite
def driven_problems(draw) -> dict:
    """Schemas whose labels follow features a person cannot act on, moved by consequences of
    features they can act on (plus random bystanders), so that most answers rely on consequences."""
    n_cause, n_effect, n_other = draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(st.integers(0, 2))
    features, edges = [], []
    for i in range(n_cause + n_effect + n_other):
        while True:
            spec = draw(feature_specs(i, force_mutable=i < n_cause))
            if i >= n_cause + n_effect or spec["kind"] in ("continuous", "integer", "ordinal"):
                break
        if i < n_cause:
            spec.pop("transitions", None)
            spec.pop("max_change", None)
        elif i < n_cause + n_effect:
            spec.update(actionable=False)
            spec.pop("immutable", None)
        features.append(spec)
    span = lambda f: f["range"][1] - f["range"][0] if "range" in f else len(f["levels"]) - 1  # noqa: E731
    for e in features[n_cause:n_cause + n_effect]:
        for c in features[:n_cause]:
            rate = draw(st.sampled_from([-1.0, -0.5, 0.5, 1.0])) * span(e) / span(c)
            edges.append({"cause": c["name"], "effect": e["name"], "rate": rate})
    return {"schema": {"name": "driven", "target": {"name": "y", "classes": [0, 1], "favourable": 1},
                       "features": features, "consequences": edges},
            "n_cause": n_cause, "n_effect": n_effect,
            "seed": draw(st.integers(0, 2**31 - 1)), "m": draw(st.integers(1, 3))}


def _labels_from_effects(schema: FeatureSchema, frame: pd.DataFrame, effects: list[str],
                         rng: np.random.Generator) -> np.ndarray:
    enc = TabularEncoder(schema)
    x = enc.encode(frame)
    cols = [enc.layout[schema.names.index(name)].start for name in effects]
    score = x[:, cols] @ rng.choice([-1.0, 1.0], len(cols)) + rng.normal(0, 0.05, len(x))
    return (score > np.median(score)).astype(int)


@pytest.mark.slow
@settings(max_examples=12, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(problem=driven_problems())
def test_answers_are_interventions_whose_consequences_reach_the_target(problem, tmp_path_factory):
    from recourse.encoding import complete_schema

    schema = FeatureSchema.from_dict(problem["schema"])
    rng = np.random.default_rng(problem["seed"])
    frame = random_frame(schema, 200, rng)
    effects = [f.name for f in schema.features if not f.actionable and f.name in {e.effect for e in schema.consequences}]
    labels = _labels_from_effects(complete_schema(schema, frame), frame, effects, rng)
    out = tmp_path_factory.getbasetemp() / "driven" / f"b{next(_counter)}"
    bundle = build_bundle(schema, frame, labels, out, model="logistic", densities=())
    m = problem["m"]
    engine = bundle.engine(SCFEConfig(max_changes=m, density=None))
    schema = bundle.schema
    pred = engine.predict_proba(engine.encoder.encode(frame)).argmax(1)
    rows = frame.iloc[np.flatnonzero(pred == 0)[:8]].reset_index(drop=True)
    results = engine.explain(rows, max_changes=m)
    cfs = check_results(engine, schema, rows, results, m)
    for r in results:
        if r.found:  # the cost counts the actions (interventions), not their consequences
            acted = {**r.applicant, **{a.feature: a.to for a in r.actions}}
            codes = engine.encoder.to_codes(pd.DataFrame([r.applicant, acted]))
            cost = engine.encoder.action_set.cost(codes[:1], codes[1:], engine.verification.cost_weights)[0]
            assert r.metrics["cost"] == pytest.approx(cost, rel=1e-6, abs=1e-9)
    check_feedback(engine, cfs, m)
    # personal limits: a fixed effect never moves (its causes are frozen); a limit bounds the counterfactual
    effect = schema.feature(effects[0])
    fixed = engine.explain(rows, max_changes=m, fixed=[effect.name])
    for applicant, r in zip(rows.to_dict(orient="records"), fixed):
        if r.found:
            assert r.counterfactual[effect.name] == schema.validate_record(applicant)[effect.name]
    if effect.is_numeric:
        lo, hi = effect.range
        mid = (lo + hi) / 2
        bounded = engine.explain(rows, max_changes=m, limits={effect.name: [None, mid]})
        for r in bounded:
            if r.found and r.counterfactual[effect.name] != r.applicant[effect.name]:
                assert r.counterfactual[effect.name] <= mid + 1e-9


# ---------------------------------------------------------------------- a worked example: waiting
WAIT_SCHEMA = {
    "name": "wait", "target": {"name": "y", "classes": [0, 1], "favourable": 1},
    "features": [
        {"name": "years", "kind": "integer", "range": [0, 10], "direction": "increase", "cost_scale": 1.0,
         "phrases": {"increase": "Wait {delta}"}, "unit": "years"},
        {"name": "tenure", "kind": "integer", "range": [0, 6], "actionable": False, "cost_scale": 1.0, "unit": "years"},
        {"name": "debt", "kind": "continuous", "range": [0, 100], "precision": 0, "cost_scale": 1.0},
    ],
    "consequences": [{"cause": "years", "effect": "tenure", "rate": 1.0}],
}


def _wait_engine() -> RecourseEngine:
    """Approved once tenure reaches 4 (only waiting moves it); debt does not matter."""
    from torch import nn

    linear = nn.Linear(3, 1)
    with torch.no_grad():
        linear.weight[:] = torch.tensor([[0.0, 60.0, 0.0]])  # scaled tenure = tenure / 6
        linear.bias[:] = -35.0  # logit > 0 from tenure 3.5 on
    clf = TorchClassifier(linear, output="logit", classes=[0, 1])
    return RecourseEngine(FeatureSchema.from_dict(WAIT_SCHEMA), clf, config=SCFEConfig(max_changes=1, density=None))


def test_waiting_is_an_action_and_time_passes_for_its_consequences():
    engine = _wait_engine()
    [r] = engine.explain({"years": 2, "tenure": 1, "debt": 40.0})
    assert r.status == "recourse_found", r.message
    assert [a.feature for a in r.actions] == ["years"]
    assert r.actions[0].text == "Wait 3 years"
    assert r.counterfactual == {"years": 5, "tenure": 4, "debt": 40.0}
    assert [c.feature for c in r.consequences] == ["tenure"]
    assert r.consequences[0].text == "Tenure becomes 4 years (now 1 year): it follows from the change of years"
    assert r.metrics["l0"] == 1 and r.metrics["cost"] == pytest.approx(3.0)
    assert r.to_dict()["consequences"][0]["to"] == 4
    # tenure saturates at its range end
    [r] = engine.explain({"years": 0, "tenure": 5, "debt": 0.0})
    assert r.status == "already_favourable"
    # fixing the effect freezes the cause: no recourse
    [r] = engine.explain({"years": 2, "tenure": 1, "debt": 40.0}, fixed=["tenure"])
    assert r.status == "no_recourse_found"
    # a limit on the effect bounds the counterfactual
    [r] = engine.explain({"years": 2, "tenure": 1, "debt": 40.0}, limits={"tenure": [None, 3]})
    assert r.status == "no_recourse_found"
    # the DataFrame checks read the interventions: the moved effect is no violation, a direct change is
    from recourse.constraints import changed_features, violations
    schema = engine.schema
    a = pd.DataFrame([{"years": 2, "tenure": 1, "debt": 40.0}])
    ok = pd.DataFrame([{"years": 5, "tenure": 4, "debt": 40.0}])
    bad = pd.DataFrame([{"years": 2, "tenure": 4, "debt": 40.0}])
    assert violations(schema, a, ok, 1) == [[]]
    assert changed_features(schema, a, ok).tolist() == [[True, False, False]]
    assert violations(schema, a, bad, 1) == [["tenure: changed, but it cannot be acted on (the schema or the request fixes it)"]]
    # resetting the wait takes its consequence back: the answer has no redundant change
    from recourse.metrics import redundancy
    assert redundancy(engine.encoder, engine.predict_proba, a, ok, np.array([1])).tolist() == [0]


@pytest.mark.parametrize("edges, problem", [
    ([{"cause": "nope", "effect": "tenure", "rate": 1}], "consequences.0.cause: unknown feature 'nope'"),
    ([{"cause": "years", "effect": "years", "rate": 1}], "consequences.0: a feature cannot be its own consequence"),
    ([{"cause": "years", "effect": "tenure", "rate": 0}], "consequences.0.rate: must not be 0"),
    ([{"cause": "years", "effect": "tenure", "rate": 1}, {"cause": "tenure", "effect": "debt", "rate": 1}],
     "'tenure' is also a cause; chains of consequences are not supported"),
    ([{"cause": "years", "effect": "tenure", "rate": 1}, {"cause": "years", "effect": "tenure", "rate": 2}],
     "a second edge from 'years' to 'tenure'"),
    ([{"cause": "years", "effect": "flag", "rate": 1}], "consequences.0.effect: 'flag' is binary"),
    ([{"cause": "years", "effect": "tenure", "rate": float("inf")}], "consequences.0.rate"),
])
def test_schema_errors_name_the_edge(edges, problem):
    data = {**WAIT_SCHEMA, "features": [*WAIT_SCHEMA["features"], {"name": "flag", "kind": "binary"}],
            "consequences": edges}
    with pytest.raises(SchemaError) as info:
        FeatureSchema.from_dict(data)
    assert problem in str(info.value)


def test_german_waiting_moves_residence_and_nothing_else(german_engine, german_dataset):
    """German demo: waiting (age) is the one way age moves, residence follows, capped at 4."""
    schema = german_engine.schema
    assert [(e.cause, e.effect, e.rate) for e in schema.consequences] == [("age", "present_residence_since", 1.0)]
    _, _, test, _ = german_dataset.split()
    rows = test.head(60)
    results = german_engine.explain(rows)
    waits = [r for r in results if r.found and any(a.feature == "age" for a in r.actions)]
    for r in waits:
        [wait] = [a for a in r.actions if a.feature == "age"]
        assert wait.text.startswith("Wait ") and wait.to - wait.from_ <= 5
        expected = min(4, r.applicant["present_residence_since"] + wait.to - wait.from_)
        assert r.counterfactual["present_residence_since"] == expected
        assert [c.feature for c in r.consequences] == (["present_residence_since"]
                                                         if expected != r.applicant["present_residence_since"] else [])


# ---------------------------------------------------------------------- the exact (MILP) reference
def test_exact_milp_models_consequences_against_brute_force():
    """A linear model over a waiting clock, a saturating effect and a debt: the MILP optimum equals
    the cheapest of all interventions (brute force over the lattice) whose counterfactual clears the margin."""
    from torch import nn

    from recourse.milp import EPSILON, exact_recourse, linear_consequences

    schema = FeatureSchema.from_dict({
        "name": "milp", "target": {"name": "y", "classes": [0, 1], "favourable": 1},
        "features": [
            {"name": "years", "kind": "integer", "range": [0, 6], "direction": "increase", "cost_scale": 1.0,
             "cost_weight": 2.0},
            {"name": "tenure", "kind": "integer", "range": [0, 4], "actionable": False, "cost_scale": 1.0},
            {"name": "debt", "kind": "integer", "range": [0, 10], "direction": "decrease", "cost_scale": 2.0},
            {"name": "level", "kind": "ordinal", "levels": ["a", "b", "c"], "cost_scale": 1.0},
        ],
        "consequences": [{"cause": "years", "effect": "tenure", "rate": 1.0},
                         {"cause": "years", "effect": "level", "rate": 0.5 * 2}],
    })
    linear = nn.Linear(4, 1)
    with torch.no_grad():  # scaled: years/6, tenure/4, debt/10, level/2
        linear.weight[:] = torch.tensor([[-0.6, 4.0, -3.0, 1.0]])
        linear.bias[:] = -3.2
    engine = RecourseEngine(schema, TorchClassifier(linear, output="logit", classes=[0, 1]),
                            config=SCFEConfig(max_changes=2, density=None, min_probability=0.5))
    assert linear_consequences(engine.encoder.action_set)
    actions = engine.encoder.action_set
    rows = pd.DataFrame([{"years": y, "tenure": t, "debt": d, "level": lv}
                         for y, t, d, lv in itertools.product([0, 3, 5], [0, 2, 4], [2, 9], ["a", "c"])])
    rows = rows[engine.predict(rows)[1][:, 1] < 0.5].reset_index(drop=True)
    res = exact_recourse(engine, rows, max_changes=2)
    weights = engine.verification.cost_weights
    for i, row in rows.iterrows():
        x = engine.encoder.to_codes(pd.DataFrame([row]))
        grid = np.array(list(itertools.product(range(7), [x[0, 1]], range(11), range(3))), dtype=float)
        ok = actions.admissible(np.repeat(x, len(grid), 0), grid, 2)
        seen = actions.consequences.apply(np.repeat(x, len(grid), 0), grid)
        ok &= engine.margin(engine.encoder.encode_codes(seen), np.ones(len(grid), int)) >= EPSILON
        best = actions.cost(np.repeat(x, len(grid), 0), grid, weights)[ok].min() if ok.any() else None
        if best is None:
            assert res.status[i] == "infeasible", (row.to_dict(), res.status[i])
        else:
            assert res.status[i] == "optimal", (row.to_dict(), res.status[i])
            assert res.cost[i] == pytest.approx(best, abs=1e-6), row.to_dict()
    assert (res.status == "optimal").any() and (res.n_changes <= 2).all()
    # an effect that would need snapping: no exact reference
    snapped = FeatureSchema.from_dict({**schema.model_dump(mode="json", exclude_none=True),
                                       "consequences": [{"cause": "years", "effect": "tenure", "rate": 0.5}]})
    assert not linear_consequences(ActionSet(snapped))
