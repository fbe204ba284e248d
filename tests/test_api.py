"""The HTTP service through Flask's test client: every endpoint and every error status."""
from __future__ import annotations

import json
import math
import threading
import time
import warnings
from pathlib import Path

import pytest
from openapi_spec_validator import validate as validate_openapi

from api import ServiceConfig, create_app
from api.batching import MicroBatcher
from api.keys import KeyRing, hash_key, new_key, read_key_file
from api.schemas import BatchAnswer, PredictAnswer, RecourseAnswer

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "datasets" / "german_credit" / "examples"
KEY = "test-key-123"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def app(german_bundle, tmp_path_factory):
    db = tmp_path_factory.mktemp("api") / "log.sqlite3"
    return create_app(ServiceConfig(database=db, api_key_hashes=[hash_key(KEY)], max_batch=20, max_body_bytes=64 * 1024),
                      bundle=german_bundle)


@pytest.fixture(scope="module")
def client(app):
    return app.test_client()


@pytest.fixture(scope="module")
def denied() -> dict:
    return json.loads((EXAMPLES / "denied_applicant.json").read_text())


@pytest.fixture(scope="module")
def approved() -> dict:
    return json.loads((EXAMPLES / "approved_applicant.json").read_text())


@pytest.fixture(scope="module")
def answer(client, denied):
    response = client.post("/v1/recourse", json={"applicant": denied}, headers=AUTH)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response


