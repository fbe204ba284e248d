"""Service configuration: everything the app needs is passed in (no module-level state)."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class ServiceConfig(BaseModel):
    """Settings of one service instance.

    bundle: model bundle directory (None: the German demo bundle, built on first use).
    database: the explanation log: an SQLite file (WAL mode; a single machine) or a
        ``postgresql://USER@HOST:PORT/DB`` URL (one log shared by several instances); default
        ``$RECOURSE_DATABASE``, else ``$RECOURSE_HOME/service/explanations.sqlite3`` (:mod:`api.log`).
    api_key_hashes: accepted API keys, stored only as ``sha256:<hex>`` digests.
    api_key_roles: {digest: role} for keys that are not plain clients: ``auditor`` (reads every
        stored answer) or ``admin`` (reads and erases any); a client reads only its own answers.
    auth_required: False only for local demos (requests without an API key are accepted).
    max_batch: most applicants in one ``/v1/recourse/batch`` request.
    max_body_bytes: larger request bodies get 413.
    time_limit: seconds of solver time per engine call (rows not done by then: no recourse).
    request_timeout: seconds a request waits for its answer before a 503.
    max_solver_rows: most rows the micro-batcher hands the engine at once.
    max_queued_rows: most rows waiting for the solver; a request that would exceed it gets 503 with
        ``Retry-After`` at once (a lone request always fits).
    batch_wait: the micro-batcher's adaptive gathering window, at most this many seconds (and at
        most half the last solve's time); 0 turns it off (see :mod:`api.batching`).
    seed: recorded with every answer (the solver is deterministic; the seed is set before each call).
    log_sync: durability of the log's commits: ``full`` (an answer survives a power cut) or
        ``normal`` (survives a killed process; faster commits): SQLite's ``synchronous``, PostgreSQL's
        ``synchronous_commit`` (``on``/``off``).
    cors_origins: web origins (``https://app.example``) whose pages may call the API from a browser
        (``*``: any); their preflight requests are answered without a key.  Empty: none.
    """

    model_config = ConfigDict(extra="forbid")

    bundle: Path | None = None
    database: Path | str = Field(default_factory=lambda: _default_database())
    api_key_hashes: list[str] = Field(default_factory=list)
    api_key_roles: dict[str, Literal["client", "auditor", "admin"]] = Field(default_factory=dict)
    auth_required: bool = True
    max_batch: int = Field(default=1000, ge=1)
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    time_limit: float | None = Field(default=5.0, gt=0)
    request_timeout: float = Field(default=30.0, gt=0)
    max_solver_rows: int = Field(default=1024, ge=1)
    max_queued_rows: int = Field(default=4096, ge=1)
    batch_wait: float = Field(default=0.008, ge=0, le=1.0)
    seed: int = 0
    log_sync: Literal["full", "normal"] = "full"
    cors_origins: list[str] = Field(default_factory=list)

    @field_validator("database", mode="before")
    @classmethod
    def _database(cls, value: object) -> Path | str:
        """A file path (SQLite) or a PostgreSQL URL; a URL of another kind is refused."""
        from .log import parse_target

        return parse_target(value) if isinstance(value, (str, Path)) else value  # type: ignore[return-value]


def _default_database() -> Path | str:
    from .log import default_database

    return default_database()
