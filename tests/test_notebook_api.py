"""Raw records in, probabilities out; answers as a DataFrame and as a notebook table."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from recourse import answers_frame

EXAMPLE = Path(__file__).resolve().parent.parent / "datasets/german_credit/examples/denied_applicant.json"


def test_predict_proba_takes_a_dict_a_list_a_frame_or_scaled_rows(german_engine, german_dataset):
    applicant = json.loads(EXAMPLE.read_text())
    one = german_engine.predict_proba(applicant)
    assert one.shape == (1, 2) and np.isclose(one.sum(), 1.0)
    frame = german_dataset.frame.head(5)
    many = german_engine.predict_proba(frame)
    assert many.shape == (5, 2)
    assert np.allclose(german_engine.predict_proba(frame.to_dict(orient="records")), many)
    assert np.allclose(german_engine.predict_proba(german_engine.encode(frame)), many)
    decisions, probabilities = german_engine.predict(frame)
    assert np.allclose(probabilities, many) and len(decisions) == 5


def test_the_torch_classifier_takes_one_unbatched_row(german_engine):
    clf = german_engine.classifier
    row = torch.zeros(clf.n_features, dtype=clf.dtype)
    assert torch.allclose(clf.predict_proba(row), clf.predict_proba(row[None, :]))


def test_answers_become_a_frame_and_an_answer_a_notebook_table(german_engine, german_dataset):
    answers = german_engine.explain(german_dataset.frame.head(6))
    frame = answers_frame(answers)
    assert isinstance(frame, pd.DataFrame) and len(frame) == 6
    assert list(frame.columns) == ["status", "decision", "probability", "new_decision", "new_probability", "changed",
                                   "actions", "l0", "cost", "message"]
    for answer, (_, row) in zip(answers, frame.iterrows()):
        assert row["status"] == answer.status and row["probability"] == answer.decision.probability
        assert row["changed"] == ", ".join(a.feature for a in answer.actions)
        if answer.found:
            assert row["cost"] == answer.metrics["cost"] and row["new_decision"] == answer.counterfactual_decision.label
        else:
            assert pd.isna(row["cost"])
    found = next(a for a in answers if a.found) if any(a.found for a in answers) else german_engine.explain(
        json.loads(EXAMPLE.read_text()))[0]
    html = found._repr_html_()
    assert html.startswith("<table") and "action 1" in html and "verified" in html
    assert found.actions[0].text.replace("'", "&#x27;") in html
