"""The explanation log on each back end (SQLite, and PostgreSQL on a throwaway server the test run
starts): durable records, reuse of earlier answers, byte-for-byte reads, owners, erasure and its
record, versioned migrations (also when instances open a new log at once), and how the
``database`` setting chooses the back end."""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from api import ServiceConfig
from api.log import ENVIRONMENT, Entry, ExplanationLog, LogOpenError, default_database, parse_target
from api.log.postgres import PostgresLog, redact, scratch_schema, with_search_path
from api.log.sqlite import SqliteLog
from api.server import ServeError, check_database, serve

PROMISE = {"status": "recourse_found", "applicant": {"age": 21}, "counterfactual": {"age": 25}, "target": {"value": 1}}


def test_answers_are_durable_reused_and_read_back_byte_for_byte(log_database):
    log = ExplanationLog(log_database)
    first = log.record("h1", 0, [Entry("recourse", {"a": 1}, {"status": "x", "n": 1})])[0]
    again = log.record("h1", 0, [Entry("recourse", {"a": 1}, {"status": "y", "n": 2})])[0]
    other_bundle = log.record("h2", 0, [Entry("recourse", {"a": 1}, {"status": "y", "n": 2})])[0]
    assert again["answer"]["status"] == "x" and other_bundle["answer"]["status"] == "y"
    assert json.loads(again["text"]) == {"id": again["id"], "created": json.loads(again["text"])["created"], "status": "x", "n": 1}
    twice = log.record("h3", 7, [Entry("recourse", {"b": 1}, {"n": 1}), Entry("recourse", {"b": 1}, {"n": 2})])
    assert [t["answer"] for t in twice] == [{"n": 1}, {"n": 1}]  # within one transaction too
    promised = log.record("h3", 7, [Entry("recourse", {"min_probability": 0.6}, PROMISE)])[0]
    log.close()
    reopened = ExplanationLog(log_database)  # new connections read what was committed
    assert reopened.response(first["id"]) == first["text"]
    row = reopened.row(first["id"])
    assert row["bundle_hash"] == "h1" and json.loads(row["request"]) == {"a": 1} and row["seed"] == 0
    assert row["response"] == first["text"] and row["owner"] is None
    assert reopened.count() == 6 and reopened.response("missing") is None and reopened.ping()
    [promise] = reopened.promises()
    assert (promise.id, promise.counterfactual, promise.min_probability) == (promised["id"], {"age": 25}, 0.6)
    assert reopened.promises(other_than="h3") == []
    reopened.close()


def test_a_client_reads_only_its_own_answers(log_database):
    log = ExplanationLog(log_database)
    mine, anonymous = log.record("h", 0, [Entry("predict", {"n": 1}, {"n": 1}, "alice"), Entry("predict", {"n": 2}, {"n": 2})])
    assert log.response(mine["id"], "alice", every=False) == mine["text"]
    assert log.response(mine["id"], "bob", every=False) is None
    assert log.response(anonymous["id"], "alice", every=False) is None
    assert log.response(anonymous["id"], None, every=False) == anonymous["text"]
    assert log.response(mine["id"]) == mine["text"] and log.response(anonymous["id"]) == anonymous["text"]  # auditors
    assert log.row(mine["id"])["owner"] == "alice"
    log.close()


def test_erasures_and_purges_delete_and_are_recorded(log_database):
    log = ExplanationLog(log_database)
    items = log.record("h", 0, [Entry("predict", {"n": i}, {"n": i}) for i in range(4)])
    log.execute("UPDATE answers SET created = ? WHERE id IN (?, ?)", ("2020-01-01T00:00:00.000000Z", items[0]["id"], items[1]["id"]))
    assert log.purge(30, by="ops") == 2
    assert log.erase(items[2]["id"], by="admin") and not log.erase(items[2]["id"], by="admin")
    assert log.purge(30, by="ops") == 0
    assert [(e["kind"], e["count"], e["by"]) for e in log.erasures()] == [("purge", 2, "ops"), ("erase", 1, "admin"),
                                                                        ("purge", 0, "ops")]
    assert log.erasures()[1]["detail"] == items[2]["id"] and log.erasures()[0]["detail"].startswith("created before 20")
    assert [log.row(i["id"]) is None for i in items] == [True, True, True, False] and log.count() == 1
    with pytest.raises(ValueError, match="older_than_days"):
        log.purge(-1, by="ops")
    log.close()


# ---------------------------------------------------------------------- schema versions
def test_the_schema_is_versioned_and_migrating_again_changes_nothing(log_database):
    log = ExplanationLog(log_database)
    versions = log.schema_version()
    assert [(v["version"], v["note"]) for v in versions] == [(1, "answers"), (2, "owners and erasures")]
    assert log.migrate() == 2
    again = ExplanationLog(log_database)
    assert again.schema_version() == versions
    log.close()
    again.close()


