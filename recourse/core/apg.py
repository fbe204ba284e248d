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



def record_finished(rows: Tensor, finish: Tensor, done: Tensor, iteration: int, x: Tensor,
                    out_x: Tensor, out_iter: Tensor, out_stop: Tensor) -> Tensor:
    """Write the finished rows' iterate, iteration count and stop flag into the outputs (by their
    global indices ``rows``); return the mask of the rows that stay in the batch."""
    idx = rows[finish]
    out_x[idx] = x[finish]
    out_iter[idx] = iteration
    out_stop[idx] = done[finish]
    return ~finish

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
    evaluate = grad_fn if grad_fn is not None else (lambda y, r: value_and_grad(h, y, r))
    inverse = None if metric is None else 1.0 / metric

    with torch.no_grad():
        rows = torch.arange(batch, device=device)
        x = out_x.clone()
        x_prev = x
        z_prev = x
        alpha = torch.as_tensor(step, device=device, dtype=dtype).expand(batch).clone()[:, None]  # (b, 1)
        t = torch.ones(batch, 1, device=device, dtype=dtype)
        t_prev = t
        fx = h(x, rows).detach()
        if g is not None:
            fx = fx + g(x, rows)

        for k in range(max_iter):
            u = torch.addcmul(x, t_prev / t, z_prev - x).addcmul_((t_prev - 1.0) / t, x - x_prev)
            fu, gu = evaluate(u, rows)
            z = prox(torch.addcmul(u, alpha, gu if inverse is None else gu * inverse, value=-1.0), alpha, rows)
            fz = h(z, rows)
            d = z - u
            md = d if metric is None else d * metric
            model = (d * torch.addcdiv(gu, md, alpha, value=0.5)).sum(1).add_(fu)
            sufficient = fz <= model.add_(fu.abs().clamp_min_(1.0), alpha=1e-7)
            if g is not None:
                fz = fz + g(z, rows)
            accept = (fz <= fx) if monotone else torch.ones_like(sufficient)
            acc = accept[:, None]
            x_prev = x
            x = torch.where(acc, z, x)
            fx = torch.where(accept, fz, fx)
            suff = sufficient[:, None]
            alpha = torch.where(suff, (alpha * grow).clamp_(max=max_step), alpha * 0.5)
            restart = (suff & acc).logical_not_()
            t_next = (t * t).mul_(4.0).add_(1.0).sqrt_().add_(1.0).mul_(0.5)
            t_prev = t.masked_fill(restart, 1.0)
            t = t_next.masked_fill_(restart, 1.0)
            z_prev = torch.where(restart, x, z)
            x_prev = torch.where(restart, x, x_prev)

            last = k == max_iter - 1 or (deadline is not None and time.perf_counter() >= deadline)
            if not last and (k + 1) % check_every and stop is None:
                continue
            small = d.abs().amax(1) <= tol
            done = sufficient & small
            if stop is not None:
                done = done | stop(x, rows)
            if last:
                done = torch.ones_like(done)
            elif not bool(done.any()):
                continue
            idx = rows[done]
            out_x[idx] = x[done]
            out_value[idx] = fx[done]
            out_iter[idx] = k + 1
            out_conv[idx] = (sufficient & small)[done]
            keep = ~done
            if last or not bool(keep.any()):
                break
            rows, x, x_prev, z_prev = rows[keep], x[keep], x_prev[keep], z_prev[keep]
            alpha, t, t_prev, fx = alpha[keep], t[keep], t_prev[keep], fx[keep]
    return APGResult(out_x, out_value, out_iter, out_conv)
