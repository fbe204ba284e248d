"""What the ``recourse attack`` and ``recourse explain-image`` commands do (cli.py only parses)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recourse.errors import BundleError

from .data import DATASETS
from .models import VisionBundle, demo_vision_bundle, load_bundle


class CommandError(ValueError):
    """Bad input for a command; the message names the field."""


def open_vision_bundle(bundle: Path | None, dataset: str, device: str | None) -> VisionBundle:
    if bundle is not None:
        if not bundle.exists():
            raise CommandError(f"--bundle: {bundle}: no such directory")
        try:
            return load_bundle(bundle, device=device)
        except BundleError as exc:
            raise CommandError(f"--bundle: {exc}") from None
    if dataset not in DATASETS:
        raise CommandError(f"--dataset: unknown data set {dataset!r}; expected one of {', '.join(DATASETS)}")
    return demo_vision_bundle(dataset, device=device)


def read_image(path: Path, shape: tuple[int, int, int], value_range: tuple[float, float]) -> np.ndarray:
    """A PNG/JPEG (scaled from 0..255 to the value range) or .npy image as (1, C, H, W) float32."""
    if not path.is_file():
        raise CommandError(f"--image: {path}: no such file")
    c, h, w = shape
    lo, hi = value_range
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False).astype(np.float32)
        except (ValueError, OSError) as exc:
            raise CommandError(f"--image: {path}: cannot read the array ({exc})") from None
        arr = arr.reshape((1, *arr.shape)) if arr.ndim == 2 else arr
        if arr.shape != (c, h, w):
            raise CommandError(f"--image: {path}: shape {arr.shape} does not fit the model's input {(c, h, w)}")
        if not np.isfinite(arr).all():
            raise CommandError(f"--image: {path}: contains NaN or infinite values")
        return np.clip(arr, lo, hi)[None]
    try:
        from PIL import Image

        img = Image.open(path).convert("L" if c == 1 else "RGB")
    except Exception as exc:  # PIL raises several kinds for unreadable files
        raise CommandError(f"--image: {path}: not a readable image ({exc.__class__.__name__})") from None
    if img.size != (w, h):
        img = img.resize((w, h))
    arr = np.asarray(img, dtype=np.float32) / 255.0
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return (lo + arr * (hi - lo))[None]


def pick_images(vb: VisionBundle, image: Path | None, index: int, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The image file, or ``n`` test images from ``index`` with their labels."""
    shape = tuple(vb.meta["input_shape"])
    if image is not None:
        return torch.as_tensor(read_image(image, shape, vb.value_range)), None
    split = vb.split()
    if not 0 <= index < len(split.y_test):
        raise CommandError(f"--index: {index} is outside the test set [0, {len(split.y_test) - 1}]")
    sl = slice(index, min(index + n, len(split.y_test)))
    return torch.as_tensor(split.x_test[sl]), torch.as_tensor(split.y_test[sl])


def _check_class(name: str, value: int | None) -> None:
    if value is not None and not 0 <= value <= 9:
        raise CommandError(f"{name}: class {value} is outside 0..9")


