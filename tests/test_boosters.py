"""XGBoost and LightGBM classifiers read from their own JSON dumps and evaluated exactly in torch.

Checked against the libraries themselves: the same probabilities (1e-6), the same leaf in every
tree for every row (XGBoost's node ids, LightGBM's leaf indices), bundles whose answers the
booster itself approves, a raw pipeline ending in XGBoost, and refusals of what cannot be
exported.  xgboost and lightgbm are the ``boosters`` extra, installed by ``make test``; they are
imported here only, so that collecting the other test modules does not need them.
"""
from __future__ import annotations

import warnings

import lightgbm
import numpy as np
import pandas as pd
import pytest
import torch
import xgboost
from sklearn.datasets import load_wine

from recourse.boosters import from_lightgbm, from_xgboost, lightgbm_leaf_index
from recourse.bundle import build_bundle, load_bundle
from recourse.data import load_dataset
from recourse.encoding import TabularEncoder, complete_schema
from recourse.errors import BundleError
from recourse.metrics import count_violations
from recourse.trees import TreeEnsemble, export_trees, is_tree_model, tree_classifier


@pytest.fixture(scope="module")
def german():
    data = load_dataset("german")
    train, y, test, y_test = data.split()
    schema = complete_schema(data.schema, train)
    encoder = TabularEncoder(schema)
    index = np.array([list(schema.target.classes).index(v) for v in y])  # XGBoost trains on 0..C-1
    return schema, train, y, index, test, encoder, encoder.encode(train), encoder.encode(test)


