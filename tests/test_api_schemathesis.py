"""A bounded schemathesis run against the service's own OpenAPI document: every check on, the
positive-data acceptance check included (a request the document calls valid must not get 4xx).

The one rule JSON Schema cannot state, a personal limit's low end not above its high end, is
kept out of the generated requests (it is in the document's description); everything else the
server checks, the document says.
"""
from __future__ import annotations

import collections

import pytest

import schemathesis
from hypothesis import HealthCheck, given, settings

from api import ServiceConfig, create_app
from api.keys import hash_key, new_key

EXAMPLES = 320
"""Generated requests per operation that takes input (7 of them: at least 2,000 requests in all)."""


def limits_in_order(schema, body) -> bool:
    """False for a body with a personal limit whose low end lies above its high end."""
    limits = body.get("limits") if isinstance(body, dict) else None
    if not isinstance(limits, dict):
        return True
    for name, ends in limits.items():
        if not (isinstance(ends, list) and len(ends) == 2 and None not in ends):
            continue
        feat = schema.feature(name)
        low, high = ends if feat.is_numeric else [feat.level_names.index(e) if e in feat.level_names else -1 for e in ends]
        if isinstance(low, (int, float)) and isinstance(high, (int, float)) and low > high:
            return False
    return True


@pytest.mark.slow
def test_schemathesis_finds_no_failure_in_two_thousand_requests(tmp_path, german_bundle):
    key = new_key()
    app = create_app(ServiceConfig(database=tmp_path / "log.sqlite3", api_key_hashes=[hash_key(key)], max_batch=20,
                                   max_body_bytes=64 * 1024), bundle=german_bundle)
    feature_schema = app.extensions["recourse"].engine.schema
    api_schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    sent: collections.Counter[str] = collections.Counter()
    failures: dict[str, str] = {}
    for result in api_schema.get_all_operations():
        operation = result.ok()
        strategy = operation.as_strategy().filter(lambda case: limits_in_order(feature_schema, case.body))

        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def exercise(case) -> None:
            sent[operation.label] += 1
            case.call_and_validate(headers={"Authorization": f"Bearer {key}"})

        try:
            exercise()
        except Exception as exc:  # noqa: BLE001 - collect every operation's failure, then report them all
            failures[operation.label] = str(exc)[:2000]
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
    assert sum(sent.values()) >= 2000, sent
