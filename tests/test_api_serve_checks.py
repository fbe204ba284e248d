"""`recourse serve` settings that cannot work: one line naming the option, exit status 2, before
gunicorn starts; key files and worker start-up errors give messages, not class paths."""
from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
from gunicorn.errors import AppImportError
from typer.testing import CliRunner

import cli
from api import ServiceConfig
from api.keys import read_key_file
from benchmarks.http import free_port
from api.server import ServeError, _Server, check_address, check_database, preflight, serve


@pytest.fixture()
def not_sqlite(tmp_path):
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are not the pages of an SQLite database\n" * 100)
    return path


# ---------------------------------------------------------------------- --database
def test_database_directory_is_refused(tmp_path):
    with pytest.raises(ServeError, match=r"^database .*: is a directory"):
        check_database(tmp_path)


def test_database_that_is_not_sqlite_is_refused(not_sqlite):
    with pytest.raises(ServeError, match=r"^database .*notes\.db: the file exists and is not an SQLite database$"):
        check_database(not_sqlite)
    assert not_sqlite.read_bytes().startswith(b"these are not")  # left as it was


def test_database_under_a_file_is_refused(tmp_path):
    (tmp_path / "plain").write_text("x")
    with pytest.raises(ServeError, match=r"^database .*: cannot create its folder .*part of that path is a file"):
        check_database(tmp_path / "plain" / "sub" / "log.sqlite3")


def test_database_that_cannot_be_created_is_refused():
    with pytest.raises(ServeError, match=r"^database /proc/.*: cannot open or create the file"):
        check_database(Path("/proc/recourse-log.sqlite3"))


def test_a_usable_database_is_created_and_left_closed(tmp_path):
    path = tmp_path / "new" / "log.sqlite3"
    check_database(path)
    assert path.is_file()
    check_database(path)  # an existing log is fine too


# ---------------------------------------------------------------------- --host and --port
def test_a_port_in_use_is_refused():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ServeError, match=rf"^port {port}: already in use on 127\.0\.0\.1"):
            check_address("127.0.0.1", port)


@pytest.mark.parametrize("host", ["no-such-host.invalid", "192.0.2.1"])  # unresolvable; not this machine's (TEST-NET-1)
def test_a_bad_host_is_refused(host):
    with pytest.raises(ServeError, match=rf"^host {host}: "):
        check_address(host, free_port())


def test_a_free_address_passes():
    check_address("127.0.0.1", free_port())


def test_serve_prints_one_line_and_exits_2_before_gunicorn(tmp_path, capsys):
    config = ServiceConfig(database=tmp_path, auth_required=False)
    with pytest.raises(SystemExit) as exited:
        serve(config, port=free_port())
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --database ") and "is a directory" in err[0]
    with pytest.raises(ServeError):
        preflight(config, "127.0.0.1", free_port())


@pytest.mark.slow
@pytest.mark.integration
def test_cli_serve_with_a_bad_database_or_a_busy_port_exits_2(german_bundle, not_sqlite, monkeypatch):
    monkeypatch.delenv("RECOURSE_API_KEY", raising=False)
    runner = CliRunner()
    base = ["serve", "--no-auth", "--bundle", str(german_bundle.path)]
    result = runner.invoke(cli.app, [*base, "--port", str(free_port()), "--database", str(not_sqlite)])
    assert result.exit_code == 2 and "error: --database" in result.output and "not an SQLite database" in result.output
    assert "Traceback" not in result.output and "sqlite3." not in result.output
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = runner.invoke(cli.app, [*base, "--port", str(port), "--database", str(not_sqlite.parent / "ok.sqlite3")])
    assert result.exit_code == 2 and f"error: --port {port}: already in use" in result.output


# ---------------------------------------------------------------------- --api-keys and worker start-up
def test_a_binary_or_unreadable_key_file_is_named(tmp_path):
    binary = tmp_path / "keys.bin"
    binary.write_bytes(b"\xff\xfe\x00\x01 not text")
    with pytest.raises(ValueError, match=rf"^{binary}: not a text key file \(byte 0 is not UTF-8\)"):
        read_key_file(binary)
    with pytest.raises(ValueError, match=rf"^{tmp_path}: cannot read the key file"):
        read_key_file(tmp_path)
    result = CliRunner().invoke(cli.app, ["serve", "--api-keys", str(binary)])
    assert result.exit_code == 2 and str(binary) in result.output and "codec" not in result.output


def test_a_worker_that_cannot_build_the_app_reports_the_message(tmp_path):
    bad = tmp_path / "bundle"
    bad.mkdir()
    (bad / "metadata.json").write_text("{}")
    threads = torch.get_num_threads()
    try:
        server = _Server(ServiceConfig(bundle=bad, database=tmp_path / "log.sqlite3", auth_required=False),
                         {"workers": 1, "bind": f"127.0.0.1:{free_port()}"})
        with pytest.raises(AppImportError) as caught:
            server.load()
    finally:
        torch.set_num_threads(threads)
    message = str(caught.value)
    assert message.startswith("error: ") and "metadata.json" in message
    assert "recourse.errors" not in message and "Error:" not in message
