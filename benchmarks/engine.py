"""``recourse bench engine``: latency and throughput of ``engine.explain`` on German credit.

Also :func:`denied_applicants`, the population of distinct denied applicants that this benchmark
and the HTTP load test (:mod:`benchmarks.http`) send.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
import torch

from recourse.bundle import Bundle, demo_bundle
from recourse.config import DEFAULT_DENSITY
from recourse.data import load_dataset
from recourse.results import to_jsonable
from recourse.scfe import RecourseEngine

from .common import sync as _sync
from .progress import Steps

__all__ = ["ENGINE_BATCH_SIZES", "denied_applicants", "run_engine_benchmark", "format_engine_table"]

ENGINE_BATCH_SIZES = (1, 8, 100, 500)


def denied_applicants(engine: RecourseEngine, n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` distinct German-credit applicants the model denies (the engine and load benchmarks' population).

    The held-out rows the model denies come first; if there are fewer than ``n``, rounds of
    applicants resampled from the whole data set with noise
    (:func:`recourse.audit.io.resample_population`, seeded) follow, keeping each drawn row only
    if the model denies it and it is new.
    """
    from recourse.audit.io import resample_population

    data = load_dataset("german")
    _, _, test, _ = data.split()
    favourable = engine.classes.index(engine.schema.target.favourable)

    def denied_rows(frame: pd.DataFrame) -> pd.DataFrame:
        rows = engine.validate(frame)
        pred = engine.predict_proba(engine.encoder.encode(rows)).argmax(axis=1)
        return rows.iloc[np.flatnonzero(pred != favourable)]

    out = denied_rows(test).drop_duplicates()
    for round_ in range(1000):
        if len(out) >= n:
            break
        draw = denied_rows(resample_population(data.frame, data.schema, 4 * (n - len(out)) + 16, seed=seed + round_))
        out = pd.concat([out, draw], ignore_index=True).drop_duplicates()
    return out.head(n).reset_index(drop=True)


def run_engine_benchmark(
    sizes: tuple[int, ...] = ENGINE_BATCH_SIZES,
    repeats: int | None = None,
    density: str | None = DEFAULT_DENSITY,
    max_changes: int | None = None,
    device: str | torch.device | None = None,
    seed: int = 0,
    bundle: Bundle | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    """Wall time of ``engine.explain`` on the German demo bundle (or ``bundle``) for several batch sizes.

    For each size b: ``repeats`` timed calls (default: 30 for b ≤ 8, 10 for b ≤ 100, else 5), each
    on the next b distinct denied applicants of :func:`denied_applicants` (cycling through them),
    after one untimed warm-up call.  Reports per size the median and p99 seconds per call,
    recourses per second (b / median) and the validity (share of rows answered
    ``recourse_found``, each verified by the engine with the model).  ``progress``: told
    ``progress(done, total, stage)`` before each call (:mod:`benchmarks.progress`; None: silent).
    """
    counts = [repeats or (30 if b <= 8 else 10 if b <= 100 else 5) for b in sizes]
    step = Steps(progress, 3 + sum(counts))
    step("bundle")
    bundle = bundle if bundle is not None else demo_bundle("german", device=device)
    engine = bundle.engine(device=device)
    density_name = None if density in (None, "none", False) else str(density)
    m = int(max_changes) if max_changes is not None else engine.config.max_changes
    step("denied applicants")
    pool = denied_applicants(engine, max(sizes), seed=seed)
    records = pool.to_dict(orient="records")
    step("warm-up")
    engine.explain(records[:2], max_changes=m, density=density_name)  # warm-up: LOF models, kernels
    results = []
    for b, count in zip(sizes, counts):
        times, found, total = [], 0, 0
        for r in range(count):
            step(f"batch {b}, call {r + 1}/{count}")
            start = (r * b) % len(records)
            batch = (records[start:] + records[:start])[:b]
            _sync(engine.device)
            t0 = time.perf_counter()
            answers = engine.explain(batch, max_changes=m, density=density_name)
            _sync(engine.device)
            times.append(time.perf_counter() - t0)
            found += sum(a.found for a in answers)
            total += len(answers)
        t = np.asarray(times)
        median = float(np.median(t))
        results.append({"batch": b, "calls": count, "median_ms": median * 1e3,
                        "p99_ms": float(np.percentile(t, 99)) * 1e3,
                        "recourses_per_second": b / median if median > 0 else float("inf"),
                        "validity": found / total if total else float("nan")})
    step.finish()
    return to_jsonable({"dataset": "german", "density": density_name or "none", "max_changes": m,
                        "device": str(engine.device), "torch_threads": torch.get_num_threads(),
                        "bundle_hash": bundle.hash, "sizes": results})


def format_engine_table(result: dict[str, Any]) -> str:
    """A plain-text table of :func:`run_engine_benchmark`'s figures."""
    header = ["batch", "calls", "median ms", "p99 ms", "recourses/s", "validity"]
    body = [[str(r["batch"]), str(r["calls"]), f"{r['median_ms']:.1f}", f"{r['p99_ms']:.1f}",
             f"{r['recourses_per_second']:.0f}", f"{r['validity']:.1%}"] for r in result["sizes"]]
    widths = [max(len(x) for x in col) for col in zip(header, *body)]
    line = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths))  # noqa: E731
    out = [f"engine.explain on german credit: density={result['density']}, m={result['max_changes']}, "
           f"device={result['device']}, torch threads={result['torch_threads']}",
           line(header), line(["-" * w for w in widths])]
    return "\n".join(out + [line(b) for b in body])
