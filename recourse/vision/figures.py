"""PNG figures: original, adversarial, perturbation ×5, changed pixels highlighted, AXAI segments, maps."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import Tensor


def _hwc(img: Tensor, lo: float, hi: float) -> np.ndarray:
    a = img.detach().cpu().float()
    a = ((a - lo) / (hi - lo)).clamp(0, 1).permute(1, 2, 0).numpy()
    return np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a


def _save(path: Path, rgb: np.ndarray, scale: int) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    big = np.kron(rgb, np.ones((scale, scale, 1)))
    plt.imsave(path, np.clip(big, 0, 1))
    return path


def perturbation_rgb(delta: Tensor, lo: float, hi: float, gain: float = 5.0) -> np.ndarray:
    """Perturbation ×gain around mid-grey (channel mean for colour images)."""
    d = delta.detach().cpu().float().mean(0).numpy() / (hi - lo)
    v = np.clip(0.5 + gain * d, 0, 1)
    return np.repeat(v[..., None], 3, axis=2)


def highlight_rgb(x: Tensor, mask: Tensor, lo: float, hi: float) -> np.ndarray:
    """Greyscale image with the masked pixels in red."""
    base = _hwc(x, lo, hi).mean(2, keepdims=True).repeat(3, axis=2) * 0.6
    m = mask.detach().cpu().numpy().astype(bool)
    base[m] = [1.0, 0.0, 0.0]
    return base


def segments_rgb(x: Tensor, segments: Tensor, chosen: Tensor | None, lo: float, hi: float, scale: int = 8) -> np.ndarray:
    """Image upscaled ×scale with segment boundaries in yellow and chosen segments tinted green."""
    from skimage.segmentation import mark_boundaries

    base = np.kron(_hwc(x, lo, hi), np.ones((scale, scale, 1)))
    seg = np.kron(segments.detach().cpu().numpy(), np.ones((scale, scale), dtype=np.int64))
    if chosen is not None:
        m = np.kron(chosen.detach().cpu().numpy().astype(np.int64), np.ones((scale, scale), dtype=np.int64)).astype(bool)
        base[m] = 0.5 * base[m] + 0.5 * np.array([0.0, 1.0, 0.0])
    return mark_boundaries(base, seg, color=(1, 1, 0), mode="thin")


def heat_rgb(attr: Tensor) -> np.ndarray:
    """Attribution (C, H, W) summed over channels, shown with a diverging colour map."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import colormaps

    a = attr.detach().cpu().float().sum(0).numpy()
    s = np.abs(a).max() or 1.0
    return colormaps["bwr"]((a / s + 1) / 2)[..., :3]


def save_attack_figures(out: Path, x: Tensor, x_adv: Tensor, lo: float, hi: float, axai_segments: Tensor | None = None,
                        axai_mask: Tensor | None = None, scale: int = 8, prefix: str = "") -> list[str]:
    """Write the attack PNGs for one image (C, H, W); returns the file names."""
    out.mkdir(parents=True, exist_ok=True)
    delta = x_adv - x
    files = [
        _save(out / f"{prefix}original.png", _hwc(x, lo, hi), scale),
        _save(out / f"{prefix}adversarial.png", _hwc(x_adv, lo, hi), scale),
        _save(out / f"{prefix}perturbation_x5.png", perturbation_rgb(delta, lo, hi), scale),
        _save(out / f"{prefix}changed_pixels.png", highlight_rgb(x, delta.abs().sum(0) > 0, lo, hi), scale),
    ]
    if axai_segments is not None:
        files.append(_save(out / f"{prefix}axai_segments.png", segments_rgb(x, axai_segments, axai_mask, lo, hi, scale), 1))
    return [f.name for f in files]


def save_map_figure(out: Path, name: str, x: Tensor, attr: Tensor, lo: float, hi: float, scale: int = 8) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    return [_save(out / "original.png", _hwc(x, lo, hi), scale).name, _save(out / f"{name}.png", heat_rgb(attr), scale).name]


def save_manipulation_grid(path: Path, x: Tensor, x_adv: Tensor, original: Tensor, target: Tensor, manipulated: Tensor,
                           lo: float, hi: float, title: str = "") -> Path:
    """One row per image (at most the first 6): image, its map, the target map, the manipulated
    image and its map (maps (B, H, W), each shown on its own 0..max scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = min(6, len(x))
    heads = ("image", "original map", "target map", "manipulated image", "manipulated map")
    fig, axes = plt.subplots(rows, 5, figsize=(7.5, 1.6 * rows + 0.4), squeeze=False)
    for i in range(rows):
        panels = (_hwc(x[i], lo, hi), original[i], target[i], _hwc(x_adv[i], lo, hi), manipulated[i])
        for j, p in enumerate(panels):
            ax = axes[i][j]
            if isinstance(p, np.ndarray):
                ax.imshow(p)
            else:
                ax.imshow(p.detach().cpu().float().numpy(), cmap="hot", vmin=0)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(heads[j], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def save_image_png(path: Path, img: Tensor, lo: float, hi: float, scale: int = 8) -> Path:
    """One image (C, H, W) in the value range [lo, hi], upscaled ×scale."""
    return _save(path, _hwc(img, lo, hi), scale)


def save_map_png(path: Path, m: Tensor, scale: int = 8) -> Path:
    """One attribution map (H, W) or (C, H, W) with the diverging colour map of :func:`heat_rgb`."""
    return _save(path, heat_rgb(m[None] if m.dim() == 2 else m), scale)
