"""Exact Euclidean projections used as proximal operators of indicator functions.

Every function is batched: rows are independent problems (applicants, images).
All tensors stay on the device they came in on.
"""
from __future__ import annotations

import torch
from torch import Tensor


def project_box(w: Tensor, lower: Tensor, upper: Tensor) -> Tensor:
    r"""Projection onto the box :math:`\{w : l \le w \le u\}`: :math:`\Pi(w) = \min(\max(w, l), u)`."""
    return torch.minimum(torch.maximum(w, lower), upper)


def group_sums(values: Tensor, groups: Tensor, n_groups: int) -> Tensor:
    """Sum the columns of ``values`` (B, D) that share a group id; returns (B, n_groups)."""
    out = values.new_zeros(values.shape[0], n_groups)
    return out.index_add_(1, groups, values)


def project_l0_box(
    w: Tensor,
    lower: Tensor,
    upper: Tensor,
    m: int | Tensor,
    groups: Tensor | None = None,
    n_groups: int | None = None,
) -> Tensor:
    r"""Exact projection of a displacement onto :math:`\{\|w\|_{0,\mathcal G} \le m\} \cap [l, u]`.

    ``w`` is the displacement ``y - x`` (B, D) and the box ``[lower, upper]`` must contain 0
    (the applicant itself is feasible).  Columns sharing a group id (e.g. the one-hot columns of
    one categorical feature) count as one feature.  With :math:`z = \Pi_{[l,u]}(w)`,

    .. math::
        \|w - P(w)\|^2 = \|w\|^2 - \sum_{g \in S} \sum_{i \in g} \big(w_i^2 - (w_i - z_i)^2\big),

    so the optimal support S keeps the m groups with the largest gain
    :math:`v_g = \sum_{i\in g} w_i^2 - (w_i - z_i)^2 \ge 0` (Croce & Hein 2019, by groups).

    ``m`` is an int or a (B,) tensor of per-row budgets.  ``groups`` is a (D,) long tensor of
    group ids in ``[0, n_groups)``; ``None`` means every column is its own group.
    """
    z = project_box(w, lower, upper)
    gain = w * w - (w - z) ** 2
    if groups is None:
        group_gain = gain
        n_groups = w.shape[1]
    else:
        if n_groups is None:
            n_groups = int(groups.max().item()) + 1 if groups.numel() else 0
        group_gain = group_sums(gain, groups, n_groups)
    keep_groups = _top_m_mask(group_gain, m, n_groups)
    keep = keep_groups if groups is None else keep_groups[:, groups]
    return torch.where(keep, z, torch.zeros_like(z))


def _top_m_mask(scores: Tensor, m: int | Tensor, n: int) -> Tensor:
    """Boolean (B, n) mask of the ``m`` largest scores per row (``m`` per row allowed)."""
    batch = scores.shape[0]
    if isinstance(m, Tensor):
        m_rows = m.to(device=scores.device, dtype=torch.long).clamp(0, n)
        k = int(m_rows.max().item()) if m_rows.numel() else 0
    else:
        k = max(0, min(int(m), n))
        m_rows = None
    mask = torch.zeros(batch, n, dtype=torch.bool, device=scores.device)
    if k == 0:
        return mask
    if k >= n and m_rows is None:
        return ~mask
    idx = torch.topk(scores, k, dim=1).indices
    if m_rows is not None:
        rank = torch.arange(k, device=scores.device).expand(batch, k)
        take = rank < m_rows[:, None]
        mask.scatter_(1, idx, take)
    else:
        mask.scatter_(1, idx, True)
    return mask
