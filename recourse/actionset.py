r"""The action set :math:`\mathcal{A}(x)` and the cost :math:`C(x, y)`: the one definition of what may change and what it costs.

**Representations.**  A record lives in three forms:

* *raw values* — the records (DataFrame or dicts): numbers, booleans, level names;
* *codes* — one float per feature (:meth:`recourse.encoding.TabularEncoder.to_codes`): the value
  of a numeric feature, the level index of an ordinal or categorical one, 0/1 for a binary one
  (NaN: an unknown level);
* *scaled encoding* — the model's and the solver's vector in :math:`[0, 1]^D`: numeric
  :math:`z = (v - lo) / \text{span}`, ordinal :math:`z = \text{index} / (L - 1)`, binary 0/1,
  categorical one-hot (one column per level).

**Action set.**  For an original x (codes), feature j may take the values

.. math::

    \mathcal{A}_j(x) = \Lambda_j \cap [lo_j, hi_j] \cap D_j(x_j) \cap [x_j - \mu_j, x_j + \mu_j],
    \qquad \mathcal{A}_j(x) = \{x_j\} \text{ if j is pinned,}

with the lattice :math:`\Lambda_j` (integers and ordinal levels: step 1; continuous with
``precision`` p: :math:`10^{-p}\mathbb{Z}`; continuous without precision: :math:`\mathbb{R}`;
binary: {0, 1}; categorical: its levels), the range :math:`[lo_j, hi_j]` (levels 0 … L−1 for
ordinals, {0, 1} for binaries), the direction :math:`D_j` (:math:`[x_j, \infty)` for
``increase``, :math:`(-\infty, x_j]` for ``decrease``, everything for ``any``) and
``max_change`` :math:`\mu_j` (∞ when unset; never for categoricals).  Pinned: ``immutable``
features and, per call, *frozen* ones.  The interval is snapped inward onto the lattice and
widened to contain :math:`x_j` (an original off the lattice or outside the box may stay).  A
counterfactual y is *admissible* when every :math:`y_j \in \mathcal{A}_j(x)` (checked with
tolerance ``TOLERANCE``; the lattice only as "whole number" for integers) and at most m features
change (a categorical counts once).

**Cost.**  With per-feature weights :math:`\omega_j` (default 1) and cost scales :math:`s_j`

.. math::  C(x, y) = \sum_j \omega_j\,|\Delta_j| / s_j,

:math:`\Delta_j` in codes (raw units, levels for ordinals); a binary or categorical switch
counts :math:`|\Delta_j| = 1`.  On the scaled encoding the same cost is
:math:`\sum_c k_c |y_c - x_c|` with :math:`k_c = \omega_j\,\text{span}_j / s_j` for a scalar
column and :math:`k_c = \omega_j / (2 s_j)` for each column of a categorical group (a switch
moves two columns by 1).

**Consumers and their forms** (all derived from one :class:`ActionSet`):

* the solver — :meth:`ActionSet.scaled_bounds`, a box on the scaled displacement w = y − x (the
  relaxation: not snapped onto the lattice) (:meth:`TabularEncoder.bounds`);
* decoding — :meth:`ActionSet.box` on codes, clipping rounded values onto the lattice;
* the gate — :meth:`ActionSet.admissible` (codes) and :meth:`ActionSet.violations` (messages;
  :mod:`recourse.constraints` wraps both for DataFrames);
* the cost polish and the exact MILP audit — :meth:`ActionSet.code_bounds` (codes) and the rates
  :math:`\omega_j / s_j` (:meth:`ActionSet.cost_rates`);
* the discrete repair — :meth:`ActionSet.column_cost_coefficients` (scaled columns);
* reported costs — :meth:`ActionSet.cost` / :meth:`ActionSet.feature_costs` on codes.

Consequences (:mod:`recourse.consequences`, :attr:`ActionSet.consequences`): every rule above
applies to the *interventions* a (what a person does); the counterfactual the model sees is the
structural model's y = SCM(x, a).

Room for further rules: per-row limits (personal ranges) intersect :meth:`box`, features that
may not be acted on join :meth:`pinned`, allowed transitions between levels fill
:meth:`level_mask`, and new checks add a row to ``CHECKS``.
"""
from __future__ import annotations

