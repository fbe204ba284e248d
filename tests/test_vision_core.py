"""Core additions used by the image side: prox of λ|·|ᵖ + box, apg options, PGD and Frank–Wolfe."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recourse.core.apg import apg
from recourse.core.frank_wolfe import frank_wolfe, lmo_l1_topq
from recourse.core.pgd import pgd, steepest_direction
from recourse.core.prox import project_l2_ball, prox_lp, prox_lp_box

PS = [0.0, 0.5, 2.0 / 3.0, 1.0]
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
F64 = torch.float64


def _objective(w: np.ndarray, v: float, lam: float, p: float) -> np.ndarray:
    pen = (w != 0).astype(float) if p == 0 else np.abs(w) ** p
    return 0.5 * (w - v) ** 2 + lam * pen


@SETTINGS
@given(p=st.sampled_from(PS), v=st.floats(-3, 3), lam=st.floats(0.0, 2.0),
       lo=st.floats(-2.0, 0.0), hi=st.floats(0.0, 2.0))
def test_prox_lp_box_matches_brute_force(p, v, lam, lo, hi):
    """The constrained scalar minimiser agrees in objective value with a dense grid over [l, u] ∪ {0}."""
    w = float(prox_lp_box(torch.tensor([[v]], dtype=F64), lam, p, torch.tensor([[lo]], dtype=F64), torch.tensor([[hi]], dtype=F64)))
    assert lo - 1e-12 <= w <= hi + 1e-12
    grid = np.concatenate([np.linspace(lo, hi, 40001), [0.0, lo, hi]])
    best = _objective(grid, v, lam, p).min()
    got = _objective(np.array([w]), v, lam, p)[0]
    assert got <= best + 1e-6 * max(1.0, abs(best))


@SETTINGS
@given(p=st.sampled_from(PS), data=st.data())
def test_prox_lp_box_with_a_wide_box_is_the_plain_prox(p, data):
    v = torch.tensor(data.draw(st.lists(st.floats(-3, 3), min_size=1, max_size=8)), dtype=F64)[None]
    lam = data.draw(st.floats(0.01, 1.0))
    big = torch.full_like(v, 100.0)
    out = prox_lp_box(v, lam, p, -big, big)
    ref = prox_lp(v, lam, p)
    # equal except possibly exactly at the tie threshold, where both are minimisers
    obj = lambda w: 0.5 * (w - v) ** 2 + lam * ((w != 0).to(F64) if p == 0 else w.abs() ** p)  # noqa: E731
    assert torch.allclose(obj(out), obj(ref), atol=1e-9)


def test_prox_lp_box_closed_forms():
    v = torch.tensor([[2.0, -2.0, 0.3, 5.0]], dtype=F64)
    lo = torch.tensor([[-1.0, -1.0, -1.0, 0.0]], dtype=F64)
    hi = torch.tensor([[1.0, 0.5, 1.0, 0.0]], dtype=F64)
    # p = 1: soft threshold then clip: [1, -1, 0, 0]
    assert torch.allclose(prox_lp_box(v, 0.5, 1, lo, hi), torch.tensor([[1.0, -1.0, 0.0, 0.0]], dtype=F64))
    # p = 0, λ = 0.1: keep clip(v) iff ½(clip(v) − v)² + λ < ½v²: 2 -> 1 (0.6 < 2), -2 -> -1, 0.3 -> 0 (0.1 > 0.045)
    out = prox_lp_box(v, 0.1, 0, lo, hi)
    assert torch.allclose(out, torch.tensor([[1.0, -1.0, 0.0, 0.0]], dtype=F64))
    # p = 0 where the clipped point is worse than 0 although |v| is above sqrt(2λ): v = 3, u = 0.2, λ = 0.5
    # keep: ½·2.8² + 0.5 = 4.42 < ½·9 = 4.5 -> 0.2 ; with λ = 0.1 and u = 0.01: 4.4701 + 0.1 > 4.5 -> 0
    one = lambda t: torch.tensor([[t]], dtype=F64)  # noqa: E731
    assert float(prox_lp_box(one(3.0), 0.5, 0, one(-1.0), one(0.2))) == pytest.approx(0.2)
    assert float(prox_lp_box(one(3.0), 0.1, 0, one(-1.0), one(0.01))) == 0.0
    # p = 1/2 with the nonzero minimiser beyond the bound: clipped to u
    w_star = float(prox_lp(one(3.0), 0.3, 0.5))
    assert w_star > 1.0 and float(prox_lp_box(one(3.0), 0.3, 0.5, one(-1.0), one(1.0))) == pytest.approx(1.0)


def test_apg_stop_and_penalty_options():
    """``stop`` finishes rows early; ``g`` enters the monotone test and the returned value."""
    target = torch.tensor([[3.0, 0.0], [0.5, 0.5]], dtype=F64)

    def h(y, rows):
        return ((y - target[rows]) ** 2).sum(1)

    def prox(v, a, rows):
        return v

    base = apg(h, prox, torch.zeros(2, 2, dtype=F64), step=0.1, max_iter=300, tol=1e-9)
    assert torch.allclose(base.x, target, atol=1e-5)
    stopped = apg(h, prox, torch.zeros(2, 2, dtype=F64), step=0.1, max_iter=300, tol=1e-9,
                  stop=lambda y, rows: y[:, 0] > 1.0)
    assert stopped.iterations[0] < base.iterations[0] and stopped.x[0, 0] > 1.0
    lam = 0.7

    def prox_l1(v, a, rows):
        return prox_lp(v, a * lam, 1)

    res = apg(h, prox_l1, torch.zeros(2, 2, dtype=F64), step=0.1, max_iter=500, tol=1e-10,
              g=lambda y, rows: lam * y.abs().sum(1))
    # minimiser of (y − a)² + λ|y| is soft(a, λ/2)
    assert torch.allclose(res.x, prox_lp(target, lam / 2, 1), atol=1e-5)
    assert torch.allclose(res.value, h(res.x, torch.arange(2)) + lam * res.x.abs().sum(1), atol=1e-8)
    plain = apg(h, prox_l1, torch.zeros(2, 2, dtype=F64), step=0.1, max_iter=500, tol=1e-10, monotone=False)
    assert torch.allclose(plain.x, res.x, atol=1e-3)


def test_pgd_projects_and_stops():
    a = torch.tensor([[3.0, 4.0], [0.3, 0.0]], dtype=F64)

    def h(w, rows):
        return ((w - a[rows]) ** 2).sum(1)

    res = pgd(h, lambda w, rows: project_l2_ball(w, 1.0), torch.zeros(2, 2, dtype=F64), step=0.05, max_iter=400)
    assert torch.allclose(res.x[0], torch.tensor([0.6, 0.8], dtype=F64), atol=0.06)
    assert float(res.x[1].norm()) <= 1.0 + 1e-9 and abs(float(res.x[1, 0]) - 0.3) < 0.06
    stop = pgd(h, lambda w, rows: project_l2_ball(w, 1.0), torch.zeros(2, 2, dtype=F64), step=0.05, max_iter=400,
               stop=lambda w, rows: w.norm(dim=1) > 0.25)
    assert bool(stop.stopped.all()) and int(stop.iterations.max()) < 20
    g = torch.tensor([[1.0, -2.0]])
    assert torch.allclose(steepest_direction(g, "linf"), torch.tensor([[1.0, -1.0]]))
    with pytest.raises(ValueError):
        steepest_direction(g, "l3")


@SETTINGS
@given(data=st.data())
def test_lmo_l1_topq_is_a_feasible_sparse_descent_vertex(data):
    d = data.draw(st.integers(4, 60))
    grad = torch.tensor(data.draw(st.lists(st.floats(-5, 5).filter(lambda t: abs(t) > 1e-3), min_size=d, max_size=d)))[None]
    q = data.draw(st.floats(0.0, 0.95))
    r = data.draw(st.floats(0.1, 10.0))
    s = lmo_l1_topq(grad, r, q)
    assert abs(float(s.abs().sum()) - r) < 1e-4 * max(1, r)
    assert float((s * grad).sum()) < 0
    nz = s != 0
    assert int(nz.sum()) >= max(1, round((1 - q) * d))
    assert float(grad.abs()[nz].min()) >= float(grad.abs()[~nz].max()) if bool((~nz).any()) else True


def test_frank_wolfe_reaches_the_l1_vertex_and_stays_feasible():
    c = torch.tensor([[0.0, 5.0, -1.0, 0.0]], dtype=F64)

    def h(w, rows):
        return ((w - c) ** 2).sum(1)

    res = frank_wolfe(h, lambda g, rows: lmo_l1_topq(g, 2.0, 0.75), torch.zeros(1, 4, dtype=F64), max_iter=300, c=2.0)
    assert float(res.x.abs().sum()) <= 2.0 + 1e-9
    assert torch.allclose(res.x, torch.tensor([[0.0, 2.0, 0.0, 0.0]], dtype=F64), atol=0.05)
    with pytest.raises(ValueError):
        lmo_l1_topq(torch.ones(1, 3), 1.0, 1.0)
