"""Bad command-line input exits 2 with a message naming the option or file and the problem (no traceback)."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from cli import app
from conftest import TINY_SCHEMA, tiny_frame

ROOT = Path(__file__).resolve().parent.parent
APPLICANT = ROOT / "datasets" / "german_credit" / "examples" / "denied_applicant.json"
runner = CliRunner()


def refused(args: list[str], *messages: str) -> str:
    """Run the command; it must exit 2 with every message in its output and no traceback."""
    result = runner.invoke(app, args)
    assert result.exit_code == 2, (args, result.output)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    for message in messages:
        assert message in result.output, (message, result.output)
    return result.output


# ---------------------------------------------------------------------- explain: --max-changes, the JSON file, --cost-weight
@pytest.mark.parametrize("value, message", [("0", "--max-changes: must be a whole number ≥ 1, got 0"),
                                            ("-3", "--max-changes: must be a whole number ≥ 1, got -3")])
def test_explain_max_changes_is_bounded(value, message):
    refused(["explain", str(APPLICANT), "--max-changes", value], message)


@pytest.mark.parametrize("value", ["20", "21", "1001", "9223372036854775808"])
def test_explain_max_changes_above_the_number_of_features_is_clipped(value):
    """The one rule (recourse.options): more changes than the 20 features means every feature."""
    result = runner.invoke(app, ["explain", str(APPLICANT), "--max-changes", value, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["max_changes"] == 20


@pytest.mark.parametrize("content, message", [
    ("[" * 100_000, "not usable JSON (nested too deeply)"),
    ("9" * 5000, "not usable JSON (a number with more than"),
    ("[]", "holds no applicants"),
    ("[null]", "0: expected an object of feature values, got null"),
    ("null", "expected an applicant object or a list of them, got null"),
    ("\"x\"", "got a string"),
])
def test_explain_unusable_json_files(tmp_path, content, message):
    path = tmp_path / "in.json"
    path.write_text(content)
    out = refused(["explain", str(path)], message)
    assert str(path) in out


def test_explain_file_that_is_a_directory(tmp_path):
    refused(["explain", str(tmp_path)], f"{tmp_path}: is a directory")


@pytest.mark.parametrize("weights, message", [
    (["status=1e300"], "--cost-weight status: must be a number from 1e-06 to 1e+06, got 1e+300"),
    (["status=1e-7"], "--cost-weight status: must be a number from 1e-06 to 1e+06"),
    (["status=nan"], "must be a number from"),
    (["status=0"], "must be a number from"),
    (["shoe_size=2"], "--cost-weight shoe_size: unknown feature"),
    (["status=2", "status=3"], "'status' is given more than once"),
    (["status"], "expected FEATURE=W"),
])
def test_cost_weights_out_of_range_or_repeated_are_refused(weights, message):
    args = ["explain", str(APPLICANT)]
    for w in weights:
        args += ["--cost-weight", w]
    refused(args, message)


def test_extreme_allowed_cost_weights_give_no_numeric_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        result = runner.invoke(app, ["explain", str(APPLICANT), "--cost-weight", "status=1e6",
                                     "--cost-weight", "duration=1e-6", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] in ("recourse_found", "no_recourse_found")


# ---------------------------------------------------------------------- --device
def test_bench_device_names_are_checked():
    refused(["bench", "scfe", "--device", "foo", "--n", "1"], "--device: 'foo' is not a torch device")
    refused(["bench", "engine", "--device", "foo"], "--device: 'foo' is not a torch device")
    if not torch.cuda.is_available():
        refused(["bench", "engine", "--device", "cuda"], "CUDA is not available")


# ---------------------------------------------------------------------- train: --schema, --out, --seed
@pytest.fixture(scope="module")
def table(tmp_path_factory) -> tuple[Path, Path]:
    """A small training table and its schema."""
    root = tmp_path_factory.mktemp("train-table")
    frame, labels = tiny_frame(120)
    frame["y"] = labels
    frame.to_csv(root / "table.csv", index=False)
    (root / "schema.json").write_text(json.dumps(TINY_SCHEMA))
    return root / "table.csv", root / "schema.json"


def _train(table: tuple[Path, Path], out: Path | str, *extra: str) -> list[str]:
    return ["train", "--data", str(table[0]), "--schema", str(table[1]), "--out", str(out), "--model", "logistic", *extra]


def test_train_bad_schema_paths(tmp_path, table):
    refused(["train", "--data", str(table[0]), "--schema", str(tmp_path), "--out", str(tmp_path / "o")],
            f"--schema {tmp_path}: is a directory")
    refused(["train", "--data", str(table[0]), "--schema", str(tmp_path / "no.json"), "--out", str(tmp_path / "o")],
            "no such file")
    assert not (tmp_path / "o").exists()


def test_train_bad_out_paths(tmp_path, table):
    a_file = tmp_path / "a-file"
    a_file.write_text("mine")
    refused(_train(table, a_file), "--out", "exists and is not a directory")
    refused(_train(table, a_file / "sub"), "--out: cannot create", "Not a directory")
    refused(_train(table, "/proc/recourse-test/x"), "--out: cannot create /proc/recourse-test/x")
    assert a_file.read_text() == "mine"


@pytest.mark.parametrize("seed", ["-1", "99999999999999999999", "4294967296"])
def test_train_seed_is_bounded(tmp_path, table, seed):
    refused(_train(table, tmp_path / "o", "--seed", seed), "--seed")
    assert not (tmp_path / "o").exists()


def test_train_out_that_is_not_a_bundle_is_left_alone(tmp_path, table):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "schema.json").write_text("my own file")
    refused(_train(table, out), "--out", "holds files that are not a bundle's")
    refused(["train", "german", "--out", str(out)], "holds files that are not a bundle's")
    assert (out / "schema.json").read_text() == "my own file" and len(list(out.iterdir())) == 1


def test_train_replaces_an_earlier_bundle(tmp_path, table):
    out = tmp_path / "bundle"
    for seed in ("1", "4294967295"):  # the largest seed is accepted
        result = runner.invoke(app, _train(table, out, "--seed", seed))
        assert result.exit_code == 0, result.output
    assert json.loads((out / "metadata.json").read_text())["training"]["seed"] == 4294967295


def test_train_max_changes_is_checked_against_the_schema(tmp_path, table):
    refused(_train(table, tmp_path / "o", "--max-changes", "6"), "--max-changes: must be a whole number from 1 to 5")
