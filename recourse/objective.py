r"""The S-CFE objective and its feasible set, as callables for :func:`recourse.core.apg.apg`.

For row b with original point :math:`x_b`, target class :math:`t_b` and loss weight :math:`c_b`:

.. math::
    h_b(y) = c_b\,\big[\max_{j\ne t_b} Z_j(y) - Z_{t_b}(y) + \kappa\big]_+
             + \sum_i W_i (y_i - x_{b,i})^2 - \tau \log \hat q_{t_b}(y; x_b),

with :math:`Z` the model's logits (the Carlini–Wagner hinge), :math:`W` the proximity weights and
:math:`\hat q` the target-class density (KDE, GMM, or the k-NN gravity term).  The non-smooth
part is the indicator of :math:`\{\|y - x_b\|_{0,\mathcal G} \le m_b\} \cap \mathcal A_b`, whose
prox is the exact projection onto it: per group, the box (or, for the one-hot columns of a
mutable categorical feature, the unit simplex, so every iterate is a mixture of real
categories), then the m groups that gain most (:func:`recourse.core.projections.select_groups`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from .core.projections import project_box, project_simplex_groups, select_groups


class Classifier(Protocol):
    def logits(self, x: Tensor) -> Tensor: ...


class TargetDensity(Protocol):
    def log_prob(self, y: Tensor, x: Tensor, target: Tensor) -> Tensor: ...


def logit_margin(logits: Tensor, target: Tensor) -> Tensor:
    r""":math:`Z_t - \max_{j\ne t} Z_j` per row (> 0: the model picks the target class)."""
    z_t = logits.gather(1, target[:, None])[:, 0]
    return z_t - logits.scatter(1, target[:, None], float("-inf")).amax(1)


def hinge(logits: Tensor, target: Tensor, margin: float) -> Tensor:
    r"""Carlini–Wagner hinge :math:`[\max_{j\ne t} Z_j - Z_t + \kappa]_+` per row."""
    return torch.relu(margin - logit_margin(logits, target))


@dataclass
class RowData:
    """Per-row problem data on the solver's device: originals, bounds, budgets, targets, weights."""

    x: Tensor
    lower: Tensor
    upper: Tensor
    max_changes: Tensor
    target: Tensor
    loss_weight: Tensor

    def take(self, rows: Tensor) -> "RowData":
        return RowData(*(getattr(self, f)[rows] for f in self.__dataclass_fields__))


class SCFEProblem:
    """h and prox for a batch of rows; per-iteration row subsets are gathered once and cached."""

    def __init__(
        self,
        classifier: Classifier,
        data: RowData,
        weights: Tensor,
        groups: Tensor,
        n_groups: int,
        density: TargetDensity | None = None,
        density_weight: float = 0.0,
        margin: float = 0.1,
        simplex: Tensor | None = None,
    ):
        self.classifier = classifier
        self.data = data
        self.weights = weights
        self.groups = groups
        self.n_groups = n_groups
        self.density = density if density_weight > 0 else None
        self.density_weight = density_weight
        self.margin = margin
        self.simplex = simplex
        self._simplex_cols = simplex[simplex >= 0] if simplex is not None else None
        self._cache: tuple[Tensor, RowData] | None = None

    def rows(self, rows: Tensor) -> RowData:
        if self._cache is None or self._cache[0] is not rows:
            self._cache = (rows, self.data.take(rows))
        return self._cache[1]

    def smooth(self, y: Tensor, rows: Tensor) -> Tensor:
        d = self.rows(rows)
        value = d.loss_weight * hinge(self.classifier.logits(y), d.target, self.margin)
        value = value + ((y - d.x) ** 2 * self.weights).sum(1)
        if self.density is not None:
            value = value - self.density_weight * self.density.log_prob(y, d.x, d.target)
        return value

    def prox(self, v: Tensor, step: Tensor, rows: Tensor) -> Tensor:
        d = self.rows(rows)
        w = v - d.x
        z = project_box(w, d.lower, d.upper)
        if self._simplex_cols is not None and self._simplex_cols.numel():
            cols = self._simplex_cols
            z[:, cols] = project_simplex_groups(v, self.simplex)[:, cols] - d.x[:, cols]
        return d.x + select_groups(w, z, d.max_changes, self.groups, self.n_groups)
