"""Honest training figures: held-out accuracy beside the majority share, AUC and Brier; a model
that learned nothing is refused unless forced; the network size can be set."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import tiny_frame
from recourse.bundle import build_bundle, load_bundle
from recourse.errors import BundleError
from recourse.models import WEIGHT_DECAYS


def test_held_out_figures_and_a_set_network_size(tmp_path, tiny_schema):
    frame, labels = tiny_frame(300)
    bundle = build_bundle(tiny_schema, frame, labels, tmp_path / "b", model="mlp", model_options={"hidden": [8]})
    training = load_bundle(tmp_path / "b").metadata["training"]
    assert {"holdout_accuracy", "holdout_auc", "holdout_brier", "holdout_majority"} <= set(training)
    assert 0.5 <= training["holdout_auc"] <= 1.0 and 0.0 <= training["holdout_brier"] <= 2.0
    assert training["holdout_accuracy"] > training["holdout_majority"]
    recipe = bundle.metadata["recipe"]
    assert recipe["hidden"] == [8] and recipe["weight_decay"] in WEIGHT_DECAYS  # the decay chosen on validation rows
    widths = [m.out_features for m in bundle.classifier.module if hasattr(m, "out_features")]
    assert widths[0] == 8 and len(widths) == 2


def test_a_model_no_better_than_the_majority_class_is_refused_unless_forced(tmp_path, tiny_schema):
    frame, labels = tiny_frame(300)
    noise = np.random.default_rng(1).permutation(labels)  # labels unrelated to the features
    with pytest.raises(BundleError, match="no better than always answering the most frequent class.*force=True"):
        build_bundle(tiny_schema, frame, noise, tmp_path / "noise", model="logistic")
    assert not (tmp_path / "noise").exists() or not any((tmp_path / "noise").iterdir())
    forced = build_bundle(tiny_schema, frame, noise, tmp_path / "forced", model="logistic", force=True)
    assert forced.metadata["training"]["holdout_accuracy"] <= forced.metadata["training"]["holdout_majority"]


def test_recipe_options_are_checked(tmp_path, tiny_schema):
    frame, labels = tiny_frame(100)
    with pytest.raises(BundleError, match="model_options: the logistic recipe takes C, not hidden"):
        build_bundle(tiny_schema, frame, labels, tmp_path / "x", model="logistic", model_options={"hidden": [4]})
    with pytest.raises(BundleError, match="hidden must be one or more whole numbers"):
        build_bundle(tiny_schema, frame, labels, tmp_path / "y", model="mlp", model_options={"hidden": [0]})


def test_the_mlp_chooses_its_weight_decay_on_validation_rows(tmp_path, tiny_schema):
    """The choice is made once, on a stratified 20 % of the training rows, and reused by the
    refits (the family here): they carry the same recipe."""
    from recourse.models import choose_weight_decay

    frame, labels = tiny_frame(300)
    bundle = build_bundle(tiny_schema, frame, labels, tmp_path / "b", model="mlp", family=2)
    chosen = bundle.metadata["recipe"]["weight_decay"]
    x = bundle.engine().encoder.encode(frame)
    assert chosen == choose_weight_decay(x, labels, (20, 20), seed=0)
    assert choose_weight_decay(x[:50], labels[:50], (20, 20)) == 1e-3  # too few rows to validate on
