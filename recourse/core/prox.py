r"""Proximal operators of sparsity penalties and projections onto norm balls.

pyproximal-like: one small class per penalty, with the maths in its docstring, the penalty
value per row in ``__call__(x) -> Tensor (B,)`` and the proximal operator in
``prox(v, step) -> Tensor``,

.. math::
    \operatorname{prox}_{\tau f}(v) = \arg\min_w \tfrac12 \|w - v\|^2 + \tau f(w),

plus plain functions for the underlying maps.  Everything is torch only, batched over rows
(dim 0), device- and dtype-agnostic (half precision is computed in float32 and cast back),
with no per-row Python loops and no autograd requirements.  ``step`` and ``lam`` may be
Python floats or tensors broadcastable to the input (e.g. ``(B, 1)`` for per-row steps).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .projections import group_sums

__all__ = [
    "lp_threshold",
    "prox_lp",
    "prox_l0",
    "prox_l1",
    "prox_group_l0",
    "prox_group_l2",
    "LpPenalty",
    "L0Penalty",
    "L1Penalty",
    "GroupL0Penalty",
    "GroupL2Penalty",
    "project_l2_ball",
    "project_linf_ball",
    "project_l1_ball",
    "project_simplex",
    "prox_lp_box",
]

_TWO_THIRDS = 2.0 / 3.0


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _canonical_p(p: float) -> float:
    """Map ``p`` to one of 0, 1/2, 2/3, 1 (2/3 up to a tolerance) or raise ``ValueError``."""
    try:
        pf = float(p)
    except (TypeError, ValueError):
        raise ValueError(f"p must be one of 0, 1/2, 2/3, 1; got {p!r}") from None
    for cand in (0.0, 0.5, _TWO_THIRDS, 1.0):
        if abs(pf - cand) <= 1e-6:
            return cand
    raise ValueError(f"p must be one of 0, 1/2, 2/3, 1; got {p!r}")


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    if dtype in (torch.float16, torch.bfloat16):
        return torch.float32
    if not dtype.is_floating_point:
        return torch.get_default_dtype()
    return dtype


def _check_nonneg(x, name: str) -> None:
    if not isinstance(x, Tensor) and float(x) < 0:
        raise ValueError(f"{name} must be >= 0, got {x!r}")


def _as_param(x, v: Tensor, dtype: torch.dtype, shape, name: str) -> Tensor:
    """``x`` (float or tensor) as a tensor on ``v``'s device broadcast to ``shape``."""
    _check_nonneg(x, name)
    t = torch.as_tensor(x, dtype=dtype, device=v.device)
    try:
        return torch.broadcast_to(t, shape)
    except RuntimeError as err:
        raise ValueError(
            f"{name} of shape {tuple(t.shape)} is not broadcastable to {tuple(shape)}"
        ) from err


def _row_param(x, v: Tensor, dtype: torch.dtype, name: str) -> Tensor:
    """A float, 0-d or (B,) tensor as a (B, 1, ..., 1) tensor (rows of ``v``)."""
    _check_nonneg(x, name)
    t = torch.as_tensor(x, dtype=dtype, device=v.device)
    if t.dim() == 0:
        return t.reshape([1] * v.dim())
    if t.dim() == 1 and t.shape[0] == v.shape[0]:
        return t.reshape([v.shape[0]] + [1] * (v.dim() - 1))
    raise ValueError(f"{name} must be a float, a 0-d or a (B,) tensor; got shape {tuple(t.shape)}")


def _sum_rows(x: Tensor) -> Tensor:
    """Sum over all non-batch dims: (B, ...) -> (B,)."""
    return x.reshape(x.shape[0], -1).sum(dim=1)


def _resolve_groups(v: Tensor, groups: Tensor | None, n_groups: int | None):
    if v.dim() != 2:
        raise ValueError(f"group operators expect a (B, D) tensor, got shape {tuple(v.shape)}")
    if groups is None:
        return None, v.shape[1]
    groups = groups.to(device=v.device, dtype=torch.long)
    if n_groups is None:
        n_groups = int(groups.max().item()) + 1 if groups.numel() else 0
    return groups, n_groups


def _group_sq_norms(v: Tensor, groups: Tensor | None, n_groups: int) -> Tensor:
    sq = v * v
    return sq if groups is None else group_sums(sq, groups, n_groups)


