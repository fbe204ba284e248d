"""The back-end-neutral explanation log: every rule is written here once.

A back end (:mod:`.sqlite`, :mod:`.postgres`) supplies only connections, transactions, its
schema migrations and what "deleted for good" means to its storage; the SQL here is written
with ``?`` placeholders (a back end may translate them) and runs unchanged on both.
"""
from __future__ import annotations

import hashlib
import json
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Sequence, Union

from recourse.promises import Promise

ID_DIGITS = 32
"""Answer ids are ``uuid4().hex``: this many lowercase hexadecimal digits."""

COLUMNS = ("id", "created", "kind", "bundle_hash", "digest", "seed", "request", "answer", "response", "owner")
"""The columns of one stored answer, as :meth:`ExplanationLog.row` returns them."""
ERASURE_COLUMNS = ("at", "kind", "detail", "count", "by")
"""The columns of one recorded erasure or purge."""
_ERASURE_SELECT = ", ".join('"by"' if c == "by" else c for c in ERASURE_COLUMNS)  # BY is an SQL keyword


def is_answer_id(text: str) -> bool:
    """Whether ``text`` has the form of an answer id (checked before the database is asked)."""
    return len(text) == ID_DIGITS and all(c in "0123456789abcdef" for c in text)


def canonical(value: Any) -> str:
    """Canonical JSON (sorted keys, no spaces) used for digests and stored content."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def digest_of(value: Any) -> str:
    return hashlib.sha256(canonical(value).encode()).hexdigest()


def lock_key(text: str) -> int:
    """A signed 64-bit key for ``text`` (PostgreSQL's advisory locks take one)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big", signed=True)


PING_SECONDS = 2.0
"""How long the readiness check waits for the log (a pool's free connection, a reconnect)."""
SCHEMA_LOCK = lock_key("recourse explanation log: schema")
"""Held while the schema is migrated: instances starting at once migrate one after the other."""


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


class LogOpenError(ValueError):
    """The log cannot be opened, created or migrated.  The message starts with the database (a
    path, or a URL without its password) and says why in one line, e.g. ``"/srv/log.db: the
    file is read-only"``."""


Step = Union[str, Callable[[Any], None]]
"""One step of a migration: an SQL statement, or a function of the connection (for a step that
must look first, e.g. add a column only where an older version of the code has not)."""


@dataclass(frozen=True)
class Migration:
    """Schema version ``version``: what it adds (``note``) and its steps, applied in one transaction."""

    version: int
    note: str
    steps: tuple[Step, ...]


SCHEMA_VERSION_TABLE = ("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
                        "applied TEXT NOT NULL, note TEXT NOT NULL)")
"""One row per migration applied to this log (the same statement on both back ends)."""


def _now(fraction: bool = False) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    return stamp + (f".{time.time_ns() // 1000 % 1_000_000:06d}Z" if fraction else "Z")


class ExplanationLog:
    """Durable, append-only store of answers, retrievable by id.

    ``ExplanationLog(database)`` opens the back end that ``database`` names (:func:`api.log.parse_target`):
    a ``postgresql://`` URL → :class:`~api.log.postgres.PostgresLog`; a file path →
    :class:`~api.log.sqlite.SqliteLog`.  Opening creates the tables if needed and applies the
    migrations the log has not had yet (:meth:`migrate`).  ``sync``: ``full`` (a committed answer
    survives a power cut) or ``normal`` (a killed process only; cheaper commits).
    Driver errors while opening are raised as :class:`LogOpenError`.
    """

    ORDER: ClassVar[str] = "rowid"
    """The column that orders rows as they were inserted."""
    MIGRATIONS: ClassVar[tuple[Migration, ...]] = ()
    """The back end's schema, version by version (oldest first)."""

    def __new__(cls, database: str | Path, *args: Any, **kwargs: Any) -> "ExplanationLog":
        if cls is ExplanationLog:
            from . import backend_for

            cls = backend_for(database)
        return super().__new__(cls)

    def __init__(self, database: str | Path, timeout: float = 30.0, sync: str = "full"):
        if sync not in ("full", "normal"):
            raise ValueError(f"sync must be 'full' or 'normal', got {sync!r}")
        self.sync = sync
        self.timeout = timeout
        with self._explained():
            self._prepare(database)
            self.migrate()

    name: str
    """The database for messages (a path, or a URL without its password)."""

    # ------------------------------------------------------------------ what a back end supplies
    def _prepare(self, database: str | Path) -> None:
        """Keep the settings of ``database`` (and :attr:`name`), and create what a new log needs
        before connecting."""
        raise NotImplementedError

    @contextmanager
    def _explained(self) -> Iterator[None]:
        """Driver errors while opening → :class:`LogOpenError` (one line, naming the database)."""
        yield

    def _connect(self) -> Any:
        """A new connection in autocommit mode (the caller closes it)."""
        raise NotImplementedError

    @contextmanager
    def _session(self, timeout: float | None = None) -> Iterator[Any]:
        """A connection for one operation (shared: per thread, or from a pool where one is free
        within ``timeout`` seconds, default the log's ``timeout``)."""
        raise NotImplementedError
        yield

    @contextmanager
    def _atomic(self, conn: Any) -> Iterator[None]:
        """One write transaction on ``conn``: committed on exit, rolled back on an error."""
        raise NotImplementedError
        yield

    def _sql(self, text: str) -> str:
        """``text`` with the driver's placeholders (written with ``?``)."""
        return text

    def _lock(self, conn: Any, keys: Sequence[int]) -> None:
        """Within the transaction on ``conn``, serialise it with every other transaction holding
        one of ``keys`` (sorted), in any process.  A back end whose write transactions are already
        serialised (SQLite's) has nothing to do."""

    def _scrub(self) -> None:
        """After a deletion: leave no copy of the deleted rows in the database's files."""

    def close(self) -> None:
        """Close the connections this object holds (it reconnects when used again)."""

    # ------------------------------------------------------------------ schema
    def migrate(self) -> int:
        """Apply, in order, each migration newer than the log's schema version, all in one
        transaction that holds the schema lock (two instances starting at once: the second finds
        the work done).  Returns the version now.  A log with a newer schema than this code knows
        is refused (:class:`LogOpenError`)."""
        newest = self.MIGRATIONS[-1].version
        conn = self._connect()
        try:
            with self._atomic(conn):
                self._lock(conn, [SCHEMA_LOCK])
                conn.execute(SCHEMA_VERSION_TABLE)
                current = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0
                if current > newest:
                    raise LogOpenError(f"{self.name}: its schema is version {current}, newer than this recourse "
                                       f"knows ({newest}); upgrade recourse")
                for migration in self.MIGRATIONS:
                    if migration.version <= current:
                        continue
                    for step in migration.steps:
                        step(conn) if callable(step) else conn.execute(step)
                    conn.execute(self._sql("INSERT INTO schema_version (version, applied, note) VALUES (?, ?, ?)"),
                                 (migration.version, _now(), migration.note))
        finally:
            conn.close()
        return newest

    def schema_version(self) -> list[dict[str, Any]]:
        """The migrations applied to this log, oldest first."""
        return self._dicts("SELECT version, applied, note FROM schema_version ORDER BY version")

    # ------------------------------------------------------------------ answers
    def execute(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        """Run one statement (``?`` placeholders) on the log; its rows (none for a change).
        For maintenance and tests: the service itself uses the methods below."""
        with self._session() as conn:
            cur = conn.execute(self._sql(sql), tuple(args))
            return cur.fetchall() if cur.description else []

    def _dicts(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._session() as conn:
            cur = conn.execute(self._sql(sql), tuple(args))
            names = [c[0] for c in cur.description]
            return [dict(zip(names, row)) for row in cur.fetchall()]

    def known_answers(self, bundle_hash: str, entries: Sequence[Entry]) -> dict[str, str]:
        """Stored answer content for the entries asked before (digest → canonical answer)."""
        with self._session() as conn:
            return self._known(conn, bundle_hash, entries)

    def _known(self, conn: Any, bundle_hash: str, entries: Sequence[Entry]) -> dict[str, str]:
        digests = sorted({e.digest for e in entries})
        found: dict[str, str] = {}
        for start in range(0, len(digests), 500):
            chunk = digests[start:start + 500]
            marks = ",".join("?" * len(chunk))
            rows = conn.execute(self._sql(f"SELECT digest, answer FROM answers WHERE bundle_hash = ? AND digest IN ({marks}) "
                                          f"ORDER BY {self.ORDER}"), [bundle_hash, *chunk]).fetchall()
            for digest, answer in rows:
                found.setdefault(digest, answer)  # the first answer given to that request
        return found

    def record(self, bundle_hash: str, seed: int, entries: Sequence[Entry]) -> list[dict[str, Any]]:
        """Store the answers (one transaction, durable when it returns); return per entry its
        ``id``, ``answer`` (the content) and ``text`` (the exact response: id and time, then the content).

        Each gets a new id and time; an earlier answer to the same request on the same bundle is
        reused as the content, so repeated questions get identical answers (also when two
        instances are asked the same new question at once: the requests are locked first).
        """
        created = _now(fraction=True)
        with self._session() as conn, self._atomic(conn):
            self._lock(conn, sorted({lock_key(f"{bundle_hash}:{e.digest}") for e in entries}))
            known = self._known(conn, bundle_hash, entries)
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
            cur = conn.cursor()
            cur.executemany(self._sql(f"INSERT INTO answers ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"),
                            rows)
            cur.close()
        return out

    def response(self, answer_id: str, owner: str | None = None, every: bool = True) -> str | None:
        """The exact response text of an earlier answer, or None; unless ``every``, only an answer
        whose owner is ``owner``."""
        if every:
            rows = self.execute("SELECT response FROM answers WHERE id = ?", (answer_id,))
        elif owner is None:
            rows = self.execute("SELECT response FROM answers WHERE id = ? AND owner IS NULL", (answer_id,))
        else:
            rows = self.execute("SELECT response FROM answers WHERE id = ? AND owner = ?", (answer_id, owner))
        return rows[0][0] if rows else None

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
        with self._session() as conn, self._atomic(conn):
            count = conn.execute(self._sql(f"DELETE FROM answers WHERE {where}"), args).rowcount
            if count or kind == "purge":  # every purge run is recorded; an erasure of nothing is not one
                conn.execute(self._sql(f"INSERT INTO erasures ({_ERASURE_SELECT}) VALUES (?, ?, ?, ?, ?)"),
                             (_now(), kind, detail, count, by))
        self._scrub()
        return count

    def erasures(self) -> list[dict[str, Any]]:
        """The recorded erasures and purges, oldest first."""
        return self._dicts(f"SELECT {_ERASURE_SELECT} FROM erasures ORDER BY {self.ORDER}")

    def row(self, answer_id: str) -> dict[str, Any] | None:
        """Everything stored for one answer (for audits)."""
        rows = self._dicts(f"SELECT {', '.join(COLUMNS)} FROM answers WHERE id = ?", (answer_id,))
        return rows[0] if rows else None

    def promises(self, other_than: str | None = None) -> list[Promise]:
        """The recourse answers that promised a counterfactual (oldest first), each once by id;
        ``other_than``: leave out the answers given by that bundle hash."""
        query = "SELECT id, created, bundle_hash, request, answer FROM answers WHERE kind = 'recourse'"
        args: list[Any] = []
        if other_than is not None:
            query += " AND bundle_hash <> ?"
            args.append(other_than)
        out = []
        for answer_id, created, _, request, answer in self.execute(f"{query} ORDER BY {self.ORDER}", args):
            content = json.loads(answer)
            if content.get("status") != "recourse_found" or not content.get("counterfactual"):
                continue
            asked = json.loads(request)
            out.append(Promise(answer_id, content.get("applicant", {}), content["counterfactual"],
                               (content.get("target") or {}).get("value"), asked.get("min_probability"), created))
        return out

    def count(self) -> int:
        return int(self.execute("SELECT COUNT(*) FROM answers")[0][0])

    def ping(self) -> bool:
        """Whether the log answers a query within :data:`PING_SECONDS` (for the readiness check)."""
        try:
            with self._session(timeout=PING_SECONDS) as conn:
                conn.execute("SELECT 1").fetchall()
            return True
        except Exception:  # any driver's error, a closed pool, a timeout: not ready
            return False
