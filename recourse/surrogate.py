r"""Gradients for models that have none (tree ensembles, any ``predict_proba``): a distilled
differentiable surrogate, or zeroth-order estimates.  Either way the solver only *steers* with
them; every answer is verified on the real model.

**Distilled surrogate** (the default).  A small MLP :math:`s_\theta` is fitted to the real
model's class probabilities :math:`p(x)` on the training rows and on synthetic rows around
them (feature groups swapped between rows, small noise on numeric columns, and points on the
segments between rows of different predicted classes, so the decision boundary is covered):

.. math::  \min_\theta \; \frac1N \sum_n \mathrm{CE}\big(p(x_n),\, \mathrm{softmax}(s_\theta(x_n))\big).

**Zeroth-order** (antithetic Gaussian smoothing).  The gradient of :math:`v^\top Z(x)` (a
vector–Jacobian product of the real model's logits :math:`Z = \log p`) is estimated from
:math:`2q` model calls per row, all rows batched in one call:

.. math::  \widehat{\nabla} = \frac{1}{2\sigma q}\sum_{k=1}^q
           v^\top\big(Z(x + \sigma u_k) - Z(x - \sigma u_k)\big)\, u_k, \qquad u_k \sim \mathcal N(0, I).

Query budget: :math:`2q` calls per row per gradient (q = 16: 32), i.e. ``2q × iterations`` per
row and search step.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .models import TorchClassifier


@dataclass
class Fidelity:
    """How well the surrogate reproduces the real model (agreement of predicted classes)."""

    train_agreement: float
    synthetic_agreement: float
    rows: int
    seconds: float


def synthetic_rows(x: np.ndarray, groups: Sequence[slice], numeric: np.ndarray, labels: np.ndarray, n: int,
                   rng: np.random.Generator, noise: float = 0.05) -> np.ndarray:
    """Rows around the data: group swaps + noise, and points between rows of different classes."""
    half = n // 2
    base = x[rng.integers(0, len(x), half)].copy()
    donor = x[rng.integers(0, len(x), half)]
    for s in groups:
        swap = rng.random(half) < 0.3
        base[swap, s] = donor[swap, s]
    base[:, numeric] = np.clip(base[:, numeric] + rng.normal(0, noise, (half, int(numeric.sum()))), 0.0, 1.0)
    classes = np.unique(labels)
    if len(classes) > 1:
        a = x[rng.choice(np.flatnonzero(labels == classes[0]), n - half)]
        b = x[rng.choice(np.flatnonzero(labels != classes[0]), n - half)]
    else:
        a, b = x[rng.integers(0, len(x), n - half)], x[rng.integers(0, len(x), n - half)]
    alpha = rng.random((n - half, 1))
    between = (1 - alpha) * a + alpha * b
    return np.concatenate([base, between])


def distill(
    model: TorchClassifier,
    x: np.ndarray,
    groups: Sequence[slice],
    numeric: np.ndarray,
    *,
    synthetic: int = 10000,
    hidden: int = 64,
    epochs: int = 30,
    batch_size: int = 1024,
    lr: float = 5e-3,
    seed: int = 0,
    teacher: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[TorchClassifier, Fidelity]:
    """Fit a differentiable MLP surrogate (d→h→h→C) to ``model``'s probabilities.

    ``teacher``: a faster function giving the same probabilities as ``model`` (e.g. the original
    scikit-learn estimator's ``predict_proba``) used to label the synthetic rows.
    """
    import time

    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)

    def label(rows: np.ndarray) -> Tensor:
        if teacher is not None:
            return torch.as_tensor(np.asarray(teacher(rows), dtype=np.float64))
        with torch.no_grad():
            return model.predict_proba(torch.as_tensor(rows, dtype=torch.float64)).double()

    train_p = label(x)
    synth = synthetic_rows(x, groups, numeric, train_p.argmax(1).numpy(), synthetic, rng)
    inputs = torch.as_tensor(np.concatenate([x, synth]), dtype=torch.float32)
    targets = torch.cat([train_p, label(synth)]).float()
    k = targets.shape[1]
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(inputs.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                        nn.Linear(hidden, 1 if k == 2 else k))
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    for _ in range(epochs):
        order = torch.randperm(len(inputs), generator=gen)
        for start in range(0, len(inputs), batch_size):
            idx = order[start:start + batch_size]
            out = net(inputs[idx])
            if k == 2:
                loss = nn.functional.binary_cross_entropy_with_logits(out[:, 0], targets[idx, 1])
            else:
                loss = -(targets[idx] * torch.log_softmax(out, 1)).sum(1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    surrogate = TorchClassifier(net, output="logit" if k == 2 else "logits", classes=model.classes, n_features=inputs.shape[1])
    with torch.no_grad():
        agree = (surrogate.predict_proba(inputs).argmax(1) == targets.argmax(1)).float()
    fidelity = Fidelity(float(agree[: len(x)].mean()), float(agree[len(x):].mean()), len(inputs), time.perf_counter() - started)
    return surrogate, fidelity


class _ZerothOrderLogits(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, estimator: "ZerothOrderClassifier") -> Tensor:
        ctx.save_for_backward(x)
        ctx.estimator = estimator
        return estimator.real_logits(x)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor, None]:
        (x,) = ctx.saved_tensors
        est: ZerothOrderClassifier = ctx.estimator
        b, d = x.shape
        u = torch.randn(est.directions, b, d, generator=est.generator(x.device), device=x.device, dtype=x.dtype)
        probes = torch.cat([x[None] + est.sigma * u, x[None] - est.sigma * u]).reshape(-1, d)
        z = est.real_logits(probes).reshape(2, est.directions, b, -1)
        slope = ((z[0] - z[1]) * grad_out[None]).sum(-1)  # (q, B)
        grad = (slope[..., None] * u).sum(0) / (2.0 * est.sigma * est.directions)
        est.queries += int(probes.shape[0])
        return grad, None


class ZerothOrderClassifier:
    """The real model with zeroth-order gradients: ``logits`` are exact, their backward estimated."""

    def __init__(self, model: TorchClassifier, directions: int = 16, sigma: float = 0.05, seed: int = 0):
        self.model, self.directions, self.sigma, self.seed = model, int(directions), float(sigma), seed
        self.classes = model.classes
        self.queries = 0
        self._generators: dict[str, torch.Generator] = {}

    def generator(self, device: torch.device) -> torch.Generator:
        key = str(device)
        if key not in self._generators:
            self._generators[key] = torch.Generator(device=device).manual_seed(self.seed)
        return self._generators[key]

    @property
    def device(self) -> torch.device:
        return self.model.device

    def to(self, device: Any = None, dtype: Any = None) -> "ZerothOrderClassifier":
        self.model = self.model.to(device, dtype)
        return self

    def real_logits(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            return self.model.logits(x).to(x.dtype)

    def logits(self, x: Tensor) -> Tensor:
        return _ZerothOrderLogits.apply(x, self)

    def predict_proba(self, x: Tensor) -> Tensor:
        return self.model.predict_proba(x)