def run_attack(method: str, *, vb: VisionBundle, image: Path | None, index: int, n: int, target: int | None,
               p: float, norm: str, lam: float | None, out: Path, device: str | None) -> dict[str, Any]:
    from .attacks import fbs_attack, fw_attack, gse_attack, pgd_attack
    from .explain import axai
    from .figures import save_attack_figures
    from .metrics import attack_summary, default_patch

    _check_class("--target", target)
    ad = vb.adapter(device)
    x, labels = pick_images(vb, image, index, n)
    x = x.to(ad.device)
    pred = ad.predict(x)
    labels = pred if labels is None else labels.to(ad.device)
    targets = None if target is None else torch.full_like(pred, target)
    kw: dict[str, Any] = {"targets": targets}
    if lam is not None and method in ("gse", "fbs"):
        kw["lam"] = lam
    if method == "gse":
        res = gse_attack(ad, x, labels, **kw)
    elif method == "fbs":
        res = fbs_attack(ad, x, labels, p=p, search_steps=4, **kw)
    elif method == "pgd":
        res = pgd_attack(ad, x, labels, norm=norm, **kw)
    elif method == "fw":
        res = fw_attack(ad, x, labels, **kw)
    else:
        raise CommandError(f"--method: unknown attack {method!r}; expected gse, fbs, pgd or fw")
    ax = axai(ad, x)
    lo, hi = vb.value_range
    figures = []
    for i in range(len(x)):
        figures += save_attack_figures(out, x[i], res.x_adv[i], lo, hi, ax.segments[i], ax.mask[i], prefix=f"{i:03d}_")
    summary = attack_summary(res.delta, res.success, res.seconds, default_patch(x.shape[-2:]))
    new_pred = ad.predict(res.x_adv)
    report = {"method": res.method, "targeted": res.targeted, "params": res.params, "metrics": summary,
              "images": [{"index": None if image else index + i, "label": int(labels[i]), "prediction": int(pred[i]),
                          "adversarial_prediction": int(new_pred[i]), "success": bool(res.success[i])} for i in range(len(x))],
              "out": str(out), "figures": figures}
    (out / "metrics.json").write_text(json.dumps(report, indent=2, default=float))
    return report


def run_explain(method: str, *, vb: VisionBundle, image: Path | None, index: int, n: int, target: int | None,
                k: int, segmentation: str, out: Path, device: str | None) -> dict[str, Any]:
    from .explain import axai, concept_probe, gradient_attribution
    from .figures import save_attack_figures, save_map_figure

    _check_class("--target", target)
    ad = vb.adapter(device)
    lo, hi = vb.value_range
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"method": method, "out": str(out)}
    if method == "probe":
        classes = list(range(10)) if target is None else [target]
        res = concept_probe(ad, classes, tuple(vb.meta["input_shape"]))
        probs = torch.softmax(ad.logits(res.x_adv), 1).detach()
        figures = []
        for i, cls in enumerate(classes):
            figures += save_attack_figures(out, res.x[i], res.x_adv[i], lo, hi, prefix=f"class{cls}_")
        report.update(classes=classes, probability_of_class=[float(probs[i, c]) for i, c in enumerate(classes)],
                      predicted=[int(v) for v in probs.argmax(1)], params=res.params, seconds=res.seconds, figures=figures)
    else:
        x, labels = pick_images(vb, image, index, n)
        x = x.to(ad.device)
        pred = ad.predict(x)
        report["predictions"] = [int(v) for v in pred]
        if labels is not None:
            report["labels"] = [int(v) for v in labels]
        figures = []
        if method == "axai":
            res = axai(ad, x, k=k, segmentation=segmentation)
            for i in range(len(x)):
                figures += save_attack_figures(out, x[i], x[i] + res.delta[i], lo, hi, res.segments[i], res.mask[i], prefix=f"{i:03d}_")
            report.update(top_segments=res.top.tolist(), density=[[round(float(v), 4) for v in row if v >= 0] for row in res.density],
                          explained_pixels=[int(v) for v in res.mask.flatten(1).sum(1)], seconds=res.seconds, segmentation=segmentation)
        else:
            tgt = None if target is None else torch.full_like(pred, target)
            maps = gradient_attribution(ad, x, method, tgt)
            for i in range(len(x)):
                figures += [f"{i:03d}_{f}" for f in save_map_figure(out / "tmp", method, x[i], maps[i], lo, hi)]
                for f in (out / "tmp").iterdir():
                    f.replace(out / f"{i:03d}_{f.name}")
            (out / "tmp").rmdir()
            report["attribution_abs_sum"] = [float(v) for v in maps.abs().flatten(1).sum(1)]
        report["figures"] = figures
    (out / "metrics.json").write_text(json.dumps(report, indent=2, default=float))
    return report
