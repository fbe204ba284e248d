"""The whole audit: plan → population run (in-process or Dask, resumable) → stability → aggregates → outputs.

Outputs in OUT/: ``applicants.parquet`` (or ``.csv``) — the per-applicant table; ``summary.json``
— every figure of the report; ``report.html`` — one self-contained file; ``stability.csv`` — the
stability pairs; ``parts/`` and ``state.json`` — the resumable intermediate state.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from ..results import to_jsonable
from .html import render
from .io import AuditInputError, count_rows, merge_parts, read_columns, read_head, read_parts
from .run import (AuditConfig, AuditPlan, fingerprint, group_column, make_plan, mark_stopped, prepare_out,
                  run_population)
from .stability import stability
from .stats import summarize

AUDIT_EXACT_SECONDS = 0.2
"""The exact tree search's time per applicant in an audit (the engine's default is 1 s): a
population audit stays fast, and an applicant it could not settle is counted without a proof."""


@dataclass
class AuditResult:
    """Where the outputs are and the summary that went into them."""

    out: Path
    summary: dict[str, Any]
    table_path: Path
    report_path: Path
    summary_path: Path


def run_audit(population: str | Path, out: str | Path, bundle, config: AuditConfig, *,
              engine_kind: str = "inprocess", scheduler: Any = None, progress: bool = True, fresh: bool = False,
              on_chunk: Callable[[int], None] | None = None, engine=None) -> AuditResult:
    """Audit every applicant of ``population`` (CSV or Parquet) with ``bundle``; write the outputs to ``out``.

    A run interrupted at any point and started again with the same arguments continues with the
    chunks not yet written.  ``engine_kind="dask"`` sends the chunks to the Dask scheduler at
    ``scheduler`` (an address or a ``distributed.Client``).
    """
    population, out = Path(population), Path(out)
    if engine_kind not in ("inprocess", "dask"):
        raise AuditInputError(f"`engine_kind`: expected inprocess or dask, got {engine_kind!r}")
    if engine_kind == "dask" and scheduler is None:
        raise AuditInputError("`scheduler`: required with `engine_kind='dask'` (e.g. tcp://127.0.0.1:8786)")
    engine = engine or bundle.engine().with_config(exact_seconds=AUDIT_EXACT_SECONDS)
    columns = read_columns(population)
    if count_rows(population) == 0:
        raise AuditInputError(f"{population}: no applicants (the table has a header but no rows)")
    plan = make_plan(engine, population, columns, config, read_head(population, 200))
    parts = prepare_out(out, fingerprint(population, bundle.hash, plan), fresh)
    started = time.perf_counter()
    if engine_kind == "dask":
        from .dask_engine import run_population_dask

        if bundle.path is None:
            raise AuditInputError("`engine_kind='dask'` needs a `bundle` saved on disk (loaded from a directory)")
        timing = run_population_dask(bundle.path, bundle.hash, engine.config, population, plan, parts, scheduler,
                                     progress=progress, on_chunk=on_chunk)
    else:
        try:
            timing = run_population(engine, population, plan, parts, progress=progress, on_chunk=on_chunk)
        except AuditInputError as exc:  # bad input in a chunk: the same `out` may be used again once it is fixed
            mark_stopped(out, str(exc))
            raise
    return finalize(engine, bundle, population, out, plan, timing, time.perf_counter() - started)


def finalize(engine, bundle, population: Path, out: Path, plan: AuditPlan, timing: dict[str, Any], seconds: float) -> AuditResult:
    """Stability sample, aggregates, summary.json, report.html and the merged per-applicant table."""
    parts = out / "parts"
    cfg = plan.config
    group_cols = {g: group_column(plan.features, g) for g in cfg.group_by}
    wanted = ["row_id", "denied", "status", "n_changes", "cost", "lof", "action_keys", *dict.fromkeys(group_cols.values()),
              *(f"probe_{p}" for p in plan.protected), *(["exact_status", "exact_cost"] if plan.exact else [])]
    table = read_parts(parts, wanted)
    summary = summarize(table, group_cols=group_cols, bins=plan.bins, protected=plan.protected,
                        max_changes=plan.max_changes, bootstrap=cfg.bootstrap, seed=cfg.seed)
    stab_started = time.perf_counter()
    denied_ids = table.loc[table["denied"], "row_id"].to_numpy()
    rng = np.random.default_rng(cfg.seed + 1)
    sample_ids = np.sort(rng.choice(denied_ids, size=min(cfg.stability_n, len(denied_ids)), replace=False)) \
        if len(denied_ids) else denied_ids
    applicants = _rows(parts, sample_ids, plan.features)
    summary["stability"], pairs = stability(engine, applicants, n=len(applicants), noise=cfg.stability_noise,
                                            seed=cfg.seed + 2, max_changes=plan.max_changes, density=plan.density)
    stab_seconds = time.perf_counter() - stab_started
    processed = timing.get("rows_processed", 0)
    summary["run"] = {
        "population": str(population), "bundle": str(bundle.path) if bundle.path else None, "bundle_hash": bundle.hash,
        "model": bundle.metadata.get("model"), "density": engine.config.density if plan.density is True else plan.density,
        "favourable": (engine.schema.target.label_of(engine.schema.target.favourable) if engine.schema.target is not None
                       else None),
        "max_changes": plan.max_changes, "group_by": cfg.group_by, "bins": plan.bins,
        "protected": list(plan.protected), "chunk_size": cfg.chunk_size, "exact": plan.exact,
        "rows_processed_this_run": processed, "rows_resumed": timing.get("rows_resumed", 0),
        "population_seconds": round(timing.get("seconds", 0.0), 3), "stability_seconds": round(stab_seconds, 3),
        "seconds": round(seconds + stab_seconds, 3),
        "applicants_per_second": round(processed / timing["seconds"], 1) if timing.get("seconds") and processed else None,
        "workers": timing.get("workers"),
    }
    summary = to_jsonable(summary)
    summary_path = out / "summary.json"
    _atomic_text(summary_path, json.dumps(summary, indent=2) + "\n")
    pairs.to_csv(out / "stability.csv", index=False)
    report_path = out / "report.html"
    labels = {f.name: f.title for f in engine.schema.features}
    _atomic_text(report_path, render(summary, table, pairs, group_cols, plan.bins,
                                     title=f"Recourse audit of {population.name}", labels=labels))
    table_path = merge_parts(parts, out, cfg.output_format)
    return AuditResult(out, summary, table_path, report_path, summary_path)


def _rows(parts: Path, row_ids: np.ndarray, features: list[str]) -> pd.DataFrame:
    """Applicant feature values of the given rows, read part by part."""
    cols = ["row_id", *(f"x_{f}" for f in features)]
    wanted = set(int(r) for r in row_ids)
    frames = []
    for f in sorted(parts.glob("part-*.parquet")):
        part = pd.read_parquet(f, columns=cols)
        frames.append(part[part["row_id"].isin(wanted)])
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)
    return frame.rename(columns={f"x_{f}": f for f in features})


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
