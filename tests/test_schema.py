"""Tests for recourse.schema: record validation (every error names its field) and schema-file errors."""
from __future__ import annotations

import copy
import json
import math

import pytest

from recourse.errors import FieldError, RecordValidationError, SchemaError
from recourse.schema import FeatureSchema

SCHEMA = {
    "name": "toy",
    "target": {"name": "y", "classes": [0, 1], "favourable": 1},
    "features": [
        {"name": "age", "kind": "integer", "range": [18, 100], "unit": "years", "immutable": True},
        {"name": "income", "kind": "continuous", "range": [0, 5000]},
        {"name": "owner", "kind": "binary"},
        {"name": "phone", "kind": "binary", "levels": ["no", "yes"]},
        {"name": "purpose", "kind": "categorical", "levels": ["car", "house", "other"]},
        {"name": "savings", "kind": "ordinal", "levels": ["none", "low", "high"], "direction": "increase"},
    ],
}

GOOD = {"age": 30, "income": 1200.5, "owner": True, "phone": "yes", "purpose": "car", "savings": "low"}


@pytest.fixture(scope="module")
def schema() -> FeatureSchema:
    return FeatureSchema.from_dict(SCHEMA)


def _errors(schema: FeatureSchema, record) -> list[FieldError]:
    with pytest.raises(RecordValidationError) as info:
        schema.validate_record(record)
    errors = info.value.errors
    assert errors and all(isinstance(e, FieldError) for e in errors)
    return errors


def _only(schema: FeatureSchema, **changes) -> FieldError:
    """Validate GOOD with ``changes``; expect exactly one error and return it."""
    record = dict(GOOD, **changes)
    errors = _errors(schema, record)
    assert len(errors) == 1, errors
    return errors[0]


# ---------------------------------------------------------------------- good records
def test_valid_record_is_normalised(schema):
    out = schema.validate_record(dict(GOOD, age=30.0, income=7, owner=1, phone="no"))
    assert out == {"age": 30, "income": 7.0, "owner": True, "phone": False, "purpose": "car", "savings": "low"}
    assert type(out["age"]) is int
    assert type(out["income"]) is float
    assert out["owner"] is True and out["phone"] is False


def test_range_ends_are_allowed(schema):
    assert schema.validate_record(dict(GOOD, age=18, income=5000))["age"] == 18
    assert schema.validate_record(dict(GOOD, age=100, income=0))["income"] == 0.0


# ---------------------------------------------------------------------- one problem per test
def test_unknown_feature(schema):
    err = _only(schema, salary=10)
    assert err.field == "salary"
    assert "unknown feature" in err.message
    assert "age" in err.message  # lists the known features


def test_missing_feature(schema):
    record = dict(GOOD)
    del record["income"]
    [err] = _errors(schema, record)
    assert err.field == "income"
    assert "missing" in err.message


def test_string_for_number(schema):
    err = _only(schema, income="1200")
    assert err.field == "income"
    assert "wrong type" in err.message and "number" in err.message
    assert '"1200"' in err.message


def test_number_for_category(schema):
    err = _only(schema, purpose=2)
    assert err.field == "purpose"
    assert "wrong type" in err.message and "category" in err.message


def test_number_for_ordinal(schema):
    err = _only(schema, savings=1)
    assert err.field == "savings"
    assert "wrong type" in err.message


def test_bool_for_integer(schema):
    err = _only(schema, age=True)
    assert err.field == "age"
    assert "wrong type" in err.message and "number" in err.message
    assert "true" in err.message


def test_bool_for_continuous(schema):
    err = _only(schema, income=False)
    assert err.field == "income"
    assert "wrong type" in err.message


def test_none_for_number(schema):
    err = _only(schema, income=None)
    assert err.field == "income"
    assert "wrong type" in err.message and "null" in err.message


def test_nan(schema):
    err = _only(schema, income=float("nan"))
    assert err.field == "income"
    assert "finite" in err.message and "nan" in err.message


def test_nan_integer(schema):
    err = _only(schema, age=math.nan)
    assert err.field == "age"
    assert "finite" in err.message


def test_positive_infinity(schema):
    err = _only(schema, income=float("inf"))
    assert err.field == "income"
    assert "finite" in err.message and "inf" in err.message


def test_negative_infinity(schema):
    err = _only(schema, age=-math.inf)
    assert err.field == "age"
    assert "finite" in err.message


@pytest.mark.parametrize("field", ["age", "income"])
def test_huge_integer_is_a_field_error(schema, field):
    # json.loads("1" + "0" * 400) yields such an int, so API input can carry it.
    err = _only(schema, **{field: 10**400})
    assert err.field == field
    assert "outside the allowed range" in err.message or "finite" in err.message


