"""Population audits of recourse: who has recourse, at what cost, and is the burden fair.

Modules, one job each:

* :mod:`.io` — chunked CSV/Parquet input, atomic part files, merging, synthetic populations;
* :mod:`.run` — the plan and the per-chunk work (decision, recourse, probe, exact), the resumable
  in-process run;  :mod:`.dask_engine` — the same run on a Dask cluster;
* :mod:`.stats` — coverage, fairness by group with bootstrap intervals, actions, plausibility, probe, MILP gap;
* :mod:`.stability` — recourse for x and for x plus noise;  :mod:`.probe` — the direct-discrimination probe;
* the exact MILP reference for linear models lives in :mod:`recourse.milp` (the engine certifies "no recourse" with it too);
* :mod:`.html` / :mod:`.text` — the report and the terminal summary;  :mod:`.pipeline` — all of it.

    from recourse.audit import AuditConfig, run_audit
    result = run_audit("population.csv", "audit/", bundle, AuditConfig(group_by=["status_sex", "age"]))
"""
from .io import AuditInputError
from .pipeline import AuditResult, run_audit
from .run import AuditConfig

__all__ = ["AuditConfig", "AuditInputError", "AuditResult", "run_audit"]
