"""Load test of the real service on loopback: latency at several client counts, batch throughput,
and durability of the explanation log across a ``kill -9``.

The server is started as ``recourse serve`` (the console script beside this Python, else
``python -m cli``) in its own process group; closed-loop clients (one
thread and one keep-alive connection each) send distinct applicants, resampled with noise from
German credit and filtered to those the model denies (so no answer comes from the log's reuse of
earlier answers).  Client and server share this machine's cores, so the client's own CPU use is
part of every figure.

The log is a fresh SQLite file, or (``database`` a ``postgresql://`` URL) a fresh schema in that
PostgreSQL database, dropped afterwards; :func:`run_load_tests` measures several back ends in one
run, on the same applicants, one after the other.
"""
from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from api.keys import new_key

from .progress import Steps


@dataclass
class Server:
    """A ``recourse serve`` process group on loopback."""

    port: int
    key: str
    database: Path | str
    """The log: an SQLite file or a PostgreSQL URL (``--database``)."""
    process: subprocess.Popen | None = None
    args: list[str] = field(default_factory=list)

    def start(self, timeout: float = 180.0) -> "Server":
        """Start the server and wait until ``/readyz`` answers 200; RuntimeError if it exits or times out."""
        env = dict(os.environ, RECOURSE_API_KEY=self.key)
        cmd = [*serve_command(), "--port", str(self.port), "--database", str(self.database), *self.args]
        self.process = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.process.stderr.read().decode()[-2000:]}")
            try:
                status, _ = request(self.port, "GET", "/readyz")
                if status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.25)
        raise RuntimeError("server did not become ready")

    def cpu_seconds(self) -> float | None:
        """CPU seconds used so far by the server's processes alive now (master and workers;
        None where the platform does not tell, see :func:`group_cpu_seconds`)."""
        return None if self.process is None else group_cpu_seconds(self.process.pid)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (master and workers)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            self.process.wait(timeout=30)


def serve_command() -> list[str]:
    """The ``recourse serve`` command line of this installation: the ``recourse`` console script
    next to the running Python, or ``python -m cli`` (the same entry point) where there is none."""
    script = Path(sys.executable).with_name("recourse")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script), "serve"]
    return [sys.executable, "-m", "cli", "serve"]


def group_cpu_seconds(group: int) -> float | None:
    """User + system CPU seconds of the live processes in process group ``group``, read from
    ``/proc/<pid>/stat`` (Linux); None where there is no ``/proc``."""
    proc = Path("/proc")
    if not (proc / "self" / "stat").is_file():
        return None
    ticks = 0
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:  # the process ended meanwhile
            continue
        fields = text[text.rindex(")") + 2:].split()  # after "pid (name) ": state, ppid, pgrp, …
        if int(fields[2]) == group:
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port: int, method: str, path: str, body: Any = None, key: str | None = None,
            conn: http.client.HTTPConnection | None = None) -> tuple[int, bytes]:
    """One HTTP request (on ``conn`` if given, kept alive)."""
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = None if body is None else json.dumps(body)
    try:
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        if own:
            conn.close()


