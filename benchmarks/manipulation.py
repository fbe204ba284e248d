"""``recourse bench manipulation``: can attribution maps be trusted? (Dombrowski et al. 2019; Ghorbani et al. 2019)

On the first ``n`` correctly classified test images of the data set's CNN bundle, for each
gradient explainer (and two β-smoothed defences) and each ε budget:

* **target-map attack** — the target map of image i is the same explainer's map of another
  test image with a different label (the next such image in the selection); *success* = the
  reported map of x + δ has Pearson correlation ≥ ``threshold`` with the target and the
  predicted class is unchanged (always true here: the attack keeps only perturbations that keep
  it).  The share before the attack (δ = 0) is given too.  MSE, SSIM and Pearson to the target
  and to the original map.
* **fragility (top-k) attack** — top-k intersection, Spearman and centre-of-mass shift between
  the maps of x and x + δ; the same for a random sign perturbation of the same ε (baseline).
* **AXAI** — AXAI is not differentiable: it is attacked directly by a black-box random search on
  its own density map (:func:`recourse.vision.manipulation.axai_attack`: fragility, and toward
  the next image's AXAI map), and its map is compared on the perturbations found against each
  gradient explainer (transfer) and on the random ones.

The maps that are scored are the *real* network's, from captum (:func:`recourse.vision.explain.gradient_attribution`;
SmoothGrad with fresh noise, IG with 32 nodes), not the attack's surrogate.
"""
from __future__ import annotations

import math
import platform
import time
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor

from benchmarks.common import correct_test_images
from benchmarks.progress import Steps
from recourse.vision.adapter import ImageAdapter
from recourse.vision.explain import axai_density_map, gradient_attribution
from recourse.vision.manipulation import (ATTACK_BETA, EXPLAINERS, ExplainerSettings, axai_attack, default_k,
                                          fragility_attack, random_perturbation, target_map_attack)
from recourse.vision.map_metrics import fragility, pearson, similarity, to_map
from recourse.vision.models import demo_vision_bundle, load_bundle
from recourse.vision.smooth import softplus_copy

DEFENCE_BETA = 2.0
"""β of the smoothed (softplus) explanations measured as a defence."""


def other_label_partner(labels: Tensor) -> Tensor:
    """(B,) index of the next image (cyclically) whose label differs from image i's (i itself if none)."""
    b = len(labels)
    idx = torch.arange(b, device=labels.device)
    partner = idx.clone()
    found = torch.zeros(b, dtype=torch.bool, device=labels.device)
    for shift in range(1, b):
        cand = (idx + shift) % b
        new = ~found & (labels[cand] != labels)
        partner[new] = cand[new]
        found |= new
        if bool(found.all()):
            break
    return partner


def _mean(v: Tensor) -> float:
    return float(v.float().mean()) if v.numel() else math.nan


def _stats(prefix: str, d: dict[str, Tensor], mask: Tensor | None = None) -> dict[str, float]:
    return {f"{prefix}{k}": _mean(v if mask is None else v[mask]) for k, v in d.items()}




def _mask_iou(a: Tensor, b: Tensor) -> Tensor:
    inter = (a & b).flatten(1).sum(1).float()
    union = (a | b).flatten(1).sum(1).float().clamp_min(1)
    return inter / union


