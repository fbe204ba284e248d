"""The exact search of tree models (recourse/lattice.py) and honest "no recourse" messages.

Brute force here means every lattice value of every allowed feature, all combinations, checked by
the bundle's own gate: the exact search must find an answer whenever brute force does, at the same
(lowest) cost, and "no recourse exists" must only be said when brute force finds none.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import TINY_SCHEMA, tiny_frame
from recourse.bundle import build_bundle
from recourse.lattice import TreeLattice, count_combinations
from recourse.schema import FeatureSchema

TREE_SCHEMA = {**TINY_SCHEMA, "features": [dict(f) for f in TINY_SCHEMA["features"]]}
for _f in TREE_SCHEMA["features"]:
    if _f["name"] == "income":
        _f.update(min_change=2.5)  # a continuous feature with more values than are enumerated: the cut path


@pytest.fixture(scope="module", params=["gbm", "forest"])
def tree_engine(request, tmp_path_factory):
    frame, labels = tiny_frame(400, seed=3)
    out = tmp_path_factory.mktemp("lattice") / request.param
    bundle = build_bundle(FeatureSchema.from_dict(TREE_SCHEMA), frame, labels, out, model=request.param,
                          densities=("gmm",))
    engine = bundle.engine()
    probs = engine.predict_proba(frame)
    denied = frame[probs.argmax(1) == 0].reset_index(drop=True)
    return engine, denied


def lattice_values(actions, j: int) -> np.ndarray:
    """Every value of feature j on its lattice within its range (levels for ordinals and binaries)."""
    if not actions.is_numeric[j]:
        return np.arange(actions.n_levels[j], dtype=float)
    step = actions.step[j] if actions.has_step[j] else 1.0 / actions.q[j]
    return np.round(np.arange(actions.low[j], actions.high[j] + step / 2, step), 10)


def brute_force(engine, codes: np.ndarray, features: list[int], max_changes: int, threshold: float):
    """Cheapest admissible, accepted combination of values of ``features`` per row (inf: none)."""
    actions = engine.encoder.action_set
    gate = engine.search.verification.confident(threshold)
    grid = np.stack([g.reshape(-1) for g in np.meshgrid(*[lattice_values(actions, j) for j in features],
                                                         indexing="ij")], axis=1)
    best = np.full(len(codes), np.inf)
    for i, origin in enumerate(codes):
        rows = np.repeat(origin[None], len(grid), axis=0)
        rows[:, features] = grid
        originals = np.repeat(origin[None], len(grid), axis=0)
        ok = gate.admissible(originals, rows, engine.encoder.encode_codes(rows), np.ones(len(grid), dtype=int),
                             max_changes, None)
        if ok.any():
            best[i] = actions.cost(originals[ok], rows[ok], actions.cost_weight).min()
    return best


def test_combinations_are_counted_exactly():
    counts = [3, 5, 2, 7]
    for m in range(5):
        expected = [sum(int(np.prod([counts[k] for k in s])) for s in itertools.combinations(range(4), size))
                    for size in range(m + 1)]
        assert count_combinations(counts, m) == expected


@pytest.mark.slow
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_exact_search_finds_every_answer_brute_force_finds(tree_engine, data):
    """Two or three movable features (the others pinned), any confidence: the exact search finds
    an answer exactly when brute force does, at brute force's (lowest) cost."""
    engine, denied = tree_engine
    actions = engine.encoder.action_set
    names = ["income", "years", "grade", "owner"]
    chosen = data.draw(st.lists(st.sampled_from(names), min_size=2, max_size=3, unique=True))
    rows = data.draw(st.lists(st.integers(0, len(denied) - 1), min_size=1, max_size=3, unique=True))
    p = data.draw(st.sampled_from([0.5, 0.6, 0.75]))
    m = data.draw(st.integers(1, len(chosen)))
    features = [actions.names.index(n) for n in chosen]
    codes = engine.encoder.to_codes(denied.iloc[rows])
    pinned = np.ones((len(rows), actions.n_features), dtype=bool)
    pinned[:, features] = False
    threshold = engine.config.with_(min_probability=p).margin_threshold(2)
    gate = engine.search.verification.confident(threshold)
    lattice = TreeLattice.of(engine.encoder, engine.verifier)
    result = lattice.search(gate, codes, np.ones(len(rows), dtype=int), m, actions.cost_weight, actions, pinned,
                            row_seconds=600.0)  # a property of the search, not of the machine's speed
    expected = brute_force(engine, codes, features, m, threshold)
    assert result.exhaustive.all(), result.reason
    np.testing.assert_array_equal(result.found, np.isfinite(expected))
    got = actions.cost(codes, result.codes, actions.cost_weight)
    np.testing.assert_allclose(got[result.found], expected[result.found], rtol=1e-9, atol=1e-9)
    assert actions.admissible(codes, result.codes, m)[result.found].all()


