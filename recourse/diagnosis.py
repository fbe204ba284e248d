"""Why rows have no recourse, and whether that is proven: the time limit, too few changes allowed,
or no reachable target at all.

"No recourse exists" is said only with a certificate: the exact search over a tree model's split
values (:mod:`recourse.lattice`, carried by the search's :class:`~recourse.verify.BatchSolution`)
or the MILP of a linear model (:mod:`recourse.milp`, through ``certify``).  Without one the
answer says that none was *found*, that this is no proof, and why the search could not be exact.

A row without a verified answer is searched once more with every mutable feature allowed
(``max_changes`` = the number of mutable features): an answer there that changes more than m
features means "allow more changes".
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .actionset import ActionSet
from .config import SCFEConfig
from .search import SparseSearch, past
from .verify import BatchSolution

Certify = Callable[[np.ndarray, int], "np.ndarray | None"]
"""``certify(rows, max_changes)``: per row (indices into the call's rows) whether an exact method
proves that no recourse with at most ``max_changes`` changes exists; None when it has none."""

NO_PROOF = ("the search is local and, for this kind of model, no exact method can prove "
            "that none exists")


def explain_failures(search: SparseSearch, x: np.ndarray, codes: np.ndarray, targets: np.ndarray,
                     solution: BatchSolution, config: SCFEConfig, deadline: float | None = None,
                     actions: ActionSet | None = None, certify: Certify | None = None) -> dict[int, str]:
    """A message per row of ``solution`` without a verified answer (by position); ``actions``: the
    call's action set (default the schema's); ``certify``: an exact check for models the search
    cannot certify itself (see :data:`Certify`).  A row that has no answer at the call's
    confidence but one at the model's bare decision (within the same changes) is told so."""
    notes: dict[int, str] = {}
    messages = _messages(search, x, codes, targets, solution, config, deadline, actions, certify, notes)
    return {i: text + notes.get(i, "") for i, text in messages.items()}


def _less_certain(search: SparseSearch, x: np.ndarray, codes: np.ndarray, targets: np.ndarray, failed: np.ndarray,
                  config: SCFEConfig, deadline: float | None, actions: ActionSet) -> dict[int, str]:
    """For rows without an answer at the call's ``min_probability``: a note where the model's bare
    decision can be reached with at most m changes (its probability and number of changes)."""
    if config.min_probability is None or config.robust or not config.diagnose or failed.size == 0 or past(deadline):
        return {}
    bare = search.solve(x[failed], codes[failed], targets[failed],
                        config.with_(min_probability=None, diagnose=False), deadline, actions=actions)
    changed = search.encoder.changed_codes(codes[failed], bare.codes).sum(1)
    return {int(i): (f" With a lower confidence there is one: {int(changed[j])} change{'s' if changed[j] != 1 else ''} "
                     f"reach the decision at a probability of {bare.probability[j]:.0%}; ask for a lower confidence "
                     "to see it, knowing that a retrained model is more likely to overturn it.")
            for j, i in enumerate(failed) if bare.found[j]}


def _messages(search: SparseSearch, x: np.ndarray, codes: np.ndarray, targets: np.ndarray,
              solution: BatchSolution, config: SCFEConfig, deadline: float | None, actions: ActionSet | None,
              certify: Certify | None, notes: dict[int, str]) -> dict[int, str]:
    """The messages of :func:`explain_failures`; ``notes`` receives the lower-confidence notes."""
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
    notes.update(_less_certain(search, x, codes, targets, failed, config, deadline, actions))
    proven = _proven(solution, failed, config.max_changes, certify)
    within = f"changing at most {config.max_changes} of the {mutable} mutable features" \
        if config.max_changes < mutable else f"changing the {mutable} mutable features"

    def unproven(i: int, notes: dict[int, str], what: str = within) -> str:
        why = notes.get(i, NO_PROOF)
        return (f"No recourse found: the search did not reach the target decision{goal} by {what} within "
                f"their ranges and allowed directions. This does not prove that none exists: {why}.")

    def none_exists(what: str) -> str:
        return (f"No recourse exists within these constraints: an exact check proved that no change of "
                f"{what} within their ranges and allowed directions reaches the target decision{goal}.")

    if not config.diagnose or config.max_changes >= mutable:
        for j, i in enumerate(failed):
            out[int(i)] = none_exists(within.removeprefix("changing ")) if proven[j] else unproven(int(i), solution.notes)
        return out
    if past(deadline):
        out.update({int(i): ("No recourse found within these constraints (the time limit left no time to "
                             "check whether more changes would help).") for i in failed})
        return out
    relaxed = search.solve(x[failed], codes[failed], targets[failed],
                           config.with_(max_changes=mutable, diagnose=False), deadline, actions=actions)
    changed = search.encoder.changed_codes(codes[failed], relaxed.codes).sum(1)
    relaxed_cut = relaxed.cut if relaxed.cut.size else np.zeros(len(failed), dtype=bool)
    relaxed_proven = _proven(relaxed, np.arange(len(failed)), mutable,
                             None if certify is None else (lambda rows, m: certify(failed[rows], m)))
    everything = f"any of the {mutable} mutable features"
    for j, i in enumerate(failed):
        if relaxed.found[j] and changed[j] > config.max_changes:
            proof = " exists (an exact check proved it)" if proven[j] else ""
            out[int(i)] = (f"No recourse with at most {config.max_changes} changes{proof}; the closest found "
                           f"needs {int(changed[j])} changes. Allow more changes to see it.")
        elif relaxed.found[j]:
            out[int(i)] = (f"No verified recourse with at most {config.max_changes} changes was found by the "
                           "sparse search, although a wider search reached the target; try again with more changes allowed.")
        elif relaxed_cut[j]:
            out[int(i)] = ("No recourse found within these constraints (the time limit stopped the check "
                           "whether more changes would help).")
        elif relaxed_proven[j]:
            out[int(i)] = none_exists(everything)
        elif proven[j]:
            out[int(i)] = (f"No recourse with at most {config.max_changes} changes exists (an exact check proved it); "
                           f"changing more features did not reach the target decision{goal} either, though that "
                           f"search was not exhaustive: {relaxed.notes.get(j, NO_PROOF)}.")
        else:
            out[int(i)] = unproven(int(i), {int(i): relaxed.notes[j]} if j in relaxed.notes else solution.notes,
                                   f"changing any of the {mutable} mutable features")
    return out


def _proven(solution: BatchSolution, rows: np.ndarray, max_changes: int, certify: Certify | None) -> np.ndarray:
    """Per row of ``rows`` (indices into ``solution``) whether "no recourse" is certified: by the
    search's own exact check, else by ``certify``."""
    certified = solution.certified[rows] if solution.certified.size else np.zeros(len(rows), dtype=bool)
    if certify is not None and not certified.all():
        other = certify(rows, max_changes)
        if other is not None:
            certified = certified | other
    return certified