def denied_applicants(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` distinct applicants the demo model denies (:func:`benchmarks.engine.denied_applicants`), as JSON-ready dicts."""
    from recourse.bundle import demo_bundle

    from .engine import denied_applicants as population

    frame = population(demo_bundle("german").engine(), n, seed=seed)
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in record.items()}
            for record in frame.to_dict(orient="records")]


@dataclass
class LevelResult:
    clients: int
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    per_second: float
    statuses: dict[str, int]
    server_cpu_ms: float | None = None
    """CPU milliseconds the server's processes used per answered request (None: not measured)."""
    client_cpu_ms: float | None = None
    """CPU milliseconds this load generator's process used per answered request."""

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def run_level(port: int, key: str, pool: Iterator[dict[str, Any]], clients: int, seconds: float,
              ids: list[tuple[str, bytes]] | None = None, stop: threading.Event | None = None,
              cpu: Callable[[], float | None] | None = None) -> LevelResult:
    """``clients`` closed-loop clients posting single applicants for ``seconds``.

    ``cpu``: the server's CPU seconds so far (:meth:`Server.cpu_seconds`); with it the result
    tells the server's and the clients' CPU time per answered request, the figure to set against
    the machine's budget (cores × latency / clients)."""
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    errors = [0]
    stop = stop or threading.Event()
    end = time.perf_counter() + seconds

    def next_applicant() -> dict[str, Any]:
        with lock:
            return next(pool)

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while time.perf_counter() < end and not stop.is_set():
            body = {"applicant": next_applicant()}
            t0 = time.perf_counter()
            try:
                status, data = request(port, "POST", "/v1/recourse", body, key, conn)
            except (OSError, http.client.HTTPException):
                with lock:
                    errors[0] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                if stop.is_set():
                    return
                continue
            dt = time.perf_counter() - t0
            with lock:
                if status != 200:
                    errors[0] += 1
                    continue
                latencies.append(dt)
                answer = json.loads(data)
                statuses[answer.get("status", "decided")] = statuses.get(answer.get("status", "decided"), 0) + 1
                if ids is not None:
                    ids.append((answer["id"], data))
        conn.close()

    server_cpu = cpu() if cpu is not None else None
    client_cpu = time.process_time()
    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - started
    client_cpu = time.process_time() - client_cpu
    server_after = cpu() if cpu is not None else None
    answered = max(len(latencies), 1)
    server_ms = None if server_cpu is None or server_after is None else round((server_after - server_cpu) * 1e3 / answered, 2)
    lat = np.asarray(latencies) * 1e3 if latencies else np.zeros(1)
    return LevelResult(clients, len(latencies), errors[0], round(took, 2), round(float(np.percentile(lat, 50)), 2),
                       round(float(np.percentile(lat, 90)), 2), round(float(np.percentile(lat, 99)), 2),
                       round(float(lat.max()), 2), round(len(latencies) / took, 1), statuses,
                       server_ms, round(client_cpu * 1e3 / answered, 2))


def run_batch(port: int, key: str, applicants: list[dict[str, Any]], size: int, repeats: int) -> dict[str, Any]:
    """Batch endpoint: ``repeats`` requests of ``size`` distinct applicants each."""
    times, errors, found = [], 0, 0
    for r in range(repeats):
        chunk = applicants[r * size:(r + 1) * size]
        t0 = time.perf_counter()
        status, data = request(port, "POST", "/v1/recourse/batch", {"applicants": chunk}, key)
        times.append(time.perf_counter() - t0)
        if status != 200:
            errors += 1
            continue
        found += sum(1 for x in json.loads(data)["results"] if x["status"] == "recourse_found")
    best, median = min(times), float(np.median(times))
    return {"batch_size": size, "requests": repeats, "errors": errors, "median_seconds": round(median, 3),
            "recourses_per_second": round(size / median, 1), "best_recourses_per_second": round(size / best, 1),
            "found_share": round(found / max(1, size * (repeats - errors)), 4)}


def durability(server: Server, pool: Iterator[dict[str, Any]], clients: int, seconds: float) -> dict[str, Any]:
    """Load, ``kill -9`` the server mid-load, restart it on the same log, fetch every returned answer."""
    answered: list[tuple[str, bytes]] = []
    stop = threading.Event()
    worker = threading.Thread(target=lambda: run_level(server.port, server.key, pool, clients, seconds * 10, answered, stop))
    worker.start()
    time.sleep(seconds)
    server.kill(signal.SIGKILL)
    stop.set()
    worker.join()
    server.start()
    missing = changed = 0
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    for answer_id, data in answered:
        status, stored = request(server.port, "GET", f"/v1/recourse/{answer_id}", None, server.key, conn)
        missing += status != 200
        changed += status == 200 and stored != data
    conn.close()
    return {"answers_returned_before_kill": len(answered), "missing_after_restart": missing, "different_bytes": changed}


def _metric_sum(text: str, name: str) -> dict[str, float]:
    """Values of one Prometheus metric by label set ('' without labels), summed over workers."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            head, _, value = line.rpartition(" ")
            labels = head[len(name):]
            out[labels] = out.get(labels, 0.0) + float(value)
    return out


def abandoned_burst(clients: int = 20, rows: int = 1000, alternatives: int = 3, hang_up: float = 3.0,
                    workers: int = 2, threads: int = 32, progress: Any = None) -> dict[str, Any]:
    """The overload scenario: ``clients`` clients each post a ``rows``-row batch (``alternatives``)
    and hang up after ``hang_up`` seconds; then one client asks for one applicant.  Reports how many
    rows the server solved, shed (refused at once or abandoned) and logged, and the latency of the
    request sent after the burst (rows are solved in slices; a group whose clients have all left
    stops at the next slice, so rows solved counts only the slices that ran).  ``progress``: told
    ``progress(done, total, stage)`` before each phase (:mod:`benchmarks.progress`; None: silent)."""
    import socket
    import threading

    step = Steps(progress, 4)
    step("burst: applicants")
    applicants = denied_applicants(clients * rows + 1, seed=7)
    key = new_key()
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(free_port(), key, Path(tmp) / "log.sqlite3", args=["--workers", str(workers), "--threads", str(threads)])
        step("burst: starting the server")
        server.start()
        try:
            statuses: list[Any] = []

            def impatient(part: list[dict[str, Any]]) -> None:
                body = json.dumps({"applicants": part, "alternatives": alternatives}).encode()
                head = (f"POST /v1/recourse/batch HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
                        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
                with socket.create_connection(("127.0.0.1", server.port), timeout=hang_up) as sock:
                    sock.sendall(head + body)
                    try:
                        statuses.append(sock.recv(12).decode(errors="replace")[9:12] or "closed")
                    except OSError:
                        statuses.append("hung up")

            step(f"burst: {clients} clients post {rows} rows each")
            started = time.perf_counter()
            threads_ = [threading.Thread(target=impatient, args=(applicants[i * rows:(i + 1) * rows],)) for i in range(clients)]
            for t in threads_:
                t.start()
            for t in threads_:
                t.join()
            burst_seconds = time.perf_counter() - started
            step("burst: the next request")
            t0 = time.perf_counter()
            status, _ = request(server.port, "POST", "/v1/recourse", {"applicant": applicants[-1]}, key)
            next_ms = 1000 * (time.perf_counter() - t0)
            time.sleep(2.0)
            _, metrics = request(server.port, "GET", "/metrics")
            text = metrics.decode()
            solved = sum(v for k, v in _metric_sum(text, "recourse_solver_batch_rows_sum").items())
            shed = {k.split('"')[1]: v for k, v in _metric_sum(text, "recourse_shed_rows_total").items() if '"' in k}
            logged = sum(_metric_sum(text, "recourse_outcomes_total").values())
        finally:
            server.kill(signal.SIGTERM)
    step.finish()
    return {"clients": clients, "rows_each": rows, "alternatives": alternatives, "hang_up_seconds": hang_up,
            "burst_seconds": round(burst_seconds, 2), "first_bytes": sorted(statuses),
            "rows_sent": clients * rows, "rows_solved": int(solved), "rows_shed": {k: int(v) for k, v in shed.items()},
            "answers_logged": int(logged), "next_request_status": status, "next_request_ms": round(next_ms, 1)}


SQLITE = "sqlite"
"""``database`` of the benchmarks: a fresh SQLite file in a temporary folder."""


@contextmanager
def fresh_log(database: str, folder: Path) -> Iterator[Path | str]:
    """The ``--database`` of a new, empty log: ``sqlite`` → a file in ``folder``; a PostgreSQL URL
    → that database with a schema of its own (``recourse_bench_*``, dropped afterwards)."""
    from api.log import parse_target

    if database == SQLITE:
        yield folder / "log.sqlite3"
        return
    if not isinstance(parse_target(database), str):
        raise ValueError(f"{database}: give {SQLITE} or a postgresql:// URL")
    from api.log.postgres import scratch_schema

    with scratch_schema(database, prefix="recourse_bench") as url:
        yield url


def run_load_tests(databases: Sequence[str] = (SQLITE,), levels: tuple[int, ...] = (1, 8, 32), seconds: float = 30.0,
                   workers: int = 2, threads: int = 32, batch_size: int = 500, batch_repeats: int = 5,
                   kill_test: bool = True, pool_size: int = 60000, log_sync: str = "full",
                   progress: Any = None) -> list[dict[str, Any]]:
    """:func:`run_load_test` on each log back end of ``databases`` in turn (same applicants, same settings).
    ``progress``: told ``progress(done, total, stage)`` before each phase (:mod:`benchmarks.progress`; None: silent)."""
    step = Steps(progress, 1 + len(databases) * _phases(levels, kill_test))
    step("applicants")
    applicants = denied_applicants(pool_size + batch_size * batch_repeats)
    results = [run_load_test(levels, seconds, workers, threads, batch_size, batch_repeats, kill_test, pool_size, log_sync,
                             database=database, applicants=applicants, step=step) for database in databases]
    step.finish()
    return results


def _phases(levels: tuple[int, ...], kill_test: bool) -> int:
    """Phases of :func:`run_load_test`: server start, warm-up, each level, the batch, the kill -9 test."""
    return 3 + len(levels) + kill_test


def run_load_test(levels: tuple[int, ...] = (1, 8, 32), seconds: float = 30.0, workers: int = 2, threads: int = 32,
                  batch_size: int = 500, batch_repeats: int = 5, kill_test: bool = True,
                  pool_size: int = 60000, log_sync: str = "full", database: str = SQLITE,
                  applicants: list[dict[str, Any]] | None = None, step: Steps | None = None) -> dict[str, Any]:
    """Start the server on a fresh log (:func:`fresh_log`), run every measurement, stop it; returns the figures
    (``step``: told before each phase)."""
    from api.log import describe

    step = step if step is not None else Steps(None, 0)
    name = database if database == SQLITE else "postgresql"
    applicants = applicants or denied_applicants(pool_size + batch_size * batch_repeats)
    singles, batches = applicants[:pool_size], applicants[pool_size:]
    counter = iter(range(10**12))

    def pool() -> Iterator[dict[str, Any]]:
        for i in counter:
            yield singles[i % len(singles)]

    stream = pool()
    key = new_key()
    with tempfile.TemporaryDirectory() as tmp, fresh_log(database, Path(tmp)) as log:
        server = Server(free_port(), key, log, args=["--workers", str(workers), "--threads", str(threads), "--log-sync", log_sync])
        step(f"{name}: starting the server")
        server.start()
        try:
            out: dict[str, Any] = {"server": {"workers": workers, "threads": threads, "log_sync": log_sync,
                                              "database": database if database == SQLITE else describe(database),
                                              "cpu_count": os.cpu_count()},
                                   "pool": {"distinct_applicants": len(singles), "kind": "denied by the model"}}
            step(f"{name}: warm-up")
            run_level(server.port, key, stream, 2, 3.0)  # warm-up, not reported
            out["levels"] = []
            for c in levels:
                step(f"{name}: {c} client{'s' if c != 1 else ''} for {seconds:g} s")
                out["levels"].append(run_level(server.port, key, stream, c, seconds, cpu=server.cpu_seconds).to_dict())
            out["reused_answers"] = "none: each applicant is sent once per pool pass" if sum(
                lv["requests"] for lv in out["levels"]) <= len(singles) else "some: the pool was exhausted and restarted"
            step(f"{name}: {batch_repeats} batches of {batch_size}")
            out["batch"] = run_batch(server.port, key, batches, batch_size, batch_repeats)
            if kill_test:
                step(f"{name}: kill -9 under load")
                out["kill_9"] = durability(server, stream, 8, min(seconds, 10.0))
        finally:
            server.kill(signal.SIGTERM)
    return out
