r"""Alternatives: up to K verified counterfactuals per row with pairwise different changed-feature sets.

The first is the row's ordinary answer :math:`S_1`.  Each round re-solves, in ONE batched
:meth:`SparseSearch.solve <recourse.search.SparseSearch.solve>`, every (row, H) job for the rows
still short of K answers, where H is a *hitting set* of the row's answers so far (a set of
features meeting every earlier changed set :math:`S_i`): for each feature f of their union,
H = {f} plus, for every :math:`S_i` without f, its feature found in most of the sets.  H's
features are pinned (bounds zero), so any answer avoids H and therefore differs from every
earlier :math:`S_i`.  New sets are kept (the cheapest answer per set), at most K − 1 rounds.
"""
from __future__ import annotations

import numpy as np

from .actionset import ActionSet
from .config import SCFEConfig
from .search import SparseSearch, past
from .verify import BatchSolution, Candidate


def find_alternatives(search: SparseSearch, x: np.ndarray, codes: np.ndarray, targets: np.ndarray,
                      solution: BatchSolution, config: SCFEConfig, deadline: float | None,
                      k: int, actions: ActionSet | None = None) -> list[list[Candidate]]:
    """Per row, up to ``k`` verified candidates: the ordinary answer first, then by cost (empty: no answer);
    ``actions``: the call's action set (default the schema's)."""
    n, f = len(x), search.encoder.n_features
    changed_codes = search.encoder.changed_codes
    found = {i: [Candidate(solution.codes[i], solution.encoded[i], float(solution.cost[i]), float(solution.probability[i]))]
             for i in np.flatnonzero(solution.found)}
    sets = {i: [changed_codes(codes[i:i + 1], solution.codes[i:i + 1])[0]] for i in found}
    tried: dict[int, set[bytes]] = {i: set() for i in found}
    sub_config = config.with_(diagnose=False)
    for _ in range(k - 1):
        jobs, masks = _hitting_sets(sets, tried, k, f)
        if not jobs or past(deadline):
            break
        rows, pinned = np.asarray(jobs), np.stack(masks)
        sub = search.solve(x[rows], codes[rows], targets[rows], sub_config, deadline, pinned=pinned, actions=actions)
        changed = changed_codes(codes[rows], sub.codes)
        ok = sub.found & ~(changed & pinned).any(1) & (changed.sum(1) <= config.max_changes)
        for t in np.argsort(np.where(ok, sub.cost, np.inf), kind="stable")[: int(ok.sum())]:
            i = int(rows[t])
            if not any(np.array_equal(changed[t], s_i) for s_i in sets[i]):
                sets[i].append(changed[t])
                found[i].append(Candidate(sub.codes[t], sub.encoded[t], float(sub.cost[t]), float(sub.probability[t])))
    out: list[list[Candidate]] = [[] for _ in range(n)]
    for i, answers in found.items():
        out[i] = [answers[0]] + sorted(answers[1:], key=lambda a: a.cost)[: k - 1]
    return out


def _hitting_sets(sets: dict[int, list[np.ndarray]], tried: dict[int, set[bytes]], k: int,
                  n_features: int) -> tuple[list[int], list[np.ndarray]]:
    """The next round's (row, pinned features) jobs: new hitting sets of the rows short of ``k`` sets."""
    jobs, masks = [], []
    for i, have in sets.items():
        if len(have) >= k:
            continue
        stack = np.stack(have)
        union = np.flatnonzero(stack.any(0))
        count = stack.sum(0)
        for j in union:
            h = np.zeros(n_features, dtype=bool)
            h[j] = True
            for s_i in have:
                if not (s_i & h).any():
                    cand = np.flatnonzero(s_i)
                    h[cand[np.argmax(count[cand])]] = True
            key = h.tobytes()
            if key not in tried[i] and h.sum() < n_features:
                tried[i].add(key)
                jobs.append(i)
                masks.append(h)
    return jobs, masks
