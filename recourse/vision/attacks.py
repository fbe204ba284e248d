r"""Adversarial attacks on images, all on the batched core solvers (rows = images).

* :func:`fbs_attack` — forward–backward splitting with Nesterov momentum (the core's
  :func:`~recourse.core.apg.apg`) on :math:`c\,[m(x+w)+\kappa]_+ + \mu\|w\|_2^2 + \lambda\|w\|_p^p`
  subject to the pixel box, :math:`p \in \{0, \tfrac12, \tfrac23, 1\}` (prox:
  :func:`~recourse.core.prox.prox_lp_box`), with an optional outer search on λ.
* :func:`gse_attack` — GSE (Sadiku, Wagner & Pokutta, ICLR 2025): k̂ proximal steps of the
  ℓ½ penalty with a per-pixel λ map re-weighted after every step by a blurred mask of the
  perturbed pixels, then the support is frozen and accelerated gradient runs on it; an outer
  search on λ keeps, per image, the successful perturbation with the lowest :math:`d_{2,0}`.
* :func:`pgd_attack` — PGD in ℓ2 or ℓ∞ (:func:`~recourse.core.pgd.pgd`), with an optional
  increasing schedule of radii (each image keeps the first radius that fools the model).
* :func:`fw_attack` — ℓ1-q Frank–Wolfe (:func:`~recourse.core.frank_wolfe.frank_wolfe`):
  untargeted/targeted attacks and the label- and prediction-targeted perturbations of seed 003.

Every attack stops an image as soon as it fools the model (``early_stop``), takes targets for
targeted runs, works for any pixel box and on the adapter's device.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from recourse.core.apg import apg, value_and_grad
from recourse.core.frank_wolfe import frank_wolfe, lmo_l1_topq
from recourse.core.pgd import pgd
from recourse.core.prox import LpPenalty, project_l2_ball, prox_lp_box
from recourse.core.weight_search import bracket_search

from .adapter import ImageAdapter, LogitCache
from .metrics import d20, default_patch

LAMBDA_FACTOR = 4.0
"""Step of the outer λ search while only one side is known (then geometric bisection; see
:func:`recourse.core.weight_search.bracket_search`)."""

__all__ = ["AttackResult", "fbs_attack", "gse_attack", "pgd_attack", "fw_attack", "gaussian_kernel", "ATTACKS"]


@dataclass
class AttackResult:
    """Adversarial images (B, C, H, W), perturbations, success flags (B,), aims and wall time."""

    x: Tensor
    x_adv: Tensor
    success: Tensor
    aims: Tensor
    targeted: bool
    seconds: float
    method: str
    params: dict = field(default_factory=dict)

    @property
    def delta(self) -> Tensor:
        return self.x_adv - self.x


def _aims(adapter: ImageAdapter, x: Tensor, labels: Tensor | None, targets: Tensor | None) -> tuple[Tensor, bool]:
    if targets is not None:
        return torch.as_tensor(targets, device=adapter.device, dtype=torch.long).reshape(-1).expand(x.shape[0]).clone(), True
    if labels is None:
        labels = adapter.predict(x)
    return torch.as_tensor(labels, device=adapter.device, dtype=torch.long).reshape(-1).expand(x.shape[0]).clone(), False


def _row(v: float | Tensor, batch: int, device: torch.device) -> Tensor:
    return torch.as_tensor(v, dtype=torch.float32, device=device).reshape(-1).expand(batch).clone()


def _cw_smooth(adapter: ImageAdapter, x: Tensor, aims: Tensor, targeted: bool, c: Tensor, kappa: float, mu: float,
               cache: LogitCache | None = None):
    r"""h(w, rows) = c [m(x+w) + κ]_+ + μ‖w‖² on flat perturbations (logits of gradient-free
    calls kept in ``cache`` for the early-stop test)."""
    shape = x.shape[1:]

    def h(w: Tensor, rows: Tensor) -> Tensor:
        z = adapter.logits(x[rows] + w.view(-1, *shape))
        if cache is not None:
            cache.store(w, rows, z)
        val = c[rows] * torch.clamp(adapter.margin(z, aims[rows], targeted) + kappa, min=0.0)
        return val + mu * (w * w).sum(1) if mu else val

    return h


def _cw_problem(adapter: ImageAdapter, x: Tensor, aims: Tensor, targeted: bool, c: Tensor, kappa: float, mu: float,
                early_stop: bool):
    """(h, stop) of :func:`_cw_smooth` and :func:`_success_stop` sharing one :class:`LogitCache`
    (stop is None without ``early_stop``)."""
    cache = LogitCache()
    h = _cw_smooth(adapter, x, aims, targeted, c, kappa, mu, cache)
    return h, (_success_stop(adapter, x, aims, targeted, cache=cache) if early_stop else None)


def _success_stop(adapter: ImageAdapter, x: Tensor, aims: Tensor, targeted: bool, clamp: bool = False,
                  cache: LogitCache | None = None):
    """stop(w, rows): rows whose image x + w (clamped when ``clamp``) reaches the goal."""
    shape = x.shape[1:]

    @torch.no_grad()
    def stop(w: Tensor, rows: Tensor) -> Tensor:
        y = x[rows] + w.view(-1, *shape)
        if clamp or cache is None:
            return adapter.success(adapter.clamp(y) if clamp else y, aims[rows], targeted)
        return adapter.reached(cache.logits(adapter, w, rows, y), aims[rows], targeted)

    return stop


# ---------------------------------------------------------------------------------------- FBS
def fbs_attack(adapter: ImageAdapter, x: Tensor, labels: Tensor | None = None, *, targets: Tensor | None = None,
               p: float = 0.5, lam: float = 0.05, c: float = 1.0, kappa: float = 0.0, mu: float = 0.0,
               step: float = 1.0, max_iter: int = 200, search_steps: int = 1, grow: float = 1.1,
               early_stop: bool = True) -> AttackResult:
    r"""Forward–backward splitting attack (seed 000, Algorithm "FBS"), accelerated and monotone.

    .. math::
        w_{k+1} = \operatorname{prox}_{\alpha_k(\lambda\|\cdot\|_p^p + \iota_{[l-x,\,u-x]})}
        \big(u_k - \alpha_k \nabla h(u_k)\big),\quad
        h(w) = c\,[m(x+w)+\kappa]_+ + \mu\|w\|_2^2,

    with Nesterov extrapolation :math:`u_k`, an adaptive step and the monotone safeguard on
    :math:`h + \lambda\|w\|_p^p` (:func:`recourse.core.apg.apg` with ``g``).  With
    ``search_steps > 1`` an outer search on λ keeps each image's sparsest (lowest
    :math:`d_{2,0}`) success.  ``labels``: true labels (untargeted; default: the predictions);
    ``targets``: classes to reach (targeted).
    """
    t0 = time.perf_counter()
    x = adapter.to_device(x)
    aims, targeted = _aims(adapter, x, labels, targets)
    batch = x.shape[0]
    flat = x.reshape(batch, -1)
    lo, hi = adapter.delta_box(x)
    cw = _row(c, batch, adapter.device)
    h, stop = _cw_problem(adapter, x, aims, targeted, cw, kappa, mu, early_stop)
    unit = LpPenalty(1.0, p)
    patch = default_patch(x.shape[-2:])

    def run(lam_rows: Tensor) -> tuple[Tensor, Tensor]:
        def prox(v: Tensor, a: Tensor, rows: Tensor) -> Tensor:
            return prox_lp_box(v, a * lam_rows[rows][:, None], p, lo[rows], hi[rows])

        def g(w: Tensor, rows: Tensor) -> Tensor:
            return lam_rows[rows] * unit(w)

        res = apg(h, prox, torch.zeros_like(flat), step=step, max_iter=max_iter, tol=-1.0, g=g, stop=stop, grow=grow)
        return res.x, adapter.success(x + res.x.view_as(x), aims, targeted)

    lam0 = _row(lam, batch, adapter.device)
    if search_steps > 1:
        w, _, _ = bracket_search(run, lambda w: d20(w.view_as(x), patch).float(), lam0, search_steps, LAMBDA_FACTOR)
    else:
        w, _ = run(lam0)
    x_adv = adapter.clamp(x + w.view_as(x))
    succ = adapter.success(x_adv, aims, targeted)
    return AttackResult(x, x_adv, succ, aims, targeted, time.perf_counter() - t0, f"fbs-p{p:g}",
                        {"p": p, "lam": lam, "c": c, "kappa": kappa, "mu": mu, "max_iter": max_iter, "search_steps": search_steps})


# ---------------------------------------------------------------------------------------- GSE
def gaussian_kernel(size: int = 5, sigma: float = 1.5, device: torch.device | str | None = None) -> Tensor:
    """Normalised 2-D Gaussian kernel (1, 1, size, size)."""
    r = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    g = torch.exp(-(r * r) / (2 * sigma * sigma))
    k = g[:, None] * g[None, :]
    return (k / k.sum()).reshape(1, 1, size, size)


def blurred_mask_divisor(w: Tensor, kernel: Tensor, q: float) -> Tensor:
    r"""GSE's λ divisor per pixel (B, H, W) from perturbations w (B, C, H, W).

    :math:`m = \operatorname{sign}(\sum_c |w_c|)`, :math:`M = m \ast K` (Gaussian blur),
    :math:`\bar M = M + 1` where :math:`M \ne 0`, else q.  Images with no perturbed pixel get 1
    (λ unchanged), so the map does not grow before anything is perturbed.
    """
    m = (w.abs().sum(1, keepdim=True) > 0).to(w.dtype)
    pad = kernel.shape[-1] // 2
    blur = F.conv2d(m, kernel, padding=pad)[:, 0]
    div = torch.where(blur > 1e-8, blur + 1.0, torch.full_like(blur, q))
    empty = m.flatten(1).sum(1) == 0
    return torch.where(empty[:, None, None], torch.ones_like(div), div)


def start_lambda(grad: Tensor, step: float, lo: Tensor, hi: Tensor, frac: float = 0.01, steps: int = 50) -> Tensor:
    r"""Per-image starting λ of GSE's search: ``frac`` × the largest λ whose first step is nonzero.

    :math:`\lambda^\star = \sup\{\lambda : \operatorname{prox}_{\alpha\lambda|\cdot|^{1/2} + \iota_{box}}(-\alpha\nabla h(0)) \ne 0\}`
    (α = ``step``), found per row by doubling from 10⁻³ then ``steps`` bisections on the prox
    (no model calls), as the authors' section search does (a row whose gradient vanishes gets 0).
    """
    v = -step * grad

    def nonzero(lam: Tensor) -> Tensor:
        return (prox_lp_box(v, step * lam[:, None], 0.5, lo, hi) != 0).any(1)

    lo_l = torch.zeros(grad.shape[0], device=grad.device, dtype=grad.dtype)
    hi_l = torch.full_like(lo_l, 1e-3)
    alive = nonzero(hi_l)
    for _ in range(200):
        if not bool(alive.any()):
            break
        lo_l = torch.where(alive, hi_l, lo_l)
        hi_l = torch.where(alive, hi_l * 2, hi_l)
        alive = alive & nonzero(hi_l)
    for _ in range(steps):
        mid = 0.5 * (lo_l + hi_l)
        ok = nonzero(mid)
        lo_l, hi_l = torch.where(ok, mid, lo_l), torch.where(ok, hi_l, mid)
    return frac * 0.5 * (lo_l + hi_l)


def frozen_support(lam_map: Tensor, lam0: Tensor, channels: int) -> Tensor:
    r"""GSE's frozen coordinates V (b, C·H·W) after the k̂ re-weighted steps.

    :math:`V = \{(c, i, j) : \Lambda^{(\hat k)}_{ij} < \lambda_0\}`: the pixels whose λ the
    blurred-mask divisor has lowered below the image's starting λ (the perturbed pixels and the
    halo of their blur, as in the authors' code, which zeroes every pixel with
    :math:`\Lambda^{(\hat k)} > \lambda_0`); shared by a pixel's channels.  An image with
    nothing perturbed keeps :math:`\Lambda = \lambda_0` and gets V = ∅.
    """
    keep = lam_map < lam0[:, None, None]
    return keep[:, None].expand(-1, channels, -1, -1).reshape(len(lam0), -1)


def gse_attack(adapter: ImageAdapter, x: Tensor, labels: Tensor | None = None, *, targets: Tensor | None = None,
               lam: float | None = 0.05, mu: float = 0.1, c: float = 1.0, kappa: float = 0.0, step: float = 1.0,
               lam_frac: float = 0.01, k_hat: int | None = None, q: float = 0.25, blur_size: int = 5, blur_sigma: float = 1.5,
               max_iter: int = 200, search_steps: int = 6, grow: float = 1.1, early_stop: bool = True) -> AttackResult:
    r"""GSE: group-wise sparse and explainable attack (seed 000, GSE slides; authors' defaults noted).

    For each λ of the outer search (per image):

    1. k̂ iterations (30 untargeted, 50 targeted) of accelerated forward–backward steps
       :math:`w \leftarrow \operatorname{prox}_{\alpha \Lambda\odot|\cdot|^{1/2} + \iota_{box}}(u - \alpha\nabla h(u))`,
       :math:`h = c[m(x+w)+\kappa]_+ + \mu\|w\|_2^2`, with a per-pixel λ map Λ (shared by the
       channels of a pixel) divided after every step by :func:`blurred_mask_divisor`: pixels
       near perturbed pixels become cheaper, isolated ones dearer (divisor q < 1).
    2. The coordinates V = {pixels with :math:`\Lambda^{(\hat k)} < \lambda_0`} (the
       perturbed pixels and the halo the blur gave them, :func:`frozen_support`) are frozen;
       w is set to 0 off V and accelerated projected gradient on :math:`h` over
       :math:`\{w : \operatorname{supp} w \subseteq V\} \cap box` runs for the remaining
       ``max_iter − k̂`` iterations.

    Each image stops once it fools the model; the outer search keeps the lowest
    :math:`d_{2,0}` success.  Both phases run on :func:`recourse.core.apg.apg`.  ``lam=None``
    starts each image's search at ``lam_frac`` × :func:`start_lambda` (the authors' start).
    """
    t0 = time.perf_counter()
    x = adapter.to_device(x)
    aims, targeted = _aims(adapter, x, labels, targets)
    k_hat = k_hat if k_hat is not None else (50 if targeted else 30)
    k_hat = min(k_hat, max_iter)
    batch, ch, hh, ww = x.shape
    flat = x.reshape(batch, -1)
    lo, hi = adapter.delta_box(x)
    cw = _row(c, batch, adapter.device)
    h, stop = _cw_problem(adapter, x, aims, targeted, cw, kappa, mu, early_stop)
    kernel = gaussian_kernel(blur_size, blur_sigma, adapter.device)
    patch = default_patch((hh, ww))

    def run(lam_rows: Tensor) -> tuple[Tensor, Tensor]:
        lam_map = lam_rows[:, None, None].expand(batch, hh, ww).clone()

        def prox1(v: Tensor, a: Tensor, rows: Tensor) -> Tensor:
            lam_flat = lam_map[rows].repeat(1, ch, 1).reshape(len(rows), -1) if ch > 1 else lam_map[rows].reshape(len(rows), -1)
            z = prox_lp_box(v, a * lam_flat, 0.5, lo[rows], hi[rows])
            div = blurred_mask_divisor(z.view(-1, ch, hh, ww), kernel, q)
            lam_map[rows] = (lam_map[rows] / div).clamp(max=1e30)
            return z

        res1 = apg(h, prox1, torch.zeros_like(flat), step=step, max_iter=k_hat, tol=-1.0, stop=stop, monotone=False, grow=grow)
        w = res1.x
        done = adapter.success(x + w.view_as(x), aims, targeted)
        rest = (~done).nonzero().squeeze(1)
        if max_iter > k_hat and rest.numel():
            support = frozen_support(lam_map[rest], lam_rows[rest], ch)
            lo_r = torch.where(support, lo[rest], torch.zeros_like(lo[rest]))
            hi_r = torch.where(support, hi[rest], torch.zeros_like(hi[rest]))
            x_r, aims_r = x[rest], aims[rest]
            h_r, stop_r = _cw_problem(adapter, x_r, aims_r, targeted, cw[rest], kappa, mu, early_stop)

            def prox2(v: Tensor, a: Tensor, rows: Tensor) -> Tensor:
                return torch.minimum(torch.maximum(v, lo_r[rows]), hi_r[rows])

            res2 = apg(h_r, prox2, prox2(w[rest], None, torch.arange(len(rest), device=w.device)), step=step, max_iter=max_iter - k_hat, tol=1e-7, stop=stop_r, grow=grow)
            w = w.clone()
            w[rest] = res2.x
        return w, adapter.success(x + w.view_as(x), aims, targeted)

    if lam is None:
        _, grad0 = value_and_grad(h, torch.zeros_like(flat), torch.arange(batch, device=adapter.device))
        lam0 = start_lambda(grad0, step, lo, hi, lam_frac)
    else:
        lam0 = _row(lam, batch, adapter.device)
    w, _, _ = bracket_search(run, lambda w: d20(w.view_as(x), patch).float(), lam0, search_steps, LAMBDA_FACTOR)
    x_adv = adapter.clamp(x + w.view_as(x))
    succ = adapter.success(x_adv, aims, targeted)
    return AttackResult(x, x_adv, succ, aims, targeted, time.perf_counter() - t0, "gse",
                        {"lam": lam, "mu": mu, "c": c, "k_hat": k_hat, "q": q, "max_iter": max_iter, "search_steps": search_steps})


# ---------------------------------------------------------------------------------------- PGD
def _ce_smooth(adapter: ImageAdapter, x: Tensor, aims: Tensor, sign: float, clamp: bool):
    """h(w, rows) = sign · CE(f(x + w), aim) (clamped to the box when ``clamp``)."""
    shape = x.shape[1:]

    def h(w: Tensor, rows: Tensor) -> Tensor:
        y = x[rows] + w.view(-1, *shape)
        if clamp:
            y = adapter.clamp(y)
        return sign * F.cross_entropy(adapter.logits(y), aims[rows], reduction="none")

    return h


def pgd_attack(adapter: ImageAdapter, x: Tensor, labels: Tensor | None = None, *, targets: Tensor | None = None,
               norm: str = "l2", eps: float | Sequence[float] = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0),
               steps: int = 40, rel_step: float = 2.5, early_stop: bool = True) -> AttackResult:
    r"""PGD (Madry et al.) in ℓ2 or ℓ∞ on cross-entropy, over :math:`\{\|w\| \le \varepsilon\} \cap box`.

    Step :math:`\alpha = \text{rel\_step}\cdot\varepsilon/\text{steps}` along the normalised
    gradient (ℓ2) or its sign (ℓ∞); projection: the ball, then the box.  ``eps`` may be an
    increasing list: images not yet fooled are attacked again with the next radius, so each
    keeps the smallest radius of the schedule that fools it.
    """
    t0 = time.perf_counter()
    x = adapter.to_device(x)
    aims, targeted = _aims(adapter, x, labels, targets)
    batch = x.shape[0]
    radii = [float(eps)] if isinstance(eps, (int, float)) else [float(e) for e in eps]
    lo, hi = adapter.delta_box(x)
    sign = 1.0 if targeted else -1.0
    w_all = torch.zeros_like(x.reshape(batch, -1))
    todo = torch.arange(batch, device=adapter.device)
    for r in radii:
        if todo.numel() == 0:
            break
        x_t, aims_t, lo_t, hi_t = x[todo], aims[todo], lo[todo], hi[todo]
        h = _ce_smooth(adapter, x_t, aims_t, sign, clamp=False)
        stop = _success_stop(adapter, x_t, aims_t, targeted) if early_stop else None

        def project(w: Tensor, rows: Tensor, r: float = r, lo_t: Tensor = lo_t, hi_t: Tensor = hi_t) -> Tensor:
            ball = project_l2_ball(w, r) if norm == "l2" else w.clamp(-r, r)
            return torch.minimum(torch.maximum(ball, lo_t[rows]), hi_t[rows])

        res = pgd(h, project, torch.zeros_like(x_t.reshape(len(todo), -1)), step=rel_step * r / steps,
                  max_iter=steps, norm=norm, stop=stop)
        w_all[todo] = res.x
        ok = adapter.success(x_t + res.x.view_as(x_t), aims_t, targeted)
        todo = todo[~ok]
    x_adv = adapter.clamp(x + w_all.view_as(x))
    succ = adapter.success(x_adv, aims, targeted)
    return AttackResult(x, x_adv, succ, aims, targeted, time.perf_counter() - t0, f"pgd-{norm}",
                        {"norm": norm, "eps": radii, "steps": steps, "rel_step": rel_step})


# ---------------------------------------------------------------------------------------- FW
def fw_attack(adapter: ImageAdapter, x: Tensor, labels: Tensor | None = None, *, targets: Tensor | None = None,
              mode: str | None = None, eps: float | None = None, q: float = 0.975, steps: int = 45, c: float = 1.0,
              early_stop: bool | None = None) -> AttackResult:
    r"""ℓ1-q Frank–Wolfe perturbation (seed 003): :math:`\min_{\|w\|_1 \le \varepsilon} \pm\mathrm{CE}(f(\Pi_{box}(x+w)), y_a)`.

    ``mode``:

    * ``"untargeted"`` (default without targets): maximise the CE of ``labels``; stops when fooled;
    * ``"targeted"`` (default with targets): minimise the CE of ``targets``; stops when reached;
    * ``"label"``: label-targeted, :math:`y_a` = the true label (``labels``) — *what would have
      corrected this mistake?*; runs all ``steps``;
    * ``"prediction"``: prediction-targeted, :math:`y_a` = the model's prediction — *why this
      mistake?*; runs all ``steps``.

    Default radius :math:`\varepsilon = 0.1\,D` (D = C·H·W); the oracle keeps the top
    ``1 − q`` fraction of the gradient entries (:func:`recourse.core.frank_wolfe.lmo_l1_topq`).
    """
    t0 = time.perf_counter()
    x = adapter.to_device(x)
    if mode is None:
        mode = "targeted" if targets is not None else "untargeted"
    if mode not in ("untargeted", "targeted", "label", "prediction"):
        raise ValueError(f"mode must be untargeted, targeted, label or prediction; got {mode!r}")
    if mode == "prediction":
        aims, targeted = adapter.predict(x), True
    elif mode == "targeted":
        if targets is None:
            raise ValueError("mode 'targeted' needs targets")
        aims, targeted = _aims(adapter, x, None, targets)
    else:
        if labels is None and mode == "label":
            raise ValueError("mode 'label' needs the true labels")
        aims, targeted = _aims(adapter, x, labels, None)
        targeted = mode == "label"
    if early_stop is None:
        early_stop = mode in ("untargeted", "targeted")
    batch = x.shape[0]
    d = x[0].numel()
    radius = _row(eps if eps is not None else 0.1 * d, batch, adapter.device)
    sign = -1.0 if mode == "untargeted" else 1.0
    h = _ce_smooth(adapter, x, aims, sign, clamp=True)
    stop = _success_stop(adapter, x, aims, targeted, clamp=True) if early_stop else None

    def lmo(grad: Tensor, rows: Tensor) -> Tensor:
        return lmo_l1_topq(grad, radius[rows], q)

    res = frank_wolfe(h, lmo, torch.zeros_like(x.reshape(batch, -1)), max_iter=steps, c=c, stop=stop)
    x_adv = adapter.clamp(x + res.x.view_as(x))
    succ = adapter.success(x_adv, aims, targeted)
    return AttackResult(x, x_adv, succ, aims, targeted, time.perf_counter() - t0, f"fw-{mode}",
                        {"mode": mode, "eps": float(radius[0]), "q": q, "steps": steps, "c": c})


ATTACKS = {"gse": gse_attack, "fbs": fbs_attack, "pgd": pgd_attack, "fw": fw_attack}