@pytest.mark.parametrize("value", [17, 101, 1000])
def test_integer_outside_range(schema, value):
    err = _only(schema, age=value)
    assert err.field == "age"
    assert "outside the allowed range" in err.message
    assert "[18, 100]" in err.message and "years" in err.message
    assert str(value) in err.message


def test_continuous_outside_range(schema):
    err = _only(schema, income=-0.01)
    assert err.field == "income"
    assert "outside the allowed range" in err.message and "[0, 5000]" in err.message


def test_non_integral_integer(schema):
    err = _only(schema, age=30.5)
    assert err.field == "age"
    assert "whole number" in err.message and "30.5" in err.message


def test_unknown_category(schema):
    err = _only(schema, purpose="boat")
    assert err.field == "purpose"
    assert "unknown category" in err.message and "'boat'" in err.message
    assert "'car'" in err.message and "'house'" in err.message  # lists the choices


def test_unknown_ordinal_level(schema):
    err = _only(schema, savings="very high")
    assert err.field == "savings"
    assert "unknown category" in err.message and "'very high'" in err.message


@pytest.mark.parametrize("value", [2, -1, 0.5, "yes", "true", None])
def test_binary_without_levels_rejects(schema, value):
    err = _only(schema, owner=value)
    assert err.field == "owner"
    assert "wrong type" in err.message and "true or false" in err.message


def test_binary_with_levels_accepts_level_names_and_rejects_others(schema):
    assert schema.validate_record(dict(GOOD, phone="yes"))["phone"] is True
    assert schema.validate_record(dict(GOOD, phone="no"))["phone"] is False
    assert schema.validate_record(dict(GOOD, phone=0))["phone"] is False
    err = _only(schema, phone="maybe")
    assert err.field == "phone"
    assert "'no'" in err.message and "'yes'" in err.message


def test_record_not_an_object(schema):
    [err] = _errors(schema, ["age", 30])
    assert err.field == "record"
    assert "expected an object" in err.message and "an array" in err.message  # JSON type names


def test_all_errors_of_one_record_reported_together(schema):
    record = dict(GOOD, age=12, income="a lot", purpose="boat", extra=1)
    del record["savings"]
    errors = _errors(schema, record)
    fields = {e.field: e.message for e in errors}
    assert set(fields) == {"age", "income", "purpose", "extra", "savings"}
    assert "outside" in fields["age"]
    assert "wrong type" in fields["income"]
    assert "unknown category" in fields["purpose"]
    assert "unknown feature" in fields["extra"]
    assert "missing" in fields["savings"]


def test_error_string_names_field_and_problem(schema):
    with pytest.raises(RecordValidationError) as info:
        schema.validate_record(dict(GOOD, age=200))
    text = str(info.value)
    assert "age:" in text and "outside the allowed range" in text
    assert info.value.errors[0].to_dict() == {"field": "age", "message": info.value.errors[0].message}
    assert isinstance(info.value, ValueError)


# ---------------------------------------------------------------------- batches
def test_batch_errors_are_row_prefixed_and_all_reported(schema):
    rows = [dict(GOOD) for _ in range(5)]
    rows[1]["purpose"] = "boat"
    rows[3]["age"] = 150
    rows[3]["income"] = math.inf
    del rows[4]["owner"]
    with pytest.raises(RecordValidationError) as info:
        schema.validate_records(rows)
    fields = {e.field: e.message for e in info.value.errors}
    assert set(fields) == {"1.purpose", "3.age", "3.income", "4.owner"}
    assert "unknown category" in fields["1.purpose"]
    assert "outside the allowed range" in fields["3.age"]
    assert "finite" in fields["3.income"]
    assert "missing" in fields["4.owner"]


def test_batch_non_object_row_named_by_index(schema):
    with pytest.raises(RecordValidationError) as info:
        schema.validate_records([dict(GOOD), "oops", dict(GOOD, extra=2)])
    fields = {e.field: e.message for e in info.value.errors}
    assert set(fields) == {"1", "2.extra"}
    assert "expected an object" in fields["1"] and "str" in fields["1"]


def test_batch_must_be_a_list(schema):
    with pytest.raises(RecordValidationError) as info:
        schema.validate_records(dict(GOOD))
    [err] = info.value.errors
    assert err.field == "records" and "list" in err.message


