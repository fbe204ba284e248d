"""explain(alternatives=K): distinct, verified, cost-ordered counterfactuals and their diversity."""
from __future__ import annotations

import json
from itertools import combinations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recourse.constraints import violations
from recourse.errors import RecordValidationError
from recourse.results import jaccard_diversity


@pytest.fixture(scope="module")
def denied(german_engine, german_dataset):
    """Held-out German applicants the demo model denies (the first 12)."""
    _, _, test, _ = german_dataset.split()
    rows = german_engine.validate(test)
    pred = german_engine.predict_proba(german_engine.encoder.encode(rows)).argmax(1)
    denied_idx = german_engine.classes.index(2)
    return rows.iloc[np.flatnonzero(pred == denied_idx)[:12]].reset_index(drop=True)


@pytest.fixture(scope="module")
def answers(german_engine, denied):
    return german_engine.explain(denied, alternatives=3), german_engine.explain(denied)


def _changed(rec, alt) -> set[str]:
    """The features the alternative acts on: those it changes, less those only its consequences move."""
    moved = {name for name in rec.applicant if alt.counterfactual[name] != rec.applicant[name]}
    acted = {a.feature for a in alt.actions}
    return moved - ({c.feature for c in alt.consequences} - acted)


def test_alternatives_are_distinct_verified_and_ordered(german_engine, answers):
    with_alt, plain = answers
    found = [r for r in with_alt if r.found]
    assert found
    target = german_engine.classes.index(german_engine.schema.target.favourable)
    for rec, base in zip(with_alt, plain):
        assert rec.status == base.status
        if not rec.found:
            assert rec.alternatives == []
            continue
        alts = rec.alternatives
        assert 1 <= len(alts) <= 3
        # the first alternative is the ordinary answer
        assert alts[0].counterfactual == rec.counterfactual == base.counterfactual
        assert alts[0].metrics == rec.metrics
        # different changed-feature sets, each matching its actions
        sets = [_changed(rec, a) for a in alts]
        assert all(s == set(a.features) for s, a in zip(sets, alts))
        assert len({frozenset(s) for s in sets}) == len(sets)
        # after the ordinary answer, by cost
        costs = [a.metrics["cost"] for a in alts[1:]]
        assert costs == sorted(costs)
        # verified on the model, no constraint broken
        frame = pd.DataFrame([a.counterfactual for a in alts], columns=german_engine.schema.names)
        probs = german_engine.predict_proba(german_engine.encoder.encode(frame))
        assert (probs.argmax(1) == target).all()
        orig = pd.DataFrame([rec.applicant] * len(alts), columns=german_engine.schema.names)
        assert violations(german_engine.schema, orig, frame, rec.max_changes) == [[]] * len(alts)
        assert all(a.metrics["l0"] == len(s) <= rec.max_changes for a, s in zip(alts, sets))


def test_most_applicants_get_two_alternatives(answers):
    found = [r for r in answers[0] if r.found]
    assert sum(len(r.alternatives) >= 2 for r in found) >= 0.8 * len(found)


def test_diversity_is_the_mean_pairwise_jaccard_distance(answers):
    for rec in answers[0]:
        if not rec.found or len(rec.alternatives) < 2:
            continue
        sets = [_changed(rec, a) for a in rec.alternatives]
        by_hand = np.mean([1 - len(a & b) / len(a | b) for a, b in combinations(sets, 2)])
        assert rec.diversity == pytest.approx(by_hand)
        assert rec.to_dict()["diversity"] == pytest.approx(by_hand, rel=1e-5)
    assert jaccard_diversity([frozenset("ab"), frozenset("bc"), frozenset("d")]) == pytest.approx((2 / 3 + 1 + 1) / 3)
    assert jaccard_diversity([frozenset("a")]) is None


def test_json_unchanged_unless_requested(answers, german_engine, denied):
    with_alt, plain = answers
    for rec in plain:
        assert "alternatives" not in rec.to_dict() and "diversity" not in rec.to_dict()
    rec = next(r for r in with_alt if r.found)
    data = json.loads(json.dumps(rec.to_dict()))
    assert len(data["alternatives"]) == len(rec.alternatives)
    assert {"actions", "counterfactual", "metrics", "counterfactual_decision"} <= set(data["alternatives"][0])
    one = german_engine.explain(denied.head(2), alternatives=1)
    assert all(len(r.alternatives) == (1 if r.found else 0) and r.diversity is None for r in one)


@pytest.mark.parametrize("bad", [0, -1, 1.5, "3", True])
def test_bad_alternatives_count_is_rejected(german_engine, denied, bad):
    with pytest.raises(RecordValidationError) as info:
        german_engine.explain(denied.head(1), alternatives=bad)
    assert info.value.errors[0].field == "alternatives"


def test_report_lists_the_alternatives(answers, german_engine):
    from recourse.report import format_recourse

    rec = next(r for r in answers[0] if r.found and len(r.alternatives) >= 2)
    text = format_recourse(rec, german_engine.schema)
    assert "Alternatives (" in text and "diversity" in text and "(the answer above)" in text
    assert "Alternatives" not in format_recourse(answers[1][0], german_engine.schema)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(rows=st.lists(st.integers(0, 11), min_size=1, max_size=3, unique=True), m=st.integers(1, 3),
       k=st.integers(2, 4), noise=st.floats(-0.2, 0.2))
def test_alternatives_never_break_constraints(german_engine, denied, rows, m, k, noise):
    """Property: every alternative keeps immutables, directions, ranges and at most m changes."""
    frame = denied.iloc[rows].reset_index(drop=True).copy()
    for feat in german_engine.schema.features:
        if feat.is_numeric and not feat.immutable:
            lo, hi = feat.range
            values = np.clip(frame[feat.name].to_numpy(float) + noise * (hi - lo), lo, hi)
            frame[feat.name] = np.round(values).astype(int) if feat.kind == "integer" else values
    for rec in german_engine.explain(frame, max_changes=m, alternatives=k, density=None):
        alts = rec.alternatives
        assert len(alts) <= k and (rec.found or not alts)
        if not alts:
            continue
        cfs = pd.DataFrame([a.counterfactual for a in alts], columns=german_engine.schema.names)
        orig = pd.DataFrame([rec.applicant] * len(alts), columns=german_engine.schema.names)
        assert violations(german_engine.schema, orig, cfs, m) == [[]] * len(alts)
        assert len({a.features for a in alts}) == len(alts)
