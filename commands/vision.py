"""What the ``recourse attack`` and ``recourse explain-image`` commands do (cli.py parses and prints).

Output folder (``--out``): created with its parents when missing.  An existing folder is used
only when everything in it is a file these commands write (``metrics.json`` with a report of
ours, ``NNN_*.png``, ``NNN_*.npy``, ``classC_*.png``), i.e. a new or empty folder or the output of an earlier
run, whose files of the same names are replaced; a folder holding anything else is refused, so
a user's own files are never overwritten.
"""
from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from recourse.data import prepare_out_dir
from recourse.errors import BundleError
from recourse.runtime import parse_device
from recourse.vision.data import DATASETS
from recourse.vision.models import VisionBundle, demo_vision_bundle, load_bundle

from . import CommandError

if TYPE_CHECKING:
    from recourse.bundle import StageProgress
    from recourse.vision.attacks import AttackResult

FBS_P = (0.0, 0.5, 2.0 / 3.0, 1.0)
DEFAULT_P = 0.5
"""FBS's default exponent; GSE's penalty is always ℓ½."""
OWN_OUTPUT = re.compile(r"metrics\.json|(\d{3,}|class\d+)_[a-z0-9_]+\.(png|npy)")
"""Names of the files the two commands write into ``--out``."""
ATTACK_BATCH = 64
"""Images per call of an attack (gse, fbs, pgd, fw): more images are attacked in batches of this
many, so that a progress bar can count them (each image's attack is independent of the others)."""


def check_device(device: str | torch.device | None) -> torch.device:
    """The ``--device`` value as a torch device (default cpu), refused when unknown or absent here."""
    try:
        return parse_device(device)
    except ValueError as exc:
        raise CommandError(f"--{exc}") from None


def open_vision_bundle(bundle: Path | None, dataset: str, device: str | None) -> VisionBundle:
    """The ``--bundle`` directory, else the data set's demo CNN (trained on first use and when damaged)."""
    dev = check_device(device)
    if bundle is not None:
        if not bundle.exists():
            raise CommandError(f"--bundle: {bundle}: no such directory")
        try:
            return load_bundle(bundle, device=dev)
        except BundleError as exc:
            raise CommandError(f"--bundle: {exc}") from None
    if dataset not in DATASETS:
        raise CommandError(f"--dataset: unknown data set {dataset!r}; expected one of {', '.join(DATASETS)}")
    try:
        return demo_vision_bundle(dataset, device=dev)
    except (BundleError, OSError) as exc:
        raise CommandError(f"--dataset: the {dataset} demo bundle cannot be built or loaded ({exc})") from None


def prepare_out(out: Path) -> Path:
    """Create ``--out`` (and its parents) or check that an existing folder holds only our outputs."""
    prepare_out_dir(out, _foreign_outputs, "outputs of attack or explain-image", CommandError)
    return out


def _foreign_outputs(out: Path) -> list[str]:
    """Entries of ``out`` these commands did not write (a metrics.json counts only if it is our report)."""
    foreign = [p.name for p in out.iterdir() if not (p.is_file() and OWN_OUTPUT.fullmatch(p.name))]
    if (out / "metrics.json").is_file() and not _is_our_report(out / "metrics.json"):
        foreign.append("metrics.json")
    return foreign


def _is_our_report(file: Path) -> bool:
    try:
        doc = json.loads(file.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and {"method", "out"} <= set(doc)


def read_image(path: Path, shape: tuple[int, int, int], value_range: tuple[float, float]) -> np.ndarray:
    """A PNG/JPEG (scaled from 0..255 to the value range) or .npy image (already in the value
    range; refused otherwise) as (1, C, H, W) float32."""
    if not path.is_file():
        raise CommandError(f"--image: {path}: no such file")
    c, h, w = shape
    lo, hi = value_range
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False).astype(np.float32)
        except (ValueError, TypeError, OSError) as exc:
            raise CommandError(f"--image: {path}: cannot read the array ({exc})") from None
        arr = arr.reshape((1, *arr.shape)) if arr.ndim == 2 else arr
        if arr.shape != (c, h, w):
            raise CommandError(f"--image: {path}: shape {arr.shape} does not fit the model's input {(c, h, w)}")
        if not np.isfinite(arr).all():
            raise CommandError(f"--image: {path}: contains NaN or infinite values")
        found_lo, found_hi = float(arr.min()), float(arr.max())
        slack = 1e-6 * (hi - lo)  # float round-off only
        if found_lo < lo - slack or found_hi > hi + slack:
            raise CommandError(f"--image: {path}: values lie in [{found_lo:g}, {found_hi:g}], outside the model's value "
                               f"range [{lo:g}, {hi:g}]; scale the array into it (PNG/JPEG files are scaled automatically)")
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


