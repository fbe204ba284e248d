"""Service hardening: bounded metric labels, authentication before routing under /v1, private
file modes (explanation log, key files) and the metrics directory removed on shutdown."""
from __future__ import annotations

import os
import random
import stat
import string
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api import ServiceConfig, create_app
from api.keys import add_to_key_file, hash_key, read_key_file
from api.log import Entry, ExplanationLog
from api.telemetry import METHODS, method_label

KEY = "hardening-key-1"
SERIES = "recourse_http_requests_total{"


@pytest.fixture(scope="module")
def app(german_bundle, tmp_path_factory):
    db = tmp_path_factory.mktemp("hardening") / "log.sqlite3"
    return create_app(ServiceConfig(database=db, api_key_hashes=[hash_key(KEY)]), bundle=german_bundle)


@pytest.fixture(scope="module")
def client(app):
    return app.test_client()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def unauthorized(response) -> dict:
    assert response.status_code == 401, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json" and response.headers["WWW-Authenticate"].startswith("Bearer")
    body = response.get_json()
    assert body["type"] == "urn:recourse:problem:unauthorized" and body["status"] == 401 and body["title"] == "Unauthorized"
    return body


# ---------------------------------------------------------------------- authentication before routing
@pytest.mark.parametrize("method, path", [
    ("GET", "/v1/nonexistent"), ("GET", "/v1/recourse"), ("DELETE", "/v1/recourse"), ("FOOBAR", "/v1/recourse"),
    ("POST", "/v1/schema"), ("GET", "/v1"), ("GET", "/v1/"), ("GET", "/v1/recourse/not-an-id"), ("PUT", "/v1/a/b/c"),
])
def test_v1_answers_401_before_404_or_405(client, method, path):
    assert "missing API key" in unauthorized(client.open(path, method=method))["detail"]
    wrong = client.open(path, method=method, headers={"X-API-Key": "wrong"})
    assert "wrong API key" in unauthorized(wrong)["detail"]


def test_with_a_key_unknown_paths_and_methods_are_still_404_and_405(client):
    assert client.get("/v1/nonexistent", headers={"X-API-Key": KEY}).status_code == 404
    assert client.get("/v1/recourse", headers={"X-API-Key": KEY}).status_code == 405


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/openapi.json"])
def test_meta_endpoints_stay_open(client, path):
    assert client.get(path).status_code == 200
    assert client.get("/no-such-thing").status_code == 404  # outside /v1: no key asked


@pytest.mark.parametrize("headers", [
    {"Authorization": "Bearer ", "X-API-Key": KEY},
    {"Authorization": "Bearer    ", "X-API-Key": KEY},
    {"Authorization": "", "X-API-Key": KEY},
    {"Authorization": "   ", "X-API-Key": KEY},
    {"Authorization": "Basic dXNlcjpwdw==", "X-API-Key": KEY},
    {"Authorization": f"Bearer {KEY}", "X-API-Key": ""},
    {"Authorization": f"Bearer {KEY}", "X-API-Key": "   "},
    {"Authorization": f"bearer  {KEY} "},
    {"X-API-Key": f" {KEY} "},
])
def test_a_blank_header_does_not_hide_a_valid_key_in_the_other(client, headers):
    response = client.get("/v1/schema", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)


@pytest.mark.parametrize("headers, detail", [
    ({"Authorization": "Bearer ", "X-API-Key": ""}, "missing API key"),
    ({"Authorization": "Bearer "}, "missing API key"),
    ({"Authorization": "Basic dXNlcjpwdw=="}, "scheme 'Basic' is not supported"),
    ({"Authorization": "Bearer nope", "X-API-Key": "   "}, "wrong API key"),
    ({"Authorization": "Bearer nope", "X-API-Key": "nope-either"}, "wrong API key"),
])
def test_no_valid_key_is_401(client, headers, detail):
    assert detail in unauthorized(client.get("/v1/schema", headers=headers))["detail"]


# ---------------------------------------------------------------------- bounded metric labels
def series(client) -> list[str]:
    return [line for line in client.get("/metrics").get_data(as_text=True).splitlines() if line.startswith(SERIES)]


