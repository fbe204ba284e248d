r"""Exact recourse for tree ensembles: a search over the values that matter to the model.

A tree ensemble reads its inputs only through its splits :math:`u_k(z) \le t`, where u is the
scaled encoding z (or a pipeline's input map T(z), :mod:`recourse.pipelines`).  Two values of a
feature that send a row down the same branch at every split (the same *signature*, the vector of
split outcomes) give the same prediction, whatever the other features are, as long as every split
input depends on one feature only (an *additive* map: always true without an input map).  So for
one applicant x and each mutable feature j it suffices to keep, per signature, the cheapest
allowed value:

* numeric features with at most :data:`ENUMERATE` allowed values on their lattice (integers,
  amounts with a ``step``, ages within ``max_change``), ordinals and binaries: every allowed
  value of :math:`\mathcal{A}_j(x)` (:mod:`recourse.actionset`);
* other numeric features: per *cut* c (a value where some split's outcome changes: the
  threshold read back through the encoding, piecewise linear through an input map) the allowed
  value just above and just below c, pushed out to ``min_change``; one of them is the allowed
  value nearest to :math:`x_j` in each interval between cuts;
* categoricals: every level the transitions allow.

Candidates whose signature equals the original's change nothing the model sees and are dropped;
among candidates with equal signatures the cheapest is kept.  A combination changes a set S of
at most m features, one candidate each; there are :math:`N = \sum_{s \le m} e_s(K_1, \dots, K_F)`
combinations (:math:`e_s` the elementary symmetric polynomials of the candidate counts).  They
are checked by the verification gate (every rule of the action set, the model's margin at the
call's confidence) in increasing cost, so the first that passes is a cheapest admissible
counterfactual, and none passing after all N certifies that no recourse with at most m changes
exists.  This is exact over :math:`\mathcal{A}(x)` because the cost is separable and, per
feature, increasing in :math:`|\Delta_j|` on each side of :math:`x_j`.

**When there is no certificate.**  More than ``limit`` combinations (then the search covers the
largest m' < m whose combinations fit, and says so), the time limit, a non-additive input map
(no search at all), or consequences (:mod:`recourse.consequences`) whose cause and effect may
both move, or whose cause has too many values to enumerate (a value's signature then depends on
the other feature).  The caller words its answer accordingly.

In the spirit of the exact approaches for tree ensembles (Cui et al., 2015; Parmentier and
Vidal's OCEAN, 2021), by enumeration of the split lattice instead of a MILP over the leaves:
cheap for the few mutable features where a local search is most likely to miss a narrow window.
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from .actionset import SNAP, TOLERANCE, ActionSet
from .encoding import TabularEncoder
from .trees import TreeEnsemble

ENUMERATE = 512
"""A numeric feature with at most this many allowed lattice values has all of them as candidates."""
LIMIT = 200_000
"""Default most combinations checked per applicant."""
CHUNK = 8192
"""Combinations checked per model call."""
ROW_SECONDS = 1.0
"""Default time budget of the exact search per applicant (seconds; the call's deadline may be
sooner); the engine passes ``SCFEConfig.exact_seconds``."""
NUDGE = 1e-6
"""A free continuous candidate lies this far (scaled units) beyond a cut: clear of float32 rounding."""


@dataclass
class LatticeResult:
    """Per row: ``found``, the intervention ``codes`` (the original's where none), ``exhaustive``
    (every combination was checked: an answer is a cheapest one, none certifies that none exists),
    the number of ``combinations`` and, where not exhaustive, the ``reason``."""

    found: np.ndarray
    codes: np.ndarray
    exhaustive: np.ndarray
    combinations: np.ndarray
    reason: list[str | None] = field(default_factory=list)


@dataclass
class FeatureCandidates:
    """The candidate values of one feature for one applicant and their costs (cheapest per signature)."""

    feature: int
    values: np.ndarray
    costs: np.ndarray


def trees_of(model: Any) -> list[TreeEnsemble] | None:
    """The tree ensembles a deciding model evaluates: one for a tree bundle, one per member for a
    committee of tree models (:mod:`recourse.committee`); None for any other model."""
    members = getattr(model, "members", None)
    if members is not None:
        found = [trees_of(m) for m in members]
        return None if any(f is None for f in found) else [t for f in found for t in f]
    module = getattr(model, "module", None)
    return [module] if isinstance(module, TreeEnsemble) else None


def count_combinations(counts: Sequence[int], m: int) -> list[int]:
    """``[N_0, …, N_m]``: how many ways to change exactly s features (s = 0…m), one candidate each:
    the elementary symmetric polynomials :math:`e_s` of ``counts`` (exact integers)."""
    e = [1] + [0] * m
    for k in counts:
        for s in range(m, 0, -1):
            e[s] += e[s - 1] * int(k)
    return e


class TreeLattice:
    """The exact search of one tree model over one schema's encoding (see the module docstring)."""

    def __init__(self, encoder: TabularEncoder, trees: list[TreeEnsemble]):
        self.encoder = encoder
        self.trees = trees
        self.actions = encoder.action_set
        self._column_cuts: dict[int, np.ndarray] = {}
        self._dependence = [self._dependence_of(t) for t in trees]
        groups = encoder.groups
        self.additive = all(len(np.unique(groups[row])) <= 1 for dep in self._dependence for row in dep)
        """Every split input depends on the columns of one feature at most (else no exact search)."""

    @classmethod
    def of(cls, encoder: TabularEncoder, model: Any) -> "TreeLattice | None":
        """The exact search for ``model`` (a verification gate's model), None when it is not a tree model."""
        trees = trees_of(model)
        return cls(encoder, trees) if trees else None

    # ------------------------------------------------------------------ the model's structure
    @staticmethod
    def _dependence_of(tree: TreeEnsemble) -> np.ndarray:
        """(split inputs, columns) bool: which scaled columns each split input depends on."""
        m = tree.input_map
        if m is None:
            return np.eye(tree.n_features, dtype=bool)
        w2 = m["w2"].abs().cpu().numpy()
        jac = w2 if "w1" not in m else w2 @ m["w1"].abs().cpu().numpy()
        return jac > 0

    def column_cuts(self, column: int) -> np.ndarray:
        """Sorted scaled values of ``column`` in [0, 1] where a split's outcome can change (the
        other columns do not matter: the map is additive)."""
        if column in self._column_cuts:
            return self._column_cuts[column]
        cuts = [self._tree_cuts(t, dep, column) for t, dep in zip(self.trees, self._dependence)]
        out = np.unique(np.concatenate(cuts)) if cuts else np.zeros(0)
        self._column_cuts[column] = out
        return out

    def _tree_cuts(self, tree: TreeEnsemble, dependence: np.ndarray, column: int) -> np.ndarray:
        feature, threshold = (a.cpu().numpy() for a in tree.splits())
        inputs = np.flatnonzero(dependence[:, column])
        pick = np.isin(feature, inputs)
        if not pick.any():
            return np.zeros(0)
        feature, threshold = feature[pick], threshold[pick]
        knots = [0.0, 1.0]
        m = tree.input_map
        if m is not None and "w1" in m:  # ReLU knots of the hidden units reading this column
            w1, b1 = m["w1"][:, column].cpu().numpy(), m["b1"].cpu().numpy()
            on = w1 != 0
            knots.extend((-b1[on] / w1[on]).tolist())
        points = np.unique(np.clip(np.asarray(knots), 0.0, 1.0))
        probe = torch.zeros((len(points), tree.in_features), dtype=torch.float64, device=tree.feature.device)
        probe[:, column] = torch.as_tensor(points, dtype=torch.float64, device=probe.device)
        values = tree.transform(probe).cpu().numpy()[:, feature]  # (P, S'): piecewise linear in the column
        a, b = values[:-1], values[1:]
        t = threshold[None, :]
        crosses = ((a - t) * (b - t) <= 0) & (a != b)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = points[:-1, None] + (t - a) / (b - a) * (points[1:, None] - points[:-1, None])
        return z[crosses]

    def signatures(self, encoded: np.ndarray) -> np.ndarray:
        """(B, S) uint8 packed split outcomes of scaled rows over every tree (equal rows: equal predictions)."""
        with torch.no_grad():
            parts = []
            for tree in self.trees:
                x = torch.as_tensor(encoded, dtype=torch.float64, device=tree.feature.device)
                parts.append(tree.split_outcomes(x).cpu().numpy())
        return np.packbits(np.concatenate(parts, axis=1), axis=1)

    # ------------------------------------------------------------------ candidates
    def candidates(self, origin: np.ndarray, actions: ActionSet, weights: np.ndarray | None,
                   pinned: np.ndarray | None = None) -> tuple[list[FeatureCandidates], str | None]:
        """Per movable feature of one applicant (codes ``origin`` (F,)), the cheapest allowed value
        per signature; and why the combinations are not exact (None: they are)."""
        fixed = actions.pinned(pinned)
        consequences = actions.consequences
        reason = None
        if consequences.active:
            movable = ~fixed
            both = movable[consequences.cause] & movable[consequences.effect]
            if both.any():
                reason = "an action and one of its consequences may both be taken"
        base_sig = self.signatures(self.encoder.encode_codes(origin[None]))[0]  # no change moves no consequence
        out: list[FeatureCandidates] = []
        levels = actions.level_mask(origin[None], pinned[None] if pinned is not None else None)[0]
        for j in np.flatnonzero(~fixed):
            values, exact = self._values(j, origin, actions, levels[j])
            if not exact and consequences.active and j in set(consequences.cause.tolist()):
                reason = reason or f"'{actions.names[j]}' has consequences and too many values to try each one"
            if values.size == 0:
                continue
            originals = np.repeat(origin[None], len(values), axis=0)
            rows = originals.copy()
            rows[:, j] = values
            ok = actions.admissible(originals, rows, None)
            rows, values, originals = rows[ok], values[ok], originals[ok]
            if values.size == 0:
                continue
            seen = self.encoder.encode_codes(consequences.apply(originals, rows))
            sig = self.signatures(seen)
            costs = actions.feature_cost(np.full(len(values), j), np.full(len(values), origin[j]), values, weights)
            order = np.lexsort((np.abs(values - origin[j]), costs))
            sig, values, costs = sig[order], values[order], costs[order]
            keys = np.ascontiguousarray(sig).view(np.dtype((np.void, sig.shape[1])))[:, 0]
            _, first = np.unique(keys, return_index=True)
            keep = np.sort(first)
            keep = keep[~(sig[keep] == base_sig).all(1)]
            if keep.size:
                out.append(FeatureCandidates(int(j), values[keep], costs[keep]))
        return out, reason

    def _values(self, j: int, origin: np.ndarray, actions: ActionSet, level_mask: np.ndarray) -> tuple[np.ndarray, bool]:
        """Candidate values of feature j (before the admissibility filter) and whether they are every allowed value."""
        v0 = float(origin[j])
        if not actions.is_numeric[j]:
            allowed = np.flatnonzero(level_mask).astype(float)
            return allowed[np.abs(allowed - v0) > TOLERANCE], True
        lo, hi = actions.box(origin[None, [j]], np.array([j]))
        lo, hi = float(lo[0, 0]), float(hi[0, 0])
        if not lo <= hi + TOLERANCE:
            return np.zeros(0), True
        jj = np.array([j])
        if not actions.free[j]:
            first = np.ceil(actions.lattice_index(np.array([lo]), jj)[0] - SNAP)
            last = np.floor(actions.lattice_index(np.array([hi]), jj)[0] + SNAP)
            if last - first + 1 <= ENUMERATE:
                values = actions.lattice_value(np.arange(first, last + 1), jj)
                return values[np.abs(values - v0) > TOLERANCE], True
        span, start = float(actions.span[j]), float(actions.origin[j])
        cuts = start + self.column_cuts(int(actions.starts[j])) * span
        cuts = cuts[(cuts >= lo - TOLERANCE) & (cuts <= hi + TOLERANCE)]
        if actions.free[j]:
            nudge = NUDGE * span
            near = [cuts + nudge, cuts - nudge]
        else:  # the lattice points around each cut (a point on the cut may round to either side)
            index = actions.lattice_index(cuts, jj)
            below, above = np.floor(index + SNAP), np.ceil(index - SNAP)
            near = [actions.lattice_value(k, jj) for k in (below - 1, below, above, above + 1)]
        values = np.concatenate([*near, [lo, hi]])
        values = np.clip(values, lo, hi)
        pushed = actions.push_out(jj, np.full((len(values), 1), v0), values[:, None],
                                  np.full((len(values), 1), lo), np.full((len(values), 1), hi))[:, 0]
        values = np.unique(pushed)
        return values[np.abs(values - v0) > TOLERANCE], False

    # ------------------------------------------------------------------ the search
    def search(self, gate: Any, codes: np.ndarray, targets: np.ndarray, max_changes: int,
               weights: np.ndarray | None = None, actions: ActionSet | None = None,
               pinned: np.ndarray | None = None, limit: int = LIMIT,
               deadline: float | None = None, row_seconds: float = ROW_SECONDS) -> LatticeResult:
        """The cheapest admissible counterfactual per row of ``codes`` (N, F) that ``gate`` (a
        :class:`recourse.verify.Verification` at the call's confidence) accepts, by the exact
        search of the module docstring; ``pinned`` (N, F): features each row must keep; each row
        may take ``row_seconds`` at most (then it is not exhaustive and says so)."""
        actions = self.actions if actions is None else actions
        n = len(codes)
        found = np.zeros(n, dtype=bool)
        exhaustive = np.zeros(n, dtype=bool)
        out = np.array(codes, dtype=float, copy=True)
        combos = np.zeros(n, dtype=np.int64)
        reasons: list[str | None] = [None] * n
        if not self.additive:
            reason = "the model's preprocessing mixes features, so no exact search applies"
            return LatticeResult(found, out, exhaustive, combos, [reason] * n)
        for i in range(n):  # one applicant at a time: a fallback for the rows the sparse search missed
            now = time.perf_counter()
            if deadline is not None and now > deadline:
                reasons[i] = "the time limit stopped the exact search"
                continue
            budget = now + row_seconds
            row_deadline = budget if deadline is None else min(deadline, budget)
            row_pinned = None if pinned is None else pinned[i]
            cands, reason = self.candidates(codes[i], actions, weights, row_pinned)
            counts = [len(c.values) for c in cands]
            m = min(int(max_changes), len(cands))
            per_size = count_combinations(counts, m)
            total = sum(per_size[1:])
            combos[i] = total
            reach = m
            while reach > 0 and sum(per_size[1:reach + 1]) > limit:
                reach -= 1
            if reach < m:
                reason = reason or (f"the exact search would check {total:,} combinations, more than its limit of "
                                    f"{limit:,}" + (f"; it checked every change of at most {reach} features"
                                                    if reach else ""))
            hit, stopped = self._check(gate, codes[i], int(targets[i]), cands, reach, max_changes, actions,
                                       row_deadline)
            if stopped:
                reason = reason or ("the time limit stopped the exact search" if row_deadline != budget else
                                    f"the exact search ran out of its time ({row_seconds:g} s per applicant)")
            if hit is not None:
                found[i] = True
                out[i] = hit
            exhaustive[i] = reason is None
            reasons[i] = reason
        return LatticeResult(found, out, exhaustive, combos, reasons)

    def _check(self, gate: Any, origin: np.ndarray, target: int, cands: list[FeatureCandidates], reach: int,
               max_changes: int, actions: ActionSet, deadline: float | None) -> tuple[np.ndarray | None, bool]:
        """The cheapest accepted combination of at most ``reach`` features (None: none) and whether the deadline stopped it."""
        if reach == 0 or not cands:
            return None, False
        feats, values, costs = [], [], []
        for size in range(1, reach + 1):
            for subset in itertools.combinations(range(len(cands)), size):
                grids = np.meshgrid(*[np.arange(len(cands[k].values)) for k in subset], indexing="ij")
                picks = np.stack([g.reshape(-1) for g in grids], axis=1)  # (P, size)
                cols = np.array([cands[k].feature for k in subset])
                vals = np.stack([cands[k].values[picks[:, s]] for s, k in enumerate(subset)], axis=1)
                cost = sum(cands[k].costs[picks[:, s]] for s, k in enumerate(subset))
                padded_f = np.full((len(picks), reach), -1, dtype=np.int64)
                padded_v = np.zeros((len(picks), reach))
                padded_f[:, :size], padded_v[:, :size] = cols, vals
                feats.append(padded_f)
                values.append(padded_v)
                costs.append(cost)
        feats_a, values_a, costs_a = np.concatenate(feats), np.concatenate(values), np.concatenate(costs)
        order = np.argsort(costs_a, kind="stable")
        for start in range(0, len(order), CHUNK):
            if deadline is not None and time.perf_counter() > deadline:
                return None, True
            take = order[start:start + CHUNK]
            rows = np.repeat(origin[None], len(take), axis=0)
            for s in range(reach):
                f = feats_a[take, s]
                on = f >= 0
                rows[np.flatnonzero(on), f[on]] = values_a[take[on], s]
            originals = np.repeat(origin[None], len(take), axis=0)
            encoded = self.encoder.encode_codes(rows)
            ok = gate.admissible(originals, rows, encoded, np.full(len(take), target), max_changes, actions)
            if ok.any():
                return rows[int(np.flatnonzero(ok)[0])], False
        return None, False