def raw_pipeline(schema, estimator, sparse_threshold: float = 0.3):
    """ColumnTransformer (one-hot levels, standardised numbers) → ``estimator`` on raw records."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    levels = [f.name for f in schema.features if f.kind in ("categorical", "ordinal", "binary")]
    numbers = [f.name for f in schema.features if f.name not in levels]
    columns = ColumnTransformer([("levels", OneHotEncoder(handle_unknown="ignore"), levels),
                                 ("numbers", StandardScaler(), numbers)], sparse_threshold=sparse_threshold)
    return Pipeline([("columns", columns), ("model", estimator)])


def xgb_model(x, y, trees=30, **kw):
    return xgboost.XGBClassifier(n_estimators=trees, max_depth=4, learning_rate=0.3, n_jobs=1, random_state=0, **kw).fit(x, y)


def lgb_model(x, y, trees=30, **kw):
    options = {"n_estimators": trees, "num_leaves": 15, "min_child_samples": 5, "n_jobs": 1, "verbose": -1,
               "random_state": 0, **kw}
    return lightgbm.LGBMClassifier(**options).fit(x, y)


def probes(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """The rows, the rows moved a little, and random rows of the box (splits hit from every side)."""
    rng = np.random.default_rng(seed)
    return np.vstack([x, np.clip(x + rng.normal(0, 0.05, x.shape), 0, 1), rng.random((200, x.shape[1]))])


def per_tree(ensemble: TreeEnsemble, x: np.ndarray) -> np.ndarray:
    """(B, T) node id, within its tree, of the leaf each row reaches."""
    flat = ensemble.leaves(torch.as_tensor(x, dtype=torch.float64)).numpy()
    return flat - np.arange(ensemble.n_trees)[None, :] * ensemble.feature.shape[1]


def xgb_leaves(model, x: np.ndarray) -> np.ndarray:
    return model.get_booster().predict(xgboost.DMatrix(x), pred_leaf=True).astype(np.int64).reshape(len(x), -1)


def assert_same_as_xgboost(model, x):
    ensemble = export_trees(model)
    np.testing.assert_array_equal(per_tree(ensemble, x), xgb_leaves(model, x))
    got = tree_classifier(model).predict_proba(torch.as_tensor(x, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(got, model.predict_proba(x), atol=1e-6, rtol=0)


def assert_same_as_lightgbm(model, x):
    ensemble = export_trees(model)
    np.testing.assert_array_equal(lightgbm_leaf_index(model, per_tree(ensemble, x)), model.predict(x, pred_leaf=True))
    got = tree_classifier(model).predict_proba(torch.as_tensor(x, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(got, model.predict_proba(x), atol=1e-6, rtol=0)


def test_binary_xgboost_on_german_leaf_for_leaf(german):
    schema, train, y, index, test, encoder, x, x_test = german
    model = xgb_model(x, index)
    assert is_tree_model(model) and export_trees(model).output == "logit"
    assert_same_as_xgboost(model, probes(np.vstack([x, x_test])))


def test_binary_lightgbm_on_german_leaf_for_leaf(german):
    schema, train, y, index, test, encoder, x, x_test = german
    model = lgb_model(x, y)  # LightGBM keeps the labels: classes_ == [1, 2], the schema's order
    assert is_tree_model(model) and tree_classifier(model).classes == [1, 2]
    assert_same_as_lightgbm(model, probes(np.vstack([x, x_test])))


@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_three_classes_on_wine_leaf_for_leaf(library):
    x, y = load_wine(return_X_y=True)
    x = (x - x.min(0)) / (x.max(0) - x.min(0))
    rows = probes(x, seed=1)
    if library == "xgboost":
        model = xgb_model(x, y)
        assert export_trees(model).output == "logits"
        assert_same_as_xgboost(model, rows)
        softmax = xgb_model(x, y, objective="multi:softmax")  # predict_proba: the softmax of the margins
        assert_same_as_xgboost(softmax, rows)
    else:
        model = lgb_model(x, y)
        assert export_trees(model).output == "logits"
        assert_same_as_lightgbm(model, rows)


def test_bare_boosters_sigmoid_and_random_forest_mode(german):
    """A ``Booster`` without the sklearn wrapper (classes 0..C−1), LightGBM's sigmoid factor and
    random-forest mode (averaged trees), XGBoost's random forests (several trees per round)."""
    schema, train, y, index, test, encoder, x, x_test = german
    rows = probes(x_test)
    booster = xgb_model(x, index).get_booster()
    assert tree_classifier(booster).classes == [0, 1]
    margin = booster.predict(xgboost.DMatrix(rows), output_margin=True)
    with torch.no_grad():
        ours = from_xgboost(booster)(torch.as_tensor(rows)).numpy()
    np.testing.assert_allclose(ours, margin, atol=1e-5, rtol=0)
    assert_same_as_xgboost(xgb_model(x, index, trees=5, num_parallel_tree=4, subsample=0.8), rows)

    lgb_booster = lgb_model(x, y).booster_
    assert tree_classifier(lgb_booster).classes == [0, 1]
    with torch.no_grad():
        np.testing.assert_allclose(from_lightgbm(lgb_booster)(torch.as_tensor(rows)).numpy(),
                                   lgb_booster.predict(rows, raw_score=True), atol=1e-9, rtol=0)
    assert_same_as_lightgbm(lgb_model(x, y, objective="binary", sigmoid=0.5), rows)
    forest = lgb_model(x, y, boosting_type="rf", bagging_freq=1, bagging_fraction=0.7)
    assert_same_as_lightgbm(forest, rows)