def run_manipulation_benchmark(n: int = 200, *, dataset: str = "mnist", bundle: str | None = None,
                               eps: Sequence[float] = (0.05, 0.1), norm: str = "linf", steps: int = 20, phases: int = 2,
                               ig_steps: int = 4, sg_samples: int = 4, threshold: float = 0.8,
                               defence_beta: float = DEFENCE_BETA, explainers: Sequence[str] = EXPLAINERS,
                               defences: bool = True, with_axai: bool = True, axai_queries: int = 40,
                               out: Path | None = None,
                               device: str | None = None, seed: int = 0, progress: Any = None) -> dict[str, Any]:
    """Run the benchmark; returns a JSON-able dict (see :func:`format_manipulation_table`).

    ``out``: folder for the figures (``manipulation_<explainer>.png``: original map, target map,
    manipulated map for the first images at the largest ε); ``None`` writes none.  ``progress``:
    told ``progress(done, total, stage)`` before each explainer and budget (:mod:`benchmarks.progress`;
    None: silent).
    """
    t_start = time.perf_counter()
    defended = [m for m in ("saliency", "gradxinput") if m in explainers] if defences else []
    step = Steps(progress, 2 + (len(explainers) + len(defended)) * len(eps))
    step("bundle and images")
    vb = load_bundle(bundle, device=device) if bundle else demo_vision_bundle(dataset, device=device)
    ad = vb.adapter(device)
    _, x, y = correct_test_images(vb, ad, n, seed)
    pred = ad.predict(x)
    partner = other_label_partner(y)
    x_t = x[partner]
    k = default_k(x.shape[-2:])
    settings = ExplainerSettings(ig_steps=ig_steps, sg_samples=sg_samples, seed=seed)
    lo, hi = vb.value_range
    result: dict[str, Any] = {
        "dataset": vb.dataset, "bundle": str(vb.path), "test_accuracy": vb.meta.get("test_accuracy"), "n": int(len(x)),
        "device": str(ad.device), "torch_threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
        "eps": [float(e) for e in eps], "norm": norm, "steps": steps, "phases": phases, "attack_beta": ATTACK_BETA,
        "defence_beta": defence_beta, "ig_steps_attack": ig_steps, "sg_samples_attack": sg_samples, "k": k,
        "threshold": threshold, "success": f"prediction unchanged and Pearson(manipulated map, target map) >= {threshold}",
        "targets": "the same explainer's map of the next selected test image with a different label",
        "reported_maps": "captum on the real network (SmoothGrad 20 fresh draws, sigma 0.15; IG 32 Gauss-Legendre nodes)",
        "rows": [], "axai": [], "figures": [],
    }
    step("random perturbations" + (" and AXAI maps" if with_axai else ""))
    random_x = {e: random_perturbation(ad, x, eps=e, norm=norm, seed=seed + 1) for e in eps}
    axai_ref = axai_density_map(ad, x) if with_axai else None
    axai_target = axai_density_map(ad, x_t)[0] if with_axai else None
    if with_axai:
        for e in eps:
            result["axai"].append(_axai_row(ad, "random sign", "random", e, random_x[e], axai_ref, None, None, pred, k))
            if axai_queries and norm == "linf":  # AXAI itself, black box: random search on its own map
                step(f"AXAI attacked directly, eps {e:g}, {axai_queries} queries")
                t0 = time.perf_counter()
                direct = axai_attack(ad, x, eps=e, queries=axai_queries, k=k, seed=seed)
                row = _axai_row(ad, f"AXAI attacked directly, fragility ({axai_queries} queries)", "direct", e,
                                direct.x_adv, axai_ref, None, direct.kept, pred, k)
                aimed = axai_attack(ad, x, eps=e, queries=axai_queries, k=k, target_map=axai_target, seed=seed)
                aimed_row = _axai_row(ad, f"AXAI attacked directly, target map ({axai_queries} queries)", "direct-target",
                                      e, aimed.x_adv, axai_ref, axai_target, aimed.kept, pred, k, threshold)
                row["seconds"] = aimed_row["seconds"] = round((time.perf_counter() - t0) / 2, 1)
                result["axai"] += [row, aimed_row]
    specs: list[tuple[str, str, float | None]] = [(m, m, None) for m in explainers]
    if defences:
        specs += [(f"{m}, softplus β={defence_beta:g}", m, defence_beta) for m in ("saliency", "gradxinput") if m in explainers]
    for label, method, beta in specs:
        rep_ad = ad if beta is None else ImageAdapter(softplus_copy(ad.model, beta), lo, hi, device=ad.device)

        def report(imgs: Tensor, cls: Tensor = pred, rep_ad: ImageAdapter = rep_ad, method: str = method) -> Tensor:
            torch.manual_seed(seed + 7)  # SmoothGrad's draws: fresh, but reproducible
            return to_map(gradient_attribution(rep_ad, imgs, method, cls))

        m0 = report(x)
        mt = report(x_t, pred[partner])
        base = {"explainer": label, "method": method, "defence_beta": beta}
        if beta is not None:
            base["clean_pearson_with_relu_map"] = _mean(pearson(m0, to_map(gradient_attribution(ad, x, method, pred))))
        for e in eps:
            step(f"{label}, eps {e:g}, {len(x)} images")
            t0 = time.perf_counter()
            tr = target_map_attack(ad, x, mt, method, eps=e, norm=norm, steps=steps, phases=phases, settings=settings,
                                   attack_beta=beta)
            ma = report(tr.x_adv)
            t1 = time.perf_counter()
            fr = fragility_attack(ad, x, method, k=k, eps=e, norm=norm, steps=steps, phases=phases, settings=settings,
                                  attack_beta=beta)
            mf = report(fr.x_adv)
            t2 = time.perf_counter()
            pcc_before, pcc_after = pearson(m0, mt), pearson(ma, mt)
            rnd_kept = ad.predict(random_x[e]) == pred
            row = {**base, "eps": e,
                   "success_rate": _mean(tr.kept & (pcc_after >= threshold)), "success_rate_before": _mean(pcc_before >= threshold),
                   "prediction_kept_target": _mean(tr.kept), "prediction_kept_fragility": _mean(fr.kept),
                   "pearson_target_before": _mean(pcc_before),
                   **_stats("to_target_", similarity(ma, mt)), **_stats("to_original_", similarity(ma, m0)),
                   **_stats("frag_", fragility(m0, mf, k)),
                   **_stats("random_", fragility(m0, report(random_x[e]), k), rnd_kept),
                   "random_prediction_kept": _mean(rnd_kept),
                   "linf_target": _mean((tr.delta).flatten(1).abs().amax(1)),
                   "seconds_target": t1 - t0, "seconds_fragility": t2 - t1}
            result["rows"].append(row)
            if with_axai and beta is None:
                result["axai"].append(_axai_row(ad, f"from {label} target-map attack", "target", e, tr.x_adv, axai_ref,
                                                axai_target, tr.kept, pred, k))
                result["axai"].append(_axai_row(ad, f"from {label} fragility attack", "fragility", e, fr.x_adv, axai_ref,
                                                None, fr.kept, pred, k))
            if out is not None and e == max(eps):
                from recourse.vision.figures import save_manipulation_grid

                out.mkdir(parents=True, exist_ok=True)
                name = "manipulation_" + label.replace(", softplus β=", "_softplus").replace(".", "p") + ".png"
                save_manipulation_grid(out / name, x, tr.x_adv, m0, mt, ma, lo, hi,
                                       title=f"{label}, target-map attack, {norm} eps={e:g}")
                result["figures"].append(str(out / name))
    result["summary"] = _summary(result)
    result["seconds"] = time.perf_counter() - t_start
    step.finish()
    return result


