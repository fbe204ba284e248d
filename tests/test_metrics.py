"""Tests for recourse.metrics against hand-computed tiny examples."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.neighbors import LocalOutlierFactor

from recourse.encoding import TabularEncoder
from recourse.metrics import (
    Evaluator,
    NoveltyLOF,
    count_violations,
    l0_distance,
    l2_distance,
    lof_scores,
    redundancy,
    summarise,
    throughput,
    validity,
    violation_flags,
    violation_kinds,
    ynn_scores,
)
from recourse.schema import Feature, FeatureSchema

# columns of the scaled encoding: a, b, c=x, c=y, c=z, d, e
SCHEMA = FeatureSchema(
    name="tiny",
    features=[
        Feature(name="a", kind="continuous", range=(0, 10)),
        Feature(name="b", kind="integer", range=(0, 4), direction="increase"),
        Feature(name="c", kind="categorical", levels=["x", "y", "z"]),
        Feature(name="d", kind="binary"),
        Feature(name="e", kind="continuous", range=(0, 1), immutable=True),
    ],
)
ENCODER = TabularEncoder(SCHEMA)
ORIGINAL = {"a": 5.0, "b": 2, "c": "x", "d": False, "e": 0.5}


def proba(enc: np.ndarray) -> np.ndarray:
    """Class 1 iff a_scaled + d - 0.9 > 0."""
    s = enc[:, 0] + enc[:, 5] - 0.9
    p1 = 1.0 / (1.0 + np.exp(-20 * s))
    return np.stack([1 - p1, p1], axis=1)


def frames(*cfs: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    originals = pd.DataFrame([ORIGINAL] * len(cfs))
    counterfactuals = pd.DataFrame([dict(ORIGINAL, **cf) for cf in cfs])
    return originals, counterfactuals


def test_l0_counts_a_categorical_once_and_l2_is_not_squared():
    orig, cf = frames({"c": "y"}, {"a": 10.0, "b": 3, "c": "z", "d": True}, {})
    assert l0_distance(SCHEMA, orig, cf).tolist() == [1, 4, 0]
    # c: x→y moves two one-hot columns by 1 → √2; second: 0.5² + 0.25² + 2 + 1
    np.testing.assert_allclose(l2_distance(ENCODER, orig, cf), [math.sqrt(2), math.sqrt(3.3125), 0.0])


def test_violations_count_each_broken_counterfactual_once():
    orig, cf = frames(
        {"c": "y"},                                 # fine
        {"e": 0.7},                                 # immutable changed
        {"b": 1},                                   # against the direction (increase only)
        {"b": 2.5},                                 # not a whole number
        {"a": 11.0},                                # outside the range
        {"a": 6.0, "b": 3, "c": "z", "d": True},    # 4 changes > m = 3
        {"e": 0.9, "b": 1},                         # two problems, still one output
    )
    flags = violation_flags(SCHEMA, orig, cf, max_changes=3)
    assert flags.tolist() == [False, True, True, True, True, True, True]
    assert count_violations(SCHEMA, orig, cf, max_changes=3) == 6
    assert count_violations(SCHEMA, orig, cf, max_changes=None) == 5
    kinds = violation_kinds(SCHEMA, orig, cf, max_changes=3)
    assert kinds == {"immutable feature changed": 2, "decreased but may only increase": 2,
                     "not a whole number": 1, "outside its range": 1, "more than 3 features changed": 1}


def test_redundancy_counts_single_resets_that_stay_valid():
    orig, cf = frames(
        {"d": True},                        # 0.5 + 1 − 0.9 > 0; reset d → invalid: minimal
        {"a": 10.0, "d": True},             # reset a → 0.6 > 0, reset d → 0.1 > 0: both redundant
        {"a": 10.0, "d": True, "c": "y"},   # c never matters: all three redundant
        {"a": 10.0, "c": "z"},              # 1.0 − 0.9 > 0; reset a → invalid, reset c → valid
    )
    targets = np.ones(4, dtype=int)
    assert redundancy(ENCODER, proba, orig, cf, targets).tolist() == [0, 2, 3, 1]


def test_ynn_share_of_neighbours_the_model_puts_in_the_target_class():
    train = np.arange(10, dtype=float)[:, None]
    pred = np.array([0] * 5 + [1] * 5)
    queries = np.array([[6.9], [4.6], [4.6]])
    # 6.9 → 5,6,7,8,9 (all class 1); 4.6 → 3,4,5,6,7 (two of class 0, three of class 1)
    np.testing.assert_allclose(ynn_scores(train, pred, queries, np.array([1, 1, 0])), [1.0, 0.6, 0.4])


def test_lof_is_target_class_novelty_lof():
    rng = np.random.default_rng(0)
    train = np.vstack([rng.normal(0.2, 0.05, (40, 2)), rng.normal(0.8, 0.05, (40, 2))])
    labels = np.repeat([0, 1], 40)
    queries = np.array([[0.8, 0.8], [0.2, 0.2], [0.2, 0.2]])
    targets = np.array([1, 1, 0])
    scores = lof_scores(train, labels, queries, targets)
    ref = LocalOutlierFactor(n_neighbors=30, novelty=True).fit(train[labels == 1])
    np.testing.assert_allclose(scores[:2], -ref.score_samples(queries[:2]))
    assert scores[0] < 1.5 < scores[1]  # an inlier of class 1 vs a point far from class 1
    assert scores[2] < 1.5              # the same point is an inlier of class 0
    # fewer than 31 points: n_neighbors = n − 1
    small = lof_scores(train[:10], np.zeros(10, int), queries[:1], np.array([0]))
    np.testing.assert_allclose(small, -LocalOutlierFactor(n_neighbors=9, novelty=True).fit(train[:10]).score_samples(queries[:1]))


def test_validity_counts_missing_counterfactuals_as_invalid():
    assert validity(np.array([True, True, False, True]), np.array([True, False, True, True])) == 0.5
    assert throughput(50, 2.0) == 25.0


def test_summarise_end_to_end():
    orig, cf = frames({"d": True}, {"a": 10.0, "d": True}, {"a": 6.0}, {"e": 0.7})
    cf = cf.astype(object)
    cf.loc[3] = np.nan  # the method returned nothing for row 3
    rng = np.random.default_rng(1)
    train = pd.DataFrame({"a": rng.uniform(0, 10, 60), "b": rng.integers(0, 5, 60), "c": rng.choice(["x", "y", "z"], 60),
                          "d": rng.random(60) < 0.5, "e": rng.random(60)})
    train_enc = ENCODER.encode(train)
    train_labels = proba(train_enc).argmax(1)
    targets = np.ones(4, dtype=int)
    out = summarise(SCHEMA, proba, orig, cf, targets, 3, train_encoded=train_enc, train_labels=train_labels, seconds=2.0)
    assert out["n"] == 4 and out["found"] == 3
    assert out["validity"] == 0.5  # rows 0, 1 valid; row 2 (0.6 − 0.9 < 0) invalid; row 3 missing
    assert out["l0_mean"] == pytest.approx((1 + 2 + 1) / 3)
    assert out["l0_std"] == pytest.approx(np.std([1, 2, 1]))
    assert out["l2_mean"] == pytest.approx((1 + math.hypot(0.5, 1) + 0.1) / 3)
    assert out["redundancy_mean"] == pytest.approx((0 + 2) / 2)  # over the valid rows only
    assert out["violations"] == 0
    assert out["per_second"] == 2.0 and out["seconds"] == 2.0
    assert 0 <= out["ynn_mean"] <= 1 and out["lof_mean"] > 0
    for key in ("validity", "l0_mean", "l0_std", "l2_mean", "l2_std", "lof_mean", "lof_std", "ynn_mean",
                "redundancy_mean", "cost_mean", "violations", "n"):
        assert key in out
    # an unknown level is a violation and gets no distances, but does not crash the evaluation
    bad = cf.copy()
    bad.loc[2, "c"] = "w"
    ev = Evaluator(SCHEMA, proba, train_enc, train_labels)
    rows = ev.evaluate(orig, bad, targets, 3)
    assert rows.violated.tolist() == [False, False, True, False]
    assert np.isnan(rows.l2[2]) and not rows.valid[2]


@settings(max_examples=40, deadline=None)
@given(n=st.integers(4, 60), d=st.integers(1, 6), k=st.integers(1, 30), q=st.integers(1, 25),
       dup=st.booleans(), seed=st.integers(0, 2**16))
def test_novelty_lof_equals_scikit_learn(n, d, k, q, dup, seed):
    """The numpy LOF scorer gives scikit-learn's ``score_samples`` (duplicates and training points
    included; k above n − 1 is capped as scikit-learn does)."""
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(n, d))
    if dup:
        points[1] = points[0]
    model = LocalOutlierFactor(n_neighbors=min(k, n - 1), novelty=True).fit(points)
    queries = np.concatenate([rng.normal(size=(q, d)) * 2.0, points[:3]])
    ours = NoveltyLOF(points, k)
    np.testing.assert_allclose(ours.score_samples(queries), model.score_samples(queries), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ours.lof(queries), -model.score_samples(queries), rtol=1e-9, atol=1e-9)
    # the training points' k-distances and lrds are scikit-learn's fitted ones
    np.testing.assert_allclose(ours.kdist, model._distances_fit_X_[:, model.n_neighbors_ - 1], rtol=1e-12)
    np.testing.assert_allclose(ours.lrd, model._lrd, rtol=1e-9)


def test_novelty_lof_of_high_dimensional_images_and_bad_input():
    """The vision setting (k = 50, 64-pixel images): the Gram pre-selection picks the true neighbours."""
    from recourse.vision.counterfactual import lof_scores as image_lof

    rng = np.random.default_rng(3)
    train = rng.random((300, 1, 8, 8))
    labels = rng.integers(0, 2, 300)
    points = rng.random((20, 1, 8, 8))
    classes = rng.integers(0, 2, 20)
    got = image_lof(train, labels, points, classes)
    for c in (0, 1):
        ref = LocalOutlierFactor(n_neighbors=50, novelty=True).fit(train[labels == c].reshape(-1, 64))
        np.testing.assert_allclose(got[classes == c], -ref.score_samples(points[classes == c].reshape(-1, 64)),
                                   rtol=1e-9)
    with pytest.raises(ValueError, match="N >= 2"):
        NoveltyLOF(np.zeros((1, 3)), 5)
    with pytest.raises(ValueError, match="features"):
        NoveltyLOF(np.zeros((4, 3)), 2).lof(np.zeros((1, 2)))