def test_early_stopping_keeps_the_trees_the_wrapper_predicts_with(german):
    schema, train, y, index, test, encoder, x, x_test = german
    y_test = np.array([list(schema.target.classes).index(v) for v in load_dataset("german").split()[3]])
    model = xgboost.XGBClassifier(n_estimators=200, max_depth=3, early_stopping_rounds=5, n_jobs=1,
                                  random_state=0).fit(x, index, eval_set=[(x_test, y_test)], verbose=False)
    assert model.best_iteration + 1 < 200
    ensemble = export_trees(model)
    assert ensemble.n_trees == model.best_iteration + 1
    got = tree_classifier(model).predict_proba(torch.as_tensor(x_test, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(got, model.predict_proba(x_test), atol=1e-6, rtol=0)


def test_save_load_round_trip_and_tampered_arrays_are_refused(german, tmp_path):
    schema, train, y, index, test, encoder, x, x_test = german
    for name, model in (("xgb", xgb_model(x, index, trees=10)), ("lgb", lgb_model(x, y, trees=10))):
        ensemble = export_trees(model)
        ensemble.save(tmp_path / name)
        loaded = TreeEnsemble.load(tmp_path / name)
        z = torch.as_tensor(x_test, dtype=torch.float64)
        with torch.no_grad():
            assert torch.equal(loaded(z), ensemble(z)) and loaded.float32_inputs == ensemble.float32_inputs
        ensemble.right[3, 0] = 10_000
        ensemble.save(tmp_path / name)
        with pytest.raises(ValueError, match="'right' child index is out of range"):
            TreeEnsemble.load(tmp_path / name)
        ensemble.right[3, 0], ensemble.feature[2, 0] = 1, 999
        ensemble.save(tmp_path / name)
        with pytest.raises(ValueError, match="split feature is out of range"):
            TreeEnsemble.load(tmp_path / name)


def test_models_that_are_not_classifiers_or_have_categorical_splits_are_refused(german):
    schema, train, y, index, test, encoder, x, x_test = german
    regressor = xgboost.XGBRegressor(n_estimators=3, n_jobs=1).fit(x, index)
    assert is_tree_model(regressor)
    with pytest.raises(TypeError, match="XGBRegressor with objective 'reg:squarederror'.*classifier"):
        tree_classifier(regressor)
    with pytest.raises(TypeError, match="booster 'gblinear'"):
        export_trees(xgboost.XGBClassifier(n_estimators=3, booster="gblinear", n_jobs=1).fit(x, index))
    with pytest.raises(TypeError, match="LGBMRegressor with objective 'regression'"):
        export_trees(lightgbm.LGBMRegressor(n_estimators=3, verbose=-1, n_jobs=1).fit(x, index))
    wine_x, wine_y = load_wine(return_X_y=True)
    with pytest.raises(TypeError, match="objective 'multiclassova'"):
        export_trees(lgb_model(wine_x, wine_y, trees=3, objective="multiclassova"))
    codes = encoder.to_codes(train)[:, :1]  # the status levels 0..3 as one categorical column
    categorical = lgb_model(np.hstack([codes, x[:, -3:]]), y, trees=3, min_data_per_group=5, cat_smooth=1)
    categorical.fit(np.hstack([codes, x[:, -3:]]), y, categorical_feature=[0])
    with pytest.raises(ValueError, match=r"categorical splits \('=='\).*one-hot"):
        export_trees(categorical)
    frame = pd.DataFrame({"status": pd.Categorical(train["status"]), "duration": train["duration"]})
    with pytest.raises(ValueError, match="categorical splits are not supported"):
        export_trees(xgb_model(frame, index, trees=3, enable_categorical=True, tree_method="hist"))


@pytest.mark.slow
def test_recourse_imports_and_exports_sklearn_trees_without_the_boosters():
    """The boosters extra is optional: with xgboost and lightgbm unimportable, recourse imports, and
    is_tree_model / export_trees still serve scikit-learn's ensembles."""
    import subprocess
    import sys

    code = """
import importlib.abc, sys
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("xgboost", "lightgbm"):
            raise ModuleNotFoundError(name, name=name)
sys.meta_path.insert(0, Refuse())
import numpy as np
import recourse.bundle, recourse.pipelines, recourse.boosters
from recourse.trees import export_trees, is_tree_model
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
x = np.random.default_rng(0).random((50, 3)); y = (x[:, 0] > 0.5).astype(int)
assert is_tree_model(RandomForestClassifier(3).fit(x, y)) and not is_tree_model(LogisticRegression().fit(x, y))
assert export_trees(RandomForestClassifier(3).fit(x, y)).n_trees == 3
assert "xgboost" not in sys.modules and "lightgbm" not in sys.modules
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def answers_the_booster_approves(bundle, model, test, favourable_column: int) -> tuple[int, int]:
    """(denied held-out rows, those with a recourse that ``model`` itself approves); 0 violations."""
    engine = bundle.engine()
    encoder = TabularEncoder(bundle.schema)
    answers = engine.explain(test)
    denied = [a for a in answers if a.status != "already_favourable"]
    found = [a for a in denied if a.status == "recourse_found"]
    counterfactuals = pd.DataFrame([a.counterfactual for a in found], columns=bundle.schema.names)
    approved = model(counterfactuals)[:, favourable_column] > 0.5
    originals = pd.DataFrame([a.applicant for a in found], columns=bundle.schema.names)
    assert count_violations(bundle.schema, originals, counterfactuals, bundle.metadata["defaults"]["max_changes"]) == 0
    return len(denied), int(approved.sum())


@pytest.mark.slow
@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_a_booster_bundle_gives_answers_the_booster_itself_approves(german, tmp_path, library):
    schema, train, y, index, test, encoder, x, x_test = german
    model = xgb_model(x, index, trees=100) if library == "xgboost" else lgb_model(x, y, trees=100)
    build_bundle(schema, train, y, tmp_path / library, model=model)
    bundle = load_bundle(tmp_path / library)  # arrays only: no pickle
    assert bundle.verifier is not None and bundle.metadata["model"] == type(model).__name__
    with torch.no_grad():
        ours = bundle.verifier.predict_proba(torch.as_tensor(x_test, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(ours, model.predict_proba(x_test), atol=1e-6, rtol=0)
    predict = lambda rows: model.predict_proba(TabularEncoder(bundle.schema).encode(rows))  # noqa: E731
    denied, approved = answers_the_booster_approves(bundle, predict, test, favourable_column=0)
    assert denied > 0 and approved >= 0.9 * denied


@pytest.mark.slow
def test_a_raw_pipeline_ending_in_xgboost_becomes_a_bundle(german, tmp_path):
    from recourse.pipelines import predict_proba_raw, raw_pipeline_model

    schema, train, y, index, test, encoder, x, x_test = german

    def pipeline(sparse_threshold=0.3):
        booster = xgboost.XGBClassifier(n_estimators=60, max_depth=4, n_jobs=1, random_state=0)
        return raw_pipeline(schema, booster, sparse_threshold).fit(train, index)

    dense = pipeline()
    build_bundle(schema, train, y, tmp_path / "pipeline", model=dense)
    bundle = load_bundle(tmp_path / "pipeline")
    assert bundle.metadata["model"] == "raw pipeline: ColumnTransformer → XGBClassifier"
    with torch.no_grad():
        ours = bundle.verifier.predict_proba(torch.as_tensor(x_test, dtype=torch.float64)).numpy()
    assert np.abs(ours - predict_proba_raw(dense, encoder, test)).max() <= 1e-5
    denied, approved = answers_the_booster_approves(bundle, lambda rows: predict_proba_raw(dense, encoder, rows), test, 0)
    assert denied > 0 and approved >= 0.9 * denied
    # a sparse matrix makes XGBoost read every zero as missing: exact only where 0 goes the missing way
    from recourse.boosters import xgboost_zero_conflicts

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sparse = pipeline(sparse_threshold=1.0)
    wide = sparse.steps[0][1].transform(train)
    assert hasattr(wide, "toarray") and xgboost_zero_conflicts(sparse.steps[-1][1]) > 0
    booster = sparse.steps[-1][1]
    assert np.abs(booster.predict_proba(wide) - booster.predict_proba(wide.toarray())).max() > 0.1  # zeros ≠ missing
    with pytest.raises(BundleError, match="sparse matrices.*sparse_threshold=0"):
        raw_pipeline_model(sparse, encoder, train)


def test_a_raw_pipeline_ending_in_lightgbm_converts_exactly(german):
    from recourse.pipelines import predict_proba_raw, raw_pipeline_model

    schema, train, y, index, test, encoder, x, x_test = german
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # LightGBM on numpy after a DataFrame: no feature names
        pipeline = raw_pipeline(schema, lightgbm.LGBMClassifier(n_estimators=40, n_jobs=1, verbose=-1)).fit(train, y)
        model, trees = raw_pipeline_model(pipeline, encoder, train)
        theirs = predict_proba_raw(pipeline, encoder, test)
    assert trees and model.classes == [1, 2]
    with torch.no_grad():
        ours = model.predict_proba(torch.as_tensor(x_test, dtype=torch.float64)).numpy()
    assert np.abs(ours - theirs).max() <= 1e-6
