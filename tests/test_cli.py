"""End-to-end tests of the ``recourse`` command (explain, train, errors)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from recourse.bundle import load_bundle

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "datasets" / "german_credit" / "examples"
runner = CliRunner()


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A private RECOURSE_HOME with the German demo bundle built once."""
    path = tmp_path_factory.mktemp("recourse-home")
    old = os.environ.get("RECOURSE_HOME")
    os.environ["RECOURSE_HOME"] = str(path)
    result = runner.invoke(app, ["train", "german"])
    assert result.exit_code == 0, result.output
    yield path
    if old is None:
        os.environ.pop("RECOURSE_HOME", None)
    else:
        os.environ["RECOURSE_HOME"] = old


def explain_json(*args: str) -> dict:
    result = runner.invoke(app, ["explain", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_denied_applicant_gets_verified_recourse(home, tmp_path):
    out = explain_json(str(EXAMPLES / "denied_applicant.json"))
    assert out["status"] == "recourse_found"
    assert out["decision"]["label"] == "denied" and 0.5 < out["decision"]["probability"] <= 1
    assert out["counterfactual_decision"]["label"] == "approved"
    assert 1 <= out["metrics"]["l0"] <= 3 == out["max_changes"]
    assert out["metrics"]["l2"] > 0 and out["metrics"]["lof"] > 0
    applicant = json.loads((EXAMPLES / "denied_applicant.json").read_text())
    changed = {k for k in applicant if applicant[k] != out["counterfactual"][k]}
    assert changed == {a["feature"] for a in out["actions"]}
    for action in out["actions"]:
        assert action["from"] == applicant[action["feature"]] and action["to"] == out["counterfactual"][action["feature"]]
        assert action["text"]
    for immutable in ("age", "status_sex", "foreign_worker"):
        assert out["counterfactual"][immutable] == applicant[immutable]
    # the counterfactual fed back is approved
    cf_file = tmp_path / "cf.json"
    cf_file.write_text(json.dumps(out["counterfactual"]))
    again = explain_json(str(cf_file))
    assert again["status"] == "already_favourable"


def test_text_output_is_readable(home):
    result = runner.invoke(app, ["explain", str(EXAMPLES / "denied_applicant.json")])
    assert result.exit_code == 0, result.output
    assert "Decision: denied" in result.stdout
    assert "What would change the decision" in result.stdout
    assert "New decision: approved" in result.stdout and "Metrics:" in result.stdout


def test_approved_applicant_is_already_favourable(home):
    out = explain_json(str(EXAMPLES / "approved_applicant.json"))
    assert out["status"] == "already_favourable"
    assert out["actions"] == [] and "counterfactual" not in out


@pytest.mark.parametrize("density", ["kde", "gmm", "knn", "none"])
def test_density_and_max_changes_options(home, density):
    out = explain_json(str(EXAMPLES / "denied_applicant.json"), "--density", density, "--max-changes", "2")
    assert out["status"] in ("recourse_found", "no_recourse_found")
    assert out["max_changes"] == 2
    if out["status"] == "recourse_found":
        assert out["metrics"]["l0"] <= 2


def test_bad_input_names_every_field_and_exits_2(home):
    result = runner.invoke(app, ["explain", str(EXAMPLES / "bad_input.json")])
    assert result.exit_code == 2
    text = result.output
    for field, problem in [("income", "unknown feature"), ("duration", "outside the allowed range"),
                           ("credit_amount", "finite"), ("savings", "unknown category"),
                           ("age", "wrong type"), ("housing", "missing feature")]:
        assert f"{field}: " in text and problem in text, (field, text)
    assert "Traceback" not in text


@pytest.mark.parametrize("content, message", [("{not json", "not valid JSON"), ("[1, 2]", "expected an object"), ("42", "expected an applicant object or a list")])
def test_malformed_files(home, tmp_path, content, message):
    path = tmp_path / "in.json"
    path.write_text(content)
    result = runner.invoke(app, ["explain", str(path)])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_missing_file_and_missing_bundle(home, tmp_path):
    result = runner.invoke(app, ["explain", str(tmp_path / "nope.json")])
    assert result.exit_code == 2 and "no such file" in result.output
    result = runner.invoke(app, ["explain", str(EXAMPLES / "denied_applicant.json"), "--bundle", str(tmp_path)])
    assert result.exit_code == 2 and "not a bundle" in result.output


@pytest.mark.parametrize("content, message", [("{broken", "metadata.json: not valid JSON"),
                                              ("[]", "metadata.json: expected a JSON object"),
                                              ('{"format": "x/9"}', "unsupported bundle format 'x/9'")])
def test_bundle_with_a_bad_description_file(home, tmp_path, content, message):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "metadata.json").write_text(content)
    result = runner.invoke(app, ["explain", str(EXAMPLES / "denied_applicant.json"), "--bundle", str(bundle)])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_tampered_bundle_is_refused(home, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(Path(home) / "bundles" / "german", copy)
    with open(copy / "model.safetensors", "r+b") as f:
        f.seek(-4, 2)
        f.write(b"\x00\x01\x02\x03")
    result = runner.invoke(app, ["explain", str(EXAMPLES / "denied_applicant.json"), "--bundle", str(copy)])
    assert result.exit_code == 2 and "hash" in result.output


def test_train_from_user_table(home, tmp_path):
    from recourse.data import load_german

    data = load_german()
    table = data.frame.copy()
    table["credit"] = data.labels
    csv = tmp_path / "table.csv"
    table.iloc[:400].to_csv(csv, index=False)
    out = tmp_path / "mybundle"
    schema = ROOT / "datasets" / "german_credit" / "schema.json"
    result = runner.invoke(app, ["train", "--data", str(csv), "--schema", str(schema), "--target", "credit",
                                 "--out", str(out), "--model", "logistic"])
    assert result.exit_code == 0, result.output
    bundle = load_bundle(out)
    assert bundle.metadata["model"] == "logistic" and len(bundle.hash) == 64
    res = explain_json(str(EXAMPLES / "denied_applicant.json"), "--bundle", str(out))
    assert res["status"] in ("recourse_found", "no_recourse_found", "already_favourable")


def test_train_rejects_bad_table(home, tmp_path):
    csv = tmp_path / "bad.csv"
    csv.write_text("a,b\n1,2\n")
    schema = ROOT / "datasets" / "german_credit" / "schema.json"
    result = runner.invoke(app, ["train", "--data", str(csv), "--schema", str(schema), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "missing columns" in result.output


@pytest.mark.slow
@pytest.mark.integration
def test_console_script_exit_code(home):
    """The installed entry point: bad input exits 2 with no traceback."""
    cmd = [sys.executable, "-c", "from cli import main; main()", "explain", str(EXAMPLES / "bad_input.json")]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=dict(os.environ), timeout=300)
    assert proc.returncode == 2
    assert "duration" in proc.stderr and "Traceback" not in proc.stderr + proc.stdout


def test_the_readmes_worked_example_is_what_the_demo_prints():
    """`make demo` runs this command: its output is the README's worked example, line for line."""
    from pathlib import Path

    from typer.testing import CliRunner

    import cli

    repo = Path(__file__).resolve().parent.parent
    done = CliRunner().invoke(cli.app, ["explain", "datasets/german_credit/examples/denied_applicant.json"])
    assert done.exit_code == 0, done.output
    readme = (repo / "README.md").read_text()
    assert "```\n" + done.stdout.rstrip("\n") + "\n```" in readme


def test_explain_reads_a_csv_table_and_leaves_the_past_decision_out(tmp_path):
    import json
    from pathlib import Path

    from typer.testing import CliRunner

    import cli

    example = json.loads((Path(__file__).resolve().parent.parent / "datasets/german_credit/examples/denied_applicant.json").read_text())
    rows = [dict(example, credit=2), dict(example, duration=24, credit=2)]
    header = ", ".join(rows[0])  # comma-plus-space separators, as some exports write them
    cell = lambda v: str(v).lower() if isinstance(v, bool) else f'"{v}"' if "," in str(v) else str(v)  # noqa: E731
    lines = [header] + [", ".join(cell(v) for v in r.values()) for r in rows]
    (tmp_path / "a.csv").write_text("\n".join(lines) + "\n")
    done = CliRunner().invoke(cli.app, ["explain", str(tmp_path / "a.csv"), "--json"])
    assert done.exit_code == 0, done.output
    answers = json.loads(done.stdout)
    assert [a["applicant"]["duration"] for a in answers] == [example["duration"], 24]
    assert "the column 'credit' (the past decision) is left out" in done.stderr
    (tmp_path / "b.json").write_text(json.dumps(dict(example, credit=2)))
    done = CliRunner().invoke(cli.app, ["explain", str(tmp_path / "b.json"), "--json"])
    assert done.exit_code == 0 and json.loads(done.stdout)["status"] == "recourse_found"
    (tmp_path / "c.txt").write_text("status,duration\n")
    done = CliRunner().invoke(cli.app, ["explain", str(tmp_path / "c.txt")])
    assert done.exit_code == 2 and "or as a table in a .csv file" in done.output


def test_a_batch_answers_its_good_rows_and_reports_the_bad_ones(tmp_path):
    import json
    from pathlib import Path

    import pandas as pd
    from typer.testing import CliRunner

    import cli

    example = json.loads((Path(__file__).resolve().parent.parent / "datasets/german_credit/examples/denied_applicant.json").read_text())
    rows = [dict(example), dict(example, age="old"), dict(example, age=30)]
    (tmp_path / "batch.json").write_text(json.dumps(rows))
    pd.DataFrame(rows).to_csv(tmp_path / "batch.csv", index=False)
    runner = CliRunner()
    done = runner.invoke(cli.app, ["explain", str(tmp_path / "batch.json"), "--json"])
    assert done.exit_code == cli.PARTIAL == 3
    answers = json.loads(done.stdout)
    assert [a["status"] for a in answers] == ["recourse_found", "invalid", "recourse_found"]
    assert answers[1] == {"status": "invalid", "row": 1, "errors": [{"field": "age", "message": 'wrong type: expected a number, got "old"'}]}
    assert "1 of 3 applicants" in done.output and "(item 1)" in done.output
    done = runner.invoke(cli.app, ["explain", str(tmp_path / "batch.csv")])
    assert done.exit_code == 3 and "row 2: invalid, not explained" in done.stdout and "(row 2)" in done.output
    assert done.stdout.count("Decision: denied") == 2
    everything_bad = [dict(example, age="old"), dict(example, duration="long")]
    pd.DataFrame(everything_bad).to_csv(tmp_path / "bad.csv", index=False)
    done = runner.invoke(cli.app, ["explain", str(tmp_path / "bad.csv")])
    assert done.exit_code == 2 and "row 1, age" in done.output and "row 2, duration" in done.output


def test_explain_reads_a_parquet_table(tmp_path):
    import json
    from pathlib import Path

    import pandas as pd
    from typer.testing import CliRunner

    import cli

    example = json.loads((Path(__file__).resolve().parent.parent / "datasets/german_credit/examples/denied_applicant.json").read_text())
    pd.DataFrame([example, dict(example, age=200)]).to_parquet(tmp_path / "a.parquet")  # age out of range in row 2
    done = CliRunner().invoke(cli.app, ["explain", str(tmp_path / "a.parquet"), "--json"])
    assert done.exit_code == 3, done.output
    answers = json.loads(done.stdout)
    assert answers[0]["status"] == "recourse_found" and answers[1] == {**answers[1], "status": "invalid", "row": 2}
