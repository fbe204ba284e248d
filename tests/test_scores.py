"""Score targets (regression): the schema's target, the exact fold of a score model into a binary
decision, request thresholds, and the score through the engine, the CLI, HTTP and the audit."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from typer.testing import CliRunner

from recourse.bundle import build_bundle, build_dataset_bundle, load_bundle
from recourse.data import load_dataset
from recourse.errors import BundleError, OptionsError
from recourse.schema import REACHED, FeatureSchema
from recourse.scores import ScoreReading, affine_output, fold_regressor, reached, requested_target
from recourse.trees import regressor_trees

FEATURES = [{"name": "a", "kind": "continuous", "range": [0, 1]}]


def _schema(target: dict) -> FeatureSchema:
    return FeatureSchema.from_dict({"name": "t", "features": FEATURES, "target": target})


# ---------------------------------------------------------------------- the schema's target
def test_score_target_reads_threshold_side_and_labels():
    schema = _schema({"kind": "regression", "name": "credit_score", "at_least": 650, "precision": 0, "unit": "points"})
    target = schema.score_target
    assert (target.threshold, target.direction, target.classes, target.favourable) == (650.0, 1, ["not_reached", "reached"], REACHED)
    assert target.labels == {"reached": "credit score at least 650 points", "not_reached": "credit score below 650 points"}
    low = _schema({"kind": "regression", "name": "default_rate", "label": "predicted default rate", "at_most": 5, "unit": "%",
                   "precision": 1}).score_target
    assert low.direction == -1 and low.label_of("reached") == "predicted default rate at most 5.0%"
    assert _schema({"name": "y", "classes": [0, 1], "favourable": 1}).score_target is None


@pytest.mark.parametrize("target, message", [
    ({"kind": "regression", "name": "s"}, "target: .*exactly one of at_least or at_most"),
    ({"kind": "regression", "name": "s", "at_least": 1, "at_most": 2}, "exactly one of at_least or at_most"),
    ({"kind": "regression", "name": "s", "at_least": "x"}, r"target\.at_least"),
    ({"kind": "regression", "name": "s", "at_least": 1, "classes": [0, 1]}, r"target\.classes"),
    ({"name": "y", "classes": [0, 1]}, r"target\.favourable: Field required"),
])
def test_bad_score_targets_are_named(target, message):
    with pytest.raises(Exception, match=message):
        _schema(target)


# ---------------------------------------------------------------------- the fold is exact
@settings(max_examples=40, deadline=None)
@given(st.floats(-500, 500), st.sampled_from([1, -1]), st.floats(0.1, 100), st.floats(-500, 500), st.sampled_from([1, -1]),
       st.integers(0, 2**16))
def test_fold_and_refold_read_back_the_score(threshold, direction, scale, other, other_direction, seed):
    """z = s(f − τ)/σ read back as f exactly; a refold to another threshold and side equals folding
    the score model directly at that threshold."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 1)).double()
    x = np.random.default_rng(seed).normal(size=(16, 4))
    with torch.no_grad():
        f = net(torch.as_tensor(x)).numpy()[:, 0]
    base = _schema({"kind": "regression", "name": "s", ("at_least" if direction > 0 else "at_most"): threshold}).score_target
    reading = ScoreReading.of(base, scale)
    clf = fold_regressor(net, reading, base.classes, 4).to("cpu", torch.float64)
    z = clf.binary_logit(torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(reading.score(z), f, rtol=1e-9, atol=1e-7)
    new = base.with_threshold(**{("at_least" if other_direction > 0 else "at_most"): other})
    a, b = reading.refold(new)
    refolded = affine_output(clf, a, b).binary_logit(torch.as_tensor(x)).numpy()
    direct = fold_regressor(net, ScoreReading.of(new, scale), base.classes, 4).to("cpu", torch.float64)
    np.testing.assert_allclose(refolded, direct.binary_logit(torch.as_tensor(x)).numpy(), rtol=1e-9, atol=1e-7)
    assert ((refolded > 0) == (reached(f, new) == 1))[np.abs(f - other) > 1e-6].all()


@pytest.mark.parametrize("name", ["forest", "extra", "gbm", "hgb"])
def test_tree_regressors_export_exactly_and_fold(name):
    from sklearn.ensemble import (ExtraTreesRegressor, GradientBoostingRegressor, HistGradientBoostingRegressor,
                                  RandomForestRegressor)

    make = {"forest": lambda: RandomForestRegressor(20, random_state=0), "extra": lambda: ExtraTreesRegressor(20, random_state=0),
            "gbm": lambda: GradientBoostingRegressor(n_estimators=30, random_state=0),
            "hgb": lambda: HistGradientBoostingRegressor(max_iter=30, random_state=0)}[name]
    rng = np.random.default_rng(0)
    x = rng.random((300, 5))
    y = x @ [3.0, -2.0, 1.0, 0.0, 5.0] + rng.normal(0, 0.1, 300)
    model = make().fit(x, y)
    trees = regressor_trees(model)
    with torch.no_grad():
        np.testing.assert_allclose(trees(torch.as_tensor(x)).numpy(), model.predict(x), rtol=1e-12, atol=1e-10)
        folded = trees.with_affine_output(-0.5, 2.0)
        np.testing.assert_allclose(folded(torch.as_tensor(x)).numpy(), -0.5 * model.predict(x) + 2.0, rtol=1e-12, atol=1e-10)


def test_a_regressor_with_a_link_function_is_refused():
    from sklearn.ensemble import HistGradientBoostingRegressor

    x = np.random.default_rng(0).random((100, 3))
    model = HistGradientBoostingRegressor(loss="poisson", max_iter=5).fit(x, x.sum(1) + 1)
    with pytest.raises(TypeError, match="link function"):
        regressor_trees(model)


# ---------------------------------------------------------------------- bundles and the engine
@pytest.fixture(scope="module")
def diabetes():
    return load_dataset("diabetes")


@pytest.fixture(scope="module")
def linear_bundle(tmp_path_factory, diabetes):
    return build_dataset_bundle("diabetes", tmp_path_factory.mktemp("b") / "linear", model="linear")


@pytest.fixture(scope="module")
def gbm_bundle(tmp_path_factory, diabetes):
    return build_dataset_bundle("diabetes", tmp_path_factory.mktemp("b") / "gbm", model="gbm")


def _own_check(bundle, answers, estimator_scores, target):
    """Every answer: the rules hold on the interventions and the model's own score of the
    counterfactual is on the asked side of the threshold."""
    engine = bundle.engine()
    found = [a for a in answers if a.found]
    assert found
    cf = engine.encode([a.counterfactual for a in found])
    scores = estimator_scores(cf)
    side = reached(scores, target)
    assert side.all(), scores[side == 0]
    for a in found:
        assert a.counterfactual_decision.probability is None
        assert a.counterfactual_decision.score == pytest.approx(float(estimator_scores(engine.encode([a.counterfactual]))[0]),
                                                                rel=1e-4, abs=1e-3)
        assert a.metrics["l0"] <= a.max_changes
        assert a.decision.score is not None and a.decision.value == "not_reached"
    return found


def test_linear_score_bundle_reports_held_out_figures(linear_bundle):
    meta = linear_bundle.metadata
    assert meta["classes"] == ["not_reached", "reached"] and meta["score"]["scale"] > 0
    assert meta["defaults"]["min_probability"] is None
    training = meta["training"]
    assert 0.3 < training["test_r2"] < 0.8 and training["test_mae"] > 0 and training["test_accuracy"] > training["test_majority"]
    reloaded = load_bundle(linear_bundle.path)
    assert reloaded.engine().score.scale == pytest.approx(meta["score"]["scale"])


def test_score_answers_hold_with_the_users_own_model(tmp_path, diabetes):
    """A score model trained elsewhere (scikit-learn Ridge on the scaled encoding): every answer's
    counterfactual, re-scored by that Ridge itself, is at most the threshold; the rules hold."""
    from sklearn.linear_model import Ridge

    from recourse.encoding import TabularEncoder, complete_schema

    train, y, test, _ = diabetes.split()
    schema = complete_schema(diabetes.schema, train)
    ridge = Ridge(alpha=1.0).fit(TabularEncoder(schema).encode(train), y)
    bundle = build_bundle(diabetes.schema, train, y, tmp_path / "ridge", model=ridge, test=(test, _))
    answers = bundle.engine().explain(test)
    found = _own_check(bundle, answers, ridge.predict, diabetes.schema.score_target)
    missed = [a for a in answers if a.status == "no_recourse_found"]
    assert all("an exact check proved" in a.message for a in missed)  # a linear score: the MILP settles every miss
    rules = bundle.engine().encoder.action_set
    codes = bundle.engine().encoder.to_codes
    originals = codes([a.applicant for a in found])
    acted = codes([{**a.applicant, **{x.feature: x.to for x in a.actions}} for a in found])
    assert rules.admissible(originals, acted, 3).all()
    for a in found:  # the schema's directions: bmi, blood pressure, sugar only down, HDL only up
        for action in a.actions:
            if action.feature in ("bmi", "bp", "s1", "s2", "s5", "s6"):
                assert action.to < action.from_
            if action.feature == "s3":
                assert action.to > action.from_
            assert action.feature not in ("age", "sex", "s4")


def test_tree_score_bundle_is_verified_on_the_trees(gbm_bundle, diabetes):
    _, _, test, _ = diabetes.split()
    engine = gbm_bundle.engine()
    answers = engine.explain(test.iloc[:40])
    trees = engine.verifier.module
    reading = engine.score

    def own(rows):
        with torch.no_grad():
            return reading.score(trees(torch.as_tensor(rows, dtype=torch.float64)).numpy())

    _own_check(gbm_bundle, answers, own, diabetes.schema.score_target)


def test_a_request_asks_for_its_own_threshold_and_side(linear_bundle, diabetes):
    _, _, test, _ = diabetes.split()
    engine = linear_bundle.engine()
    target = diabetes.schema.score_target
    stricter = engine.explain(test.iloc[:20], target={"at_most": 120})
    found = [a for a in stricter if a.found]
    assert found and all(a.counterfactual_decision.score <= 120 + 1e-6 for a in found)
    assert all(a.target.label == "disease progression at most 120.0" for a in stricter)
    already = [a for a in stricter if a.status == "already_favourable"]
    assert all(a.decision.score <= 120 for a in already)
    other_side = engine.explain(test.iloc[:20], target={"at_least": 160})
    assert all(a.counterfactual_decision.score >= 160 - 1e-6 for a in other_side if a.found)
    assert all(a.decision.score >= 160 for a in other_side if a.status == "already_favourable")
    from recourse.results import answers_frame

    frame = answers_frame(stricter)
    assert list(frame.columns[:7]) == ["status", "decision", "probability", "score", "new_decision", "new_probability", "new_score"]
    assert (frame.loc[frame.status == "recourse_found", "new_score"] <= 120 + 1e-6).all()
    limited = engine.with_config(time_limit=30.0).for_score(target.with_threshold(at_most=120))
    assert limited.config.time_limit == 30.0 and engine.for_score(target.with_threshold(at_most=120)).config.time_limit is None
    same = engine.explain(test.iloc[:5], target={"at_most": target.threshold})
    plain = engine.explain(test.iloc[:5])
    assert [a.to_dict()["actions"] for a in same] == [a.to_dict()["actions"] for a in plain]


@pytest.mark.parametrize("options, field", [
    ({"target": {"at_most": 1, "at_least": 2}}, "target"),
    ({"target": {"below": 3}}, "target"),
    ({"target": {"at_most": float("nan")}}, "target.at_most"),
    ({"target": {"at_most": True}}, "target.at_most"),
    ({"min_probability": 0.7}, "min_probability"),
])
def test_bad_score_requests_name_the_field(linear_bundle, diabetes, options, field):
    _, _, test, _ = diabetes.split()
    with pytest.raises(OptionsError) as info:
        linear_bundle.engine().explain(test.iloc[:1], **options)
    assert info.value.errors[0].field == field


def test_a_classification_engine_refuses_a_score_threshold():
    from recourse.bundle import demo_bundle

    engine = demo_bundle("german").engine()
    record = json.loads(open("datasets/german_credit/examples/denied_applicant.json").read())
    with pytest.raises(OptionsError, match="decides classes, not a score"):
        engine.explain(record, target={"at_least": 1})
    assert requested_target("good", load_dataset("diabetes").schema.score_target) is None


def test_score_training_table_needs_numbers(tmp_path):
    from recourse.data import DataInputError, read_training_table

    schema = load_dataset("diabetes").schema
    d = load_dataset("diabetes")
    table = d.frame.head(30).copy()
    table["progression"] = [str(v) for v in d.labels[:30]]
    table.loc[4, "progression"] = "high"
    path = tmp_path / "t.csv"
    table.to_csv(path, index=False)
    with pytest.raises(DataInputError, match=r"row 5.*progression.*'high' is not a number"):
        read_training_table(path, schema)


def test_a_threshold_no_training_row_reaches_is_refused(tmp_path, diabetes):
    schema = diabetes.schema.model_copy(update={"target": diabetes.schema.score_target.with_threshold(at_most=10)})
    with pytest.raises(BundleError, match="each side of the threshold needs at least 5 rows"):
        build_bundle(schema, diabetes.frame, diabetes.labels, tmp_path / "b", model="linear")


# ---------------------------------------------------------------------- the shells
def _patient_with_recourse(bundle, test) -> dict:
    """The first held-out patient above the threshold who has a recourse (plain Python values)."""
    answers = bundle.engine().explain(test.iloc[:30])
    row = next(i for i, a in enumerate(answers) if a.found)
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in test.iloc[row].to_dict().items()}


