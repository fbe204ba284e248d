r"""The exact MILP as the last step for linear models: the cheapest answer, and proof of "none".

For a binary model whose margin is affine in the scaled encoding (a logistic regression, or a raw
pipeline folded into one), :mod:`recourse.milp` solves the cheapest admissible counterfactual
exactly.  After the sparse search, every row of the call gets that optimum:

* a row the search answered keeps the cheaper of the two; with a density term in the call, the
  MILP's answer replaces the search's only when it is no less plausible (target-class LOF at
  most max(LOF of the search's answer, 1) + ``LOF_SLACK``, the cost polish's guard), so the
  density still has its say; without one, the cheapest answer wins;
* a row the search missed gets the MILP's answer;
* an infeasible MILP certifies that the row has no recourse with at most m changes.

Every MILP answer passes the same gate as any other (:class:`recourse.verify.Verification`).  It
applies to calls with the schema's own rules and cost weights (the MILP encodes exactly those;
a request's personal limits or weights keep the search's answer), not to robust calls.  About 30
ms per applicant on two CPU cores (HiGHS through :func:`scipy.optimize.milp`).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .polish import LOF_SLACK
from .verify import BatchSolution


def milp_by_target(engine: Any, codes: np.ndarray, targets: np.ndarray, max_changes: int,
                   threshold: float) -> tuple[np.ndarray, np.ndarray] | None:
    """The MILP of each row of ``codes`` (N, F) toward its target class in ``targets``, at margin
    ``threshold`` + EPSILON: (status per row — "optimal", "infeasible" or "error" —, intervention
    codes of the optimal rows, the original's elsewhere); None when the model is not linear."""
    from .milp import EPSILON, exact_recourse

    encoder = engine.encoder
    status = np.full(len(codes), "", dtype=object)
    proposed = np.array(codes, dtype=float, copy=True)
    for target in np.unique(targets):
        pick = np.flatnonzero(targets == target)
        result = exact_recourse(engine, encoder.frame_from_codes(codes[pick]), max_changes, target=int(target),
                                epsilon=threshold + EPSILON, margin=engine.linear_margin(int(target)))
        if result is None:
            return None
        status[pick] = result.status
        optimal = np.flatnonzero(result.status == "optimal")
        if optimal.size:
            seen = encoder.to_codes(result.counterfactuals.iloc[optimal])
            proposed[pick[optimal]] = encoder.action_set.consequences.interventions(codes[pick[optimal]], seen)
    return status, proposed


def linear_polish(engine: Any, gate: Any, codes: np.ndarray, targets: np.ndarray, solution: BatchSolution,
                  max_changes: int, threshold: float, guard: bool = True) -> BatchSolution | None:
    """``solution`` with the MILP's cheaper (or only) answers and its certificates of none, for the
    rows of ``codes``/``targets``; None when the engine's model is not linear (nothing changed).

    ``gate``: the search's verification at the call's margin ``threshold``; ``guard``: keep a
    search's answer that is more plausible (the call has a density term)."""
    n = len(codes)
    if n == 0:
        return solution
    encoder = engine.encoder
    solved = milp_by_target(engine, codes, targets, max_changes, threshold)
    if solved is None:
        return None
    status, proposed = solved
    optimal = status == "optimal"
    encoded = encoder.encode_codes(proposed)
    ok = optimal.copy()
    if optimal.any():
        rows = np.flatnonzero(optimal)
        ok[rows] = gate.admissible(codes[rows], proposed[rows], encoded[rows], targets[rows], max_changes)
    cost = np.where(ok, gate.cost(codes, proposed), np.inf)
    current = np.where(solution.found, solution.cost, np.inf)
    with np.errstate(invalid="ignore"):  # inf − inf where neither has an answer
        better = ok & (~solution.found | (cost < current - 1e-9 * np.maximum(1.0, current)))
    had = np.flatnonzero(better & solution.found)
    if guard and had.size and engine.train_encoded is not None:  # the plausibility guard of the cost polish
        old = gate.outcome_encoded(codes[had], solution.codes[had], solution.encoded[had])
        new = gate.outcome_encoded(codes[had], proposed[had], encoded[had])
        both = engine.lof(np.concatenate([old, new]), np.concatenate([targets[had], targets[had]]))
        before, after = np.maximum(both[:had.size], 1.0), both[had.size:]
        better[had[after > before + LOF_SLACK]] = False
    take = np.flatnonzero(better)
    out = BatchSolution(solution.found.copy(), solution.codes.copy(), solution.encoded.copy(), solution.cost.copy(),
                        solution.probability.copy(), solution.cut.copy(),
                        solution.certified.copy() if solution.certified.size else np.zeros(n, dtype=bool),
                        dict(solution.notes))
    if take.size:
        out.found[take] = True
        out.codes[take], out.encoded[take], out.cost[take] = proposed[take], encoded[take], cost[take]
        seen = gate.outcome_encoded(codes[take], proposed[take], encoded[take])
        out.probability[take] = gate.predict_proba(seen)[np.arange(take.size), targets[take]]
        if out.cut.size:
            out.cut[take] = False
    out.certified |= (status == "infeasible") & ~out.found
    for i in np.flatnonzero(out.certified):
        out.notes.pop(int(i), None)
    return out
