"""The embedded back end: one SQLite file on one machine (the default).

WAL mode with ``synchronous=FULL`` by default (a committed answer survives a killed process and
a power cut; ``normal``: a killed process only, with cheaper commits).  Safe across threads (one
connection per thread) and processes on the same machine (SQLite's WAL locking: write
transactions begin ``IMMEDIATE``, one at a time).  Deleted rows are overwritten
(``secure_delete``) and the WAL is checkpointed and truncated after each deletion.  A new file
has mode 0600 (the answers are personal data).
"""
from __future__ import annotations

import errno
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .base import ExplanationLog, LogOpenError, Migration

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


def _add_owner(conn: sqlite3.Connection) -> None:
    """The owner column, unless the log already has it (logs written before schema versions were
    kept got it on open)."""
    if "owner" not in {row[1] for row in conn.execute("PRAGMA table_info(answers)")}:
        conn.execute("ALTER TABLE answers ADD COLUMN owner TEXT")


MIGRATIONS = (
    # every step may find its work done: a log written before schema versions were kept has no
    # schema_version table but some of these tables and columns
    Migration(1, "answers", (
        "CREATE TABLE IF NOT EXISTS answers (id TEXT PRIMARY KEY, created TEXT NOT NULL, kind TEXT NOT NULL, "
        "bundle_hash TEXT NOT NULL, digest TEXT NOT NULL, seed INTEGER NOT NULL, request TEXT NOT NULL, "
        "answer TEXT NOT NULL, response TEXT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS answers_by_request ON answers (bundle_hash, digest)",
    )),
    Migration(2, "owners and erasures", (
        _add_owner,
        'CREATE TABLE IF NOT EXISTS erasures (at TEXT NOT NULL, kind TEXT NOT NULL, detail TEXT NOT NULL, '
        'count INTEGER NOT NULL, "by" TEXT NOT NULL)',
    )),
)

_HINTS = {"file is not a database": "the file exists and is not an SQLite database",
          "unable to open database file": "cannot open or create the file (does its folder allow writing?)",
          "attempt to write a readonly database": "the file is read-only"}


class SqliteLog(ExplanationLog):
    """The explanation log in an SQLite file (one connection per thread; see the module's documentation)."""

    ORDER = "rowid"
    MIGRATIONS = MIGRATIONS

    def _prepare(self, database: str | Path) -> None:
        self.path = Path(database)
        self.name = str(self.path)
        self._local = threading.local()
        if self.path.is_dir():
            raise LogOpenError(f"{self.path}: is a directory; give the path of a database file")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        create_private(self.path)

    @contextmanager
    def _explained(self) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            why = "part of that path is a file" if exc.errno in (errno.EEXIST, errno.ENOTDIR) else exc.strerror or str(exc)
            raise LogOpenError(f"{self.path}: cannot create its folder {self.path.parent} ({why})") from None
        except sqlite3.DatabaseError as exc:
            hint = _HINTS.get(str(exc), f"cannot use it as an SQLite database ({exc})")
            raise LogOpenError(f"{self.path}: {hint}") from None

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
        try:
            self._enter_wal(conn)
            conn.execute(f"PRAGMA synchronous={self.sync.upper()}")
            conn.execute(f"PRAGMA busy_timeout={int(self.timeout * 1000)}")
            conn.execute("PRAGMA secure_delete=ON")  # a deleted row's pages are overwritten with zeros
        except BaseException:
            conn.close()
            raise
        return conn

    def _enter_wal(self, conn: sqlite3.Connection) -> None:
        """Put the file in WAL mode (persistent: later connections only read it).

        Switching a new file's journal mode takes an exclusive lock and SQLite answers "database
        is locked" at once, without its busy handler, while another connection (another instance
        starting at the same moment) holds one; so retry until the log's timeout."""
        deadline = time.monotonic() + self.timeout
        pause = 0.001
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                    raise
                time.sleep(pause)
                pause = min(pause * 2, 0.05)

    @property
    def connection(self) -> sqlite3.Connection:
        """This thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    @contextmanager
    def _session(self, timeout: float | None = None) -> Iterator[sqlite3.Connection]:
        yield self.connection  # never waits: each thread has its own

    @contextmanager
    def _atomic(self, conn: Any) -> Iterator[None]:
        conn.execute("BEGIN IMMEDIATE")  # the write lock now: one writer at a time, across processes
        try:
            yield
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _scrub(self) -> None:
        self.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # no copy of the deleted rows left in the WAL

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            self._local.conn = None
            conn.close()