def test_batch_valid_rows_are_normalised(schema):
    out = schema.validate_records([dict(GOOD), dict(GOOD, age=45.0, owner=0)])
    assert len(out) == 2
    assert out[1]["age"] == 45 and type(out[1]["age"]) is int and out[1]["owner"] is False


# ---------------------------------------------------------------------- schema files
def _schema_error(data) -> str:
    with pytest.raises(SchemaError) as info:
        FeatureSchema.from_dict(data)
    return str(info.value)


def _with_feature(feature: dict) -> dict:
    data = copy.deepcopy(SCHEMA)
    data["features"].append(feature)
    return data


def test_duplicate_feature_names():
    data = _with_feature({"name": "income", "kind": "integer", "range": [0, 10]})
    text = _schema_error(data)
    assert "duplicate feature names" in text and "income" in text


def test_categorical_without_levels():
    text = _schema_error(_with_feature({"name": "colour", "kind": "categorical"}))
    assert "colour" in text and "at least 2 levels" in text


def test_categorical_with_one_level():
    text = _schema_error(_with_feature({"name": "colour", "kind": "categorical", "levels": ["red"]}))
    assert "colour" in text and "at least 2 levels" in text


def test_ordinal_duplicate_levels():
    text = _schema_error(_with_feature({"name": "grade", "kind": "ordinal", "levels": ["a", "b", "a"]}))
    assert "grade" in text and "duplicate level" in text


@pytest.mark.parametrize("rng", [[5, 5], [10, 1]])
def test_range_low_not_below_high(rng):
    text = _schema_error(_with_feature({"name": "height", "kind": "continuous", "range": rng}))
    assert "height" in text and "low < high" in text


def test_non_finite_range():
    text = _schema_error(_with_feature({"name": "height", "kind": "continuous", "range": [0, float("inf")]}))
    assert "height" in text and "finite" in text


def test_integer_with_fractional_range():
    text = _schema_error(_with_feature({"name": "kids", "kind": "integer", "range": [0, 2.5]}))
    assert "kids" in text and "whole-number range" in text


def test_direction_on_categorical():
    text = _schema_error(_with_feature({"name": "colour", "kind": "categorical", "levels": ["r", "g"],
                                         "direction": "increase"}))
    assert "colour" in text and "direction must be 'any'" in text


def test_range_on_categorical():
    text = _schema_error(_with_feature({"name": "colour", "kind": "categorical", "levels": ["r", "g"],
                                         "range": [0, 1]}))
    assert "colour" in text and "not a range" in text


def test_unknown_kind_and_unknown_key():
    text = _schema_error(_with_feature({"name": "colour", "kind": "colourful"}))
    assert "features.6.kind" in text
    text = _schema_error(_with_feature({"name": "colour", "kind": "continuous", "colour": 1}))
    assert "features.6" in text and "colour" in text


def test_favourable_not_in_classes():
    data = copy.deepcopy(SCHEMA)
    data["target"]["favourable"] = 7
    text = _schema_error(data)
    assert "favourable" in text and "7" in text


def test_empty_feature_list():
    data = copy.deepcopy(SCHEMA)
    data["features"] = []
    assert "at least one feature" in _schema_error(data)


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(SchemaError, match="missing.json: no such file"):
        FeatureSchema.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SchemaError, match="not valid JSON"):
        FeatureSchema.load(bad)
    invalid = tmp_path / "invalid.json"
    invalid.write_text(json.dumps(_with_feature({"name": "colour", "kind": "categorical"})))
    with pytest.raises(SchemaError) as info:
        FeatureSchema.load(invalid)
    assert "invalid.json" in str(info.value) and "colour" in str(info.value)


def test_save_load_round_trip(tmp_path, schema):
    path = tmp_path / "schema.json"
    schema.save(path)
    again = FeatureSchema.load(path)
    assert again == schema


# ---------------------------------------------------------------------- the German schema
def test_german_schema_loads_with_immutables(german_schema):
    assert german_schema.name == "german_credit"
    assert len(german_schema.features) == 20
    for name in ("status_sex", "foreign_worker", "credit_history"):
        assert german_schema.feature(name).immutable, name
    age = german_schema.feature("age")  # the clock: never set, it only grows by waiting (at most 5 years)
    assert not age.immutable and age.direction == "increase" and age.max_change == 5
    assert [(e.cause, e.effect) for e in german_schema.consequences] == [("age", "present_residence_since")]
    assert not german_schema.feature("duration").immutable
    assert german_schema.feature("savings").direction == "increase"
    assert german_schema.target.favourable == 1 and german_schema.target.label_of(2) == "denied"
    with pytest.raises(KeyError, match="unknown feature 'salary'"):
        german_schema.feature("salary")


