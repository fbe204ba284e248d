"""Per-feature cost weights: in the schema and per request; honoured by the solver, the cost and the ranking."""
from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from recourse.errors import RecordValidationError
from recourse.schema import FeatureSchema


@pytest.fixture(scope="module")
def denied(german_engine, german_dataset):
    _, _, test, _ = german_dataset.split()
    rows = german_engine.validate(test)
    pred = german_engine.predict_proba(german_engine.encoder.encode(rows)).argmax(1)
    return rows.iloc[np.flatnonzero(pred == german_engine.classes.index(2))[:16]].reset_index(drop=True)


def _uses(results, name: str) -> int:
    return sum(name in {a.feature for a in r.actions} for r in results if r.found)


def test_a_high_weight_steers_answers_away(german_engine, denied):
    plain = german_engine.explain(denied)
    counts = {f: _uses(plain, f) for f in german_engine.schema.names}
    busiest = max(counts, key=counts.get)
    assert counts[busiest] > 0
    weighted = german_engine.explain(denied, cost_weights={busiest: 25.0})
    assert _uses(weighted, busiest) < counts[busiest]
    assert sum(r.found for r in weighted) >= sum(r.found for r in plain) - 2


def test_reported_cost_is_weighted(german_engine, denied):
    feats = german_engine.schema.features
    results = german_engine.explain(denied.head(6), cost_weights={"duration": 2.0, "credit_amount": 3.0})
    for r in (r for r in results if r.found):
        by_hand = 0.0
        for a in r.actions:
            f = next(f for f in feats if f.name == a.feature)
            w = {"duration": 2.0, "credit_amount": 3.0}.get(f.name, f.cost_weight)  # others: the schema's weight
            if f.is_numeric:
                delta = abs(r.counterfactual[f.name] - r.applicant[f.name])
            elif f.kind == "ordinal":
                delta = abs(f.level_names.index(r.counterfactual[f.name]) - f.level_names.index(r.applicant[f.name]))
            else:
                delta = 1.0
            by_hand += w * delta / f.cost_scale
        assert r.metrics["cost"] == pytest.approx(by_hand, rel=1e-6)


def test_weights_rank_the_alternatives(german_engine, denied):
    plain = german_engine.explain(denied.head(8), alternatives=3)
    rec = next(r for r in plain if r.found and len(r.alternatives) >= 2)
    f = next(iter(rec.alternatives[0].features))
    again = german_engine.explain([rec.applicant], alternatives=3, cost_weights={f: 40.0})[0]
    assert again.found
    costs = [a.metrics["cost"] for a in again.alternatives[1:]]
    assert costs == sorted(costs)
    assert f not in again.alternatives[0].features or again.alternatives[0].metrics["cost"] > rec.metrics["cost"]


def test_schema_cost_weight_acts_like_the_request(german_bundle, denied):
    from recourse.scfe import RecourseEngine

    b = german_bundle
    data = b.schema.model_dump(mode="json")
    for feat in data["features"]:
        if feat["name"] == "duration":
            feat["cost_weight"] = 4.0
    schema = FeatureSchema.model_validate(data)
    engine = RecourseEngine(schema, b.classifier, b.densities, b.train_encoded, b.train_labels, config=b.engine().config)
    via_schema = engine.explain(denied.head(6))
    via_request = b.engine().explain(denied.head(6), cost_weights={"duration": 4.0})
    assert [r.counterfactual for r in via_schema] == [r.counterfactual for r in via_request]
    assert [r.metrics for r in via_schema] == [r.metrics for r in via_request]


@pytest.mark.parametrize("weights, field", [({"nope": 2.0}, "cost_weights.nope"), ({"duration": 0}, "cost_weights.duration"),
                                            ({"duration": -3}, "cost_weights.duration"),
                                            ({"duration": float("nan")}, "cost_weights.duration"),
                                            ({"duration": "a"}, "cost_weights.duration")])
def test_bad_weights_are_rejected(german_engine, denied, weights, field):
    with pytest.raises(RecordValidationError) as info:
        german_engine.explain(denied.head(1), cost_weights=weights)
    assert info.value.errors[0].field == field


def test_schema_rejects_non_positive_weight():
    from pydantic import ValidationError

    from recourse.schema import Feature

    with pytest.raises(ValidationError):
        Feature(name="a", kind="continuous", range=(0, 1), cost_weight=0)
    assert Feature(name="a", kind="continuous", range=(0, 1)).cost_weight == 1.0


def test_cli_cost_weight_and_alternatives(german_bundle, denied, tmp_path):
    import cli

    path = tmp_path / "app.json"
    path.write_text(json.dumps({k: (v.item() if hasattr(v, "item") else v) for k, v in denied.iloc[0].items()}))
    runner = CliRunner()
    bundle = str(german_bundle.path)
    ok = runner.invoke(cli.app, ["explain", str(path), "--bundle", bundle, "--json", "--alternatives", "2",
                                 "--cost-weight", "duration=3"])
    assert ok.exit_code == 0, ok.output
    data = json.loads(ok.output)
    assert "alternatives" in data and "diversity" in data
    for args in (["--cost-weight", "nope=2"], ["--cost-weight", "duration=0"], ["--cost-weight", "duration"],
                 ["--alternatives", "0"]):
        bad = runner.invoke(cli.app, ["explain", str(path), "--bundle", bundle, *args])
        assert bad.exit_code == 2, (args, bad.output)
        assert "Traceback" not in bad.output
