"""The OpenAPI document is as strict as the server: what it allows the server accepts, what it forbids
the server refuses (422), and OPTIONS advertises only methods that exist."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi

from api import ServiceConfig, create_app
from api.keys import hash_key
from recourse.schema import COST_WEIGHT_RANGE

KEY = "openapi-key-1"
AUTH = {"Authorization": f"Bearer {KEY}"}
DENIED = json.loads((Path(__file__).resolve().parent.parent / "datasets/german_credit/examples/denied_applicant.json").read_text())
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


@pytest.fixture(scope="module")
def client(german_bundle, tmp_path_factory):
    db = tmp_path_factory.mktemp("openapi") / "log.sqlite3"
    app = create_app(ServiceConfig(database=db, api_key_hashes=[hash_key(KEY)], max_batch=5), bundle=german_bundle)
    return app.test_client()


@pytest.fixture(scope="module")
def doc(client) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def validator(doc: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    """A JSON Schema 2020-12 validator of ``schema`` whose ``#/components/...`` references resolve in ``doc``."""
    return Draft202012Validator({**schema, "components": doc["components"]})


def request_validator(doc: dict[str, Any], path: str) -> Draft202012Validator:
    return validator(doc, doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"])


def operations(doc: dict[str, Any]):
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def option(doc: dict[str, Any], name: str, model: str = "RecourseRequest") -> dict[str, Any]:
    """The non-null branch of an option's schema."""
    prop = doc["components"]["schemas"][model]["properties"][name]
    [strict] = [s for s in prop["anyOf"] if s != {"type": "null"}]
    return strict


# ---------------------------------------------------------------------- the document
def test_document_is_valid_with_servers_operation_ids_and_examples(doc):
    validate_openapi(doc)
    assert doc["servers"][0]["url"] == "/"
    ids = [op["operationId"] for _, _, op in operations(doc)]
    assert len(ids) == len(set(ids)) == len(list(operations(doc)))
    for path, method, op in operations(doc):
        body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
        responses = [m for r in op["responses"].values() for m in r.get("content", {}).values()]
        params = op.get("parameters", [])
        assert (body.get("examples") or any("example" in m or "examples" in m for m in responses)
                or any("example" in p for p in params)), f"{method.upper()} {path} has no example"


def test_cost_weights_name_the_features_and_bound_the_weights(doc, german_bundle):
    for model in ("RecourseRequest", "BatchRequest"):
        weights = option(doc, "cost_weights", model)
        assert weights["propertyNames"]["enum"] == german_bundle.schema.names
        assert (weights["additionalProperties"]["minimum"], weights["additionalProperties"]["maximum"]) == COST_WEIGHT_RANGE
        assert weights["additionalProperties"]["type"] == "number"


def test_target_is_an_enum_of_the_classes_as_listed(client, doc):
    classes = client.get("/v1/models", headers=AUTH).get_json()["models"][0]["classes"]
    assert classes == [1, 2]  # German's classes are integers; the enum keeps their JSON type
    for model in ("RecourseRequest", "BatchRequest"):
        assert option(doc, "target", model)["enum"] == classes


def test_fixed_limits_density_and_min_probability_are_strict(doc, german_bundle):
    schema = german_bundle.schema
    assert option(doc, "fixed")["items"]["enum"] == schema.names
    limits = option(doc, "limits")
    assert limits["additionalProperties"] is False
    assert list(limits["properties"]) == [f.name for f in schema.features if f.is_numeric or f.kind == "ordinal"]
    savings = limits["properties"]["savings"]
    levels = next(f for f in schema.features if f.name == "savings").level_names
    assert savings["items"]["enum"] == [*levels, None]
    assert savings["minItems"] == savings["maxItems"] == 2
    assert limits["properties"]["duration"]["items"] == {"type": ["number", "null"]}
    assert set(option(doc, "density")["enum"]) == set(german_bundle.engine().densities) | {"none"}
    probability = option(doc, "min_probability")
    assert (probability["exclusiveMinimum"], probability["exclusiveMaximum"]) == (0, 1)


def test_every_example_fits_its_schema(doc):
    for path, method, op in operations(doc):
        media = [(op["requestBody"]["content"]["application/json"])] if "requestBody" in op else []
        media += [m for r in op["responses"].values() for m in r.get("content", {}).values()]
        for m in media:
            examples = [e["value"] for e in m.get("examples", {}).values()] + ([m["example"]] if "example" in m else [])
            for example in examples:
                errors = list(validator(doc, m["schema"]).iter_errors(example))
                assert not errors, f"{method.upper()} {path}: {errors[0].message}"


def test_every_example_request_is_accepted_by_the_server(client, doc):
    posted = 0
    for path, method, op in operations(doc):
        if "requestBody" not in op:
            continue
        for name, example in op["requestBody"]["content"]["application/json"]["examples"].items():
            response = client.open(path, method=method.upper(), json=example["value"], headers=AUTH)
            assert response.status_code == 200, f"{path} example {name}: {response.get_data(as_text=True)}"
            posted += 1
    assert posted >= 5


# ---------------------------------------------------------------------- forbidden by the document: refused by the server
@pytest.mark.parametrize("options", [
    {"cost_weights": {"no_such_feature": 2}},
    {"cost_weights": {"duration": 0}},
    {"cost_weights": {"duration": 1e-7}},
    {"cost_weights": {"duration": 2e6}},
    {"target": 3},
    {"target": "1"},
    {"fixed": ["no_such_feature"]},
    {"limits": {"no_such_feature": [1, 2]}},
    {"limits": {"status": ["0 to 200 DM", None]}},  # categorical: no limits
    {"limits": {"savings": [1, None]}},  # ordinal: level names
    {"limits": {"savings": ["a lot", None]}},
    {"limits": {"duration": ["10", None]}},  # numeric: numbers
    {"limits": {"duration": [10]}},
    {"density": "no_such_density"},
    {"min_probability": 0.0},
    {"min_probability": 1.0},
])
@pytest.mark.parametrize("path", ["/v1/recourse", "/v1/recourse/batch"])
def test_what_the_document_forbids_the_server_refuses(client, doc, path, options):
    body = {"applicant": DENIED, **options} if path == "/v1/recourse" else {"applicants": [DENIED], **options}
    assert not request_validator(doc, path).is_valid(body)
    response = client.post(path, json=body, headers=AUTH)
    assert response.status_code == 422, response.get_data(as_text=True)


@pytest.mark.parametrize("options", [
    {"cost_weights": {"duration": 1e-6, "age": 1e6}},
    {"target": 2},
    {"limits": {"duration": [None, 30.5], "savings": ["below 100 DM", None]}, "fixed": ["age"]},
])
def test_what_the_document_allows_at_the_edges_the_server_accepts(client, doc, options):
    body = {"applicant": DENIED, "max_changes": 1, **options}
    assert request_validator(doc, "/v1/recourse").is_valid(body)
    response = client.post("/v1/recourse", json=body, headers=AUTH)
    assert response.status_code == 200, response.get_data(as_text=True)


# ---------------------------------------------------------------------- OPTIONS and Allow
def test_options_advertises_only_methods_that_exist(client, doc):
    answer_id = client.post("/v1/predict", json={"applicant": DENIED}, headers=AUTH).get_json()["id"]
    for path, item in doc["paths"].items():
        if not path.startswith("/v1"):
            continue
        url = path.replace("{answer_id}", answer_id)
        reply = client.options(url, headers=AUTH)
        assert reply.status_code == 200
        allowed = {m.strip() for m in reply.headers["Allow"].split(",")}
        documented = {m.upper() for m in item if m in METHODS}
        assert allowed - {"OPTIONS", "HEAD"} == documented, path
        for method in allowed - {"OPTIONS"}:
            status = client.open(url, method=method, headers=AUTH).status_code
            assert status not in (404, 405), f"{method} {url} advertised but answers {status}"


def test_get_on_the_batch_path_is_405_naming_post(client):
    reply = client.get("/v1/recourse/batch", headers=AUTH)
    assert reply.status_code == 405 and reply.mimetype == "application/problem+json"
    assert {m.strip() for m in reply.headers["Allow"].split(",")} == {"POST", "OPTIONS"}
    assert client.get("/v1/recourse/batchx", headers=AUTH).status_code == 404  # other segments are still answer ids