def test_german_data_rows_validate(german_schema, german_dataset):
    rows = german_dataset.frame.to_dict(orient="records")
    out = german_schema.validate_records(rows)
    assert len(out) == 1000
    assert out[0].keys() == set(german_schema.names)


# ---------------------------------------------------------------------- numbers the solver can use, names, labels
@pytest.mark.parametrize("feature, message", [
    ({"name": "height", "kind": "continuous", "range": [-1e308, 1e308]}, "range ends must lie within ±1e+12"),
    ({"name": "height", "kind": "continuous", "range": [0, 2e12]}, "range ends must lie within ±1e+12"),
    ({"name": "flag", "kind": "binary", "range": [0, 1]}, "a binary feature is true/false and takes no range"),
    ({"name": "  ", "kind": "continuous", "range": [0, 1]}, "a feature name must not be blank"),
    ({"name": "height", "kind": "continuous", "range": [0, 1], "cost_weight": 1e300}, "features.6.cost_weight"),
    ({"name": "height", "kind": "continuous", "range": [0, 1], "cost_scale": 1e-300}, "features.6.cost_scale"),
    ({"name": "height", "kind": "continuous", "range": [0, 1], "max_change": float("inf")}, "features.6.max_change"),
])
def test_schema_numbers_and_names_are_checked(feature, message):
    text = _schema_error(_with_feature(feature))
    assert message in text, text


def test_empty_feature_name():
    assert "features.6.name" in _schema_error(_with_feature({"name": "", "kind": "continuous", "range": [0, 1]}))


@pytest.mark.parametrize("target, message", [
    ({"name": "y", "classes": [0, 1], "favourable": 1, "labels": {"2": "maybe"}}, "target.labels: '2' is not a class"),
    ({"name": "y", "classes": [1], "favourable": 1}, "at least 2 different values"),
    ({"name": "y", "classes": [1, "1"], "favourable": 1}, "at least 2 different values"),
    ({"name": " ", "classes": [0, 1], "favourable": 1}, "target: the name must not be blank"),
])
def test_target_checks(target, message):
    data = copy.deepcopy(SCHEMA)
    data["target"] = target
    assert message in _schema_error(data)


def test_widest_allowed_range_validates_without_overflow(schema):
    data = _with_feature({"name": "height", "kind": "continuous", "range": [-1e12, 1e12]})
    wide = FeatureSchema.from_dict(data)
    assert wide.validate_record(dict(GOOD, height=1e12))["height"] == 1e12


# ---------------------------------------------------------------------- message size
def test_known_features_are_listed_once(schema):
    record = dict(GOOD, **{f"extra_{i}": i for i in range(1000)})
    errors = _errors(schema, record)
    assert len(errors) == 1000 and all(e.message.startswith("unknown feature") for e in errors)
    assert sum("known features:" in e.message for e in errors) == 1
    assert sum(len(e.message) for e in errors) < 20_000


def test_long_input_values_are_shortened(schema):
    err = _only(schema, purpose="x" * 3_000_000)
    assert "unknown category 'xxx" in err.message and len(err.message) < 300
    err = _only(schema, income="y" * 100_000)
    assert "wrong type" in err.message and len(err.message) < 200
    err = _only(schema, income=10 ** 200)
    assert len(err.message) < 200


def test_null_and_other_json_types_are_named_as_in_json(schema):
    with pytest.raises(RecordValidationError) as info:
        schema.validate_records([None, 3])
    assert [e.message for e in info.value.errors] == ["expected an object of feature values, got null",
                                                      "expected an object of feature values, got a number"]


# ---------------------------------------------------------------------- m and JSON files
def test_check_max_changes(schema):
    assert schema.check_max_changes(6) == 6 and schema.check_max_changes(1) == 1
    for bad in (0, 7, 2**63, True, 2.5):
        with pytest.raises(ValueError, match="from 1 to 6"):
            schema.check_max_changes(bad)


@pytest.mark.parametrize("content, message", [("[" * 100_000, "nested too deeply"), ("1" * 5000, "digits"),
                                              ("{", r"not valid JSON \(line 1")])
def test_unusable_json_files_name_the_file(tmp_path, content, message):
    path = tmp_path / "s.json"
    path.write_text(content)
    with pytest.raises(SchemaError, match=message) as info:
        FeatureSchema.load(path)
    assert str(path) in str(info.value)


def test_schema_path_that_is_a_directory(tmp_path):
    with pytest.raises(SchemaError, match="is a directory"):
        FeatureSchema.load(tmp_path)
