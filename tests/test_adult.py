"""The Adult data set (census income, shipped under datasets/adult): its rows fit the schema, the
encoding is wide (many one-hot columns), and a logistic bundle gives verified, admissible answers."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recourse.constraints import violations
from recourse.data import DATASETS, dataset_schema, load_dataset
from recourse.encoding import TabularEncoder, complete_schema


@pytest.fixture(scope="module")
def adult():
    return load_dataset("adult")


def test_adult_is_registered():
    assert "adult" in DATASETS
    assert dataset_schema("adult").name == "adult"


def test_adult_rows_fit_the_schema(adult):
    schema = adult.schema
    assert len(adult.frame) == len(adult.labels) == 6000
    assert list(adult.frame.columns) == schema.names
    assert "fnlwgt" not in adult.frame.columns and "education_num" not in adult.frame.columns
    records = schema.validate_records(adult.frame.to_dict(orient="records"))  # raises, naming row and field
    assert len(records) == 6000
    assert set(adult.labels) == {"<=50K", ">50K"} == set(schema.target.classes)
    assert schema.target.favourable == ">50K"
    assert 0.2 < np.mean(adult.labels == ">50K") < 0.3  # about a quarter, as in the source
    train, y_train, test, y_test = adult.split()
    assert (len(train), len(test)) == (5000, 1000) and len(y_train) == 5000 and len(y_test) == 1000


def test_adult_encoding_is_wide(adult):
    encoder = TabularEncoder(complete_schema(adult.schema, adult.frame))
    assert encoder.n_columns >= 50
    assert encoder.n_columns == 88  # 5 numeric/ordinal columns + 83 one-hot columns (sex: 2 levels)


def test_adult_schema_documents_every_feature(adult):
    schema = adult.schema
    assert all(f.note for f in schema.features)
    immutable = {f.name for f in schema.features if f.immutable}
    assert immutable == {"age", "sex", "race", "native_country", "marital_status", "relationship"}
    assert {f.name for f in schema.features if not f.actionable} == {"capital_gain", "capital_loss"}
    workclass = schema.feature("workclass")
    assert not any({"Without-pay", "Never-worked"} & set(to) for to in workclass.transitions.values())
    assert schema.feature("occupation").cost_weight >= 2
    assert schema.feature("education").direction == "increase"


@pytest.mark.slow
def test_logistic_bundle_explains_denied_applicants(adult, tmp_path):
    from recourse.bundle import DEFAULT_MAX_CHANGES, build_bundle

    train, y_train, test, y_test = adult.split()
    # as build_dataset_bundle("adult", model="logistic") does, with the default density (KDE) only, to save time
    bundle = build_bundle(adult.schema, train, y_train, tmp_path / "adult", model="logistic", densities=["kde"],
                          test=(test, y_test), max_changes=DEFAULT_MAX_CHANGES["adult"], dataset="adult")
    training = bundle.metadata["training"]
    assert training["test_accuracy"] > training["test_majority"]
    engine = bundle.engine()
    rows = engine.validate(test)
    pred = engine.predict_proba(engine.encoder.encode(rows)).argmax(1)
    denied = rows.iloc[np.flatnonzero(pred == engine.classes.index("<=50K"))[:20]].reset_index(drop=True)
    assert len(denied) == 20
    answers = engine.explain(denied)
    favourable = engine.classes.index(">50K")
    found = [r for r in answers if r.found]
    assert found, "no denied applicant got recourse"
    for rec in answers:
        assert rec.status in ("recourse_found", "no_recourse_found")
        if not rec.found:
            assert rec.counterfactual is None and rec.message
    frame = pd.DataFrame([r.counterfactual for r in found], columns=engine.schema.names)
    orig = pd.DataFrame([r.applicant for r in found], columns=engine.schema.names)
    probs = engine.predict_proba(engine.encoder.encode(frame))
    assert (probs.argmax(1) == favourable).all()  # verified on the model
    assert violations(engine.schema, orig, frame, engine.config.max_changes) == [[]] * len(found)
    levels = engine.schema.feature("education").level_names
    for rec in found:
        for feat in engine.schema.features:
            if feat.immutable or not feat.actionable:
                assert rec.counterfactual[feat.name] == rec.applicant[feat.name], feat.name
        assert levels.index(rec.counterfactual["education"]) >= levels.index(rec.applicant["education"])
        assert len(rec.actions) <= 3
