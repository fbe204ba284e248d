"""Bad input over HTTP: a clear problem naming the field and the problem, never a 500, a huge
response or an internal class name (QA findings on the request envelope and body reading)."""
from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import pytest

from api import ServiceConfig, create_app
from api.keys import hash_key
from api.problems import MAX_ERRORS, MAX_TEXT, Problem

KEY = "bad-input-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
LIMIT = 64 * 1024
DENIED = json.loads((Path(__file__).resolve().parent.parent / "datasets/german_credit/examples/denied_applicant.json").read_text())
HUGE = "1" + "0" * 5000


@pytest.fixture(scope="module")
def app(german_bundle, tmp_path_factory):
    db = tmp_path_factory.mktemp("bad-input") / "log.sqlite3"
    return create_app(ServiceConfig(database=db, api_key_hashes=[hash_key(KEY)], max_batch=5, max_body_bytes=LIMIT),
                      bundle=german_bundle)


@pytest.fixture(scope="module")
def client(app):
    return app.test_client()


@pytest.fixture(scope="module")
def roomy_client(german_bundle, tmp_path_factory):
    """The default body limit (4 MiB), for bodies with very many problems."""
    db = tmp_path_factory.mktemp("bad-input-roomy") / "log.sqlite3"
    return create_app(ServiceConfig(database=db, api_key_hashes=[hash_key(KEY)]), bundle=german_bundle).test_client()


def post(client, body, path: str = "/v1/recourse", headers: dict | None = None, **kw):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(path, data=data, content_type="application/json", headers={**AUTH, **(headers or {})}, **kw)


def problem(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)[:2000]
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == status and body["detail"]
    return body


def only_error(body: dict) -> dict:
    assert len(body["errors"]) == 1, body
    return body["errors"][0]


# ---------------------------------------------------------------------- 1: numbers and nesting the parser refuses
@pytest.mark.parametrize("text", [
    json.dumps({"applicant": DENIED}).replace('"age": ', f'"age": {HUGE}, "x": ', 1),
    json.dumps({"applicant": DENIED})[:-1] + f', "max_changes": {HUGE}}}',
    json.dumps({"applicant": DENIED})[:-1] + f', "max_changes": -{HUGE}}}',
])
def test_an_integer_too_long_to_convert_is_a_400_naming_it(client, text):
    body = problem(post(client, text), 400)
    assert "integer with 5001 digits" in body["detail"] and "at most 4300" in body["detail"]


def test_a_long_integer_python_can_convert_is_a_422_at_its_field(client):
    body = problem(post(client, json.dumps({"applicant": {**DENIED, "age": 10 ** 400}})), 422)
    assert only_error(body)["field"] == "applicant.age" and "too large" in only_error(body)["message"]
    body = problem(post(client, {"applicant": DENIED, "cost_weights": {"age": 10 ** 400}}), 422)
    assert only_error(body)["pointer"] == "/cost_weights/age" and "too large" in only_error(body)["message"]


@pytest.mark.parametrize("depth", [100, 900, 5000, 30_000])
def test_deep_nesting_is_never_a_server_error(client, depth):
    nested = "[" * depth + "]" * depth
    for text in (nested, f'{{"applicant": {nested}}}', f'{{"applicant": {{"age": {nested}}}}}', f'{{"applicant": {{}}, "target": {nested}}}'):
        response = post(client, text)
        assert response.status_code in (400, 422), response.get_data(as_text=True)[:500]
        if response.status_code == 400:
            assert "nested too deeply" in response.get_json()["detail"]


# ---------------------------------------------------------------------- 2: chunked bodies and the size limit
def chunked(client, data: bytes):
    """A body without Content-Length, as a server that decodes chunked transfer hands it over."""
    return client.post("/v1/recourse", input_stream=io.BytesIO(data), content_type="application/json",
                       headers={**AUTH, "Transfer-Encoding": "chunked"}, environ_overrides={"wsgi.input_terminated": True})


def padded(size: int) -> bytes:
    head = json.dumps({"applicant": DENIED, "pad": ""}).encode()
    return head[:-2] + b"x" * (size - len(head)) + b'"}'


