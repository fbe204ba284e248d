"""Option parsing of the ``recourse bench`` commands (the benchmarks themselves are in :mod:`benchmarks`)."""
from __future__ import annotations

from . import CommandError


def parse_clients(text: str) -> tuple[int, ...]:
    """``--clients``: comma-separated client counts, each at least 1."""
    try:
        levels = tuple(int(c) for c in text.split(",") if c.strip())
    except ValueError:
        raise CommandError(f"--clients: expected comma-separated whole numbers, got {text!r}") from None
    if not levels or min(levels) < 1:
        raise CommandError("--clients: give at least one client count of 1 or more")
    return levels


def parse_databases(values: list[str]) -> list[str]:
    """``--database`` of ``bench http`` (repeatable): ``sqlite`` or a ``postgresql://`` URL each."""
    from api.log import parse_target

    for value in values:
        try:
            ok = value == "sqlite" or isinstance(parse_target(value), str)
        except ValueError as exc:
            raise CommandError(f"--database {exc}") from None
        if not ok:
            raise CommandError(f"--database {value}: give sqlite (a fresh file) or a postgresql://USER@HOST:PORT/DB URL")
    return list(values)
