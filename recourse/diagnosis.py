"""Why rows have no recourse: the time limit, too few changes allowed, or no reachable target at all.

A row without a verified answer is searched once more with every mutable feature allowed
(``max_changes`` = the number of mutable features): an answer there that changes more than m
features means "allow more changes"; none means "not reachable within the constraints".
"""
from __future__ import annotations

import numpy as np

from .actionset import ActionSet
from .config import SCFEConfig
from .search import SparseSearch, past
from .verify import BatchSolution


def explain_failures(search: SparseSearch, x: np.ndarray, codes: np.ndarray, targets: np.ndarray,
                     solution: BatchSolution, config: SCFEConfig, deadline: float | None = None,
                     actions: ActionSet | None = None) -> dict[int, str]:
    """A message per row of ``solution`` without a verified answer (by position); ``actions``: the
    call's action set (default the schema's)."""
    actions = search.encoder.action_set if actions is None else actions
    goal = "" if config.min_probability is None else f" with a probability of at least {config.min_probability:.0%}"
    failed = np.flatnonzero(~solution.found)
    if failed.size == 0:
        return {}
    out: dict[int, str] = {}
    cut = solution.cut if solution.cut.size else np.zeros(len(solution.found), dtype=bool)
    for i in np.flatnonzero(cut):
        out[int(i)] = (f"No recourse found: the search stopped at the time limit ({config.time_limit:g} s) "
                       "before a verified counterfactual was found. Allow more time to search further.")
    failed = failed[~cut[failed]]
    if failed.size == 0:
        return out
    mutable = int((~actions.immutable).sum())
    if mutable == 0:
        out.update({int(i): "No feature may change (each is fixed or cannot be acted on), so nothing can change "
                            "the decision." for i in failed})
        return out
    if not config.diagnose or config.max_changes >= mutable:
        out.update({int(i): (f"No change of the {mutable} mutable features within their ranges and allowed "
                             f"directions reached the target decision{goal}.") for i in failed})
        return out
    if past(deadline):
        out.update({int(i): ("No recourse found within these constraints (the time limit left no time to "
                             "check whether more changes would help).") for i in failed})
        return out
    relaxed = search.solve(x[failed], codes[failed], targets[failed],
                           config.with_(max_changes=mutable, diagnose=False), deadline, actions=actions)
    changed = search.encoder.changed_codes(codes[failed], relaxed.codes).sum(1)
    relaxed_cut = relaxed.cut if relaxed.cut.size else np.zeros(len(failed), dtype=bool)
    for j, i in enumerate(failed):
        if relaxed.found[j] and changed[j] > config.max_changes:
            out[int(i)] = (f"No recourse with at most {config.max_changes} changes; the closest found "
                           f"needs {int(changed[j])} changes. Allow more changes to see it.")
        elif relaxed.found[j]:
            out[int(i)] = (f"No verified recourse with at most {config.max_changes} changes was found by the "
                           "sparse search, although a wider search reached the target; try again with more changes allowed.")
        elif relaxed_cut[j]:
            out[int(i)] = ("No recourse found within these constraints (the time limit stopped the check "
                           "whether more changes would help).")
        else:
            out[int(i)] = (f"No recourse found within these constraints: even changing all {mutable} mutable "
                           f"features within their ranges and allowed directions did not reach the target decision{goal}.")
    return out
