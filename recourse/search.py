r"""The S-CFE search: the cheapest verified counterfactual per row, by a batched loss-weight ladder.

Per round, one APG run over every (row, weight) pair of a ladder (round 1: weights
:math:`c_b \cdot 10^{-2 \dots 2}` with :math:`c_b` from the row's margin gradient, see
:meth:`SparseSearch.base_weight`; later rounds :math:`10^3, 10^4, \dots` up to ``max_weight``
for rows still without an answer).  Every candidate is decoded and verified
(:class:`~recourse.verify.Verification`), completed by discrete repair when the model rejects
it and trimmed when it accepts it; each row keeps its cheapest verified candidate, then the
cost polish (:mod:`recourse.polish`) looks for cheaper lattice points.  For a tree model, rows
still without an answer get the exact search over the model's split values
(:mod:`recourse.lattice`; not for the alternatives' pinned searches), which finds what the
sparse search missed or proves that there is nothing to find.

The APG iterations use closed-form gradients (:class:`~recourse.objective.MarginGradient`, the
densities' ``value_and_grad``) and a diagonal preconditioner (the proximity weights W, see
:meth:`SparseSearch.run`).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from .actionset import ActionSet
from .config import SCFEConfig
from .core.apg import apg
from .core.projections import group_sums, simplex_layout
from .encoding import TabularEncoder
from .lattice import TreeLattice
from .objective import MarginGradient, RowData, SCFEProblem
from .polish import CostPolish, polish_solution
from .repair import DiscreteRepair
from .verify import BatchSolution, Verification

INITIAL_STEP = 0.1
"""First APG step in the W-norm (1/L of the proximity term alone is 0.5; a smaller first step
keeps the ℓ0 projection from committing to groups before the hinge and density have spoken)."""
RUN_CHUNK = 16_384
"""Most (row, weight) candidates in one APG run; larger searches run in consecutive chunks."""
LADDER_SIZE = 5
"""Loss weights per row in the first search round."""
Plausibility = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""lof(encoded rows, targets) → target-class local outlier factor per row."""


@dataclass(frozen=True)
class SearchRows:
    """The rows of one search: scaled rows ``x``, their ``codes``, target class indices and the
    bounds (``lower`` ≤ 0 ≤ ``upper``) on the scaled displacement w = y − x (the action set)."""

    x: np.ndarray
    codes: np.ndarray
    targets: np.ndarray
    lower: np.ndarray
    upper: np.ndarray

    def take(self, index: np.ndarray) -> "SearchRows":
        """The rows at ``index`` (repeats allowed)."""
        return SearchRows(self.x[index], self.codes[index], self.targets[index], self.lower[index], self.upper[index])

    def __len__(self) -> int:
        return len(self.x)


