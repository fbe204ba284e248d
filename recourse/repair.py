r"""Discrete repair: finish and trim counterfactuals on the lattice of real feature values.

The proximal solver works on a continuous relaxation (one-hot groups on the simplex, integers
and levels as reals).  Rounding can cost validity, so decoded points that the model does not
accept are *completed* by a batched greedy search over single-feature moves, and every valid
point is then *trimmed* (changed features reset to the original while the model still accepts).

Moves of feature j are the values of a fixed option set (every level of an ordinal or
categorical feature, both values of a binary one, ``grid`` points of a numeric range rounded to
the feature's lattice).  A move is admissible for a row when it stays inside the row's bounds
(immutables, directions, max_change, range: the solver's
:meth:`~recourse.actionset.ActionSet.scaled_bounds`) and keeps at most m features changed.  The
cost of a move is the schema's cost on the scaled columns,
:math:`\sum_c k_c |y_c - x_c|` (:meth:`~recourse.actionset.ActionSet.column_cost_coefficients`).  Each round
evaluates all admissible moves of all rows in one model call and takes, per row, the cheapest
move that reaches the target, else the move with the best margin gain per unit of added cost.
"""
from __future__ import annotations

import copy
import copy
from typing import Callable

import numpy as np

from .encoding import TabularEncoder