def test_a_chunked_body_over_the_limit_is_413_not_cut_off(client):
    body = problem(chunked(client, padded(LIMIT + 1)), 413)
    assert str(LIMIT) in body["detail"]
    problem(chunked(client, padded(5 * LIMIT)), 413)


def test_a_chunked_body_of_exactly_the_limit_is_read_whole(client):
    data = padded(LIMIT)
    assert len(data) == LIMIT
    assert only_error(problem(chunked(client, data), 422))["field"] == "pad"  # parsed: the whole body arrived
    assert chunked(client, json.dumps({"applicant": DENIED}).encode()).status_code == 200


# ---------------------------------------------------------------------- 3: the size of an error response
def test_many_problems_give_a_small_response_listing_the_first_ones(roomy_client):
    applicant = {**DENIED, **{f"unknown_{i}": 1 for i in range(100_000)}}
    response = post(roomy_client, {"applicant": applicant})
    body = problem(response, 422)
    assert len(body["errors"]) == MAX_ERRORS
    assert "100000 problems" in body["detail"] and f"{100_000 - MAX_ERRORS} more" in body["detail"]
    assert body["errors"][0]["pointer"] == "/applicant/unknown_0"
    assert len(response.get_data()) < 60_000


def test_long_texts_in_a_problem_are_cut(client):
    name = "k" * 20_000
    body = problem(post(client, {"applicant": {**DENIED, name: 1}, "density": "d" * 20_000}), 422)
    for error in body["errors"]:
        assert all(len(text) <= MAX_TEXT for text in error.values())
    assert any(e["field"].startswith("density") for e in body["errors"])
    assert any(e["field"].startswith("applicant.kkk") and e["field"].endswith("…") for e in body["errors"])
    assert len(body["detail"]) <= MAX_TEXT


def test_problem_body_caps_errors_and_text():
    errors = [{"field": f"f{i}", "pointer": f"/f{i}", "message": "m" * 1000} for i in range(MAX_ERRORS + 7)]
    out = Problem(422, "d" * 1000, errors).body()
    assert len(out["errors"]) == MAX_ERRORS and "7 more" in out["detail"]
    assert out["errors"][0]["message"] == "m" * (MAX_TEXT - 1) + "…"
    assert Problem(422, "short", errors[:3]).body()["detail"] == "short"


# ---------------------------------------------------------------------- 4: no quiet conversions in the envelope
@pytest.mark.parametrize("extra, field", [
    ({"max_changes": True}, "max_changes"), ({"max_changes": "3"}, "max_changes"), ({"max_changes": 2.5}, "max_changes"),
    ({"alternatives": True}, "alternatives"), ({"alternatives": "2"}, "alternatives"),
    ({"cost_weights": {"duration": True}}, "cost_weights.duration"), ({"cost_weights": {"duration": "5"}}, "cost_weights.duration"),
    ({"target": True}, "target"), ({"target": False}, "target"), ({"target": "1"}, "target"),
])
def test_envelope_values_are_not_converted(client, extra, field):
    error = only_error(problem(post(client, {"applicant": DENIED, **extra}), 422))
    assert error["field"] == field and error["pointer"] == "/" + field.replace(".", "/")


def test_messages_say_what_was_expected(client):
    error = only_error(problem(post(client, {"applicant": DENIED, "max_changes": True}), 422))
    assert error["message"] == "expected an integer, got true"
    error = only_error(problem(post(client, {"applicant": DENIED, "target": "1"}), 422))
    assert '"1"' in error["message"] and "1, 2" in error["message"]  # the German classes are the integers 1 and 2


def test_target_must_equal_a_class_in_value_and_type(app, client, monkeypatch):
    answer = post(client, {"applicant": DENIED, "target": 1})
    assert answer.status_code == 200 and answer.get_json()["target"]["value"] == 1
    service = app.extensions["recourse"]
    monkeypatch.setattr(service.engine, "classes", ["bad", "good"])
    assert service._target("good") == ("good", None)
    with pytest.raises(Problem) as caught:
        service._target(1)
    assert caught.value.errors[0]["field"] == "target" and '"bad", "good"' in caught.value.errors[0]["message"]


