r"""Similarity of attribution maps, batched over images (rows), for the manipulation attacks.

Maps are (B, H, W) non-negative tensors (:func:`to_map` turns a (B, C, H, W) attribution into
one: :math:`m = |\sum_c a_c|`).  Two normalisations:

* :func:`unit_sum` — :math:`p = m / \sum_{ij} m_{ij}` (a distribution over pixels; the attacks'
  loss and the centre of mass use it);
* :func:`unit_max` — :math:`m / \max_{ij} m_{ij}` in [0, 1] (MSE and SSIM are taken on it, with
  data range 1).

Fragility (Ghorbani, Abid & Zou, 2019), map a before and b after a perturbation:

* **top-k intersection** — :math:`|T_k(a) \cap T_k(b)| / k`, :math:`T_k` = the k largest pixels
  (ties broken by :func:`torch.topk`);
* **Spearman** — Pearson correlation of the pixel ranks (ties get their average rank, as
  :func:`scipy.stats.spearmanr`);
* **centre-of-mass shift** — :math:`\|c(a) - c(b)\|_2` in pixels, :math:`c(m) = \sum_{ij} p_{ij}\,(i, j)`.

Target-map manipulation (Dombrowski et al., 2019), against the target and the original map:

* **MSE** — :math:`\frac1{HW}\sum (\hat a - \hat b)^2` on unit-max maps;
* **SSIM** — mean structural similarity on unit-max maps, 7×7 uniform window, K1 = 0.01,
  K2 = 0.03, sample covariances, the mean over the window positions inside the image (what
  :func:`skimage.metrics.structural_similarity` computes with ``data_range=1``);
* **Pearson** — correlation of the pixel values (scale-free).

A constant map has no ranks or correlation: Pearson and Spearman give 0 there.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

EPS = 1e-12


def to_map(attr: Tensor) -> Tensor:
    """(B, H, W) map :math:`|\\sum_c a_c|` of a (B, C, H, W) attribution (a (B, H, W) map passes as |m|)."""
    return (attr.sum(1) if attr.dim() == 4 else attr).abs()


def unit_sum(m: Tensor) -> Tensor:
    """Map divided by its sum over pixels (an all-zero map stays 0)."""
    return m / m.flatten(1).sum(1).clamp_min(EPS)[:, None, None]


def unit_max(m: Tensor) -> Tensor:
    """Map divided by its maximum (in [0, 1] for a non-negative map; an all-zero map stays 0)."""
    return m / m.flatten(1).amax(1).clamp_min(EPS)[:, None, None]


def top_k_intersection(a: Tensor, b: Tensor, k: int) -> Tensor:
    """(B,) share of the k largest pixels of ``a`` that are among the k largest of ``b``."""
    fa, fb = a.flatten(1), b.flatten(1)
    k = max(1, min(int(k), fa.shape[1]))
    ta = torch.zeros_like(fa, dtype=torch.bool).scatter_(1, fa.topk(k, dim=1).indices, True)
    tb = torch.zeros_like(fb, dtype=torch.bool).scatter_(1, fb.topk(k, dim=1).indices, True)
    return (ta & tb).sum(1).float() / k


def average_ranks(v: Tensor) -> Tensor:
    """(B, N) ranks 1..N of each row's values, tied values sharing their average rank."""
    s, idx = v.sort(dim=1)
    n = s.shape[1]
    pos = torch.arange(n, device=v.device).expand_as(s)
    differs = s[:, 1:] != s[:, :-1]
    edge = torch.ones_like(s[:, :1], dtype=torch.bool)
    first = torch.cat([edge, differs], 1)  # a tie group starts here
    last = torch.cat([differs, edge], 1)  # a tie group ends here
    start = torch.where(first, pos, torch.zeros_like(pos)).cummax(1).values
    end = torch.where(last, pos, torch.full_like(pos, n)).flip(1).cummin(1).values.flip(1)
    avg = (start + end).to(torch.float64) / 2 + 1
    return torch.empty_like(avg).scatter_(1, idx, avg)


