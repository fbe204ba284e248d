"""The same population run on a Dask cluster: each chunk is one task, read and processed by a worker.

The client sends no rows: it sends each task the chunk's place in the population file (a
:class:`~recourse.audit.io.ChunkSource`: Parquet row groups, or a CSV byte offset), so the
workers read their own partitions; at most ``2 × workers`` tasks are in flight.  Each worker
loads the bundle once (by path; its hash is checked against the client's) and runs exactly
:func:`recourse.audit.run.process_chunk`; the client writes each returned part atomically, so
resume works as in-process and the per-applicant results are the same.  A worker that dies
mid-task loses nothing: the scheduler runs its tasks again elsewhere, and a part is written once
per chunk index (atomically replaced if it ever came twice), so no row is lost or duplicated.
Workers must see the bundle directory and the population at the same paths (a shared or copied
file system).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from .io import AuditInputError, ChunkSource, done_chunks, write_part
from .run import AuditPlan, _progress, process_chunk

_ENGINES: dict[tuple[str, str, Any], Any] = {}


def _worker_engine(bundle_path: str, bundle_hash: str, config) -> Any:
    """The engine for a bundle, loaded once per worker process."""
    key = (bundle_path, bundle_hash, repr(config))
    if key not in _ENGINES:
        from ..bundle import load_bundle

        bundle = load_bundle(bundle_path)
        if bundle.hash != bundle_hash:
            raise RuntimeError(f"bundle {bundle_path} on the worker does not match the client's (hash {bundle_hash[:12]})")
        _ENGINES[key] = bundle.engine(config)
    return _ENGINES[key]


def _task(bundle_path: str, bundle_hash: str, config, chunks: ChunkSource, k: int, plan: AuditPlan, source: str):
    """On a worker: read chunk k from the population file and audit it."""
    return k, process_chunk(_worker_engine(bundle_path, bundle_hash, config), chunks.read(k), k, plan, source)


def run_population_dask(bundle_path: Path, bundle_hash: str, engine_config, population: Path, plan: AuditPlan,
                        parts: Path, scheduler: str | Any, *, progress: bool = True,
                        on_chunk: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Run the pending chunks on the Dask cluster at ``scheduler`` (an address or a ``Client``)."""
    from distributed import Client, as_completed

    own = not isinstance(scheduler, Client)
    try:
        client = Client(scheduler, timeout="20s") if own else scheduler
    except (OSError, TimeoutError, ValueError) as exc:
        raise AuditInputError(f"`scheduler`: cannot connect to the Dask scheduler at {scheduler!r} ({exc})") from None
    try:
        workers = max(len(client.scheduler_info().get("workers", {})), 1)
        limit = 2 * workers
        chunks = ChunkSource.of(population, plan.config.chunk_size, plan.columns)
        size, total, done = chunks.chunk_size, chunks.rows, done_chunks(parts)
        done_rows = sum(min(size, total - k * size) for k in done if k * size < total)
        started, processed = time.perf_counter(), 0
        with _progress(total, done_rows, progress) as bar:
            pending = as_completed()
            todo = iter([k for k in range(chunks.n_chunks) if k not in done])
            exhausted = False

            def submit_more() -> None:
                nonlocal exhausted
                while not exhausted and pending.count() < limit:
                    k = next(todo, None)
                    if k is None:
                        exhausted = True
                        return
                    pending.add(client.submit(_task, str(bundle_path), bundle_hash, engine_config, chunks, k, plan,
                                              str(population), pure=False, key=f"recourse-audit-{k}-{time.time_ns()}"))

            submit_more()
            while pending.count():
                future = next(pending)
                k, table = future.result()
                write_part(table, parts, k)
                processed += len(table)
                bar.update(len(table))
                if on_chunk is not None:
                    on_chunk(k)
                submit_more()
        return {"rows_processed": processed, "rows_resumed": done_rows, "seconds": time.perf_counter() - started,
                "workers": workers}
    finally:
        if own:
            client.close()
