"""`recourse bench audit`: a large synthetic population audited end to end, and the MILP gap on a logistic bundle.

1. ``n`` applicants resampled from German credit with noise (:func:`resample_population`) are
   written to Parquet and audited in-process with the demo (MLP) bundle: wall time,
   applicants/s and peak resident memory (``ru_maxrss`` of this process) are reported.
2. ``gap_n`` applicants of the same population are audited with the German logistic-regression
   bundle and exact answers: certified no-recourse counts, and the share of applicants whose
   proximal-gradient cost is within 5 % of the exact optimum.
"""
from __future__ import annotations

import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from recourse.audit.io import resample_population
from recourse.audit.pipeline import run_audit
from recourse.audit.run import AuditConfig


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_audit_benchmark(n: int = 100_000, gap_n: int = 2_000, chunk_size: int = 2_000, seed: int = 0,
                        workdir: str | Path | None = None, progress: bool = False) -> dict[str, Any]:
    """Run both parts and return their figures (see the module docstring); ``progress``: show each
    audit's progress bar (on stderr)."""
    from recourse.bundle import build_dataset_bundle, demo_bundle, load_bundle, recourse_home
    from recourse.data import load_dataset

    tmp = tempfile.TemporaryDirectory(prefix="recourse-bench-audit-") if workdir is None else None
    work = Path(tmp.name if tmp else workdir)
    work.mkdir(parents=True, exist_ok=True)
    try:
        bundle = demo_bundle("german")
        data = load_dataset("german")
        population = resample_population(data.frame, bundle.schema, n, seed=seed)
        pop_path = work / "population.parquet"
        population.to_parquet(pop_path, index=False)
        gap_pop = work / "population-gap.parquet"
        population.head(gap_n).to_parquet(gap_pop, index=False)
        del population
        config = AuditConfig(group_by=["status_sex", "age"], chunk_size=chunk_size, seed=seed)
        started = time.perf_counter()
        result = run_audit(pop_path, work / "audit", bundle, config, progress=progress, fresh=True)
        wall = time.perf_counter() - started
        s = result.summary
        audit = {
            "applicants": n, "denied": s["coverage"]["denied"], "coverage": s["coverage"]["coverage"],
            "wall_seconds": round(wall, 2), "population_seconds": s["run"]["population_seconds"],
            "applicants_per_second": round(n / wall, 1),
            "denied_per_second": round(s["coverage"]["denied"] / s["run"]["population_seconds"], 1),
            "peak_rss_mib": round(peak_rss_mib(), 1), "chunk_size": chunk_size, "bundle": "german demo (mlp, kde)",
            "within_5_minutes": wall <= 300.0, "within_2_gib": peak_rss_mib() <= 2048.0,
        }
        logistic_path = recourse_home() / "bundles" / "german-logistic"
        try:
            logistic = load_bundle(logistic_path)
        except Exception:
            logistic = build_dataset_bundle("german", logistic_path, model="logistic")
        gap: dict[str, Any] = {"applicants": gap_n}
        variants = (("default", True, None), ("no_density", None, None), ("m1", True, 1))
        for label, density, m in variants:
            cfg = AuditConfig(group_by=["status_sex"], chunk_size=chunk_size, seed=seed, exact="on", density=density,
                              max_changes=m, stability_n=0, bootstrap=200)
            t = time.perf_counter()
            res = run_audit(gap_pop, work / f"gap-{label}", logistic, cfg, progress=progress, fresh=True)
            ex = res.summary["exact"]
            gap[label] = {
                "max_changes": res.summary["coverage"]["max_changes"],
                "seconds": round(time.perf_counter() - t, 2), "denied": res.summary["coverage"]["denied"],
                "exact_optimal": ex["optimal"], "certified_no_recourse": ex["certified_no_recourse"],
                "certified_none_reported_as_none": ex["certified_none_reported_as_none"],
                "contradictions": ex["contradictions"], "apg_missed": ex["apg_missed"], "compared": ex["compared"],
                "share_within_5pct_of_compared": ex["share_within_tolerance_of_compared"],
                "share_within_5pct_of_optimal": ex["share_within_tolerance_of_optimal"],
                "median_gap": ex["gap"].get("q50"), "p90_gap": ex["gap"].get("q90"), "max_gap": ex["gap"].get("max"),
            }
            if label == "default":
                gap["against_kappa"] = _kappa_gap(logistic, res.table_path, res.summary["coverage"]["max_changes"])
        return {"audit": audit, "milp_gap": gap, "peak_rss_mib": round(peak_rss_mib(), 1)}
    finally:
        if tmp is not None:
            tmp.cleanup()


