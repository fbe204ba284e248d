r"""Explanation manipulation: target-map attacks and fragility attacks on attribution maps.

**Differentiable explainers** (:class:`DiffExplainer`), written in torch so that an attack can
differentiate through them (``create_graph=True``); for a model :math:`g`, class c and input x:

* ``saliency`` — :math:`|\nabla_x g_c(x)|`;
* ``gradxinput`` — :math:`x \odot \nabla_x g_c(x)`;
* ``ig`` — Integrated Gradients from the baseline :math:`x_0` (the lower pixel bound),
  :math:`(x - x_0) \odot \sum_k w_k \nabla g_c(x_0 + \alpha_k (x - x_0))` with the
  Gauss–Legendre nodes :math:`\alpha_k` and weights :math:`w_k` on [0, 1] (captum's default rule);
* ``smoothgrad`` — :math:`\frac1n\sum_k |\nabla g_c(x + \sigma\varepsilon_k)|` with n noise draws
  :math:`\varepsilon_k \sim \mathcal N(0, I)` drawn once per attack (a fixed objective);
* ``gradcam`` — :math:`\operatorname{relu}(\sum_k \alpha_k A_k)` on the last Conv2d's output A,
  :math:`\alpha_k = \operatorname{mean}_{ij} \partial g_c/\partial A_{kij}`, upsampled bilinearly.

Each gives a (B, H, W) map :math:`h = |\sum_{\text{channels}} e|` (:func:`~.map_metrics.to_map`).
On the real network they agree with captum's (``tests/test_manipulation.py``).

**Target-map attack** (Dombrowski et al., 2019), per image, over :math:`\mathcal C = \{\|\delta\|_p \le \varepsilon\} \cap [l - x, u - x]`:

.. math::  \min_{\delta \in \mathcal C}\ \tfrac1{HW}\big\|HW\,\bar h_\beta(x + \delta) - HW\,\bar h^t\big\|_2^2
   + \gamma\,\|\sigma(g(x + \delta)) - \sigma(g(x))\|_2^2,

:math:`\bar h = h / \sum h` (:func:`~.map_metrics.unit_sum`), :math:`h_\beta` the explanation of the
softplus surrogate :math:`g_\beta` (:func:`~.smooth.softplus_copy`; a ReLU network has no second
derivative), σ the softmax of the *real* network g.

**Fragility attack** (Ghorbani et al., 2019, top-k attack): with :math:`T` the k largest pixels
of the original map, minimise the share of the explanation still on them,
:math:`\sum_{i \in T} \bar h_\beta(x + \delta)_i + \gamma\|\sigma(g(x+\delta)) - \sigma(g(x))\|^2`,
or (``objective="center"``) maximise the shift of the centre of mass.

Both run projected steepest-descent steps of the core (:func:`recourse.core.pgd.pgd`, sign steps
in ℓ∞, normalised gradients in ℓ2; projection: the ball, then the box, which stays in both) in
``phases`` with a step that shrinks from phase to phase.  After each phase the real network is
asked, and each image keeps its best perturbation so far *whose predicted class is unchanged*
(δ = 0 is the first), scored on the real network's explanation: the prediction is unchanged by
construction, and the explanation that is scored and reported is the real one.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recourse.core.pgd import pgd
from recourse.core.prox import project_l2_ball

from .adapter import ImageAdapter
from .explain import last_conv
from .map_metrics import center_of_mass, to_map, unit_sum
from .smooth import softplus_copy

EXPLAINERS = ("saliency", "gradxinput", "ig", "smoothgrad", "gradcam")
"""The gradient explainers the attacks differentiate through."""
ATTACK_BETA = 10.0
"""β of the softplus surrogate the attacks differentiate (a large β: close to the ReLU network)."""


@dataclass
class ExplainerSettings:
    """Settings of the differentiable explainers: IG nodes, SmoothGrad draws and noise σ, noise seed."""

    ig_steps: int = 8
    sg_samples: int = 8
    sg_sigma: float = 0.15
    seed: int = 0


def gauss_legendre(n: int) -> tuple[Tensor, Tensor]:
    """Nodes and weights of the n-point Gauss–Legendre rule on [0, 1] (captum's ``gausslegendre``)."""
    nodes, weights = np.polynomial.legendre.leggauss(n)
    return torch.as_tensor(0.5 * (nodes + 1), dtype=torch.float32), torch.as_tensor(0.5 * weights, dtype=torch.float32)


def _grad_of_class(model: nn.Module, x: Tensor, target: Tensor, create_graph: bool) -> Tensor:
    r""":math:`\nabla_x g_c(x)` for each row (``x`` may already depend on the attack variable)."""
    with torch.enable_grad():
        if not x.requires_grad:
            x = x.detach().requires_grad_(True)
        z = model(x)
        (g,) = torch.autograd.grad(z.gather(1, target[:, None]).sum(), x, create_graph=create_graph)
    return g


class DiffExplainer:
    """One explainer of one model for a batch: ``explainer(x_rows, rows)`` -> (b, H, W) maps.

    ``target`` (B,): the classes explained (held fixed during an attack: the original
    predictions); ``baseline`` (1 or B, C, H, W): IG's start; the SmoothGrad noise is drawn once
    here, (n, B, C, H, W), on ``x``'s device.
    """

    def __init__(self, model: nn.Module, method: str, x: Tensor, target: Tensor, baseline: Tensor,
                 settings: ExplainerSettings | None = None):
        if method not in EXPLAINERS:
            raise ValueError(f"unknown explainer {method!r}; expected one of {', '.join(EXPLAINERS)}")
        self.model, self.method, self.target = model, method, target
        self.s = settings or ExplainerSettings()
        self.baseline = baseline.expand_as(x)
        self.noise: Tensor | None = None
        if method == "smoothgrad":
            gen = torch.Generator(device="cpu").manual_seed(self.s.seed)
            self.noise = (self.s.sg_sigma * torch.randn((self.s.sg_samples, *x.shape), generator=gen)).to(x.device)
        if method == "ig":
            self.alphas, self.weights = (t.to(x.device) for t in gauss_legendre(self.s.ig_steps))
        self.layer = last_conv(model) if method == "gradcam" else None

    def __call__(self, x: Tensor, rows: Tensor | None = None, create_graph: bool = False) -> Tensor:
        rows = torch.arange(len(x), device=x.device) if rows is None else rows
        m = to_map(self.attribution(x, rows, create_graph))
        return m if create_graph else m.detach()

    def attribution(self, x: Tensor, rows: Tensor, create_graph: bool = False) -> Tensor:
        """(b, C, H, W) attribution (Grad-CAM: (b, 1, H, W)) of the rows ``rows`` at ``x``."""
        t = self.target[rows]
        if self.method == "saliency":
            return _grad_of_class(self.model, x, t, create_graph).abs()
        if self.method == "gradxinput":
            return x * _grad_of_class(self.model, x, t, create_graph)
        if self.method == "ig":
            m = len(self.alphas)
            base = self.baseline[rows]
            a = self.alphas.view(m, 1, 1, 1, 1)
            path = (base + a * (x - base)).reshape(-1, *x.shape[1:])
            g = _grad_of_class(self.model, path, t.repeat(m), create_graph).view(m, *x.shape)
            return (x - base) * (self.weights.view(m, 1, 1, 1, 1) * g).sum(0)
        if self.method == "smoothgrad":
            assert self.noise is not None
            n = self.noise.shape[0]
            noisy = (x[None] + self.noise[:, rows]).reshape(-1, *x.shape[1:])
            return _grad_of_class(self.model, noisy, t.repeat(n), create_graph).view(n, *x.shape).abs().mean(0)
        return self._gradcam(x, t, create_graph)

    def _gradcam(self, x: Tensor, t: Tensor, create_graph: bool) -> Tensor:
        store: list[Tensor] = []
        hook = self.layer.register_forward_hook(lambda _m, _i, out: store.append(out))
        try:
            with torch.enable_grad():
                xg = x if x.requires_grad else x.detach().requires_grad_(True)
                z = self.model(xg)
                act = store[-1]
                (g,) = torch.autograd.grad(z.gather(1, t[:, None]).sum(), act, create_graph=create_graph)
        finally:
            hook.remove()
        cam = F.relu((g.mean((2, 3), keepdim=True) * act).sum(1, keepdim=True))
        return F.interpolate(cam, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)


def explainer_for(adapter: ImageAdapter, method: str, x: Tensor, target: Tensor, *, beta: float | None = None,
                  settings: ExplainerSettings | None = None) -> DiffExplainer:
    """:class:`DiffExplainer` of the adapter's network (``beta=None``) or of its softplus(β) copy."""
    model = adapter.model if beta is None else softplus_copy(adapter.model, beta)
    return DiffExplainer(model, method, x, target, adapter.lower, settings)


# ------------------------------------------------------------------------------------ attacks
@dataclass
class ManipulationResult:
    """Perturbed images (B, C, H, W), the real network's maps before/after (B, H, W) (this module's
    torch explainers; SmoothGrad with the attack's fixed draws), predictions before/after, and the
    target map normalised to unit sum (target-map attack; None for fragility)."""

    x: Tensor
    x_adv: Tensor
    map_before: Tensor
    map_after: Tensor
    pred_before: Tensor
    pred_after: Tensor
    target_map: Tensor | None
    seconds: float
    method: str
    params: dict = field(default_factory=dict)

    @property
    def delta(self) -> Tensor:
        return self.x_adv - self.x

    @property
    def kept(self) -> Tensor:
        """(B,) True where the predicted class is unchanged."""
        return self.pred_after == self.pred_before


def ball_box_projector(norm: str, eps: float, lo: Tensor, hi: Tensor) -> Callable[[Tensor, Tensor], Tensor]:
    r"""project(w, rows): onto the ``norm`` ball of radius ε, then into the box :math:`[l - x, u - x] \ni 0`.

    Exact for ℓ∞ (both sets are boxes); for ℓ2 a point of the intersection (clamping into a box
    holding 0 shrinks every entry, so the result stays in the ball)."""
    if norm not in ("l2", "linf"):
        raise ValueError(f"`norm` must be 'l2' or 'linf', got {norm!r}")
    if not eps > 0:
        raise ValueError(f"`eps` must be positive, got {eps}")

    def project(w: Tensor, rows: Tensor) -> Tensor:
        ball = project_l2_ball(w, eps) if norm == "l2" else w.clamp(-eps, eps)
        return torch.minimum(torch.maximum(ball, lo[rows]), hi[rows])

    return project


def _phase_steps(steps: int, phases: int) -> list[int]:
    phases = max(1, min(phases, steps))
    return [steps // phases + (1 if i < steps % phases else 0) for i in range(phases)]


def _keep_best(adapter: ImageAdapter, x: Tensor, h: Callable[[Tensor, Tensor], Tensor],
               score: Callable[[Tensor], Tensor], *, norm: str, eps: float, steps: int, phases: int,
               rel_step: float, decay: float) -> Tensor:
    """Run the phases of projected steps; return, per image, the best (lowest ``score`` of the
    real network at x + δ) perturbation seen at a phase end whose predicted class is unchanged."""
    b = x.shape[0]
    lo, hi = adapter.delta_box(x)
    project = ball_box_projector(norm, eps, lo, hi)
    pred = adapter.predict(x)
    w = torch.zeros_like(x.reshape(b, -1))
    best_w = w.clone()
    with torch.no_grad():
        best = score(x)
    alpha = rel_step * eps / max(1, steps)
    for k, n_steps in enumerate(_phase_steps(steps, phases)):
        w = pgd(h, project, w, step=alpha * decay ** k, max_iter=n_steps, norm=norm).x
        xa = x + w.view_as(x)
        with torch.no_grad():
            s = score(xa)
        better = (adapter.predict(xa) == pred) & (s < best)
        best = torch.where(better, s, best)
        best_w[better] = w[better]
    return adapter.clamp(x + best_w.view_as(x))


def _output_term(adapter: ImageAdapter, x: Tensor) -> Callable[[Tensor, Tensor], Tensor]:
    r"""rows-indexed :math:`\|\sigma(g(y)) - \sigma(g(x))\|^2` of the real network."""
    with torch.no_grad():
        p0 = torch.softmax(adapter.logits(x), 1)

    def term(y: Tensor, rows: Tensor) -> Tensor:
        return ((torch.softmax(adapter.logits(y), 1) - p0[rows]) ** 2).sum(1)

    return term


def target_map_attack(adapter: ImageAdapter, x: Tensor, target_map: Tensor, explainer: str, *, eps: float = 0.1,
                      norm: str = "linf", steps: int = 40, phases: int = 4, rel_step: float = 2.5, decay: float = 0.5,
                      gamma: float = 10.0, beta: float = ATTACK_BETA, settings: ExplainerSettings | None = None,
                      attack_beta: float | None = None) -> ManipulationResult:
    r"""Target-map manipulation (module docstring) of the images ``x`` (B, C, H, W).

    ``target_map`` (B, H, W) or (H, W): the maps to reach (non-negative; normalised to unit sum
    here).  ``beta``: the softplus surrogate's β for the gradients; ``attack_beta`` overrides
    the explained network (a defended, β-smoothed explanation is attacked on its own network).
    Step: ``rel_step``·ε/``steps`` (ℓ∞ sign steps or ℓ2 normalised), ×``decay`` each phase.
    """
    x = adapter.to_device(x)
    b = x.shape[0]
    pred = adapter.predict(x)
    tm = torch.as_tensor(target_map, dtype=torch.float32, device=adapter.device)
    tm = unit_sum(to_map(tm.expand(b, *x.shape[-2:]) if tm.dim() == 2 else tm))
    hw = float(x.shape[-1] * x.shape[-2])
    surrogate = explainer_for(adapter, explainer, x, pred, beta=beta if attack_beta is None else attack_beta, settings=settings)
    real = explainer_for(adapter, explainer, x, pred, beta=attack_beta, settings=settings)
    out = _output_term(adapter, x)
    shape = x.shape[1:]

    def h(w: Tensor, rows: Tensor) -> Tensor:
        y = x[rows] + w.view(-1, *shape)
        gap = hw * (unit_sum(surrogate(y, rows, create_graph=True)) - tm[rows])
        return (gap * gap).flatten(1).mean(1) + gamma * out(y, rows)

    def score(y: Tensor) -> Tensor:
        return ((hw * (unit_sum(real(y)) - tm)) ** 2).flatten(1).mean(1)

    t0 = time.perf_counter()
    x_adv = _keep_best(adapter, x, h, score, norm=norm, eps=eps, steps=steps, phases=phases, rel_step=rel_step, decay=decay)
    params = {"explainer": explainer, "eps": eps, "norm": norm, "steps": steps, "phases": phases, "gamma": gamma,
              "beta": beta if attack_beta is None else attack_beta, "explained_beta": attack_beta}
    return _result(adapter, real, x, x_adv, pred, tm, t0, "target-map", params)


def fragility_attack(adapter: ImageAdapter, x: Tensor, explainer: str, *, k: int | None = None, objective: str = "topk",
                     eps: float = 0.1, norm: str = "linf", steps: int = 40, phases: int = 4, rel_step: float = 2.5,
                     decay: float = 0.5, gamma: float = 10.0, beta: float = ATTACK_BETA,
                     settings: ExplainerSettings | None = None, attack_beta: float | None = None) -> ManipulationResult:
    r"""Untargeted fragility attack (module docstring) on the images ``x`` (B, C, H, W).

    ``objective``: ``"topk"`` (move the explanation off the original top-k pixels; k defaults
    to 10 % of the pixels) or ``"center"`` (push the centre of mass away).
    """
    if objective not in ("topk", "center"):
        raise ValueError(f"`objective` must be 'topk' or 'center', got {objective!r}")
    x = adapter.to_device(x)
    b = x.shape[0]
    pred = adapter.predict(x)
    k = default_k(x.shape[-2:]) if k is None else int(k)
    surrogate = explainer_for(adapter, explainer, x, pred, beta=beta if attack_beta is None else attack_beta, settings=settings)
    real = explainer_for(adapter, explainer, x, pred, beta=attack_beta, settings=settings)
    with torch.no_grad():
        m0 = real(x)
    top = torch.zeros_like(m0.flatten(1), dtype=torch.bool).scatter_(1, m0.flatten(1).topk(k, dim=1).indices, True)
    com0 = center_of_mass(m0)
    out = _output_term(adapter, x)
    shape = x.shape[1:]

    def loss(m: Tensor, rows: Tensor) -> Tensor:
        if objective == "topk":
            return (unit_sum(m).flatten(1) * top[rows]).sum(1)
        return -torch.linalg.vector_norm(center_of_mass(m) - com0[rows] + 1e-9, dim=1)

    def h(w: Tensor, rows: Tensor) -> Tensor:
        y = x[rows] + w.view(-1, *shape)
        return loss(surrogate(y, rows, create_graph=True), rows) + gamma * out(y, rows)

    def score(y: Tensor) -> Tensor:
        return loss(real(y), torch.arange(b, device=y.device))

    t0 = time.perf_counter()
    x_adv = _keep_best(adapter, x, h, score, norm=norm, eps=eps, steps=steps, phases=phases, rel_step=rel_step, decay=decay)
    params = {"explainer": explainer, "objective": objective, "k": k, "eps": eps, "norm": norm, "steps": steps,
              "phases": phases, "gamma": gamma, "beta": beta if attack_beta is None else attack_beta, "explained_beta": attack_beta}
    return _result(adapter, real, x, x_adv, pred, None, t0, f"fragility-{objective}", params)


def _result(adapter: ImageAdapter, real: DiffExplainer, x: Tensor, x_adv: Tensor, pred: Tensor, tm: Tensor | None,
            t0: float, method: str, params: dict) -> ManipulationResult:
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        before, after = real(x), real(x_adv)
    return ManipulationResult(x, x_adv, before, after, pred, adapter.predict(x_adv), tm, seconds, method, params)


def axai_attack(adapter: ImageAdapter, x: Tensor, *, eps: float = 0.1, queries: int = 60, k: int | None = None,
                target_map: Tensor | None = None, seed: int = 0, square: float = 0.25) -> ManipulationResult:
    r"""Attack AXAI itself, which has no gradient: a black-box random search in the ℓ∞ ball (in the
    spirit of the Square Attack, Andriushchenko et al., 2020) on AXAI's density map
    (:func:`~.explain.axai_density_map`), keeping the predicted class.

    Start from a random sign perturbation of size ε (kept only where the class is unchanged);
    each of ``queries`` rounds redraws one random square per image (its side shrinking from
    √``square``·H to 2 pixels) to ±ε per channel, asks AXAI for every image at once, and keeps a
    proposal where the class is unchanged and the score improves.  Score: without ``target_map``
    the top-k intersection with the original map (lower is better, the fragility attack); with
    one, the Pearson correlation with it (higher is better, the target-map attack).
    """
    from .explain import axai_density_map
    from .map_metrics import pearson, top_k_intersection

    if not (eps > 0 and np.isfinite(eps)) or queries < 1:
        raise ValueError("`eps` must be a positive number and `queries` at least 1")
    x = adapter.to_device(x)
    b, c, hgt, wid = x.shape
    pred = adapter.predict(x)
    k = default_k(x.shape[-2:]) if k is None else int(k)
    lo, hi = adapter.delta_box(x)
    lo, hi = lo.view_as(x), hi.view_as(x)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    t0 = time.perf_counter()
    m0, _ = axai_density_map(adapter, x)
    target = None if target_map is None else target_map.to(x.device).expand_as(m0)

    def score(maps: Tensor) -> Tensor:  # lower is better
        return top_k_intersection(m0, maps, k) if target is None else -pearson(maps, target)

    def sign(shape: tuple[int, ...]) -> Tensor:
        return (torch.randint(0, 2, shape, generator=gen) * 2 - 1).to(x.device, x.dtype)

    delta = torch.minimum(torch.maximum(eps * sign(tuple(x.shape)), lo), hi)
    kept = adapter.predict(x + delta) == pred
    delta[~kept] = 0
    best_map, _ = axai_density_map(adapter, x + delta)
    best = score(best_map)
    for q in range(queries):
        side = max(2, int(round(hgt * float(np.sqrt(square * (1.0 - q / queries))))))
        top = torch.randint(0, max(1, hgt - side + 1), (b,), generator=gen).to(x.device)
        left = torch.randint(0, max(1, wid - side + 1), (b,), generator=gen).to(x.device)
        ii = torch.arange(hgt, device=x.device)[None, :, None]
        jj = torch.arange(wid, device=x.device)[None, None, :]
        patch = ((ii >= top[:, None, None]) & (ii < (top + side)[:, None, None])
                 & (jj >= left[:, None, None]) & (jj < (left + side)[:, None, None]))[:, None]  # (B, 1, H, W)
        values = eps * sign((b, c, 1, 1))
        proposal = torch.minimum(torch.maximum(torch.where(patch, values, delta), lo), hi)
        keep = adapter.predict(x + proposal) == pred
        maps, _ = axai_density_map(adapter, x + proposal)
        now = score(maps)
        better = keep & (now < best)
        delta[better] = proposal[better]
        best = torch.where(better, now, best)
        best_map[better] = maps[better]
    x_adv = x + delta
    params = {"explainer": "axai", "objective": "topk" if target is None else "target", "k": k, "eps": eps,
              "norm": "linf", "queries": queries, "square": square, "seed": seed}
    return ManipulationResult(x, x_adv, m0, best_map, pred, adapter.predict(x_adv),
                              None if target is None else unit_sum(target), time.perf_counter() - t0,
                              "axai-" + ("fragility" if target is None else "target-map"), params)


def default_k(hw) -> int:
    """Top-k size of the fragility metrics: 10 % of the pixels (78 on MNIST, 6 on 8×8 digits)."""
    return max(1, round(0.1 * int(hw[0]) * int(hw[1])))


def random_perturbation(adapter: ImageAdapter, x: Tensor, *, eps: float, norm: str = "linf", seed: int = 0) -> Tensor:
    """Baseline: x + δ with δ a random sign vector ×ε (ℓ∞) or a random direction of length ε (ℓ2), clamped to the box."""
    x = adapter.to_device(x)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    d = torch.randn(x.shape, generator=gen).to(x.device)
    d = eps * (d.sign() if norm == "linf" else d / torch.linalg.vector_norm(d.flatten(1), dim=1).view(-1, 1, 1, 1))
    return adapter.clamp(x + d)
