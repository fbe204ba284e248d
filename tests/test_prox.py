"""Property tests for recourse.core.prox against brute force, closed forms and KKT conditions."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize

from recourse.core.prox import (
    GroupL0Penalty,
    GroupL2Penalty,
    L0Penalty,
    L1Penalty,
    LpPenalty,
    lp_threshold,
    project_l1_ball,
    project_l2_ball,
    project_linf_ball,
    project_simplex,
    prox_group_l0,
    prox_group_l2,
    prox_l0,
    prox_l1,
    prox_lp,
)

PS = [0.0, 0.5, 2.0 / 3.0, 1.0]
F64 = torch.float64
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --------------------------------------------------------------------------------------------
# scalar brute force
# --------------------------------------------------------------------------------------------
GRID = np.linspace(-6.0, 6.0, 200_001)


def lp_obj(w, v: float, lam: float, p: float):
    w = np.asarray(w, dtype=np.float64)
    pen = (w != 0).astype(np.float64) if p == 0.0 else np.abs(w) ** p
    return 0.5 * (w - v) ** 2 + lam * pen


def _refine(f, grid: np.ndarray, levels: int = 3) -> tuple[float, float]:
    """Grid minimum of f refined ``levels`` times on the bracket around the best point."""
    vals = f(grid)
    j = int(np.argmin(vals))
    best_w, best_f = float(grid[j]), float(vals[j])
    for _ in range(levels):
        lo, hi = grid[max(j - 1, 0)], grid[min(j + 1, len(grid) - 1)]
        grid = np.linspace(lo, hi, 2001)
        vals = f(grid)
        j = int(np.argmin(vals))
        if vals[j] <= best_f:
            best_w, best_f = float(grid[j]), float(vals[j])
    return best_w, best_f


def brute_lp(v: float, lam: float, p: float):
    """(f(0), argmin and min over w != 0) of 1/2 (w - v)^2 + lam |w|^p by refined grid search."""
    f = lambda w: lp_obj(w, v, lam, p)  # noqa: E731
    nonzero = GRID[np.abs(GRID) > 1e-300]
    w_nz, f_nz = _refine(f, nonzero)
    if w_nz == 0.0:  # refinement may land on 0 exactly; it is not part of the nonzero branch
        w_nz, f_nz = float(nonzero[np.argmin(f(nonzero))]), float(np.min(f(nonzero)))
    return float(f(0.0)), w_nz, f_nz


def _check_scalar(v: float, lam: float, p: float) -> None:
    w = prox_lp(torch.tensor([v], dtype=F64), lam, p).item()
    f0, w_nz, f_nz = brute_lp(v, lam, p)
    f_w = float(lp_obj(w, v, lam, p))
    assert math.isfinite(w)
    assert f_w <= min(f0, f_nz) + 1e-6, (v, lam, p, w, w_nz, f_w, f0, f_nz)
    if abs(f0 - f_nz) > 1e-6:  # unique global minimiser
        if f0 < f_nz:
            assert w == 0.0, (v, lam, p, w)
        else:
            assert w != 0.0 and abs(w - w_nz) <= 1e-6, (v, lam, p, w, w_nz)
            assert np.sign(w) == np.sign(v)


@pytest.mark.parametrize("p", PS)
@settings(max_examples=150, deadline=None)
@given(v=st.floats(-5.0, 5.0), lam=st.floats(0.0, 3.0))
@example(v=0.0, lam=1.0)
@example(v=1.0, lam=0.0)
@example(v=-5.0, lam=3.0)
@example(v=5.0, lam=1e-12)
def test_prox_lp_matches_brute_force(p, v, lam):
    _check_scalar(v, lam, p)


@pytest.mark.parametrize("p", [0.0, 0.5, 2.0 / 3.0])
@settings(max_examples=40, deadline=None)
@given(
    lam=st.floats(0.01, 3.0),
    rel=st.floats(1e-5, 0.2),
    side=st.sampled_from([-1.0, 1.0]),
    sign=st.sampled_from([-1.0, 1.0]),
)
def test_prox_lp_near_threshold(p, lam, rel, side, sign):
    """Just below / above the threshold: 0 vs the nonzero branch, against brute force."""
    t = lp_threshold(lam, p)
    v = sign * t * (1.0 + side * rel)
    if abs(v) > 5.5:
        return
    _check_scalar(v, lam, p)
    w = prox_lp(torch.tensor([v], dtype=F64), lam, p).item()
    assert (w != 0.0) == (side > 0)


@pytest.mark.parametrize("p", [0.0, 0.5, 2.0 / 3.0])
@pytest.mark.parametrize("lam", [0.05, 0.3, 1.0, 2.5])
def test_threshold_is_the_tie_point(p, lam):
    """At |v| = threshold the best nonzero point ties with w = 0 (definition of the threshold)."""
    t = lp_threshold(lam, p)
    f0, _, f_nz = brute_lp(t, lam, p)
    assert abs(f0 - f_nz) < 1e-8
    assert lp_threshold(torch.tensor(lam, dtype=F64), p).item() == pytest.approx(t, rel=1e-12)


def test_threshold_constants():
    lam = 0.7
    assert lp_threshold(lam, 0) == pytest.approx(math.sqrt(2 * lam))
    assert lp_threshold(lam, 1) == pytest.approx(lam)
    # Xu et al. / Cao et al. thresholds are stated for (w - v)^2 + mu |w|^p, i.e. mu = 2 lam
    mu = 2 * lam
    assert lp_threshold(lam, 0.5) == pytest.approx(54 ** (1 / 3) / 4 * mu ** (2 / 3))
    assert lp_threshold(lam, 2 / 3) == pytest.approx(2 / 3 * (3 * mu**3) ** 0.25)


@pytest.mark.parametrize("p", PS)
def test_prox_lp_batched_vs_brute_force(p):
    """A deterministic batch (values and per-element lam) through one call, checked per entry."""
    gen = torch.Generator().manual_seed(1234)
    v = torch.rand(40, generator=gen, dtype=F64) * 10 - 5
    lam = torch.rand(40, generator=gen, dtype=F64) * 3
    w = prox_lp(v, lam, p)
    for i in range(40):
        vi, li, wi = v[i].item(), lam[i].item(), w[i].item()
        assert wi == prox_lp(torch.tensor([vi], dtype=F64), li, p).item()
        f0, _, f_nz = brute_lp(vi, li, p)
        assert lp_obj(wi, vi, li, p) <= min(f0, f_nz) + 1e-6


# --------------------------------------------------------------------------------------------
# closed forms, identity, shapes, broadcasting, robustness
# --------------------------------------------------------------------------------------------
vec = st.lists(st.floats(-50, 50, allow_subnormal=False), min_size=1, max_size=20)


@settings(max_examples=80, deadline=None)
@given(v=vec, lam=st.floats(0.0, 10.0))
def test_soft_and_hard_thresholding_closed_forms(v, lam):
    for dtype in (torch.float32, F64):
        x = torch.tensor(v, dtype=dtype)
        lam_t = torch.tensor(lam, dtype=dtype)
        soft = torch.sign(x) * torch.clamp(x.abs() - lam_t, min=0)
        hard = torch.where(x.abs() > torch.sqrt(2 * lam_t), x, torch.zeros_like(x))
        assert torch.equal(prox_lp(x, lam, 1), soft)
        assert torch.equal(prox_l1(x, lam), soft)
        assert torch.equal(L1Penalty(lam).prox(x), soft)
        assert torch.equal(prox_lp(x, lam, 0), hard)
        assert torch.equal(prox_l0(x, lam), hard)
        assert torch.equal(L0Penalty(lam).prox(x), hard)


@pytest.mark.parametrize("p", PS)
@settings(max_examples=30, deadline=None)
@given(v=vec)
def test_lam_zero_is_identity(p, v):
    x = torch.tensor(v, dtype=F64)
    assert torch.equal(prox_lp(x, 0.0, p), x)
    assert torch.equal(prox_lp(x, torch.zeros_like(x), p), x)
    assert torch.equal(LpPenalty(1.0, p).prox(x, 0.0), x)
    # per-element lam with some zeros: identity exactly there
    lam = torch.where(torch.arange(len(v)) % 2 == 0, 0.0, 1.0).to(F64)
    out = prox_lp(x, lam, p)
    assert torch.equal(out[lam == 0], x[lam == 0])


@pytest.mark.parametrize("p", PS)
def test_zero_input_maps_to_zero(p):
    x = torch.zeros(3, 4, dtype=F64)
    for lam in (0.0, 1e-9, 1.0):
        assert torch.equal(prox_lp(x, lam, p), x)


def _devices():
    devs = [torch.device("cpu")]
    if torch.cuda.is_available():
        devs.append(torch.device("cuda"))
    return devs


@pytest.mark.parametrize("p", PS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("device", _devices())
def test_shape_dtype_device_preserved(p, dtype, device):
    gen = torch.Generator().manual_seed(0)
    x = (torch.randn(4, 3, 5, generator=gen) * 3).to(dtype=dtype, device=device)
    out = prox_lp(x, 0.5, p)
    assert out.shape == x.shape and out.dtype == dtype and out.device == x.device
    assert torch.isfinite(out).all()
    pen = LpPenalty(0.5, p)
    val = pen(x)
    assert val.shape == (4,) and val.device == x.device
    step = torch.rand(4, 1, 1, generator=gen).to(dtype=dtype, device=device)
    assert pen.prox(x, step).shape == x.shape
    for fn in (project_l2_ball, project_linf_ball, project_l1_ball):
        y = fn(x, 1.0)
        assert y.shape == x.shape and y.dtype == dtype and y.device == x.device
    y = project_simplex(x, 1.0)
    assert y.shape == x.shape and y.dtype == dtype and y.device == x.device
    g = torch.tensor([0, 0, 1, 2, 2], device=device)
    x2 = x[:, 0, :]
    for fn in (prox_group_l0, prox_group_l2):
        y = fn(x2, 0.5, g, 3)
        assert y.shape == x2.shape and y.dtype == dtype and y.device == x.device


@pytest.mark.parametrize("p", PS)
def test_float32_agrees_with_float64(p):
    gen = torch.Generator().manual_seed(7)
    v = torch.rand(2000, generator=gen, dtype=F64) * 20 - 10
    lam = torch.rand(2000, generator=gen, dtype=F64) * 3
    w64 = prox_lp(v, lam, p)
    w32 = prox_lp(v.float(), lam.float(), p).double()
    t = lp_threshold(lam, p)
    away = (v.abs() - t).abs() > 1e-4 * (1 + t)  # float32 may pick the other side at a tie
    assert torch.allclose(w32[away], w64[away], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("p", PS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_no_nan_on_extreme_inputs(p, dtype):
    fi = torch.finfo(dtype)
    big, tiny, sub = fi.max / 2, fi.tiny, fi.smallest_normal * fi.eps
    v = torch.tensor(
        [0.0, -0.0, sub, -tiny, 1e-300, 1e-30, -1e-20, 1e-8, 1.0, -3.0, 1e4, -big, big]
        + [math.inf, -math.inf],
        dtype=dtype,
    )
    for lam in (0.0, sub, tiny, 5e-324, 1e-200, 1e-30, 1e-12, 1e-3, 1.0, 1e6, 1e30, big, math.inf):
        out = prox_lp(v, lam, p)
        assert not torch.isnan(out).any(), (lam, out)
        assert out.dtype == dtype
        # shrinkage: never larger in magnitude, never changes sign
        assert (out.abs() <= v.abs()).all()
        assert (torch.sign(out) * torch.sign(v) >= 0).all()


def test_invalid_p_and_negative_parameters():
    x = torch.ones(2, 3)
    for bad in (0.3, 2, -1, 0.6, 1.5, "half", None):
        with pytest.raises(ValueError):
            prox_lp(x, 1.0, bad)
        with pytest.raises(ValueError):
            LpPenalty(1.0, bad)
    # 2/3 is accepted with a tolerance
    assert torch.equal(prox_lp(x, 0.1, 0.6666667), prox_lp(x, 0.1, 2 / 3))
    assert torch.equal(prox_lp(x, 0.1, 0.5), prox_lp(x, 0.1, 1 / 2))
    with pytest.raises(ValueError):
        prox_lp(x, -1.0, 1)
    with pytest.raises(ValueError):
        prox_lp(x, torch.ones(5), 1)  # not broadcastable to x
    with pytest.raises(ValueError):
        project_l2_ball(x, -1.0)
    with pytest.raises(ValueError):
        project_l2_ball(x, torch.ones(3))  # neither scalar nor (B,)


@pytest.mark.parametrize("p", PS)
@settings(max_examples=25, deadline=None)
@given(
    rows=st.lists(st.lists(st.floats(-5, 5), min_size=3, max_size=3), min_size=1, max_size=5),
    data=st.data(),
)
def test_per_row_steps_broadcast(p, rows, data):
    x = torch.tensor(rows, dtype=F64)
    steps = data.draw(st.lists(st.floats(0, 2), min_size=len(rows), max_size=len(rows)))
    lam = 0.7
    pen = LpPenalty(lam, p)
    out = pen.prox(x, torch.tensor(steps, dtype=F64)[:, None])
    for i, s in enumerate(steps):
        assert torch.equal(out[i], prox_lp(x[i], s * lam, p))
        assert torch.equal(out[i : i + 1], pen.prox(x[i : i + 1], s))


def test_penalty_values():
    x = torch.tensor([[0.0, -2.0, 3.0, 0.0], [1.0, 0.0, 0.0, -4.0]], dtype=F64)
    assert torch.equal(L0Penalty(2.0)(x), torch.tensor([4.0, 4.0], dtype=F64))
    assert torch.equal(L1Penalty(0.5)(x), torch.tensor([2.5, 2.5], dtype=F64))
    half = LpPenalty(1.0, 0.5)(x)
    assert torch.allclose(half, torch.tensor([2**0.5 + 3**0.5, 1 + 2.0], dtype=F64))
    tt = LpPenalty(3.0, 2 / 3)(x)
    assert torch.allclose(tt, 3 * torch.tensor([2 ** (2 / 3) + 3 ** (2 / 3), 1 + 4 ** (2 / 3)], dtype=F64))
    # per-row lam (B, 1) and multi-dim inputs sum over all non-batch dims
    assert torch.equal(L0Penalty(torch.tensor([[1.0], [3.0]], dtype=F64))(x), torch.tensor([2.0, 6.0], dtype=F64))
    x3 = x.reshape(2, 2, 2)
    assert torch.equal(L1Penalty(0.5)(x3), L1Penalty(0.5)(x))
    # the prox minimises value + distance: compare with the penalty class itself
    v = torch.tensor([[0.3, -1.7, 2.5, 0.9]], dtype=F64)
    for p in PS:
        pen = LpPenalty(0.8, p)
        w = pen.prox(v, 1.5)
        obj = 0.5 * ((w - v) ** 2).sum() + 1.5 * pen(w)
        for delta in torch.linspace(-0.2, 0.2, 11, dtype=F64):
            for j in range(4):
                w2 = w.clone()
                w2[0, j] += delta
                assert obj <= 0.5 * ((w2 - v) ** 2).sum() + 1.5 * pen(w2) + 1e-12


# --------------------------------------------------------------------------------------------
# group operators
# --------------------------------------------------------------------------------------------
def rounded(lo: float, hi: float):
    """Floats in [lo, hi] on a 1e-6 grid (no denormal noise in the numpy reference)."""
    return st.floats(lo, hi).map(lambda x: min(max(round(x, 6), lo), hi))


@st.composite
def grouped_batch(draw, max_d: int = 7, max_b: int = 3):
    d = draw(st.integers(1, max_d))
    ids: list[int] = []
    g = 0
    while len(ids) < d:
        size = min(draw(st.sampled_from([1, 1, 2, 3])), d - len(ids))
        ids += [g] * size
        g += 1
    perm = draw(st.permutations(range(d)))
    groups = [ids[i] for i in perm]
    b = draw(st.integers(1, max_b))
    vals = draw(
        st.lists(
            st.lists(rounded(-3, 3), min_size=d, max_size=d),
            min_size=b,
            max_size=b,
        )
    )
    return torch.tensor(vals, dtype=F64), torch.tensor(groups), g


def _group_members(groups: torch.Tensor, n_groups: int):
    return [torch.nonzero(groups == g).flatten().tolist() for g in range(n_groups)]


@SETTINGS
@given(batch=grouped_batch(), lam=st.floats(0.0, 3.0), per_row=st.booleans(), data=st.data())
def test_group_l0_prox_matches_brute_force(batch, lam, per_row, data):
    v, groups, n_groups = batch
    b = v.shape[0]
    if per_row:
        lam_rows = data.draw(st.lists(st.floats(0.0, 3.0), min_size=b, max_size=b))
        lam_arg = torch.tensor(lam_rows, dtype=F64)[:, None]
    else:
        lam_rows = [lam] * b
        lam_arg = lam
    out = prox_group_l0(v, lam_arg, groups, n_groups)
    assert torch.equal(out, GroupL0Penalty(1.0, groups, n_groups).prox(v, lam_arg))
    assert torch.equal(out, GroupL0Penalty(lam_arg, groups).prox(v, 1.0))
    members = _group_members(groups, n_groups)
    pen = GroupL0Penalty(1.0, groups, n_groups)
    for i in range(b):
        vi, li = v[i].numpy(), lam_rows[i]

        def obj(w):
            nz = sum(1 for m in members if np.any(w[m] != 0))
            return 0.5 * np.sum((w - vi) ** 2) + li * nz

        best, best_w = math.inf, None
        for keep in itertools.product([False, True], repeat=n_groups):
            w = np.zeros_like(vi)
            for g, k in enumerate(keep):
                if k:
                    w[members[g]] = vi[members[g]]
            f = obj(w)
            if f < best:
                best, best_w = f, w
        oi = out[i].numpy()
        assert obj(oi) <= best + 1e-9
        # each column is either kept or dropped whole-group
        for m in members:
            assert np.all(oi[m] == vi[m]) or np.all(oi[m] == 0)
        half_sq = [0.5 * float(np.sum(vi[m] ** 2)) for m in members]
        if all(abs(h - li) > 1e-9 for h in half_sq):  # unique minimiser
            assert np.array_equal(oi, best_w)
        # the class (lam = 1) counts the nonzero groups
        n_nonzero = sum(1 for m in members if np.any(oi[m] != 0))
        assert pen(out[i : i + 1]).item() == n_nonzero


@SETTINGS
@given(batch=grouped_batch(), lam=st.floats(0.0, 3.0))
def test_group_l2_prox_closed_form_and_kkt(batch, lam):
    v, groups, n_groups = batch
    out = prox_group_l2(v, lam, groups, n_groups)
    assert torch.equal(out, GroupL2Penalty(lam, groups, n_groups).prox(v))
    members = _group_members(groups, n_groups)
    for i in range(v.shape[0]):
        for m in members:
            vg, wg = v[i, m].numpy(), out[i, m].numpy()
            nv = float(np.linalg.norm(vg))
            expected = vg * max(0.0, 1.0 - lam / nv) if nv > 0 else np.zeros_like(vg)
            np.testing.assert_allclose(wg, expected, rtol=1e-12, atol=1e-12)
            nw = float(np.linalg.norm(wg))
            if nw > 0:  # stationarity: w - v + lam w / |w| = 0
                np.testing.assert_allclose(wg - vg + lam * wg / nw, 0.0, atol=1e-9)
            else:  # 0 in v - lam * unit ball
                assert nv <= lam + 1e-12
    # penalty value: lam * sum of group norms
    val = GroupL2Penalty(lam, groups, n_groups)(v)
    ref = [sum(lam * float(np.linalg.norm(v[i, m].numpy())) for m in members) for i in range(v.shape[0])]
    np.testing.assert_allclose(val.numpy(), ref, rtol=1e-12, atol=1e-12)


def test_group_ops_without_groups_are_elementwise():
    gen = torch.Generator().manual_seed(3)
    v = torch.randn(5, 6, generator=gen, dtype=F64) * 2
    assert torch.equal(prox_group_l0(v, 0.7), prox_lp(v, 0.7, 0))
    assert torch.equal(prox_group_l0(v, 0.7, torch.arange(6), 6), prox_lp(v, 0.7, 0))
    assert torch.allclose(prox_group_l2(v, 0.7), prox_lp(v, 0.7, 1), atol=1e-12)
    assert torch.equal(GroupL0Penalty(0.7)(v), L0Penalty(0.7)(v))
    # per-group lam (n_groups,) and per-row step (B, 1)
    g = torch.tensor([0, 0, 1, 1, 1, 2])
    lam_g = torch.tensor([0.1, 5.0, 0.0], dtype=F64)
    out = GroupL0Penalty(lam_g, g).prox(v, torch.full((5, 1), 2.0, dtype=F64))
    assert torch.equal(out, prox_group_l0(v, 2 * lam_g, g, 3))
    assert torch.equal(out[:, 5], v[:, 5])  # lam = 0 group: kept unless exactly zero
    with pytest.raises(ValueError):
        prox_group_l0(v[None], 0.7, g)


# --------------------------------------------------------------------------------------------
# ball and simplex projections
# --------------------------------------------------------------------------------------------
@st.composite
def rows_and_radius(draw, max_b: int = 3, max_n: int = 5, lo: float = 0.0, hi: float = 4.0):
    b = draw(st.integers(1, max_b))
    n = draw(st.integers(1, max_n))
    vals = draw(
        st.lists(
            st.lists(rounded(-5, 5), min_size=n, max_size=n),
            min_size=b,
            max_size=b,
        )
    )
    if draw(st.booleans()):
        radius = draw(rounded(lo, hi))
        radii = [radius] * b
    else:
        radii = draw(st.lists(rounded(lo, hi), min_size=b, max_size=b))
        radius = torch.tensor(radii, dtype=F64)
    return torch.tensor(vals, dtype=F64), radius, radii


def _assert_not_worse(w: np.ndarray, v: np.ndarray, ref: float) -> None:
    """||w - v||^2 <= the SLSQP value (which may sit slightly outside the set), up to 1e-6 rel."""
    assert float(np.sum((w - v) ** 2)) <= ref + 1e-6 * (1.0 + ref)


def _slsqp(v: np.ndarray, cons, bounds=None, x0=None) -> float:
    """min ||w - v||^2 over the constraint set by SLSQP; ``w`` = the first len(v) variables."""
    n = len(v)
    res = minimize(
        lambda x: float(np.sum((x[:n] - v) ** 2)),
        np.zeros(n) if x0 is None else x0,
        jac=lambda x: np.concatenate([2 * (x[:n] - v), np.zeros(len(x) - n)]),
        method="SLSQP",
        constraints=cons,
        bounds=bounds,
        options={"ftol": 1e-12, "maxiter": 500},
    )
    return float(np.sum((res.x[:n] - v) ** 2))


@SETTINGS
@given(data=rows_and_radius())
def test_project_l2_ball(data):
    v, radius, radii = data
    w = project_l2_ball(v, radius)
    assert torch.allclose(project_l2_ball(w, radius), w, rtol=1e-12, atol=1e-12)
    for i, r in enumerate(radii):
        vi, wi = v[i].numpy(), w[i].numpy()
        assert np.linalg.norm(wi) <= r * (1 + 1e-12) + 1e-12
        if np.linalg.norm(vi) <= r:
            assert np.array_equal(wi, vi)
        else:  # closed form: radial scaling onto the sphere
            np.testing.assert_allclose(wi, vi * r / np.linalg.norm(vi), rtol=1e-12, atol=1e-12)
        cons = [{"type": "ineq", "fun": lambda x, r=r: r * r - float(x @ x), "jac": lambda x: -2 * x}]
        _assert_not_worse(wi, vi, _slsqp(vi, cons))


@SETTINGS
@given(data=rows_and_radius())
def test_project_linf_ball(data):
    v, radius, radii = data
    w = project_linf_ball(v, radius)
    assert torch.equal(project_linf_ball(w, radius), w)
    for i, r in enumerate(radii):
        vi, wi = v[i].numpy(), w[i].numpy()
        assert np.all(np.abs(wi) <= r)
        np.testing.assert_array_equal(wi, np.clip(vi, -r, r))
        bounds = [(-r, r)] * len(vi)
        _assert_not_worse(wi, vi, _slsqp(vi, [], bounds))


def _check_threshold_form(vi: np.ndarray, wi: np.ndarray, sign_split: bool) -> None:
    """KKT: w = max(v - theta, 0) (simplex) or sign(v) max(|v| - theta, 0) (l1) for one theta."""
    base = np.abs(vi) if sign_split else vi
    out = np.abs(wi) if sign_split else wi
    if sign_split:
        assert np.all(wi * vi >= 0)
    pos = out > 0
    assert pos.any()
    thetas = base[pos] - out[pos]
    theta = float(np.mean(thetas))
    np.testing.assert_allclose(thetas, theta, atol=1e-9)
    assert np.all(base[~pos] <= theta + 1e-9)
    if sign_split:
        assert theta >= -1e-9


@SETTINGS
@given(data=rows_and_radius(lo=0.0, hi=6.0))
def test_project_l1_ball(data):
    v, radius, radii = data
    w = project_l1_ball(v, radius)
    assert torch.allclose(project_l1_ball(w, radius), w, rtol=1e-12, atol=1e-12)
    for i, r in enumerate(radii):
        vi, wi = v[i].numpy(), w[i].numpy()
        assert np.abs(wi).sum() <= r * (1 + 1e-12) + 1e-12
        if np.abs(vi).sum() <= r:
            assert np.array_equal(wi, vi)
        elif r == 0:
            assert np.all(wi == 0)
        elif r > 1e-6:  # (tinier radii lose v - theta to cancellation; feasibility still holds)
            assert np.abs(wi).sum() == pytest.approx(r, rel=1e-12, abs=1e-12)
            _check_threshold_form(vi, wi, sign_split=True)
        n = len(vi)
        # variables (w, t): -t <= w <= t, sum t <= r  (linear, smooth)
        cons = [
            {"type": "ineq", "fun": lambda x, n=n: x[n:] - x[:n]},
            {"type": "ineq", "fun": lambda x, n=n: x[n:] + x[:n]},
            {"type": "ineq", "fun": lambda x, n=n, r=r: r - np.sum(x[n:])},
        ]
        _assert_not_worse(wi, vi, _slsqp(vi, cons, x0=np.zeros(2 * n)))


@SETTINGS
@given(data=rows_and_radius(lo=0.0, hi=6.0))
def test_project_simplex(data):
    v, total, totals = data
    w = project_simplex(v, total)
    assert torch.allclose(project_simplex(w, total), w, rtol=1e-12, atol=1e-12)
    for i, z in enumerate(totals):
        vi, wi = v[i].numpy(), w[i].numpy()
        assert np.all(wi >= 0)
        assert wi.sum() == pytest.approx(z, rel=1e-12, abs=1e-12)
        if z > 1e-6:
            _check_threshold_form(vi, wi, sign_split=False)
        cons = [{"type": "eq", "fun": lambda x, z=z: np.sum(x) - z, "jac": lambda x: np.ones_like(x)}]
        bounds = [(0, None)] * len(vi)
        x0 = np.full(len(vi), z / len(vi))
        _assert_not_worse(wi, vi, _slsqp(vi, cons, bounds, x0))


def test_projections_over_all_non_batch_dims():
    gen = torch.Generator().manual_seed(11)
    v = torch.randn(4, 2, 3, generator=gen, dtype=F64) * 3
    r = torch.tensor([0.5, 1.0, 2.0, 100.0], dtype=F64)
    for fn in (project_l2_ball, project_linf_ball, project_l1_ball, project_simplex):
        assert torch.equal(fn(v, r), fn(v.reshape(4, 6), r).reshape(4, 2, 3))
    assert torch.equal(project_simplex(v, 1.0).sum(dim=(1, 2)).round(decimals=12), torch.ones(4, dtype=F64))
    # default simplex total is 1, and the simplex of a single entry is the total itself
    assert torch.equal(project_simplex(torch.tensor([[-3.0], [7.0]])), torch.ones(2, 1))
    # radius 0 collapses to 0
    for fn in (project_l2_ball, project_linf_ball, project_l1_ball):
        assert torch.equal(fn(v, 0.0), torch.zeros_like(v))