def test_cli_trains_and_explains_a_score(tmp_path, linear_bundle, diabetes):
    from cli import app

    runner = CliRunner()
    _, _, test, _ = diabetes.split()
    patient = tmp_path / "patient.json"
    patient.write_text(json.dumps(_patient_with_recourse(linear_bundle, test)))
    text = runner.invoke(app, ["explain", str(patient), "--bundle", str(linear_bundle.path)])
    assert text.exit_code == 0, text.output
    assert "Decision: disease progression above 140.0 (predicted" in text.output
    assert "moves the predicted disease progression from" in text.output
    out = runner.invoke(app, ["explain", str(patient), "--bundle", str(linear_bundle.path), "--at-most", "150", "--json"])
    assert out.exit_code == 0, out.output
    answer = json.loads(out.output)
    assert answer["decision"]["probability"] is None and answer["decision"]["score"] > 150
    assert answer["target"]["label"] == "disease progression at most 150.0"
    if answer["status"] == "recourse_found":
        assert answer["counterfactual_decision"]["score"] <= 150
    both = runner.invoke(app, ["explain", str(patient), "--bundle", str(linear_bundle.path), "--at-most", "1", "--at-least", "2"])
    assert both.exit_code == 2 and "give one of them" in both.output
    prob = runner.invoke(app, ["explain", str(patient), "--bundle", str(linear_bundle.path), "--min-probability", "0.7"])
    assert prob.exit_code == 2 and "--min-probability" in prob.output and "no probability" in prob.output


