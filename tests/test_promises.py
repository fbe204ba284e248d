"""Promises across model versions, end to end: a log written by the service, a refitted bundle,
``recourse promises check`` and the service's own check at start-up."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from recourse.promises import Promise, check_promises


@pytest.fixture(scope="module")
def refitted(tmp_path_factory):
    from recourse.bundle import build_dataset_bundle

    return build_dataset_bundle("german", tmp_path_factory.mktemp("refit") / "german-seed7", seed=7)


@pytest.mark.slow
def test_promises_check_on_a_service_log_and_a_refitted_bundle(german_bundle, german_dataset, refitted, tmp_path):
    from api import ServiceConfig, create_app
    from cli import app as cli_app

    db = tmp_path / "log.sqlite3"
    old = create_app(ServiceConfig(database=db, auth_required=False), bundle=german_bundle)
    client = old.test_client()
    _, _, test, _ = german_dataset.split()
    engine = german_bundle.engine()
    probs = engine.predict_proba(engine.encoder.encode(engine.validate(test)))
    denied = test.iloc[(probs.argmax(1) == engine.classes.index(2)).nonzero()[0][:25]]
    body = client.post("/v1/recourse/batch", json={"applicants": json.loads(denied.to_json(orient="records"))}).get_json()
    found = [r for r in body["results"] if r["status"] == "recourse_found"]
    assert found
    assert old.extensions["recourse"].promise_note() is None  # nothing earlier to check

    # the same log under the old bundle: every promise holds (the answers were verified on it)
    result = CliRunner().invoke(cli_app, ["promises", "check", "--log", str(db), "--bundle", str(german_bundle.path), "--json"])
    assert result.exit_code == 0, result.output
    same = json.loads(result.stdout)
    assert same["total"] == len(found) and same["kept"] == len(found) and same["broken"] == 0

    # the refitted model breaks some of them; every stored answer is accounted for, by id and by group
    result = CliRunner().invoke(cli_app, ["promises", "check", "--log", str(db), "--bundle", str(refitted.path),
                                          "--group-by", "status_sex", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["kept"] + report["broken"] + report["uncheckable"] == report["total"] == len(found)
    ids = {r["id"] for r in found}
    assert set(report["broken_ids"]) <= ids and len(report["broken_ids"]) == report["broken"]
    assert sum(g["total"] for g in report["groups"]["status_sex"].values()) == len(found)
    new_engine = refitted.engine()
    for detail in report["details"]:
        answer = next(r for r in found if r["id"] == detail["id"])
        p = new_engine.predict_proba(new_engine.encode([answer["counterfactual"]]))[0]
        target = new_engine.classes.index(answer["target"]["value"])
        assert (detail["status"] == "kept") == (p.argmax() == target and p[target] >= (detail["min_probability"] or 0) - 1e-9)
    text = CliRunner().invoke(cli_app, ["promises", "check", "--log", str(db), "--bundle", str(refitted.path)])
    assert text.exit_code == 0 and f"{report['broken']} broken" in text.output

    # the service started with the new bundle on the same log reports the check
    new = create_app(ServiceConfig(database=db, auth_required=False), bundle=refitted)
    ready = new.test_client().get("/readyz").get_json()
    assert ready["promises"]["checked"] == report["kept"] + report["broken"]
    assert ready["promises"]["broken"] == report["broken"]
    metrics = new.test_client().get("/metrics").get_data(as_text=True)
    assert f'recourse_earlier_promises{{outcome="broken"}} {float(report["broken"])}' in metrics


def test_uncheckable_and_bad_input(german_bundle, tmp_path):
    from cli import app as cli_app

    engine = german_bundle.engine()
    promise = Promise("x1", {"age": 30}, {"nope": 1}, 1)
    report = check_promises(engine, [promise], group_by=["age"])
    assert report.uncheckable == 1 and report.uncheckable_ids == ["x1"] and report.groups["age"]["30"]["uncheckable"] == 1
    missing = CliRunner().invoke(cli_app, ["promises", "check", "--log", str(tmp_path / "none.sqlite3"),
                                           "--bundle", str(german_bundle.path)])
    assert missing.exit_code == 2 and "no such explanation log" in missing.output