def _expand_groups(x: Tensor, groups: Tensor | None) -> Tensor:
    """(B, n_groups) -> (B, D) by column group id."""
    return x if groups is None else x[:, groups]


# --------------------------------------------------------------------------------------------
# elementwise l_p thresholding
# --------------------------------------------------------------------------------------------
def lp_threshold(lam, p: float):
    r"""Threshold of :math:`\operatorname{prox}_{\lambda|\cdot|^p}`: the output is 0 iff :math:`|v| \le t`.

    At the threshold the nonzero stationary point :math:`w^*` ties with 0, which gives
    :math:`w^{*\,2-p} = 2\lambda(1-p)` and :math:`t = w^* + \lambda p\, w^{*\,p-1}`:

    * :math:`p=0`: :math:`t = \sqrt{2\lambda}`;
    * :math:`p=\tfrac12`: :math:`t = \tfrac32 \lambda^{2/3}`
      (Xu et al.'s :math:`\tfrac{\sqrt[3]{54}}{4}\mu^{2/3}` for :math:`(w-v)^2 + \mu|w|^{1/2}`,
      :math:`\mu = 2\lambda`);
    * :math:`p=\tfrac23`: :math:`t = 2\,(2\lambda/3)^{3/4}`
      (Cao et al.'s :math:`\tfrac23(3\mu^3)^{1/4}` with :math:`\mu = 2\lambda`);
    * :math:`p=1`: :math:`t = \lambda`.

    ``lam`` is a float or a tensor; the result has the same kind.
    """
    p = _canonical_p(p)
    sqrt = torch.sqrt if isinstance(lam, Tensor) else math.sqrt
    if p == 0.0:
        return sqrt(2.0 * lam)
    if p == 0.5:
        return 1.5 * lam ** (2.0 / 3.0)
    if p == _TWO_THIRDS:
        return 2.0 * (2.0 * lam / 3.0) ** 0.75
    return lam * 1.0


def prox_l1(v: Tensor, lam) -> Tensor:
    r"""Soft thresholding :math:`\operatorname{sign}(v)\max(|v| - \lambda, 0)`."""
    return prox_lp(v, lam, 1)


def prox_l0(v: Tensor, lam) -> Tensor:
    r"""Hard thresholding: :math:`v` where :math:`|v| > \sqrt{2\lambda}`, else 0."""
    return prox_lp(v, lam, 0)


def _prox_half(a: Tensor, lam: Tensor) -> Tensor:
    r"""Nonnegative part of the p = 1/2 prox for ``a = |v|`` (Xu et al. 2012, with mu = 2 lam).

    For :math:`w = s^2 > 0` stationarity reads :math:`s^3 - a s + \lambda/2 = 0`; its largest
    root (trigonometric form) gives
    :math:`w = \tfrac23 a\,(1 + \cos(\tfrac{2\pi}3 - \tfrac23\varphi))`,
    :math:`\varphi = \arccos(\tfrac{\lambda}{4}(a/3)^{-3/2})`.
    """
    active = a > lp_threshold(lam, 0.5)
    a_s = torch.where(active, a, torch.ones_like(a))
    # (lam/4) (a/3)^(-3/2), written as a power of a ratio < 0.8 so that it cannot overflow
    arg = (3.0 * (lam / 4.0).pow(2.0 / 3.0) / a_s).pow(1.5)
    phi = torch.arccos(arg.clamp(-1.0, 1.0))
    w = (2.0 / 3.0) * a_s * (1.0 + torch.cos(2.0 * math.pi / 3.0 - (2.0 / 3.0) * phi))
    w = torch.minimum(w, a_s)  # 0 < w < a; guard rounding
    return torch.where(active, w, torch.zeros_like(a))


