"""The explanation log: every answer the service gives, stored durably before it is sent.

An embedded SQLite database in WAL mode with ``synchronous=FULL`` by default (a committed answer
survives a killed process and a power cut; ``normal``: a killed process only, with cheaper commits).  One row per answer::

    id, created, kind, bundle_hash, digest, seed, request, answer, response, owner

``digest`` is SHA-256 of the canonical request (validated applicant and effective options);
``answer`` is the answer's content (JSON without ``id``/``created``) and ``response``
the exact bytes sent; ``owner`` the digest of the API key that asked (NULL without
authentication, and for answers logged before owners were kept): a client reads only its own
answers, an auditor or admin every one (:mod:`api.keys`).  :meth:`ExplanationLog.erase` and
:meth:`ExplanationLog.purge` delete answers for good (SQLite's ``secure_delete``, then a WAL
checkpoint) and record each erasure in ``erasures`` (when, what, how many, by whom).
:meth:`ExplanationLog.record` reuses the stored content of an earlier
answer to the same request on the same bundle, so the same question always gets the same answer.
Safe across threads (one connection per thread) and processes (SQLite's WAL locking).
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from recourse.promises import Promise

SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    id          TEXT PRIMARY KEY,
    created     TEXT NOT NULL,
    kind        TEXT NOT NULL,
    bundle_hash TEXT NOT NULL,
    digest      TEXT NOT NULL,
    seed        INTEGER NOT NULL,
    request     TEXT NOT NULL,
    answer      TEXT NOT NULL,
    response    TEXT NOT NULL,
    owner       TEXT
);
CREATE INDEX IF NOT EXISTS answers_by_request ON answers (bundle_hash, digest);
CREATE TABLE IF NOT EXISTS erasures (
    at          TEXT NOT NULL,
    kind        TEXT NOT NULL,
    detail      TEXT NOT NULL,
    count       INTEGER NOT NULL,
    by          TEXT NOT NULL
);
"""
MIGRATIONS = (("owner", "ALTER TABLE answers ADD COLUMN owner TEXT"),)
"""Columns added since the first version (a log written before gets them on open; old rows: NULL)."""


ID_DIGITS = 32
"""Answer ids are ``uuid4().hex``: this many lowercase hexadecimal digits."""


def is_answer_id(text: str) -> bool:
    """Whether ``text`` has the form of an answer id (checked before the database is asked)."""
    return len(text) == ID_DIGITS and all(c in "0123456789abcdef" for c in text)


def canonical(value: Any) -> str:
    """Canonical JSON (sorted keys, no spaces) used for digests and stored content."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def digest_of(value: Any) -> str:
    return hashlib.sha256(canonical(value).encode()).hexdigest()


FILE_MODE = 0o600
"""Mode of a new log database: the answers are personal data, for the service's user only."""


def create_private(path: Path) -> None:
    """Create ``path`` empty with mode 0600 unless it exists (an existing file keeps its mode).

    SQLite then gives the ``-wal`` and ``-shm`` files it creates the mode of the database file
    (and sets it explicitly, whatever the umask), so they are 0600 too.  An empty file is a valid
    empty database."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except OSError:  # it exists, or cannot be created: then SQLite's own open reports why
        return
    try:
        os.fchmod(fd, FILE_MODE)  # exactly 0600, whatever the umask
    finally:
        os.close(fd)


@dataclass
class Entry:
    """One answer to log: what was asked and the answer's content."""

    kind: str
    request: dict[str, Any]
    answer: dict[str, Any]
    owner: str | None = None
    """The digest of the API key that asked (not part of the request's digest)."""

    @property
    def digest(self) -> str:
        return digest_of({"kind": self.kind, "request": self.request})


