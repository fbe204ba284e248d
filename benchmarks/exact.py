"""How close to the optimum, and is every "no recourse" proven?  ``recourse bench exact``.

Protocol: the ``bench scfe`` points of a data set (German, Adult: the held-out applicants the
model denies; Wine: each held-out row pushed to the other class) and a bundle of the given model
kind (built under ``$RECOURSE_HOME`` on first use).  The engine answers them twice, timed: as
configured (``full``: the exact MILP step for linear models, :mod:`recourse.exact_linear`; the
exact search over the split values for tree models, :mod:`recourse.lattice`) and with the
sparse search alone (``search``: ``linear_exact=False``, ``exact_limit=0``).  Reported per mode:
answers, "no recourse" proven (the answer's message says an exact check proved it), "no
recourse with m changes, the closest found needs more" (without a proof for m) and not proven,
seconds.

Linear models are also compared with the exact optimum (:func:`recourse.milp.exact_recourse`,
the same confidence and rules): the share of answers within 5 % of the optimal cost, the gap
quantiles, the applicants the MILP answers and the engine did not (``missed``), and the MILP's
certified infeasibilities that the engine reports as none.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from recourse.config import DEFAULT_DENSITY
from recourse.results import to_jsonable

from .progress import Steps
from .scfe import DEFAULT_M, _bundle, benchmark_points

PROVEN = "an exact check proved"
MORE = "Allow more changes"


def run_exact_benchmark(dataset: str = "german", model: str = "logistic", n: int = 200, density: str | None = DEFAULT_DENSITY,
                        max_changes: int | None = None, progress: Any = None) -> dict[str, Any]:
    """Run the protocol of the module docstring and return a JSON-ready dict (``progress``: told
    ``progress(done, total, stage)`` before each phase, :mod:`benchmarks.progress`; None: silent)."""
    step = Steps(progress, 4 + 2 * (model == "logistic"))
    step("bundle")
    bundle = _bundle(dataset, None, None, 0, model, progress=step.nested("bundle"))
    engine = bundle.engine()
    m = int(max_changes) if max_changes is not None else DEFAULT_M[dataset]
    step("points")
    queries, _, targets = benchmark_points(dataset, engine, n)
    density_name = None if density in (None, "none") else density
    modes = {"full": engine, "search": engine.with_config(linear_exact=False, exact_limit=0)}
    result: dict[str, Any] = {"dataset": dataset, "model": bundle.metadata.get("model", model), "n": len(queries),
                              "max_changes": m, "density": density_name or "none",
                              "min_probability": engine.config.min_probability, "modes": {}}
    answers: dict[str, list] = {}
    for name, eng in modes.items():
        step(f"{name} mode on {len(queries)} points")
        target_values = [eng.classes[t] for t in targets]
        eng.explain(queries.head(2), max_changes=m, density=density_name, target=target_values[:2])  # warm-up
        started = time.perf_counter()
        got = eng.explain(queries, max_changes=m, density=density_name, target=target_values)
        seconds = time.perf_counter() - started
        answers[name] = got
        none = [a for a in got if not a.found and a.status != "already_favourable"]
        more = [a for a in none if MORE in a.message and PROVEN not in a.message]
        result["modes"][name] = {"answers": sum(a.found for a in got),
                                 "none_proven": sum(PROVEN in a.message for a in none),
                                 "none_needs_more_changes": len(more),
                                 "none_unproven": sum(PROVEN not in a.message and MORE not in a.message for a in none),
                                 "seconds": round(seconds, 3), "per_second": round(len(got) / max(seconds, 1e-9), 1)}
    found = {k: np.array([a.found for a in v]) for k, v in answers.items()}
    result["found_only_with_exact"] = int((found["full"] & ~found["search"]).sum())
    if model == "logistic":
        result["milp"] = {}
        for name in modes:
            step(f"exact MILP optimum vs {name}")
            result["milp"][name] = _milp_gap(engine, queries, targets, answers[name], m)
    step.finish()
    return to_jsonable(result)


def _milp_gap(engine: Any, queries: Any, targets: np.ndarray, answers: list, m: int) -> dict[str, Any]:
    """The engine's answers against the exact optimum (see the module docstring)."""
    from recourse.milp import exact_recourse

    started = time.perf_counter()
    status = np.full(len(queries), "", dtype=object)
    optimum = np.full(len(queries), np.nan)
    for target in np.unique(targets):
        pick = np.flatnonzero(targets == target)
        res = exact_recourse(engine.with_config(max_changes=m), queries.iloc[pick], m, target=int(target))
        if res is None:
            return {"error": "the model is not linear"}
        status[pick], optimum[pick] = res.status, res.cost
    seconds = time.perf_counter() - started
    found = np.array([a.found for a in answers])
    cost = np.array([a.metrics.get("cost", np.nan) if a.found else np.nan for a in answers])
    optimal = status == "optimal"
    both = optimal & found
    gap = (cost[both] - optimum[both]) / np.maximum(optimum[both], 1e-12)
    infeasible = status == "infeasible"
    return {"optimal": int(optimal.sum()), "certified_none": int(infeasible.sum()),
            "certified_none_reported_as_none": int((infeasible & ~found).sum()),
            "missed": int((optimal & ~found).sum()),
            "share_within_5pct": float(np.mean(gap <= 0.05 + 1e-9)) if gap.size else None,
            "gap_q50": float(np.quantile(gap, 0.5)) if gap.size else None,
            "gap_q90": float(np.quantile(gap, 0.9)) if gap.size else None,
            "gap_max": float(gap.max()) if gap.size else None,
            "milp_seconds": round(seconds, 3)}


def format_exact_table(result: dict[str, Any]) -> str:
    """A terminal table of :func:`run_exact_benchmark`'s result."""
    head = (f"{result['dataset']} · {result['model']} · m = {result['max_changes']} · density {result['density']} · "
            f"{result['n']} applicants · confidence {result['min_probability']}")
    lines = [head, "mode     answers  none (proven)  none (more changes needed)  none (not proven)  seconds  per s"]
    for name, r in result["modes"].items():
        lines.append(f"{name:<8} {r['answers']:>7}  {r['none_proven']:>13}  {r['none_needs_more_changes']:>26}  "
                     f"{r['none_unproven']:>17}  {r['seconds']:>7}  {r['per_second']:>5}")
    lines.append(f"answered only with the exact step: {result['found_only_with_exact']}")
    for name, g in (result.get("milp") or {}).items():
        if "error" in g:
            lines.append(f"MILP ({name}): {g['error']}")
            continue
        share = "n/a" if g["share_within_5pct"] is None else f"{g['share_within_5pct']:.1%}"
        lines.append(f"MILP vs {name}: within 5 % of the optimum {share} of {g['optimal']} "
                     f"(gap median {g['gap_q50']}, 90 % {g['gap_q90']}, max {g['gap_max']}); missed {g['missed']}; "
                     f"certified none {g['certified_none']} (reported as none {g['certified_none_reported_as_none']})")
    return "\n".join(lines)
