"""Micro-batching: concurrent requests share one engine call.

Request threads :meth:`~MicroBatcher.submit` their rows and wait on a future; one worker thread
takes everything queued when it becomes free (up to ``max_rows``), groups it by solver options
and runs each group as one batch.  Under load, waiting requests are solved together at about the
cost of one; an idle service adds no delay (no fixed batching window).
"""
from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Sequence

Solve = Callable[[Hashable, list[Any]], list[Any]]
"""solve(options key, rows) -> one result per row (raises only on a bug)."""


@dataclass
class _Job:
    key: Hashable
    rows: list[Any]
    future: Future = field(default_factory=Future)


class MicroBatcher:
    """One worker thread that batches the rows of concurrent submissions."""

    def __init__(self, solve: Solve, max_rows: int = 1024, on_batch: Callable[[int], None] | None = None):
        self.solve = solve
        self.max_rows = max_rows
        self.on_batch = on_batch
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, key: Hashable, rows: Sequence[Any]) -> Future:
        """Queue rows solved with options ``key``; the future gets their results in order."""
        job = _Job(key, list(rows))
        self._ensure_worker()
        self._queue.put(job)
        return job.future

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=5)
            self._thread = None

    def _ensure_worker(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._run, name="recourse-solver", daemon=True)
                    self._thread.start()

    def _take(self) -> list[_Job] | None:
        first = self._queue.get()
        if first is None:
            return None
        jobs, rows = [first], len(first.rows)
        while rows < self.max_rows:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                self._queue.put(None)
                break
            jobs.append(job)
            rows += len(job.rows)
        return jobs

    def _run(self) -> None:
        while True:
            jobs = self._take()
            if jobs is None:
                return
            groups: dict[Hashable, list[_Job]] = {}
            for job in jobs:
                if job.future.set_running_or_notify_cancel():
                    groups.setdefault(job.key, []).append(job)
            for key, group in groups.items():
                self._solve_group(key, group)

    def _solve_group(self, key: Hashable, group: list[_Job]) -> None:
        rows = [row for job in group for row in job.rows]
        if self.on_batch is not None:
            self.on_batch(len(rows))
        try:
            results = self.solve(key, rows)
        except BaseException as exc:  # isolate: retry one job at a time so one bad job fails alone
            if len(group) == 1:
                group[0].future.set_exception(exc)
                return
            for job in group:
                try:
                    job.future.set_result(self.solve(key, job.rows))
                except BaseException as single:
                    job.future.set_exception(single)
            return
        start = 0
        for job in group:
            job.future.set_result(results[start:start + len(job.rows)])
            start += len(job.rows)
