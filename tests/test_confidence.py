"""Confidence: every verified answer reaches the requested probability of the target class."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recourse import OptionsError, RequestOptions, SCFEConfig
from recourse.config import margin_threshold
from tests.conftest import tiny_frame

APPLICANT = Path(__file__).parents[1] / "datasets/german_credit/examples/denied_applicant.json"


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(p=st.floats(0.05, 0.97), seed=st.integers(0, 40), k=st.sampled_from([None, 2]))
def test_every_answer_and_alternative_reaches_the_minimum_probability(tiny_engine, p, seed, k):
    frame, _ = tiny_frame(10, seed=seed)
    for r in tiny_engine.explain(frame, min_probability=p, alternatives=k):
        if r.found:
            assert r.counterfactual_decision.probability >= p - 1e-6, (p, r.counterfactual_decision)
            again = tiny_engine.explain(r.counterfactual)[0]  # the model, asked afresh, agrees
            assert again.status == "already_favourable" and again.decision.probability >= p - 1e-6
        for alt in r.alternatives or []:
            assert alt.counterfactual_decision.probability >= p - 1e-6
        if r.status == "no_recourse_found" and p > 0.5:
            assert f"{p:.0%}" in r.message or "time limit" in r.message or "changes" in r.message


def test_margin_threshold_is_exact_for_two_classes_and_safe_for_more():
    for p in (0.5, 0.6, 0.9, 0.99):
        m = margin_threshold(p, 2)
        assert math.isclose(1.0 / (1.0 + math.exp(-m)), max(p, 0.5), rel_tol=1e-12)
        c = 4
        m = margin_threshold(p, c)
        assert 1.0 / (1.0 + (c - 1) * math.exp(-m)) >= p - 1e-12  # the worst case of the other classes
    assert margin_threshold(0.2, 2) == 0.0  # below 1/2 the model's decision is the stricter rule


def test_bad_confidence_is_refused_by_name(tiny_engine):
    for bad in (0, 1, 1.5, -0.1, True, "high", float("nan")):
        with pytest.raises(OptionsError) as info:
            RequestOptions(min_probability=bad)
        assert [e.field for e in info.value.errors] == ["min_probability"]
        with pytest.raises(OptionsError):
            SCFEConfig(min_probability=bad)


def test_confidence_over_http_and_the_command_line(german_bundle, tmp_path):
    from typer.testing import CliRunner

    from api import ServiceConfig, create_app
    from cli import app as cli_app

    applicant = json.loads(APPLICANT.read_text())
    client = create_app(ServiceConfig(database=tmp_path / "log.sqlite3", auth_required=False), bundle=german_bundle).test_client()
    body = client.post("/v1/recourse", json={"applicant": applicant, "min_probability": 0.9}).get_json()
    assert body["status"] in ("recourse_found", "no_recourse_found")
    if body["status"] == "recourse_found":
        assert body["counterfactual_decision"]["probability"] >= 0.9 - 1e-6
    bad = client.post("/v1/recourse", json={"applicant": applicant, "min_probability": 1.5})
    assert bad.status_code == 422 and bad.get_json()["errors"][0]["field"] == "min_probability"
    result = CliRunner().invoke(cli_app, ["explain", str(APPLICANT), "--bundle", str(german_bundle.path),
                                          "--min-probability", "0.9", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    if out["status"] == "recourse_found":
        assert out["counterfactual_decision"]["probability"] >= 0.9 - 1e-6
    refused = CliRunner().invoke(cli_app, ["explain", str(APPLICANT), "--bundle", str(german_bundle.path),
                                           "--min-probability", "1"])
    assert refused.exit_code == 2 and "--min-probability: must be a number between 0 and 1" in refused.output


def test_no_answer_at_the_confidence_says_when_a_less_certain_one_exists(german_bundle):
    """The German example has no answer at 0.75 within 3 changes, but one at the model's bare
    decision: the message says so, with its probability, and that it is less likely to hold."""
    import re

    engine = german_bundle.engine()
    applicant = json.loads(Path("datasets/german_credit/examples/denied_applicant.json").read_text())
    [strict] = engine.explain(applicant, min_probability=0.75)
    [bare] = engine.with_config(min_probability=None).explain(applicant)
    assert bare.found and not strict.found
    said = re.search(r"With a lower confidence there is one: (\d) changes? reach the decision at a probability of (\d+)%",
                     strict.message)
    assert said, strict.message
    assert 1 <= int(said.group(1)) <= 3 and 50 <= int(said.group(2)) < 75
    assert "more likely to overturn it" in strict.message
    [plain] = engine.with_config(min_probability=None).explain(applicant, max_changes=1)
    assert not plain.found and "lower confidence" not in plain.message  # no confidence asked: nothing lower to offer
