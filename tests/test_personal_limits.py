"""Personal limits per request: ``fixed`` features never move and ``limits`` bound every changed
value, in Python, on the command line and over HTTP (property tests on the tiny engine)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recourse import OptionsError
from tests.conftest import tiny_frame

GRADES = ["low", "mid", "high"]
MUTABLE = ["income", "years", "owner", "grade"]


@st.composite
def personal_limits(draw) -> dict:
    fixed = draw(st.lists(st.sampled_from(MUTABLE), unique=True, max_size=2))
    limits: dict = {}
    if draw(st.booleans()):
        lo = draw(st.one_of(st.none(), st.floats(0, 100).map(lambda v: round(v, 1))))
        hi = draw(st.one_of(st.none(), st.floats(0, 100).map(lambda v: round(v, 1))))
        if lo is not None and hi is not None and lo > hi:
            lo, hi = hi, lo
        limits["income"] = [lo, hi]
    if draw(st.booleans()):
        lo, hi = sorted(draw(st.lists(st.integers(0, 40), min_size=2, max_size=2)))
        limits["years"] = [lo, hi]
    if draw(st.booleans()):
        a, b = sorted(draw(st.lists(st.integers(0, 2), min_size=2, max_size=2)))
        limits["grade"] = [GRADES[a], GRADES[b]]
    return {"fixed": fixed, "limits": limits}


def _within(value, ends, feature: str) -> bool:
    lo, hi = ends
    if feature == "grade":
        value, lo, hi = GRADES.index(value), None if lo is None else GRADES.index(lo), None if hi is None else GRADES.index(hi)
    return (lo is None or value >= lo - 1e-9) and (hi is None or value <= hi + 1e-9)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(ask=personal_limits(), seed=st.integers(0, 50))
def test_fixed_features_never_move_and_changed_values_stay_within_the_limits(tiny_engine, ask, seed):
    frame, _ = tiny_frame(12, seed=seed)
    results = tiny_engine.explain(frame, max_changes=3, **ask)
    for r in results:
        if not r.found:
            continue
        for name in ask["fixed"]:
            assert r.counterfactual[name] == r.applicant[name], (name, r.applicant, r.counterfactual)
        for name, ends in ask["limits"].items():
            if r.counterfactual[name] != r.applicant[name]:
                assert _within(r.counterfactual[name], ends, name), (name, ends, r.applicant, r.counterfactual)
        assert r.metrics["l0"] <= 3


def test_limits_steer_the_answer_and_are_named_in_errors(tiny_engine):
    frame, _ = tiny_frame(40, seed=3)
    free = tiny_engine.explain(frame)
    pinned = tiny_engine.explain(frame, fixed=["income"])
    moved = [r for r in free if r.found and r.counterfactual["income"] != r.applicant["income"]]
    assert moved, "the free answers change income somewhere"
    assert all(r.counterfactual["income"] == r.applicant["income"] for r in pinned if r.found)
    for bad, field in [({"fixed": ["nope"]}, "fixed.0"), ({"fixed": "income"}, "fixed"),
                       ({"limits": {"region": ["north", "east"]}}, "limits.region"),
                       ({"limits": {"owner": [0, 1]}}, "limits.owner"),
                       ({"limits": {"income": [50, 10]}}, "limits.income"),
                       ({"limits": {"grade": ["low", "top"]}}, "limits.grade"),
                       ({"limits": {"income": ["a", None]}}, "limits.income"),
                       ({"limits": {"income": [1]}}, "limits.income"),
                       ({"limits": {"income": [float("nan"), 3]}}, "limits.income")]:
        with pytest.raises(OptionsError) as info:
            tiny_engine.explain(frame.head(1), **bad)
        assert [e.field for e in info.value.errors] == [field], bad


def test_http_and_cli_take_fixed_and_limits(german_bundle, tmp_path):
    from typer.testing import CliRunner

    from api import ServiceConfig, create_app
    from cli import app as cli_app

    applicant = json.loads((Path(__file__).parents[1] / "datasets/german_credit/examples/denied_applicant.json").read_text())
    service = create_app(ServiceConfig(database=tmp_path / "log.sqlite3", auth_required=False), bundle=german_bundle)
    client = service.test_client()
    most = applicant["credit_amount"]  # the applicant cannot borrow more than asked
    body = {"applicant": applicant, "fixed": ["status"], "limits": {"duration": [30, None], "credit_amount": [None, most]}}
    answer = client.post("/v1/recourse", json=body).get_json()
    assert answer["status"] in ("recourse_found", "no_recourse_found"), answer
    if answer["status"] == "recourse_found":
        cf = answer["counterfactual"]
        assert cf["status"] == applicant["status"] and cf["duration"] >= 30 and cf["credit_amount"] <= most
    bad = client.post("/v1/recourse", json={"applicant": applicant, "limits": {"duration": [40, 30]}})
    assert bad.status_code == 422 and bad.get_json()["errors"][0]["pointer"] == "/limits/duration"
    spec = client.get("/openapi.json").get_json()
    text = json.dumps(spec)
    assert '"fixed"' in text and '"limits"' in text

    path = tmp_path / "applicant.json"
    path.write_text(json.dumps(applicant))
    runner = CliRunner()
    result = runner.invoke(cli_app, ["explain", str(path), "--bundle", str(german_bundle.path), "--json",
                                     "--fix", "status", "--limit", "duration=30:"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    if out["status"] == "recourse_found":
        assert out["counterfactual"]["status"] == applicant["status"] and out["counterfactual"]["duration"] >= 30
    refused = runner.invoke(cli_app, ["explain", str(path), "--bundle", str(german_bundle.path), "--limit", "duration=40:30"])
    assert refused.exit_code == 2 and "--limit duration: low must not exceed high" in refused.output
