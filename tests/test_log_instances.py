"""Two instances, one log: two ``recourse serve`` processes on their own ports share one PostgreSQL
log (a throwaway server, tests/pg.py).  An answer given by one is fetched, byte for byte, from
the other; one is killed with ``kill -9`` under load and every answer it acknowledged is still
fetchable from the other."""
from __future__ import annotations

import itertools
import json
import signal
import threading
import time
from pathlib import Path

import pytest

from api.keys import add_to_key_file, hash_key, new_key
from api.log.postgres import scratch_schema
from benchmarks.http import Server, free_port, request, run_level

DENIED = json.loads((Path(__file__).resolve().parent.parent / "datasets/german_credit/examples/denied_applicant.json").read_text())


def applicants() -> list[dict]:
    """Distinct applicants near the denied example (no answer comes from the log's reuse)."""
    return [{**DENIED, "duration": d, "credit_amount": a} for d in range(24, 73, 3) for a in range(2000, 9000, 50)]


ADMIN = new_key()


@pytest.fixture(scope="module")
def instances(german_bundle, postgres_url, tmp_path_factory):
    """Instances A and B, started at once (both migrate the new log at start-up) on one log; a
    client key (the servers' ``key``) and an admin key (:data:`ADMIN`)."""
    keys = tmp_path_factory.mktemp("instances") / "keys"
    add_to_key_file(keys, "ops", hash_key(ADMIN), role="admin")
    with scratch_schema(postgres_url) as log:
        key = new_key()
        args = ["--bundle", str(german_bundle.path), "--workers", "1", "--threads", "8", "--api-keys", str(keys)]
        servers = [Server(free_port(), key, log, args=args), Server(free_port(), key, log, args=args)]
        errors: list[BaseException] = []

        def start(server: Server) -> None:
            try:
                server.start()
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=start, args=(s,)) for s in servers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        try:
            assert not errors, errors
            yield servers
        finally:
            for server in servers:
                server.kill(signal.SIGTERM)


@pytest.mark.slow
@pytest.mark.integration
def test_an_answer_given_by_one_instance_is_fetched_from_the_other(instances):
    a, b = instances
    status, given = request(a.port, "POST", "/v1/recourse", {"applicant": DENIED}, a.key)
    assert status == 200
    answer_id = json.loads(given)["id"]
    assert request(b.port, "GET", f"/v1/recourse/{answer_id}", None, b.key) == (200, given)
    status, batch = request(b.port, "POST", "/v1/recourse/batch", {"applicants": applicants()[:3]}, b.key)
    assert status == 200
    for item in json.loads(batch)["results"]:
        status, stored = request(a.port, "GET", f"/v1/recourse/{item['id']}", None, a.key)
        assert status == 200 and json.loads(stored) == item
    # the same question asked of the other instance: the answer A gave, under a new id
    status, again = request(b.port, "POST", "/v1/recourse", {"applicant": DENIED}, b.key)
    first, second = json.loads(given), json.loads(again)
    assert status == 200 and second["id"] != first["id"]
    assert {k: v for k, v in second.items() if k not in ("id", "created")} == \
        {k: v for k, v in first.items() if k not in ("id", "created")}
    # erased through one instance (an admin key; a client's is refused): gone from the other
    assert request(b.port, "DELETE", f"/v1/recourse/{answer_id}", None, b.key)[0] == 403
    assert request(b.port, "DELETE", f"/v1/recourse/{answer_id}", None, ADMIN)[0] == 200
    assert request(a.port, "GET", f"/v1/recourse/{answer_id}", None, ADMIN)[0] == 404


@pytest.mark.slow
@pytest.mark.integration
def test_killing_one_instance_under_load_loses_no_acknowledged_answer(instances):
    a, b = instances
    answered: list[tuple[str, bytes]] = []
    stop = threading.Event()
    pool = itertools.cycle(applicants()[10:])
    load = threading.Thread(target=run_level, args=(a.port, a.key, pool, 6, 120.0, answered, stop))
    load.start()
    deadline = time.monotonic() + 90
    while len(answered) < 150 and time.monotonic() < deadline and load.is_alive():
        time.sleep(0.05)
    a.kill(signal.SIGKILL)  # master and worker, mid-load: requests in flight get no answer
    stop.set()
    load.join(timeout=120)
    acknowledged = list(answered)
    assert len(acknowledged) >= 100, f"only {len(acknowledged)} answers before the kill"
    missing, different = [], []
    for answer_id, body in acknowledged:
        status, stored = request(b.port, "GET", f"/v1/recourse/{answer_id}", None, b.key)
        if status != 200:
            missing.append(answer_id)
        elif stored != body:
            different.append(answer_id)
    print(f"kill -9 of instance A under load: {len(acknowledged)} answers acknowledged, {len(missing)} missing "
          f"from instance B, {len(different)} different")
    assert (missing, different) == ([], []), f"{len(missing)} missing, {len(different)} different of {len(acknowledged)}"
    status, _ = request(b.port, "POST", "/v1/recourse", {"applicant": applicants()[5]}, b.key)
    assert status == 200  # the other instance goes on answering
