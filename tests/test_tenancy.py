"""Tenancy and privacy of the explanation log: each stored answer belongs to the key that asked for
it; auditors read all, admins also erase; erasure and purging delete for good and are recorded."""
from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api import ServiceConfig, create_app
from api.keys import KeyRing, add_to_key_file, hash_key, read_key_lines
from api.log import Entry, ExplanationLog
from tests.conftest import LOG_BACKENDS, fresh_database

REPO = Path(__file__).resolve().parent.parent
DENIED = json.loads((REPO / "datasets" / "german_credit" / "examples" / "denied_applicant.json").read_text())
KEYS = {"alice": "client", "bob": "client", "carol": "auditor", "dave": "admin"}


def auth(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer key-{name}"}


@pytest.fixture(scope="module", params=LOG_BACKENDS)
def service(request, german_bundle, tmp_path_factory):
    """The service with four keys, on a fresh log of each back end."""
    with fresh_database(request.param, request, tmp_path_factory.mktemp("tenancy")) as db:
        roles = {hash_key(f"key-{n}"): r for n, r in KEYS.items() if r != "client"}
        app = create_app(ServiceConfig(database=db, api_key_hashes=[hash_key(f"key-{n}") for n in KEYS], api_key_roles=roles),
                         bundle=german_bundle)
        yield app, db
        app.extensions["recourse"].close()
        app.extensions["recourse"].log.close()


def test_answers_belong_to_the_key_that_asked(service):
    app, db = service
    client = app.test_client()
    asked = client.post("/v1/recourse", json={"applicant": DENIED}, headers=auth("alice"))
    assert asked.status_code == 200
    answer_id = asked.get_json()["id"]
    mine = client.get(f"/v1/recourse/{answer_id}", headers=auth("alice"))
    assert mine.status_code == 200 and mine.get_data() == asked.get_data()
    other = client.get(f"/v1/recourse/{answer_id}", headers=auth("bob"))
    assert other.status_code == 404  # the same as an answer that does not exist: nothing is revealed
    assert client.get(f"/v1/recourse/{answer_id}", headers=auth("carol")).status_code == 200  # auditor
    assert client.get(f"/v1/recourse/{answer_id}", headers=auth("dave")).status_code == 200  # admin
    # the same request from another client is answered alike, but stored as that client's
    again = client.post("/v1/recourse", json={"applicant": DENIED}, headers=auth("bob"))
    theirs = again.get_json()["id"]
    assert client.get(f"/v1/recourse/{theirs}", headers=auth("alice")).status_code == 404
    assert client.get(f"/v1/recourse/{theirs}", headers=auth("bob")).status_code == 200
    decision = client.post("/v1/predict", json={"applicant": DENIED}, headers=auth("alice")).get_json()["id"]
    assert client.get(f"/v1/recourse/{decision}", headers=auth("bob")).status_code == 404


def test_only_an_admin_erases_and_the_erasure_is_recorded(service):
    app, db = service
    client = app.test_client()
    answer_id = client.post("/v1/recourse", json={"applicant": DENIED, "max_changes": 2}, headers=auth("alice")).get_json()["id"]
    for name in ("alice", "bob", "carol"):
        refused = client.delete(f"/v1/recourse/{answer_id}", headers=auth(name))
        assert refused.status_code == 403 and refused.mimetype == "application/problem+json"
        assert "admin key" in refused.get_json()["detail"]
    assert client.delete(f"/v1/recourse/{answer_id}").status_code == 401
    done = client.delete(f"/v1/recourse/{answer_id}", headers=auth("dave"))
    assert done.status_code == 200 and done.get_json() == {"id": answer_id, "erased": True}
    for name in KEYS:
        assert client.get(f"/v1/recourse/{answer_id}", headers=auth(name)).status_code == 404
    assert client.delete(f"/v1/recourse/{answer_id}", headers=auth("dave")).status_code == 404
    log = ExplanationLog(db)
    [erasure] = [e for e in log.erasures() if e["detail"] == answer_id]
    assert erasure["kind"] == "erase" and erasure["count"] == 1 and erasure["by"] == hash_key("key-dave")
    assert log.row(answer_id) is None
    log.close()


def test_an_older_log_gets_owners_and_its_old_answers_stay_with_auditors(german_bundle, tmp_path):
    db = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(db)
    conn.executescript("CREATE TABLE answers (id TEXT PRIMARY KEY, created TEXT NOT NULL, kind TEXT NOT NULL, "
                       "bundle_hash TEXT NOT NULL, digest TEXT NOT NULL, seed INTEGER NOT NULL, request TEXT NOT NULL, "
                       "answer TEXT NOT NULL, response TEXT NOT NULL)")
    old_id = "ab" * 16
    conn.execute("INSERT INTO answers VALUES (?, '2026-01-01T00:00:00.000000Z', 'predict', 'h', 'd', 0, '{}', '{}', ?)",
                 (old_id, json.dumps({"id": old_id})))
    conn.commit()
    conn.close()
    roles = {hash_key("key-carol"): "auditor"}
    app = create_app(ServiceConfig(database=db, api_key_hashes=[hash_key("key-alice"), hash_key("key-carol")],
                                   api_key_roles=roles), bundle=german_bundle)
    client = app.test_client()
    assert client.get(f"/v1/recourse/{old_id}", headers=auth("alice")).status_code == 404
    assert client.get(f"/v1/recourse/{old_id}", headers=auth("carol")).get_json() == {"id": old_id}


def test_purge_and_erase_from_the_command_line(log_database, tmp_path):
    import cli

    db = log_database
    log = ExplanationLog(db)
    items = log.record("h", 0, [Entry("predict", {"applicant": {"n": i}}, {"n": i}, hash_key("k")) for i in range(5)])
    ids = [item["id"] for item in items]
    log.execute("UPDATE answers SET created = '2020-01-01T00:00:00.000000Z' WHERE id IN (?, ?, ?)", ids[:3])
    runner = CliRunner()
    done = runner.invoke(cli.app, ["log", "purge", "--older-than", "30", "--database", str(db)])
    assert done.exit_code == 0 and "purged 3 answer(s) older than 30 day(s)" in done.stdout
    assert [log.row(i) is None for i in ids] == [True, True, True, False, False]
    done = runner.invoke(cli.app, ["log", "erase", ids[3], "--database", str(db), "--json"])
    assert done.exit_code == 0 and log.row(ids[3]) is None and log.row(ids[4]) is not None
    assert json.loads(done.stdout) == {"erased": ids[3]}
    done = runner.invoke(cli.app, ["log", "purge", "--older-than", "30", "--database", str(db), "--json"])
    assert done.exit_code == 0 and json.loads(done.stdout) == {"purged": 0, "older_than_days": 30.0}
    kinds = [(e["kind"], e["count"]) for e in log.erasures()]
    assert kinds == [("purge", 3), ("erase", 1), ("purge", 0)] and all(e["by"].startswith("command line") for e in log.erasures())
    if isinstance(db, Path):
        assert os.stat(db).st_mode & 0o777 == 0o600
    for args, message in [(["log", "erase", "nope", "--database", str(db)], "is not an answer id"),
                          (["log", "erase", ids[3], "--database", str(db)], "no answer with id"),
                          (["log", "purge", "--older-than", "1", "--database", str(tmp_path / "none.db")], "no such file")]:
        refused = runner.invoke(cli.app, args)
        assert refused.exit_code == 2 and message in refused.output, refused.output
    log.close()


def test_roles_in_the_key_file(tmp_path):
    import cli

    path = tmp_path / "keys"
    add_to_key_file(path, "alice", hash_key("a"))
    add_to_key_file(path, "carol", hash_key("c"), role="auditor")
    done = CliRunner().invoke(cli.app, ["keys", "new", "--name", "dave", "--role", "admin", "--file", str(path)])
    assert done.exit_code == 0 and "role=admin" in done.stdout
    lines = read_key_lines(path)
    assert [(k.name, k.role) for k in lines] == [("alice", "client"), ("carol", "auditor"), ("dave", "admin")]
    ring = KeyRing([k.digest for k in lines], {k.digest: k.role for k in lines})
    assert ring.identify("c").role == "auditor" and ring.identify("a").role == "client" and ring.identify("x") is None
    path.write_text(f"eve role=root {hash_key('e')}\n")
    with pytest.raises(ValueError, match="line 1: unknown role 'root'"):
        read_key_lines(path)
    with pytest.raises(ValueError, match="unknown role"):
        add_to_key_file(path, "x", hash_key("x"), role="root")


def test_keys_and_train_print_json(tmp_path):
    import cli

    runner = CliRunner()
    done = runner.invoke(cli.app, ["keys", "new", "--name", "svc", "--role", "auditor", "--json"])
    assert done.exit_code == 0
    data = json.loads(done.stdout)
    assert data["role"] == "auditor" and data["key_file_line"] == f"svc role=auditor {hash_key(data['key'])}"
    assert data["written_to"] is None
    from tests.conftest import TINY_SCHEMA, tiny_frame

    frame, labels = tiny_frame(80)
    frame["y"] = labels
    frame.to_csv(tmp_path / "t.csv", index=False)
    (tmp_path / "s.json").write_text(json.dumps(TINY_SCHEMA))
    done = runner.invoke(cli.app, ["train", "--data", str(tmp_path / "t.csv"), "--schema", str(tmp_path / "s.json"),
                                   "--model", "logistic", "--out", str(tmp_path / "b"), "--json"])
    assert done.exit_code == 0, done.output
    meta = json.loads(done.stdout)
    assert meta["path"] == str(tmp_path / "b") and meta["model"] == "logistic" and len(meta["hash"]) == 64
