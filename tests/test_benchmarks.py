"""Tests for benchmarks.scfe (`recourse bench scfe`): the S-CFE benchmark protocol and the DiCE conversions."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from benchmarks.scfe import DiceModel, benchmark_points, format_table, from_dice, run_scfe_benchmark, to_dice
from recourse.bundle import load_bundle
from recourse.data import load_dataset

KEYS = {"dataset", "density", "n", "max_changes", "validity", "l0_mean", "l2_mean", "lof_mean", "ynn_mean",
        "redundancy_mean", "violations", "seconds", "per_second", "no_recourse", "device", "torch_threads", "peers"}


@pytest.fixture(scope="module")
def wine(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    bundle_dir = tmp_path_factory.mktemp("bundle") / "wine"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECOURSE_HOME", str(home))
        result = run_scfe_benchmark("wine", density="gmm", n=10, peers=False, bundle_dir=bundle_dir)
        yield result, bundle_dir, home


def test_wine_benchmark_keys_and_figures(wine):
    result, bundle_dir, home = wine
    assert KEYS <= set(result)
    assert result["dataset"] == "wine" and result["density"] == "gmm"
    assert result["n"] == 10 and result["max_changes"] == 2
    assert 0.0 <= result["validity"] <= 1.0
    assert result["violations"] == 0
    assert result["l0_mean"] <= 2
    assert result["seconds"] > 0 and result["per_second"] == pytest.approx(10 / result["seconds"], rel=1e-4)
    assert len(result["no_recourse"]) == round(10 * (1 - result["validity"]))
    assert result["peers"] == {}
    json.dumps(result)  # JSON-ready
    assert (bundle_dir / "metadata.json").is_file()
    assert not (home / "bundles").exists()  # the given bundle_dir was used, nothing else written
    table = format_table(result)
    assert "S-CFE (gmm τ=0.5)" in table and "wine: n=10, m=2" in table


def test_peers_without_dice_say_so(wine, monkeypatch):
    _, bundle_dir, home = wine
    monkeypatch.setenv("RECOURSE_HOME", str(home))
    monkeypatch.setitem(sys.modules, "dice_ml", None)  # import dice_ml → ImportError
    result = run_scfe_benchmark("wine", density="none", n=3, max_changes=3, bundle_dir=bundle_dir)
    assert result["peers"] == {"dice_random": "not installed (pip install -e .[bench])",
                               "dice_genetic": "not installed (pip install -e .[bench])"}
    assert result["density"] == "none" and result["max_changes"] == 3 and result["violations"] == 0
    assert "speedup_vs_dice_random" not in result
    assert "not installed" in format_table(result)


def test_wine_points_target_the_other_class(wine):
    _, bundle_dir, _ = wine
    engine = load_bundle(bundle_dir).engine()
    rows, positions, targets = benchmark_points("wine", engine, 100)
    assert len(rows) == 100 and positions.tolist() == list(range(100))
    pred = engine.predict_proba(engine.encoder.encode(rows)).argmax(1)
    assert (targets == 1 - pred).all()
    # DiCE's view of the model is the same model
    np.testing.assert_allclose(DiceModel(engine).predict_proba(to_dice(engine.schema, rows.head(5))),
                               engine.predict_proba(engine.encoder.encode(rows.head(5))))


def test_dice_conversions_round_trip_german_types():
    data = load_dataset("german")
    schema, frame = data.schema, data.frame.head(20)
    dice = to_dice(schema, frame)
    assert set(dice["telephone"]) <= {"True", "False"}
    back = from_dice(schema, dice)
    assert (back.to_numpy() == frame.to_numpy()).all()
    assert back["telephone"].map(type).eq(bool).all() and back["duration"].map(type).eq(int).all()
    # a fractional integer stays fractional (so it is counted as a type violation)
    dice["duration"] = dice["duration"].astype(float)
    dice.loc[0, "duration"] = 12.5
    assert from_dice(schema, dice).loc[0, "duration"] == 12.5


def test_dice_random_peer_when_installed(wine, monkeypatch):
    pytest.importorskip("dice_ml")
    _, bundle_dir, home = wine
    monkeypatch.setenv("RECOURSE_HOME", str(home))
    result = run_scfe_benchmark("wine", density="gmm", n=3, bundle_dir=bundle_dir)
    dice = result["peers"]["dice_random"]
    assert isinstance(dice, dict), dice
    assert dice["n"] == 3 and 0.0 <= dice["validity"] <= 1.0 and dice["seconds"] > 0
    assert isinstance(dice["violations"], int)
    assert result["speedup_vs_dice_random"] == pytest.approx(result["per_second"] / dice["per_second"], rel=1e-3)
    assert "dice random" in format_table(result)


# ---------------------------------------------------------------------- tree models, gradients, DiCE methods
def test_bench_options_are_checked():
    for kwargs in ({"model": "xgb"}, {"gradient": "finite"}, {"dice_methods": ("annealing",)}):
        with pytest.raises(ValueError):
            run_scfe_benchmark("wine", n=1, **kwargs)


@pytest.fixture(scope="module")
def forest_wine(tmp_path_factory):
    """A random-forest Wine bundle (small: distillation is the slow part)."""
    from recourse.bundle import build_bundle

    data = load_dataset("wine")
    train, y, _, _ = data.split()
    from sklearn.ensemble import RandomForestClassifier
    from recourse.encoding import TabularEncoder, complete_schema

    x = TabularEncoder(complete_schema(data.schema, train)).encode(train)
    forest = RandomForestClassifier(30, min_samples_leaf=3, random_state=0).fit(x, y)
    out = tmp_path_factory.mktemp("bundle") / "wine-forest"
    import functools

    import recourse.bundle
    from recourse.surrogate import distill

    with pytest.MonkeyPatch.context() as mp:  # a smaller distillation keeps the test fast
        mp.setattr(recourse.bundle, "distill", functools.partial(distill, synthetic=1500, epochs=10))
        build_bundle(data.schema, train, y, out, model=forest, densities=("gmm",), default_density="gmm", dataset="wine")
    return out


@pytest.mark.parametrize("gradient", ["surrogate", "zeroth"])
def test_tree_benchmark_verifies_on_the_real_model(forest_wine, gradient, monkeypatch):
    monkeypatch.setitem(sys.modules, "dice_ml", None)
    result = run_scfe_benchmark("wine", density="gmm", n=4, bundle_dir=forest_wine, model="mlp", gradient=gradient)
    assert result["gradient"] == gradient and result["violations"] == 0
    assert result["peers"] == {"dice_random": "not installed (pip install -e .[bench])",
                               "dice_genetic": "not installed (pip install -e .[bench])"}
    assert "surrogate" in result
    assert ("model_queries_per_row" in result) == (gradient == "zeroth")
    # every found counterfactual is in the target class of the real forest
    bundle = load_bundle(forest_wine)
    engine = bundle.engine()
    rows, _, targets = benchmark_points("wine", engine, 4)
    probs = engine.predict_proba(engine.encoder.encode(rows))
    assert np.array_equal(probs, bundle.verifier.predict_proba(
        __import__("torch").as_tensor(engine.encoder.encode(rows), dtype=__import__("torch").float32)).double().numpy())


def test_dice_genetic_peer_when_installed(wine, monkeypatch):
    pytest.importorskip("dice_ml")
    _, bundle_dir, home = wine
    monkeypatch.setenv("RECOURSE_HOME", str(home))
    result = run_scfe_benchmark("wine", density="gmm", n=2, bundle_dir=bundle_dir, dice_methods=("genetic",))
    dice = result["peers"]["dice_genetic"]
    assert isinstance(dice, dict), dice
    assert dice["n"] == 2 and "genetic" in dice["method"]
    assert result["speedup_vs_dice_genetic"] == pytest.approx(result["per_second"] / dice["per_second"], rel=1e-3)
    assert "dice genetic" in format_table(result)


def test_alternatives_figures_in_the_same_run(wine, monkeypatch):
    _, bundle_dir, home = wine
    monkeypatch.setenv("RECOURSE_HOME", str(home))
    result = run_scfe_benchmark("wine", density="gmm", n=4, peers=False, bundle_dir=bundle_dir, alternatives=2)
    alt = result["alternatives"]
    assert alt["k"] == 2 and alt["violations"] == 0 and alt["rows_with_recourse"] == result["found"]
    assert 0.0 <= alt["share_two_plus"] <= 1.0 and 1.0 <= alt["mean_count"] <= 2.0
    assert "alternatives (K=2)" in format_table(result)


def test_robustness_benchmark_reports_invalidation_per_confidence_level():
    from benchmarks.robustness import format_robustness_table, run_robustness_benchmark

    result = run_robustness_benchmark("wine", refits=2, n=12, levels=(None, 0.8), family=2)
    assert result["refits"] == 2 and result["n"] == 12 and result["family"] == 2
    assert [(e["mode"], e["min_probability"]) for e in result["levels"]] == [("model", None), ("model", 0.8), ("robust", 0.6)]
    for entry in result["levels"]:
        assert 0.0 <= entry["invalidation_mean"] <= entry["invalidation_worst"] <= 1.0
        assert entry["found"] == round(entry["validity"] * 12)
        level = entry["min_probability"] or 0.5
        assert entry["probability_quantiles"]["q0"] >= level - 1e-6  # every answer at the level asked for
    assert "invalidated (mean / worst)" in format_robustness_table(result)


@pytest.mark.parametrize("model", ["logistic", "forest"])
def test_robustness_benchmark_refits_the_model_kind_asked_for(model):
    """--model: the bundle and its refits are of that kind; a tree ensemble is measured without a committee."""
    from benchmarks.robustness import run_robustness_benchmark

    result = run_robustness_benchmark("wine", refits=1, n=6, levels=(None,), family=2, model=model)
    assert result["model"] == model and result["refits"] == 1
    assert result["family"] == (2 if model == "logistic" else 0)
    assert [e["mode"] for e in result["levels"]] == (["model", "robust"] if model == "logistic" else ["model"])
    with pytest.raises(ValueError, match="unknown model 'linear'"):
        run_robustness_benchmark("wine", model="linear")


def test_bench_pipeline_rechecks_every_answer_with_the_users_pipeline():
    """The raw-pipeline benchmark: answers re-checked by the pipeline itself, no rule broken."""
    from benchmarks.pipelines import format_pipeline_table, run_pipeline_benchmark

    result = run_pipeline_benchmark("logistic", n=6, peers=False)
    ours = result["recourse"]
    assert result["n"] == 6 and ours["violations"] == 0
    assert ours["pipeline_approves"]["approved"] == ours["pipeline_approves"]["checked"] == ours["found"] > 0
    assert result["bundle_model"].startswith("raw pipeline: ColumnTransformer")
    assert "approved by the pipeline" in format_pipeline_table(result)
