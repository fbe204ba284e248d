r"""Frank–Wolfe (conditional gradient) over an ℓ1 ball, with the ℓ1-q linear oracle; batched.

For each row b, minimise :math:`h_b(w)` over :math:`\{\|w\|_1 \le \varepsilon_b\}` by

.. math::
    s_k = \arg\min_{\|s\|_1 \le \varepsilon} \langle \nabla h(w_k), s\rangle,\qquad
    w_{k+1} = (1 - \gamma_k) w_k + \gamma_k s_k,\qquad \gamma_k = \frac{c}{c + k}.

The exact ℓ1 oracle moves one coordinate (:math:`-\varepsilon\,\operatorname{sign}(g_i)e_i`,
:math:`i = \arg\max|g_i|`); the **ℓ1-q oracle** (Roberts et al., seed 003) spreads the budget
over every coordinate whose :math:`|g_i|` reaches the q-quantile of :math:`|g|` (the top
:math:`1-q` fraction): :math:`s = -\varepsilon\,\operatorname{sign}(g)\odot 1_Q/|Q|`, still a
point of the ℓ1 ball, so iterates stay feasible and the perturbation's sparsity is set by q.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from .apg import Smooth, record_finished, value_and_grad

LMO = Callable[[Tensor, Tensor], Tensor]
"""lmo(grad (b, D), rows) -> (b, D) minimiser of <grad, s> over the feasible set of those rows."""


@dataclass
class FWResult:
    """Final iterates (B, D), iterations used (B,), and whether ``stop`` fired (B,)."""

    x: Tensor
    iterations: Tensor
    stopped: Tensor


def lmo_l1_topq(grad: Tensor, radius: Tensor | float, q: float) -> Tensor:
    r"""ℓ1-q oracle: :math:`-r\,\operatorname{sign}(g)\odot 1[|g| \ge Q_q(|g|)] / \#\{\cdot\}` per row.

    ``q`` in [0, 1): 0 spreads over every coordinate, q → 1 is the exact ℓ1 vertex (at least
    one coordinate is always kept).  ``radius``: float or (B,) tensor.
    """
    if not 0.0 <= q < 1.0:
        raise ValueError(f"q must be in [0, 1), got {q!r}")
    a = grad.abs()
    d = a.shape[1]
    k = max(1, int(round((1.0 - q) * d)))
    thresh = torch.topk(a, k, dim=1).values[:, -1:]
    mask = (a >= thresh) & (a > 0)
    count = mask.sum(1, keepdim=True).clamp_min(1).to(grad.dtype)
    r = torch.as_tensor(radius, dtype=grad.dtype, device=grad.device).reshape(-1, 1)
    return -r * torch.sign(grad) * mask.to(grad.dtype) / count


def frank_wolfe(
    h: Smooth,
    lmo: LMO,
    x0: Tensor,
    *,
    max_iter: int = 45,
    c: float = 1.0,
    stop: Callable[[Tensor, Tensor], Tensor] | None = None,
) -> FWResult:
    """Run Frank–Wolfe with steps :math:`\\gamma_k = c/(c+k)` on every row of ``x0`` (B, D).

    ``x0`` must be feasible.  With ``stop``, rows leave the batch as soon as it returns True.
    """
    if c <= 0:
        raise ValueError(f"c must be > 0, got {c!r}")
    batch = x0.shape[0]
    device = x0.device
    out_x = x0.detach().clone()
    out_iter = torch.zeros(batch, device=device, dtype=torch.long)
    out_stop = torch.zeros(batch, device=device, dtype=torch.bool)
    rows = torch.arange(batch, device=device)
    x = out_x.clone()
    for k in range(max_iter):
        if rows.numel() == 0:
            break
        _, grad = value_and_grad(h, x, rows)
        gamma = c / (c + k)
        with torch.no_grad():
            x = (1.0 - gamma) * x + gamma * lmo(grad, rows)
            done = stop(x, rows) if stop is not None else torch.zeros_like(rows, dtype=torch.bool)
        finish = done | (k == max_iter - 1)
        if bool(finish.any()):
            keep = record_finished(rows, finish, done, k + 1, x, out_x, out_iter, out_stop)
            rows, x = rows[keep], x[keep]
    return FWResult(out_x, out_iter, out_stop)
