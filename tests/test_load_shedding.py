"""Load shedding: a bounded queue refuses work at once; abandoned work is dropped before it is
solved, or not logged when it already was; the service answers 503 with Retry-After and logs nothing."""
from __future__ import annotations

import threading
import time

import pytest

from api import ServiceConfig, create_app
from api.batching import MicroBatcher, Overloaded
from api.keys import hash_key


class Gate:
    """A solve that blocks until released and records what it solved."""

    def __init__(self):
        self.release = threading.Event()
        self.started = threading.Event()
        self.solved: list[list] = []

    def __call__(self, key, rows):
        self.started.set()
        self.release.wait(10)
        self.solved.append(list(rows))
        return [r * 10 for r in rows]


def test_a_full_queue_refuses_at_once_and_a_lone_submission_always_fits():
    gate = Gate()
    shed: list = []
    batcher = MicroBatcher(gate, max_wait=0, max_queued_rows=5, on_shed=lambda reason, rows: shed.append((reason, rows)))
    big = batcher.submit("k", list(range(9)))  # more than the limit, but alone: accepted
    assert gate.started.wait(5)
    waiting = batcher.submit("k", [1, 2, 3])
    with pytest.raises(Overloaded, match="3 rows are waiting"):
        batcher.submit("k", [4, 5, 6])
    assert shed == [("overloaded", 3)]
    gate.release.set()
    assert big.result(5) == [r * 10 for r in range(9)] and waiting.result(5) == [10, 20, 30]
    assert batcher.submit("k", [7, 8, 9, 10, 11]).result(5)  # the queue drained: room again
    batcher.close()


def test_abandoned_work_is_not_solved_or_not_finished():
    gate = Gate()
    finished: list = []
    shed: list = []

    def finish(results):
        finished.extend(results)
        return results

    batcher = MicroBatcher(gate, max_wait=0, finish=finish, on_shed=lambda reason, rows: shed.append((reason, rows)))
    running = batcher.submit("k", [1, 2])
    assert gate.started.wait(5)
    pending = batcher.submit("k", [3])
    batcher.abandon(pending)   # not taken yet: never solved
    batcher.abandon(running)   # being solved: its answers are dropped, not finished (logged)
    kept = batcher.submit("k", [4])
    gate.release.set()
    assert kept.result(5) == [40]
    assert [3] not in gate.solved and [1, 2] in gate.solved
    assert finished == [40]
    assert shed == [("abandoned", 1), ("abandoned", 2)]
    batcher.close()


def test_a_timed_out_request_gets_503_and_its_answer_is_not_logged(german_bundle, tmp_path):
    import json
    from pathlib import Path

    denied = json.loads((Path(__file__).resolve().parent.parent / "datasets/german_credit/examples/denied_applicant.json").read_text())
    app = create_app(ServiceConfig(database=tmp_path / "log.db", api_key_hashes=[hash_key("k")], request_timeout=0.3),
                     bundle=german_bundle)
    service = app.extensions["recourse"]
    solve = service._solve

    def slow(key, entries):
        time.sleep(1.0)
        return solve(key, entries)

    service.batcher.solve = slow
    client = app.test_client()
    before = service.log.count()
    response = client.post("/v1/recourse", json={"applicant": denied, "max_changes": 2}, headers={"Authorization": "Bearer k"})
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    time.sleep(1.5)  # the solve that was under way has ended by now
    assert service.log.count() == before  # nothing logged as answered
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'recourse_shed_rows_total{reason="abandoned"} 1.0' in metrics
    service.batcher.solve = solve
    again = client.post("/v1/recourse", json={"applicant": denied, "max_changes": 2}, headers={"Authorization": "Bearer k"})
    assert again.status_code == 200 and service.log.count() == before + 1
