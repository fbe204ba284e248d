"""Micro-batching: concurrent requests share one engine call.

Request threads :meth:`~MicroBatcher.submit` their rows and wait on a future; one worker thread
takes everything queued when it becomes free (up to ``max_rows``), groups it by solver options
and runs each group as one batch.  Under load, waiting requests are solved together at about the
cost of one.

Adaptive gathering window.  Taking only what is queued at that instant lets batches fragment
under steady load: while batch A is solved, the clients answered by batch B send their next
requests, so A and B alternate with half the rows each and every row pays twice the solver's
fixed cost.  So the batcher estimates the concurrency as ``ĉ`` = jobs in the last batch + jobs
queued when it finished, and when it becomes free with fewer than ``ĉ`` jobs queued it waits
for more, at most ``min(max_wait, wait_share · last solve time)`` and only until ``ĉ`` jobs
are there.  A lone client has ``ĉ = 1`` and never waits; a client leaving costs at most one
window.

With a ``finish`` stage (e.g. writing the answers to the explanation log and waiting for the
disk), a second thread runs it on each solved group while the solver thread already works on
the next one: a two-stage pipeline, so the solver never waits for an ``fsync``.  A job's future
is resolved only after its group has been finished.  Everything waiting for the finisher (solved
groups and :meth:`~MicroBatcher.submit_solved` jobs, e.g. answers reused from the log) is
finished in one call: group commit across concurrent requests.

Load shedding.  The queue is bounded (``max_queued_rows``): a submission that would exceed it
raises :class:`Overloaded` at once (the service answers 503 with ``Retry-After``), so a burst
cannot build a backlog that every later request waits behind.  A waiter that gives up (its
deadline passed, or its client hung up) calls :meth:`MicroBatcher.abandon`: a job not yet taken
is cancelled and never solved; a group already being solved stops at the next slice of
``slice_rows`` rows once all its waiters have left, and is never finished (its answers are not
logged as given).  ``on_shed(reason, rows)`` counts what was shed.
"""
from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Sequence

Solve = Callable[[Hashable, list[Any]], list[Any]]
"""solve(options key, rows) -> one result per row (raises only on a bug)."""
Finish = Callable[[list[Any]], list[Any]]
"""finish(results of one solve) -> one final result per row (e.g. after logging them)."""


class Overloaded(RuntimeError):
    """The queue holds as many rows as it may: the submission is refused, not queued."""


@dataclass
class _Job:
    key: Hashable
    rows: list[Any]
    future: Future = field(default_factory=Future)
    abandoned: bool = False
    """Its waiter is gone: not solved if not started, not finished (logged) if solved."""