def test_instances_opening_a_new_log_at_once_migrate_it_once(log_database):
    barrier, logs, errors = threading.Barrier(6), [], []

    def open_log() -> None:
        barrier.wait()
        try:
            logs.append(ExplanationLog(log_database))
        except Exception as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)

    threads = [threading.Thread(target=open_log) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(logs) == 6
    assert [v["version"] for v in logs[0].schema_version()] == [1, 2]
    for log in logs:
        log.close()


class _LockedAtFirst:
    """A connection whose first ``busy`` journal-mode switches find the file locked (as SQLite
    answers them, without its busy handler, while another instance creating the log holds it)."""

    def __init__(self, busy: int, error: str = "database is locked"):
        self.busy, self.error, self.calls = busy, error, 0

    def execute(self, sql: str) -> None:
        assert sql == "PRAGMA journal_mode=WAL"
        self.calls += 1
        if self.calls <= self.busy:
            raise sqlite3.OperationalError(self.error)


def test_the_switch_to_wal_is_retried_while_another_instance_holds_the_lock(tmp_path):
    log = SqliteLog(tmp_path / "log.sqlite3", timeout=2.0)
    conn = _LockedAtFirst(busy=3)
    log._enter_wal(conn)
    assert conn.calls == 4
    log.timeout = 0.05  # a lock held past the log's timeout: reported, not waited on for ever
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        log._enter_wal(_LockedAtFirst(busy=10**6))
    other = _LockedAtFirst(busy=1, error="disk I/O error")  # any other error: at once, no retry
    with pytest.raises(sqlite3.OperationalError, match="disk I/O"):
        log._enter_wal(other)
    assert other.calls == 1
    log.close()


def test_a_log_with_a_newer_schema_is_refused(log_database):
    log = ExplanationLog(log_database)
    log.execute("INSERT INTO schema_version (version, applied, note) VALUES (?, ?, ?)", (99, "2030-01-01T00:00:00Z", "future"))
    log.close()
    with pytest.raises(LogOpenError, match=r"its schema is version 99, newer than this recourse knows \(2\); upgrade"):
        ExplanationLog(log_database)


def test_a_log_written_before_schema_versions_gets_them(tmp_path):
    """The SQLite log of the release before (owners and erasures, no schema_version) opens as version 2."""
    path = tmp_path / "log.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE answers (id TEXT PRIMARY KEY, created TEXT NOT NULL, kind TEXT NOT NULL, bundle_hash TEXT NOT NULL,
            digest TEXT NOT NULL, seed INTEGER NOT NULL, request TEXT NOT NULL, answer TEXT NOT NULL,
            response TEXT NOT NULL, owner TEXT);
        CREATE INDEX answers_by_request ON answers (bundle_hash, digest);
        CREATE TABLE erasures (at TEXT NOT NULL, kind TEXT NOT NULL, detail TEXT NOT NULL, count INTEGER NOT NULL,
            by TEXT NOT NULL);
        INSERT INTO answers VALUES ('ab', '2026-01-01T00:00:00.000000Z', 'predict', 'h', 'd', 0, '{}', '{}', '{"id":"ab"}', 'k');
        INSERT INTO erasures VALUES ('2026-01-02T00:00:00Z', 'purge', 'created before x', 0, 'ops');
    """)
    conn.close()
    log = ExplanationLog(path)
    assert [v["version"] for v in log.schema_version()] == [1, 2]
    assert log.response("ab", "k", every=False) == '{"id":"ab"}' and log.erasures()[0]["by"] == "ops"


def test_instances_asked_the_same_new_question_at_once_store_one_answer(log_database):
    """Two instances (each its own connections) record the same new requests at the same moment
    with different content: every request keeps the content of the first one stored."""
    first, second = ExplanationLog(log_database), ExplanationLog(log_database)
    barrier = threading.Barrier(2)

    def ask(log: ExplanationLog, content: str) -> None:
        for round_ in range(5):  # 200 new requests a transaction: both are inside one at once
            barrier.wait()
            log.record("h", 0, [Entry("recourse", {"n": i, "round": round_}, {"from": content}) for i in range(200)])

    threads = [threading.Thread(target=ask, args=(log, name)) for log, name in ((first, "first"), (second, "second"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    contents = first.execute("SELECT digest, COUNT(*), COUNT(DISTINCT answer) FROM answers GROUP BY digest")
    assert len(contents) == 1000 and all(stored == 2 and distinct == 1 for _, stored, distinct in contents)
    first.close()
    second.close()


# ---------------------------------------------------------------------- choosing the back end
@pytest.mark.parametrize("text, backend", [("postgresql://svc@db.internal:5432/lending", PostgresLog),
                                           ("postgres://db/lending", PostgresLog), ("POSTGRESQL://db/x", PostgresLog),
                                           ("log.sqlite3", SqliteLog), ("/srv/recourse/log.db", SqliteLog),
                                           ("postgresql:", SqliteLog)])  # a file name, oddly chosen: no "://"
def test_the_database_setting_names_the_back_end(text, backend):
    from api.log import backend_for

    assert backend_for(text) is backend
    assert isinstance(parse_target(text), str if backend is PostgresLog else Path)


def test_other_urls_are_refused_naming_the_setting(tmp_path, monkeypatch):
    import cli

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"^mysql://u:\*\*\*@h/db: mysql:// databases are not supported; give a postgresql://"):
        ExplanationLog("mysql://u:secret@h/db")
    with pytest.raises(ServeError, match=r"^database mysql://h/db: mysql:// databases are not supported"):
        check_database("mysql://h/db")
    with pytest.raises(ValidationError, match="mysql:// databases are not supported"):
        ServiceConfig(database="mysql://h/db")
    runner = CliRunner()
    done = runner.invoke(cli.app, ["log", "purge", "--older-than", "1", "--database", "mysql://u:secret@h/db"])
    assert done.exit_code == 2 and "--database mysql://u:***@h/db: mysql:// databases are not supported" in done.output
    assert "secret" not in done.output
    monkeypatch.setenv(ENVIRONMENT, "sqlserver://h/db")
    done = runner.invoke(cli.app, ["log", "purge", "--older-than", "1"])
    assert done.exit_code == 2 and "$RECOURSE_DATABASE sqlserver://h/db: sqlserver:// databases" in done.output
    assert list(tmp_path.iterdir()) == []  # no file or folder named after the URL


def test_the_environment_names_the_default_log(monkeypatch, recourse_home):
    monkeypatch.setenv(ENVIRONMENT, "postgresql://svc@db:5432/lending")
    assert default_database() == "postgresql://svc@db:5432/lending"
    assert ServiceConfig().database == "postgresql://svc@db:5432/lending"
    monkeypatch.delenv(ENVIRONMENT)
    assert ServiceConfig().database == recourse_home / "service" / "explanations.sqlite3"


def test_urls_in_messages_hide_the_password():
    assert redact("postgresql://svc:s3cret@db:5432/x?sslmode=require") == "postgresql://svc:***@db:5432/x?sslmode=require"
    assert redact("postgresql://db/x?password=s3cret&user=u") == "postgresql://db/x?password=%2A%2A%2A&user=u"
    assert with_search_path("postgresql://db/x?options=-cwork_mem%3D8MB", "s") == \
        "postgresql://db/x?options=-cwork_mem%3D8MB+-csearch_path%3Ds"


def test_an_unreachable_server_is_one_line_before_gunicorn(capsys):
    url = "postgresql://svc:s3cret@127.0.0.1:1/lending"
    with pytest.raises(ServeError) as refused:
        check_database(url)
    message = str(refused.value)
    assert message.startswith("database postgresql://svc:***@127.0.0.1:1/lending: cannot connect to PostgreSQL (")
    assert "\n" not in message and "s3cret" not in message
    with pytest.raises(SystemExit) as stopped:
        serve(ServiceConfig(database=url, auth_required=False), port=1)
    err = capsys.readouterr().err.strip().splitlines()
    assert stopped.value.code == 2 and len(err) == 1 and err[0].startswith("error: --database postgresql://svc:***@127.0.0.1:1/")


def test_purge_and_erase_a_postgresql_log_from_the_command_line(postgres_url):
    """``--database URL`` and ``$RECOURSE_DATABASE`` both reach the shared log."""
    import cli

    with scratch_schema(postgres_url) as url:
        log = ExplanationLog(url)
        [item] = log.record("h", 0, [Entry("predict", {"n": 1}, {"n": 1})])
        runner = CliRunner()
        done = runner.invoke(cli.app, ["log", "erase", item["id"]], env={ENVIRONMENT: url})
        assert done.exit_code == 0 and f"erased answer {item['id']}" in done.stdout and log.count() == 0
        done = runner.invoke(cli.app, ["log", "purge", "--older-than", "0", "--database", url])
        assert done.exit_code == 0 and "purged 0 answer(s)" in done.stdout
        assert [e["kind"] for e in log.erasures()] == ["erase", "purge"]
        log.close()


@pytest.mark.slow
@pytest.mark.integration
def test_readiness_follows_the_database_server_and_the_pool_reconnects(postgres_url):
    """The server goes away: ping says so within seconds (the readiness check does not hang on
    it); it comes back: the log works again (the pool reconnects), no restart of the service."""
    from tests.pg import ThrowawayPostgres

    with ThrowawayPostgres() as server:
        log = ExplanationLog(server.url)
        [before] = log.record("h", 0, [Entry("predict", {"n": 1}, {"n": 1})])
        assert log.ping()
        server.pause()
        started = time.monotonic()
        assert not log.ping() and time.monotonic() - started < 10
        server.resume()
        deadline = time.monotonic() + 60  # the pool reconnects with a growing back-off
        while not log.ping() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert log.ping() and log.response(before["id"]) == before["text"]
        [after] = log.record("h", 0, [Entry("predict", {"n": 2}, {"n": 2})])
        assert log.response(after["id"]) == after["text"]
        log.close()
