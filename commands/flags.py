"""Library messages in the CLI's words: parameter names become command-line flags.

The library names the parameters and fields a caller passed, in backticks (``out``,
``chunk_size``, ``fresh=True``, ``bins['age']``), never a flag.  :func:`cli_message` rewrites
those names for a person at the command line:

* `` `chunk_size` `` → ``--chunk-size``;
* `` `fresh=True` `` → ``--fresh``, `` `fresh=False` `` → ``--no-fresh``, `` `engine_kind='dask'` `` → ``--engine dask``;
* `` `bins['age']` `` → ``--bins age=EDGE,EDGE,...`` (the flag's item syntax, see :data:`ITEMS`).

Names with no flag (and other backticked text, e.g. a command) are left as they are.
"""
from __future__ import annotations

import ast
import re

FLAGS: dict[str, str] = {
    # shared
    "out": "--out",
    "bundle": "--bundle",
    "dataset": "--dataset",
    "device": "--device",
    "max_changes": "--max-changes",
    "alternatives": "--alternatives",
    "cost_weights": "--cost-weight",
    "fixed": "--fix",
    "min_probability": "--min-probability",
    "robust": "--robust",
    "limits": "--limit",
    "density": "--density",
    "target": "--target",
    "target.at_least": "--at-least",
    "target.at_most": "--at-most",
    "seed": "--seed",
    # train
    "schema": "--schema",
    "family": "--family",
    "drop_missing": "--drop-missing",
    "force": "--force",
    "na_values": "--na-value",
    # audit (AuditConfig fields and run_audit parameters)
    "chunk_size": "--chunk-size",
    "exact": "--exact",
    "exact_limit": "--exact-limit",
    "output_format": "--format",
    "bins": "--bins",
    "group_by": "--group-by",
    "protected": "--protected",
    "stability_n": "--stability-n",
    "bootstrap": "--bootstrap",
    "fresh": "--fresh",
    "engine_kind": "--engine",
    "scheduler": "--scheduler",
    # serve (ServiceConfig fields and api.server.serve parameters)
    "database": "--database",
    "host": "--host",
    "port": "--port",
    "workers": "--workers",
    "threads": "--threads",
    "log_sync": "--log-sync",
    "max_batch": "--max-batch",
    "time_limit": "--time-limit",
}
"""Library parameter/field name → the flag that sets it."""

ITEMS: dict[str, str] = {"bins": "{key}=EDGE,EDGE,..."}
"""How one entry of a mapping parameter is written on the command line (``bins['age']``)."""

_NAMED = re.compile(r"`(?P<name>[a-z_][a-z0-9_]*)(?:\[(?P<key>[^\]`]+)\]|=(?P<value>[^`]*))?`")


def _literal(text: str) -> object:
    """A Python literal as written in a message (``'dask'``, ``True``, ``3``), else the text itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def cli_message(message: object, **overrides: str) -> str:
    """``message`` (a library error or note) with the parameter names it mentions as flags.

    ``overrides`` map further names to flags for one command, e.g. ``path="--data"`` for the
    training table of ``recourse train``.
    """
    flags = {**FLAGS, **overrides}

    def swap(match: re.Match[str]) -> str:
        name, key, value = match.group("name", "key", "value")
        flag = flags.get(name)
        if flag is None:
            return match.group(0)
        if key is not None:
            item = ITEMS.get(name, "{key}")
            return f"{flag} {item.format(key=_literal(key))}"
        if value is None:
            return flag
        literal = _literal(value)
        if literal is True:
            return flag
        if literal is False:
            return f"--no-{flag.removeprefix('--')}"
        return f"{flag} {literal}"

    return _NAMED.sub(swap, str(message))


def field_flag(field: str) -> str:
    """The flag of a request-options field (``cost_weights.age`` → ``--cost-weight age``)."""
    if field in FLAGS:
        return FLAGS[field]
    head, _, rest = field.partition(".")
    flag = FLAGS.get(head, head)
    return f"{flag} {rest}" if rest and not rest.isdigit() else flag  # fixed.0 → --fix (the value is in the message)


def options_problem(errors: Iterable["FieldError"]) -> str:
    """One message for the options errors of a command, each named by its flag."""
    from recourse.schema import shorten

    lines = [f"  - {field_flag(e.field)}: {shorten(cli_message(e.message), 200)}" for e in errors]
    return "invalid options:\n" + "\n".join(lines)
