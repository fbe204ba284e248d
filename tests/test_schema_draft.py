"""`recourse schema infer`: a draft schema that `recourse train --data` accepts as it stands."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cli import app
from recourse.data import load_dataset
from recourse.schema import FeatureSchema
from recourse.schema_draft import RANGE_MARGIN, draft_feature, draft_schema


def run(args: list[str]):
    return CliRunner().invoke(app, args)


@pytest.mark.slow
def test_the_german_table_drafts_a_schema_that_trains_without_edits(tmp_path):
    data = load_dataset("german")
    table = data.frame.assign(credit=data.labels)
    table.to_csv(tmp_path / "german.csv", index=False)
    done = run(["schema", "infer", str(tmp_path / "german.csv"), "--target", "credit", "--out", str(tmp_path / "draft.json")])
    assert done.exit_code == 0, done.output
    draft = json.loads((tmp_path / "draft.json").read_text())
    kinds = {f["name"]: f["kind"] for f in draft["features"]}
    assert kinds["duration"] == "integer" and kinds["status"] == "categorical" and kinds["telephone"] == "binary"
    assert kinds["number_of_people_liable_for"] == "integer"  # two numbers stay numbers
    assert {f["name"] for f in draft["features"] if f.get("immutable")} == {"age", "status_sex", "foreign_worker"}
    assert draft["target"] == {"name": "credit", "classes": [1, 2], "favourable": 1}
    assert "favourable class is guessed" in done.output
    trained = run(["train", "--data", str(tmp_path / "german.csv"), "--schema", str(tmp_path / "draft.json"),
                   "--target", "credit", "--out", str(tmp_path / "bundle"), "--no-progress", "--json", "--model", "logistic"])
    assert trained.exit_code == 0, trained.output
    assert json.loads(trained.stdout)["training"]["rows"] == 1000
    # the default MLP (weight decay chosen on validation rows) trains on the draft too and beats the majority class
    mlp = run(["train", "--data", str(tmp_path / "german.csv"), "--schema", str(tmp_path / "draft.json"),
               "--target", "credit", "--out", str(tmp_path / "mlp"), "--no-progress", "--json"])
    assert mlp.exit_code == 0, mlp.output
    training = json.loads(mlp.stdout)["training"]
    assert training["holdout_accuracy"] > training["holdout_majority"]


def messy_table(n: int = 120, seed: int = 0) -> str:
    """Comma-plus-space separators, '?' and empty cells, free text, yes/no and a protected column."""
    rng = np.random.default_rng(seed)
    income = rng.normal(40_000, 9_000, n).round(2)
    rows = ["income, debt_ratio, sex, owns_home, comment, job, outcome"]
    for i in range(n):
        ratio = "?" if i % 17 == 3 else f"{rng.uniform(0, 1):.3f}"
        job = "" if i % 29 == 5 else rng.choice(["clerk", "nurse", "driver", "teacher"])
        comment = f"free text number {i} about the applicant"
        approved = int(income[i] > 40_000)
        rows.append(f"{income[i]}, {ratio}, {rng.choice(['female', 'male'])}, {rng.choice(['yes', 'no'])}, {comment}, "
                    f"{job}, {approved}")
    return "\n".join(rows) + "\n"


@pytest.mark.slow
def test_a_messy_table_drafts_a_schema_and_trains_with_the_documented_flags(tmp_path):
    (tmp_path / "messy.csv").write_text(messy_table())
    done = run(["schema", "infer", str(tmp_path / "messy.csv"), "--target", "outcome", "--out", str(tmp_path / "draft.json")])
    assert done.exit_code == 0, done.output
    draft = json.loads((tmp_path / "draft.json").read_text())
    features = {f["name"]: f for f in draft["features"]}
    assert "comment" not in features and "column 'comment' left out: free text" in done.output
    assert features["income"]["kind"] == "continuous" and features["income"]["precision"] == 2
    assert features["debt_ratio"]["kind"] == "continuous" and features["debt_ratio"]["range"][0] == 0.0
    assert features["owns_home"] == {**features["owns_home"], "kind": "binary", "levels": ["no", "yes"]}
    assert features["sex"]["immutable"] is True
    assert features["job"]["kind"] == "categorical" and set(features["job"]["levels"]) == {"clerk", "nurse", "driver", "teacher"}
    assert "column 'debt_ratio': 7 missing cells" in done.output and "column 'job': 4 missing cells" in done.output
    FeatureSchema.model_validate(draft)
    refused = run(["train", "--data", str(tmp_path / "messy.csv"), "--schema", str(tmp_path / "draft.json"),
                   "--target", "outcome", "--out", str(tmp_path / "b1"), "--no-progress"])
    assert refused.exit_code == 2 and "row 4" in refused.output  # the '?' cell, named by row
    trained = run(["train", "--data", str(tmp_path / "messy.csv"), "--schema", str(tmp_path / "draft.json"),
                   "--target", "outcome", "--out", str(tmp_path / "b2"), "--no-progress", "--na-value", "?", "--drop-missing"])
    assert trained.exit_code == 0, trained.output
    assert "note: 11 of 120 rows with a missing cell left out" in trained.output


def test_the_draft_never_overwrites_a_file_and_names_a_bad_target(tmp_path):
    (tmp_path / "t.csv").write_text("a,b\n1,x\n2,y\n3,x\n")
    (tmp_path / "exists.json").write_text("{}")
    done = run(["schema", "infer", str(tmp_path / "t.csv"), "--out", str(tmp_path / "exists.json")])
    assert done.exit_code == 2 and "already exists" in done.output
    done = run(["schema", "infer", str(tmp_path / "t.csv"), "--target", "nope"])
    assert done.exit_code == 2 and "`target`" in done.output or "--target" in done.output
    done = run(["schema", "infer", str(tmp_path / "missing.csv")])
    assert done.exit_code == 2 and "no such file" in done.output


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.floats(-1e6, 1e6, allow_nan=False).map(lambda v: round(v, 3)), min_size=3, max_size=40))
def test_a_drafted_range_holds_every_value_with_the_documented_margin(values):
    feature, _ = draft_feature("x", pd.Series(values))
    if feature is None or feature["kind"] == "binary":
        return
    low, high = feature["range"]
    lo, hi = min(values), max(values)
    span = hi - lo if hi > lo else max(abs(hi), 1.0)
    assert low <= lo and high >= hi
    unit = 1.0 if feature["kind"] == "integer" else 10.0 ** -feature["precision"]  # rounded outwards to it
    assert low >= lo - RANGE_MARGIN * span - unit - 1e-9 * abs(lo) and high <= hi + RANGE_MARGIN * span + unit + 1e-9 * abs(hi)
    if lo >= 0:
        assert low >= 0


def test_two_labels_become_a_binary_with_its_levels_and_numbers_stay_numbers():
    assert draft_feature("smoker", pd.Series(["no", "yes", "no"]))[0]["levels"] == ["no", "yes"]
    assert draft_feature("flag", pd.Series([True, False, True]))[0] == {**draft_feature("flag", pd.Series([True, False]))[0]}
    assert draft_feature("children", pd.Series([1, 2, 2]))[0]["kind"] == "integer"
    schema = draft_schema(pd.DataFrame({"age": [20, 30, 40], "y": ["a", "b", "a"]}), "y").schema
    assert schema["features"][0]["immutable"] is True and schema["target"]["favourable"] == "a"
