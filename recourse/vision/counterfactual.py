r"""S-CFE on images through the adapter: at most m changed pixels, pixel box, k-NN density gravity.

For images x with targets t (rows solved together), on :func:`recourse.core.apg.apg`:

.. math::
    \min_w\; c\,[\max_{j\ne t} Z_j(x+w) - Z_t(x+w) + \kappa]_+ + \|w\|_2^2 + \theta\|x + w - g\|_2^2
    \quad\text{s.t.}\quad \|w\|_{0,\text{pixels}} \le m,\; x + w \in [l, u],

prox = the exact projection onto the ℓ0-by-pixel ∩ box set
(:class:`recourse.core.projections.L0BoxProjection`, Croce & Hein; the tabular S-CFE's projection).  g is the k-NN density
gravity point (mean of the k = 3 training images of class t nearest to x that the model puts in
t).  The loss weight c is searched per image (×10 until the target is reached, then geometric
bisection); the valid answer with the smallest ℓ2 is kept.

Targets.  :func:`scfe_images` solves for given targets t (one per image, e.g. a class the user
asks for).  :func:`scfe_images_cheapest` lets each image reach the *cheapest reachable other
class* among its k most likely other classes :math:`T_k(x)` (by logit, the prediction excluded):
it solves the problem above for every pair (image, t ∈ T_k(x)) as rows of ONE batched call and
returns, per image,

.. math::
    y^\star = \arg\min \{\|y_t - x\|_2 : t \in T_k(x),\ f(y_t) = t\},

together with the class t it reached (the runner-up's answer, invalid, when no candidate is
reached).  With k = 1 this is the runner-up protocol.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from recourse.core.apg import apg
from recourse.core.projections import L0BoxProjection
from recourse.core.weight_search import bracket_search
from recourse.density.lof import NoveltyLOF

from .adapter import ImageAdapter, LogitCache

WEIGHT_FACTOR = 10.0
"""Step of the outer loss-weight search while only one side is known (then geometric bisection;
see :func:`recourse.core.weight_search.bracket_search`)."""


@dataclass
class ImageCounterfactuals:
    """Originals, counterfactual images, the class each one aims at (reached when ``valid``),
    validity (model on the returned image), wall time; ``candidates`` (B, k) and ``rank`` (B,)
    (position of the reached class among them) for :func:`scfe_images_cheapest`; ``rows`` the
    per-(image, candidate) solutions behind the choice."""

    x: Tensor
    x_cf: Tensor
    targets: Tensor
    valid: Tensor
    seconds: float
    candidates: Tensor | None = None
    rank: Tensor | None = None
    rows: "ImageCounterfactuals | None" = None


def knn_gravity(x: Tensor, targets: Tensor, train_x: Tensor, train_pred: Tensor, k: int = 3) -> Tensor:
    """Mean of the k nearest training images (by ℓ2) of each row's target class (model-predicted)."""
    flat, tr = x.flatten(1), train_x.flatten(1)
    dist = torch.cdist(flat, tr)
    dist = torch.where(train_pred[None, :] == targets[:, None], dist, torch.full_like(dist, float("inf")))
    idx = dist.topk(k, dim=1, largest=False).indices
    return tr[idx].mean(1).view_as(x)


def top_other_classes(adapter: ImageAdapter, x: Tensor, k: int) -> Tensor:
    """(B, k) the k most likely classes of each image other than its prediction, by logit."""
    with torch.no_grad():
        z = adapter.logits(adapter.to_device(x))
    if not 1 <= k < z.shape[1]:
        raise ValueError(f"k must be in 1..{z.shape[1] - 1}, got {k}")
    others = z.scatter(1, z.argmax(1, keepdim=True), float("-inf"))
    return others.topk(k, dim=1).indices


def runner_up(adapter: ImageAdapter, x: Tensor) -> Tensor:
    """The second most likely class of each image."""
    return top_other_classes(adapter, x, 1)[:, 0]