def _kappa_gap(bundle, table_path: Path, max_changes: int) -> dict[str, Any]:
    """APG costs against the exact optimum that must clear the solver's margin κ (not the acceptance margin 0).

    Shows how much of the fair gap (exact at margin > 0) is the κ safety margin of the search.
    """
    from recourse.milp import exact_recourse

    engine = bundle.engine()
    table = pd.read_parquet(table_path)
    rows = table[table["status"] == "recourse_found"].reset_index(drop=True)
    frame = rows[[f"x_{n}" for n in engine.schema.names]].rename(columns=lambda c: c[2:])
    res = exact_recourse(engine, engine.validate(frame), max_changes, epsilon=engine.config.margin)
    ok = res.status == "optimal"
    gap = (rows["cost"].to_numpy()[ok] - res.cost[ok]) / res.cost[ok]
    return {"kappa": engine.config.margin, "compared": int(ok.sum()),
            "share_within_5pct": float((gap <= 0.05 + 1e-9).mean()) if ok.any() else None,
            "share_apg_cheaper": float((gap < -1e-9).mean()) if ok.any() else None}


class TreeMemory:
    """Peak resident memory of this process and of all its descendants (the Dask workers), sampled
    every ``interval`` seconds on a background thread (psutil, which ``distributed`` brings)."""

    def __init__(self, interval: float = 0.2) -> None:
        import threading

        import psutil

        self._me = psutil.Process()
        self._stop = threading.Event()
        self.peak_total = 0.0
        self.peak_client = 0.0
        self.peak_process: dict[int, float] = {}
        self._thread = threading.Thread(target=self._sample, args=(interval,), daemon=True)

    def _sample(self, interval: float) -> None:
        import psutil

        while not self._stop.is_set():
            total = 0.0
            for proc in [self._me, *self._me.children(recursive=True)]:
                try:
                    rss = proc.memory_info().rss / 2**20
                except psutil.Error:
                    continue
                total += rss
                if proc.pid == self._me.pid:
                    self.peak_client = max(self.peak_client, rss)
                else:
                    self.peak_process[proc.pid] = max(self.peak_process.get(proc.pid, 0.0), rss)
            self.peak_total = max(self.peak_total, total)
            self._stop.wait(interval)

    def __enter__(self) -> "TreeMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


COMPARED = ["row_id", "denied", "status", "n_changes", "actions", "counterfactual"]
"""The per-applicant columns that must be identical between engines (the cost is compared to 1e-9)."""


