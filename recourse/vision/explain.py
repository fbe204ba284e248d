r"""Attack-based explainers (AXAI, ℓ1-q concept probing) and gradient baselines from captum.

* :func:`axai` (Kumar et al., seed 002): an ℓ2 PGD attack on the model's own prediction
  (:func:`recourse.core.pgd.pgd`, 20 steps, no early stop); per image and channel the attack
  values between the 15th and 85th percentile are zeroed; a pixel is *attacked* if any channel
  survives; the image is segmented (SLIC or QuickShift from scikit-image, or a regular grid for
  spectrogram-like inputs); each segment's score is its attacked-pixel density
  :math:`|S_x|/|S|`; the K densest segments are the explanation.
* :func:`concept_probe` (seed 003): label-targeted ℓ1-q Frank–Wolfe from a min–max scaled
  Gaussian noise image toward a class.
* :func:`gradient_attribution`: saliency, gradient × input, SmoothGrad, Integrated Gradients and Grad-CAM taken
  from captum (optional dependency, ``pip install 'recourse[vision]'``); not re-implemented.
* :func:`captum_surrogate`: captum's Lime and KernelShap on the same segments, for timing peers.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recourse.core.pgd import pgd
from recourse.core.prox import project_l2_ball

from .adapter import ImageAdapter
from .attacks import AttackResult, fw_attack

SEGMENTERS = ("slic", "quickshift", "grid")
GRADIENT_METHODS = ("saliency", "gradxinput", "smoothgrad", "ig", "gradcam")


class MissingDependency(ImportError):
    """An optional dependency (captum) is not installed."""


# ------------------------------------------------------------------------------ segments
def segment(x: Tensor, method: str = "slic", *, n_segments: int | None = None, compactness: float = 0.3,
            kernel_size: float = 2.0, max_dist: float = 6.0, ratio: float = 0.5,
            grid: tuple[int, int] | None = None) -> Tensor:
    """(B, H, W) long segment labels, consecutive from 0 in each image.

    ``slic`` / ``quickshift`` call scikit-image once per image (segmentation is a per-image
    library routine); ``grid`` cuts every image into ``grid = (rows, cols)`` equal cells in one
    tensor operation (for spectrograms and other inputs without object boundaries).
    """
    b, c, h, w = x.shape
    if method == "grid":
        gr, gc = grid or (4, 4)
        ri = torch.div(torch.arange(h, device=x.device) * gr, h, rounding_mode="floor")
        ci = torch.div(torch.arange(w, device=x.device) * gc, w, rounding_mode="floor")
        return (ri[:, None] * gc + ci[None, :]).expand(b, h, w).clone()
    if method not in SEGMENTERS:
        raise ValueError(f"unknown segmentation {method!r}; expected one of {', '.join(SEGMENTERS)}")
    from skimage.segmentation import quickshift, slic

    imgs = x.detach().cpu().permute(0, 2, 3, 1).numpy().astype(np.float64)
    lo, hi = imgs.min(), imgs.max()
    imgs = (imgs - lo) / (hi - lo) if hi > lo else imgs * 0
    n_segments = n_segments or max(4, (h * w) // 30)
    out = np.empty((b, h, w), dtype=np.int64)
    for i in range(b):
        img = imgs[i]
        if method == "slic":
            lab = slic(img if c > 1 else img[..., 0], n_segments=n_segments, compactness=compactness,
                       channel_axis=-1 if c > 1 else None, start_label=0)
        else:
            rgb = img if c == 3 else np.repeat(img[..., :1], 3, axis=-1)
            lab = quickshift(rgb, kernel_size=kernel_size, max_dist=max_dist, ratio=ratio)
        out[i] = np.unique(lab, return_inverse=True)[1].reshape(h, w)
    return torch.as_tensor(out, device=x.device)


def segment_density(attacked: Tensor, segments: Tensor) -> tuple[Tensor, Tensor]:
    r"""Attacked-pixel density per segment: (B, S_max) scores :math:`|S_x|/|S|` and sizes (0 = no segment)."""
    b = segments.shape[0]
    n_seg = int(segments.max().item()) + 1 if segments.numel() else 0
    seg = segments.reshape(b, -1)
    size = torch.zeros(b, n_seg, device=seg.device).scatter_add_(1, seg, torch.ones_like(seg, dtype=torch.float32))
    hits = torch.zeros(b, n_seg, device=seg.device).scatter_add_(1, seg, attacked.reshape(b, -1).float())
    density = torch.where(size > 0, hits / size.clamp_min(1), torch.full_like(size, -1.0))
    return density, size


@dataclass
class AxaiResult:
    """AXAI output: segments (B,H,W), per-segment density (B,S), chosen segments (B,K), mask (B,H,W)."""

    segments: Tensor
    density: Tensor
    top: Tensor
    mask: Tensor
    attacked: Tensor
    delta: Tensor
    predictions: Tensor
    seconds: float


def axai(adapter: ImageAdapter, x: Tensor, *, k: int = 3, segmentation: str = "slic", steps: int = 20,
         step: float = 0.05, eps: float = 1.0, low: float = 15.0, high: float = 85.0,
         segment_kwargs: dict | None = None, segments: Tensor | None = None) -> AxaiResult:
    r"""AXAI explanation of the model's predictions on ``x`` (B, C, H, W); see the module docstring.

    PGD step :math:`w \leftarrow \Pi(w + \text{step}\cdot\nabla\mathrm{CE}/\|\nabla\mathrm{CE}\|_2)`
    onto :math:`\{\|w\|_2 \le \varepsilon\}` ∩ box; a value is kept where it lies below the
    ``low``-th or above the ``high``-th percentile of its image-channel's attack values (and ≠ 0).
    ``segments`` may be given (B, H, W) to reuse a segmentation.
    """
    t0 = time.perf_counter()
    x = adapter.to_device(x)
    b = x.shape[0]
    pred = adapter.predict(x)
    lo, hi = adapter.delta_box(x)
    shape = x.shape[1:]

    def h(w: Tensor, rows: Tensor) -> Tensor:
        return -F.cross_entropy(adapter.logits(x[rows] + w.view(-1, *shape)), pred[rows], reduction="none")

    def project(w: Tensor, rows: Tensor) -> Tensor:
        return torch.minimum(torch.maximum(project_l2_ball(w, eps), lo[rows]), hi[rows])

    res = pgd(h, project, torch.zeros_like(x.reshape(b, -1)), step=step, max_iter=steps, norm="l2")
    delta = res.x.view_as(x)
    per_chan = delta.flatten(2)  # (B, C, HW)
    q = torch.quantile(per_chan, torch.tensor([low / 100.0, high / 100.0], device=x.device), dim=2)  # (2, B, C)
    keep = ((per_chan < q[0][..., None]) | (per_chan > q[1][..., None])) & (per_chan != 0)
    attacked = keep.view_as(delta).any(1)
    if segments is None:
        segments = segment(x, segmentation, **(segment_kwargs or {}))
    density, _ = segment_density(attacked, segments)
    kk = min(k, density.shape[1])
    top = density.topk(kk, dim=1).indices
    chosen = torch.zeros_like(density, dtype=torch.bool).scatter_(1, top, True) & (density >= 0)
    mask = chosen.gather(1, segments.reshape(b, -1)).view_as(segments)
    return AxaiResult(segments, density, top, mask, attacked, delta, pred, time.perf_counter() - t0)


def axai_density_map(adapter: ImageAdapter, x: Tensor, **options) -> tuple[Tensor, Tensor]:
    """AXAI's explanation as a map (B, H, W): each pixel scored by the attacked-pixel density of
    its segment (negative densities as 0), and its top-k segment mask (B, H, W) bool."""
    res = axai(adapter, x, **options)
    b = len(x)
    dens = res.density.clamp_min(0).gather(1, res.segments.reshape(b, -1)).view_as(res.segments)
    return dens, res.mask


# ------------------------------------------------------------------------------ probing
def concept_probe(adapter: ImageAdapter, classes: Sequence[int] | Tensor, shape: Sequence[int], *,
                  eps: float | None = None, q: float = 0.975, steps: int = 45, c: float = 1.0, seed: int = 0) -> AttackResult:
    r"""Concept probing: label-targeted ℓ1-q Frank–Wolfe from noise toward each class in ``classes``.

    The start image is standard normal noise min–max scaled into the pixel box (per image);
    :math:`\varepsilon` defaults to :math:`0.25\,D` so that whole strokes can appear.
    """
    gen = torch.Generator(device="cpu").manual_seed(seed)
    cls = torch.as_tensor(classes, dtype=torch.long).reshape(-1)
    noise = torch.randn((len(cls), *shape), generator=gen)
    flat = noise.flatten(1)
    mn, mx = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    unit = ((flat - mn) / (mx - mn)).view_as(noise).to(adapter.device)
    x0 = adapter.lower + unit * (adapter.upper - adapter.lower)
    d = int(np.prod(shape))
    return fw_attack(adapter, x0, cls, mode="label", eps=eps if eps is not None else 0.25 * d, q=q, steps=steps, c=c)


# ------------------------------------------------------------------------------ captum baselines
def _captum():
    try:
        import captum.attr as attr
    except ImportError as exc:
        raise MissingDependency("the gradient baselines, Lime and KernelShap come from captum: "
                                "pip install 'recourse[vision]' (or pip install captum)") from exc
    return attr


def last_conv(model: nn.Module) -> nn.Module:
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError("Grad-CAM needs a model with a Conv2d layer")
    return convs[-1]


def gradient_attribution(adapter: ImageAdapter, x: Tensor, method: str, target: Tensor | None = None, *,
                         nt_samples: int = 20, stdevs: float = 0.15, ig_steps: int = 32) -> Tensor:
    """captum attribution maps (B, C, H, W) for ``saliency``, ``gradxinput``, ``smoothgrad``, ``ig`` or ``gradcam``.

    ``target``: classes to explain (default: the predictions).  IG integrates from the lower
    pixel bound; Grad-CAM uses the last Conv2d layer, upsampled bilinearly to the input size.
    """
    attr = _captum()
    x = adapter.to_device(x)
    target = adapter.predict(x) if target is None else torch.as_tensor(target, device=adapter.device).reshape(-1)
    model = adapter.model
    x = x.clone().requires_grad_(True)
    with torch.enable_grad():
        if method == "saliency":
            out = attr.Saliency(model).attribute(x, target=target, abs=True)
        elif method == "gradxinput":
            out = attr.InputXGradient(model).attribute(x, target=target)
        elif method == "smoothgrad":
            out = attr.NoiseTunnel(attr.Saliency(model)).attribute(
                x, nt_type="smoothgrad", nt_samples=nt_samples, stdevs=stdevs, target=target, abs=True)
        elif method == "ig":
            base = adapter.lower.expand_as(x).contiguous()
            out = attr.IntegratedGradients(model).attribute(x, baselines=base, target=target, n_steps=ig_steps)
        elif method == "gradcam":
            cam = attr.LayerGradCam(model, last_conv(model)).attribute(x, target=target, relu_attributions=True)
            out = attr.LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode="bilinear").expand_as(x)
        else:
            raise ValueError(f"unknown gradient method {method!r}; expected one of {', '.join(GRADIENT_METHODS)}")
    return out.detach()


def captum_surrogate(adapter: ImageAdapter, x: Tensor, segments: Tensor, method: str = "lime", *,
                     n_samples: int = 1000, k: int = 3, batch: int = 250) -> tuple[Tensor, float]:
    """captum's Lime or KernelShap on the given segments (one image at a time, as captum runs them).

    Returns (B, S) segment weights and the wall time.  Baseline: the lower pixel bound.
    """
    attr = _captum()
    x = adapter.to_device(x)
    t0 = time.perf_counter()
    pred = adapter.predict(x)
    cls = attr.Lime if method == "lime" else attr.KernelShap
    explainer = cls(adapter.model)
    n_seg = int(segments.max().item()) + 1
    weights = torch.zeros(x.shape[0], n_seg, device=x.device)
    for i in range(x.shape[0]):  # captum explains one input at a time
        fm = segments[i][None, None].expand(1, x.shape[1], -1, -1)
        with torch.enable_grad():
            a = explainer.attribute(x[i:i + 1], baselines=float(adapter.lower.flatten()[0]), target=int(pred[i]),
                                    feature_mask=fm, n_samples=n_samples, perturbations_per_eval=batch)
        seg = segments[i].reshape(-1)
        w = torch.zeros(n_seg, device=x.device).scatter_reduce_(0, seg, a[0, 0].reshape(-1), reduce="amax", include_self=False)
        weights[i] = w
    return weights, time.perf_counter() - t0
