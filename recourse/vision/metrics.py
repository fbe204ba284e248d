r"""Metrics of image perturbations (GSE, seed 000), batched over images.

With a perturbation δ (B, C, H, W) and its changed-pixel mask
:math:`m_{ij} = [\sum_c |\delta_{cij}| > 0]`:

* **ASR** — share of attacked images that reach the goal (argmax = target, or ≠ label).
* **ACP** — average number of changed pixels :math:`\|m\|_0` over successful images.
* **ANC** — average number of 4-connected clusters of changed pixels over successful images.
* **ℓ2** — :math:`\|\delta\|_2` over all entries, averaged over successful images.
* :math:`d_{2,0}` — number of overlapping p×p patches (stride 1, inside the image) on which
  δ is not zero; p = 8 for images of side ≥ 24 (MNIST), p = 3 below (8×8 digits).
* **IS** — interpretability score at percentile ν of the adversarial saliency map
  :math:`\mathrm{ASM}_i = \partial_i Z_t \cdot |\partial_i Z_l| \cdot 1_S(i)`,
  :math:`S = \{i : \partial_i Z_t \ge 0 \text{ or } \partial_i Z_l \le 0\}`, gradients at the
  original image; :math:`B = [\mathrm{ASM} > Q_\nu(\mathrm{ASM})]` and
  :math:`\mathrm{IS} = \|B \odot \delta\|_2 / \|\delta\|_2` (targeted attacks).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

NUS = (50, 60, 70, 80, 90)


def changed_pixels(delta: Tensor, tol: float = 0.0) -> Tensor:
    """(B, H, W) bool mask of pixels whose channels changed: :math:`\\sum_c |\\delta_c| > tol`."""
    return delta.abs().sum(1) > tol


def acp(delta: Tensor, tol: float = 0.0) -> Tensor:
    """(B,) number of changed pixels."""
    return changed_pixels(delta, tol).flatten(1).sum(1)


def anc(delta: Tensor, tol: float = 0.0) -> Tensor:
    """(B,) number of 4-connected clusters of changed pixels (one labelling call for the batch)."""
    from scipy import ndimage

    mask = changed_pixels(delta, tol).cpu().numpy()
    if mask.size == 0:
        return torch.zeros(delta.shape[0], dtype=torch.long, device=delta.device)
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = [[0, 1, 0], [1, 1, 1], [0, 1, 0]]  # 4-connectivity in-plane, none across images
    labels, n = ndimage.label(mask, structure=structure)
    counts = np.zeros(mask.shape[0], dtype=np.int64)
    if n:
        flat = labels.reshape(mask.shape[0], -1)
        img_of_label = np.zeros(n + 1, dtype=np.int64)
        rows, cols = np.nonzero(flat)
        img_of_label[flat[rows, cols]] = rows
        counts = np.bincount(img_of_label[1:], minlength=mask.shape[0])
    return torch.as_tensor(counts, device=delta.device)


def l2(delta: Tensor) -> Tensor:
    """(B,) Euclidean norm of each perturbation."""
    return torch.linalg.vector_norm(delta.flatten(1), dim=1)


def default_patch(hw: Sequence[int]) -> int:
    """Patch side for :math:`d_{2,0}`: 8 (as in GSE) when the image side is ≥ 24, else 3."""
    return 8 if min(int(hw[0]), int(hw[1])) >= 24 else 3


def d20(delta: Tensor, patch: int | None = None, tol: float = 0.0) -> Tensor:
    r"""(B,) :math:`d_{2,0}`: overlapping ``patch``×``patch`` windows (stride 1) with nonzero δ."""
    patch = patch or default_patch(delta.shape[-2:])
    m = changed_pixels(delta, tol).to(delta.dtype if delta.is_floating_point() else torch.float32)[:, None]
    hit = F.max_pool2d(m, patch, stride=1)
    return (hit > 0).flatten(1).sum(1)


def asr(success: Tensor) -> float:
    return float(success.float().mean()) if success.numel() else 0.0


def adversarial_saliency_map(model: torch.nn.Module, x: Tensor, labels: Tensor, targets: Tensor) -> Tensor:
    r"""ASM (B, C, H, W): :math:`\partial Z_t \cdot |\partial Z_l|` on :math:`S`, 0 elsewhere."""
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        z = model(xg)
        gt = torch.autograd.grad(z.gather(1, targets[:, None]).sum(), xg, retain_graph=True)[0]
        gl = torch.autograd.grad(z.gather(1, labels[:, None]).sum(), xg)[0]
    keep = (gt >= 0) | (gl <= 0)
    return torch.where(keep, gt * gl.abs(), torch.zeros_like(gt))


def interpretability_score(asm: Tensor, delta: Tensor, nus: Sequence[float] = NUS) -> Tensor:
    r"""(B, len(nus)) IS: share of ‖δ‖₂ on entries whose ASM exceeds its ν-th percentile."""
    a = asm.flatten(1).to(torch.float32)
    d = delta.flatten(1).to(torch.float32)
    qs = torch.tensor([float(n) / 100.0 for n in nus], device=a.device)
    thresh = torch.quantile(a, qs, dim=1).T  # (B, len(nus))
    mask = a[:, None, :] > thresh[:, :, None]
    num = torch.linalg.vector_norm(mask * d[:, None, :], dim=2)
    den = torch.linalg.vector_norm(d, dim=1, keepdim=True).clamp_min(1e-12)
    return num / den


def brightening_share(delta: Tensor) -> Tensor:
    r"""(B,) share of :math:`\|\delta\|_2^2` carried by positive entries, :math:`\|[\delta]_+\|^2/\|\delta\|^2`.

    ASM > 0 needs :math:`\partial Z_t > 0`, so the negative part of δ (a stroke erased where
    darker helps the target) is never in B and IS² is bounded by roughly this share."""
    d = delta.flatten(1).to(torch.float32)
    return (d.clamp_min(0) ** 2).sum(1) / (d * d).sum(1).clamp_min(1e-24)


def useful_gradient_split(model: torch.nn.Module, x: Tensor, labels: Tensor, targets: Tensor,
                          top: int = 50) -> dict[str, float]:
    r"""Where a targeted attack's first-order gain lies: bright ("stroke", x above the middle of
    its range) vs dark pixels.

    With :math:`g = \nabla_x (Z_t - Z_l)` the usable gain of a pixel is :math:`[-g]_+` on
    bright pixels (they can only go down) and :math:`[g]_+` on dark ones.  Returns the bright
    share of pixels, the mean usable gain on each kind, and the bright share among each
    image's ``top`` most useful pixels (what a sparse attack picks first)."""
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        z = model(xg)
        g = torch.autograd.grad((z.gather(1, targets[:, None]) - z.gather(1, labels[:, None])).sum(), xg)[0]
    lo = x.flatten(1).min(1).values.view(-1, *[1] * (x.dim() - 1))
    hi = x.flatten(1).max(1).values.view(-1, *[1] * (x.dim() - 1))
    bright = x > (lo + hi) / 2
    useful = torch.where(bright, (-g).clamp_min(0), g.clamp_min(0))
    k = min(top, useful[0].numel())
    picked = bright.flatten(1).gather(1, useful.flatten(1).topk(k, dim=1).indices)
    return {"bright_pixel_share": float(bright.float().mean()),
            "useful_gain_bright": float(useful[bright].mean()) if bool(bright.any()) else float("nan"),
            "useful_gain_dark": float(useful[~bright].mean()) if bool((~bright).any()) else float("nan"),
            f"bright_share_of_top_{k}": float(picked.float().mean())}


def _mean_std(v: Tensor) -> tuple[float, float]:
    if v.numel() == 0:
        return float("nan"), float("nan")
    v = v.to(torch.float64)
    return float(v.mean()), float(v.std(unbiased=False))


def attack_summary(delta: Tensor, success: Tensor, seconds: float, patch: int | None = None) -> dict:
    """ASR and, over the successful images, mean (std) ACP, ANC, ℓ2, d₂,₀; seconds per image."""
    s = success.bool()
    d = delta[s]
    out = {"n": int(success.numel()), "asr": asr(success)}
    for name, vals in (("acp", acp(d)), ("anc", anc(d)), ("l2", l2(d)), ("d20", d20(d, patch))):
        mean, std = _mean_std(vals)
        out[name], out[name + "_std"] = mean, std
    out["seconds_per_image"] = seconds / max(1, int(success.numel()))
    out["seconds"] = seconds
    return out