def test_cli_refuses_a_score_threshold_on_a_classifier(tmp_path):
    from cli import app

    result = CliRunner().invoke(app, ["explain", "datasets/german_credit/examples/denied_applicant.json", "--at-least", "3"])
    assert result.exit_code == 2 and "decides classes, not a score" in result.output


def test_http_answers_a_score_and_a_threshold_of_the_request(tmp_path, linear_bundle, diabetes):
    from api import create_app

    app = create_app({"auth_required": False, "database": str(tmp_path / "log.sqlite3")}, bundle=linear_bundle)
    client = app.test_client()
    _, _, test, _ = diabetes.split()
    applicant = _patient_with_recourse(linear_bundle, test)
    plain = client.post("/v1/recourse", json={"applicant": applicant}).get_json()
    assert plain["decision"]["score"] > 140 and plain["decision"]["probability"] is None
    asked = client.post("/v1/recourse", json={"applicant": applicant, "target": {"at_most": 150}})
    body = asked.get_json()
    assert asked.status_code == 200 and body["target"]["label"] == "disease progression at most 150.0"
    if body["status"] == "recourse_found":
        assert body["counterfactual_decision"]["score"] <= 150
        fetched = client.get(f"/v1/recourse/{body['id']}").get_json()
        assert fetched["target"] == body["target"]
    again = client.post("/v1/recourse", json={"applicant": applicant, "target": {"at_most": 150}}).get_json()
    assert again["actions"] == body["actions"]  # reused from the log: the threshold is part of the request
    bad = client.post("/v1/recourse", json={"applicant": applicant, "target": {"at_most": 1, "at_least": 2}})
    assert bad.status_code == 422 and bad.get_json()["errors"][0]["field"] == "target"
    prob = client.post("/v1/recourse", json={"applicant": applicant, "min_probability": 0.8})
    assert prob.status_code == 422 and prob.get_json()["errors"][0]["field"] == "min_probability"
    predicted = client.post("/v1/predict", json={"applicant": applicant}).get_json()
    assert predicted["decision"]["score"] == pytest.approx(plain["decision"]["score"]) and "probabilities" not in predicted
    document = client.get("/openapi.json").get_json()
    target = document["components"]["schemas"]["RecourseRequest"]["properties"]["target"]
    assert "at_most" in json.dumps(target)


