"""Tree ensembles exported to arrays: exact probabilities, safe round trip; surrogate and zeroth-order gradients."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.ensemble import (ExtraTreesClassifier, GradientBoostingClassifier, HistGradientBoostingClassifier,
                              RandomForestClassifier)

from recourse.surrogate import ZerothOrderClassifier, distill
from recourse.trees import TreeEnsemble, from_sklearn_trees, tree_classifier

ESTIMATORS = {
    "forest": lambda: RandomForestClassifier(25, random_state=0),
    "extra": lambda: ExtraTreesClassifier(15, random_state=0),
    "gbm": lambda: GradientBoostingClassifier(n_estimators=30, random_state=0),
    "hgb": lambda: HistGradientBoostingClassifier(max_iter=30, random_state=0),
}


def data(classes: int, n: int = 400, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 6))
    score = x[:, 0] + x[:, 1] * x[:, 2] - 0.5 * x[:, 3]
    y = np.digitize(score, np.quantile(score, np.linspace(0, 1, classes + 1)[1:-1]))
    return x, y


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
@pytest.mark.parametrize("classes", [2, 3])
def test_same_probabilities_as_scikit_learn(name, classes, tmp_path):
    x, y = data(classes)
    est = ESTIMATORS[name]().fit(x, y)
    clf = tree_classifier(est)
    test = np.random.default_rng(1).random((1500, 6))
    got = clf.predict_proba(torch.as_tensor(test, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(got, est.predict_proba(test), atol=1e-9)
    from_sklearn_trees(est).save(tmp_path)
    loaded = TreeEnsemble.load(tmp_path)
    with torch.no_grad():
        np.testing.assert_array_equal(loaded(torch.as_tensor(test)).numpy(), from_sklearn_trees(est)(torch.as_tensor(test)).numpy())


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(0, 1, allow_nan=False), min_size=6, max_size=6))
def test_float32_cast_keeps_splits_bit_exact(row):
    x, y = data(2)
    est = RandomForestClassifier(10, random_state=0).fit(x, y)
    clf = tree_classifier(est).to(dtype=torch.float32)
    row = np.asarray([row], dtype=np.float32)
    got = clf.predict_proba(torch.as_tensor(row)).double().numpy()
    np.testing.assert_allclose(got, est.predict_proba(row), atol=1e-6)


def test_tampered_arrays_are_rejected(tmp_path):
    x, y = data(2)
    model = from_sklearn_trees(GradientBoostingClassifier(n_estimators=5, random_state=0).fit(x, y))
    model.left[0, 0] = 10_000
    model.save(tmp_path)
    with pytest.raises(ValueError, match="out of range"):
        TreeEnsemble.load(tmp_path)


def test_unsupported_models_are_refused():
    from sklearn.linear_model import LogisticRegression

    x, y = data(2)
    with pytest.raises(TypeError, match="unsupported tree model"):
        from_sklearn_trees(LogisticRegression().fit(x, y))


@pytest.mark.slow
def test_distilled_surrogate_agrees_with_the_model():
    x, y = data(2, n=600)
    clf = tree_classifier(GradientBoostingClassifier(n_estimators=40, random_state=0).fit(x, y))
    surrogate, fidelity = distill(clf, x, [slice(i, i + 1) for i in range(6)], np.ones(6, bool), synthetic=3000, epochs=15)
    assert fidelity.train_agreement > 0.9 and fidelity.synthetic_agreement > 0.85
    y0 = torch.as_tensor(x[:5], dtype=torch.float32).requires_grad_(True)
    (grad,) = torch.autograd.grad(surrogate.logits(y0)[:, 1].sum(), y0)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_zeroth_order_gradient_matches_a_smooth_model():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)).double()
    from recourse.models import TorchClassifier

    real = TorchClassifier(net, output="logits")
    zo = ZerothOrderClassifier(real, directions=4000, sigma=1e-3)
    x = torch.rand(3, 4, dtype=torch.float64, requires_grad=True)
    (estimate,) = torch.autograd.grad(zo.logits(x)[:, 1].sum(), x)
    x2 = x.detach().requires_grad_(True)
    (exact,) = torch.autograd.grad(real.logits(x2)[:, 1].sum(), x2)
    cosine = torch.nn.functional.cosine_similarity(estimate, exact, dim=1)
    assert (cosine > 0.95).all(), cosine
    assert zo.queries == 2 * 4000 * 3


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["gbm", "forest"])
def test_tree_bundle_answers_are_verified_on_the_real_model(kind, tiny_schema, tmp_path):
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier

    from conftest import tiny_frame
    from recourse.bundle import build_bundle, load_bundle
    from recourse.encoding import TabularEncoder, complete_schema

    frame, labels = tiny_frame(300)
    schema = complete_schema(tiny_schema, frame)
    x = TabularEncoder(schema).encode(frame)
    estimator = (GradientBoostingClassifier(n_estimators=40, random_state=0) if kind == "gbm"
                 else RandomForestClassifier(40, min_samples_leaf=3, random_state=0)).fit(x, labels)
    build_bundle(tiny_schema, frame, labels, tmp_path / kind, model=estimator, densities=("gmm",))
    bundle = load_bundle(tmp_path / kind)
    assert bundle.verifier is not None and bundle.metadata["surrogate"]["train_agreement"] > 0.8
    engine = bundle.engine()
    denied = frame[estimator.predict(x) == 0].head(25)
    results = engine.explain(denied)
    found = [r for r in results if r.found]
    assert len(found) >= 0.9 * len(results)
    encoder = TabularEncoder(bundle.schema)
    cf = encoder.encode(__import__("pandas").DataFrame([r.counterfactual for r in found], columns=bundle.schema.names))
    assert (estimator.predict(cf) == 1).all()
    assert all(r.counterfactual["region"] == r.applicant["region"] for r in found)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 300))
def test_leaves_are_scikit_learns_leaves(seed, n):
    """The level-by-level traversal (with finished pairs leaving the batch) reaches, for every row
    and tree, the leaf scikit-learn's ``apply`` reaches."""
    x, y = data(2)
    est = RandomForestClassifier(15, max_depth=None, random_state=0).fit(x, y)
    model = from_sklearn_trees(est)
    test = np.random.default_rng(seed).random((n, 6))
    flat = model.leaves(torch.as_tensor(test)).numpy()
    per_tree = flat - np.arange(model.n_trees)[None, :] * model.feature.shape[1]
    np.testing.assert_array_equal(per_tree, est.apply(test.astype(np.float32)))