def _prox_two_thirds(a: Tensor, lam: Tensor) -> Tensor:
    r"""Nonnegative part of the p = 2/3 prox for ``a = |v|`` (Cao, Sun & Xu 2013, mu = 2 lam).

    With :math:`c = 2\lambda/3` and :math:`w = s^3 > 0`, stationarity reads
    :math:`s^4 - a s + c = 0`.  Ferrari's resolvent cubic :math:`t^3 - c t - a^2/8 = 0` has
    one real root above the threshold, :math:`t = u + c/(3u)` with
    :math:`u = \big(a^2/16 + \sqrt{a^4/256 - c^3/27}\big)^{1/3}` (Cardano, written without
    cancellation), and with :math:`A = \sqrt{2t}` the largest quartic root is
    :math:`s = \tfrac12\big(A + \sqrt{2a/A - A^2}\big)`.  One Newton step polishes ``s``.
    """
    c = 2.0 * lam / 3.0
    active = a > lp_threshold(lam, _TWO_THIRDS)
    a_s = torch.where(active, a, torch.ones_like(a))
    c_s = torch.where(active, c, torch.zeros_like(c))
    q13 = a_s.pow(2.0 / 3.0) / 16.0 ** (1.0 / 3.0)  # (a^2/16)^(1/3)
    # r^3 = (c/3)^3 / (a^2/16)^2, i.e. r = (4 (c/3)^(3/4) / a)^(4/3) < 0.88 above the threshold
    r = (4.0 * (c_s / 3.0).pow(0.75) / a_s).pow(4.0 / 3.0).clamp(0.0, 1.0)
    u = q13 * (1.0 + torch.sqrt((1.0 - r**3).clamp_min(0.0))).pow(1.0 / 3.0)
    t = u + c_s / (3.0 * u)
    big_a = torch.sqrt(2.0 * t)
    s = 0.5 * (big_a + torch.sqrt((2.0 * (a_s / big_a) - big_a.square()).clamp_min(0.0)))
    # one Newton step on g(s) = s^3 - a + c/s (= quartic / s; g' = 3 s^2 - c/s^2 > 0 at the
    # largest root), written so that nothing exceeds O(a) and cannot overflow
    deriv = 3.0 * s.square() - c_s / s.square()
    ok = (deriv > 0) & torch.isfinite(s)
    step = (s**3 - a_s + c_s / s) / torch.where(ok, deriv, torch.ones_like(deriv))
    s = torch.where(ok, s - step, s)
    w = torch.where(torch.isinf(a), a, torch.minimum(s**3, a))  # 0 < w < a; guard rounding
    return torch.where(active, w, torch.zeros_like(a))


def prox_lp(v: Tensor, lam, p: float) -> Tensor:
    r"""Elementwise :math:`\arg\min_w \tfrac12 (w - v)^2 + \lambda |w|^p`, :math:`p \in \{0, \tfrac12, \tfrac23, 1\}`.

    * :math:`p = 1`: soft thresholding :math:`\operatorname{sign}(v)\max(|v|-\lambda, 0)`;
    * :math:`p = 0` (:math:`|w|^0 = [w \ne 0]`): hard thresholding, :math:`v` iff :math:`|v| > \sqrt{2\lambda}`;
    * :math:`p = \tfrac12`: half thresholding (Xu et al. 2012), see :func:`_prox_half`;
    * :math:`p = \tfrac23`: closed form of Cao, Sun & Xu (2013), see :func:`_prox_two_thirds`.

    For :math:`p < 1` the result is 0 iff :math:`|v| \le` :func:`lp_threshold` (at the
    threshold itself both 0 and the nonzero point are minimisers; 0 is returned).  The
    nonzero branch is the exact global minimiser, not just a stationary point.

    ``lam >= 0`` is a float or a tensor broadcastable to ``v``; ``lam = 0`` returns ``v``.
    ``p`` must be 0, 0.5, 2/3 (compared with a tolerance) or 1, else ``ValueError``.
    The output has ``v``'s shape, dtype and device.
    """
    p = _canonical_p(p)
    out_dtype = v.dtype if v.is_floating_point() else torch.get_default_dtype()
    dtype = _work_dtype(v.dtype)
    x = v.to(dtype)
    lam_t = _as_param(lam, x, dtype, x.shape, "lam")
    a = x.abs()
    if p == 1.0:
        w = torch.where(a > lam_t, torch.sign(x) * (a - lam_t), torch.zeros_like(x))
    elif p == 0.0:
        w = torch.where(a > torch.sqrt(2.0 * lam_t), x, torch.zeros_like(x))
    else:
        mag = _prox_half(a, lam_t) if p == 0.5 else _prox_two_thirds(a, lam_t)
        w = torch.where(lam_t == 0, x, torch.sign(x) * mag)
    return w.to(out_dtype)


