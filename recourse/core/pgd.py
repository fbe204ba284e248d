r"""Projected (normalised) gradient descent, batched over rows, with per-row stopping.

Minimises :math:`h_b(w)` over a convex set :math:`\mathcal C_b` for each row b:

.. math::  w_{k+1} = \Pi_{\mathcal C}\big(w_k - \alpha\, d_k\big),\qquad
   d_k = \nabla h / \|\nabla h\|_2 \ (\ell_2) \quad\text{or}\quad \operatorname{sign}(\nabla h)\ (\ell_\infty),

the steepest-descent direction of the norm that defines the ball (Madry et al. 2018).  The
projection is supplied by the caller (e.g. onto an :math:`\ell_2` or :math:`\ell_\infty` ball
intersected with a pixel box).  A row leaves the batch once ``stop(w, rows)`` holds for it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from .apg import Smooth, record_finished, value_and_grad

Project = Callable[[Tensor, Tensor], Tensor]
"""project(w (b, D), rows) -> (b, D) point of the feasible set of rows ``rows``."""


@dataclass
class PGDResult:
    """Final iterates (B, D), iterations used (B,), and whether ``stop`` fired (B,)."""

    x: Tensor
    iterations: Tensor
    stopped: Tensor


def steepest_direction(grad: Tensor, norm: str) -> Tensor:
    r"""Unit steepest-ascent direction of ``grad`` (B, D) for the dual of ``norm`` ('l2' or 'linf')."""
    if norm == "l2":
        return grad / torch.linalg.vector_norm(grad, dim=1, keepdim=True).clamp_min(1e-12)
    if norm == "linf":
        return torch.sign(grad)
    raise ValueError(f"norm must be 'l2' or 'linf', got {norm!r}")


def pgd(
    h: Smooth,
    project: Project,
    x0: Tensor,
    *,
    step: float | Tensor,
    max_iter: int = 50,
    norm: str = "l2",
    stop: Callable[[Tensor, Tensor], Tensor] | None = None,
) -> PGDResult:
    """Run projected normalised gradient descent on every row of ``x0`` (B, D).

    ``step``: float or (B,) tensor.  With ``stop``, rows are checked after every step and leave
    the batch when it returns True (their current iterate is kept).  Device of ``x0``.
    """
    batch = x0.shape[0]
    device, dtype = x0.device, x0.dtype
    out_x = x0.detach().clone()
    out_iter = torch.zeros(batch, device=device, dtype=torch.long)
    out_stop = torch.zeros(batch, device=device, dtype=torch.bool)
    rows = torch.arange(batch, device=device)
    x = out_x.clone()
    alpha = torch.as_tensor(step, device=device, dtype=dtype).expand(batch).clone()
    if stop is not None:
        with torch.no_grad():
            hit = stop(x, rows)
        out_stop |= hit
        keep = ~hit
        rows, x, alpha = rows[keep], x[keep], alpha[keep]
    for k in range(max_iter):
        if rows.numel() == 0:
            break
        _, grad = value_and_grad(h, x, rows)
        with torch.no_grad():
            x = project(x - alpha[:, None] * steepest_direction(grad, norm), rows)
            done = stop(x, rows) if stop is not None else torch.zeros_like(rows, dtype=torch.bool)
        finish = done | (k == max_iter - 1)
        if bool(finish.any()):
            keep = record_finished(rows, finish, done, k + 1, x, out_x, out_iter, out_stop)
            rows, x, alpha = rows[keep], x[keep], alpha[keep]
    return PGDResult(out_x, out_iter, out_stop)