CHUNK_ROWS = 1024  # rows whose candidate moves are built and evaluated at once
Margin = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""margin(rows (N, D), targets (N,)) -> Z_t − max_{j≠t} Z_j per row."""


class DiscreteRepair:
    """Greedy completion and trimming on the scaled encoding of one schema."""

    def __init__(self, encoder: TabularEncoder, grid: int = 17):
        self.encoder = encoder
        self.actions = actions = encoder.action_set
        blocks, values, features = [], [], []
        for j, fc in enumerate(encoder.layout):
            if actions.immutable[j]:
                continue
            opts = self._options(j, fc.stop - fc.start, grid)
            for o in opts:
                blocks.append((fc.start, fc.stop))
                values.append(o)
                features.append(j)
        self.blocks = blocks
        self.values = values
        self.features = np.asarray(features, dtype=int)
        self.cost_coef = self._cost_coefficients()
        # the moves as (K, D) arrays: which columns a move sets, and to what
        d = encoder.n_columns
        self._move_mask = np.zeros((len(blocks), d), dtype=bool)
        self._move_value = np.zeros((len(blocks), d))
        for i, ((a, b), v) in enumerate(zip(blocks, values)):
            self._move_mask[i, a:b] = True
            self._move_value[i, a:b] = v
        # (F, D): the columns of each feature (for resetting one feature in trim)
        self._feature_mask = encoder.groups[None, :] == np.arange(encoder.n_features)[:, None]
        # the moves as (move, column) pairs, grouped by move: admissibility and costs per move
        # are reductions over a move's own columns (reduceat), never over all D columns
        k_idx, c_idx = np.nonzero(self._move_mask)
        self._pair_col = c_idx
        self._pair_val = self._move_value[k_idx, c_idx]
        self._pair_coef = self.cost_coef[c_idx]
        with np.errstate(invalid="ignore", divide="ignore"):  # the smallest change worth a move, in scaled units
            self._pair_min = np.nan_to_num(self.actions.min_change / self.actions.span)[encoder.groups[c_idx]]
        self._move_start = np.searchsorted(k_idx, np.arange(len(blocks))) if len(blocks) else np.zeros(0, int)
        self._move_width = self._move_mask.sum(1)

    def _options(self, j: int, width: int, grid: int) -> np.ndarray:
        """(K, width) scaled values feature ``j`` may be set to: its levels, or ``grid`` points of its range on the lattice."""
        a = self.actions
        if a.is_categorical[j]:
            return np.eye(width)
        if a.is_ordinal[j] or a.is_binary[j]:
            return np.linspace(0, 1, a.n_levels[j])[:, None]
        lo, span = a.low[j], a.span[j]
        raw = lo + np.linspace(0, 1, grid) * span
        if not a.free[j]:
            raw = np.unique(a.snap(raw, np.full(raw.shape, j)))
        return ((raw - lo) / span)[:, None]

    def _cost_coefficients(self, weights: np.ndarray | None = None) -> np.ndarray:
        """Per column c: cost of a unit change of the scaled value (sums to the schema's cost with weights ω)."""
        return self.actions.column_cost_coefficients(weights)

    def with_cost_weights(self, weights: np.ndarray) -> "DiscreteRepair":
        """The same repair with move costs under per-feature cost weights ω (a shallow copy)."""
        out = copy.copy(self)
        out.cost_coef = self._cost_coefficients(weights)
        out._pair_coef = out.cost_coef[out._pair_col]
        return out

    def with_cost_weights(self, weights: np.ndarray) -> "DiscreteRepair":
        """The same repair with per-feature cost weights ω (F,): column c's cost coefficient times ω of its feature."""
        other = copy.copy(self)
        other.cost_coef = self.cost_coef * np.asarray(weights, float)[self.encoder.groups]
        other._pair_coef = other.cost_coef[other._pair_col]
        return other

    def cost(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return (np.abs(y - x) * self.cost_coef).sum(-1)

    def _changed(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """(N, F): features with a column that differs by more than 1e-9."""
        if y.shape[-1] == 0:
            return np.zeros((len(y), self.encoder.n_features), dtype=bool)
        return np.logical_or.reduceat(np.abs(y - x) > 1e-9, self.encoder.starts, axis=1)

    def _admissible_moves(self, x, y, lower, upper, m):
        """(rows, moves) admissibility of every single move, and each move's cost from x."""
        xc = x[:, self._pair_col]
        delta = self._pair_val - xc
        outside = (delta < lower[:, self._pair_col] - 1e-9) | (delta > upper[:, self._pair_col] + 1e-9)
        outside |= (np.abs(delta) > 1e-9) & (np.abs(delta) < self._pair_min - 1e-9)  # below min_change
        inside = ~np.logical_or.reduceat(outside, self._move_start, axis=1)
        moved = np.abs(y[:, self._pair_col] - self._pair_val) > 1e-9
        same = ~np.logical_or.reduceat(moved, self._move_start, axis=1)
        changed = self._changed(x, y)
        budget = changed[:, self.features] | (changed.sum(1) < m)[:, None]
        contrib = np.abs(y - x) * self.cost_coef
        block_y = contrib @ self._move_mask.T
        block_v = np.add.reduceat(np.abs(delta) * self._pair_coef, self._move_start, axis=1)
        cost = contrib.sum(1)[:, None] - block_y + block_v
        return inside & ~same & budget, cost

    def _moved(self, y: np.ndarray, moves: np.ndarray) -> np.ndarray:
        """Rows ``y`` (P, D) each with its move ``moves`` (P,) applied, in place (returns ``y``)."""
        out = y
        width = self._move_width[moves]
        ends = np.cumsum(width)
        pair = np.arange(ends[-1] if len(ends) else 0) - np.repeat(ends - width - self._move_start[moves], width)
        out[np.repeat(np.arange(len(moves)), width), self._pair_col[pair]] = self._pair_val[pair]
        return out

    def _margin(self, margin: Margin, x: np.ndarray, y: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """The model's margin on the counterfactual of interventions ``y`` on ``x`` (scaled rows; with
        the schema's consequences applied, :meth:`recourse.consequences.Consequences.apply_scaled`)."""
        return margin(self.encoder.action_set.consequences.apply_scaled(x, y), targets)

    def complete(self, x, y, targets, lower, upper, m, margin: Margin, rounds: int | None = None):
        """Greedy search from lattice points ``y``; returns (new points, reached-target mask).

        Only admissible moves are evaluated by the model (one call per round for all rows).
        """
        y = y.copy()
        rounds = rounds if rounds is not None else m + 2
        cur = self._margin(margin, x, y, targets)
        done = cur > 0
        for _ in range(rounds):
            rows = np.flatnonzero(~done)
            if rows.size == 0 or not self.values:
                break
            xr, yr = x[rows], y[rows]
            ok, cost = self._admissible_moves(xr, yr, lower[rows], upper[rows], m)
            marg = np.full(ok.shape, -np.inf)
            for start in range(0, len(rows), CHUNK_ROWS):  # bounded memory for the (row, move) candidates
                ri, ki = np.nonzero(ok[start:start + CHUNK_ROWS])
                if ri.size:
                    ri += start
                    marg[ri, ki] = self._margin(margin, xr[ri], self._moved(yr[ri], ki), targets[rows][ri])
            valid = ok & (marg > 0)
            cheapest = np.where(valid, cost, np.inf).argmin(1)
            has_valid = valid.any(1)
            base_cost = self.cost(xr, yr)
            gain = (marg - cur[rows][:, None]) / np.maximum(cost - base_cost[:, None], 0.05)
            gain = np.where(ok & (marg > cur[rows][:, None]), gain, -np.inf)
            best = gain.argmax(1)
            moving = has_valid | np.isfinite(gain.max(1))
            pick = np.where(has_valid, cheapest, best)
            sel = np.flatnonzero(moving)
            y[rows[sel]] = self._moved(yr[sel], pick[sel])
            cur[rows[sel]] = marg[sel, pick[sel]]
            done[rows[has_valid]] = True
            stuck = rows[~moving]
            done[stuck] = True  # no admissible move improves the margin
        return y, self._margin(margin, x, y, targets) > 0

    def trim(self, x, y, targets, margin: Margin, valid: np.ndarray, rounds: int = 3):
        """Reset changed features to the original while the target is kept (the costliest first).

        Each round evaluates every (row, changed feature) reset in one model call.
        """
        y = y.copy()
        for _ in range(rounds):
            changed_all = self._changed(x, y)
            rows = np.flatnonzero(valid & changed_all.any(1))
            if rows.size == 0:
                break
            xr, yr = x[rows], y[rows]
            ri, fi = np.nonzero(changed_all[rows])
            cand = np.where(self._feature_mask[fi], xr[ri], yr[ri])
            marg = self._margin(margin, xr[ri], cand, targets[rows][ri])
            saving = ((np.abs(yr - xr) * self.cost_coef) @ self._feature_mask.T)[ri, fi]
            score = np.full((len(rows), self.encoder.n_features), -np.inf)
            score[ri, fi] = np.where(marg > 0, saving, -np.inf)
            best = score.max(1)
            if not np.isfinite(best).any():
                break
            pick = score.argmax(1)
            sel = np.flatnonzero(np.isfinite(best))
            y[rows[sel]] = np.where(self._feature_mask[pick[sel]], xr[sel], yr[sel])
        return y