def test_http_refuses_a_score_threshold_on_a_classifier(tmp_path):
    from api import create_app
    from recourse.bundle import demo_bundle

    app = create_app({"auth_required": False, "database": str(tmp_path / "log.sqlite3")}, bundle=demo_bundle("german"))
    record = json.loads(open("datasets/german_credit/examples/denied_applicant.json").read())
    response = app.test_client().post("/v1/recourse", json={"applicant": record, "target": {"at_least": 1}})
    assert response.status_code == 422 and "decides classes, not a score" in response.get_json()["errors"][0]["message"]


def test_audit_of_a_score_bundle(tmp_path, linear_bundle, diabetes):
    from recourse.audit import AuditConfig, run_audit

    population = tmp_path / "patients.csv"
    diabetes.frame.to_csv(population, index=False)
    result = run_audit(population, tmp_path / "audit", linear_bundle, AuditConfig(group_by=["sex"], stability_n=20, bootstrap=50),
                       progress=False)
    table = pd.read_parquet(result.table_path)
    assert len(table) == len(diabetes.frame)
    engine = linear_bundle.engine()
    denied = int((engine.scores(engine.encode(diabetes.frame)) > 140).sum())
    assert int((table["status"] != "approved").sum()) == denied
    assert (table["status"] == "recourse_found").sum() > 0
    assert "disease progression" in result.report_path.read_text()