@pytest.mark.slow
def test_engine_finds_every_answer_and_certifies_every_none(tree_engine):
    """Through ``explain`` (sparse search first, the exact search for what it misses): every row
    brute force can move gets an answer; every other row is told, with proof, that none exists."""
    engine, denied = tree_engine
    engine = engine.with_config(exact_seconds=600.0)  # no time pressure: the property, not the machine's speed
    actions = engine.encoder.action_set
    movable = [j for j in range(actions.n_features) if not actions.immutable[j]]
    rows = denied.head(12)
    answers = engine.explain(rows, max_changes=2, density=None)
    expected = brute_force(engine, engine.encoder.to_codes(rows), movable, 2, engine.config.margin_threshold(2))
    for answer, cost in zip(answers, expected):
        assert answer.found == np.isfinite(cost), answer.message
        if not answer.found:
            assert answer.message.startswith("No recourse exists within these constraints: an exact check proved")


def test_uncertified_misses_say_so_and_why(tree_engine):
    """With the exact search cut to a few combinations a miss is not proof: the answer says so and why."""
    engine, denied = tree_engine
    engine = engine.with_config(exact_seconds=600.0)
    options = dict(max_changes=2, density=None, min_probability=0.9, fixed=["income", "years"])
    proven = [a for a in engine.explain(denied.head(30), **options) if not a.found]
    assert proven and all("an exact check proved" in a.message for a in proven)
    rows = [a.applicant for a in proven]
    missed = [a for a in engine.with_config(exact_limit=3).explain(rows, **options) if not a.found]
    assert len(missed) == len(proven)
    for a in missed:
        assert a.message.startswith("No recourse found:"), a.message
        assert "This does not prove that none exists" in a.message or "not exhaustive" in a.message, a.message
        assert "more than its limit of 3" in a.message, a.message
        assert "exists within" not in a.message
    hurried = [a for a in engine.with_config(exact_seconds=1e-9).explain(rows, **options) if not a.found]
    assert len(hurried) == len(proven)
    for a in hurried:  # out of time: said so, never claimed
        assert "ran out of its time" in a.message and "exists within" not in a.message, a.message


def test_a_network_never_claims_impossibility(tmp_path):
    """An MLP has no exact check: a miss is reported as a miss, with the reason."""
    from recourse.diagnosis import NO_PROOF

    frame, labels = tiny_frame(300)
    engine = build_bundle(FeatureSchema.from_dict(TINY_SCHEMA), frame, labels, tmp_path / "mlp", model="mlp",
                          densities=("gmm",)).engine()
    assert engine.search.lattice is None
    probs = engine.predict_proba(frame)
    worst = frame.iloc[np.argsort(probs[:, 1])[:5]]
    answers = engine.explain(worst, max_changes=2, min_probability=0.99, density=None, fixed=["income", "years"])
    missed = [a for a in answers if not a.found]
    assert missed
    for a in missed:
        assert a.message.startswith("No recourse found:") and NO_PROOF in a.message, a.message


def test_linear_models_certify_none_with_the_milp(tiny_engine):
    """A logistic bundle: a row that cannot reach 99 % with one change is told so with proof (MILP)."""
    frame, _ = tiny_frame(200)
    probs = tiny_engine.predict_proba(frame)
    worst = frame.iloc[[int(np.argmin(probs[:, 1]))]]
    [answer] = tiny_engine.explain(worst, max_changes=1, min_probability=0.999, density=None)
    assert not answer.found
    assert "an exact check proved" in answer.message, answer.message
