r"""Consequences: the additive structural model of how an action on one feature moves others.

In the spirit of interventional recourse (Karimi, Schölkopf and Valera, 2021), a schema may
declare edges ``cause → effect`` with a ``rate`` :math:`r_{ce}` (codes units: raw units, levels
for ordinals).  A person's *interventions* :math:`a` (the values the actions set) give the
counterfactual

.. math::

    y_e = \operatorname{clip}_{[lo_e, hi_e]}\Big(\operatorname{snap}_e\big(a_e + \textstyle\sum_c r_{ce}\,(a_c - x_c)\big)\Big)
    \quad\text{for an effect } e \text{ whose push } \textstyle\sum_c r_{ce}(a_c - x_c) \ne 0,
    \qquad y_j = a_j \text{ otherwise,}

snapped onto the effect's lattice (whole numbers, levels, ``step``) and clipped to its schema
range (years at a residence saturate at the top band).  Edges are one step deep (an effect is
never a cause; :class:`recourse.schema.FeatureSchema` refuses chains), so this *is* the
structural model's counterfactual.  Waiting is an action like any other: the schema's time
feature (German credit: ``age``) may only increase, and its consequences move every other
feature that counts time.

Who sees what: the action set's rules, the ℓ0 budget and the cost count the interventions
:math:`a`; the model, the density and the plausibility score see :math:`y`; an answer lists the
interventions as actions and the counterfactual shows :math:`y` (the moved effects listed as
consequences).  On the scaled encoding the same map is
:math:`z^y = z^a + (z^a - z^x) E` with :math:`E_{ce} = r_{ce}\,\text{span}_c / \text{span}_e`
on the effects' columns (the solver's relaxation: clipped to [0, 1], not snapped).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

if TYPE_CHECKING:
    from .actionset import ActionSet
    from .schema import Consequence

TOLERANCE = 1e-9


class Consequences:
    """The structural model of one schema (see the module docstring); identity when it has no edges."""

    def __init__(self, actions: "ActionSet", edges: Sequence["Consequence"]):
        index = {name: j for j, name in enumerate(actions.names)}
        self.actions = actions
        self.names = actions.names
        self.cause = np.array([index[e.cause] for e in edges], dtype=np.int64)
        self.effect = np.array([index[e.effect] for e in edges], dtype=np.int64)
        self.rate = np.array([e.rate for e in edges], dtype=float)
        self.active = bool(len(edges))
        """Whether any edge exists (without one, every method returns its input)."""
        self.effects = np.unique(self.effect)
        """The features some action moves (sorted indices)."""
        self.is_effect = np.zeros(actions.n_features, dtype=bool)
        self.is_effect[self.effects] = True
        self.low, self.high = actions.low.copy(), actions.high.copy()
        """The schema's ranges (a request's personal limits bound interventions, not consequences)."""
        n = actions.n_features
        self._edges = np.zeros((len(edges), n))
        self._edges[np.arange(len(edges)), self.effect] = 1.0
        span = actions.span
        self.cause_column = actions.starts[self.cause]
        self.effect_column = actions.starts[self.effect]
        self.scaled_rate = self.rate * span[self.cause] / span[self.effect]
        self._torch: dict[tuple, tuple[torch.Tensor, ...]] = {}

    # ------------------------------------------------------------------ codes
    def push(self, origins: np.ndarray, interventions: np.ndarray) -> np.ndarray:
        r"""(N, F) :math:`\sum_c r_{ce}(a_c - x_c)` per effect e (0 elsewhere)."""
        delta = np.asarray(interventions, float)[..., self.cause] - np.asarray(origins, float)[..., self.cause]
        unknown = np.isnan(delta)
        if unknown.any():  # an unknown level never moves anything
            delta[unknown] = 0.0
        return (delta * self.rate) @ self._edges

    def apply(self, origins: np.ndarray, interventions: np.ndarray) -> np.ndarray:
        """Counterfactual codes y (N, F) of interventions ``a`` on originals ``x`` (codes)."""
        a = np.asarray(interventions, dtype=float)
        if not self.active or a.size == 0:
            return a
        push = self.push(origins, a)
        moved = np.abs(push) > TOLERANCE
        if not moved.any():
            return a
        e = self.effects
        value = self.actions.snap(a[..., e] + push[..., e], e)
        value = np.clip(value, self.low[e], self.high[e])
        out = a.copy()
        out[..., e] = np.where(moved[..., e], value, a[..., e])
        return out

    def interventions(self, origins: np.ndarray, counterfactuals: np.ndarray) -> np.ndarray:
        """The interventions behind counterfactual codes y (N, F): y itself, except an effect whose
        value the causes' moves explain keeps the original (else: its own intervention, y_e − push
        snapped onto its lattice where that reproduces y_e)."""
        y = np.asarray(counterfactuals, dtype=float)
        if not self.active or y.size == 0:
            return y
        x = np.asarray(origins, dtype=float)
        a = y.copy()
        e = self.effects
        a[..., e] = x[..., e]
        implied = self.apply(x, a)
        own = np.abs(implied[..., e] - y[..., e]) > TOLERANCE
        own &= ~(np.isnan(implied[..., e]) & np.isnan(y[..., e]))
        if not own.any():
            return a
        raw = y[..., e] - self.push(x, a)[..., e]  # its own intervention: on the lattice where that explains y
        snapped = a.copy()
        snapped[..., e] = np.where(own, self.actions.snap(raw, e), x[..., e])
        exact = np.abs(self.apply(x, snapped)[..., e] - y[..., e]) <= TOLERANCE
        a[..., e] = np.where(own, np.where(exact, snapped[..., e], raw), x[..., e])
        return a

    def moved(self, interventions: np.ndarray, counterfactuals: np.ndarray) -> np.ndarray:
        """(N, F) which effects the interventions move: where the counterfactual (:meth:`apply`)
        differs from the intervention."""
        return self.actions.changed(np.asarray(interventions, float), counterfactuals) & self.is_effect

    def causes_of(self, effect: int, origins: np.ndarray, interventions: np.ndarray) -> list[int]:
        """The features whose change moves feature ``effect`` in this one row (codes (F,))."""
        delta = np.nan_to_num(np.asarray(interventions, float) - np.asarray(origins, float))
        return [int(c) for c, e in zip(self.cause, self.effect) if e == effect and abs(delta[c]) > TOLERANCE]

    # ------------------------------------------------------------------ scaled encoding
    def apply_scaled(self, x: np.ndarray, z: np.ndarray) -> np.ndarray:
        """The counterfactual's scaled rows for scaled interventions ``z`` on originals ``x`` (N, D),
        snapped and clipped like :meth:`apply` (exact on lattice points)."""
        z = np.asarray(z, dtype=float)
        if not self.active or z.size == 0:
            return z
        delta = (z[..., self.cause_column] - np.asarray(x, float)[..., self.cause_column]) * self.scaled_rate
        push = delta @ self._edges
        moved = np.abs(push) > TOLERANCE
        if not moved.any():
            return z
        e = self.effects
        cols = self.actions.starts[e]
        span, origin = self.actions.span[e], self.actions.origin[e]
        code = origin + (z[..., cols] + push[..., e]) * span
        code = np.clip(self.actions.snap(code, e), self.low[e], self.high[e])
        out = z.copy()
        out[..., cols] = np.where(moved[..., e], (code - origin) / span, z[..., cols])
        return out

    # ------------------------------------------------------------------ the solver (torch)
    def _tensors(self, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(E (D, D) dense, the per-column clip bounds (D,) each: [0, 1] on effect columns, unbounded
        elsewhere) on a device, cached (D is small: one matrix product beats a handful of gathers)."""
        key = (str(device), dtype)
        if key not in self._torch:
            d = int(self.actions.n_columns)
            matrix = np.zeros((d, d))
            np.add.at(matrix, (self.cause_column, self.effect_column), self.scaled_rate)
            low, high = np.full(d, -np.inf), np.full(d, np.inf)
            low[self.effect_column], high[self.effect_column] = 0.0, 1.0
            self._torch[key] = tuple(torch.as_tensor(a, device=device, dtype=dtype) for a in (matrix, low, high))
        return self._torch[key]

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        r"""The solver's relaxation :math:`\operatorname{clip}_{[0,1]}(z + (z - x)E)` on the effects'
        columns, and the (B, D) factor :meth:`pullback` needs (1 where the map is the identity or
        not clipped, 0 on clipped effect columns; None: identity)."""
        if not self.active:
            return z, None
        matrix, low, high = self._tensors(z.device, z.dtype)
        raw = torch.addmm(z, z - x, matrix)
        out = torch.clamp(raw, low, high)
        return out, (raw == out).to(z.dtype)

    def pullback(self, grad: torch.Tensor, inside: torch.Tensor | None) -> torch.Tensor:
        r"""The gradient with respect to the interventions of a gradient at the counterfactual:
        :math:`g_a = (g \odot s)(I + E)^\top`, s the not-clipped factor of :meth:`forward`."""
        if inside is None:
            return grad
        matrix = self._tensors(grad.device, grad.dtype)[0]
        g = grad * inside
        return torch.addmm(g, g, matrix.t())