@pytest.mark.parametrize("kind", ["ridge", "hgb"])
def test_a_raw_pipeline_score_model_is_rechecked_by_the_pipeline_itself(tmp_path, diabetes, kind):
    """A scikit-learn Pipeline on raw records (ColumnTransformer: one-hot sex, scaled numbers) with a
    ridge or HistGradientBoosting regressor: every answer, scored by the user's own pipeline on the
    raw counterfactual record, is at most the threshold (0 violations)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    train, y, test, y_test = diabetes.split()
    numbers = [n for n in diabetes.schema.names if n != "sex"]
    estimator = Ridge() if kind == "ridge" else HistGradientBoostingRegressor(max_iter=50, random_state=0)
    pipeline = Pipeline([("pre", ColumnTransformer([("sex", OneHotEncoder(), ["sex"]), ("num", StandardScaler(), numbers)])),
                         ("model", estimator)]).fit(train, y)
    bundle = build_bundle(diabetes.schema, train, y, tmp_path / kind, model=pipeline, test=(test, y_test))
    assert bundle.metadata["model"].startswith("raw pipeline: ColumnTransformer")
    answers = bundle.engine().explain(test)
    found = [a for a in answers if a.found]
    assert len(found) >= 30
    own = pipeline.predict(pd.DataFrame([a.counterfactual for a in found])[diabetes.schema.names])
    assert (own <= 140).all(), own[own > 140]
    np.testing.assert_allclose([a.counterfactual_decision.score for a in found], own, rtol=1e-4, atol=1e-3)


def test_a_value_at_a_split_read_through_an_input_map_is_ambiguous():
    """A split input that moves onto a midpoint split (within twice the slack) is on no sure side:
    refused; a row that keeps its value there, a value clearly to one side, and a split at a
    training value (whose side the slack gives exactly) are not."""
    from sklearn.ensemble import GradientBoostingRegressor

    from recourse.pipelines import InputMap

    rng = np.random.default_rng(0)
    x = rng.random((200, 2))
    model = GradientBoostingRegressor(n_estimators=5, max_depth=2, random_state=0).fit(x, x[:, 0] * 3 + x[:, 1])
    trees = regressor_trees(model)
    trees.set_input_map(InputMap(None, None, np.eye(2), np.zeros(2)))
    trees.widen_thresholds(torch.full((2,), 1e-12, dtype=torch.float64), 1e-9)
    train = torch.as_tensor(x, dtype=torch.float64)
    trees.mark_midpoints(train)
    assert bool(trees.split_midpoint[trees.feature >= 0].all())  # scikit-learn splits between training values
    feature, threshold = trees.splits()
    slack = trees.split_slack_bits.view(torch.float64)[trees.feature >= 0]
    f, at_split = int(feature[0]), float(threshold[0] - slack[0])
    others = [(int(g), float(t)) for g, t in zip(feature[1:], threshold[1:])]
    rows = torch.tensor([[0.5, 0.5]] * 3, dtype=torch.float64)
    rows[0, f] = at_split  # exactly at the original split
    rows[1, f] = at_split + 1e-3  # clearly to one side
    rows[2, f] = at_split
    assert not any(abs(float(rows[1, g]) - t) < 1e-6 or abs(float(rows[0, 1 - f]) - t) < 1e-6 for g, t in others)
    origin = torch.tensor([[0.5, 0.5]] * 3, dtype=torch.float64)
    origin[2, f] = at_split  # already there: the model's own value is what it always was
    assert trees.ambiguous(rows, origin).tolist() == [True, False, False]
    assert trees.with_affine_output(2.0, 1.0).ambiguous(rows, origin).tolist() == [True, False, False]
    trees.mark_midpoints(torch.cat([train, rows[:1]]))  # the split value is now a training value
    assert not bool(trees.ambiguous(rows, origin).any())


def test_schema_infer_drafts_a_score_target_that_trains(tmp_path, diabetes):
    """A numeric target with many values becomes a score target (at least the median, to review);
    the draft trains after one documented edit (the side and threshold)."""
    from cli import app

    table = diabetes.frame.copy()
    table["progression"] = diabetes.labels
    path = tmp_path / "patients.csv"
    table.to_csv(path, index=False)
    runner = CliRunner()
    drafted = runner.invoke(app, ["schema", "infer", str(path), "--target", "progression", "--out", str(tmp_path / "s.json")])
    assert drafted.exit_code == 0, drafted.output
    schema = json.loads((tmp_path / "s.json").read_text())
    assert schema["target"]["kind"] == "regression" and schema["target"]["at_least"] == pytest.approx(float(np.median(diabetes.labels)))
    schema["target"] = {"kind": "regression", "name": "progression", "at_most": 140}  # the reviewer's edit
    (tmp_path / "s.json").write_text(json.dumps(schema))
    trained = runner.invoke(app, ["train", "--data", str(path), "--schema", str(tmp_path / "s.json"), "--model", "linear",
                                  "--out", str(tmp_path / "b"), "--no-progress"])
    assert trained.exit_code == 0, trained.output
    assert "held-out: R²" in trained.output


def test_the_worked_example_in_the_docs_is_the_demo_output(tmp_path):
    """docs/scores.md shows what the demo network answers for the example patient, word for word."""
    import re
    from pathlib import Path

    from recourse.report import format_recourse

    bundle = build_dataset_bundle("diabetes", tmp_path / "diabetes")
    patient = json.loads(Path("datasets/diabetes/examples/patient.json").read_text())
    [answer] = bundle.engine().explain(patient)
    shown = re.search(r"```text\n(Decision: .*?)\n```", Path("docs/scores.md").read_text(), re.S).group(1)
    assert format_recourse(answer, bundle.schema) == shown


@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_xgboost_and_lightgbm_score_models_read_natively(tmp_path, diabetes, library):
    """An XGBRegressor / LGBMRegressor on the scaled encoding, read from its own JSON dump: every
    answer re-scored by the library's own predict is at most the threshold; a link-function
    objective (Poisson) is refused by name."""
    module = pytest.importorskip(library)
    from recourse.encoding import TabularEncoder, complete_schema

    train, y, test, y_test = diabetes.split()
    x = TabularEncoder(complete_schema(diabetes.schema, train)).encode(train)
    make = (lambda **kw: module.XGBRegressor(n_estimators=80, max_depth=3, n_jobs=1, random_state=0, **kw)) \
        if library == "xgboost" else (lambda **kw: module.LGBMRegressor(n_estimators=80, num_leaves=8, verbose=-1, **kw))
    model = make().fit(x, y)
    bundle = build_bundle(diabetes.schema, train, y, tmp_path / library, model=model, test=(test, y_test))
    engine = bundle.engine()
    answers = engine.explain(test)
    found = [a for a in answers if a.found]
    assert len(found) >= 20
    own = model.predict(engine.encode([a.counterfactual for a in found]))
    assert (own <= 140).all(), own[own > 140]
    poisson = make(objective="count:poisson" if library == "xgboost" else "poisson").fit(x, y)
    with pytest.raises(BundleError, match="a score model"):
        build_bundle(diabetes.schema, train, y, tmp_path / "poisson", model=poisson)


def test_every_openapi_example_of_a_score_bundle_is_accepted(tmp_path, linear_bundle):
    """The OpenAPI document of a score bundle (a threshold object as the example target, no
    min_probability) offers only requests the server accepts."""
    from api import create_app

    client = create_app({"auth_required": False, "database": str(tmp_path / "log.sqlite3")}, bundle=linear_bundle).test_client()
    document = client.get("/openapi.json").get_json()
    seen = 0
    for path, item in document["paths"].items():
        for method, operation in item.items():
            examples = ((operation.get("requestBody") or {}).get("content", {}).get("application/json", {})
                        .get("examples", {}))
            for name, example in examples.items():
                response = client.open(path, method=method.upper(), json=example["value"])
                assert response.status_code == 200, (path, name, response.get_json())
                seen += 1
    assert seen >= 5
    options = document["paths"]["/v1/recourse"]["post"]["requestBody"]["content"]["application/json"]["examples"]["options"]
    assert options["value"]["target"] == {"at_most": 140.0} and "min_probability" not in options["value"]
