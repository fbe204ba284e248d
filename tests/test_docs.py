"""The documentation cannot drift: every code block in README.md and docs/ runs, or says why not.

* ``python`` blocks run, page by page in order in one namespace (a later block may use an earlier
  block's names), in a scratch folder that sees the repository's ``datasets/``.
* ``bash`` blocks are not run (they start servers, build bundles from files the reader has, or
  call other programs), so each carries ``<!-- not run: REASON -->`` on the line before it; every
  ``recourse ...`` line in them is still parsed by the real command line: each command, option
  and choice it names exists.
* ``make docs`` (Sphinx, warnings are errors) builds the site.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
NOT_RUN = re.compile(r"<!--\s*not run:\s*(.*?)\s*-->\s*$")


@dataclass
class Block:
    page: Path
    line: int
    language: str
    code: str
    not_run: str | None  # the reason given, when the block is marked as not run

    def where(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The fenced code blocks of a page, with the not-run marker on the line before each."""
    text = page.read_text()
    found = []
    for m in FENCE.finditer(text):
        before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = NOT_RUN.search(before)
        found.append(Block(page, text[: m.start()].count("\n") + 1, m.group(1), m.group(2),
                           marker.group(1) if marker else None))
    return found


def ids(pages: list[Path]) -> list[str]:
    return [str(p.relative_to(REPO)) for p in pages]


def test_every_page_has_code_blocks_the_checks_see():
    languages = {b.language for p in PAGES for b in blocks(p)}
    assert {"python", "bash"} <= languages


@pytest.mark.parametrize("page", PAGES, ids=ids(PAGES))
def test_every_shell_block_says_why_it_is_not_run(page):
    for block in blocks(page):
        if block.language in ("bash", "sh", "shell", "console"):
            assert block.not_run, f"{block.where()}: a shell block needs <!-- not run: REASON --> before it"
        if block.not_run is not None:
            assert len(block.not_run) >= 10, f"{block.where()}: give a reason, not {block.not_run!r}"


def recourse_lines(code: str) -> list[list[str]]:
    """The ``recourse ...`` command lines of a shell block, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", code)
    lines = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0] == "recourse":
            lines.append(words[1:])
    return lines


def parse_command_line(args: list[str]) -> None:
    """Parse ``recourse ARGS`` with the real command line, invoking nothing."""
    import click
    import typer

    import cli

    command: click.Command = typer.main.get_command(cli.app)
    name = "recourse"
    while True:
        ctx = command.make_context(name, list(args), resilient_parsing=False)
        if not isinstance(command, click.Group):
            return
        rest = [*ctx.protected_args, *ctx.args]
        if not rest:
            return
        name, command, args = command.resolve_command(ctx, rest)
        args = rest[1:]


SHELL_PAGES = [p for p in PAGES if any(recourse_lines(b.code) for b in blocks(p) if b.language == "bash")]


@pytest.mark.parametrize("page", SHELL_PAGES, ids=ids(SHELL_PAGES))
def test_the_recourse_command_lines_in_the_docs_parse(page):
    import click

    for block in blocks(page):
        if block.language != "bash":
            continue
        for args in recourse_lines(block.code):
            try:
                parse_command_line(args)
            except click.exceptions.Exit:
                pass
            except click.ClickException as exc:
                pytest.fail(f"{block.where()}: `recourse {shlex.join(args)}` does not parse: {exc.format_message()}")


PYTHON_PAGES = [p for p in PAGES if any(b.language == "python" for b in blocks(p))]


@pytest.mark.slow
@pytest.mark.parametrize("page", PYTHON_PAGES, ids=ids(PYTHON_PAGES))
def test_the_python_blocks_of_a_page_run(page, tmp_path, monkeypatch):
    (tmp_path / "datasets").symlink_to(REPO / "datasets")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs__"}
    for block in blocks(page):
        if block.language != "python" or block.not_run:
            continue
        try:
            exec(compile(block.code, block.where(), "exec"), namespace)
        except Exception as exc:  # noqa: BLE001 - name the block that failed
            pytest.fail(f"{block.where()}: {type(exc).__name__}: {exc}")


@pytest.mark.slow
def test_make_docs_builds_the_site_without_warnings(tmp_path):
    sphinx = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(REPO / "docs"), str(tmp_path)]
    done = subprocess.run(sphinx, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"}, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "index.html").is_file()