def scfe_images(adapter: ImageAdapter, x: Tensor, targets: Tensor, *, m: int = 25, gravity: Tensor | None = None,
                theta: float = 0.05, kappa: float = 0.0, c0: float = 1.0, search_steps: int = 6, max_iter: int = 200,
                step: float = 0.5, tol: float = 1e-6, warm_budgets: tuple[int, ...] = (100, 50),
                warm_iter: int = 60) -> ImageCounterfactuals:
    """Sparse counterfactual images (see the module docstring); ``m`` counts pixels.

    Support continuation: each solve first runs ``warm_iter`` iterations under the looser
    budgets ``warm_budgets`` (without stopping), then the budget-m solve starts from their
    projected result; this picks better supports than a cold start at m.
    """
    t0 = time.perf_counter()
    x = adapter.to_device(x)
    b, ch, hh, ww = x.shape
    targets = torch.as_tensor(targets, device=adapter.device, dtype=torch.long)
    lo, hi = adapter.delta_box(x)
    groups = adapter.pixel_groups((ch, hh, ww), adapter.device) if ch > 1 else None
    n_groups = hh * ww if ch > 1 else None
    projection = L0BoxProjection(groups, n_groups)
    g_flat = None if gravity is None else (adapter.to_device(gravity) - x).reshape(b, -1)
    shape = x.shape[1:]
    c = torch.full((b,), float(c0), device=adapter.device)

    cache = LogitCache()

    def h(w: Tensor, rows: Tensor) -> Tensor:
        z = adapter.logits(x[rows] + w.view(-1, *shape))
        cache.store(w, rows, z)
        val = c[rows] * torch.clamp(adapter.margin(z, targets[rows], True) + kappa, min=0.0) + (w * w).sum(1)
        if g_flat is not None and theta:
            val = val + theta * ((w - g_flat[rows]) ** 2).sum(1)
        return val

    def prox_m(budget: int):
        def prox(v: Tensor, a: Tensor, rows: Tensor) -> Tensor:
            return projection.project(v, lo[rows], hi[rows], budget)
        return prox

    @torch.no_grad()
    def stop(w: Tensor, rows: Tensor) -> Tensor:
        return adapter.reached(cache.logits(adapter, w, rows, x[rows] + w.view(-1, *shape)), targets[rows], True)

    def run(weights: Tensor) -> tuple[Tensor, Tensor]:
        nonlocal c
        c = weights
        w0 = torch.zeros_like(lo)
        for budget in [mb for mb in warm_budgets if mb > m]:
            w0 = apg(h, prox_m(budget), w0, step=step, max_iter=warm_iter, tol=tol).x
        if warm_budgets:
            w0 = prox_m(m)(w0, None, torch.arange(b, device=adapter.device))
        w = apg(h, prox_m(m), w0, step=step, max_iter=max_iter, tol=tol, stop=stop).x
        return w, adapter.success(x + w.view_as(x), targets, True)

    best, found, _ = bracket_search(run, lambda w: torch.linalg.vector_norm(w, dim=1), c, search_steps,
                                    WEIGHT_FACTOR, raise_on_success=False)
    best = torch.where(found[:, None], best, torch.zeros_like(best))
    x_cf = adapter.clamp(x + best.view_as(x))
    valid = adapter.success(x_cf, targets, True)
    return ImageCounterfactuals(x, x_cf, targets, valid, time.perf_counter() - t0)


def cheapest_valid(x_cf: Tensor, x: Tensor, valid: Tensor) -> Tensor:
    r"""(B,) column of the valid (B, k) candidate row with the smallest :math:`\|y - x\|_2`
    (``x_cf`` (B, k, ...), ``x`` (B, ...)); 0 where no candidate is valid."""
    b, k = valid.shape
    dist = torch.linalg.vector_norm((x_cf - x[:, None]).reshape(b, k, -1), dim=2)
    dist = torch.where(valid, dist, torch.full_like(dist, float("inf")))
    return torch.where(valid.any(1), dist.argmin(1), torch.zeros_like(valid[:, 0], dtype=torch.long))


def scfe_images_cheapest(adapter: ImageAdapter, x: Tensor, candidates: Tensor, *, gravity: Tensor | None = None,
                         **kw) -> ImageCounterfactuals:
    """S-CFE to the cheapest reachable class among ``candidates`` (B, k) (see the module docstring).

    Rows = image × candidate (image-major) in one :func:`scfe_images` call (``kw`` passed on);
    ``gravity``: (B, k, C, H, W) gravity points per candidate, or None.  Returns per image the
    valid answer with the smallest ℓ2, its class (``targets``) and its ``rank`` in ``candidates``.
    """
    t0 = time.perf_counter()
    x = adapter.to_device(x)
    cand = torch.as_tensor(candidates, device=adapter.device, dtype=torch.long)
    b, k = cand.shape
    grav = None if gravity is None else adapter.to_device(gravity.reshape(b * k, *x.shape[1:]))
    rows = scfe_images(adapter, x.repeat_interleave(k, 0), cand.reshape(-1), gravity=grav, **kw)
    x_cf, valid = rows.x_cf.view(b, k, *x.shape[1:]), rows.valid.view(b, k)
    rank = cheapest_valid(x_cf, x, valid)
    pick = torch.arange(b, device=adapter.device)
    return ImageCounterfactuals(x, x_cf[pick, rank], cand[pick, rank], valid[pick, rank], time.perf_counter() - t0,
                                candidates=cand, rank=rank, rows=rows)


def lof_scores(train_x: np.ndarray, train_y: np.ndarray, points: np.ndarray, classes: np.ndarray,
               n_neighbors: int = 50) -> np.ndarray:
    """Target-class LOF of each image against the training images of its class
    (:class:`recourse.density.lof.NoveltyLOF`, = −score_samples of scikit-learn's novelty LOF)."""
    out = np.full(len(points), np.nan)
    tr = train_x.reshape(len(train_x), -1)
    pts = points.reshape(len(points), -1)
    for cls in np.unique(classes):
        sel = classes == cls
        out[sel] = NoveltyLOF(tr[train_y == cls], n_neighbors).lof(pts[sel])
    return out
