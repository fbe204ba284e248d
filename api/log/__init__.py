"""The explanation log: every answer the service gives, stored durably before it is sent.

One row per answer::

    id, created, kind, bundle_hash, digest, seed, request, answer, response, owner

``digest`` is SHA-256 of the canonical request (validated applicant and effective options);
``answer`` is the answer's content (JSON without ``id``/``created``) and ``response`` the exact
bytes sent; ``owner`` the digest of the API key that asked (NULL without authentication, and for
answers logged before owners were kept): a client reads only its own answers, an auditor or
admin every one (:mod:`api.keys`).  :meth:`ExplanationLog.erase` and :meth:`ExplanationLog.purge`
delete answers for good and record each erasure in ``erasures`` (when, what, how many, by whom).
:meth:`ExplanationLog.record` reuses the stored content of an earlier answer to the same request
on the same bundle, so the same question always gets the same answer.  The schema is versioned
(``schema_version``): opening a log applies the migrations it has not had, in order.

Two back ends behind one interface (:class:`ExplanationLog`, rules in :mod:`.base`), chosen by the
``database`` setting (:func:`parse_target`):

* a file path → :mod:`.sqlite`, the embedded default for a single machine;
* a ``postgresql://`` (or ``postgres://``) URL → :mod:`.postgres`, one log shared by every
  instance of the service on any machine.

Where no database is given, ``$RECOURSE_DATABASE`` names one, else
``$RECOURSE_HOME/service/explanations.sqlite3`` (:func:`default_database`).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from .base import (COLUMNS, ID_DIGITS, Entry, ExplanationLog, LogOpenError, Migration, canonical, digest_of,
                   is_answer_id)

ENVIRONMENT = "RECOURSE_DATABASE"
"""The environment variable naming the log where no ``--database`` is given."""
POSTGRES_SCHEMES = ("postgresql", "postgres")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def parse_target(database: str | Path) -> str | Path:
    """The log ``database`` names: a PostgreSQL URL (returned as a string) or an SQLite file
    (a :class:`~pathlib.Path`).  ValueError for a URL of another kind (``mysql://...``) or nothing."""
    if isinstance(database, Path):
        return database
    text = str(database)
    match = _SCHEME.match(text)
    if match is None:
        if not text.strip():
            raise ValueError("is empty: give a file path (SQLite) or a postgresql:// URL")
        return Path(text)
    if match.group(1).lower() in POSTGRES_SCHEMES:
        return text
    from .postgres import redact

    raise ValueError(f"{redact(text)}: {match.group(1)}:// databases are not supported; give a postgresql://USER@HOST:PORT/DB "
                     "URL for PostgreSQL, or a file path for SQLite")


def backend_for(database: str | Path) -> type[ExplanationLog]:
    """The :class:`ExplanationLog` class of the back end that ``database`` names."""
    if isinstance(parse_target(database), Path):
        from .sqlite import SqliteLog

        return SqliteLog
    from .postgres import PostgresLog

    return PostgresLog


def describe(database: str | Path) -> str:
    """``database`` for messages: a path as it is, a URL without its password."""
    target = parse_target(database)
    if isinstance(target, Path):
        return str(target)
    from .postgres import redact

    return redact(target)


def default_database() -> str | Path:
    """``$RECOURSE_DATABASE`` where set, else ``$RECOURSE_HOME/service/explanations.sqlite3``."""
    from recourse.bundle import recourse_home

    return parse_target(os.environ.get(ENVIRONMENT) or recourse_home() / "service" / "explanations.sqlite3")


__all__ = ["COLUMNS", "ENVIRONMENT", "ID_DIGITS", "Entry", "ExplanationLog", "LogOpenError", "Migration", "backend_for",
           "canonical", "default_database", "describe", "digest_of", "is_answer_id", "parse_target"]