import copy

import numpy as np

from .consequences import Consequences
from .errors import SchemaError
from .schema import Feature, FeatureSchema

TOLERANCE = 1e-9
"""Slack of the admissibility checks (codes units)."""
SNAP = 1e-9
"""Slack when snapping an interval end inward onto the lattice (lattice steps)."""
CHECKS: tuple[str, ...] = (
    "immutable feature changed",
    "not a valid value",
    "outside its range",
    "not a whole number",
    "decreased but may only increase",
    "increased but may only decrease",
    "changed by more than {max_change}",
    "changed, but it cannot be acted on (the schema or the request fixes it)",
    "this move between its levels is not allowed",
    "changed by less than its smallest meaningful change {min_change}",
    "changed to a value off its step {step}",
)
"""The per-feature constraint checks, in the order their messages are listed (``name: message``)."""


def feature_span(feat: Feature) -> float:
    """Width of the feature's range in codes (levels − 1 for ordinals; 1 for binaries and categoricals)."""
    if feat.is_numeric:
        return feat.range[1] - feat.range[0]
    if feat.kind == "ordinal":
        return float(len(feat.levels) - 1)
    return 1.0


class ActionSet:
    r"""Per-feature rules of one completed schema: :math:`\mathcal{A}_j(x)` and the cost (see the module docstring).

    Every array has one entry per feature (schema order) unless named a column array.  Methods
    are batched over rows: ``codes`` are (N, F) and ``x_scaled`` (N, D).
    """

    def __init__(self, schema: FeatureSchema):
        feats = list(schema.features)
        for feat in feats:
            if feat.is_numeric and feat.range is None:
                raise SchemaError(f"feature '{feat.name}' has no range; complete the schema with data first")
        self.features = feats
        self.names = [f.name for f in feats]
        kinds = np.array([f.kind for f in feats])
        self.is_numeric = np.isin(kinds, ["continuous", "integer"])
        self.is_integer = kinds == "integer"
        self.is_continuous = kinds == "continuous"
        self.is_binary = kinds == "binary"
        self.is_ordinal = kinds == "ordinal"
        self.is_categorical = kinds == "categorical"
        self.is_switch = self.is_binary | self.is_categorical
        """A change counts |Δ| = 1 (binary or categorical)."""
        self.protected = np.array([f.immutable for f in feats], dtype=bool)
        """The schema's ``immutable`` features (protected or fixed attributes)."""
        self.inactionable = np.array([not f.actionable for f in feats], dtype=bool)
        """Features a person cannot act on (``actionable: false``)."""
        self.immutable = self.protected | self.inactionable
        """Pinned by the schema: every consumer keeps these at the original value."""
        self.increase = np.array([f.direction == "increase" for f in feats], dtype=bool)
        self.decrease = np.array([f.direction == "decrease" for f in feats], dtype=bool)
        self.n_levels = np.array([len(f.levels) if f.kind in ("categorical", "ordinal") else 2 if f.kind == "binary"
                                  else 0 for f in feats], dtype=np.int64)
        self.low = np.array([f.range[0] if f.is_numeric else 0.0 for f in feats], dtype=float)
        self.high = np.array([f.range[1] if f.is_numeric else float(max(len(f.levels or []) - 1, 1)) for f in feats],
                             dtype=float)
        self.span = np.array([feature_span(f) for f in feats], dtype=float)
        self.origin = self.low.copy()
        """Code of the scaled encoding's 0 (the range's low end; 0 for levels): z = (code − origin) / span."""
        self.requested = np.zeros(len(feats), dtype=bool)
        """Features a request fixed (see :meth:`restricted`)."""
        self.max_change = np.array([f.max_change if f.max_change is not None and f.kind != "categorical" else np.inf
                                    for f in feats], dtype=float)
        self.step = np.array([f.step if f.step is not None else np.nan for f in feats], dtype=float)
        """A numeric feature's ``step`` (NaN: none): its changed values lie on step·ℤ."""
        self.has_step = ~np.isnan(self.step)
        self.min_change = np.array([f.min_change or 0.0 for f in feats], dtype=float)
        """The smallest change worth advising (0: any), raw units or levels."""
        self.free = np.array([f.kind == "continuous" and f.precision is None and f.step is None for f in feats],
                             dtype=bool)
        """Continuous without ``precision`` or ``step``: no lattice."""
        self.q = np.array([10.0 ** f.precision if f.kind == "continuous" and f.precision is not None else 1.0
                           for f in feats], dtype=float)
        """Lattice denominators: the lattice is :math:`q_j^{-1}\\mathbb{Z}` (1 where ``free``), or
        step·ℤ where a ``step`` is given (see :meth:`lattice_index` and :meth:`lattice_value`)."""
        self.cost_scale = np.array([f.cost_scale or 1.0 for f in feats], dtype=float)
        self.cost_weight = np.array([f.cost_weight for f in feats], dtype=float)
        """The schema's ω (the engine's default; ``weights=None`` below means ω = 1)."""
        self._prepare_transitions()
        self._prepare_columns()
        self.consequences = Consequences(self, schema.consequences)
        """The additive structural model (:mod:`recourse.consequences`): every rule here applies to
        the interventions; :meth:`Consequences.apply` gives the counterfactual the model sees."""
        self._messages = [[f"{f.name}: {c.format(max_change=f.max_change, min_change=f.min_change, step=f.step)}"
                           for c in CHECKS] for f in feats]

    def _prepare_transitions(self) -> None:
        """``transition[j, a, b]``: may feature j move from level a to level b (F, L, L); staying always may.

        Without ``transitions`` every move between existing levels may; ``_hull_lo/_hull_hi``
        (F, L): the lowest and highest level reachable from each level (the interval the
        solver's relaxation of an ordinal feature sees).
        """
        size = int(max(self.n_levels.max(initial=0), 2))
        levels = np.arange(size)
        exists = levels[None, :] < self.n_levels[:, None]  # (F, L)
        trans = exists[:, :, None] & exists[:, None, :]
        self.has_transitions = np.array([f.transitions is not None for f in self.features], dtype=bool)
        for j in np.flatnonzero(self.has_transitions):
            feat = self.features[j]
            index = {name: i for i, name in enumerate(feat.level_names)}
            rule = np.zeros((size, size), dtype=bool)
            for source, targets in feat.transitions.items():
                rule[index[source], [index[t] for t in targets]] = True
            trans[j] = rule & exists[j][:, None] & exists[j][None, :]
        trans |= np.eye(size, dtype=bool)[None] & exists[:, :, None]
        self.transition = trans
        big = np.where(trans, levels[None, None, :], size)
        small = np.where(trans, levels[None, None, :], -1)
        self._hull_lo = big.min(axis=2).astype(float)
        self._hull_hi = small.max(axis=2).astype(float)

    def level_of(self, codes: np.ndarray) -> np.ndarray:
        """(…, F) the level index of each code (0 where not a level: numbers, NaN)."""
        size = self.transition.shape[1]
        return np.clip(np.nan_to_num(np.round(np.asarray(codes, dtype=float))), 0, size - 1).astype(np.int64)

    def _prepare_columns(self) -> None:
        """Column arrays of the scaled encoding: a categorical feature has one column per level."""
        width = np.where(self.is_categorical, self.n_levels, 1)
        self.starts = np.concatenate([[0], np.cumsum(width)[:-1]]).astype(np.int64)
        self.groups = np.repeat(np.arange(self.n_features), width)
        """Feature of each column (D,)."""
        self._column_span = np.where(self.is_categorical, 0.5, self.span)[self.groups]
        step = np.where(self.is_categorical, np.inf, self.max_change / self.span)
        self._column_step = step[self.groups]
        self._column_inc, self._column_dec = self.increase[self.groups], self.decrease[self.groups]
        with np.errstate(invalid="ignore"):
            self._column_low = np.where(self.is_categorical, 0.0, (self.low - self.origin) / self.span)[self.groups]
            self._column_high = np.where(self.is_categorical, 1.0, (self.high - self.origin) / self.span)[self.groups]

    def restricted(self, fixed: np.ndarray | None = None, low: np.ndarray | None = None,
                   high: np.ndarray | None = None) -> "ActionSet":
        """This action set with a request's personal limits: ``fixed`` (F,) features pinned, and every
        value within [``low``, ``high``] (F,) codes (NaN: no limit); the schema's rules still hold."""
        other = copy.copy(self)
        if fixed is not None:
            fixed = np.asarray(fixed, dtype=bool)
            cons = self.consequences
            if cons.active:  # a fixed feature never moves: nor do the causes that would move it
                fixed = fixed.copy()
                fixed[cons.cause[fixed[cons.effect]]] = True
            fixed = fixed & ~self.immutable
            other.requested = self.requested | fixed
            other.immutable = self.immutable | fixed
        if low is not None:
            low = np.asarray(low, dtype=float)
            other.low = np.where(np.isnan(low), self.low, np.maximum(self.low, low))
        if high is not None:
            high = np.asarray(high, dtype=float)
            other.high = np.where(np.isnan(high), self.high, np.minimum(self.high, high))
        other._prepare_columns()
        return other

    @classmethod
    def from_encoder(cls, encoder) -> "ActionSet":
        """The action set of a :class:`recourse.encoding.TabularEncoder` (the one it holds)."""
        return encoder.action_set

    @property
    def n_features(self) -> int:
        return len(self.features)

    @property
    def n_columns(self) -> int:
        return len(self.groups)

    # ------------------------------------------------------------------ allowed values
    def pinned(self, frozen: np.ndarray | None = None) -> np.ndarray:
        """Features that must keep the original value: immutables, and ``frozen`` ((F,) or (N, F)) ones."""
        return self.immutable if frozen is None else self.immutable | np.asarray(frozen, dtype=bool)

    def box(self, values: np.ndarray, features: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        r"""Per row the interval range ∩ direction ∩ max_change around ``values``, snapped inward onto the lattice.

        ``values`` (N, K): codes of the features ``features`` (K indices; None: all F).  Not
        widened to contain the original and not pinned (see :meth:`code_bounds`); the lower end
        may exceed the upper one when the original lies off the lattice or outside its range.
        """
        idx = slice(None) if features is None else np.asarray(features)
        v = np.asarray(values, dtype=float)
        lo = np.broadcast_to(self.low[idx], v.shape)
        hi = np.broadcast_to(self.high[idx], v.shape)
        lo = np.where(self.increase[idx], np.maximum(lo, v), lo)
        hi = np.where(self.decrease[idx], np.minimum(hi, v), hi)
        mc = self.max_change[idx]
        lo, hi = np.maximum(lo, v - mc), np.minimum(hi, v + mc)
        ordered = self.is_ordinal[idx] & self.has_transitions[idx]
        if ordered.any():  # an ordinal's allowed levels from its current one: their interval
            feats = np.arange(self.n_features)[idx]
            level = self.level_of(v)
            lo = np.where(ordered, np.maximum(lo, self._hull_lo[feats, level]), lo)
            hi = np.where(ordered, np.minimum(hi, self._hull_hi[feats, level]), hi)
        free = self.free[idx]
        with np.errstate(invalid="ignore"):
            lo = np.where(free, lo, self.lattice_value(np.ceil(self.lattice_index(lo, features) - SNAP), features))
            hi = np.where(free, hi, self.lattice_value(np.floor(self.lattice_index(hi, features) + SNAP), features))
        return lo, hi

    def lattice_index(self, values: np.ndarray, features: np.ndarray | None = None) -> np.ndarray:
        """``values`` (…, K) of ``features`` in lattice steps: v·q, or v / step for a feature with a ``step``."""
        idx = slice(None) if features is None else np.asarray(features)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.has_step[idx], values / self.step[idx], values * self.q[idx])

    def lattice_value(self, index: np.ndarray, features: np.ndarray | None = None) -> np.ndarray:
        """The inverse of :meth:`lattice_index`: k / q, or k·step."""
        idx = slice(None) if features is None else np.asarray(features)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.has_step[idx], index * self.step[idx], index / self.q[idx])

    def push_out(self, features: np.ndarray, origin: np.ndarray, values: np.ndarray, lower: np.ndarray,
                 upper: np.ndarray, away: bool = True) -> np.ndarray:
        """``values`` (N, K) of ``features`` (K,) with every change smaller than the feature's
        ``min_change`` μ pushed out to μ (on the lattice, away from ``origin``), or back to the
        origin when the pushed value leaves [``lower``, ``upper``] or (``away=False``) when the
        change is below μ/2 (the nearer of the two)."""
        features = np.asarray(features)
        if not (self.min_change[features] > 0).any():
            return values
        mu = self.min_change[features]
        delta = values - origin
        small = (mu > 0) & (np.abs(delta) > TOLERANCE) & (np.abs(delta) < mu - TOLERANCE)
        if not small.any():
            return values
        sign = np.sign(delta)
        target = origin + sign * mu
        with np.errstate(invalid="ignore"):
            index = self.lattice_index(target, features)
            snapped = self.lattice_value(np.where(sign > 0, np.ceil(index - SNAP), np.floor(index + SNAP)), features)
        pushed = np.where(self.free[features], target, snapped)
        inside = (pushed >= lower - TOLERANCE) & (pushed <= upper + TOLERANCE)
        if not away:
            inside &= np.abs(delta) >= mu / 2
        return np.where(small, np.where(inside, pushed, origin), values)

    def code_bounds(self, codes: np.ndarray, frozen: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        r"""Per row and feature the lowest and highest allowed code: :meth:`box` widened to contain x, pinned features at x.

        For a categorical feature the interval holds every level; which levels are allowed is
        :meth:`level_mask`.
        """
        x = np.asarray(codes, dtype=float)
        lo, hi = self.box(x)
        fixed = self.pinned(frozen)
        return np.where(fixed, x, np.minimum(lo, x)), np.where(fixed, x, np.maximum(hi, x))

    def level_mask(self, codes: np.ndarray, frozen: np.ndarray | None = None) -> np.ndarray:
        """(N, F, L) whether level l of feature j is allowed for row n (L: the most levels of any feature).

        Ordinal and binary features: the levels inside :meth:`code_bounds` that the feature's
        ``transitions`` allow from its current level; categorical: the levels its transitions
        allow (every level without them), only the original one when pinned; numeric: none.
        """
        x = np.asarray(codes, dtype=float)
        lo, hi = self.code_bounds(x, frozen)
        size = int(self.n_levels.max(initial=0))
        levels = np.arange(size, dtype=float)
        exists = levels[None, :] < self.n_levels[:, None]
        inside = (levels >= lo[..., None] - TOLERANCE) & (levels <= hi[..., None] + TOLERANCE)
        moves = self.transition[np.arange(self.n_features), self.level_of(x)][..., :size]
        free_cat = self.is_categorical & ~self.pinned(frozen)
        allowed = np.where(free_cat[..., None], moves, inside & moves)
        return allowed & exists & ~self.is_numeric[:, None]

    def allowed_levels(self, features: np.ndarray, origin: np.ndarray, values: np.ndarray, lower: np.ndarray,
                       upper: np.ndarray) -> np.ndarray:
        """``values`` (N, K) of ``features`` (K,) with each ordinal level its transitions do not allow
        from ``origin``, or closer to it than its ``min_change``, moved to the nearest allowed level in
        [``lower``, ``upper``] (else the origin)."""
        features = np.asarray(features)
        pick = np.flatnonzero(self.is_ordinal[features] & (self.has_transitions[features] | (self.min_change[features] > 0)))
        if pick.size == 0:
            return values
        out = values.copy()
        for k in pick:
            j = int(features[k])
            levels = np.arange(int(self.n_levels[j]), dtype=float)
            here = self.level_of(origin[:, k])
            ok = self.transition[j, here][:, : levels.size]
            ok &= (levels >= lower[:, k, None] - TOLERANCE) & (levels <= upper[:, k, None] + TOLERANCE)
            ok &= np.abs(levels[None, :] - here[:, None]) >= self.min_change[j] - TOLERANCE  # no smaller step
            ok[np.arange(len(here)), here] = True  # staying is always allowed
            distance = np.where(ok, np.abs(levels[None, :] - values[:, k, None]), np.inf)
            out[:, k] = levels[distance.argmin(1)]
        return out

    def snap(self, values: np.ndarray, features: np.ndarray | None = None) -> np.ndarray:
        """``values`` (…, K) of the features ``features`` rounded to the nearest lattice point (free ones unchanged)."""
        idx = slice(None) if features is None else np.asarray(features)
        return np.where(self.free[idx], values, self.lattice_value(np.round(self.lattice_index(values, features)), features))

    def scaled_bounds(self, x_scaled: np.ndarray, frozen: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        r"""Per row bounds lower ≤ 0 ≤ upper on the scaled displacement w = y − x.

        The box :math:`[0, 1]` of every column, one-sided for ``increase`` / ``decrease``, within
        :math:`\pm\mu_j / \text{span}_j` (not for categoricals) and pinned to 0 for immutable
        and ``frozen`` features.  The relaxation of :meth:`code_bounds`: not snapped onto the lattice.
        """
        x = np.asarray(x_scaled, dtype=float)
        lower, upper = self._column_low - x, self._column_high - x
        lower = np.where(self._column_inc, 0.0, lower)
        upper = np.where(self._column_dec, 0.0, upper)
        lower, upper = np.maximum(lower, -self._column_step), np.minimum(upper, self._column_step)
        fixed = self.pinned(frozen)[..., self.groups]
        lower, upper = np.where(fixed, 0.0, lower), np.where(fixed, 0.0, upper)
        lower, upper = self._level_moves(x, lower, upper)
        return np.minimum(lower, 0.0), np.maximum(upper, 0.0)

    def _level_moves(self, x: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scaled bounds of features with ``transitions``: a categorical level column the current
        level may not move to stays 0 (the whole group is pinned when no move is allowed); an
        ordinal stays within the interval of its reachable levels."""
        if not self.has_transitions.any():
            return lower, upper
        lower, upper = lower.copy(), upper.copy()
        for j in np.flatnonzero(self.has_transitions & ~self.immutable):
            start, n = int(self.starts[j]), int(self.n_levels[j])
            if self.is_categorical[j]:
                cols = slice(start, start + n)
                allowed = self.transition[j, x[..., cols].argmax(-1)][..., :n]
                upper[..., cols] = np.where(allowed, upper[..., cols], 0.0)
                stuck = allowed.sum(-1) <= 1
                lower[..., cols] = np.where(stuck[..., None], 0.0, lower[..., cols])
            else:  # ordinal: one column, z = level / (L − 1)
                level = self.level_of(x[..., start] * self.span[j])
                lower[..., start] = np.maximum(lower[..., start], (self._hull_lo[j, level] - level) / self.span[j])
                upper[..., start] = np.minimum(upper[..., start], (self._hull_hi[j, level] - level) / self.span[j])
        return np.minimum(lower, 0.0), np.maximum(upper, 0.0)

    # ------------------------------------------------------------------ admissibility
    def changed(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """(N, F) which features differ (numeric: by more than ``TOLERANCE``; NaN numbers never count)."""
        with np.errstate(invalid="ignore"):
            return np.where(self.is_numeric, np.abs(a - b) > TOLERANCE, a != b)

    def violation_masks(self, a: np.ndarray, b: np.ndarray, changed: np.ndarray | None = None) -> np.ndarray:
        """(N, F, K) which of the ``CHECKS`` codes ``b`` break against originals ``a`` (per feature).

        ``changed`` (N, F): which features differ (default :meth:`changed`).  An immutable
        feature is only checked for a change.
        """
        a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        changed = self.changed(a, b) if changed is None else changed
        mutable = ~self.immutable
        outcome, moved = b, changed
        if self.consequences.active:  # the consequences' values stay within the (request's) ranges too
            y = self.consequences.apply(a, b)
            outcome = np.where(self.consequences.is_effect, y, b)
            moved = changed | self.changed(a, y)
        levels = self.is_categorical | self.is_ordinal
        feats = np.arange(self.n_features)
        blocked = ~self.transition[feats, self.level_of(a), self.level_of(b)]
        with np.errstate(invalid="ignore"):
            masks = np.stack([
                changed & self.protected,
                np.isnan(b) & mutable,
                (self.is_numeric | self.is_ordinal) & (mutable | self.consequences.is_effect) & moved
                & ((outcome < self.low - TOLERANCE) | (outcome > self.high + TOLERANCE)),
                self.is_integer & mutable & (np.abs(b - np.round(b)) > TOLERANCE),
                self.increase & mutable & (b < a - TOLERANCE),
                self.decrease & mutable & (b > a + TOLERANCE),
                mutable & (np.abs(b - a) > self.max_change + TOLERANCE),
                changed & (self.inactionable | self.requested) & ~self.protected,
                mutable & levels & self.has_transitions & changed & ~np.isnan(b) & blocked,
                mutable & changed & (np.abs(b - a) < self.min_change - TOLERANCE),
                mutable & changed & self.has_step & (np.abs(b / self.step - np.round(b / self.step)) > 1e-6),
            ], axis=-1)
        return masks

    def admissible(self, orig_codes: np.ndarray, new_codes: np.ndarray, max_changes: int | None) -> np.ndarray:
        """(N,) True where ``new_codes`` break no check and at most ``max_changes`` features changed."""
        changed = self.changed(orig_codes, new_codes)
        bad = self.violation_masks(orig_codes, new_codes, changed).any(axis=(1, 2))
        if max_changes is not None:
            bad |= changed.sum(axis=1) > max_changes
        return ~bad

    def violations(self, orig_codes: np.ndarray, new_codes: np.ndarray, max_changes: int | None,
                   changed: np.ndarray | None = None) -> list[list[str]]:
        """Per row the broken constraints as messages (``"name: check"``, feature order, then the count).

        ``changed`` (N, F): which features differ when known from the raw values (default: from the codes).
        """
        changed = self.changed(orig_codes, new_codes) if changed is None else changed
        masks = self.violation_masks(orig_codes, new_codes, changed)
        found: list[list[str]] = [[] for _ in range(len(masks))]
        for r, j, k in zip(*np.nonzero(masks)):
            found[r].append(self._messages[j][k])
        if max_changes is not None:
            for r in np.flatnonzero(changed.sum(axis=1) > max_changes):
                found[r].append(f"more than {max_changes} features changed")
        return found

    # ------------------------------------------------------------------ cost
    def cost_rates(self, weights: np.ndarray | None = None) -> np.ndarray:
        r"""Per feature the cost of a unit change :math:`\omega_j / s_j` (F,) (ω = 1 when None)."""
        return 1.0 / self.cost_scale if weights is None else np.asarray(weights, dtype=float) / self.cost_scale

    def feature_cost(self, f: np.ndarray, a: np.ndarray, b: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        r"""Elementwise cost :math:`\omega_f |b - a| / s_f` of moving feature ``f`` from code ``a`` to ``b`` (a switch: |Δ| = 1)."""
        delta = np.where(self.is_switch[f], (a != b).astype(float), np.abs(b - a))
        if weights is None:
            return delta / self.cost_scale[f]
        return delta * (np.asarray(weights, dtype=float)[f] / self.cost_scale[f])

    def feature_costs(self, a_codes: np.ndarray, b_codes: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """(N, F) per-feature costs between codes (see :meth:`feature_cost`)."""
        return self.feature_cost(np.arange(self.n_features), np.asarray(a_codes, float), np.asarray(b_codes, float),
                                 weights)

    def cost(self, a: np.ndarray, b: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        r""":math:`C(a, b) = \sum_j \omega_j |\Delta_j| / s_j` per row (N,)."""
        terms = self.feature_costs(a, b, weights)
        return terms.sum(1) if terms.shape[1] else np.zeros(len(terms))

    def column_cost_coefficients(self, weights: np.ndarray | None = None) -> np.ndarray:
        r"""(D,) :math:`k_c` with :math:`C = \sum_c k_c |\Delta z_c|` on the scaled encoding (see the module docstring)."""
        coef = self._column_span / self.cost_scale[self.groups]
        return coef if weights is None else coef * np.asarray(weights, dtype=float)[self.groups]