class SparseSearch:
    """The loss-weight search over one schema's encoding, steered by a differentiable classifier."""

    def __init__(self, encoder: TabularEncoder, steering: Any, verification: Verification,
                 densities: dict[str, Any], lof: Plausibility | None = None):
        """``steering``: the differentiable classifier the solver follows (the deciding model itself,
        or a surrogate of it); ``verification``: the gate with the deciding model; ``densities``:
        fitted class-conditional densities by name; ``lof``: the plausibility score the cost polish
        guards (None: no guard)."""
        self.encoder = encoder
        self.steering = steering
        self.verification = verification
        self.device, self.dtype = verification.device, verification.dtype
        self.densities = densities
        self.lof = lof
        self.lattice = TreeLattice.of(encoder, verification.model)
        """The exact search over a tree model's split values (None for other models)."""
        self._groups = torch.as_tensor(encoder.groups, device=self.device, dtype=torch.long)
        self._base_proximity = encoder.proximity_weights()
        self._proximity_default = self._proximity_tensor(verification.cost_weights)
        self._simplex = simplex_layout(encoder.simplex_groups(), self.device)
        self._simplex_cols = np.concatenate([np.asarray(g, dtype=np.int64) for g in encoder.simplex_groups()]
                                            or [np.zeros(0, np.int64)])
        self.repair = DiscreteRepair(encoder)
        self._repairs: dict[tuple[float, ...], DiscreteRepair] = {}
        self._polish = CostPolish(encoder)

    # ------------------------------------------------------------------ the search
    def solve(self, x: np.ndarray, codes: np.ndarray, targets: np.ndarray, config: SCFEConfig,
              deadline: float | None, pinned: np.ndarray | None = None,
              actions: ActionSet | None = None) -> BatchSolution:
        r"""The cheapest verified counterfactual per row (see the module docstring).

        ``x``: scaled rows, ``codes`` their codes, ``targets`` target class indices; ``pinned``
        (N, F) bool: features row b must not change (their bounds are pinned to zero; used for the
        alternatives).  Rows the ``deadline`` (``time.perf_counter()`` seconds) stopped before an
        answer are flagged ``cut``.  ``actions``: the call's action set (a request's personal
        limits, :meth:`ActionSet.restricted`; default the schema's).
        """
        actions = self.encoder.action_set if actions is None else actions
        gate = self.verification.confident(config.margin_threshold(len(self.steering.classes)))
        n = len(x)
        found, encoded, cost = np.zeros(n, dtype=bool), x.copy(), np.full(n, np.inf)
        cut = np.zeros(n, dtype=bool)
        weights = self.cost_weights(config)
        if n == 0:
            return gate.finish(x, codes, targets, found, encoded, config, cut, weights, actions)
        lower, upper = actions.scaled_bounds(x, frozen=pinned)
        problem = SearchRows(x, codes, targets, lower, upper)
        base = config.initial_weight * self.base_weight(problem, config, gate.threshold)
        density = self.density(config.density)
        active = np.arange(n)
        for ladder in ladders(config):
            if active.size == 0:
                break
            if past(deadline):
                cut[active] = True
                break
            k = len(ladder)
            jobs = problem.take(np.repeat(active, k))
            weight = (base[active, None] * ladder[None, :]).reshape(-1)
            z = self.run(jobs, weight, density, config, deadline, gate.threshold)
            ok, enc, c = self.candidates(z, jobs, k, config.max_changes, deadline, weights, actions, gate)
            by_row = c.reshape(-1, k)
            best = by_row.argmin(1)  # the first (lowest weight) of equally cheap candidates
            has = np.isfinite(by_row[np.arange(len(active)), best])
            take = active[has]
            found[take] = True
            cost[take] = by_row[has, best[has]]
            encoded[take] = enc[(np.arange(len(active)) * k + best)[has]]
            active = active[~has]
            if past(deadline):
                cut[active] = True
                break
        if config.polish and not past(deadline):  # cost polish (recourse/polish.py); pinned features stay
            default = actions is self.encoder.action_set and np.all(weights == 1.0)
            found, encoded = polish_solution(gate, x, codes, targets, found, encoded, config.max_changes,
                                             weights=weights, frozen=pinned, plausibility=self.lof,
                                             polish=self._polish if default else None, actions=actions)
        exact = None
        missed = np.flatnonzero(~found & ~cut)
        if self.lattice is not None and config.exact_limit and pinned is None and missed.size and not past(deadline):
            exact = self.lattice.search(gate, codes[missed], targets[missed], config.max_changes, weights, actions,
                                        None, config.exact_limit, deadline, config.exact_seconds)
            hit = missed[exact.found]
            found[hit] = True
            encoded[hit] = self.encoder.encode_codes(exact.codes[exact.found])
        solution = gate.finish(x, codes, targets, found, encoded, config, cut & ~found, weights, actions)
        solution.certified = np.zeros(n, dtype=bool)
        if exact is not None:
            solution.certified[missed] = exact.exhaustive & ~solution.found[missed]
            solution.notes = {int(i): why for i, why, hit in zip(missed, exact.reason, solution.found[missed])
                              if why is not None and not hit}
        return solution

    def base_weight(self, rows: SearchRows, config: SCFEConfig, threshold: float = 0.0) -> np.ndarray:
        r"""Per row, the loss weight at which a linearised problem just reaches the margin κ.

        Linearising the margin at x, :math:`m(x + w) \approx m_0 + g^\top w`, the minimiser of
        :math:`c\,[\kappa - m_0 - g^\top w]_+ + \sum_i W_i w_i^2` reaches the margin once
        :math:`c \ge c^* = 2(\kappa - m_0) / \sum_{i \in S} g_i^2 / W_i`, S the columns that
        may move in the direction of :math:`g_i` within the m groups with the largest
        :math:`\sum g_i^2 / W_i`.  Clipped to [1e-4, 1e4].
        """
        with torch.no_grad():
            xt = torch.as_tensor(rows.x, device=self.device, dtype=self.dtype)
            t = torch.as_tensor(rows.targets, device=self.device, dtype=torch.long)
            m0, g = MarginGradient(self.steering)(xt, t)
            g = self.encoder.action_set.consequences.pullback(g, self.encoder.action_set.consequences.forward(xt, xt)[1])
            movable = torch.where(g > 0, torch.as_tensor(rows.upper > 0, device=self.device),
                                  torch.as_tensor(rows.lower < 0, device=self.device))
            gain = torch.where(movable, g * g / self.proximity(config), 0.0)
            per_group = group_sums(gain, self._groups, self.encoder.n_features)
            k = max(1, min(int(config.max_changes), self.encoder.n_features))
            reach = per_group.topk(k, dim=1).values.sum(1)
            c0 = 2.0 * (config.margin + threshold - m0) / reach.clamp_min(1e-12)
            return c0.double().clamp(1e-4, 1e4).cpu().numpy()

    def run(self, rows: SearchRows, weight: np.ndarray, density: Any, config: SCFEConfig,
            deadline: float | None, threshold: float = 0.0) -> np.ndarray:
        r"""One APG run of the S-CFE problem on the given rows; the solver's points (float64).

        Variable metric M = W (the proximity weights): the gradient step is
        :math:`u - \alpha W^{-1}\nabla h(u)` and the prox projects in the W-norm, so the
        proximity term :math:`\sum_i W_i (y_i - x_i)^2` is perfectly conditioned whatever the
        spread of W (clipped to [1/25, 25]); first step ``INITIAL_STEP``.
        """
        n = len(rows)
        if n > RUN_CHUNK:  # bounded memory (the density's (rows × points) matrices): runs of RUN_CHUNK rows
            return np.concatenate([self.run(rows.take(np.arange(s, min(s + RUN_CHUNK, n))), weight[s:s + RUN_CHUNK],
                                            density, config, deadline, threshold) for s in range(0, n, RUN_CHUNK)])
        x, lower, upper = rows.x, rows.lower, rows.upper
        tensor = lambda a, dt=None: torch.as_tensor(a, device=self.device, dtype=dt or self.dtype)  # noqa: E731
        data = RowData(x=tensor(x), lower=tensor(lower), upper=tensor(upper),
                       max_changes=tensor(np.full(n, config.max_changes), torch.long),
                       target=tensor(rows.targets, torch.long), loss_weight=tensor(weight))
        weights = self.proximity(config)
        cols = self._simplex_cols
        pinned_simplex = bool(cols.size) and bool(((lower[:, cols] == 0) & (upper[:, cols] == 0)).any())
        problem = SCFEProblem(self.steering, data, weights, self._groups, self.encoder.n_features,
                              density, config.tau(), config.margin + threshold, self._simplex, metric=weights,
                              pinned_simplex=pinned_simplex, consequences=self.encoder.action_set.consequences)
        result = apg(problem.value, problem.prox, data.x, step=INITIAL_STEP, max_iter=config.max_iter, tol=config.tol,
                     deadline=deadline, grad_fn=problem.value_and_grad, metric=weights)
        return result.x.double().cpu().numpy()

    def candidates(self, z: np.ndarray, rows: SearchRows, k: int, max_changes: int, deadline: float | None,
                   weights: np.ndarray, actions: ActionSet,
                   gate: Verification | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Verified, repaired and trimmed candidates (``k`` consecutive ones per row): (ok, encoded, cost).

        Repair and trimming are deterministic in (row, lattice point), so each distinct pair is
        worked on once (low loss weights often all round back to the applicant).
        """
        gate = self.verification if gate is None else gate
        verify, margin = gate.verify, gate.margin
        x, codes, targets, lower, upper = rows.x, rows.codes, rows.targets, rows.lower, rows.upper
        repair = self.repair_for(weights)
        ok, enc, cost, _ = verify(z, codes, targets, max_changes, x, weights, actions)
        row_of = np.arange(len(z)) // k
        bad = np.flatnonzero(~ok)
        if bad.size and not past(deadline):
            uniq, inverse = distinct(row_of[bad], enc[bad])
            u = bad[uniq]
            fixed, _ = repair.complete(x[u], enc[u], targets[u], lower[u], upper[u], max_changes, margin)
            ok2, enc2, cost2, _ = verify(fixed, codes[u], targets[u], max_changes, x[u], weights, actions)
            ok2, enc2, cost2 = ok2[inverse], enc2[inverse], cost2[inverse]
            ok[bad], enc[bad], cost[bad] = ok2, np.where(ok2[:, None], enc2, enc[bad]), np.where(ok2, cost2, cost[bad])
        good = np.flatnonzero(ok)
        if good.size:
            uniq, inverse = distinct(row_of[good], enc[good])
            u = good[uniq]
            trimmed = repair.trim(x[u], enc[u], targets[u], margin, np.ones(u.size, dtype=bool))
            ok3, enc3, cost3, _ = verify(trimmed, codes[u], targets[u], max_changes, x[u], weights, actions)
            ok3, enc3, cost3 = ok3[inverse], enc3[inverse], cost3[inverse]
            better = ok3 & (cost3 < cost[good])
            enc[good[better]], cost[good[better]] = enc3[better], cost3[better]
        return ok, enc, np.where(ok, cost, np.inf)

    # ------------------------------------------------------------------ settings of a call
    def density(self, name: str | None) -> Any:
        """The fitted density of that name (None: none)."""
        if name is None:
            return None
        if name not in self.densities:
            raise ValueError(f"density {name!r} is not fitted in this engine; available: {sorted(self.densities)}")
        return self.densities[name]

    def cost_weights(self, config: SCFEConfig) -> np.ndarray:
        """Per-feature cost weights ω (F,) of a call."""
        return self.verification.cost_weights if config.cost_weights is None else np.asarray(config.cost_weights, float)

    def proximity(self, config: SCFEConfig) -> torch.Tensor:
        """The solver's proximity weights for a call's cost weights."""
        if config.cost_weights is None:
            return self._proximity_default
        return self._proximity_tensor(self.cost_weights(config))

    def _proximity_tensor(self, weights: np.ndarray) -> torch.Tensor:
        r"""Proximity weights :math:`W_c\,\omega_{g(c)}^2` (the squared counterpart of the weighted ℓ1 cost)."""
        w = self._base_proximity * np.asarray(weights, float)[self.encoder.groups] ** 2
        return torch.as_tensor(w, device=self.device, dtype=self.dtype)

    def repair_for(self, weights: np.ndarray) -> DiscreteRepair:
        """The discrete repair whose move costs use the cost weights ω (cached per ω)."""
        key = tuple(float(v) for v in np.asarray(weights, float))
        if all(v == 1.0 for v in key):
            return self.repair
        if key not in self._repairs:
            if len(self._repairs) > 64:
                self._repairs.clear()
            self._repairs[key] = self.repair.with_cost_weights(np.asarray(key))
        return self._repairs[key]


def ladders(config: SCFEConfig) -> list[np.ndarray]:
    """Loss-weight multipliers per search round: 10^(−2…2), then 10^3, 10^4, … (three per round) up to ``max_weight``."""
    top = math.floor(math.log10(max(config.max_weight, 1.0)) + 1e-9)
    out = [10.0 ** np.arange(-2, -2 + LADDER_SIZE)]
    for r in range(1, max(1, config.search_steps)):
        exps = np.arange(3 * r, 3 * r + 3)
        exps = exps[exps <= top]
        if exps.size == 0:
            break
        out.append(10.0 ** exps)
    return out


def distinct(rows: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the first of each distinct (row, point) pair and, per pair, its distinct index."""
    key = np.concatenate([rows[:, None].astype(points.dtype), points], axis=1)
    if len(key) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    order = np.lexsort(key.T[::-1])  # rows sorted lexicographically (stable: ties keep input order)
    ordered = key[order]
    new = np.ones(len(key), dtype=bool)
    new[1:] = (ordered[1:] != ordered[:-1]).any(1)
    group = np.cumsum(new) - 1  # distinct index of each sorted position
    inverse = np.empty(len(key), dtype=np.int64)
    inverse[order] = group
    return order[new], inverse


def past(deadline: float | None) -> bool:
    """Whether the wall-clock ``deadline`` (``time.perf_counter()`` seconds) has passed."""
    return deadline is not None and time.perf_counter() >= deadline
