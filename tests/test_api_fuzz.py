"""Hypothesis-generated request bodies never make the service answer 5xx."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api import ServiceConfig, create_app
from api.keys import hash_key

KEY = "fuzz-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
DENIED = json.loads((Path(__file__).resolve().parent.parent / "datasets/german_credit/examples/denied_applicant.json").read_text())

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
field_names = st.sampled_from(sorted(DENIED) + ["", "extra", "__proto__"])
mutated_applicant = st.builds(lambda name, value, drop: {**{k: v for k, v in DENIED.items() if k != drop}, name: value},
                              field_names, json_values, field_names)
bodies = st.one_of(
    json_values,
    st.builds(lambda a: {"applicant": a}, mutated_applicant),
    st.builds(lambda a, opts: {"applicant": a, **opts}, mutated_applicant,
              st.dictionaries(st.sampled_from(["max_changes", "density", "target", "other"]), json_values, max_size=3)),
    st.builds(lambda rows: {"applicants": rows}, st.lists(mutated_applicant | json_values, max_size=3)),
)


@pytest.fixture(scope="module")
def client(german_bundle, tmp_path_factory):
    db = tmp_path_factory.mktemp("fuzz") / "log.sqlite3"
    return create_app(ServiceConfig(database=db, api_key_hashes=[hash_key(KEY)], max_batch=3), bundle=german_bundle).test_client()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=bodies, path=st.sampled_from(["/v1/recourse", "/v1/recourse/batch", "/v1/predict"]))
def test_no_body_gives_a_server_error(client, body, path):
    text = json.dumps(body, allow_nan=True)
    response = client.post(path, data=text, content_type="application/json", headers=AUTH)
    assert response.status_code < 500, response.get_data(as_text=True)
    if response.status_code >= 400:
        problem = response.get_json()
        assert response.mimetype == "application/problem+json" and problem["status"] == response.status_code


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=64), content_type=st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded", ""]))
def test_raw_bytes_never_give_a_server_error(client, raw, content_type):
    response = client.post("/v1/recourse", data=raw, content_type=content_type or None, headers=AUTH)
    assert response.status_code in (400, 415, 422), response.get_data(as_text=True)