def random_requests(client, rng: random.Random, count: int) -> set[str]:
    """``count`` requests cycling through every standard method, an invented one, four kinds of
    path and with or without a key; invented names and paths are random.  Returns those names."""
    standard = sorted(METHODS)
    invented = set()
    for i in range(count):
        token = "".join(rng.choices(string.ascii_uppercase, k=10))
        method = token if i % 8 == 7 else standard[i % 8]
        path = ["/v1/", "/", "/v1/recourse/", "/x/"][i // 8 % 4] + "".join(rng.choices(string.ascii_lowercase, k=12))
        headers = {"X-API-Key": KEY} if i // 32 % 2 else {}
        client.open(path, method=method, headers=headers)
        invented |= {token, path} if i % 8 == 7 else {path}
    return invented


def test_invented_methods_and_paths_add_boundedly_many_series(client):
    before = series(client)
    rng = random.Random(5)
    invented = random_requests(client, rng, 300)
    after = series(client)
    text = "\n".join(after)
    assert not [name for name in invented if f'"{name}"' in text]  # no raw method or path as a label value
    assert 'method="OTHER"' in text and 'endpoint="(unmatched)"' in text
    # labels: endpoint ∈ routes ∪ {(unmatched)}, method ∈ 7 standard ∪ {OTHER}, status ∈ codes the app sends
    assert len(after) - len(before) <= 2 * (len(METHODS) + 1) * 3
    random_requests(client, rng, 300)  # as many again, all new names: no new series at all
    assert len(series(client)) == len(after)


def test_method_label():
    assert [method_label(m) for m in ("GET", "POST", "OPTIONS", "FOOBAR", "get", "")] == \
        ["GET", "POST", "OPTIONS", "OTHER", "OTHER", "OTHER"]


# ---------------------------------------------------------------------- file modes
def test_log_database_and_its_wal_files_are_private(tmp_path):
    old = os.umask(0o022)  # the usual umask: without care the files would be 0644
    try:
        path = tmp_path / "service" / "log.sqlite3"
        log = ExplanationLog(path)
        log.record("h", 0, [Entry("recourse", {"a": 1}, {"status": "x"})])
        assert mode(path) == 0o600
        for suffix in ("-wal", "-shm"):
            side = path.with_name(path.name + suffix)
            assert side.exists() and mode(side) == 0o600, suffix
        assert ExplanationLog(path).count() == 1  # reopened: same file, same mode
        assert mode(path) == 0o600
    finally:
        os.umask(old)


def test_an_existing_log_keeps_its_mode(tmp_path):
    path = tmp_path / "log.sqlite3"
    ExplanationLog(path)
    path.chmod(0o640)
    ExplanationLog(path)
    assert mode(path) == 0o640


def test_keys_new_writes_a_private_key_file(tmp_path):
    import cli

    old = os.umask(0o022)
    try:
        path = tmp_path / "keys.txt"
        result = CliRunner().invoke(cli.app, ["keys", "new", "--name", "lender", "--file", str(path)])
        assert result.exit_code == 0, result.output
        assert mode(path) == 0o600
        key = dict(line.split(":", 1) for line in result.output.strip().splitlines())["key"].strip()
        assert read_key_file(path) == [hash_key(key)]
        again = CliRunner().invoke(cli.app, ["keys", "new", "--name", "backup", "--file", str(path)])
        assert again.exit_code == 0 and len(read_key_file(path)) == 2 and mode(path) == 0o600
    finally:
        os.umask(old)
    bad = CliRunner().invoke(cli.app, ["keys", "new", "--name", "two words", "--file", str(tmp_path / "k2")])
    assert bad.exit_code == 2 and "--name 'two words' is not a usable key name" in bad.output
    assert not (tmp_path / "k2").exists()
    missing = CliRunner().invoke(cli.app, ["keys", "new", "--file", str(tmp_path / "no" / "keys")])
    assert missing.exit_code == 2 and "cannot write it" in missing.output


def test_add_to_key_file_appends_whole_lines(tmp_path):
    path = tmp_path / "keys"
    path.write_text(f"alice {hash_key('a')}")  # no final newline
    add_to_key_file(path, "bob", hash_key("b"))
    assert read_key_file(path) == [hash_key("a"), hash_key("b")]
    with pytest.raises(ValueError, match="usable key name"):
        add_to_key_file(path, "has#hash", hash_key("c"))


# ---------------------------------------------------------------------- the metrics directory
def test_serve_removes_its_metrics_directory_on_shutdown(tmp_path, monkeypatch):
    import api.server as server

    seen: list[str] = []

    def run(self) -> None:
        seen.append(os.environ["PROMETHEUS_MULTIPROC_DIR"])
        assert Path(seen[-1]).is_dir() and Path(seen[-1]).name.startswith("recourse-metrics-")
        (Path(seen[-1]) / "counter_1.db").write_bytes(b"x")
        raise SystemExit(0)  # as gunicorn's arbiter ends on SIGTERM

    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.setattr(server, "preflight", lambda *a: None)
    monkeypatch.setattr(server._Server, "run", run)
    config = ServiceConfig(database=tmp_path / "db", auth_required=False)
    with pytest.raises(SystemExit):
        server.serve(config, workers=2)
    assert seen and not Path(seen[0]).exists() and "PROMETHEUS_MULTIPROC_DIR" not in os.environ


def test_a_worker_exiting_leaves_the_metrics_directory(tmp_path, monkeypatch):
    """A forked worker's exit unwinds through serve() too; only the arbiter removes the directory."""
    import api.server as server

    seen: list[str] = []

    def run(self) -> None:
        seen.append(os.environ["PROMETHEUS_MULTIPROC_DIR"])
        monkeypatch.setattr(server.os, "getpid", lambda: -1)  # now "in a worker"
        raise SystemExit(0)

    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.setattr(server, "preflight", lambda *a: None)
    monkeypatch.setattr(server._Server, "run", run)
    with pytest.raises(SystemExit):
        server.serve(ServiceConfig(database=tmp_path / "db", auth_required=False), workers=2)
    monkeypatch.undo()
    assert Path(seen[0]).is_dir()
    Path(seen[0]).rmdir()
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)


def test_a_given_metrics_directory_is_left_alone(tmp_path, monkeypatch):
    import api.server as server

    given = tmp_path / "metrics"
    given.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(given))
    monkeypatch.setattr(server, "preflight", lambda *a: None)
    monkeypatch.setattr(server._Server, "run", lambda self: None)
    server.serve(ServiceConfig(database=tmp_path / "db", auth_required=False), workers=2)
    assert given.is_dir() and os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(given)
