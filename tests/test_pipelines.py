"""A scikit-learn Pipeline on raw records (ColumnTransformer → estimator) as a bundle's model.

The converted model must give the pipeline's own probabilities; answers are re-checked with the
user's pipeline on raw rows; preprocessing that cannot be converted exactly is refused with the
reason; the input map of the preprocessing is exact on random records (hypothesis).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, MinMaxScaler, OneHotEncoder, OrdinalEncoder, PolynomialFeatures, StandardScaler

from recourse.bundle import build_bundle, load_bundle
from recourse.data import load_dataset
from recourse.encoding import TabularEncoder, complete_schema
from recourse.errors import BundleError
from recourse.pipelines import input_map, predict_proba_raw, raw_pipeline_model
from recourse.trees import TreeEnsemble


@pytest.fixture(scope="module")
def german():
    data = load_dataset("german")
    train, y, test, y_test = data.split()
    schema = complete_schema(data.schema, train)
    levels = [f.name for f in schema.features if f.kind in ("categorical", "ordinal", "binary")]
    numbers = [f.name for f in schema.features if f.name not in levels]
    return schema, train, y, test, levels, numbers


def raw_pipeline(levels, numbers, estimator, onehot=True):
    encode = OneHotEncoder(handle_unknown="ignore") if onehot else OrdinalEncoder()
    return Pipeline([("columns", ColumnTransformer([("levels", encode, levels), ("numbers", StandardScaler(), numbers)])),
                     ("model", estimator)])


def favourable_probability(pipeline, schema, encoder, rows: pd.DataFrame) -> np.ndarray:
    column = list(pipeline.classes_).index(schema.target.favourable)
    return predict_proba_raw(pipeline, encoder, rows)[:, column]


@pytest.mark.slow
@pytest.mark.parametrize("estimator", [LogisticRegression(max_iter=2000), HistGradientBoostingClassifier(max_iter=40, random_state=0),
                                       MLPClassifier((12,), max_iter=300, random_state=0)],
                         ids=["logistic", "hgb", "mlp"])
def test_a_raw_pipeline_becomes_a_bundle_whose_answers_the_pipeline_itself_approves(tmp_path, german, estimator):
    schema, train, y, test, levels, numbers = german
    with _no_warning_check():
        pipeline = raw_pipeline(levels, numbers, estimator).fit(train, y)
    build_bundle(schema, train, y, tmp_path / "bundle", model=pipeline)
    bundle = load_bundle(tmp_path / "bundle")  # what a later process sees: arrays only, no pickle
    engine = bundle.engine()
    encoder = TabularEncoder(bundle.schema)
    deciding = bundle.verifier or bundle.classifier
    with torch.no_grad():
        ours = deciding.predict_proba(torch.as_tensor(encoder.encode(test), dtype=deciding.dtype)).double().numpy()
    theirs = predict_proba_raw(pipeline, encoder, test)
    assert np.abs(ours - theirs).max() <= 1e-5
    answers = engine.explain(test)
    found = [a for a in answers if a.status == "recourse_found"]
    denied = [a for a in answers if a.status != "already_favourable"]
    assert len(found) >= 0.9 * len(denied) > 0
    counterfactuals = pd.DataFrame([a.counterfactual for a in found])
    assert (favourable_probability(pipeline, schema, encoder, counterfactuals) > 0.5).all()
    assert bundle.metadata["model"].startswith("raw pipeline: ColumnTransformer")


class _no_warning_check:
    """Convergence warnings of a small MLP are not the subject here."""

    def __enter__(self):
        import warnings

        self._catch = warnings.catch_warnings()
        self._catch.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc):
        self._catch.__exit__(*exc)


def test_ordinal_codes_and_min_max_scaling_convert_to_one_linear_layer(german):
    schema, train, y, test, levels, numbers = german
    strict = Pipeline([("columns", ColumnTransformer([("levels", OrdinalEncoder(), levels),
                                                      ("numbers", MinMaxScaler(), numbers)])),
                       ("model", LogisticRegression(max_iter=2000))]).fit(train, y)
    encoder = TabularEncoder(schema)
    with pytest.raises(BundleError, match="feature 'purpose': the pipeline cannot transform the value 'vacation'.*handle_unknown"):
        raw_pipeline_model(strict, encoder, train)  # a level of the schema no training row has
    lenient = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)
    pipeline = Pipeline([("columns", ColumnTransformer([("levels", lenient, levels), ("numbers", MinMaxScaler(), numbers)])),
                         ("model", LogisticRegression(max_iter=2000))]).fit(train, y)
    mapping = input_map(pipeline.steps[0][1], encoder, train)
    # an ordinal encoded by its level code is affine in z, unless the encoder's category order
    # (alphabetical) is not the schema's level order: then it needs knots
    model, trees = raw_pipeline_model(pipeline, encoder, train)
    assert not trees
    with torch.no_grad():
        ours = model.predict_proba(torch.as_tensor(encoder.encode(test), dtype=model.dtype)).double().numpy()
    assert np.abs(ours - predict_proba_raw(pipeline, encoder, test)).max() <= 1e-5
    assert mapping.out_features == len(levels) + len(numbers)


def test_a_one_hot_ordinal_needs_knots_and_stays_exact_on_every_level(german):
    schema, train, y, test, levels, numbers = german
    pipeline = raw_pipeline(levels, numbers, LogisticRegression(max_iter=2000)).fit(train, y)
    encoder = TabularEncoder(schema)
    mapping = input_map(pipeline.steps[0][1], encoder, train)
    assert mapping.w1 is not None  # savings, employment, ... are ordinals one-hot encoded by the pipeline
    for j, fc in enumerate(encoder.layout):
        if fc.feature.kind != "ordinal":
            continue
        rows = encoder.to_codes(train.head(1)).repeat(len(fc.feature.levels), 0)
        rows[:, j] = np.arange(len(fc.feature.levels))
        expected = pipeline.steps[0][1].transform(encoder.frame_from_codes(rows))
        expected = expected.toarray() if hasattr(expected, "toarray") else expected
        assert np.allclose(mapping(encoder.encode_codes(rows)), expected, atol=1e-9)


def test_preprocessing_that_is_not_linear_or_mixes_features_is_refused_with_the_reason(german):
    schema, train, y, test, levels, numbers = german
    encoder = TabularEncoder(schema)
    logged = Pipeline([("columns", ColumnTransformer([("levels", OneHotEncoder(), levels),
                                                      ("numbers", FunctionTransformer(np.log1p), numbers)])),
                       ("model", LogisticRegression(max_iter=500))]).fit(train, y)
    with pytest.raises(BundleError, match="feature 'duration'.*not linear.*black box"):
        raw_pipeline_model(logged, encoder, train)
    mixed = Pipeline([("columns", ColumnTransformer([("levels", OneHotEncoder(), levels), ("numbers", StandardScaler(), numbers)],
                                                    sparse_threshold=0)),
                      ("pairs", PolynomialFeatures(2, interaction_only=True)), ("model", LogisticRegression(max_iter=500))]).fit(train, y)
    with pytest.raises(BundleError, match="depends on both|not additive"):
        raw_pipeline_model(mixed, encoder, train)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_the_input_map_equals_the_pipelines_transform_on_random_records(german, data):
    """Random choices of encoder per feature group; random valid records: T(z) == transform(raw)."""
    schema, train, y, test, levels, numbers = german
    encoder = TabularEncoder(schema)
    level_encoder = data.draw(st.sampled_from(["onehot", "ordinal", "onehot-drop-first"]))
    number_scaler = data.draw(st.sampled_from(["standard", "minmax", "passthrough"]))
    chosen_levels = data.draw(st.lists(st.sampled_from(levels), min_size=1, max_size=len(levels), unique=True))
    chosen_numbers = data.draw(st.lists(st.sampled_from(numbers), min_size=0, max_size=len(numbers), unique=True))
    lev = {"onehot": OneHotEncoder(handle_unknown="ignore"),
           "ordinal": OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
           "onehot-drop-first": OneHotEncoder(drop="first", handle_unknown="ignore")}[level_encoder]
    num = {"standard": StandardScaler(), "minmax": MinMaxScaler(), "passthrough": "passthrough"}[number_scaler]
    parts = [("levels", lev, chosen_levels)] + ([("numbers", num, chosen_numbers)] if chosen_numbers else [])
    pre = ColumnTransformer(parts, sparse_threshold=0).fit(train)
    mapping = input_map(pre, encoder, train)
    seed = data.draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    codes = encoder.to_codes(train.sample(20, random_state=seed))
    acts = encoder.action_set
    for j, fc in enumerate(encoder.layout):  # random values anywhere in each feature's range
        if fc.feature.kind in ("continuous",):
            codes[:, j] = rng.uniform(acts.low[j], acts.high[j], len(codes)).round(2)
        elif fc.feature.kind in ("integer", "ordinal"):
            codes[:, j] = rng.integers(int(acts.low[j]), int(acts.high[j]) + 1, len(codes))
    expected = pre.transform(encoder.frame_from_codes(codes))
    assert np.allclose(mapping(encoder.encode_codes(codes)), np.asarray(expected, dtype=float), rtol=1e-9, atol=1e-9)


def test_a_tree_ensemble_keeps_its_input_map_through_save_and_load(tmp_path, german):
    schema, train, y, test, levels, numbers = german
    pipeline = raw_pipeline(levels, numbers, HistGradientBoostingClassifier(max_iter=10, random_state=0)).fit(train, y)
    encoder = TabularEncoder(schema)
    model, trees = raw_pipeline_model(pipeline, encoder, train)
    assert trees
    model.module.save(tmp_path, "verifier")
    loaded = TreeEnsemble.load(tmp_path, "verifier")
    z = torch.as_tensor(encoder.encode(test), dtype=torch.float64)
    assert torch.equal(loaded.leaves(z), model.module.leaves(z))
    assert loaded.in_features == encoder.n_columns
    # a tampered input map (wrong shape) is refused on load
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(tmp_path / "verifier.safetensors"))
    tensors["map_b2"] = tensors["map_b2"][:-1].contiguous()
    save_file(tensors, str(tmp_path / "verifier.safetensors"))
    with pytest.raises(ValueError, match="input map"):
        TreeEnsemble.load(tmp_path, "verifier")
