"""Import rules between the layers: the library (``recourse``), the service (``api``), the CLI
(``cli.py`` and its command bodies in ``commands``) and the benchmarks (``benchmarks``).

The contracts live in pyproject.toml (``[tool.importlinter]``) and are checked by import-linter;
an AST scan checks the same rules (and ``recourse.core``'s allow-list exactly) without it.
Every import statement counts, also those inside functions; ``if TYPE_CHECKING:`` blocks do not.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE_ALLOWED = {"torch", "numpy"}
"""Third-party packages ``recourse.core`` may import (besides the standard library and itself)."""
TABULAR_ENGINE = ("recourse.scfe", "recourse.polish", "recourse.repair", "recourse.encoding", "recourse.audit")
OUTER = ("api", "cli", "commands", "benchmarks")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(path: Path) -> set[str]:
    """Absolute names of the modules ``path`` imports (relative imports resolved)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            if node.module is None:  # from . import x → the submodules (or names) x
                found.update(f"{stem}.{alias.name}" for alias in node.names)
            else:
                found.add(stem)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    return found


def _files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _violations(packages: str, forbidden: tuple[str, ...]) -> list[str]:
    return [f"{_module_name(f)} imports {name}" for f in _files(packages) for name in sorted(imports_of(f))
            if _within(name, forbidden)]


def test_core_imports_only_torch_numpy_and_the_standard_library():
    bad = []
    for f in _files("recourse/core"):
        for name in sorted(imports_of(f)):
            top = name.split(".")[0]
            if _within(name, ("recourse.core",)) or top in CORE_ALLOWED or top in sys.stdlib_module_names:
                continue
            bad.append(f"{_module_name(f)} imports {name}")
    assert not bad, "recourse.core may import only torch, numpy, the standard library and itself:\n" + "\n".join(bad)


def test_vision_does_not_import_the_tabular_engine():
    bad = _violations("recourse/vision", TABULAR_ENGINE)
    assert not bad, "\n".join(bad)


def test_library_imports_no_service_cli_commands_or_benchmarks():
    bad = _violations("recourse", OUTER)
    assert not bad, "\n".join(bad)


def test_service_imports_no_cli_commands_or_benchmarks():
    bad = _violations("api", ("cli", "commands", "benchmarks"))
    assert not bad, "\n".join(bad)


def test_import_linter_contracts():
    """The contracts of pyproject.toml, indirect imports included (import-linter is a test extra)."""
    pytest.importorskip("importlinter")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    code = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_cache=True, no_logo=True))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_the_scan_sees_lazy_and_relative_imports(tmp_path, monkeypatch):
    """The AST scan resolves relative imports and counts imports inside functions, not TYPE_CHECKING ones."""
    pkg = ROOT / "recourse" / "core"
    source = pkg / "__init__.py"
    assert _module_name(source) == "recourse.core"
    probe = tmp_path / "probe.py"
    probe.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pandas\n"
                     "def f():\n    from ..scfe import RecourseEngine\n    import scipy.sparse\n")
    monkeypatch.setattr(sys.modules[__name__], "_module_name", lambda path: "recourse.core.probe")
    assert imports_of(probe) == {"typing", "recourse.scfe", "scipy.sparse"}


# ---------------------------------------------------------------------- one home, public interfaces
FLAG = __import__("re").compile(r"(?<![\w-])--[a-z][a-z0-9-]+")


def _string_constants(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every string constant in a module, docstrings and comments excluded."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings]


def test_no_library_message_names_a_command_line_flag():
    """The library speaks of parameters and fields; the CLI turns them into flags (commands/flags.py)."""
    bad = [f"{_module_name(f)}:{line}: {FLAG.search(text).group(0)}" for f in _files("recourse")
           for line, text in _string_constants(f) if FLAG.search(text)]
    assert not bad, "\n".join(bad)


SAME_CLASS = ("self", "cls", "other", "out")
"""Names under which a class reaches its own private members (``other``/``out``: a copy being built)."""
FOREIGN_PRIVATE = {("recourse.trees", "_predictors")}
"""Private attributes of other libraries read on purpose: scikit-learn's HistGradientBoosting keeps
its trees only in ``_predictors`` (no public accessor); the tree tests pin the format."""


def test_no_module_reaches_into_another_objects_private_members():
    """``obj._name`` only on ``self``/``cls`` (or a copy of self being built), never another object's
    private attribute or method (the engine's parts talk through public methods)."""
    bad = []
    for package in ("recourse", "api", "commands", "benchmarks"):
        for f in _files(package):
            for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
                if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                        and not (isinstance(node.value, ast.Name) and node.value.id in SAME_CLASS)
                        and (_module_name(f), node.attr) not in FOREIGN_PRIVATE):
                    bad.append(f"{_module_name(f)}:{node.lineno}: {ast.unparse(node)}")
    assert not bad, "\n".join(bad)


def test_command_line_choices_match_the_registries():
    """The CLI's static choice lists (kept static so that --help does not import torch) equal the registries."""
    import cli
    from recourse.density import available_densities
    from recourse.models import model_kinds

    assert sorted(d.value for d in cli.DensityName) == sorted([*available_densities(), "none"])
    assert [m.value for m in cli.ModelKind] == model_kinds()
    from benchmarks.robustness import ROBUSTNESS_MODELS
    from benchmarks.scfe import BENCH_MODELS

    assert tuple(m.value for m in cli.BenchModel) == BENCH_MODELS == ROBUSTNESS_MODELS  # every offered choice runs
    from api.keys import ROLES

    assert tuple(r.value for r in cli.KeyRole) == ROLES
