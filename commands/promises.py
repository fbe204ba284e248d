"""``recourse promises check``: re-verify the answers of an explanation log with a new bundle."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from recourse.promises import PromiseReport, check_promises

from . import CommandError

LISTED = 20
"""Broken promises listed by id in the text output (all of them in ``--json``)."""


def run_promise_check(log_path: Path, bundle: Any, group_by: list[str]) -> PromiseReport:
    """Every stored recourse answer of ``log_path`` re-verified with ``bundle``'s model."""
    from api.log import ExplanationLog

    if not log_path.is_file():
        raise CommandError(f"{log_path}: no such explanation log (the SQLite file `recourse serve --database` writes)")
    promises = ExplanationLog(log_path).promises()
    unknown = [g for g in group_by if g not in bundle.schema.names]
    if unknown:
        raise CommandError(f"--group-by: unknown feature '{unknown[0]}'; features: {', '.join(bundle.schema.names)}")
    return check_promises(bundle.engine(), promises, group_by)


def format_promise_report(report: PromiseReport) -> str:
    """The report for a person: counts, groups, the first broken promises by id."""
    checked = report.kept + report.broken
    lines = [f"{report.total} promises in the log: {report.kept} kept, {report.broken} broken "
             f"({report.broken_share:.1%} of the {checked} checked), {report.uncheckable} no longer fit the schema"]
    for attribute, groups in report.groups.items():
        lines.append(f"by {attribute}:")
        width = max((len(v) for v in groups), default=0)
        for value, c in sorted(groups.items()):
            share = c["broken"] / max(c["kept"] + c["broken"], 1)
            lines.append(f"  {value:<{width}}  {c['total']:>6} answers, {c['broken']:>5} broken ({share:.1%})")
    if report.broken_ids:
        more = f" (and {len(report.broken_ids) - LISTED} more; --json lists all)" if len(report.broken_ids) > LISTED else ""
        lines.append("broken: " + ", ".join(report.broken_ids[:LISTED]) + more)
    return "\n".join(lines)
