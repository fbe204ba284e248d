"""Property tests for recourse.core.projections (box, group sums, l0-ball-intersect-box)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recourse.core.projections import group_sums, project_box, project_l0_box

F64 = torch.float64
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

PINNED, INCREASE, DECREASE, FREE = "pinned", "increase", "decrease", "free"


def rounded(lo: float, hi: float):
    """Floats in [lo, hi] on a 1e-6 grid (no underflowing squares)."""
    return st.floats(lo, hi).map(lambda x: min(max(round(x, 6), lo), hi))


@st.composite
def l0_box_problem(draw):
    """A batch of displacements, column groups, a box containing 0 and per-row budgets."""
    d = draw(st.integers(1, 8))
    # partition: single columns and one-hot-like groups of 2-3 columns, then shuffle columns
    ids: list[int] = []
    g = 0
    while len(ids) < d:
        size = min(draw(st.sampled_from([1, 1, 2, 3])), d - len(ids))
        ids += [g] * size
        g += 1
    perm = draw(st.permutations(range(d)))
    groups = [ids[i] for i in perm]
    n_groups = g
    b = draw(st.integers(1, 4))
    per_row_box = draw(st.booleans())
    box_rows = b if per_row_box else 1
    kinds = draw(st.lists(st.sampled_from([PINNED, INCREASE, DECREASE, FREE]), min_size=d, max_size=d))
    lower = np.zeros((box_rows, d))
    upper = np.zeros((box_rows, d))
    for r in range(box_rows):
        for j, kind in enumerate(kinds):
            if kind in (INCREASE, FREE):
                upper[r, j] = draw(rounded(0.0, 3.0))
            if kind in (DECREASE, FREE):
                lower[r, j] = draw(rounded(-3.0, 0.0))
    w = np.array(
        draw(st.lists(st.lists(rounded(-4.0, 4.0), min_size=d, max_size=d), min_size=b, max_size=b))
    )
    if draw(st.booleans()):
        m = draw(st.integers(0, n_groups + 1))
        m_rows = [m] * b
    else:
        m_rows = draw(st.lists(st.integers(0, n_groups + 1), min_size=b, max_size=b))
        m = torch.tensor(m_rows)
    lo_t, up_t = torch.tensor(lower, dtype=F64), torch.tensor(upper, dtype=F64)
    if not per_row_box:
        lo_t, up_t = lo_t[0], up_t[0]  # (D,) box shared by all rows
    return {
        "w": torch.tensor(w, dtype=F64),
        "lower": lo_t,
        "upper": up_t,
        "m": m,
        "m_rows": m_rows,
        "groups": torch.tensor(groups, dtype=torch.long),
        "n_groups": n_groups,
        "kinds": kinds,
    }


def _members(groups: torch.Tensor, n_groups: int) -> list[list[int]]:
    return [torch.nonzero(groups == g).flatten().tolist() for g in range(n_groups)]


def _brute_force(w: np.ndarray, lo: np.ndarray, up: np.ndarray, members, m: int) -> float:
    """min over group subsets S, |S| <= m, of ||w - P_S||^2 with P_S = clamp on S, 0 elsewhere
    (:func:`_weighted_brute_force` with M = 1 and no simplex groups)."""
    return _weighted_brute_force(w, np.zeros_like(w), lo, up, np.ones_like(w), members, [], m)


def _row_box(prob, i):
    lo, up = prob["lower"], prob["upper"]
    if lo.dim() == 2:
        lo, up = lo[i], up[i]
    return lo.numpy(), up.numpy()


def _changed_groups(x: np.ndarray, members) -> int:
    return sum(1 for mem in members if np.any(x[mem] != 0))


@SETTINGS
@given(prob=l0_box_problem())
def test_project_l0_box_matches_brute_force(prob):
    w, groups, n_groups = prob["w"], prob["groups"], prob["n_groups"]
    out = project_l0_box(w, prob["lower"], prob["upper"], prob["m"], groups, n_groups)
    assert out.shape == w.shape and out.dtype == w.dtype
    members = _members(groups, n_groups)
    for i, m in enumerate(prob["m_rows"]):
        lo, up = _row_box(prob, i)
        wi, oi = w[i].numpy(), out[i].numpy()
        obj = float(np.sum((wi - oi) ** 2))
        assert abs(obj - _brute_force(wi, lo, up, members, m)) <= 1e-9
        # feasibility: in the box, at most m groups changed
        assert np.all(oi >= lo) and np.all(oi <= up)
        assert _changed_groups(oi, members) <= m
        # every column is either the clamped displacement (kept group) or 0 (dropped group)
        clamp = np.minimum(np.maximum(wi, lo), up)
        for mem in members:
            assert np.array_equal(oi[mem], clamp[mem]) or np.all(oi[mem] == 0)
        for j, kind in enumerate(prob["kinds"]):
            if kind == PINNED:
                assert oi[j] == 0.0
            elif kind == INCREASE:
                assert oi[j] >= 0.0
            elif kind == DECREASE:
                assert oi[j] <= 0.0


@SETTINGS
@given(prob=l0_box_problem())
def test_project_l0_box_is_idempotent(prob):
    w, groups, n_groups = prob["w"], prob["groups"], prob["n_groups"]
    args = (prob["lower"], prob["upper"], prob["m"], groups, n_groups)
    out = project_l0_box(w, *args)
    assert torch.equal(project_l0_box(out, *args), out)


@SETTINGS
@given(prob=l0_box_problem(), data=st.data())
def test_project_l0_box_fixes_feasible_points(prob, data):
    """A point in the box with at most m nonzero groups is its own projection."""
    groups, n_groups = prob["groups"], prob["n_groups"]
    members = _members(groups, n_groups)
    b, d = prob["w"].shape
    y = np.zeros((b, d))
    for i, m in enumerate(prob["m_rows"]):
        lo, up = _row_box(prob, i)
        k = min(m, n_groups)
        chosen = data.draw(st.lists(st.sampled_from(range(n_groups)), max_size=k, unique=True))
        for g in chosen:
            for j in members[g]:
                y[i, j] = data.draw(rounded(float(lo[j]), float(up[j])))
    y_t = torch.tensor(y, dtype=F64)
    out = project_l0_box(y_t, prob["lower"], prob["upper"], prob["m"], groups, n_groups)
    assert torch.equal(out, y_t)


@SETTINGS
@given(prob=l0_box_problem())
def test_int_and_tensor_budgets_agree(prob):
    w, groups, n_groups = prob["w"], prob["groups"], prob["n_groups"]
    lo, up = prob["lower"], prob["upper"]
    m_rows = prob["m_rows"]
    by_tensor = project_l0_box(w, lo, up, torch.tensor(m_rows), groups, n_groups)
    for i, m in enumerate(m_rows):
        row_lo, row_up = (lo[i], up[i]) if lo.dim() == 2 else (lo, up)
        by_int = project_l0_box(w[i : i + 1], row_lo, row_up, m, groups, n_groups)
        # equal objective (ties between equal-gain groups may be broken differently)
        assert torch.allclose(
            ((w[i] - by_int[0]) ** 2).sum(), ((w[i] - by_tensor[i]) ** 2).sum(), rtol=0, atol=1e-12
        )
    # n_groups inferred from the group ids
    assert torch.equal(project_l0_box(w, lo, up, prob["m"], groups), project_l0_box(w, lo, up, prob["m"], groups, n_groups))


@SETTINGS
@given(prob=l0_box_problem())
def test_singleton_groups_equal_ungrouped(prob):
    w, lo, up, m = prob["w"], prob["lower"], prob["upper"], prob["m"]
    d = w.shape[1]
    ungrouped = project_l0_box(w, lo, up, m)
    singletons = project_l0_box(w, lo, up, m, torch.arange(d), d)
    assert torch.allclose(((w - ungrouped) ** 2).sum(1), ((w - singletons) ** 2).sum(1), rtol=0, atol=1e-12)
    members = [[j] for j in range(d)]
    for i, mi in enumerate(prob["m_rows"]):
        row_lo, row_up = _row_box(prob, i)
        best = _brute_force(w[i].numpy(), row_lo, row_up, members, mi)
        assert abs(float(((w[i] - ungrouped[i]) ** 2).sum()) - best) <= 1e-9


def test_budget_edge_cases():
    w = torch.tensor([[2.0, -1.0, 0.5], [-3.0, 0.0, 4.0]], dtype=F64)
    lo = torch.full((3,), -10.0, dtype=F64)
    up = torch.full((3,), 10.0, dtype=F64)
    assert torch.equal(project_l0_box(w, lo, up, 0), torch.zeros_like(w))
    assert torch.equal(project_l0_box(w, lo, up, 3), w)
    assert torch.equal(project_l0_box(w, lo, up, 99), w)
    assert torch.equal(project_l0_box(w, lo, up, torch.tensor([0, 3])), torch.stack([torch.zeros(3, dtype=F64), w[1]]))
    expected = torch.tensor([[2.0, 0.0, 0.0], [-3.0, 0.0, 4.0]], dtype=F64)
    assert torch.equal(project_l0_box(w, lo, up, torch.tensor([1, 2])), expected)
    # a one-hot group of two columns counts as one feature
    g = torch.tensor([0, 0, 1])
    assert torch.equal(project_l0_box(w, lo, up, 1, g, 2), torch.tensor([[2.0, -1.0, 0.0], [0.0, 0.0, 4.0]], dtype=F64))
    # float32 stays float32
    out32 = project_l0_box(w.float(), lo.float(), up.float(), 1)
    assert out32.dtype == torch.float32


def test_project_box_and_group_sums():
    w = torch.tensor([[-2.0, 0.5, 3.0]], dtype=F64)
    lo = torch.tensor([-1.0, 0.0, 0.0], dtype=F64)
    up = torch.tensor([1.0, 0.0, 2.0], dtype=F64)
    assert torch.equal(project_box(w, lo, up), torch.tensor([[-1.0, 0.0, 2.0]], dtype=F64))
    sums = group_sums(torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]), torch.tensor([1, 0, 1]), 3)
    assert torch.equal(sums, torch.tensor([[2.0, 4.0, 0.0], [5.0, 10.0, 0.0]]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_support_uses_clamped_gain(dtype):
    """The kept feature maximises the gain of its clamped move, not the raw |w|.

    Column 0 wants +100 but may only move 0.5 (gain 0.5 * (200 - 0.5) = 99.75); column 1 moves
    freely by 10.5 (gain 110.25), so with m = 1 only column 1 changes.
    """
    w = torch.tensor([[100.0, 10.5], [100.0, 9.5]], dtype=dtype)
    lo = torch.tensor([0.0, -20.0], dtype=dtype)
    up = torch.tensor([0.5, 20.0], dtype=dtype)
    out = project_l0_box(w, lo, up, 1)
    assert torch.equal(out, torch.tensor([[0.0, 10.5], [0.5, 0.0]], dtype=dtype))


# ------------------------------------------------------------------------------------------
# L0BoxProjection: the one projection (metric weights, one-hot simplex groups, point form)
# ------------------------------------------------------------------------------------------
from recourse.core.projections import L0BoxProjection, simplex_layout  # noqa: E402


def _simplex_np(v: np.ndarray) -> np.ndarray:
    """Euclidean projection onto the unit simplex by bisection on θ (independent of the sort rule)."""
    lo, hi = float(v.min()) - 1.0, float(v.max())
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if np.maximum(v - mid, 0.0).sum() > 1.0:
            lo = mid
        else:
            hi = mid
    return np.maximum(v - 0.5 * (lo + hi), 0.0)


@st.composite
def weighted_problem(draw):
    """Rows x with box groups and one-hot simplex groups, a diagonal metric constant on each
    group, per-row boxes (a simplex group's box holds Δ − x, or is {0}: pinned) and budgets."""
    n_box = draw(st.integers(0, 4))
    sizes = draw(st.lists(st.integers(2, 3), max_size=2))
    if n_box + len(sizes) == 0:
        n_box = 1
    members: list[list[int]] = []
    col = 0
    for _ in range(n_box):
        members.append([col]); col += 1
    simplex_members = []
    for s in sizes:
        members.append(list(range(col, col + s))); simplex_members.append(members[-1]); col += s
    d, n_groups = col, len(members)
    perm = draw(st.permutations(range(d)))  # shuffle the columns
    members = [[perm[j] for j in mem] for mem in members]
    simplex_members = members[n_box:]
    groups = np.zeros(d, dtype=int)
    for g, mem in enumerate(members):
        groups[mem] = g
    metric = np.zeros(d)
    for mem in members:
        metric[mem] = draw(st.sampled_from([0.25, 0.5, 1.0, 2.0, 7.0]))
    b = draw(st.integers(1, 3))
    x = np.zeros((b, d)); lower = np.zeros((b, d)); upper = np.zeros((b, d)); v = np.zeros((b, d))
    pinned = False
    for r in range(b):
        for mem in members[:n_box]:
            j = mem[0]
            x[r, j] = draw(rounded(-2.0, 2.0))
            lower[r, j] = draw(rounded(-2.0, 0.0))
            upper[r, j] = draw(rounded(0.0, 2.0))
        for mem in simplex_members:
            x[r, mem[draw(st.integers(0, len(mem) - 1))]] = 1.0  # a one-hot category
            if draw(st.integers(0, 3)) == 0:
                pinned = True  # box {0}
            else:
                lower[r, mem], upper[r, mem] = -x[r, mem], 1.0 - x[r, mem]
        v[r] = x[r] + np.array(draw(st.lists(rounded(-3.0, 3.0), min_size=d, max_size=d)))
    m_rows = draw(st.lists(st.integers(0, n_groups), min_size=b, max_size=b))
    return {"x": x, "v": v, "lower": lower, "upper": upper, "metric": metric, "groups": groups,
            "members": members, "simplex": simplex_members, "n_groups": n_groups, "m_rows": m_rows,
            "pinned": pinned}


def _weighted_brute_force(w, x, lo, up, metric, members, simplex, m):
    """min over group subsets S, |S| ≤ m, of ||w − z_S||²_M (z_g the group's own projection)."""
    z = np.minimum(np.maximum(w, lo), up)
    for mem in simplex:
        if np.any(up[mem] > lo[mem]):  # not pinned
            z[mem] = _simplex_np(x[mem] + w[mem]) - x[mem]
    best = np.inf
    for k in range(min(m, len(members)) + 1):
        for subset in itertools.combinations(range(len(members)), k):
            p = np.zeros_like(w)
            for g in subset:
                p[members[g]] = z[members[g]]
            best = min(best, float(np.sum(metric * (w - p) ** 2)))
    return best


@pytest.mark.slow
@SETTINGS
@given(prob=weighted_problem(), dense=st.booleans(), per_row_m=st.booleans())
def test_l0_box_projection_is_the_nearest_feasible_point(prob, dense, per_row_m):
    """Exactness (brute force over group subsets, in the metric) and feasibility (≤ m groups
    moved, inside the box, simplex groups on the simplex), in both gain-summing paths."""
    t = lambda a: torch.tensor(a, dtype=F64)  # noqa: E731
    metric, groups = t(prob["metric"]), torch.tensor(prob["groups"])
    layout = simplex_layout(prob["simplex"]) if prob["simplex"] else None
    proj = L0BoxProjection(groups, prob["n_groups"], metric=metric, simplex=layout,
                           pinned_simplex=prob["pinned"], dense_limit=(1 << 20) if dense else 0)
    x, v, lo, up = t(prob["x"]), t(prob["v"]), t(prob["lower"]), t(prob["upper"])
    m = prob["m_rows"][0] if not per_row_m else torch.tensor(prob["m_rows"])
    m_rows = [m] * len(prob["m_rows"]) if not per_row_m else prob["m_rows"]
    y = proj.project_point(v, x, lo, up, m)
    w_proj = proj.project(v - x, lo, up, m, origin=x)
    torch.testing.assert_close(y - x, w_proj, rtol=0, atol=1e-12)
    for i, mi in enumerate(m_rows):
        wi, zi = (v - x)[i].numpy(), (y - x)[i].numpy()
        obj = float(np.sum(prob["metric"] * (wi - zi) ** 2))
        best = _weighted_brute_force(wi, prob["x"][i], prob["lower"][i], prob["upper"][i], prob["metric"],
                                     prob["members"], prob["simplex"], mi)
        assert obj <= best + 1e-9 * max(1.0, best)
        assert np.all(zi >= prob["lower"][i] - 1e-12) and np.all(zi <= prob["upper"][i] + 1e-12)
        assert _changed_groups(zi, prob["members"]) <= mi
        for mem in prob["simplex"]:
            point = y[i].numpy()[mem]
            assert np.all(point >= -1e-12) and abs(point.sum() - 1.0) <= 1e-9


@SETTINGS
@given(prob=l0_box_problem())
def test_l0_box_projection_paths_agree(prob):
    """Dense-matrix and index_add gain sums, unit metric and no metric, give the same projection
    up to ties; the one-shot function is the class."""
    w, groups, n_groups = prob["w"], prob["groups"], prob["n_groups"]
    args = (w, prob["lower"], prob["upper"], prob["m"])
    dense = L0BoxProjection(groups, n_groups).project(*args)
    sparse = L0BoxProjection(groups, n_groups, dense_limit=0).project(*args)
    unit = L0BoxProjection(groups, n_groups, metric=torch.ones(w.shape[1], dtype=F64), dense_limit=0).project(*args)
    for out in (sparse, unit):
        torch.testing.assert_close(((w - out) ** 2).sum(1), ((w - dense) ** 2).sum(1), rtol=0, atol=1e-12)
    assert torch.equal(project_l0_box(*args, groups, n_groups), dense)


def test_l0_box_projection_needs_the_origin_for_simplex_groups():
    proj = L0BoxProjection(torch.tensor([0, 0]), 1, simplex=simplex_layout([[0, 1]]))
    with pytest.raises(ValueError, match="origin"):
        proj.project(torch.zeros(1, 2), torch.zeros(2), torch.ones(2), 1)
    x = torch.tensor([[1.0, 0.0]])
    # moving to the other category: the simplex point (0, 1)
    y = proj.project_point(torch.tensor([[0.2, 0.9]]), x, torch.tensor([-1.0, 0.0]), torch.tensor([0.0, 1.0]), 1)
    torch.testing.assert_close(y, torch.tensor([[0.15, 0.85]]))
    assert torch.equal(proj.project_point(torch.tensor([[0.2, 0.9]]), x, -x, 1 - x, 0), x)


@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_simplex_face_projection_is_the_projection_onto_the_free_levels(data):
    """Columns held at 0 (forbidden levels) leave the rest projected exactly onto their own simplex."""
    from recourse.core.projections import SimplexGroups, simplex_layout

    width = data.draw(st.integers(2, 6), label="levels")
    rows = data.draw(st.integers(1, 5), label="rows")
    v = torch.tensor(data.draw(st.lists(st.floats(-5, 5), min_size=rows * width, max_size=rows * width)),
                     dtype=torch.float64).view(rows, width)
    held = torch.tensor(data.draw(st.lists(st.booleans(), min_size=rows * width, max_size=rows * width))).view(rows, width)
    simplex = SimplexGroups(simplex_layout([list(range(width))]))
    got = simplex.values(v, held)
    for r in range(rows):
        free = (~held[r]).nonzero().squeeze(1)
        if free.numel() == 0:  # every column held: left to the caller (a pinned group) as the plain projection
            assert torch.allclose(got[r], simplex.values(v[r:r + 1])[0])
            continue
        expected = torch.zeros(width, dtype=torch.float64)
        sub = SimplexGroups(simplex_layout([list(range(free.numel()))]))
        expected[free] = sub.values(v[r:r + 1, free])[0]
        assert torch.allclose(got[r], expected, atol=1e-12), (v[r], held[r], got[r], expected)
        assert abs(float(got[r].sum()) - 1.0) < 1e-9 and bool((got[r][held[r]] == 0).all())