# --------------------------------------------------------------------------------------------
# group operators
# --------------------------------------------------------------------------------------------
def prox_group_l0(
    v: Tensor, lam, groups: Tensor | None = None, n_groups: int | None = None
) -> Tensor:
    r"""Group hard thresholding, prox of :math:`\lambda \|w\|_{0,\mathcal G} = \lambda\,\#\{g : w_g \ne 0\}`.

    .. math::
        \operatorname{prox}(v)_g = v_g \text{ if } \tfrac12 \|v_g\|^2 > \lambda_g \text{ else } 0,

    since keeping a group costs :math:`\lambda_g` and dropping it costs :math:`\tfrac12\|v_g\|^2`.

    ``v`` is (B, D); ``groups`` a (D,) long tensor of group ids in ``[0, n_groups)`` (``None``:
    every column is its own group); ``lam`` a float or a tensor broadcastable to
    ``(B, n_groups)`` (e.g. (B, 1) per row, (n_groups,) per group).
    """
    groups, n_groups = _resolve_groups(v, groups, n_groups)
    dtype = _work_dtype(v.dtype)
    x = v.to(dtype)
    sq = _group_sq_norms(x, groups, n_groups)
    lam_t = _as_param(lam, x, dtype, sq.shape, "lam")
    keep = _expand_groups(0.5 * sq > lam_t, groups)
    return torch.where(keep, x, torch.zeros_like(x)).to(v.dtype)


def prox_group_l2(
    v: Tensor, lam, groups: Tensor | None = None, n_groups: int | None = None
) -> Tensor:
    r"""Block soft thresholding, prox of the group lasso :math:`\lambda \sum_g \|w_g\|_2`.

    .. math::
        \operatorname{prox}(v)_g = v_g \max\big(0, 1 - \lambda_g / \|v_g\|_2\big)

    (0 when :math:`v_g = 0`).  Arguments as in :func:`prox_group_l0`.
    """
    groups, n_groups = _resolve_groups(v, groups, n_groups)
    dtype = _work_dtype(v.dtype)
    x = v.to(dtype)
    norm = torch.sqrt(_group_sq_norms(x, groups, n_groups))
    lam_t = _as_param(lam, x, dtype, norm.shape, "lam")
    safe = torch.where(norm > 0, norm, torch.ones_like(norm))
    scale = torch.where(norm > lam_t, 1.0 - lam_t / safe, torch.zeros_like(norm))
    return (x * _expand_groups(scale, groups)).to(v.dtype)


# --------------------------------------------------------------------------------------------
# penalty classes
# --------------------------------------------------------------------------------------------
class LpPenalty:
    r"""Elementwise :math:`f(x) = \lambda \sum_i |x_i|^p`, :math:`p \in \{0, \tfrac12, \tfrac23, 1\}`.

    With :math:`|0|^0 = 0`, :math:`p = 0` counts nonzeros.  ``__call__(x)`` returns the value
    per row (B,), summed over all non-batch dims.  ``prox(v, step)`` is
    :math:`\arg\min_w \tfrac12\|w - v\|^2 + \text{step}\cdot f(w)` =
    ``prox_lp(v, step * lam, p)``.  ``lam`` and ``step`` are floats or tensors broadcastable
    to the input (use (B, 1) for per-row values).
    """

    def __init__(self, lam=1.0, p: float = 1.0):
        _check_nonneg(lam, "lam")
        self.lam = lam
        self.p = _canonical_p(p)

    def __call__(self, x: Tensor) -> Tensor:
        a = x.abs()
        term = (a != 0).to(a.dtype) if self.p == 0.0 else a.pow(self.p)
        return _sum_rows(self.lam * term)

    def prox(self, v: Tensor, step=1.0) -> Tensor:
        _check_nonneg(step, "step")
        return prox_lp(v, step * self.lam, self.p)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(lam={self.lam!r}, p={self.p:g})"


class L0Penalty(LpPenalty):
    r""":math:`f(x) = \lambda \|x\|_0`; prox is hard thresholding at :math:`\sqrt{2\,\text{step}\,\lambda}`."""

    def __init__(self, lam=1.0):
        super().__init__(lam, 0)

    def __repr__(self) -> str:
        return f"L0Penalty(lam={self.lam!r})"


class L1Penalty(LpPenalty):
    r""":math:`f(x) = \lambda \|x\|_1`; prox is soft thresholding at :math:`\text{step}\,\lambda`."""

    def __init__(self, lam=1.0):
        super().__init__(lam, 1)

    def __repr__(self) -> str:
        return f"L1Penalty(lam={self.lam!r})"


