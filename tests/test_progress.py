"""Progress bars of the commands (commands/progress.py): on stderr only, only when stderr is a
terminal or RECOURSE_PROGRESS=1 forces them; ``recourse explain`` on a large batch answers in
chunks exactly as one engine call would; the benchmarks' optional ``progress`` callback."""
from __future__ import annotations

import inspect
import io
import json

import pytest
import torch
from typer.testing import CliRunner

from benchmarks.progress import Steps
from cli import app
from commands.explain import CHUNK_ROWS, explain_rows
from commands.progress import ENV, progress_bar, progress_enabled

runner = CliRunner()


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


# ---------------------------------------------------------------------- the helper
def test_a_bar_only_on_a_terminal_unless_forced(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    assert not progress_enabled(True, io.StringIO())
    assert progress_enabled(True, Terminal())
    assert not progress_enabled(False, Terminal())
    for value in ("1", "on", "always", "TRUE"):
        monkeypatch.setenv(ENV, value)
        assert progress_enabled(True, io.StringIO())
        assert not progress_enabled(False, io.StringIO())  # --no-progress wins
    for value in ("0", "off", "never"):
        monkeypatch.setenv(ENV, value)
        assert not progress_enabled(True, Terminal())
    monkeypatch.setenv(ENV, "auto")
    assert progress_enabled(True, Terminal()) and not progress_enabled(True, io.StringIO())


def test_the_bar_writes_to_stderr_when_forced_and_nothing_otherwise(monkeypatch, capsys):
    monkeypatch.setenv(ENV, "1")
    with progress_bar(True, "work", unit="row") as bar:
        assert bar is not None
        bar(0, 10, "first half")
        bar(5, 10, "second half")
        bar(10, 10, "done")
    out, err = capsys.readouterr()
    assert out == ""
    assert "work: second half" in err and "10/10" in err
    monkeypatch.delenv(ENV)  # pytest's captured stderr is not a terminal
    with progress_bar(True, "work") as bar:
        assert bar is None
    monkeypatch.setenv(ENV, "1")
    with progress_bar(False, "work") as bar:
        assert bar is None
    assert capsys.readouterr() == ("", "")


def test_steps_count_the_phases_and_forward_nested_stages():
    told: list[tuple[int, int, str]] = []
    step = Steps(lambda done, total, stage: told.append((done, total, stage)), 3)
    step("bundle")
    nested = step.nested("bundle")
    assert nested is not None
    nested(1, 4, "fitting the model")
    step("points", steps=2)
    step.finish()
    assert told == [(0, 3, "bundle"), (1, 4, "bundle: fitting the model"), (1, 3, "points"), (3, 3, "done")]
    silent = Steps(None, 2)
    silent("anything")
    silent.finish()
    assert silent.nested("x") is None


@pytest.mark.parametrize("module, function", [
    ("benchmarks.scfe", "run_scfe_benchmark"), ("benchmarks.engine", "run_engine_benchmark"),
    ("benchmarks.robustness", "run_robustness_benchmark"), ("benchmarks.exact", "run_exact_benchmark"),
    ("benchmarks.vision", "run_vision_benchmark"), ("benchmarks.manipulation", "run_manipulation_benchmark"),
    ("benchmarks.http", "run_load_tests"), ("benchmarks.http", "abandoned_burst"),
    ("benchmarks.audit", "run_audit_benchmark"), ("benchmarks.audit", "run_dask_scaling"),
])
def test_every_benchmark_takes_a_progress_that_is_off_by_default(module, function):
    import importlib

    parameter = inspect.signature(getattr(importlib.import_module(module), function)).parameters["progress"]
    assert parameter.default in (None, False)


def test_attacks_in_batches_join_in_order():
    from commands.vision import attack_in_batches
    from recourse.vision.attacks import AttackResult

    def attack(x, labels, targets):
        return AttackResult(x, x + 1, labels % 2 == 0, labels if targets is None else targets, targets is not None,
                            0.5, "fake", {"k": 1})

    x = torch.arange(10, dtype=torch.float32).view(10, 1, 1, 1)
    labels = torch.arange(10)
    told: list[tuple[int, int]] = []
    joined = attack_in_batches(attack, x, labels, None, progress=lambda done, total: told.append((done, total)), batch=4)
    whole = attack(x, labels, None)
    assert torch.equal(joined.x_adv, whole.x_adv) and torch.equal(joined.success, whole.success)
    assert torch.equal(joined.aims, whole.aims) and joined.method == "fake" and joined.params == {"k": 1}
    assert joined.seconds == pytest.approx(1.5)  # three batches
    assert told == [(0, 10), (4, 10), (8, 10), (10, 10)]
    assert attack_in_batches(attack, x[:3], labels[:3], labels[:3] + 1, batch=4).targeted


# ---------------------------------------------------------------------- explain on a large batch
ROWS = 600


@pytest.fixture(scope="module")
def batch_csv(tmp_path_factory, german_dataset):
    path = tmp_path_factory.mktemp("progress") / "applicants.csv"
    german_dataset.frame.head(ROWS).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def direct(batch_csv, german_bundle):
    """The answers of one engine.explain call on the same rows, as the CLI prints them."""
    from recourse.data import read_applicants

    engine = german_bundle.engine()
    payload, _ = read_applicants(batch_csv, engine.schema)
    assert len(payload) == ROWS > 2 * CHUNK_ROWS
    return [r.to_dict() for r in engine.explain(payload)]


def _same_answers(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want)
    assert [a["status"] for a in got] == [a["status"] for a in want]
    assert [a.get("counterfactual") for a in got] == [a.get("counterfactual") for a in want]
    assert [a["applicant"] for a in got] == [a["applicant"] for a in want]


def test_a_large_batch_in_chunks_answers_as_one_call(batch_csv, german_bundle, direct):
    args = ["explain", str(batch_csv), "--bundle", str(german_bundle.path), "--json"]
    forced = runner.invoke(app, args, env={ENV: "1"})
    assert forced.exit_code == 0, forced.output
    answers = json.loads(forced.stdout)  # the bar never reaches stdout
    _same_answers(answers, direct)
    assert "explain: " in forced.stderr and f"{ROWS}/{ROWS}" in forced.stderr and "applicant" in forced.stderr
    quiet = runner.invoke(app, args, env={ENV: None})  # stderr is not a terminal here: no bar
    assert quiet.exit_code == 0, quiet.output
    assert "explain:" not in quiet.stderr and "applicant/s" not in quiet.stderr
    assert json.loads(quiet.stdout) == answers
    hidden = runner.invoke(app, [*args, "--no-progress"], env={ENV: "1"})
    assert hidden.exit_code == 0 and "explain:" not in hidden.stderr and json.loads(hidden.stdout) == answers


def test_invalid_rows_of_a_chunked_batch_keep_their_place_and_exit_3(batch_csv, german_bundle, direct, tmp_path):
    import pandas as pd

    table = pd.read_csv(batch_csv)
    table["age"] = table["age"].astype(object)
    table.loc[[5, CHUNK_ROWS + 44], "age"] = "old"  # one in the first chunk, one in the second
    table.loc[ROWS - 1, "duration"] = -5
    table.to_csv(tmp_path / "bad.csv", index=False)
    done = runner.invoke(app, ["explain", str(tmp_path / "bad.csv"), "--bundle", str(german_bundle.path), "--json"],
                         env={ENV: "1"})
    assert done.exit_code == 3, done.output
    answers = json.loads(done.stdout)
    bad = [i for i, a in enumerate(answers) if a["status"] == "invalid"]
    assert bad == [5, CHUNK_ROWS + 44, ROWS - 1]
    assert [answers[i]["row"] for i in bad] == [6, CHUNK_ROWS + 45, ROWS]  # CSV rows count from 1
    assert answers[ROWS - 1]["errors"][0]["field"] == "duration"
    keep = [i for i in range(ROWS) if i not in bad]
    _same_answers([answers[i] for i in keep], [direct[i] for i in keep])
    assert f"3 of {ROWS} applicants" in done.stderr and f"row {CHUNK_ROWS + 45}" in done.stderr


def test_explain_rows_validates_the_whole_batch_first(german_bundle):
    from recourse.errors import RecordValidationError

    engine = german_bundle.engine()
    batch = engine.validated(_german_rows(5)) * 2  # 10 rows, chunks of 3
    batch[7] = dict(batch[7], age="old")
    told: list[tuple[int, int, str]] = []
    with pytest.raises(RecordValidationError) as exc:
        explain_rows(engine, batch, None, progress=lambda *a: told.append(a), chunk_rows=3)
    assert [e.field for e in exc.value.errors] == ["7.age"] and told == []  # nothing solved before the check
    del batch[7]
    answers = explain_rows(engine, batch, None, progress=lambda *a: told.append(a), chunk_rows=3)
    assert [a.applicant for a in answers] == [a.applicant for a in engine.explain(batch)]
    assert told == [(0, 9, "explaining"), (3, 9, "explaining"), (6, 9, "explaining"), (9, 9, "done")]


def _german_rows(n: int):
    from recourse.data import load_dataset

    return load_dataset("german").frame.head(n)
