"""``recourse log purge`` and ``recourse log erase``: the explanation log from the command line
(a file path or a PostgreSQL URL, as ``recourse serve --database`` takes)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from . import CommandError


def open_existing_log(database: str | Path, flag: str = "--database") -> Any:
    """The explanation log ``database`` names (a file path or a PostgreSQL URL), which must exist
    already: a command that reads or deletes answers never creates an empty log file."""
    from api.log import ExplanationLog, LogOpenError, parse_target

    try:
        target = parse_target(database)
    except ValueError as exc:
        raise CommandError(f"{flag} {exc}") from None
    if isinstance(target, Path) and not target.is_file():
        raise CommandError(f"{flag} {target}: no such explanation log (no such file; `recourse serve --database FILE` "
                           "writes one)")
    try:
        return ExplanationLog(target)
    except LogOpenError as exc:
        raise CommandError(f"{flag} {exc}") from None


def who() -> str:
    """Who erased, as recorded in the log's erasures: the command line and the user running it."""
    import getpass

    try:
        return f"command line ({getpass.getuser()})"
    except (KeyError, OSError):
        return "command line"