class GroupL0Penalty:
    r""":math:`f(x) = \sum_g \lambda_g [x_g \ne 0]` on (B, D) inputs, columns grouped by ``groups``.

    ``prox(v, step)`` keeps group g iff :math:`\tfrac12\|v_g\|^2 > \text{step}\,\lambda_g`
    (:func:`prox_group_l0`).  ``lam`` / ``step``: floats or tensors broadcastable to
    (B, n_groups).  ``groups=None``: every column its own group (then this is :class:`L0Penalty`).
    """

    def __init__(self, lam=1.0, groups: Tensor | None = None, n_groups: int | None = None):
        _check_nonneg(lam, "lam")
        self.lam = lam
        self.groups = groups
        if groups is not None and n_groups is None:
            n_groups = int(groups.max().item()) + 1 if groups.numel() else 0
        self.n_groups = n_groups

    def __call__(self, x: Tensor) -> Tensor:
        groups, n_groups = _resolve_groups(x, self.groups, self.n_groups)
        nz = (x != 0).to(_work_dtype(x.dtype))
        active = (nz if groups is None else group_sums(nz, groups, n_groups)) > 0
        return (self.lam * active.to(nz.dtype)).sum(dim=1)

    def prox(self, v: Tensor, step=1.0) -> Tensor:
        _check_nonneg(step, "step")
        return prox_group_l0(v, step * self.lam, self.groups, self.n_groups)

    def __repr__(self) -> str:
        return f"GroupL0Penalty(lam={self.lam!r}, n_groups={self.n_groups!r})"


class GroupL2Penalty(GroupL0Penalty):
    r"""Group lasso :math:`f(x) = \sum_g \lambda_g \|x_g\|_2`; prox is block soft thresholding
    (:func:`prox_group_l2`).  Arguments as in :class:`GroupL0Penalty`."""

    def __call__(self, x: Tensor) -> Tensor:
        groups, n_groups = _resolve_groups(x, self.groups, self.n_groups)
        xw = x.to(_work_dtype(x.dtype))
        norms = torch.sqrt(_group_sq_norms(xw, groups, n_groups))
        return (self.lam * norms).sum(dim=1)

    def prox(self, v: Tensor, step=1.0) -> Tensor:
        _check_nonneg(step, "step")
        return prox_group_l2(v, step * self.lam, self.groups, self.n_groups)

    def __repr__(self) -> str:
        return f"GroupL2Penalty(lam={self.lam!r}, n_groups={self.n_groups!r})"


# --------------------------------------------------------------------------------------------
# projections onto balls (per row, over all non-batch dims)
# --------------------------------------------------------------------------------------------
def project_l2_ball(v: Tensor, radius) -> Tensor:
    r"""Projection of each row onto :math:`\{w : \|w\|_2 \le r\}`: :math:`v \min(1, r/\|v\|_2)`.

    ``radius``: float, 0-d or (B,) tensor.  Rows inside the ball are returned unchanged.
    """
    dtype = _work_dtype(v.dtype)
    x = v.to(dtype)
    r = _row_param(radius, x, dtype, "radius")
    norm = torch.linalg.vector_norm(x.reshape(x.shape[0], -1), dim=1)
    norm = norm.reshape([x.shape[0]] + [1] * (x.dim() - 1))
    safe = torch.where(norm > 0, norm, torch.ones_like(norm))
    scale = torch.where(norm > r, r / safe, torch.ones_like(norm))
    return (x * scale).to(v.dtype)


def project_linf_ball(v: Tensor, radius) -> Tensor:
    r"""Projection of each row onto :math:`\{w : \|w\|_\infty \le r\}`: :math:`\min(\max(v, -r), r)`."""
    dtype = _work_dtype(v.dtype)
    x = v.to(dtype)
    r = _row_param(radius, x, dtype, "radius")
    return torch.minimum(torch.maximum(x, -r), r).to(v.dtype)


