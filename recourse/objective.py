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
categories), then the m groups that gain most: :class:`recourse.core.projections.L0BoxProjection`,
the same projection the image S-CFE uses, prepared once per problem.  The solver takes it in
the W-norm (a diagonal preconditioner, see :meth:`SCFEProblem.prox`) and evaluates h and its
gradient in closed form (:meth:`SCFEProblem.value_and_grad`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .core.projections import L0BoxProjection
from .models import Affine


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


# layers whose input gradient is a cheap function of their input/output (see MarginGradient)
_ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.ELU, nn.Identity, nn.Dropout)


def _plain_layers(classifier: Any) -> list[nn.Module] | None:
    """The layers of a TorchClassifier whose module is a plain MLP with logit outputs, else None."""
    module, output = getattr(classifier, "module", None), getattr(classifier, "output", None)
    if output not in ("logit", "logits") or not isinstance(module, nn.Sequential):
        return None
    layers: list[nn.Module] = []
    stack = list(module)
    while stack:
        layer = stack.pop(0)
        if isinstance(layer, nn.Sequential):
            stack = list(layer) + stack
        elif isinstance(layer, (nn.Linear, Affine, *_ACTIVATIONS)) or (isinstance(layer, nn.Flatten) and layer.start_dim == 1):
            layers.append(layer)
        else:
            return None
    return layers if any(isinstance(m, nn.Linear) for m in layers) else None


