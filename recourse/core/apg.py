r"""Accelerated proximal gradient (monotone FISTA with restart), batched over rows.

Minimises, independently for each row b of a batch,

.. math::  F_b(y) = h_b(y) + g_b(y),

where :math:`h_b` is smooth (its gradient comes from autograd) and :math:`g_b` is handled by a
proximal operator (here usually the indicator of a non-convex set, so prox = projection).

Iteration (Beck & Teboulle's MFISTA with an adaptive step, per row):

.. math::
    z_k &= \operatorname{prox}_{\alpha_k g}\big(u_k - \alpha_k \nabla h(u_k)\big), \\
    x_{k+1} &= z_k \text{ if } F(z_k) \le F(x_k) \text{ else } x_k \quad\text{(monotone safeguard)}, \\
    t_{k+1} &= \tfrac12\big(1 + \sqrt{1 + 4 t_k^2}\big), \\
    u_{k+1} &= x_{k+1} + \tfrac{t_k}{t_{k+1}}(z_k - x_{k+1}) + \tfrac{t_k - 1}{t_{k+1}}(x_{k+1} - x_k).

Adaptive step: if the sufficient-decrease test
:math:`h(z) \le h(u) + \langle\nabla h(u), z-u\rangle + \|z-u\|^2/(2\alpha)` fails for a row,
its step halves and its momentum restarts (t = 1); otherwise the step grows by ``grow``
(a running Lipschitz estimate).  A row stops once :math:`\|z_k - u_k\|_\infty \le` ``tol``
(its prox-gradient map vanishes); stopped rows leave the batch, so later iterations cost less.

Optional (all off by default, which is the behaviour above): ``g`` gives the value of a
non-indicator penalty so that the monotone test compares :math:`F = h + g` (e.g. the
forward–backward attack with :math:`g = \lambda\|w\|_p^p`); ``monotone=False`` accepts every
prox step (plain FISTA with restart on a failed sufficient-decrease test); ``stop(x, rows)``
returns a (b,) mask of rows to finish now (e.g. an image that already fools the classifier).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

Smooth = Callable[[Tensor, Tensor], Tensor]
"""h(y, rows) -> (b,) values for the rows ``rows`` (global row indices) of the batch."""
Prox = Callable[[Tensor, Tensor, Tensor], Tensor]
"""prox(v, step (b, 1), rows) -> (b, D) proximal point of step·g at v."""
ValueAndGrad = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]
"""grad_fn(y, rows) -> (h (b,), ∇h (b, D)) without autograd (optional fast path)."""


@dataclass
class APGResult:
    """Solutions (B, D), final objective values (B,), iterations used and convergence flags."""

    x: Tensor
    value: Tensor
    iterations: Tensor
    converged: Tensor


def value_and_grad(h: Smooth, y: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
    """h at y (detached) and its gradient, one backward pass for the whole batch."""
    with torch.enable_grad():
        y = y.detach().requires_grad_(True)
        value = h(y, rows)
        (grad,) = torch.autograd.grad(value.sum(), y)
    return value.detach(), grad


def apg(
    h: Smooth,
    prox: Prox,
    x0: Tensor,
    *,
    step: float | Tensor = 1.0,
    max_iter: int = 200,
    tol: float = 1e-5,
    grow: float = 1.1,
    max_step: float = 1e3,
    g: Smooth | None = None,
    stop: Callable[[Tensor, Tensor], Tensor] | None = None,
    monotone: bool = True,
    deadline: float | None = None,
    grad_fn: ValueAndGrad | None = None,
    check_every: int | None = None,
    metric: Tensor | None = None,
) -> APGResult:
    r"""Run monotone accelerated proximal gradient on every row of ``x0`` (B, D).

    ``x0`` should be feasible (e.g. the original points); ``step`` is the initial step size,
    a float or a (B,) tensor.  Works on any device; all state stays on ``x0``'s device.

    ``metric`` (M, a positive (D,) tensor, shared by all rows) makes it a variable-metric
    method: the gradient step is :math:`u - \alpha M^{-1}\nabla h(u)`, the sufficient-decrease
    test uses :math:`\|z-u\|_M^2`, and ``prox`` must return the proximal point in the
    M-norm, :math:`\arg\min_y \|y - v\|_M^2/(2\alpha) + g(y)` (a diagonal preconditioner;
    M = identity is the plain method).

    ``grad_fn(y, rows) -> (h, ∇h)`` replaces autograd when given (``h`` is then only called
    without gradients, for the values at the prox points).  ``deadline`` (a
    ``time.perf_counter()`` value) ends every row at the first iteration past it.  Finished rows
    leave the batch when the stopping test is read back from the device: every iteration on
    the CPU, every ``check_every`` iterations (default 4) elsewhere, to save host syncs.
    """
    batch = x0.shape[0]
    device, dtype = x0.device, x0.dtype
    if check_every is None:
        check_every = 1 if device.type == "cpu" else 4
    out_x = x0.detach().clone()
    out_value = torch.zeros(batch, device=device, dtype=dtype)
    out_iter = torch.zeros(batch, device=device, dtype=torch.long)
    out_conv = torch.zeros(batch, device=device, dtype=torch.bool)
    if batch == 0:
        return APGResult(out_x, out_value, out_iter, out_conv)