def pick_images(vb: VisionBundle, image: Path | None, index: int, n: int,
                notes: list[str] | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The image file, or ``n`` test images from ``index`` with their labels (fewer at the end of
    the test set, said in ``notes``)."""
    shape = tuple(vb.meta["input_shape"])
    if image is not None:
        return torch.as_tensor(read_image(image, shape, vb.value_range)), None
    split = vb.split()
    size = len(split.y_test)
    if not 0 <= index < size:
        raise CommandError(f"--index: {index} is outside the test set [0, {size - 1}]")
    if n < 1:
        raise CommandError(f"--n: must be at least 1, got {n}")
    sl = slice(index, min(index + n, size))
    if notes is not None and sl.stop - sl.start < n:
        notes.append(f"--n {n}: the test set ends at image {size - 1}, so {sl.stop - sl.start} image(s) from --index {index} were used")
    return torch.as_tensor(split.x_test[sl]), torch.as_tensor(split.y_test[sl])


def _image_entries(image: Path | None, index: int, count: int) -> list[dict[str, Any]]:
    """Where each image came from: its test-set index, or the file name."""
    return [{"index": None, "file": image.name} if image is not None else {"index": index + i, "file": None}
            for i in range(count)]


def _image_name(entry: dict[str, Any]) -> str:
    return str(entry["file"] if entry.get("file") else entry["index"])


def attack_text(report: dict[str, Any]) -> str:
    """The text the ``attack`` command prints for a :func:`run_attack` report."""
    if report["method"].startswith("manipulate"):
        return manipulate_text(report)
    m = report["metrics"]
    lines = [f"{report['method']}: ASR {100 * m['asr']:.0f} %, changed pixels {m['acp']:.1f}, clusters {m['anc']:.2f}, "
             f"l2 {m['l2']:.3f}, d20 {m['d20']:.1f}, {1000 * m['seconds_per_image']:.0f} ms/image"]
    for im in report["images"]:
        lines.append(f"  image {_image_name(im)}: label {im['label']}, prediction {im['prediction']} -> "
                     f"{im['adversarial_prediction']} ({'fooled' if im['success'] else 'not fooled'})")
    lines += [f"note: {note}" for note in report.get("notes", [])]
    lines.append(f"figures and metrics.json in {report['out']}")
    return "\n".join(lines)


def explain_text(report: dict[str, Any]) -> str:
    """The text the ``explain-image`` command prints for a :func:`run_explain` report."""
    images = report.get("images")
    what = f" for {len(images)} image(s) ({', '.join(_image_name(im) for im in images)})" if images else ""
    lines = [f"{report['method']}: {len(report.get('figures', []))} figures{what} and metrics.json in {report['out']}"]
    lines += [f"note: {note}" for note in report.get("notes", [])]
    return "\n".join(lines)


def _check_class(name: str, value: int | None) -> None:
    if value is not None and not 0 <= value <= 9:
        raise CommandError(f"{name}: class {value} is outside 0..9")


def run_attack(method: str, *, vb: VisionBundle, image: Path | None, index: int, n: int, target: int | None,
               p: float | None, norm: str | None, lam: float | None, out: Path, device: str | None,
               explainer: str | None = None, target_map: Path | None = None, target_image: int | None = None,
               eps: float | None = None, progress: "StageProgress | None" = None) -> dict[str, Any]:
    """Attack the images, write the figures and ``metrics.json`` into ``out``; returns the report.

    ``p`` (FBS only; default 0.5) and ``lam`` (GSE and FBS only) given to another method are
    ignored with a note in the report's ``notes``.  ``manipulate`` attacks an explanation
    instead (:func:`run_manipulate`); ``norm`` defaults to l2 for pgd, linf for manipulate.
    More than :data:`ATTACK_BATCH` images are attacked in batches of that many.  ``progress``:
    told ``progress(done, total, stage)`` over the images of each phase (attack, AXAI, figures).
    """
    if method == "manipulate":
        return run_manipulate(vb=vb, image=image, index=index, n=n, explainer=explainer, target_map=target_map,
                              target_image=target_image, eps=eps, norm=norm, out=out, device=device, progress=progress)
    norm = norm or "l2"
    unused = [flag for flag, v in (("--explainer", explainer), ("--target-map", target_map), ("--target-image", target_image),
                                   ("--eps", eps)) if v is not None]
    from recourse.vision.attacks import fbs_attack, fw_attack, gse_attack, pgd_attack
    from recourse.vision.explain import axai
    from recourse.vision.figures import save_attack_figures
    from recourse.vision.metrics import attack_summary, default_patch

    if method not in ("gse", "fbs", "pgd", "fw"):
        raise CommandError(f"--method: unknown attack {method!r}; expected gse, fbs, pgd, fw or manipulate")
    _check_class("--target", target)
    notes: list[str] = [f"{', '.join(unused)} ignored: only --method manipulate takes {'it' if len(unused) == 1 else 'them'}"] if unused else []
    if method == "fbs" and p is not None and not any(abs(p - v) < 1e-6 for v in FBS_P):
        raise CommandError(f"--p: must be 0, 0.5, 2/3 or 1, got {p:g}")
    if method != "fbs" and p is not None and p != DEFAULT_P:
        notes.append(f"--p {p:g} is ignored: only fbs takes a penalty exponent (gse always uses p = 1/2; pgd and fw have none)")
    if lam is not None and method not in ("gse", "fbs"):
        notes.append(f"--lambda {lam:g} is ignored: only gse and fbs take a λ")
    ad = vb.adapter(check_device(device))
    x, labels = pick_images(vb, image, index, n, notes)
    prepare_out(out)
    x = x.to(ad.device)
    pred = ad.predict(x)
    labels = pred if labels is None else labels.to(ad.device)
    targets = None if target is None else torch.full_like(pred, target)
    kw: dict[str, Any] = {}
    if lam is not None and method in ("gse", "fbs"):
        kw["lam"] = lam
    if method == "fbs":
        kw.update(p=DEFAULT_P if p is None else p, search_steps=4)
    elif method == "pgd":
        kw["norm"] = norm
    attack = {"gse": gse_attack, "fbs": fbs_attack, "pgd": pgd_attack, "fw": fw_attack}[method]
    tell = progress or (lambda done, total, stage: None)
    res = attack_in_batches(lambda xs, ys, ts: attack(ad, xs, ys, targets=ts, **kw), x, labels, targets,
                            progress=lambda done, total: tell(done, total, f"{method} attack"))
    tell(0, len(x), "AXAI segments")
    ax = axai(ad, x)
    lo, hi = vb.value_range
    figures = []
    for i in range(len(x)):
        tell(i, len(x), "figures")
        figures += save_attack_figures(out, x[i], res.x_adv[i], lo, hi, ax.segments[i], ax.mask[i], prefix=f"{i:03d}_")
    tell(len(x), len(x), "done")
    summary = attack_summary(res.delta, res.success, res.seconds, default_patch(x.shape[-2:]))
    new_pred = ad.predict(res.x_adv)
    images = [{**where, "label": int(labels[i]), "prediction": int(pred[i]), "adversarial_prediction": int(new_pred[i]),
               "success": bool(res.success[i])} for i, where in enumerate(_image_entries(image, index, len(x)))]
    report = {"method": res.method, "targeted": res.targeted, "params": res.params, "metrics": summary,
              "n_images": len(x), "images": images, "notes": notes, "out": str(out), "figures": figures}
    (out / "metrics.json").write_text(json.dumps(report, indent=2, default=float))
    return report


def attack_in_batches(attack: Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], "AttackResult"],
                      x: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor | None, *,
                      progress: Callable[[int, int], None] | None = None,
                      batch: int = ATTACK_BATCH) -> "AttackResult":
    """``attack(x, labels, targets)`` on at most ``batch`` images at a time, the results joined in
    order (wall time summed); ``progress(done, total)`` is told before each batch and at the end."""
    from recourse.vision.attacks import AttackResult

    parts = []
    for start in range(0, len(x), batch):
        if progress is not None:
            progress(start, len(x))
        part = slice(start, start + batch)
        parts.append(attack(x[part], labels[part], None if targets is None else targets[part]))
    if progress is not None:
        progress(len(x), len(x))
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    return AttackResult(torch.cat([r.x for r in parts]), torch.cat([r.x_adv for r in parts]),
                        torch.cat([r.success for r in parts]), torch.cat([r.aims for r in parts]), first.targeted,
                        sum(r.seconds for r in parts), first.method, first.params)


def run_explain(method: str, *, vb: VisionBundle, image: Path | None, index: int, n: int, target: int | None,
                k: int, segmentation: str, out: Path, device: str | None) -> dict[str, Any]:
    """Explain the images (or probe the classes), write the figures and ``metrics.json`` into ``out``.

    AXAI keeps at most ``k`` segments per image: all of them where an image has fewer (a note says so).
    """
    from recourse.vision.explain import axai, concept_probe, gradient_attribution
    from recourse.vision.figures import save_attack_figures, save_map_figure

    if method not in ("axai", "probe", "saliency", "smoothgrad", "ig", "gradcam"):
        raise CommandError(f"--method: unknown explainer {method!r}; expected axai, probe, saliency, smoothgrad, ig or gradcam")
    _check_class("--target", target)
    if k < 1:
        raise CommandError(f"--k: must be at least 1, got {k}")
    ad = vb.adapter(check_device(device))
    lo, hi = vb.value_range
    notes: list[str] = []
    report: dict[str, Any] = {"method": method, "out": str(out), "notes": notes}
    if method == "probe":
        if image is not None:
            notes.append("--image is not used by --method probe (it starts from noise)")
        prepare_out(out)
        classes = list(range(10)) if target is None else [target]
        res = concept_probe(ad, classes, tuple(vb.meta["input_shape"]))
        probs = torch.softmax(ad.logits(res.x_adv), 1).detach()
        figures = []
        for i, cls in enumerate(classes):
            figures += save_attack_figures(out, res.x[i], res.x_adv[i], lo, hi, prefix=f"class{cls}_")
        report.update(classes=classes, probability_of_class=[float(probs[i, c]) for i, c in enumerate(classes)],
                      predicted=[int(v) for v in probs.argmax(1)], params=res.params, seconds=res.seconds, figures=figures)
    else:
        x, labels = pick_images(vb, image, index, n, notes)
        prepare_out(out)
        x = x.to(ad.device)
        pred = ad.predict(x)
        report.update(n_images=len(x), images=_image_entries(image, index, len(x)), predictions=[int(v) for v in pred])
        if labels is not None:
            report["labels"] = [int(v) for v in labels]
        figures = []
        if method == "axai":
            res = axai(ad, x, k=k, segmentation=segmentation)
            for i in range(len(x)):
                figures += save_attack_figures(out, x[i], x[i] + res.delta[i], lo, hi, res.segments[i], res.mask[i], prefix=f"{i:03d}_")
            segments = [int(v) for v in (res.density >= 0).sum(1)]
            kept = [min(k, s) for s in segments]
            if k > min(segments):
                notes.append(f"--k {k}: {'every image has' if k > max(segments) else 'some images have'} fewer segments "
                             f"({min(segments)} to {max(segments)}); all segments of those images were kept")
            report.update(k=k, segments_kept=kept, top_segments=[row[:c] for row, c in zip(res.top.tolist(), kept)],
                          density=[[round(float(v), 4) for v in row if v >= 0] for row in res.density],
                          explained_pixels=[int(v) for v in res.mask.flatten(1).sum(1)], seconds=res.seconds, segmentation=segmentation)
        else:
            tgt = None if target is None else torch.full_like(pred, target)
            maps = gradient_attribution(ad, x, method, tgt)
            with tempfile.TemporaryDirectory() as tmp:  # save_map_figure's fixed names, renamed per image
                for i in range(len(x)):
                    for name in save_map_figure(Path(tmp), method, x[i], maps[i], lo, hi):
                        shutil.move(str(Path(tmp) / name), str(out / f"{i:03d}_{name}"))
                        figures.append(f"{i:03d}_{name}")
            report["attribution_abs_sum"] = [float(v) for v in maps.abs().flatten(1).sum(1)]
        report["figures"] = figures
    (out / "metrics.json").write_text(json.dumps(report, indent=2, default=float))
    return report


def parse_budgets(text: str) -> tuple[float, ...]:
    """``--eps``: comma-separated positive budgets."""
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise CommandError(f"--eps: expected comma-separated positive numbers, got {text!r}") from None
    if not values or min(values) <= 0 or not all(np.isfinite(values)):
        raise CommandError(f"--eps: give at least one positive, finite budget, got {text!r}")
    return values


MANIPULATE_EPS = {"linf": 0.1, "l2": 1.0}
"""Default budget of ``--method manipulate`` per norm (pixels in [0, 1])."""


def _target_map_file(path: Path, hw: tuple[int, int]) -> torch.Tensor:
    """``--target-map``: a .npy array (H, W) or (1, H, W), finite, not all zero; its absolute value is used."""
    if not path.is_file():
        raise CommandError(f"--target-map: {path}: no such file")
    if path.suffix.lower() != ".npy":
        raise CommandError(f"--target-map: {path}: expected a .npy array of shape {hw}")
    try:
        arr = np.load(path, allow_pickle=False).astype(np.float32)
    except (ValueError, TypeError, OSError) as exc:
        raise CommandError(f"--target-map: {path}: cannot read the array ({exc})") from None
    arr = arr[0] if arr.ndim == 3 and arr.shape[0] == 1 else arr
    if arr.shape != hw:
        raise CommandError(f"--target-map: {path}: shape {arr.shape} does not fit the images' {hw}")
    if not np.isfinite(arr).all():
        raise CommandError(f"--target-map: {path}: contains NaN or infinite values")
    if not np.abs(arr).sum() > 0:
        raise CommandError(f"--target-map: {path}: the map is all zero")
    return torch.as_tensor(np.abs(arr))


def run_manipulate(*, vb: VisionBundle, image: Path | None, index: int, n: int, explainer: str | None,
                   target_map: Path | None, target_image: int | None, eps: float | None, norm: str | None,
                   out: Path, device: str | None, progress: "StageProgress | None" = None) -> dict[str, Any]:
    """``attack --method manipulate``: drive the explanation to a target map (``target_map`` file or
    the map of test image ``target_image``) or, with neither, away from itself (top-k fragility
    attack), keeping the predicted class; writes images, maps (.npy + PNG) and ``metrics.json``.

    The images are attacked in one call (SmoothGrad's noise is drawn for the whole batch);
    ``progress(done, total, stage)`` is told before the attack, the maps and each image's files."""
    from recourse.vision.explain import axai_density_map, gradient_attribution
    from recourse.vision.figures import save_image_png, save_map_png
    from recourse.vision.manipulation import EXPLAINERS, axai_attack, default_k, fragility_attack, target_map_attack
    from recourse.vision.map_metrics import fragility, similarity, to_map

    names = ", ".join(EXPLAINERS) + ", axai"
    if explainer is None:
        raise CommandError(f"--explainer: --method manipulate needs the explainer to attack: {names}")
    if explainer == "axai" and norm not in (None, "linf"):
        raise CommandError("--norm: AXAI is attacked by a black-box random search in the linf ball only")
    if explainer not in EXPLAINERS and explainer != "axai":
        raise CommandError(f"--explainer: unknown explainer {explainer!r}; expected one of {names}")
    if target_map is not None and target_image is not None:
        raise CommandError("--target-map and --target-image: give one of them, not both")
    norm = norm or "linf"
    eps = MANIPULATE_EPS[norm] if eps is None else eps
    if not (eps > 0 and np.isfinite(eps)):
        raise CommandError(f"--eps: must be a positive number, got {eps:g}")
    ad = vb.adapter(check_device(device))
    notes: list[str] = []
    x, labels = pick_images(vb, image, index, n, notes)
    hw = tuple(vb.meta["input_shape"][1:])
    mt = None
    if target_map is not None:
        mt = _target_map_file(target_map, hw).to(ad.device)
    elif target_image is not None:
        split = vb.split()
        if not 0 <= target_image < len(split.y_test):
            raise CommandError(f"--target-image: {target_image} is outside the test set [0, {len(split.y_test) - 1}]")
        xt = torch.as_tensor(split.x_test[target_image:target_image + 1], device=ad.device)
        mt = (axai_density_map(ad, xt)[0][0] if explainer == "axai"
              else to_map(gradient_attribution(ad, xt, explainer, ad.predict(xt)))[0])
    prepare_out(out)
    x = x.to(ad.device)
    pred = ad.predict(x)

    def report_map(imgs: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(0)
        if explainer == "axai":
            return axai_density_map(ad, imgs)[0]
        return to_map(gradient_attribution(ad, imgs, explainer, pred))

    tell = progress or (lambda done, total, stage: None)
    tell(0, len(x), f"manipulate-{explainer} attack")
    if explainer == "axai":  # no gradient: a black-box random search on AXAI's own map
        res = axai_attack(ad, x, eps=eps, target_map=mt)
    elif mt is None:
        res = fragility_attack(ad, x, explainer, eps=eps, norm=norm)
    else:
        res = target_map_attack(ad, x, mt, explainer, eps=eps, norm=norm)
    tell(0, len(x), "maps")
    m0, m1 = report_map(x), report_map(res.x_adv)
    k = default_k(hw)
    frag = fragility(m0, m1, k)
    sim_t = similarity(m1, mt.expand_as(m1)) if mt is not None else None
    sim_t0 = similarity(m0, mt.expand_as(m0)) if mt is not None else None
    lo, hi = vb.value_range
    figures: list[str] = []
    images = []
    for i, where in enumerate(_image_entries(image, index, len(x))):
        tell(i, len(x), "files")
        files = {"original.png": save_image_png(out / f"{i:03d}_original.png", x[i], lo, hi),
                 "manipulated.png": save_image_png(out / f"{i:03d}_manipulated.png", res.x_adv[i], lo, hi),
                 "original_map.png": save_map_png(out / f"{i:03d}_original_map.png", m0[i]),
                 "manipulated_map.png": save_map_png(out / f"{i:03d}_manipulated_map.png", m1[i])}
        arrays = {"manipulated": res.x_adv[i], "original_map": m0[i], "manipulated_map": m1[i]}
        if mt is not None:
            files["target_map.png"] = save_map_png(out / f"{i:03d}_target_map.png", mt)
            arrays["target_map"] = mt
        for name, arr in arrays.items():
            np.save(out / f"{i:03d}_{name}.npy", arr.detach().cpu().numpy())
            figures.append(f"{i:03d}_{name}.npy")
        figures += [f.name for f in files.values()]
        entry = {**where, "prediction": int(pred[i]), "manipulated_prediction": int(res.pred_after[i]),
                 "prediction_kept": bool(res.kept[i]), "linf": float((res.x_adv[i] - x[i]).abs().max()),
                 "l2": float((res.x_adv[i] - x[i]).norm()), **{f"{key}": float(v[i]) for key, v in frag.items()}}
        if labels is not None:
            entry["label"] = int(labels[i])
        if sim_t is not None and sim_t0 is not None:
            entry.update({f"to_target_{key}": float(v[i]) for key, v in sim_t.items()})
            entry.update({f"to_target_{key}_before": float(v[i]) for key, v in sim_t0.items()})
        images.append(entry)
    tell(len(x), len(x), "done")
    mode = "fragility (top-k)" if mt is None else ("target map from --target-map" if target_map is not None else
                                                  f"target map of test image {target_image}")
    summary = {key: float(v.mean()) for key, v in frag.items()}
    if sim_t is not None and sim_t0 is not None:
        summary.update({f"to_target_{key}": float(v.mean()) for key, v in sim_t.items()})
        summary.update({f"to_target_{key}_before": float(v.mean()) for key, v in sim_t0.items()})
    summary["prediction_kept"] = float(res.kept.float().mean())
    report = {"method": f"manipulate-{explainer}", "explainer": explainer, "mode": mode, "params": res.params, "k": k,
              "metrics": summary, "seconds": res.seconds, "n_images": len(x), "images": images, "notes": notes,
              "out": str(out), "figures": figures,
              "maps": "captum on the real network; the attack differentiates a softplus copy of it"}
    (out / "metrics.json").write_text(json.dumps(report, indent=2, default=float))
    return report


def manipulate_text(report: dict[str, Any]) -> str:
    """The text ``attack --method manipulate`` prints."""
    m = report["metrics"]
    p = report["params"]
    line = (f"{report['method']} ({report['mode']}, {p['norm']} eps {p['eps']:g}): prediction kept {100 * m['prediction_kept']:.0f} %, "
            f"top-k overlap {m['topk']:.2f}, Spearman {m['spearman']:.2f}, centre-of-mass shift {m['com_shift']:.2f} px")
    if "to_target_pearson" in m:
        line += f", Pearson to the target {m['to_target_pearson_before']:.2f} -> {m['to_target_pearson']:.2f}"
    lines = [line] + [f"note: {note}" for note in report.get("notes", [])]
    lines.append(f"images, maps (.npy, PNG) and metrics.json in {report['out']}")
    return "\n".join(lines)