# ---------------------------------------------------------------------- 5: wrong target types: one error at /target
@pytest.mark.parametrize("path, body", [
    ("/v1/recourse", {"applicant": DENIED, "target": [1]}),
    ("/v1/recourse", {"applicant": DENIED, "target": {}}),
    ("/v1/recourse", {"applicant": DENIED, "target": 1.5}),
    ("/v1/recourse/batch", {"applicants": [DENIED, DENIED], "target": [1, 2]}),
])
def test_a_wrong_target_type_is_one_error_at_target(client, path, body):
    error = only_error(problem(post(client, body, path), 422))
    assert error["field"] == "target" and error["pointer"] == "/target"
    assert "a string or an integer" in error["message"]
    if isinstance(body["target"], list):
        assert "per-applicant targets are not supported" in error["message"]


# ---------------------------------------------------------------------- 6: ids and bodies that are not objects
def test_a_long_id_is_a_json_404(client):
    for answer_id in ("a" * 33, "a" * 3000, "Z" * 32):
        body = problem(client.get(f"/v1/recourse/{answer_id}", headers=AUTH), 404)
        assert "32 hexadecimal digits" in body["detail"] and len(body["detail"]) < 200


@pytest.mark.parametrize("path", ["/v1/recourse", "/v1/recourse/batch", "/v1/predict"])
@pytest.mark.parametrize("body", [[1], 5, "text", None])
def test_a_body_that_is_not_an_object_says_so(client, path, body):
    response = post(client, json.dumps(body), path)
    error = only_error(problem(response, 422))
    assert error["field"] == "(body)" and error["message"].startswith("expected a JSON object")
    assert "Request" not in response.get_data(as_text=True) and "dictionary" not in response.get_data(as_text=True)


@pytest.mark.parametrize("path, body, pointer", [
    ("/v1/recourse", {"applicant": [1]}, "/applicant"),
    ("/v1/predict", {"applicant": 5}, "/applicant"),
])
def test_an_applicant_that_is_not_an_object_says_so(client, path, body, pointer):
    error = only_error(problem(post(client, body, path), 422))
    assert error["pointer"] == pointer and "expected an object" in error["message"]


# ---------------------------------------------------------------------- 7: every row's problems; encodings; metrics
def test_a_batch_reports_every_rows_problems(client):
    body = problem(post(client, {"applicants": [5, {**DENIED, "age": "old"}, DENIED, None]}, "/v1/recourse/batch"), 422)
    assert [e["pointer"] for e in body["errors"]] == ["/applicants/0", "/applicants/1/age", "/applicants/3"]


def test_option_and_applicant_problems_come_together(client):
    body = problem(post(client, {"applicant": {**DENIED, "age": "old"}, "density": "parzen", "target": 7}), 422)
    assert {e["pointer"] for e in body["errors"]} == {"/density", "/target", "/applicant/age"}


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br"])
def test_a_compressed_body_is_415_naming_content_encoding(client, encoding):
    data = gzip.compress(json.dumps({"applicant": DENIED}).encode())
    body = problem(post(client, data, headers={"Content-Encoding": encoding}), 415)
    assert "Content-Encoding" in body["detail"] and encoding in body["detail"]
    assert post(client, {"applicant": DENIED}, headers={"Content-Encoding": "identity"}).status_code == 200


def test_metrics_content_type_names_the_charset_once(client):
    content_type = client.get("/metrics").headers["Content-Type"]
    assert content_type.startswith("text/plain") and content_type.count("charset") == 1


# ---------------------------------------------------------------------- 9: authorization schemes
def test_an_unsupported_authorization_scheme_is_named(client):
    body = problem(client.post("/v1/recourse", json={"applicant": DENIED}, headers={"Authorization": f"Basic {KEY}"}), 401)
    assert "'Basic' is not supported" in body["detail"] and "Bearer" in body["detail"]
    ok = client.post("/v1/recourse", json={"applicant": DENIED}, headers={"Authorization": "Basic x", "X-API-Key": KEY})
    assert ok.status_code == 200
    assert "missing API key" in problem(client.post("/v1/recourse", json={"applicant": DENIED}), 401)["detail"]
