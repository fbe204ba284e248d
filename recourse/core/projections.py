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

    One-shot form of :class:`L0BoxProjection` (Euclidean metric, box groups only): ``w`` is the
    displacement ``y - x`` (B, D), the box ``[lower, upper]`` ((D,) or (B, D)) must contain 0,
    ``m`` is an int or a (B,) tensor of per-row budgets, ``groups`` a (D,) long tensor of group
    ids in ``[0, n_groups)`` (``None``: every column its own group).  With
    :math:`z = \Pi_{[l,u]}(w)` the kept support S is the m groups of largest gain
    :math:`v_g = \sum_{i \in g} w_i^2 - (w_i - z_i)^2` (Croce & Hein 2019, by groups).
    """
    return L0BoxProjection(groups, n_groups).project(w, lower, upper, m)


class L0BoxProjection:
    r"""The one exact projection onto :math:`\{\|w\|_{0,\mathcal G} \le m\} \cap \mathcal A`, prepared once.

    Rows are independent problems (applicants, images).  For a displacement :math:`w = v - x`
    (B, D), columns grouped by ``groups`` (a one-hot categorical, the channels of a pixel) and
    counted once each, per-row budgets :math:`m_b` and a diagonal metric
    :math:`\|u\|_M^2 = \sum_i M_i u_i^2` (``metric``; ``None``: :math:`M = 1`), it returns

    .. math::
        P(w) = \arg\min_{z \in \mathcal A,\ \|z\|_{0,\mathcal G} \le m} \|w - z\|_M^2,
        \qquad \mathcal A = \prod_g \mathcal A_g,

    where :math:`\mathcal A_g` is the per-row box :math:`[l_g, u_g] \ni 0`, or, for a group
    listed in ``simplex`` (a :func:`simplex_layout`), the shifted unit simplex
    :math:`\Delta - x_g` (the point stays a mixture of categories).  Its box must either hold
    :math:`\Delta - x_g`, or hold it except for columns boxed to :math:`\{0\}` with :math:`x_c = 0`
    (levels the feature may not move to: the group is projected onto the face of the simplex its
    other columns span), or be :math:`\{0\}` (a pinned categorical; say ``pinned_simplex=True``
    when any row pins one), and :math:`M` must be constant on a simplex group.

    The squared distance splits over groups.  With :math:`z_g = \Pi_{\mathcal A_g}(w_g)` (exact
    in the M-norm too: the box is separable, the simplex sees a constant :math:`M`), keeping
    group g costs :math:`\|w_g - z_g\|_M^2` and dropping it :math:`\|w_g\|_M^2`, so

    .. math::
        \|w - P(w)\|_M^2 = \|w\|_M^2 - \sum_{g \in S} v_g, \qquad
        v_g = \sum_{i\in g} M_i\, z_i (2 w_i - z_i) \ge 0,

    and the optimal support S is the :math:`m_b` groups of largest gain :math:`v_g`.  Group gains
    are summed with a prepared dense (D, G) matrix when it is small (``dense_limit`` entries),
    else with ``index_add``.
    """

    def __init__(
        self,
        groups: Tensor | None = None,
        n_groups: int | None = None,
        *,
        metric: Tensor | None = None,
        simplex: Tensor | None = None,
        pinned_simplex: bool = False,
        dense_limit: int = 1 << 20,
    ):
        if groups is not None:
            groups = groups.to(dtype=torch.long)
            if groups.dim() != 1:
                raise ValueError(f"groups must be a (D,) tensor of group ids, got shape {tuple(groups.shape)}")
            if n_groups is None:
                n_groups = int(groups.max().item()) + 1 if groups.numel() else 0
        self.groups = groups
        self.n_groups = n_groups
        self.metric = metric
        self.simplex = None
        if simplex is not None and simplex.numel() and bool((simplex >= 0).any()):
            self.simplex = SimplexGroups(simplex)
        # a pinned group's box is {0}: clamp again after the simplex projection
        self._reclamp = bool(pinned_simplex) and self.simplex is not None
        self._dense: Tensor | None = None
        if groups is not None and groups.numel() * n_groups <= dense_limit:
            onehot = groups[:, None] == torch.arange(n_groups, device=groups.device)[None, :]
            if metric is not None:
                self._dense = onehot.to(metric.dtype) * metric[:, None]
            else:
                self._dense = onehot.to(torch.get_default_dtype())

    def gains(self, w: Tensor, z: Tensor) -> Tensor:
        r"""(B, G) group gains :math:`v_g = \sum_{i\in g} M_i z_i (2 w_i - z_i)` (G = D ungrouped)."""
        gain = z * (2.0 * w - z)  # = w² − (w − z)², without cancellation
        if self._dense is not None:
            dense = self._dense if self._dense.dtype == gain.dtype else self._dense.to(gain.dtype)
            return gain @ dense
        if self.metric is not None:
            gain = gain * self.metric
        return gain if self.groups is None else group_sums(gain, self.groups, self.n_groups)

    def project(self, w: Tensor, lower: Tensor, upper: Tensor, m: int | Tensor, origin: Tensor | None = None) -> Tensor:
        """:math:`P(w)` for displacements ``w`` (B, D); ``origin`` (B, D) = x, needed only with simplex groups."""
        if self.simplex is not None and origin is None:
            raise ValueError("simplex groups need the origin x (the simplex holds x + w)")
        return self._project(w, None if self.simplex is None else origin + w, origin, lower, upper, m)

    def project_point(self, v: Tensor, origin: Tensor, lower: Tensor, upper: Tensor, m: int | Tensor) -> Tensor:
        """The point form :math:`x + P(v - x)` for points ``v`` and origins ``origin`` = x (B, D)."""
        return self._project(v - origin, v, origin, lower, upper, m).add_(origin)

    def _project(self, w: Tensor, v: Tensor | None, x: Tensor | None, lower: Tensor, upper: Tensor,
                 m: int | Tensor) -> Tensor:
        z = torch.clamp(w, lower, upper)
        if self.simplex is not None:
            # a level column its box holds at 0 (a move the feature's transitions forbid) stays empty
            self.simplex.project_into(z, v, x, (lower == 0) & (upper == 0) & (x == 0))
            if self._reclamp:
                z = torch.maximum(torch.minimum(z, upper), lower)
        n = w.shape[1] if self.groups is None else self.n_groups
        if isinstance(m, int) and m >= n:
            return z
        keep = top_m_mask(self.gains(w, z), m, n)
        if self.groups is not None:
            keep = keep.index_select(1, self.groups)
        return z.masked_fill_(keep.logical_not_(), 0.0)


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

    def values(self, v: Tensor, blocked: Tensor | None = None) -> Tensor:
        """(B, K): the projections of ``v``'s grouped columns :attr:`dst`.

        ``blocked`` (B, D) bool: columns held at 0, so a group is projected onto the face of the
        simplex its other columns span (exact: a blocked entry is moved below the group's largest
        free entry minus 1, where no projection onto the simplex keeps mass).  A group whose
        columns are all blocked is left to the caller (a pinned group).
        """
        vals = v.index_select(1, self.cols).view(v.shape[0], *self.shape)
        if blocked is not None:
            held = blocked.index_select(1, self.cols).view(v.shape[0], *self.shape) & ~self.invalid
            held &= ~(held | self.invalid).all(-1, keepdim=True)
            if bool(held.any()):
                return self._face_values(vals, held)
        ordered = vals.masked_fill(self.invalid, float("-inf")).sort(dim=-1, descending=True).values
        top = ordered[..., :1]
        vals, ordered = vals - top, ordered - top
        cssv = ordered.masked_fill(self.invalid, 0.0).cumsum(-1).sub_(1.0)
        rho = (ordered - cssv / self.k > 0).sum(-1, keepdim=True).clamp_(min=1)  # ≥ 1 but for round-off
        theta = cssv.gather(-1, rho - 1) / rho
        return (vals - theta).clamp_min_(0.0).view(v.shape[0], -1).index_select(1, self.src)

    def _face_values(self, vals: Tensor, held: Tensor) -> Tensor:
        """:meth:`values` with the ``held`` entries (B, G, L) excluded from the support (set to 0)."""
        out = self.invalid | held
        vals = vals.masked_fill(held, float("-inf"))
        ordered = vals.masked_fill(self.invalid, float("-inf")).sort(dim=-1, descending=True).values
        top = ordered[..., :1]
        vals, ordered = vals - top, ordered - top
        cssv = ordered.masked_fill(torch.isinf(ordered), 0.0).cumsum(-1).sub_(1.0)
        rho = (ordered - cssv / self.k > 0).sum(-1, keepdim=True).clamp_(min=1)
        theta = cssv.gather(-1, rho - 1) / rho
        result = (vals - theta).clamp_min_(0.0).masked_fill_(out, 0.0)
        return result.view(vals.shape[0], -1).index_select(1, self.src)

    def project(self, v: Tensor) -> Tensor:
        """``v`` (B, D) with its grouped columns projected; the other columns unchanged."""
        if self.dst.numel() == 0:
            return v.clone()
        return v.clone().index_copy_(1, self.dst, self.values(v))

    def project_into(self, z: Tensor, v: Tensor, x: Tensor, blocked: Tensor | None = None) -> None:
        """Write the projections of ``v``'s groups minus ``x`` (displacements) into ``z`` in place;
        ``blocked``: columns held at 0 (see :meth:`values`)."""
        if self.dst.numel():
            z.index_copy_(1, self.dst, self.values(v, blocked).sub_(x.index_select(1, self.dst)))


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
