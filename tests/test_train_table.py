"""`recourse train --data`: the table is checked up front (rows, cells, classes) with messages naming the row and column."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from conftest import TINY_SCHEMA, tiny_frame
from recourse.data import MIN_CLASS_ROWS, DataInputError, coerce_table, format_row_errors, read_training_table
from recourse.errors import FieldError
from recourse.schema import FeatureSchema

runner = CliRunner()


@pytest.fixture()
def table() -> pd.DataFrame:
    frame, labels = tiny_frame(120)
    frame["y"] = labels
    return frame


def _train(tmp_path: Path, frame: pd.DataFrame, schema: dict = TINY_SCHEMA):
    (tmp_path / "t.csv").write_text(frame.to_csv(index=False))
    (tmp_path / "s.json").write_text(json.dumps(schema))
    return runner.invoke(app, ["train", "--data", str(tmp_path / "t.csv"), "--schema", str(tmp_path / "s.json"),
                               "--out", str(tmp_path / "out"), "--model", "logistic"])


def _refused(result, *messages: str) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    for m in messages:
        assert m in result.output, (m, result.output)
    return result.output


# ---------------------------------------------------------------------- classes and rows
@pytest.mark.parametrize("edit, messages", [
    (lambda f: f.head(0), ["no data rows (the table has only a header)"]),
    (lambda f: f.assign(y=1), ["class 0 (denied) has 0 rows", f"at least {MIN_CLASS_ROWS} rows"]),
    (lambda f: f.head(3).assign(y=[0, 0, 1]), ["class 0 (denied) has 2 rows, class 1 (approved) has 1 row"]),
])
def test_too_few_rows_of_a_class(tmp_path, table, edit, messages):
    out = _refused(_train(tmp_path, edit(table)), "--data", *messages)
    assert "--target" in out or "no data rows" in out
    assert not (tmp_path / "out").exists()


def test_a_class_of_the_schema_with_no_rows(tmp_path, table):
    schema = copy.deepcopy(TINY_SCHEMA)
    schema["target"]["classes"] = [0, 1, 2]
    _refused(_train(tmp_path, table, schema), "the target 'y' (--target)", "class 2 has 0 rows")


def test_target_values_that_are_no_class_are_named_by_row(tmp_path, table):
    table["y"] = table["y"].astype(object)
    table.loc[3, "y"], table.loc[7, "y"] = 5, None
    _refused(_train(tmp_path, table), "row 4, column 'y': 5 is not a class", "row 8, column 'y': a missing value is not a class")


def test_float_labels_name_integer_classes(tmp_path, table):
    table["y"] = table["y"].astype(float)  # as pandas reads a label column with an empty cell
    result = _train(tmp_path, table)
    assert result.exit_code == 0, result.output


# ---------------------------------------------------------------------- one bad cell
def test_one_bad_number_names_only_its_cell_with_a_one_based_row(tmp_path, table):
    table["income"] = table["income"].astype(object)
    table.loc[5, "income"] = "lots"
    out = _refused(_train(tmp_path, table), "row 6, column 'income': wrong type: expected a number, got \"lots\"",
                   "rows are numbered from 1")
    assert out.count("  - row") == 1


def test_one_bad_binary_value_names_only_its_cell(tmp_path, table):
    table["owner"] = table["owner"].astype(object)
    table.loc[9, "owner"] = "maybe"
    out = _refused(_train(tmp_path, table), "row 10, column 'owner': wrong type")
    assert out.count("  - row") == 1


def test_binary_level_names_are_accepted_as_in_explain_and_audit(tmp_path, table):
    schema = copy.deepcopy(TINY_SCHEMA)
    schema["features"][2]["levels"] = ["no", "yes"]
    table["owner"] = table["owner"].map({True: "yes", False: "no"})
    result = _train(tmp_path, table, schema)
    assert result.exit_code == 0, result.output


def test_coerce_table_converts_cell_by_cell(tiny_schema):
    raw = pd.DataFrame({"income": ["1.5", "lots", None], "years": ["3", "4", "x"], "owner": ["True", "false", "1"],
                        "region": ["north", "south", "east"], "grade": [1.0, 2.0, np.nan]})
    out = coerce_table(raw, tiny_schema)
    assert out["income"].tolist()[:2] == [1.5, "lots"] and out["years"].tolist() == [3, 4, "x"]
    assert out["owner"].tolist() == [True, False, True]
    assert out["grade"].tolist()[:2] == ["1", "2"]


def test_row_errors_are_one_based_and_capped():
    errors = [FieldError(f"{i}.age", "bad") for i in range(25)]
    text = format_row_errors(errors, "pop.csv", offset=100)
    assert text.startswith("pop.csv: rows do not fit the schema:\n  - row 101, column 'age': bad")
    assert "row 120, column 'age'" in text and "row 121" not in text and "... and 5 more" in text


def test_read_training_table_library_errors(tmp_path, tiny_schema, table):
    with pytest.raises(DataInputError, match="no such file"):
        read_training_table(tmp_path / "none.csv", tiny_schema)
    (tmp_path / "t.csv").write_text(table.drop(columns=["years"]).to_csv(index=False))
    with pytest.raises(DataInputError, match=r"missing columns \['years'\]"):
        read_training_table(tmp_path / "t.csv", tiny_schema)
    (tmp_path / "t.csv").write_text(table.to_csv(index=False))
    frame, labels = read_training_table(tmp_path / "t.csv", FeatureSchema.from_dict(TINY_SCHEMA), "y")
    assert list(frame.columns) == tiny_schema.names and len(labels) == len(table) and set(labels) == {0, 1}