def problem(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == status and body["title"] and body["detail"] and body["type"].startswith("urn:recourse:problem:")
    return body


# ---------------------------------------------------------------------- endpoints
def test_recourse_answer_has_the_cli_fields_and_more(answer, german_bundle):
    body = answer.get_json()
    assert body["status"] == "recourse_found"
    assert body["decision"]["label"] == "denied" and 0.5 < body["decision"]["probability"] <= 1
    assert body["counterfactual_decision"]["label"] == "approved" and body["counterfactual_decision"]["probability"] > 0.5
    assert body["actions"] and all({"feature", "from", "to", "text"} <= set(a) for a in body["actions"])
    assert set(body["counterfactual"]) == set(german_bundle.schema.names)
    assert {"l0", "l2", "lof", "cost"} <= set(body["metrics"])
    assert body["model"] == {"id": "german-mlp", "hash": german_bundle.hash}
    assert len(body["id"]) == 32 and body["created"].endswith("Z")
    RecourseAnswer.model_validate(body)  # the documented (OpenAPI) shape


def test_reasons_are_the_changed_features_ranked_by_effect_alone(answer):
    body = answer.get_json()
    reasons = body["reasons"]
    assert {r["feature"] for r in reasons} == {a["feature"] for a in body["actions"]}
    changes = [r["score_change"] for r in reasons]
    assert changes == sorted(changes, reverse=True)
    for r in reasons:
        assert r["text"].startswith(r["label"][:1].upper()) or r["label"] in r["text"]
        assert 0 <= r["probability_alone"] <= 1


def test_stored_answer_is_returned_byte_for_byte(client, answer):
    again = client.get(f"/v1/recourse/{answer.get_json()['id']}", headers=AUTH)
    assert again.status_code == 200
    assert again.get_data() == answer.get_data()


def test_same_request_same_bundle_same_answer(client, denied, answer):
    second = client.post("/v1/recourse", json={"applicant": denied}, headers=AUTH).get_json()
    first = answer.get_json()
    assert second["id"] != first["id"]
    strip = lambda b: {k: v for k, v in b.items() if k not in ("id", "created")}  # noqa: E731
    assert strip(second) == strip(first)


def test_already_favourable(client, approved):
    body = client.post("/v1/recourse", json={"applicant": approved}, headers=AUTH).get_json()
    assert body["status"] == "already_favourable" and body["actions"] == [] and body["reasons"] == []


def test_options_are_honoured(client, denied):
    body = client.post("/v1/recourse", json={"applicant": denied, "max_changes": 1, "density": "none"}, headers=AUTH).get_json()
    assert body["max_changes"] == 1
    assert len(body["actions"]) <= 1


def test_batch_is_one_engine_call(app, client, denied, approved):
    service = app.extensions["recourse"]
    calls = []
    original = service.engine.explain

    def counting(records, **kw):
        calls.append(len(records))
        return original(records, **kw)

    service.engine.explain = counting
    try:
        people = [dict(denied, duration=d) for d in (37, 39, 42, 48)] + [dict(approved, credit_amount=approved["credit_amount"] + 1)]
        response = client.post("/v1/recourse/batch", json={"applicants": people, "max_changes": 3}, headers=AUTH)
    finally:
        service.engine.explain = original
    assert response.status_code == 200
    body = response.get_json()
    assert body["count"] == 5 and len(body["results"]) == 5
    BatchAnswer.model_validate(body)
    assert calls == [5]
    assert [r["applicant"]["duration"] for r in body["results"]] == [37, 39, 42, 48, approved["duration"]]
    stored = client.get(f"/v1/recourse/{body['results'][0]['id']}", headers=AUTH).get_json()
    assert stored == body["results"][0]


def test_predict(client, denied, approved):
    body = client.post("/v1/predict", json={"applicant": denied}, headers=AUTH).get_json()
    assert body["decision"]["label"] == "denied" and body["favourable"] is False
    PredictAnswer.model_validate(body)
    assert math.isclose(sum(body["probabilities"].values()), 1.0, rel_tol=1e-5)
    assert client.post("/v1/predict", json={"applicant": approved}, headers=AUTH).get_json()["favourable"] is True


def test_schema_and_models(client, german_bundle):
    schema = client.get("/v1/schema", headers=AUTH).get_json()
    assert [f["name"] for f in schema["features"]] == german_bundle.schema.names
    models = client.get("/v1/models", headers=AUTH).get_json()["models"]
    assert models[0]["hash"] == german_bundle.hash and models[0]["densities"] == ["gmm", "kde", "knn"]  # the default first


def test_health_ready_metrics(client, answer):
    assert client.get("/healthz").get_json()["status"] == "ok"
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["checks"] == {"model": True, "database": True}
    text = client.get("/metrics").get_data(as_text=True)
    assert 'recourse_http_requests_total{endpoint="/v1/recourse",method="POST",status="200"}' in text
    assert 'recourse_outcomes_total{status="recourse_found"}' in text
    assert "recourse_http_request_duration_seconds_bucket" in text
    assert "recourse_solver_batch_rows_count" in text


def test_openapi_document_is_valid_openapi_31(client):
    doc = client.get("/openapi.json").get_json()
    validate_openapi(doc)
    assert doc["openapi"] == "3.1.0"
    assert {"/v1/recourse", "/v1/recourse/batch", "/v1/predict", "/v1/recourse/{answer_id}", "/v1/schema",
            "/v1/models", "/healthz", "/readyz", "/metrics"} <= set(doc["paths"])
    applicant = doc["components"]["schemas"]["Applicant"]
    assert applicant["properties"]["age"]["type"] == "integer" and "status_sex" in applicant["required"]


# ---------------------------------------------------------------------- errors
def test_400_malformed_json(client):
    body = problem(client.post("/v1/recourse", data="{\"applicant\": ", content_type="application/json", headers=AUTH), 400)
    assert "not valid JSON" in body["detail"]
    problem(client.post("/v1/recourse", data=b"\xff\xfe", content_type="application/json", headers=AUTH), 400)


def test_401_missing_or_wrong_key(client, denied):
    missing = problem(client.post("/v1/recourse", json={"applicant": denied}), 401)
    assert "missing API key" in missing["detail"]
    wrong = client.post("/v1/recourse", json={"applicant": denied}, headers={"Authorization": "Bearer nope"})
    assert "wrong API key" in problem(wrong, 401)["detail"]
    assert wrong.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/v1/schema", headers={"X-API-Key": KEY}).status_code == 200


def test_404_and_405(client):
    problem(client.get("/v1/nothing-here", headers=AUTH), 404)
    problem(client.get("/v1/recourse/0000", headers=AUTH), 404)
    not_allowed = client.delete("/v1/recourse", headers=AUTH)
    problem(not_allowed, 405)
    assert "POST" in not_allowed.headers["Allow"]


def test_413_body_too_large(client, denied):
    big = json.dumps({"applicant": denied, "padding": "x" * 100_000})
    problem(client.post("/v1/recourse", data=big, content_type="application/json", headers=AUTH), 413)


def test_415_wrong_content_type(client, denied):
    problem(client.post("/v1/recourse", data=json.dumps({"applicant": denied}), content_type="text/plain", headers=AUTH), 415)
    problem(client.post("/v1/recourse", data=json.dumps({"applicant": denied}), headers=AUTH), 415)


@pytest.mark.parametrize("change, field, words", [
    ({"shoe_size": 42}, "applicant.shoe_size", "unknown feature"),
    ({"age": None}, "applicant.age", "wrong type"),
    ({"age": "thirty"}, "applicant.age", "wrong type"),
    ({"age": 500}, "applicant.age", "outside the allowed range"),
    ({"purpose": "spaceship"}, "applicant.purpose", "unknown category"),
])
def test_422_invalid_applicant(client, denied, change, field, words):
    body = problem(client.post("/v1/recourse", json={"applicant": {**denied, **change}}, headers=AUTH), 422)
    assert any(e["field"] == field and words in e["message"] for e in body["errors"]), body
    assert all(e["pointer"] == "/" + e["field"].replace(".", "/") for e in body["errors"])


def test_422_missing_feature_and_nan(client, denied):
    partial = {k: v for k, v in denied.items() if k != "duration"}
    body = problem(client.post("/v1/recourse", json={"applicant": partial}, headers=AUTH), 422)
    assert body["errors"] == [{"field": "applicant.duration", "pointer": "/applicant/duration", "message": "missing feature"}]
    text = json.dumps({"applicant": denied}).replace(f'"credit_amount": {denied["credit_amount"]}', '"credit_amount": NaN')
    assert "NaN" in text
    body = problem(client.post("/v1/recourse", data=text, content_type="application/json", headers=AUTH), 422)
    assert body["errors"][0]["field"] == "applicant.credit_amount" and "finite" in body["errors"][0]["message"]


@pytest.mark.parametrize("extra, field", [
    ({"max_changes": 0}, "max_changes"), ({"max_changes": "three"}, "max_changes"),
    ({"density": "parzen"}, "density"), ({"target": "maybe"}, "target"), ({"colour": "blue"}, "colour"),
])
def test_422_invalid_options(client, denied, extra, field):
    body = problem(client.post("/v1/recourse", json={"applicant": denied, **extra}, headers=AUTH), 422)
    assert body["errors"][0]["field"] == field


def test_422_batch_errors_name_the_row(client, denied):
    body = problem(client.post("/v1/recourse/batch", json={"applicants": [denied, {**denied, "age": -3}]}, headers=AUTH), 422)
    assert body["errors"][0]["pointer"] == "/applicants/1/age"
    too_many = problem(client.post("/v1/recourse/batch", json={"applicants": [denied] * 21}, headers=AUTH), 422)
    assert too_many["errors"][0]["field"] == "applicants" and "at most 20" in too_many["errors"][0]["message"]
    problem(client.post("/v1/recourse/batch", json={"applicants": []}, headers=AUTH), 422)
    problem(client.post("/v1/recourse", json=[1, 2], headers=AUTH), 422)


def test_unexpected_errors_are_500_problems_without_traces(app, client, denied):
    service = app.extensions["recourse"]
    original = service.engine.explain
    service.engine.explain = lambda *a, **k: 1 / 0
    try:
        response = client.post("/v1/recourse", json={"applicant": {**denied, "duration": 13}}, headers=AUTH)
    finally:
        service.engine.explain = original
    body = problem(response, 500)
    assert "Traceback" not in response.get_data(as_text=True) and "ZeroDivision" not in body["detail"]


# ---------------------------------------------------------------------- configuration, keys, log, batching
def test_auth_required_needs_keys(german_bundle, tmp_path):
    with pytest.raises(ValueError, match="no API keys"):
        create_app(ServiceConfig(database=tmp_path / "x.db"), bundle=german_bundle)
    with pytest.warns(UserWarning, match="WITHOUT authentication"):
        open_app = create_app(ServiceConfig(database=tmp_path / "x.db", auth_required=False), bundle=german_bundle)
    assert open_app.test_client().get("/v1/schema").status_code == 200


def test_key_ring_and_key_file(tmp_path):
    key = new_key()
    ring = KeyRing([hash_key(key), hash_key("other")])
    assert ring.check(key) and ring.check("other")
    assert not ring.check(key + "x") and not ring.check("") and not ring.check(None)
    path = tmp_path / "keys"
    path.write_text(f"# service keys\nalice {hash_key(key)}\n\n{hash_key('b')}  # bob\n")
    assert read_key_file(path) == [hash_key(key), hash_key("b")]
    path.write_text("alice not-a-digest\n")
    with pytest.raises(ValueError, match="line 1"):
        read_key_file(path)
    with pytest.raises(ValueError, match="sha256"):
        KeyRing(["plain-key"])


def test_micro_batcher_groups_concurrent_jobs():
    gate, entered = threading.Event(), threading.Event()
    calls: list[tuple] = []

    def solve(key, rows):
        entered.set()
        gate.wait(5)
        calls.append((key, len(rows)))
        return [r * 10 for r in rows]

    batcher = MicroBatcher(solve, max_rows=100)
    first = batcher.submit("a", [1])
    assert entered.wait(5)  # the worker is busy with the first job; the next ones queue up
    futures = [batcher.submit("a", [i, i + 1]) for i in range(5)] + [batcher.submit("b", [7])]
    gate.set()
    assert first.result(5) == [10]
    assert [f.result(5) for f in futures[:5]] == [[i * 10, (i + 1) * 10] for i in range(5)]
    assert futures[5].result(5) == [70]
    assert calls == [("a", 1), ("a", 10), ("b", 1)]
    batcher.close()


def test_micro_batcher_isolates_a_failing_job():
    def solve(key, rows):
        if "bad" in rows:
            raise ValueError("bad row")
        return rows

    batcher = MicroBatcher(solve)
    good, bad = batcher.submit("k", ["ok"]), batcher.submit("k", ["bad"])
    assert good.result(5) == ["ok"]
    with pytest.raises(ValueError):
        bad.result(5)
    batcher.close()


def test_micro_batcher_finish_stage_runs_beside_the_next_solve():
    solved: list[list] = []
    release = threading.Event()
    finishing = threading.Event()

    def solve(key, rows):
        solved.append(list(rows))
        return [r * 2 for r in rows]

    def finish(results):
        finishing.set()
        assert release.wait(5)
        return [r + 1 for r in results]

    batcher = MicroBatcher(solve, finish=finish, max_wait=0.0)
    first = batcher.submit("k", [1, 2])
    assert finishing.wait(5)  # the first group is being finished (e.g. waiting for the disk)...
    second = batcher.submit("k", [5])
    deadline = time.time() + 5
    while len(solved) < 2 and time.time() < deadline:
        time.sleep(0.01)
    assert solved == [[1, 2], [5]]  # ...while the solver already solved the next one
    assert not first.done() and not second.done()  # futures resolve only after finishing
    release.set()
    assert first.result(5) == [3, 5] and second.result(5) == [11]
    batcher.close()


def test_micro_batcher_finish_failure_fails_only_that_group():
    def finish(results):
        if "bad" in results:
            raise OSError("disk full")
        return results

    batcher = MicroBatcher(lambda key, rows: rows, finish=finish, max_wait=0.0)
    bad = batcher.submit("k", ["bad"])
    with pytest.raises(OSError):
        bad.result(5)
    assert batcher.submit("k", ["ok"]).result(5) == ["ok"]
    batcher.close()


def test_micro_batcher_finishes_waiting_jobs_in_one_call():
    """Jobs waiting for the finisher (solved groups and submit_solved ones) share one finish call."""
    calls: list[list] = []
    release, entered = threading.Event(), threading.Event()

    def finish(results):
        calls.append(list(results))
        if len(calls) == 1:
            entered.set()
            assert release.wait(5)
        return [f"logged {r}" for r in results]

    batcher = MicroBatcher(lambda key, rows: rows, finish=finish, max_wait=0.0)
    first = batcher.submit_solved(["a"])
    assert entered.wait(5)  # the finisher is busy with "a"; the next jobs queue behind it
    waiting = [batcher.submit_solved(["b"]), batcher.submit_solved(["c", "d"])]
    deadline = time.time() + 5
    while batcher._done.qsize() < 2 and time.time() < deadline:
        time.sleep(0.01)
    release.set()
    assert first.result(5) == ["logged a"]
    assert [f.result(5) for f in waiting] == [["logged b"], ["logged c", "logged d"]]
    assert calls == [["a"], ["b", "c", "d"]]
    batcher.close()


def test_micro_batcher_without_finish_returns_solved_rows():
    batcher = MicroBatcher(lambda key, rows: rows)
    assert batcher.submit_solved([1, 2]).result(1) == [1, 2]
    batcher.close()


def test_micro_batcher_gathers_up_to_the_estimated_concurrency():
    """After a batch of 1 with 3 jobs queued behind it (ĉ = 4), the next batch waits for a 4th job
    arriving within the window instead of leaving without it."""
    gate, entered = threading.Event(), threading.Event()
    batches: list[list] = []

    def solve(key, rows):
        batches.append(list(rows))
        if len(batches) == 1:
            entered.set()
            assert gate.wait(5)
        time.sleep(0.2)  # every solve takes 0.2 s: window min(10 s, 1.0 · 0.2 s)
        return rows

    batcher = MicroBatcher(solve, max_wait=10.0, wait_share=1.0)
    first = batcher.submit("k", ["a"])
    assert entered.wait(5)
    queued = [batcher.submit("k", [c]) for c in "bcd"]
    gate.set()
    first.result(5)
    for f in queued:
        f.result(5)
    late = [batcher.submit("k", [c]) for c in "ef"]
    time.sleep(0.05)  # well inside the 0.2 s window
    late.append(batcher.submit("k", ["g"]))
    for f in late:
        f.result(5)
    assert batches == [["a"], ["b", "c", "d"], ["e", "f", "g"]]  # ĉ = 3: waited for "g", 50 ms later
    batcher.close()


def test_micro_batcher_lone_client_never_waits():
    batcher = MicroBatcher(lambda key, rows: rows, max_wait=30.0, wait_share=1e6)
    for i in range(5):
        started = time.perf_counter()
        assert batcher.submit("k", [i]).result(10) == [i]
        assert time.perf_counter() - started < 5.0  # ĉ = 1: the window never opens
    batcher.close()


def test_config_rejects_unknown_settings():
    with pytest.raises(ValueError):
        ServiceConfig(databse="typo.db")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ServiceConfig(auth_required=True, api_key_hashes=[hash_key("k")])


def test_alternatives_and_cost_weights_over_http(client, denied):
    body = client.post("/v1/recourse", json={"applicant": denied, "alternatives": 3}, headers=AUTH).get_json()
    assert body["status"] == "recourse_found" and 2 <= len(body["alternatives"]) <= 3
    sets = [frozenset(a["feature"] for a in alt["actions"]) for alt in body["alternatives"]]
    assert len(set(sets)) == len(sets) and 0 <= body["diversity"] <= 1
    RecourseAnswer.model_validate(body)
    changed = {a["feature"] for a in client.post("/v1/recourse", json={"applicant": denied}, headers=AUTH).get_json()["actions"]}
    weights = {name: 50.0 for name in changed}
    steered = client.post("/v1/recourse", json={"applicant": denied, "cost_weights": weights}, headers=AUTH).get_json()
    assert steered["status"] == "recourse_found"
    assert {a["feature"] for a in steered["actions"]} != changed


@pytest.mark.parametrize("weights, field", [({"shoe_size": 2.0}, "cost_weights.shoe_size"), ({"duration": 0}, "cost_weights.duration"),
                                            ({"duration": -1.5}, "cost_weights.duration"), ({"duration": "high"}, "cost_weights.duration")])
def test_422_bad_cost_weights(client, denied, weights, field):
    body = problem(client.post("/v1/recourse", json={"applicant": denied, "cost_weights": weights}, headers=AUTH), 422)
    assert body["errors"][0]["field"] == field