def pearson(a: Tensor, b: Tensor) -> Tensor:
    r"""(B,) Pearson correlation of the pixel values, :math:`\operatorname{cov}(a,b)/(\sigma_a\sigma_b)` (0 if either is constant)."""
    fa, fb = a.flatten(1).to(torch.float64), b.flatten(1).to(torch.float64)
    fa, fb = fa - fa.mean(1, keepdim=True), fb - fb.mean(1, keepdim=True)
    den = torch.linalg.vector_norm(fa, dim=1) * torch.linalg.vector_norm(fb, dim=1)
    out = (fa * fb).sum(1) / den.clamp_min(EPS)
    return torch.where(den > EPS, out, torch.zeros_like(out)).float()


def spearman(a: Tensor, b: Tensor) -> Tensor:
    """(B,) Spearman rank correlation of the pixel values (average ranks for ties)."""
    return pearson(average_ranks(a.flatten(1)), average_ranks(b.flatten(1)))


def center_of_mass(m: Tensor) -> Tensor:
    r"""(B, 2) centre of mass (row, column) in pixels, :math:`\sum_{ij} p_{ij}(i, j)` with p = :func:`unit_sum` (m)."""
    p = unit_sum(m)
    h, w = m.shape[-2:]
    rows = torch.arange(h, device=m.device, dtype=p.dtype)
    cols = torch.arange(w, device=m.device, dtype=p.dtype)
    return torch.stack([(p.sum(2) * rows).sum(1), (p.sum(1) * cols).sum(1)], 1)


def com_shift(a: Tensor, b: Tensor) -> Tensor:
    """(B,) Euclidean distance in pixels between the centres of mass of ``a`` and ``b``."""
    return torch.linalg.vector_norm(center_of_mass(a) - center_of_mass(b), dim=1)


def mse(a: Tensor, b: Tensor) -> Tensor:
    """(B,) mean squared difference of the unit-max maps."""
    return ((unit_max(a) - unit_max(b)) ** 2).flatten(1).mean(1)


def ssim(a: Tensor, b: Tensor, win: int = 7, k1: float = 0.01, k2: float = 0.03) -> Tensor:
    r"""(B,) mean SSIM of the unit-max maps (data range 1), ``win``×``win`` uniform window.

    .. math::  S = \frac{(2\mu_a\mu_b + C_1)(2\sigma_{ab} + C_2)}{(\mu_a^2 + \mu_b^2 + C_1)(\sigma_a^2 + \sigma_b^2 + C_2)},
       \quad C_1 = K_1^2,\ C_2 = K_2^2,

    local moments over each window inside the image (sample covariances, factor N/(N−1)).
    The window shrinks to the largest odd side that fits a smaller map.
    """
    x, y = unit_max(a).to(torch.float64)[:, None], unit_max(b).to(torch.float64)[:, None]
    side = min(win, *x.shape[-2:])
    side -= 1 - side % 2
    npx = side * side
    mean = lambda t: F.avg_pool2d(t, side, stride=1)  # noqa: E731 - the window mean
    ux, uy = mean(x), mean(y)
    cov = npx / (npx - 1) if npx > 1 else 1.0
    vx, vy = cov * (mean(x * x) - ux * ux), cov * (mean(y * y) - uy * uy)
    vxy = cov * (mean(x * y) - ux * uy)
    c1, c2 = k1 ** 2, k2 ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1).float()


def fragility(a: Tensor, b: Tensor, k: int) -> dict[str, Tensor]:
    """The three fragility metrics of maps ``a`` (before) and ``b`` (after), each (B,)."""
    return {"topk": top_k_intersection(a, b, k), "spearman": spearman(a, b), "com_shift": com_shift(a, b)}


def similarity(a: Tensor, b: Tensor) -> dict[str, Tensor]:
    """MSE, SSIM and Pearson of maps ``a`` and ``b``, each (B,)."""
    return {"mse": mse(a, b), "ssim": ssim(a, b), "pearson": pearson(a, b)}