class MicroBatcher:
    """A solver thread that batches the rows of concurrent submissions (and an optional finisher)."""

    def __init__(self, solve: Solve, max_rows: int = 1024, on_batch: Callable[[int], None] | None = None,
                 finish: Finish | None = None, max_wait: float = 0.008, wait_share: float = 0.5,
                 max_queued_rows: int | None = None, on_shed: Callable[[str, int], None] | None = None,
                 slice_rows: int = 256):
        self.solve = solve
        self.slice_rows = max(1, int(slice_rows))
        """A group is solved in engine calls of at most this many rows; between two, a group whose
        every waiter has left is dropped (a 1,000-row batch whose client hung up stops within one slice)."""
        self.max_queued_rows = max_queued_rows
        self.on_shed = on_shed
        self._queued_rows = 0  # rows submitted and not yet taken by the solver
        self.finish = finish
        self.max_rows = max_rows
        self.on_batch = on_batch
        self.max_wait = max(0.0, float(max_wait))
        self.wait_share = max(0.0, float(wait_share))
        self._expected = 1  # ĉ: estimated concurrent jobs
        self._last_seconds = 0.0  # wall time of the last solve
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._done: queue.Queue[tuple[list[_Job], list[Any]] | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def submit(self, key: Hashable, rows: Sequence[Any]) -> Future:
        """Queue rows solved with options ``key``; the future gets their results in order.
        Raises :class:`Overloaded` when the queue cannot take them (a lone submission always fits)."""
        job = _Job(key, list(rows))
        with self._lock:
            limit = self.max_queued_rows
            if limit is not None and self._queued_rows > 0 and self._queued_rows + len(job.rows) > limit:
                self._shed("overloaded", len(job.rows))
                raise Overloaded(f"{self._queued_rows} rows are waiting (at most {limit})")
            self._queued_rows += len(job.rows)
        job.future.recourse_job = job  # type: ignore[attr-defined]  # for abandon()
        self._ensure_workers()
        self._queue.put(job)
        return job.future

    def abandon(self, future: Future) -> None:
        """The waiter of ``future`` is gone: cancel its job if it has not started, else keep it
        from being finished (its answers are dropped, not logged)."""
        job = getattr(future, "recourse_job", None)
        if job is None or job.abandoned or future.done():
            return
        job.abandoned = True
        self._shed("abandoned", len(job.rows))
        future.cancel()  # a job not yet taken is skipped by the solver

    def _shed(self, reason: str, rows: int) -> None:
        if self.on_shed is not None:
            self.on_shed(reason, rows)

    def submit_solved(self, rows: Sequence[Any]) -> Future:
        """Queue rows that need only the finishing stage (e.g. answers reused from the log), so
        that they share its next transaction; without a finish stage they are returned as is."""
        job = _Job(None, list(rows))
        job.future.recourse_job = job  # type: ignore[attr-defined]  # for abandon()
        job.future.set_running_or_notify_cancel()
        if self.finish is None:
            job.future.set_result(job.rows)
            return job.future
        self._ensure_workers()
        self._done.put(([job], job.rows))
        return job.future

    def close(self) -> None:
        with self._lock:
            threads, self._threads = self._threads, []
        if threads:
            self._queue.put(None)
            for thread in threads:
                thread.join(timeout=5)

    def _ensure_workers(self) -> None:
        """Start each pipeline stage that is not running (first use, or after a crash)."""
        if self._threads and all(t.is_alive() for t in self._threads):
            return
        with self._lock:
            stages = [("recourse-solver", self._run)]
            if self.finish is not None:
                stages.append(("recourse-finish", self._run_finish))
            current = {t.name: t for t in self._threads}
            threads = []
            for name, target in stages:
                thread = current.get(name)
                if thread is None or not thread.is_alive():
                    thread = threading.Thread(target=target, name=name, daemon=True)
                    thread.start()
                threads.append(thread)
            self._threads = threads

    def _take(self) -> list[_Job] | None:
        """The next jobs to solve: the first to arrive, everything queued, and (adaptive window)
        up to ``ĉ`` jobs arriving within the window; None when closing."""
        first = self._queue.get()
        if first is None:
            return None
        jobs, rows = [first], len(first.rows)
        end = time.perf_counter() + min(self.max_wait, self.wait_share * self._last_seconds)
        while rows < self.max_rows:
            remaining = end - time.perf_counter()
            try:
                if len(jobs) >= self._expected or remaining <= 0:
                    job = self._queue.get_nowait()
                else:
                    job = self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            if job is None:
                self._queue.put(None)
                break
            jobs.append(job)
            rows += len(job.rows)
        with self._lock:
            self._queued_rows -= sum(len(j.rows) for j in jobs)
        return jobs

    def _run(self) -> None:
        while True:
            jobs = self._take()
            if jobs is None:
                self._done.put(None)  # closing: the finisher ends after the groups before it
                return
            groups: dict[Hashable, list[_Job]] = {}
            for job in jobs:
                if not job.abandoned and job.future.set_running_or_notify_cancel():  # cancelled: dropped unsolved
                    groups.setdefault(job.key, []).append(job)
            started = time.perf_counter()
            for key, group in groups.items():
                self._solve_group(key, group)
            self._last_seconds = time.perf_counter() - started
            self._expected = len(jobs) + self._queue.qsize()

    def _run_finish(self) -> None:
        """Finish everything waiting at once: solved groups and :meth:`submit_solved` jobs share
        one ``finish`` call (one log transaction); if it fails, each group is finished alone so
        that one bad group fails alone."""
        while True:
            item = self._done.get()
            if item is None:
                return
            items, closing = [item], False
            while True:
                try:
                    more = self._done.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    closing = True
                    break
                items.append(more)
            if len(items) == 1:
                self._finish_group(*items[0])
            else:
                self._finish_many(items)
            if closing:
                return

    @staticmethod
    def _live(group: list[_Job], results: list[Any]) -> tuple[list[_Job], list[Any]]:
        """The jobs (and their results) whose waiters are still there; the others are dropped."""
        if not any(job.abandoned for job in group):
            return group, results
        keep, kept, start = [], [], 0
        for job in group:
            n = len(job.rows)
            if not job.abandoned:
                keep.append(job)
                kept += results[start:start + n]
            start += n
        return keep, kept

    def _finish_many(self, items: list[tuple[list[_Job], list[Any]]]) -> None:
        items = [live for live in (self._live(g, rs) for g, rs in items) if live[0]]
        if not items:
            return
        results = [r for _, rs in items for r in rs]
        try:
            final = self.finish(results)
        except BaseException:
            for group, rs in items:
                self._finish_group(group, rs)
            return
        start = 0
        for group, rs in items:
            self._resolve(group, final[start:start + len(rs)])
            start += len(rs)

    def _solve_group(self, key: Hashable, group: list[_Job]) -> None:
        rows = [row for job in group for row in job.rows]
        try:
            results: list[Any] = []
            for start in range(0, len(rows), self.slice_rows):  # slices: abandoned work stops between them
                if start and all(job.abandoned for job in group):
                    return
                part = rows[start:start + self.slice_rows]
                if self.on_batch is not None:
                    self.on_batch(len(part))  # rows per engine call
                results += self.solve(key, part)
        except BaseException:  # isolate: retry one job at a time so one bad job fails alone
            if len(group) == 1:
                self._solve_alone(key, group[0])
                return
            for job in group:
                self._solve_alone(key, job)
            return
        self._deliver(group, results)

    def _solve_alone(self, key: Hashable, job: _Job) -> None:
        try:
            results = self.solve(key, job.rows)
        except BaseException as exc:
            job.future.set_exception(exc)
            return
        self._deliver([job], results)

    def _deliver(self, group: list[_Job], results: list[Any]) -> None:
        if self.finish is None:
            self._resolve(group, results)
        else:
            self._done.put((group, results))

    def _finish_group(self, group: list[_Job], results: list[Any]) -> None:
        group, results = self._live(group, results)
        if not group:
            return
        try:
            final = self.finish(results)
        except BaseException as exc:
            for job in group:
                job.future.set_exception(exc)
            return
        self._resolve(group, final)

    @staticmethod
    def _resolve(group: list[_Job], results: list[Any]) -> None:
        start = 0
        for job in group:
            job.future.set_result(results[start:start + len(job.rows)])
            start += len(job.rows)
