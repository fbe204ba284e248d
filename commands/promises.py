"""``recourse promises check``: re-verify the answers of an explanation log with a new bundle."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from recourse.promises import PromiseReport, check_promises

from . import CommandError

LISTED = 20
"""Broken promises listed by id in the text output (all of them in ``--json``)."""


def run_promise_check(log: str | Path, bundle: Any, group_by: list[str]) -> PromiseReport:
    """Every stored recourse answer of the log ``log`` (a file path or a PostgreSQL URL)
    re-verified with ``bundle``'s model."""
    from .log import open_existing_log

    opened = open_existing_log(log, "--log")
    try:
        promises = opened.promises()
    finally:
        opened.close()
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
