r"""The outer search on a per-row weight: bracket, then geometric bisection (batched).

Many solvers of the project minimise a trade-off :math:`h_\theta` whose per-row weight θ (a
sparsity weight λ, a loss weight c) decides between success and a cheaper answer.  One run
solves every row at its current θ; then each row moves its θ:

* towards the cheaper side after a success, away from it after a failure — by the factor
  ``factor`` while only one side is known (the bracketing phase),
* to the geometric mean :math:`\sqrt{\theta_s \theta_f}` of its latest success and failure
  once both are known (bisection).

``raise_on_success=True``: larger θ is cheaper (λ of a sparse attack); ``False``: smaller θ is
cheaper (the loss weight c of a counterfactual).  Per row the successful answer with the lowest
``score`` is kept.  (The tabular S-CFE engine does not bisect: it tries a whole ladder of loss
weights in one batched run, see :mod:`recourse.search`.)
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

Run = Callable[[Tensor], tuple[Tensor, Tensor]]
"""run(θ (B,)) → (answers (B, …), success (B,) bool)."""


def bracket_search(run: Run, score: Callable[[Tensor], Tensor], start: Tensor, steps: int, factor: float,
                   raise_on_success: bool = True) -> tuple[Tensor, Tensor, Tensor]:
    """``steps`` runs of the search (at least one); returns (best answers, found, θ of the best).

    Rows without any success keep the first run's answers (``found`` False, θ the start).
    """
    theta = start.clone()
    ok, fail = theta.clone(), theta.clone()
    has_ok = torch.zeros_like(theta, dtype=torch.bool)
    has_fail = torch.zeros_like(theta, dtype=torch.bool)
    best: Tensor | None = None
    best_score = torch.full_like(theta, float("inf"))
    best_theta = theta.clone()
    for _ in range(max(1, steps)):
        answers, success = run(theta)
        if best is None:
            best = answers.clone()
        s = score(answers)
        better = success & (s < best_score)
        best[better] = answers[better]
        best_score = torch.where(better, s, best_score)
        best_theta = torch.where(better, theta, best_theta)
        ok = torch.where(success, theta, ok)
        fail = torch.where(success, fail, theta)
        has_ok, has_fail = has_ok | success, has_fail | ~success
        both = torch.sqrt(ok * fail)
        grown, shrunk = theta * factor, theta / factor
        after_success = torch.where(has_fail, both, grown if raise_on_success else shrunk)
        after_failure = torch.where(has_ok, both, shrunk if raise_on_success else grown)
        theta = torch.where(success, after_success, after_failure)
    assert best is not None
    return best, torch.isfinite(best_score), best_theta
