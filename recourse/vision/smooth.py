r"""The softplus surrogate of a ReLU network (Dombrowski et al., 2019).

A ReLU network :math:`g` is piecewise linear, so its gradient explanations are piecewise
constant in :math:`x` and their derivative (the second derivative of :math:`g`) is zero almost
everywhere: an attack on an explanation gets no signal.  Replacing every ReLU by

.. math::  \operatorname{softplus}_\beta(t) = \tfrac1\beta \log(1 + e^{\beta t}),
   \qquad \operatorname{softplus}_\beta(t) - \operatorname{relu}(t) \in (0, \tfrac{\log 2}{\beta}],

keeps the weights and gives a smooth network :math:`g_\beta \to g` (uniformly, with gradients
converging wherever no pre-activation is exactly 0) as :math:`\beta \to \infty`.  The attack
differentiates the explanations of :math:`g_\beta` for a large β; the explanation that is
reported is always the real network's.  A *small* β is the defence the same paper proposes
(β-smoothed explanations: the explanation of :math:`g_\beta` itself, close to SmoothGrad).
"""
from __future__ import annotations

import copy

from torch import nn


def softplus_copy(model: nn.Module, beta: float) -> nn.Module:
    """A deep copy of ``model`` with every ``nn.ReLU`` replaced by ``nn.Softplus(beta)``.

    Weights (and their ``requires_grad`` flags, device and memory format) are copied unchanged;
    the copy is in eval mode.  Only ``nn.ReLU`` modules are swapped: a network that calls
    ``F.relu`` in ``forward`` is not smoothed (the bundles' CNNs are ``nn.Sequential``).
    """
    if not beta > 0:
        raise ValueError(f"`beta` must be positive, got {beta}")
    smooth = copy.deepcopy(model)
    _swap(smooth, float(beta))
    return smooth.eval()


def _swap(module: nn.Module, beta: float) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.ReLU):
            setattr(module, name, nn.Softplus(beta=beta, threshold=20.0))
        else:
            _swap(child, beta)


def count_relus(model: nn.Module) -> int:
    """Number of ``nn.ReLU`` modules left in ``model`` (0 after :func:`softplus_copy`)."""
    return sum(isinstance(m, nn.ReLU) for m in model.modules())