class MarginGradient:
    r"""The logit margin :math:`m_t(y) = Z_t(y) - \max_{j\ne t} Z_j(y)` and :math:`\nabla_y m_t`.

    For a plain MLP (``nn.Sequential`` of ``Linear``, :class:`~recourse.models.Affine` and
    elementwise activations, with logit outputs) one forward pass keeps each layer's output and
    one backward pass applies the layers' transposed Jacobians by hand to
    :math:`v = e_t - e_{j^*}` (:math:`j^*` the best other class; for one binary logit
    :math:`z`, :math:`m_t = \pm z`); any other classifier is differentiated with autograd.
    The layers' parameters are read once, at construction.
    """

    def __init__(self, classifier: Classifier):
        self.classifier = classifier
        members = getattr(classifier, "members", None)  # a committee: the worst member's margin
        self.parts = [MarginGradient(m) for m in members] if members else None
        self.binary = getattr(classifier, "output", None) == "logit"
        layers = _plain_layers(classifier)
        self.steps: list[tuple] | None = None
        if layers is not None:
            steps: list[tuple] = []
            for layer in layers:
                if isinstance(layer, nn.Linear):
                    w = layer.weight.detach()
                    steps.append(("linear", w, w.t().contiguous(), None if layer.bias is None else layer.bias.detach()))
                elif isinstance(layer, Affine):
                    steps.append(("affine", layer.scale, layer.shift))
                elif isinstance(layer, nn.ReLU):
                    steps.append(("relu",))
                elif isinstance(layer, nn.LeakyReLU):
                    steps.append(("leaky", layer.negative_slope))
                elif isinstance(layer, nn.Tanh):
                    steps.append(("tanh",))
                elif isinstance(layer, nn.Sigmoid):
                    steps.append(("sigmoid",))
                elif isinstance(layer, nn.ELU):
                    steps.append(("elu", layer.alpha))
            self.steps = steps
            first = next(st for st in steps if st[0] == "linear")
            self._dtype, self._device = first[1].dtype, first[1].device

    def __call__(self, y: Tensor, target: Tensor, sign: Tensor | None = None,
                 grad: bool = True) -> tuple[Tensor, Tensor | None]:
        """(B,) margins and, if ``grad``, their (B, D) gradients; ``sign`` = 2·target − 1 (binary logit)."""
        if self.parts is not None:  # a committee: min over members, the worst member's gradient
            found = [part(y, target, sign, grad) for part in self.parts]
            margins = torch.stack([m for m, _ in found])
            worst = margins.argmin(0)
            margin = margins.gather(0, worst[None])[0]
            if not grad:
                return margin, None
            grads = torch.stack([g for _, g in found])
            return margin, grads[worst, torch.arange(y.shape[0], device=y.device)]
        steps = self.steps
        if steps is None or y.dtype != self._dtype or y.device != self._device:
            return self._autograd(y, target, grad)
        saved = []
        a = y
        for st in steps:
            kind = st[0]
            if kind == "linear":
                a = a @ st[2] if st[3] is None else torch.addmm(st[3], a, st[2])
            elif kind == "relu":
                a = torch.relu(a)
            elif kind == "affine":
                a = torch.addcmul(st[2], a, st[1])
            elif kind == "tanh":
                a = torch.tanh(a)
            elif kind == "sigmoid":
                a = torch.sigmoid(a)
            elif kind == "leaky":
                saved.append(a)
                a = F.leaky_relu(a, st[1])
            elif kind == "elu":
                saved.append(a)
                a = F.elu(a, st[1])
            saved.append(a)
        if self.binary:
            z = a.view(-1)
            margin = z * (sign if sign is not None else 2.0 * target.to(z.dtype) - 1.0)
            if not grad:
                return margin, None
            v = (sign if sign is not None else 2.0 * target.to(z.dtype) - 1.0)[:, None]
        else:
            z_t = a.gather(1, target[:, None])
            others = a.scatter(1, target[:, None], float("-inf"))
            best = others.amax(1, keepdim=True)
            margin = (z_t - best)[:, 0]
            if not grad:
                return margin, None
            v = torch.zeros_like(a).scatter_(1, target[:, None], 1.0)
            v = v.scatter_(1, others.argmax(1, keepdim=True), -1.0)
        for st in reversed(steps):
            out = saved.pop()
            kind = st[0]
            if kind == "linear":
                v = v @ st[1]
            elif kind == "relu":
                v = torch.ops.aten.threshold_backward(v, out, 0)
            elif kind == "affine":
                v = v * st[1]
            elif kind == "tanh":
                v = v * (1.0 - out * out)
            elif kind == "sigmoid":
                v = v * (out * (1.0 - out))
            elif kind == "leaky":
                v = torch.where(saved.pop() > 0, v, v * st[1])
            elif kind == "elu":
                v = torch.where(saved.pop() > 0, v, v * (out + st[1]))
        return margin, v

    def _margin(self, y: Tensor, target: Tensor) -> Tensor:
        committee = getattr(self.classifier, "target_margin", None)
        return committee(y, target) if committee is not None else logit_margin(self.classifier.logits(y), target)

    def _autograd(self, y: Tensor, target: Tensor, grad: bool) -> tuple[Tensor, Tensor | None]:
        if not grad:
            return self._margin(y, target), None
        with torch.enable_grad():
            y = y.detach().requires_grad_(True)
            margin = self._margin(y, target)
            (g,) = torch.autograd.grad(margin.sum(), y)
        return margin.detach(), g


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
    r"""h and prox for a batch of rows; per-iteration row subsets are gathered once and cached.

    ``smooth`` is h as a differentiable torch function (for autograd); ``value_and_grad`` and
    ``value`` are the solver's fast path: h and :math:`\nabla h` in closed form,

    .. math::
        \nabla h_b(y) = -c_b [\kappa - m_{t_b}(y) > 0]\,\nabla m_{t_b}(y) + 2 W \odot (y - x_b)
                         - \tau \nabla \log \hat q_{t_b}(y),

    with :class:`MarginGradient` and the densities' own ``value_and_grad`` (no autograd, no
    per-call input checks: the density is prepared once for the batch).
    """

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
        metric: Tensor | None = None,
        pinned_simplex: bool = False,
        consequences: Any | None = None,
    ):
        """``consequences``: the schema's structural model (:class:`recourse.consequences.Consequences`):
        y are then the interventions and the model and the density see its counterfactual."""
        self.classifier = classifier
        self.consequences = consequences if consequences is not None and consequences.active else None
        self.metric = metric
        self.data = data
        self.weights = weights
        self.groups = groups
        self.n_groups = n_groups
        self.density = density if density_weight > 0 else None
        self.density_weight = density_weight
        self.margin = margin
        self.simplex = simplex
        self._margin = MarginGradient(classifier)
        budgets = data.max_changes.reshape(-1)
        self._budget: int | Tensor = budgets
        if budgets.numel() and bool((budgets == budgets[0]).all()):
            self._budget = int(budgets[0])  # one budget for all rows: top-m without per-row masks
        prepare = getattr(self.density, "prepare", None)
        self._prepared = prepare(data.x, data.target) if callable(prepare) else None
        self._sign = 2.0 * data.target.to(data.x.dtype) - 1.0
        self._all: Tensor | None = None
        self._cache: tuple[Tensor, tuple] | None = None
        # the feasible set's projection, its index tensors and (D, G) gain matrix prepared once
        self._projection = L0BoxProjection(groups, n_groups, metric=metric, simplex=simplex,
                                           pinned_simplex=pinned_simplex)

    def rows(self, rows: Tensor) -> RowData:
        return self._rows(rows)[0]

    def _rows(self, rows: Tensor) -> tuple:
        """(RowData, prepared density, target signs) of the rows ``rows``, cached per ``rows`` tensor."""
        if self._cache is None or self._cache[0] is not rows:
            n = self.data.x.shape[0]
            if rows.shape[0] == n and (self._all is rows or torch.equal(rows, torch.arange(n, device=rows.device))):
                self._all = rows  # the full batch, in order: no gather
                part = (self.data, self._prepared, self._sign)
            else:
                part = (self.data.take(rows), None if self._prepared is None else self._prepared.take(rows),
                        self._sign.index_select(0, rows))
            self._cache = (rows, part)
        return self._cache[1]

    def smooth(self, y: Tensor, rows: Tensor) -> Tensor:
        d = self.rows(rows)
        seen = self._seen(y, d)[0]
        committee = getattr(self.classifier, "target_margin", None)
        value = d.loss_weight * (torch.relu(self.margin - committee(seen, d.target)) if committee is not None
                                 else hinge(self.classifier.logits(seen), d.target, self.margin))
        value = value + ((y - d.x) ** 2 * self.weights).sum(1)
        if self.density is not None:
            value = value - self.density_weight * self.density.log_prob(seen, d.x, d.target)
        return value

    def _seen(self, y: Tensor, d: RowData) -> tuple[Tensor, Tensor | None]:
        """The counterfactual the model sees for interventions y, and the mask :meth:`Consequences.pullback` needs."""
        if self.consequences is None:
            return y, None
        return self.consequences.forward(y, d.x)

    def value_and_grad(self, y: Tensor, rows: Tensor, grad: bool = True) -> tuple[Tensor, Tensor | None]:
        """h (B,) and, if ``grad``, :math:`\nabla h` (B, D) without autograd (see the class docstring)."""
        d, prepared, sign = self._rows(rows)
        seen, inside = self._seen(y, d)
        margin, dm = self._margin(seen, d.target, sign, grad)
        slack = self.margin - margin
        diff = y - d.x
        wdiff = diff * self.weights
        value = torch.addcmul((diff * wdiff).sum(1), d.loss_weight, slack.clamp_min(0.0))
        dlp = None
        if self.density is not None:
            if prepared is not None:
                lp, dlp = prepared.value_and_grad(seen, grad)
            else:
                lp, dlp = _autograd_density(self.density, seen, d, grad)
            value = value.sub_(lp, alpha=self.density_weight)
        if not grad:
            return value, None
        active = d.loss_weight.masked_fill(slack <= 0, 0.0)
        if inside is not None:  # back from the counterfactual to the interventions
            dm = self.consequences.pullback(dm, inside)
            dlp = None if dlp is None else self.consequences.pullback(dlp, inside)
        gradient = wdiff.mul_(2.0).addcmul_(active[:, None], dm, value=-1.0)
        if dlp is not None:
            gradient = gradient.sub_(dlp, alpha=self.density_weight)
        return value, gradient

    def value(self, y: Tensor, rows: Tensor) -> Tensor:
        """h (B,) without gradients."""
        return self.value_and_grad(y, rows, grad=False)[0]

    def prox(self, v: Tensor, step: Tensor, rows: Tensor) -> Tensor:
        r"""Projection onto the feasible set (Euclidean, or in the W-norm when ``metric`` is W).

        :meth:`recourse.core.projections.L0BoxProjection.project_point`: per group, the box (the
        unit simplex for a mutable categorical's one-hot columns); then the m groups with the
        largest gain :math:`\sum_{i\in g} M_i\,z_i(2w_i - z_i)` are kept (boxes and simplices,
        W being constant within a one-hot group, project the same in both norms).
        """
        d = self.rows(rows)
        m = self._budget if isinstance(self._budget, int) else d.max_changes
        return self._projection.project_point(v, d.x, d.lower, d.upper, m)


def _autograd_density(density: Any, y: Tensor, d: RowData, grad: bool) -> tuple[Tensor, Tensor | None]:
    """A density without the fast path: log q̂ and its gradient by autograd."""
    if not grad:
        return density.log_prob(y, d.x, d.target), None
    with torch.enable_grad():
        y = y.detach().requires_grad_(True)
        lp = density.log_prob(y, d.x, d.target)
        (g,) = torch.autograd.grad(lp.sum(), y)
    return lp.detach(), g