def _axai_row(ad: ImageAdapter, source: str, kind: str, e: float, x_adv: Tensor, ref: tuple[Tensor, Tensor],
              target_map: Tensor | None, kept: Tensor | None, pred: Tensor, k: int,
              threshold: float | None = None) -> dict[str, Any]:
    """AXAI's figures for perturbed images; with ``threshold`` (and a target map) also the success
    rate: the class kept and Pearson(map, target) ≥ threshold."""
    dens0, mask0 = ref
    dens, mask = axai_density_map(ad, x_adv)
    keep = (ad.predict(x_adv) == pred) if kept is None else kept
    frag = fragility(dens0, dens, k)
    row = {"source": source, "kind": kind, "eps": e, "prediction_kept": _mean(keep),
           **_stats("frag_", frag, keep), "mask_iou": _mean(_mask_iou(mask0, mask)[keep])}
    if target_map is not None:
        row["pearson_target_before"] = _mean(pearson(dens0, target_map)[keep])
        after = pearson(dens, target_map)
        row["pearson_target_after"] = _mean(after[keep])
        if threshold is not None:
            row["success_rate"] = _mean(keep & (after >= threshold))
    return row


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    """Per ε: the gradient explainers' mean figures next to AXAI's transfer figures."""
    out: dict[str, Any] = {}
    for e in result["eps"]:
        grad = [r for r in result["rows"] if r["eps"] == e and r["defence_beta"] is None]
        ax = [r for r in result["axai"] if r["eps"] == e and r["kind"] == "fragility"]
        s = {"gradient_explainers_mean_frag_spearman": _avg(r["frag_spearman"] for r in grad),
             "gradient_explainers_mean_frag_topk": _avg(r["frag_topk"] for r in grad),
             "gradient_explainers_mean_success_rate": _avg(r["success_rate"] for r in grad)}
        if ax:
            s["axai_transfer_mean_frag_spearman"] = _avg(r["frag_spearman"] for r in ax)
            s["axai_transfer_mean_frag_topk"] = _avg(r["frag_topk"] for r in ax)
            s["axai_transfer_mean_mask_iou"] = _avg(r["mask_iou"] for r in ax)
        direct = [r for r in result["axai"] if r["eps"] == e and r["kind"] == "direct"]
        aimed = [r for r in result["axai"] if r["eps"] == e and r["kind"] == "direct-target"]
        if direct:
            s["axai_direct_frag_spearman"] = direct[0]["frag_spearman"]
            s["axai_direct_frag_topk"] = direct[0]["frag_topk"]
            s["axai_direct_mask_iou"] = direct[0]["mask_iou"]
        if aimed:
            s["axai_direct_success_rate"] = aimed[0]["success_rate"]
        out[f"eps={e:g}"] = s
    return out


