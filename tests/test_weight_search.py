"""The one outer weight search of the core (bracket, then geometric bisection), batched over rows."""
from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recourse.core.weight_search import bracket_search

rows = st.lists(st.tuples(st.floats(1e-3, 1e3), st.floats(1e-3, 1e3)), min_size=1, max_size=8)


def _monotone(thresholds: torch.Tensor, raise_on_success: bool):
    """A run whose answer is θ itself and that succeeds while θ is on the cheap side of the threshold:
    θ ≤ t when larger θ is cheaper (a sparsity weight), θ ≥ t when smaller θ is cheaper (a loss weight)."""
    tried: list[torch.Tensor] = []

    def run(theta: torch.Tensor):
        tried.append(theta.clone())
        ok = theta <= thresholds if raise_on_success else theta >= thresholds
        return theta[:, None].clone(), ok

    return run, tried


@settings(max_examples=60, deadline=None)
@given(rows, st.booleans(), st.integers(1, 12))
def test_keeps_the_cheapest_success_among_the_tried_weights(pairs, raise_on_success, steps):
    t = torch.tensor([p[0] for p in pairs], dtype=torch.float64)
    start = torch.tensor([p[1] for p in pairs], dtype=torch.float64)
    run, tried = _monotone(t, raise_on_success)
    score = (lambda w: -w[:, 0]) if raise_on_success else (lambda w: w[:, 0])  # the cheap side scores lower
    best, found, theta = bracket_search(run, score, start, steps, 4.0, raise_on_success)
    assert len(tried) == steps
    history = torch.stack(tried)  # (steps, B)
    ok = history <= t if raise_on_success else history >= t
    assert torch.equal(found, ok.any(0))
    cheapest = torch.where(ok, history, -math.inf if raise_on_success else math.inf)
    cheapest = cheapest.max(0).values if raise_on_success else cheapest.min(0).values
    assert torch.equal(best[found, 0], cheapest[found]) and torch.equal(theta[found], cheapest[found])
    assert torch.equal(best[~found, 0], start[~found])  # no success: the first run's answers


@settings(max_examples=40, deadline=None)
@given(rows, st.booleans())
def test_converges_geometrically_to_the_threshold(pairs, raise_on_success):
    t = torch.tensor([p[0] for p in pairs], dtype=torch.float64)
    start = torch.tensor([p[1] for p in pairs], dtype=torch.float64)
    run, _ = _monotone(t, raise_on_success)
    score = (lambda w: -w[:, 0]) if raise_on_success else (lambda w: w[:, 0])
    best, found, theta = bracket_search(run, score, start, 40, 4.0, raise_on_success)
    assert found.all()
    ratio = theta / t
    assert ((ratio <= 1 + 1e-12) & (ratio >= 0.999)).all() if raise_on_success else \
        ((ratio >= 1 - 1e-12) & (ratio <= 1.001)).all()
