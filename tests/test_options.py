"""The one options policy: checked once, named by field, the same outcome from every entry point."""
from __future__ import annotations

import json

import numpy as np
import pytest

from recourse import OptionsError, RecordValidationError, RecourseError, RequestOptions, SCFEConfig


@pytest.mark.parametrize("values, field", [
    ({"max_changes": 0}, "max_changes"), ({"max_changes": True}, "max_changes"), ({"max_changes": 2.5}, "max_changes"),
    ({"max_changes": "3"}, "max_changes"), ({"alternatives": 0}, "alternatives"), ({"alternatives": 11}, "alternatives"),
    ({"density": 3}, "density"), ({"cost_weights": {"age": 0}}, "cost_weights.age"),
    ({"cost_weights": {"age": float("nan")}}, "cost_weights.age"), ({"cost_weights": [1]}, "cost_weights"),
    ({"colour": "blue"}, "colour"),
])
def test_request_options_name_the_field(values, field):
    with pytest.raises(OptionsError) as info:
        RequestOptions(**values)
    assert [e.field for e in info.value.errors] == [field]
    assert isinstance(info.value, RecordValidationError) and isinstance(info.value, RecourseError)
    assert "--" not in str(info.value)  # fields, never command-line flags


def test_request_options_take_numpy_scalars_and_python_density_switches():
    opts = RequestOptions(max_changes=np.int64(2), alternatives=np.int32(3), cost_weights={"age": np.float32(2)}, density=False)
    assert (opts.max_changes, opts.alternatives, opts.cost_weights, opts.density) == (2, 3, {"age": 2.0}, "none")
    assert RequestOptions(density=True).density is None  # the engine's default


def test_solver_config_is_checked_when_built():
    with pytest.raises(OptionsError) as info:
        SCFEConfig(max_changes=-5, density="nope", max_iter=0)
    assert {e.field for e in info.value.errors} == {"max_changes", "density", "max_iter"}
    for bad in ({"tol": 0.0}, {"margin": float("nan")}, {"time_limit": -1.0}, {"density_weight": -0.1},
                {"cost_weights": (1.0, 0.0)}, {"search_steps": 1.5}, {"polish": "yes"}):
        with pytest.raises(OptionsError) as info:
            SCFEConfig(**bad)
        assert [e.field for e in info.value.errors] == list(bad)
    with pytest.raises(OptionsError, match="unknown solver setting"):
        SCFEConfig().with_(speed=3)
    assert SCFEConfig().with_(max_changes=5).max_changes == 5


def test_density_weight_comes_from_the_density_registry():
    from recourse.density import default_density_weight

    for name in ("kde", "gmm", "knn"):
        assert SCFEConfig(density=name).tau() == default_density_weight(name) > 0
    assert SCFEConfig(density=None).tau() == 0.0
    assert SCFEConfig(density="knn", density_weight=0.3).tau() == 0.3


def test_resolve_checks_against_the_engine(tiny_engine):
    with pytest.raises(OptionsError) as info:
        tiny_engine.resolve(RequestOptions(density="kde", cost_weights={"shoe_size": 2.0}))
    assert [e.field for e in info.value.errors] == ["density", "cost_weights.shoe_size"]
    resolved = tiny_engine.resolve(RequestOptions(max_changes=99, cost_weights={"years": 4.0}))
    n = len(tiny_engine.schema.features)
    assert resolved.config.max_changes == n
    assert resolved.config.cost_weights[tiny_engine.schema.names.index("years")] == 4.0


# ---------------------------------------------------------------------- one rule, every entry point
TOO_MANY = 50  # German credit has 20 features


@pytest.fixture(scope="module")
def german_denied() -> dict:
    from pathlib import Path

    return json.loads((Path(__file__).parents[1] / "datasets/german_credit/examples/denied_applicant.json").read_text())


def test_max_changes_above_the_features_python(german_engine, german_denied):
    [answer] = german_engine.explain(german_denied, max_changes=TOO_MANY)
    assert answer.max_changes == len(german_engine.schema.features) == 20
    [same] = german_engine.explain(german_denied, options=RequestOptions(max_changes=TOO_MANY))
    assert same.max_changes == 20 and same.counterfactual == answer.counterfactual


def test_max_changes_above_the_features_http(german_bundle, german_denied, tmp_path):
    from api import ServiceConfig, create_app

    app = create_app(ServiceConfig(bundle=german_bundle.path, database=tmp_path / "log.sqlite3", auth_required=False),
                     bundle=german_bundle)
    client = app.test_client()
    for m in (TOO_MANY, 101, 10**6):
        body = client.post("/v1/recourse", json={"applicant": german_denied, "max_changes": m}).get_json()
        assert body["status"] == "recourse_found" and body["max_changes"] == 20, body


def test_max_changes_above_the_features_cli(german_bundle, german_denied, tmp_path):
    from typer.testing import CliRunner

    from cli import app

    path = tmp_path / "applicant.json"
    path.write_text(json.dumps(german_denied))
    result = CliRunner().invoke(app, ["explain", str(path), "--bundle", str(german_bundle.path),
                                      "--max-changes", str(TOO_MANY), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["max_changes"] == 20
    refused = CliRunner().invoke(app, ["explain", str(path), "--bundle", str(german_bundle.path), "--max-changes", "0"])
    assert refused.exit_code == 2 and "--max-changes: must be a whole number ≥ 1" in refused.output


def test_max_changes_above_the_features_audit(tiny_bundle, tmp_path):
    from recourse.audit.io import AuditInputError
    from recourse.audit.pipeline import run_audit
    from recourse.audit.run import AuditConfig
    from tests.conftest import tiny_frame

    frame, _ = tiny_frame(40, seed=9)
    path = tmp_path / "population.csv"
    frame.to_csv(path, index=False)
    n = len(tiny_bundle.schema.features)
    config = AuditConfig(group_by=["region"], chunk_size=40, max_changes=TOO_MANY, stability_n=0, bootstrap=20, exact="off")
    result = run_audit(path, tmp_path / "audit", tiny_bundle, config, progress=False)
    assert result.summary["coverage"]["max_changes"] == n
    with pytest.raises(AuditInputError, match="max_changes"):
        run_audit(path, tmp_path / "bad", tiny_bundle, AuditConfig(group_by=["region"], max_changes=0), progress=False)
