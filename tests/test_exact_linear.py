"""Linear models: the MILP as the last step (recourse/exact_linear.py) gives the cheapest answer
when it is no less plausible, fills what the search missed and certifies "no recourse"."""
from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import tiny_frame
from recourse.milp import EPSILON, exact_recourse


def denied(engine, n: int = 200, seed: int = 5):
    frame, _ = tiny_frame(n, seed=seed)
    return frame[engine.predict_proba(frame).argmax(1) == 0].reset_index(drop=True)


def in_the_band(engine, answer) -> bool:
    """Whether an answer's margin lies in (threshold, threshold + ε]: the engine accepts it (margin
    above the confidence's threshold) but the MILP, which asks ε more so that its own answers pass
    the engine's float32 check, does not see it; there the engine may beat the MILP's optimum or
    answer where the MILP finds none."""
    threshold = engine.config.margin_threshold(len(engine.classes))
    margin = engine.margin(engine.encode([answer.counterfactual]), np.array([1]))[0]
    return threshold < margin <= threshold + EPSILON


def test_answers_are_the_milp_optimum_or_more_plausible(tiny_engine):
    rows = denied(tiny_engine)
    answers = tiny_engine.explain(rows, max_changes=2)
    threshold = tiny_engine.config.margin_threshold(2)
    exact = exact_recourse(tiny_engine.with_config(max_changes=2), rows, 2, target=1)
    assert exact is not None
    found = np.array([a.found for a in answers])
    optimal = exact.status == "optimal"
    np.testing.assert_array_equal(found, optimal)  # none missed, none found where the MILP proves none
    cost = np.array([a.metrics["cost"] if a.found else np.nan for a in answers])
    gap = (cost[optimal] - exact.cost[optimal]) / exact.cost[optimal]
    beats = np.flatnonzero(optimal)[gap < -1e-6]
    assert all(in_the_band(tiny_engine, answers[i]) for i in beats)  # nothing else beats the optimum
    assert np.mean(gap <= 0.05 + 1e-9) >= 0.95, np.sort(gap)[-5:]
    assert threshold > 0
    for a in answers:
        if not a.found:
            assert "an exact check proved" in a.message, a.message


def test_without_the_milp_the_search_alone_answers(tiny_engine):
    rows = denied(tiny_engine).head(10)
    plain = tiny_engine.with_config(linear_exact=False).explain(rows, max_changes=2)
    exact = tiny_engine.explain(rows, max_changes=2)
    for a, b in zip(plain, exact):
        if a.found and b.found:
            assert b.metrics["cost"] <= a.metrics["cost"] + 1e-9 or b.metrics["lof"] <= a.metrics["lof"] + 0.1


def test_personal_limits_keep_the_searchs_answers(tiny_engine):
    """The MILP encodes the schema's rules only: a request that fixes a feature is never given a MILP
    answer that moves it."""
    rows = denied(tiny_engine).head(15)
    for answer in tiny_engine.explain(rows, max_changes=2, fixed=["income"]):
        if answer.found:
            assert answer.counterfactual["income"] == answer.applicant["income"]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), m=st.integers(1, 3), p=st.sampled_from([0.5, 0.6, 0.8]))
def test_without_a_density_every_answer_is_the_milp_optimum(tiny_engine, seed, m, p):
    """Property: with no density term (pure cost) a linear model's answers are exactly the MILP's
    optimum at the call's confidence and m, and an infeasible MILP is reported as a proven none."""
    rows = denied(tiny_engine, n=60, seed=seed).head(6)
    if rows.empty:
        return
    engine = tiny_engine.with_config(min_probability=p, max_changes=m)
    answers = engine.explain(rows, max_changes=m, density=None, min_probability=p)
    exact = exact_recourse(engine, rows, m, target=1)
    for answer, status, cost in zip(answers, exact.status, exact.cost):
        if answer.found and in_the_band(engine, answer):  # may beat the MILP's optimum, or answer where it finds none
            assert status != "optimal" or answer.metrics["cost"] <= cost + 1e-6 * max(1.0, cost)
        elif status == "optimal":
            assert answer.found and abs(answer.metrics["cost"] - cost) <= 1e-6 * max(1.0, cost), (answer.message, cost)
        elif status == "infeasible":
            assert not answer.found and "an exact check proved" in answer.message, answer.message


def test_an_answer_just_above_the_threshold_may_beat_the_milps_optimum(tiny_engine):
    """The case a property run found: probability 0.600003 at confidence 0.6 (margin 1.2e-5 above
    the threshold), one income step cheaper than the MILP's optimum, which asks ε = 1e-4 more."""
    rows = denied(tiny_engine, n=60, seed=374).head(6)
    engine = tiny_engine.with_config(min_probability=0.6, max_changes=1)
    answers = engine.explain(rows, max_changes=1, density=None, min_probability=0.6)
    exact = exact_recourse(engine, rows, 1, target=1)
    cheaper = [i for i, a in enumerate(answers)
               if a.found and exact.status[i] == "optimal" and a.metrics["cost"] < exact.cost[i] - 1e-6]
    assert cheaper and all(in_the_band(engine, answers[i]) for i in cheaper)
    assert all(answers[i].counterfactual_decision.probability >= 0.6 for i in cheaper)
