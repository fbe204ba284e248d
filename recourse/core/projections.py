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
    return select_groups(w, project_box(w, lower, upper), m, groups, n_groups)


def select_groups(
    w: Tensor, z: Tensor, m: int | Tensor, groups: Tensor | None = None, n_groups: int | None = None
) -> Tensor:
    r"""Keep, per row, the ``m`` groups whose projection ``z`` gains most over ``w``; zero the rest.

    ``z`` must be the exact projection of each group's block of ``w`` onto that group's own
    feasible set (a box, a shifted simplex, ...), with 0 feasible.  Then the result is the exact
    projection onto the intersection with :math:`\{\|w\|_{0,\mathcal G} \le m\}`, because the
    squared distance splits over groups: :math:`\|w\|^2 - \sum_{g\in S} v_g` with
    :math:`v_g = \|w_g\|^2 - \|w_g - z_g\|^2`.
    """
    gain = z * (2.0 * w - z)  # = w² − (w − z)², without cancellation
    if groups is None:
        group_gain = gain
        n_groups = w.shape[1]
    else:
        if n_groups is None:
            n_groups = int(groups.max().item()) + 1 if groups.numel() else 0
        group_gain = group_sums(gain, groups, n_groups)
    keep_groups = top_m_mask(group_gain, m, n_groups)
    keep = keep_groups if groups is None else keep_groups[:, groups]
    return torch.where(keep, z, torch.zeros_like(z))


def simplex_layout(groups: list[list[int]], device: torch.device | str | None = None) -> Tensor:
    """(G, L) long tensor of column indices per simplex group, padded with -1 (for :func:`project_simplex_groups`)."""
    width = max((len(g) for g in groups), default=0)
    rows = [g + [-1] * (width - len(g)) for g in groups]
    return torch.tensor(rows, dtype=torch.long, device=device).reshape(len(groups), width)


class SimplexGroups:
    r"""Projection of column groups onto the unit simplex, the layout's index tensors prepared once.

    Sort-based (Held et al. 1974; Duchi et al. 2008): with :math:`u` a group sorted
    decreasingly, :math:`\rho = \#\{j : u_j - (\sum_{i\le j} u_i - 1)/j > 0\}`,
    :math:`\theta = (\sum_{i\le\rho} u_i - 1)/\rho` and :math:`\Pi_\Delta(v) = \max(v - \theta, 0)`,
    computed on :math:`v - \max_i v_i` (the projection is invariant to shifts along
    :math:`\mathbf 1`; this keeps it exact when a huge gradient step makes v large).
    Batched over rows and groups at once.
    """

    def __init__(self, layout: Tensor):
        valid = layout >= 0
        self.shape = tuple(layout.shape)
        self.cols = layout.clamp(min=0).reshape(-1)
        self.invalid = ~valid
        self.k = torch.arange(1, layout.shape[1] + 1, device=layout.device)
        self.src = valid.reshape(-1).nonzero().squeeze(1)
        self.dst = self.cols.index_select(0, self.src)
        """the grouped columns, in the order of :meth:`values`"""

    def values(self, v: Tensor) -> Tensor:
        """(B, K): the projections of ``v``'s grouped columns :attr:`dst`."""
        vals = v.index_select(1, self.cols).view(v.shape[0], *self.shape)
        ordered = vals.masked_fill(self.invalid, float("-inf")).sort(dim=-1, descending=True).values
        top = ordered[..., :1]
        vals, ordered = vals - top, ordered - top
        cssv = ordered.masked_fill(self.invalid, 0.0).cumsum(-1).sub_(1.0)
        rho = (ordered - cssv / self.k > 0).sum(-1, keepdim=True).clamp_(min=1)  # ≥ 1 but for round-off
        theta = cssv.gather(-1, rho - 1) / rho
        return (vals - theta).clamp_min_(0.0).view(v.shape[0], -1).index_select(1, self.src)

    def project(self, v: Tensor) -> Tensor:
        """``v`` (B, D) with its grouped columns projected; the other columns unchanged."""
        if self.dst.numel() == 0:
            return v.clone()
        return v.clone().index_copy_(1, self.dst, self.values(v))

    def project_into(self, z: Tensor, v: Tensor, x: Tensor) -> None:
        """Write the projections of ``v``'s groups minus ``x`` (displacements) into ``z`` in place."""
        if self.dst.numel():
            z.index_copy_(1, self.dst, self.values(v).sub_(x.index_select(1, self.dst)))


def project_simplex_groups(v: Tensor, layout: Tensor) -> Tensor:
    r"""Project each column group of ``v`` (B, D) listed in ``layout`` onto the unit simplex.

    :math:`\Pi_\Delta(v_g) = \max(v_g - \theta, 0)` (see :class:`SimplexGroups`, which keeps the
    layout's index tensors for repeated calls).  Columns outside the layout are returned unchanged.
    """
    if layout.numel() == 0:
        return v
    return SimplexGroups(layout).project(v)


def top_m_mask(scores: Tensor, m: int | Tensor, n: int | None = None) -> Tensor:
    """Boolean (B, n) mask of the ``m`` largest scores per row (``m`` an int or a (B,) tensor;
    ``n`` = the number of columns of ``scores``, the default)."""
    batch = scores.shape[0]
    n = scores.shape[1] if n is None else n
    if isinstance(m, Tensor):
        m_rows = m.reshape(-1).expand(batch).to(device=scores.device, dtype=torch.long).clamp(0, n)
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
