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
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

Smooth = Callable[[Tensor, Tensor], Tensor]
"""h(y, rows) -> (b,) values for the rows ``rows`` (global row indices) of the batch."""
Prox = Callable[[Tensor, Tensor, Tensor], Tensor]
"""prox(v, step (b, 1), rows) -> (b, D) proximal point of step·g at v."""


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
) -> APGResult:
    """Run monotone accelerated proximal gradient on every row of ``x0`` (B, D).

    ``x0`` should be feasible (e.g. the original points); ``step`` is the initial step size,
    a float or a (B,) tensor.  Works on any device; all state stays on ``x0``'s device.
    """
    batch = x0.shape[0]
    device, dtype = x0.device, x0.dtype
    out_x = x0.detach().clone()
    out_value = torch.zeros(batch, device=device, dtype=dtype)
    out_iter = torch.zeros(batch, device=device, dtype=torch.long)
    out_conv = torch.zeros(batch, device=device, dtype=torch.bool)

    rows = torch.arange(batch, device=device)
    x = out_x.clone()
    x_prev = x.clone()
    z_prev = x.clone()
    alpha = torch.as_tensor(step, device=device, dtype=dtype).expand(batch).clone()
    t = torch.ones(batch, device=device, dtype=dtype)
    t_prev = torch.ones(batch, device=device, dtype=dtype)
    with torch.no_grad():
        fx = h(x, rows).detach()

    for k in range(max_iter):
        ratio_z = (t_prev / t)[:, None]
        ratio_m = ((t_prev - 1.0) / t)[:, None]
        u = x + ratio_z * (z_prev - x) + ratio_m * (x - x_prev)
        fu, gu = value_and_grad(h, u, rows)
        a = alpha[:, None]
        z = prox(u - a * gu, a, rows)
        with torch.no_grad():
            fz = h(z, rows)
        d = z - u
        model = fu + (gu * d).sum(1) + (d * d).sum(1) / (2.0 * alpha)
        sufficient = fz <= model + 1e-7 * fu.abs().clamp_min(1.0)
        accept = fz <= fx
        x_prev = x
        x = torch.where(accept[:, None], z, x)
        fx = torch.where(accept, fz, fx)
        z_prev = z
        alpha = torch.where(sufficient, (alpha * grow).clamp(max=max_step), alpha * 0.5)
        restart = ~sufficient | ~accept
        t_next = 0.5 * (1.0 + torch.sqrt(1.0 + 4.0 * t * t))
        t_prev = torch.where(restart, torch.ones_like(t), t)
        t = torch.where(restart, torch.ones_like(t), t_next)
        z_prev = torch.where(restart[:, None], x, z_prev)
        x_prev = torch.where(restart[:, None], x, x_prev)

        done = sufficient & (d.abs().amax(1) <= tol)
        if k == max_iter - 1:
            done = torch.ones_like(done)
        if bool(done.any()):
            idx = rows[done]
            out_x[idx] = x[done]
            out_value[idx] = fx[done]
            out_iter[idx] = k + 1
            out_conv[idx] = sufficient[done] & (d[done].abs().amax(1) <= tol)
            keep = ~done
            if not bool(keep.any()):
                break
            rows, x, x_prev, z_prev = rows[keep], x[keep], x_prev[keep], z_prev[keep]
            alpha, t, t_prev, fx = alpha[keep], t[keep], t_prev[keep], fx[keep]
    return APGResult(out_x, out_value, out_iter, out_conv)