class ExplanationLog:
    """Durable, append-only store of answers, retrievable by id."""

    def __init__(self, path: str | Path, timeout: float = 30.0, sync: str = "full"):
        if sync not in ("full", "normal"):
            raise ValueError(f"sync must be 'full' or 'normal', got {sync!r}")
        self.sync = sync
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        create_private(self.path)
        self.timeout = timeout
        self._local = threading.local()
        conn = self._connect()  # a throwaway connection, closed: none is left open across a fork
        try:
            conn.executescript(SCHEMA)
            have = {row[1] for row in conn.execute("PRAGMA table_info(answers)")}
            for column, statement in MIGRATIONS:
                if column not in have:
                    conn.execute(statement)
        finally:
            conn.close()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.sync.upper()}")
        conn.execute(f"PRAGMA busy_timeout={int(self.timeout * 1000)}")
        return conn

    @property
    def connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    def known_answers(self, bundle_hash: str, entries: Sequence[Entry]) -> dict[str, str]:
        """Stored answer content for the entries asked before (digest → canonical answer)."""
        digests = sorted({e.digest for e in entries})
        found: dict[str, str] = {}
        for start in range(0, len(digests), 500):
            chunk = digests[start:start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self.connection.execute(
                f"SELECT digest, answer FROM answers WHERE bundle_hash = ? AND digest IN ({marks}) ORDER BY rowid",
                [bundle_hash, *chunk]).fetchall()
            for digest, answer in rows:
                found.setdefault(digest, answer)
        return found

    def record(self, bundle_hash: str, seed: int, entries: Sequence[Entry]) -> list[dict[str, Any]]:
        """Store the answers (one transaction, fsynced); return per entry its ``id``, ``answer``
        (the content) and ``text`` (the exact response: id and time, then the content).

        Each gets a new id and time; an earlier answer to the same request on the same bundle is
        reused as the content, so repeated questions get identical answers.
        """
        created = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{time.time_ns() // 1000 % 1_000_000:06d}Z"
        conn = self.connection
        conn.execute("BEGIN IMMEDIATE")
        try:
            known = self.known_answers(bundle_hash, entries)
            out, rows = [], []
            for entry in entries:
                digest = entry.digest
                content = known.get(digest)
                if content is None:
                    content = known[digest] = json.dumps(entry.answer, separators=(",", ":"), allow_nan=False)
                    answer = entry.answer
                else:
                    answer = json.loads(content)
                answer_id = uuid.uuid4().hex
                head = json.dumps({"id": answer_id, "created": created}, separators=(",", ":"))
                text = head[:-1] + ("," + content[1:] if content != "{}" else "}")
                rows.append((answer_id, created, entry.kind, bundle_hash, digest, seed, canonical(entry.request), content, text,
                             entry.owner))
                out.append({"id": answer_id, "answer": answer, "text": text})
            conn.executemany("INSERT INTO answers (id, created, kind, bundle_hash, digest, seed, request, answer, response, "
                             "owner) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return out

    def response(self, answer_id: str, owner: str | None = None, every: bool = True) -> str | None:
        """The exact response text of an earlier answer, or None; unless ``every``, only an answer
        whose owner is ``owner``."""
        if every:
            row = self.connection.execute("SELECT response FROM answers WHERE id = ?", (answer_id,)).fetchone()
        else:
            row = self.connection.execute("SELECT response FROM answers WHERE id = ? AND owner IS ?",
                                          (answer_id, owner)).fetchone()
        return row[0] if row else None

    # ------------------------------------------------------------------ erasure
    def erase(self, answer_id: str, by: str) -> bool:
        """Delete one answer for good and record the erasure; False when no such answer exists."""
        return self._delete("erase", answer_id, "id = ?", (answer_id,), by) > 0

    def purge(self, older_than_days: float, by: str) -> int:
        """Delete every answer created more than ``older_than_days`` days ago and record the purge;
        the number deleted."""
        if not (isinstance(older_than_days, (int, float)) and older_than_days >= 0):
            raise ValueError(f"older_than_days must be a number ≥ 0, got {older_than_days!r}")
        cutoff = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - older_than_days * 86400.0))
        return self._delete("purge", f"created before {cutoff}Z", "created < ?", (cutoff,), by)

    def _delete(self, kind: str, detail: str, where: str, args: tuple, by: str) -> int:
        conn = self.connection
        conn.execute("PRAGMA secure_delete=ON")  # the freed pages are overwritten with zeros
        conn.execute("BEGIN IMMEDIATE")
        try:
            count = conn.execute(f"DELETE FROM answers WHERE {where}", args).rowcount
            if count or kind == "purge":  # every purge run is recorded; an erasure of nothing is not one
                conn.execute("INSERT INTO erasures VALUES (?, ?, ?, ?, ?)",
                             (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), kind, detail, count, by))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # no copy of the deleted rows left in the WAL
        return count

    def erasures(self) -> list[dict[str, Any]]:
        """The recorded erasures and purges, oldest first."""
        cur = self.connection.execute("SELECT * FROM erasures ORDER BY rowid")
        names = [c[0] for c in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]

    def row(self, answer_id: str) -> dict[str, Any] | None:
        """Everything stored for one answer (for audits)."""
        cur = self.connection.execute("SELECT * FROM answers WHERE id = ?", (answer_id,))
        row = cur.fetchone()
        return dict(zip([c[0] for c in cur.description], row)) if row else None

    def promises(self, other_than: str | None = None) -> list[Promise]:
        """The recourse answers that promised a counterfactual (oldest first), each once by id;
        ``other_than``: leave out the answers given by that bundle hash."""
        query = "SELECT id, created, bundle_hash, request, answer FROM answers WHERE kind = 'recourse'"
        args: list[Any] = []
        if other_than is not None:
            query += " AND bundle_hash != ?"
            args.append(other_than)
        out = []
        for answer_id, created, _, request, answer in self.connection.execute(query + " ORDER BY rowid", args):
            content = json.loads(answer)
            if content.get("status") != "recourse_found" or not content.get("counterfactual"):
                continue
            asked = json.loads(request)
            out.append(Promise(answer_id, content.get("applicant", {}), content["counterfactual"],
                               (content.get("target") or {}).get("value"), asked.get("min_probability"), created))
        return out

    def count(self) -> int:
        return int(self.connection.execute("SELECT COUNT(*) FROM answers").fetchone()[0])

    def ping(self) -> bool:
        try:
            self.connection.execute("SELECT 1").fetchone()
            return True
        except sqlite3.Error:
            return False
