"""A bundle's classes: the schema's order labels the model's columns, whatever the order; an honest
held-out accuracy when no test set is given."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recourse.bundle import build_bundle
from recourse.errors import BundleError
from recourse.schema import FeatureSchema


def _data(n: int = 300):
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 1, n)
    return pd.DataFrame({"a": a}), np.where(a > 0.5, "yes", "no")


def _schema(classes: list[str]) -> FeatureSchema:
    return FeatureSchema.from_dict({"name": "o", "target": {"name": "y", "classes": classes, "favourable": "yes"},
                                    "features": [{"name": "a", "kind": "continuous", "range": [0, 1]}]})


@pytest.mark.parametrize("classes", [["no", "yes"], ["yes", "no"]])
@pytest.mark.parametrize("model", ["logistic", "mlp", "forest"])
def test_decisions_follow_the_data_whatever_the_schemas_class_order(tmp_path, classes, model):
    frame, labels = _data()
    bundle = build_bundle(_schema(classes), frame, labels, tmp_path / "b", model=model, densities=())
    decisions, probs = bundle.engine().predict([{"a": 0.95}, {"a": 0.05}])
    assert [d.value for d in decisions] == ["yes", "no"]
    assert bundle.metadata["training"]["accuracy"] > 0.9
    assert bundle.metadata["training"]["holdout_accuracy"] > 0.9 and bundle.metadata["training"]["holdout_rows"] == 60


def test_a_model_with_its_classes_in_another_order_is_refused(tmp_path):
    from sklearn.linear_model import LogisticRegression

    from recourse.encoding import TabularEncoder, complete_schema

    frame, labels = _data()
    schema = _schema(["yes", "no"])
    model = LogisticRegression().fit(TabularEncoder(complete_schema(schema, frame)).encode(frame), labels)  # ['no', 'yes']
    with pytest.raises(BundleError, match=r"orders its classes \['no', 'yes'\] but the schema's target lists \['yes', 'no'\]"):
        build_bundle(schema, frame, labels, tmp_path / "b", model=model, densities=())
    bundle = build_bundle(_schema(["no", "yes"]), frame, labels, tmp_path / "c", model=model, densities=())
    assert [d.value for d in bundle.engine().predict([{"a": 0.95}])[0]] == ["yes"]
