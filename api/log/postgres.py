"""The shared back end: PostgreSQL (psycopg 3), one log that every instance of the service
writes and any instance reads back.

Chosen by a ``postgresql://USER@HOST:PORT/DB`` (or ``postgres://``) URL, as libpq reads it
(``?sslmode=require``, ``?options=-csearch_path%3Dlending`` for a schema of its own; a password
is better kept in ``~/.pgpass`` or ``PGPASSWORD`` than in the URL).  Each process keeps a small
pool of connections, opened on first use (after gunicorn's fork).  ``sync=full`` commits with
``synchronous_commit=on`` (an acknowledged answer is on the server's disk); ``normal`` with
``off`` (a killed service process loses nothing, a crash of the database server may lose the
last fraction of a second).  Write transactions lock the requests they store (advisory locks),
so two instances asked the same new question at once store one answer's content; the schema is
migrated under an advisory lock too.  Deleted rows are vacuumed away after each deletion (their
bytes may stay in PostgreSQL's WAL and free space until overwritten: encrypt the disk).
"""
from __future__ import annotations

import os
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg_pool import ConnectionPool

from .base import ExplanationLog, LogOpenError, Migration

POOL_SIZE = 8
"""Most connections one process keeps (the request threads share them; a worker rarely needs more)."""
CONNECT_SECONDS = 10
"""How long a connection attempt may take, unless the URL says (``connect_timeout``)."""

MIGRATIONS = (
    Migration(1, "answers", (
        'CREATE TABLE answers (seq BIGINT GENERATED ALWAYS AS IDENTITY, id TEXT PRIMARY KEY, '
        'created TEXT COLLATE "C" NOT NULL, kind TEXT NOT NULL, bundle_hash TEXT NOT NULL, digest TEXT NOT NULL, '
        'seed BIGINT NOT NULL, request TEXT NOT NULL, answer TEXT NOT NULL, response TEXT NOT NULL)',
        "CREATE INDEX answers_by_request ON answers (bundle_hash, digest, seq)",
        "CREATE INDEX answers_by_time ON answers (created)",
    )),
    Migration(2, "owners and erasures", (
        "ALTER TABLE answers ADD COLUMN owner TEXT",
        'CREATE TABLE erasures (seq BIGINT GENERATED ALWAYS AS IDENTITY, at TEXT NOT NULL, kind TEXT NOT NULL, '
        'detail TEXT NOT NULL, count BIGINT NOT NULL, "by" TEXT NOT NULL)',
    )),
)


def redact(url: str) -> str:
    """``url`` without its password (for messages and logs)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.partition(':')[0]}:***@{host}"
    query = urlencode([(k, "***" if k == "password" else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)])
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def one_line(exc: BaseException) -> str:
    """A driver's message (libpq's run over several lines) on one line."""
    return " ".join(str(exc).split()) or type(exc).__name__


def with_search_path(url: str, schema: str) -> str:
    """``url`` whose connections use ``schema`` (libpq's ``options=-csearch_path=...``)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    options = " ".join([v for k, v in query if k == "options"] + [f"-csearch_path={schema}"])
    query = [(k, v) for k, v in query if k != "options"] + [("options", options)]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


@contextmanager
def scratch_schema(url: str, prefix: str = "recourse_scratch") -> Iterator[str]:
    """A new, empty schema in the database of ``url``, for a log of its own (tests, benchmarks):
    yields the URL whose connections use it; the schema is dropped, with all in it, afterwards."""
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield with_search_path(url, schema)
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


class PostgresLog(ExplanationLog):
    """The explanation log in a PostgreSQL database: a pool of connections per process, opened on
    first use; rows ordered by an identity column (``seq``) as PostgreSQL has no ``rowid``."""

    ORDER = "seq"
    MIGRATIONS = MIGRATIONS

    def _prepare(self, database: str | Path) -> None:
        self.url = str(database)
        self.name = redact(self.url)
        self._pool: ConnectionPool | None = None
        self._pool_pid = 0
        self._pool_lock = threading.Lock()

    @contextmanager
    def _explained(self) -> Iterator[None]:
        try:
            yield
        except psycopg.OperationalError as exc:
            raise LogOpenError(f"{self.name}: cannot connect to PostgreSQL ({one_line(exc)})") from None
        except psycopg.Error as exc:  # e.g. no right to create tables there
            raise LogOpenError(f"{self.name}: {one_line(exc)}") from None

    def _settings(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"autocommit": True}
        if "connect_timeout" not in self.url:
            extra["connect_timeout"] = CONNECT_SECONDS
        return extra

    def _configure(self, conn: psycopg.Connection) -> None:
        conn.execute(f"SET synchronous_commit TO {'on' if self.sync == 'full' else 'off'}")

    def _connect(self) -> psycopg.Connection:
        conn = psycopg.connect(self.url, **self._settings())
        self._configure(conn)
        return conn

    def _pooled(self) -> ConnectionPool:
        """This process's pool, opened on first use (a pool inherited across a fork is left alone)."""
        with self._pool_lock:
            if self._pool is None or self._pool_pid != os.getpid():
                pool = ConnectionPool(self.url, kwargs=self._settings(), min_size=1, max_size=POOL_SIZE, open=False,
                                      configure=self._configure, check=ConnectionPool.check_connection,
                                      timeout=self.timeout, name="recourse-log")
                try:
                    pool.open(wait=True, timeout=self.timeout)
                except BaseException:
                    pool.close()
                    raise
                self._pool, self._pool_pid = pool, os.getpid()
            return self._pool

    @contextmanager
    def _session(self, timeout: float | None = None) -> Iterator[psycopg.Connection]:
        with self._pooled().connection(timeout=timeout) as conn:
            yield conn

    @contextmanager
    def _atomic(self, conn: Any) -> Iterator[None]:
        with conn.transaction():
            yield

    def _sql(self, text: str) -> str:
        return text.replace("?", "%s")

    def _lock(self, conn: Any, keys: Sequence[int]) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(k) FROM unnest(%s::bigint[]) AS k", (list(keys),))

    def _scrub(self) -> None:
        with self._session() as conn:
            conn.execute("VACUUM answers")  # the dead rows' space is freed for reuse (and overwritten)

    def close(self) -> None:
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None and self._pool_pid == os.getpid():
            pool.close()
