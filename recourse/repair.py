r"""Discrete repair: finish and trim counterfactuals on the lattice of real feature values.

The proximal solver works on a continuous relaxation (one-hot groups on the simplex, integers
and levels as reals).  Rounding can cost validity, so decoded points that the model does not
accept are *completed* by a batched greedy search over single-feature moves, and every valid
point is then *trimmed* (changed features reset to the original while the model still accepts).

Moves of feature j are the values of a fixed option set (every level of an ordinal or
categorical feature, both values of a binary one, ``grid`` points of a numeric range rounded to
the feature's lattice).  A move is admissible for a row when it stays inside the row's bounds
(immutables, directions, max_change, range) and keeps at most m features changed.  Each round
evaluates all admissible moves of all rows in one model call and takes, per row, the cheapest
move that reaches the target, else the move with the best margin gain per unit of added cost.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .encoding import TabularEncoder

Margin = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""margin(rows (N, D), targets (N,)) -> Z_t − max_{j≠t} Z_j per row."""


class DiscreteRepair:
    """Greedy completion and trimming on the scaled encoding of one schema."""

    def __init__(self, encoder: TabularEncoder, grid: int = 17):
        self.encoder = encoder
        blocks, values, features = [], [], []
        for j, fc in enumerate(encoder.layout):
            feat = fc.feature
            if feat.immutable:
                continue
            width = fc.stop - fc.start
            if feat.kind == "categorical":
                opts = np.eye(width)
            elif feat.kind == "ordinal":
                opts = np.linspace(0, 1, len(feat.levels))[:, None]
            elif feat.kind == "binary":
                opts = np.array([[0.0], [1.0]])
            else:
                lo, hi = feat.range
                raw = lo + np.linspace(0, 1, grid) * (hi - lo)
                if feat.kind == "integer":
                    raw = np.unique(np.round(raw))
                elif feat.precision is not None:
                    raw = np.unique(np.round(raw, feat.precision))
                opts = ((raw - lo) / (hi - lo))[:, None]
            for o in opts:
                blocks.append((fc.start, fc.stop))
                values.append(o)
                features.append(j)
        self.blocks = blocks
        self.values = values
        self.features = np.asarray(features, dtype=int)
        self.cost_coef = self._cost_coefficients()

    def _cost_coefficients(self) -> np.ndarray:
        """Per column c: cost of a unit change of the scaled value (sums to the schema's cost)."""
        coef = np.empty(self.encoder.n_columns)
        for fc in self.encoder.layout:
            feat = fc.feature
            scale = feat.cost_scale or 1.0
            coef[fc.slice] = (0.5 if feat.kind == "categorical" else self.encoder._span(feat)) / scale
        return coef

    def cost(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return (np.abs(y - x) * self.cost_coef).sum(-1)

    def _changed(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        moved = np.abs(y - x) > 1e-9
        out = np.zeros((len(x), self.encoder.n_features), dtype=bool)
        np.logical_or.at(out.T, self.encoder.groups, moved.T)
        return out

    def _candidates(self, x, y, lower, upper, m):
        """All single moves: (rows, moves, D) candidates and their admissibility (rows, moves)."""
        n, k = len(y), len(self.values)
        cand = np.repeat(y[:, None, :], k, axis=1)
        ok = np.ones((n, k), dtype=bool)
        changed = self._changed(x, y)
        count = changed.sum(1)
        for i, ((a, b), v) in enumerate(zip(self.blocks, self.values)):
            cand[:, i, a:b] = v
            delta = v[None, :] - x[:, a:b]
            inside = ((delta >= lower[:, a:b] - 1e-9) & (delta <= upper[:, a:b] + 1e-9)).all(1)
            same = (np.abs(y[:, a:b] - v[None, :]) <= 1e-9).all(1)
            budget = changed[:, self.features[i]] | (count < m)
            ok[:, i] = inside & ~same & budget
        return cand, ok

    def complete(self, x, y, targets, lower, upper, m, margin: Margin, rounds: int | None = None):
        """Greedy search from lattice points ``y``; returns (new points, reached-target mask)."""
        y = y.copy()
        rounds = rounds if rounds is not None else m + 2
        cur = margin(y, targets)
        done = cur > 0
        for _ in range(rounds):
            rows = np.flatnonzero(~done)
            if rows.size == 0:
                break
            cand, ok = self._candidates(x[rows], y[rows], lower[rows], upper[rows], m)
            r, k, d = cand.shape
            flat = cand.reshape(r * k, d)
            marg = margin(flat, np.repeat(targets[rows], k)).reshape(r, k)
            cost = self.cost(x[rows][:, None, :], cand)
            valid = ok & (marg > 0)
            cheapest = np.where(valid, cost, np.inf).argmin(1)
            has_valid = valid.any(1)
            base_cost = self.cost(x[rows], y[rows])
            gain = (marg - cur[rows][:, None]) / np.maximum(cost - base_cost[:, None], 0.05)
            gain = np.where(ok & (marg > cur[rows][:, None]), gain, -np.inf)
            best = gain.argmax(1)
            moving = has_valid | np.isfinite(gain.max(1))
            pick = np.where(has_valid, cheapest, best)
            sel = np.flatnonzero(moving)
            y[rows[sel]] = cand[sel, pick[sel]]
            cur[rows[sel]] = marg[sel, pick[sel]]
            done[rows[has_valid]] = True
            stuck = rows[~moving]
            done[stuck] = True  # no admissible move improves the margin
        return y, margin(y, targets) > 0

    def trim(self, x, y, targets, margin: Margin, valid: np.ndarray, rounds: int = 3):
        """Reset changed features to the original while the target is kept (cheapest first)."""
        y = y.copy()
        for _ in range(rounds):
            rows = np.flatnonzero(valid & self._changed(x, y).any(1))
            if rows.size == 0:
                break
            nf = self.encoder.n_features
            cand = np.repeat(y[rows][:, None, :], nf, axis=1)
            for fc_i, fc in enumerate(self.encoder.layout):
                cand[:, fc_i, fc.slice] = x[rows][:, fc.slice]
            changed = self._changed(x[rows], y[rows])
            r, k, d = cand.shape
            marg = margin(cand.reshape(r * k, d), np.repeat(targets[rows], k)).reshape(r, k)
            saving = self.cost(x[rows], y[rows])[:, None] - self.cost(x[rows][:, None, :], cand)
            ok = changed & (marg > 0)
            if not ok.any():
                break
            pick = np.where(ok, saving, -np.inf).argmax(1)
            sel = np.flatnonzero(ok.any(1))
            y[rows[sel]] = cand[sel, pick[sel]]
        return y
