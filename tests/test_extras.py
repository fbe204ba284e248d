"""The core install explains and trains without any extra; a command that needs one says which.

The core is run in a subprocess in which every module of every extra is made unimportable (a
meta-path finder that refuses them), the way a ``pip install recourse`` without extras would be.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

from recourse.extras import EXTRAS, extra_for, missing_extra_message

REPO = Path(__file__).resolve().parent.parent


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def requirement_name(requirement: str) -> str:
    for stop in "<>=[; ":
        requirement = requirement.split(stop, 1)[0]
    return requirement.strip().lower().replace("_", "-")


def test_every_module_of_an_extra_comes_from_a_package_that_extra_declares():
    declared = pyproject()["project"]["optional-dependencies"]
    owners = packages_distributions()
    for extra, modules in EXTRAS.items():
        wanted = {requirement_name(r) for r in declared[extra]}
        for module in modules:
            distributions = {d.lower().replace("_", "-") for d in owners.get(module, [])}
            if extra == "bench" and not distributions:
                continue  # the peers' packages (dice-ml) are not part of the test install
            assert distributions, f"{module} (extra {extra}) is not installed in the test environment"
            assert distributions & wanted, f"{module} comes from {distributions}, not declared in extra {extra!r}"


def test_the_core_dependencies_hold_no_package_of_an_extra():
    core = {requirement_name(r) for r in pyproject()["project"]["dependencies"]}
    owners = packages_distributions()
    for modules in EXTRAS.values():
        for module in modules:
            assert not {d.lower() for d in owners.get(module, [])} & core, module


def test_extra_for_and_its_message():
    assert extra_for("dask.dataframe") == "audit"
    assert extra_for("flask") == "service"
    assert extra_for("numpy") is None
    message = missing_extra_message(ModuleNotFoundError("No module named 'gunicorn'", name="gunicorn"))
    assert "'service'" in message and "pip install 'recourse[service]'" in message
    assert missing_extra_message(ModuleNotFoundError("x", name="numpy")) is None


BLOCK_EXTRAS = """
import importlib.abc, sys
BLOCKED = {blocked!r}
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, Refuse())
sys.argv = ["recourse", *{args!r}]
import cli
cli.main()
"""


def run_core(args: list[str], home: Path) -> subprocess.CompletedProcess:
    blocked = sorted({m for modules in EXTRAS.values() for m in modules})
    code = BLOCK_EXTRAS.format(blocked=blocked, args=args)
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={"RECOURSE_HOME": str(home), "PATH": "/usr/bin:/bin", "PYTHONWARNINGS": "ignore"})


@pytest.mark.integration
@pytest.mark.slow
def test_the_core_explains_and_trains_without_any_extra(tmp_path):
    done = run_core(["train", "german", "--out", str(tmp_path / "bundle"), "--json"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["path"] == str(tmp_path / "bundle")
    done = run_core(["explain", "datasets/german_credit/examples/denied_applicant.json",
                     "--bundle", str(tmp_path / "bundle"), "--json"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] in ("recourse_found", "no_recourse_found")


@pytest.mark.integration
def test_a_command_of_an_extra_names_the_extra_it_needs(tmp_path):
    done = run_core(["serve", "--no-auth", "--port", "1"], tmp_path)
    assert done.returncode == 2, done.stderr
    assert "pip install 'recourse[service]'" in done.stderr
    assert "Traceback" not in done.stderr