def _avg(values) -> float:
    v = [x for x in values if not math.isnan(x)]
    return sum(v) / len(v) if v else math.nan


def format_manipulation_table(out: dict[str, Any]) -> str:
    """Markdown tables: manipulation success and fragility per explainer and ε, then AXAI (transfer)."""
    lines = [f"{out['dataset']} CNN (test accuracy {out['test_accuracy']}), n = {out['n']} correctly classified test images, "
             f"{out['norm']} budgets {', '.join(f'{e:g}' for e in out['eps'])}, {out['steps']} attack steps "
             f"({out['phases']} phases), surrogate softplus β={out['attack_beta']:g}, top-k k={out['k']}, device {out['device']}",
             f"success = {out['success']}; target = {out['targets']}; maps scored: {out['reported_maps']}", "",
             "| explainer | ε | success | before | PCC→target | SSIM→target | MSE→target | PCC→original | top-k ∩ | Spearman | CoM shift | random: top-k ∩ | random: Spearman | random: CoM | time |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in out["rows"]:
        lines.append(f"| {r['explainer']} | {r['eps']:g} | {100 * r['success_rate']:.1f} % | {100 * r['success_rate_before']:.1f} % | "
                     f"{r['pearson_target_before']:.2f} → {r['to_target_pearson']:.2f} | {r['to_target_ssim']:.2f} | {r['to_target_mse']:.3f} | "
                     f"{r['to_original_pearson']:.2f} | {r['frag_topk']:.2f} | {r['frag_spearman']:.2f} | {r['frag_com_shift']:.2f} | "
                     f"{r['random_topk']:.2f} | {r['random_spearman']:.2f} | {r['random_com_shift']:.2f} | "
                     f"{r['seconds_target'] + r['seconds_fragility']:.0f} s |")
    defended = [r for r in out["rows"] if r.get("clean_pearson_with_relu_map") is not None]
    if defended:
        lines += ["", "Smoothed explanations (defence): Pearson of the clean softplus map with the ReLU network's map: "
                  + ", ".join(f"{r['explainer']} {r['clean_pearson_with_relu_map']:.2f}" for r in defended if r["eps"] == out["eps"][0])]
    if out["axai"]:
        lines += ["", "AXAI (not differentiable: attacked directly by a black-box random search on its own density map, "
                  "and by transfer: its map on the perturbations found against the gradient explainers)", "",
                  "| perturbation | ε | prediction kept | top-k ∩ | Spearman | CoM shift | top-3 mask IoU | PCC→target map | success |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in out["axai"]:
            pcc = f"{r['pearson_target_before']:.2f} → {r['pearson_target_after']:.2f}" if "pearson_target_after" in r else "–"
            won = f"{100 * r['success_rate']:.1f} %" if "success_rate" in r else "–"
            lines.append(f"| {r['source']} | {r['eps']:g} | {100 * r['prediction_kept']:.0f} % | {r['frag_topk']:.2f} | "
                         f"{r['frag_spearman']:.2f} | {r['frag_com_shift']:.2f} | {r['mask_iou']:.2f} | {pcc} | {won} |")
    lines += ["", "Summary: " + "; ".join(f"{e}: " + ", ".join(f"{k} {v:.2f}" for k, v in s.items()) for e, s in out["summary"].items())]
    if out["figures"]:
        lines += ["", "Figures: " + ", ".join(out["figures"])]
    lines.append(f"Total time {out['seconds']:.0f} s")
    return "\n".join(lines)