def run_dask_scaling(n: int = 100_000, workers: tuple[int, ...] = (1, 2), chunk_size: int = 2_000, seed: int = 0,
                     workdir: str | Path | None = None, progress: bool = False) -> dict[str, Any]:
    """The same audit in-process and on local Dask clusters of 1, 2, ... worker processes (one thread
    each): wall time, peak memory of the client and of each worker, and whether the per-applicant
    table is identical to the in-process one.  The workers read their own partitions of the Parquet file.
    ``progress``: show each audit's progress bar (on stderr)."""
    import numpy as np
    from distributed import Client, LocalCluster

    from recourse.bundle import demo_bundle
    from recourse.data import load_dataset

    tmp = tempfile.TemporaryDirectory(prefix="recourse-bench-dask-") if workdir is None else None
    work = Path(tmp.name if tmp else workdir)
    work.mkdir(parents=True, exist_ok=True)
    try:
        bundle = demo_bundle("german")
        pop_path = work / "population.parquet"
        resample_population(load_dataset("german").frame, bundle.schema, n, seed=seed).to_parquet(pop_path, index=False)
        config = AuditConfig(group_by=["status_sex", "age"], chunk_size=chunk_size, seed=seed)
        runs: dict[str, Any] = {}
        with TreeMemory() as memory:
            started = time.perf_counter()
            reference = run_audit(pop_path, work / "inprocess", bundle, config, progress=progress, fresh=True)
            wall = time.perf_counter() - started
        runs["inprocess"] = {"wall_seconds": round(wall, 2), "population_seconds": round(reference.summary["run"]["population_seconds"], 2),
                             "peak_rss_mib": round(memory.peak_client, 1)}
        ref = pd.read_parquet(reference.table_path).sort_values("row_id").reset_index(drop=True)
        for k in workers:
            with LocalCluster(n_workers=k, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
                    Client(cluster) as client:
                with TreeMemory() as memory:
                    started = time.perf_counter()
                    result = run_audit(pop_path, work / f"dask-{k}", bundle, config, progress=progress, fresh=True,
                                       engine_kind="dask", scheduler=client)
                    wall = time.perf_counter() - started
                worker_pids = set(client.run(os.getpid).values())
            table = pd.read_parquet(result.table_path).sort_values("row_id").reset_index(drop=True)
            identical = bool(len(table) == len(ref) and table[COMPARED].equals(ref[COMPARED])
                             and np.allclose(table["cost"].fillna(-1), ref["cost"].fillna(-1), rtol=1e-9))
            runs[f"dask_{k}"] = {
                "workers": k, "wall_seconds": round(wall, 2),
                "population_seconds": round(result.summary["run"]["population_seconds"], 2),
                "peak_rss_client_mib": round(memory.peak_client, 1),
                "peak_rss_per_worker_mib": sorted(round(memory.peak_process.get(pid, 0.0), 1) for pid in worker_pids),
                "peak_rss_all_processes_mib": round(memory.peak_total, 1),
                "identical_to_inprocess": identical, "coverage_equal": result.summary["coverage"] == reference.summary["coverage"],
            }
        return {"applicants": n, "chunk_size": chunk_size, "cpu_cores": os.cpu_count(), "runs": runs}
    finally:
        if tmp is not None:
            tmp.cleanup()


def format_dask_scaling(result: dict[str, Any]) -> str:
    lines = [f"audit of {result['applicants']:,} applicants, chunks of {result['chunk_size']}, {result['cpu_cores']} CPU cores:"]
    for name, r in result["runs"].items():
        if name == "inprocess":
            lines.append(f"  in-process: wall {r['wall_seconds']} s (population {r['population_seconds']} s), peak RSS {r['peak_rss_mib']} MiB")
        else:
            lines.append(f"  Dask, {r['workers']} worker process(es): wall {r['wall_seconds']} s (population {r['population_seconds']} s), "
                         f"peak RSS client {r['peak_rss_client_mib']} MiB, workers {r['peak_rss_per_worker_mib']} MiB, "
                         f"all {r['peak_rss_all_processes_mib']} MiB; identical to in-process: {r['identical_to_inprocess']}")
    return "\n".join(lines)


def format_benchmark(result: dict[str, Any]) -> str:
    """Human-readable figures."""
    a = result["audit"]
    lines = [f"audit of {a['applicants']:,} applicants ({a['bundle']}, chunks of {a['chunk_size']}):",
             f"  wall {a['wall_seconds']} s ({'≤' if a['within_5_minutes'] else '>'} 5 min), {a['applicants_per_second']} applicants/s, "
             f"{a['denied']:,} denied ({a['denied_per_second']} denied/s through the engine), coverage {100 * (a['coverage'] or 0):.1f} %",
             f"  peak RSS {a['peak_rss_mib']} MiB ({'≤' if a['within_2_gib'] else '>'} 2 GiB)"]
    g = result["milp_gap"]
    for label in ("default", "no_density", "m1"):
        r = g[label]
        share = r["share_within_5pct_of_compared"]
        lines.append(f"MILP gap, logistic bundle, {g['applicants']:,} applicants, {label} (m = {r['max_changes']}): {r['denied']} denied, "
                     f"{r['certified_no_recourse']} certified no recourse ({r['certified_none_reported_as_none']} reported as none), "
                     f"APG within 5 % for {100 * (share or 0):.1f} % of {r['compared']} compared "
                     f"(median gap {r['median_gap']}, 90 % {r['p90_gap']}), {r['apg_missed']} missed, {r['seconds']} s")
    k = g["against_kappa"]
    lines.append(f"  against the exact optimum at margin ≥ κ = {k['kappa']}: APG within 5 % for "
                 f"{100 * (k['share_within_5pct'] or 0):.1f} % of {k['compared']}, cheaper for {100 * (k['share_apg_cheaper'] or 0):.1f} %")
    return "\n".join(lines)


__all__ = ["run_audit_benchmark", "format_benchmark", "peak_rss_mib", "run_dask_scaling", "format_dask_scaling", "TreeMemory"]