def project_simplex(v: Tensor, total=1.0) -> Tensor:
    r"""Projection of each row onto :math:`\{w \ge 0 : \sum_i w_i = z\}` (sort-based, Duchi et al. 2008).

    With :math:`u` the row sorted decreasingly,
    :math:`\rho = \max\{j : u_j - (\sum_{i \le j} u_i - z)/j > 0\}`,
    :math:`\theta = (\sum_{i\le\rho} u_i - z)/\rho` and :math:`w = \max(v - \theta, 0)`.
    ``total`` (z >= 0): float, 0-d or (B,) tensor.  Sums run over all non-batch dims.
    """
    dtype = _work_dtype(v.dtype)
    x = v.to(dtype)
    batch = x.shape[0]
    flat = x.reshape(batch, -1)
    n = flat.shape[1]
    if n == 0:
        return v.clone()
    z = _row_param(total, flat, dtype, "total")  # (B, 1) or (1, 1)
    u = torch.sort(flat, dim=1, descending=True).values
    css = torch.cumsum(u, dim=1)
    k = torch.arange(1, n + 1, device=x.device, dtype=dtype)
    cond = u - (css - z) / k > 0
    rho = (cond.to(torch.long) * torch.arange(1, n + 1, device=x.device)).amax(dim=1)
    rho = rho.clamp_min(1)
    theta = (css.gather(1, (rho - 1)[:, None]) - z) / rho[:, None].to(dtype)
    w = (flat - theta).clamp_min(0.0)
    w = torch.where(z > 0, w, torch.zeros_like(w))  # z = 0: exactly 0 despite rounding in theta
    return w.reshape(x.shape).to(v.dtype)


def project_l1_ball(v: Tensor, radius) -> Tensor:
    r"""Projection of each row onto :math:`\{w : \|w\|_1 \le r\}` (Duchi et al. 2008).

    Rows with :math:`\|v\|_1 \le r` are unchanged; otherwise
    :math:`w = \operatorname{sign}(v)\,\Pi_{\Delta_r}(|v|) = \operatorname{sign}(v)\max(|v| - \theta, 0)`
    with :math:`\theta > 0` such that :math:`\|w\|_1 = r`.  ``radius``: float, 0-d or (B,) tensor.
    """
    dtype = _work_dtype(v.dtype)
    x = v.to(dtype)
    r = _row_param(radius, x, dtype, "radius")
    l1 = _sum_rows(x.abs()).reshape([x.shape[0]] + [1] * (x.dim() - 1))
    r_rows = r.reshape(-1) if r.numel() > 1 else r.reshape(())
    proj = torch.sign(x) * project_simplex(x.abs(), r_rows)
    return torch.where(l1 <= r, x, proj).to(v.dtype)


# --------------------------------------------------------------------------------------------
# l_p penalty plus a box (the forward-backward attack's prox)
# --------------------------------------------------------------------------------------------
def prox_lp_box(v: Tensor, lam, p: float, lower: Tensor, upper: Tensor) -> Tensor:
    r"""Elementwise :math:`\arg\min_{l \le w \le u} \tfrac12 (w - v)^2 + \lambda |w|^p` with :math:`l \le 0 \le u`.

    The objective is separable.  For :math:`p < 1`, on the side of :math:`\operatorname{sign}(v)`
    its derivative runs from :math:`+\infty` down and back up, so it has at most a local maximum
    :math:`w_1` and a local minimum :math:`w^*` (the nonzero branch of :func:`prox_lp`); on
    :math:`[0, u]` the minimum is therefore at 0 or at :math:`\min(w^*, u)`.  For :math:`p = 0`
    and :math:`p = 1` the same two candidates are exact.  So the result is 0 or
    :math:`\Pi_{[l,u]}(\operatorname{prox}_{\lambda|\cdot|^p}(v))`, whichever has the lower
    objective (ties: 0).
    ``lower``/``upper`` broadcast to ``v``; ``lam`` as in :func:`prox_lp`.
    """
    p = _canonical_p(p)
    dtype = _work_dtype(v.dtype)
    x = v.to(dtype)
    lo = torch.as_tensor(lower, dtype=dtype, device=x.device).expand_as(x)
    hi = torch.as_tensor(upper, dtype=dtype, device=x.device).expand_as(x)
    lam_t = _as_param(lam, x, dtype, x.shape, "lam")

    def objective(w: Tensor) -> Tensor:
        a = w.abs()
        pen = (a != 0).to(dtype) if p == 0.0 else a.pow(p)
        return 0.5 * (w - x).square() + lam_t * pen

    cand = torch.minimum(torch.maximum(prox_lp(x, lam_t, p), lo), hi)
    zero = torch.zeros_like(x)
    return torch.where(objective(zero) <= objective(cand), zero, cand).to(v.dtype)
