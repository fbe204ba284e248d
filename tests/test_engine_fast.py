"""Tests of the engine's fast paths: array (codes) forms of encoding and constraints, closed-form
gradients (model margin, densities, the S-CFE objective), the W-norm prox, variable-metric APG,
the time limit, determinism and the engine benchmark.

The fast paths must agree with the reference (DataFrame / autograd) implementations; the
solver claims (the prox is the exact projection in the W-norm, APG converges on convex
problems) are hypothesis property tests against brute force.
"""
from __future__ import annotations

import itertools
import time
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from recourse.constraints import admissible, changed_features, violations
from recourse.core.apg import apg
from recourse.density import KDEDensity, fit_class_conditional
from recourse.encoding import TabularEncoder, complete_schema
from recourse.errors import RecordValidationError
from recourse.models import Affine, TorchClassifier
from recourse.objective import MarginGradient, RowData, SCFEProblem, logit_margin
from recourse.schema import FeatureSchema
from recourse.core.projections import simplex_layout
from recourse.scfe import SCFEConfig
from tests.test_encoding import MIXED, mixed_frame

F64 = torch.float64
SETTINGS = settings(max_examples=60, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def mixed():
    frame = mixed_frame(200)
    schema = complete_schema(FeatureSchema.from_dict(MIXED), frame)
    return schema, TabularEncoder(schema), frame


# ---------------------------------------------------------------------- codes = DataFrames
def _perturbed(schema: FeatureSchema, frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Counterfactual-like rows that break every kind of constraint now and then."""
    out = frame.sample(frac=1.0, random_state=int(rng.integers(1 << 30))).reset_index(drop=True)
    keep = rng.random((len(out), len(schema.features))) < 0.6
    for j, feat in enumerate(schema.features):
        col = out[feat.name].to_numpy().copy()
        if feat.is_numeric:
            lo, hi = feat.range
            noise = rng.normal(0, 0.3 * (hi - lo), len(col))
            col = col.astype(float) + np.where(rng.random(len(col)) < 0.5, np.round(noise), noise)
        out[feat.name] = np.where(keep[:, j], frame[feat.name].to_numpy(), col)
    return out


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), m=st.sampled_from([None, 1, 2, 3]))
def test_codes_agree_with_frames(mixed, seed, m):
    schema, enc, frame = mixed
    rng = np.random.default_rng(seed)
    a = frame.sample(40, random_state=seed % 1000).reset_index(drop=True)
    b = _perturbed(schema, a, rng)
    ca, cb = enc.to_codes(a), enc.to_codes(b)
    assert np.array_equal(enc.encode_codes(ca), enc.encode(a))
    assert np.array_equal(admissible(enc, ca, cb, m), np.array([v == [] for v in violations(schema, a, b, m)]))
    assert np.array_equal(enc.changed_codes(ca, cb), changed_features(schema, a, b))
    np.testing.assert_allclose(enc.change_costs_codes(ca, cb), enc.change_costs(a, b), rtol=1e-12)


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), rounding=st.sampled_from(["nearest", "away"]), scale=st.sampled_from([0.01, 0.2, 1.0]))
def test_decode_codes_agrees_with_decode(mixed, seed, rounding, scale):
    schema, enc, frame = mixed
    rng = np.random.default_rng(seed)
    a = frame.sample(30, random_state=seed % 1000).reset_index(drop=True)
    x = enc.encode(a)
    z = np.clip(x + scale * rng.normal(size=x.shape) * (rng.random(x.shape) < 0.4), -0.2, 1.2)
    codes = enc.decode_codes(z, x, enc.to_codes(a), rounding)
    decoded = enc.decode(z, a, rounding)
    pd.testing.assert_frame_equal(enc.frame_from_codes(codes), decoded, check_dtype=False)
    records = enc.records_from_codes(codes)
    assert records == decoded.to_dict(orient="records")
    kinds = {"integer": int, "continuous": float, "binary": bool, "categorical": str, "ordinal": str}
    assert all(type(records[0][f.name]) is kinds[f.kind] for f in schema.features)
    # decoded values never break a constraint of the row (the lattice and the bounds hold)
    assert admissible(enc, enc.to_codes(a), codes, None).all()


# ---------------------------------------------------------------------- closed-form gradients
def _mlps():
    torch.manual_seed(0)
    return [
        ("logit", nn.Sequential(Affine(torch.rand(6) + 0.5, torch.rand(6)), nn.Linear(6, 5), nn.LeakyReLU(0.1),
                                nn.Linear(5, 4), nn.ELU(0.7), nn.Linear(4, 1))),
        ("logits", nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Sequential(nn.Linear(5, 5), nn.Sigmoid()),
                                 nn.Dropout(0.1), nn.Linear(5, 3))),
        ("logits", nn.Sequential(nn.Linear(6, 7), nn.ReLU(), nn.Identity(), nn.Linear(7, 3))),
        ("logits", nn.Sequential(nn.Linear(6, 3), nn.Softmax(1))),  # not plain: autograd fallback
        ("proba", nn.Sequential(nn.Linear(6, 1), nn.Sigmoid())),  # idem
    ]


@pytest.mark.parametrize("case", range(5))
@settings(max_examples=15, deadline=None, database=None)
@given(seed=st.integers(0, 10_000))
def test_margin_gradient_matches_autograd(case, seed):
    output, module = _mlps()[case]
    clf = TorchClassifier(module.double(), output=output)
    gen = torch.Generator().manual_seed(seed)
    y = torch.rand(9, 6, generator=gen, dtype=F64)
    t = torch.randint(0, len(clf.classes), (9,), generator=gen)
    margin, grad = MarginGradient(clf)(y, t)
    yy = y.clone().requires_grad_(True)
    ref = logit_margin(clf.logits(yy), t)
    (ref_grad,) = torch.autograd.grad(ref.sum(), yy)
    torch.testing.assert_close(margin, ref.detach(), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-9, atol=1e-12)
    assert (MarginGradient(clf).steps is None) == (case >= 3)


@pytest.mark.parametrize("name", ["kde", "gmm", "knn"])
def test_density_value_and_grad_match_autograd(name):
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(120, 4))
    labels = (X[:, 0] > 0.5).astype(int)
    kwargs = {"kde": {"bandwidth": 0.15}, "gmm": {"n_components": 2}, "knn": {}}[name]
    cc = fit_class_conditional(name, X, labels, **kwargs)
    x = torch.tensor(rng.uniform(size=(9, 4)))
    y = (x + 0.05 * torch.randn(9, 4, dtype=F64)).requires_grad_(True)
    for target in (torch.tensor([1, 0, 0, 1, 1, 0, 1, 0, 0]), torch.ones(9, dtype=torch.long)):
        lp = cc.log_prob(y, x, target)
        (grad,) = torch.autograd.grad(lp.sum(), y)
        prepared = cc.prepare(x, target)
        value, g = prepared.value_and_grad(y.detach())
        torch.testing.assert_close(value, lp.detach(), rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(g, grad, rtol=1e-7, atol=1e-9)
        rows = torch.tensor([6, 1, 3])
        v_sub, g_sub = prepared.take(rows).value_and_grad(y.detach()[rows])
        torch.testing.assert_close(v_sub, value[rows])
        torch.testing.assert_close(g_sub, g[rows])
    with pytest.raises(ValueError, match="no density"):
        cc.prepare(x, torch.full((9,), 5))


def test_kde_log_prob_has_no_subnormal_slow_path():
    """Far from every centre the KDE stays finite and exact (the exponent floor only drops < tiny terms)."""
    pts = np.array([[0.0, 0.0], [1.0, 1.0]])
    kde = KDEDensity(bandwidth=0.01).fit(pts)
    y = torch.tensor([[0.0, 0.0], [0.5, 0.5]], dtype=torch.float32)
    lp = kde.log_prob(y)
    assert torch.isfinite(lp).all()
    const = np.log(2) + np.log(2 * np.pi * 0.01**2)  # log N + (D/2) log(2πh²)
    # (0, 0): one kernel at distance 0 (the other 1e4 bandwidths away); (½, ½): two at ||·||² = ½
    np.testing.assert_allclose(lp.numpy(), [-const, -0.5 / (2 * 0.01**2) + np.log(2) - const], rtol=1e-5)


def _problem(engine_like: dict, density=None, tau: float = 0.0, metric=None) -> SCFEProblem:
    return SCFEProblem(engine_like["clf"], engine_like["data"], engine_like["weights"], engine_like["groups"],
                       engine_like["n_groups"], density, tau, 0.2, engine_like["simplex"], metric=metric)


@pytest.fixture(scope="module")
def tiny_problem(tiny_engine):
    e = tiny_engine
    from tests.conftest import tiny_frame

    frame, _ = tiny_frame(12)
    x = e.encoder.encode(frame)
    lower, upper = e.encoder.bounds(x)
    n = len(x)
    data = RowData(torch.tensor(x, dtype=F64), torch.tensor(lower, dtype=F64), torch.tensor(upper, dtype=F64),
                   torch.full((n,), 2), torch.ones(n, dtype=torch.long), torch.tensor(np.geomspace(0.01, 100, n)))
    clf = TorchClassifier(nn.Sequential(nn.Linear(x.shape[1], 5), nn.Tanh(), nn.Linear(5, 2)).double())
    return {"clf": clf, "data": data, "weights": torch.tensor(e.encoder.proximity_weights()),
            "groups": torch.tensor(e.encoder.groups), "n_groups": e.encoder.n_features,
            "simplex": simplex_layout(e.encoder.simplex_groups(), e.device), "densities": e.densities}


def test_objective_value_and_grad_match_autograd(tiny_problem):
    dens = tiny_problem["densities"]["gmm"].to("cpu", F64)
    for density, tau in ((None, 0.0), (dens, 0.3)):
        p = _problem(tiny_problem, density, tau)
        y = (tiny_problem["data"].x + 0.1 * torch.randn_like(tiny_problem["data"].x)).requires_grad_(True)
        rows = torch.arange(y.shape[0])
        ref = p.smooth(y, rows)
        (ref_grad,) = torch.autograd.grad(ref.sum(), y)
        value, grad = p.value_and_grad(y.detach(), rows)
        torch.testing.assert_close(value, ref.detach())
        torch.testing.assert_close(grad, ref_grad)
        sub = torch.tensor([2, 5, 7])
        v_sub, g_sub = p.value_and_grad(y.detach()[sub], sub)
        torch.testing.assert_close(v_sub, value[sub])
        torch.testing.assert_close(g_sub, grad[sub])


# ---------------------------------------------------------------------- the W-norm prox is exact
def _simplex_projection(v: np.ndarray) -> np.ndarray:
    u = np.sort(v)[::-1]
    css = np.cumsum(u) - 1.0
    rho = np.max(np.flatnonzero(u - css / np.arange(1, len(v) + 1) > 0)) + 1
    return np.maximum(v - css[rho - 1] / rho, 0.0)


@st.composite
def prox_problems(draw):
    """A few features (scalars in [0, 1] boxes with directions, one-hot groups), weights, m, a point v."""
    kinds = draw(st.lists(st.sampled_from(["scalar", "scalar", "onehot"]), min_size=1, max_size=5))
    groups, simplex, x, lower, upper, weights = [], [], [], [], [], []
    col = 0
    for g, kind in enumerate(kinds):
        w = draw(st.sampled_from([0.04, 0.3, 1.0, 4.0, 25.0]))
        if kind == "scalar":
            x0 = draw(st.sampled_from([0.0, 0.25, 0.5, 1.0]))
            direction = draw(st.sampled_from(["any", "increase", "decrease", "pinned"]))
            lower.append(0.0 if direction in ("increase", "pinned") else -x0)
            upper.append(0.0 if direction in ("decrease", "pinned") else 1.0 - x0)
            x.append(x0)
            groups.append(g)
            weights.append(w)
            col += 1
        else:
            width = draw(st.integers(2, 4))
            level = draw(st.integers(0, width - 1))
            cols = list(range(col, col + width))
            simplex.append(cols)
            x += [1.0 if i == level else 0.0 for i in range(width)]
            lower += [-1.0 if i == level else 0.0 for i in range(width)]
            upper += [0.0 if i == level else 1.0 for i in range(width)]
            groups += [g] * width
            weights += [w] * width
            col += width
    v = [x_i + draw(st.floats(-1.5, 1.5).map(lambda f: round(f, 4))) for x_i in x]
    return {"kinds": kinds, "groups": groups, "simplex": simplex, "x": x, "lower": lower, "upper": upper,
            "weights": weights, "v": v, "m": draw(st.integers(0, len(kinds)))}


@settings(max_examples=200, deadline=None, database=None)
@given(prob=prox_problems())
def test_prox_is_the_exact_projection_in_the_w_norm(prob):
    from recourse.core.projections import simplex_layout

    x, v, W = (np.array(prob[k]) for k in ("x", "v", "weights"))
    groups, n_groups, m = np.array(prob["groups"]), len(prob["kinds"]), prob["m"]
    data = RowData(torch.as_tensor(x[None]), torch.tensor([prob["lower"]]), torch.tensor([prob["upper"]]),
                   torch.tensor([m]), torch.tensor([1]), torch.tensor([1.0]))
    layout = simplex_layout(prob["simplex"]) if prob["simplex"] else None
    weights = torch.tensor(W)
    problem = SCFEProblem(None, data, weights, torch.tensor(groups), n_groups, simplex=layout, metric=weights)
    y = problem.prox(torch.as_tensor(v[None]), torch.ones(1, 1, dtype=F64), torch.arange(1))[0].numpy()
    # brute force: per group the projection of v onto the group's own set, then every support S, |S| <= m
    member = [np.flatnonzero(groups == g) for g in range(n_groups)]
    own = np.clip(v, x + np.array(prob["lower"]), x + np.array(prob["upper"]))
    for cols in prob["simplex"]:
        own[cols] = _simplex_projection(v[cols])
    best = np.inf
    for k in range(min(m, n_groups) + 1):
        for support in itertools.combinations(range(n_groups), k):
            cand = x.copy()
            for g in support:
                cand[member[g]] = own[member[g]]
            best = min(best, float((W * (cand - v) ** 2).sum()))
    assert float((W * (y - v) ** 2).sum()) <= best + 1e-9
    changed = sum(bool(np.any(np.abs(y[c] - x[c]) > 1e-12)) for c in member)
    assert changed <= m
    assert np.all(y - x >= np.array(prob["lower"]) - 1e-12) and np.all(y - x <= np.array(prob["upper"]) + 1e-12)
    for cols in prob["simplex"]:
        assert abs(y[cols].sum() - 1.0) < 1e-9 and np.all(y[cols] >= 0)


def test_simplex_projection_survives_huge_steps():
    """A huge gradient step (large loss weight) still projects onto the simplex (ρ ≥ 1 despite round-off)."""
    from recourse.core.projections import SimplexGroups, project_simplex_groups, simplex_layout

    layout = simplex_layout([[0, 1], [2, 3, 4]])
    v = torch.tensor([[3e30, -2e30, 1e25, 5.0, -1e30], [0.2, 0.1, 0.3, 0.3, 0.3]], dtype=torch.float32)
    x = torch.zeros_like(v)
    z = torch.zeros_like(v)
    SimplexGroups(layout).project_into(z, v, x)
    torch.testing.assert_close(project_simplex_groups(v, layout), z)
    assert torch.isfinite(z).all()
    torch.testing.assert_close(z[:, :2].sum(1), torch.ones(2))
    torch.testing.assert_close(z[:, 2:].sum(1), torch.ones(2))
    assert (z >= 0).all()


# ---------------------------------------------------------------------- variable-metric APG
@settings(max_examples=25, deadline=None, database=None)
@given(seed=st.integers(0, 10_000), metric=st.booleans())
def test_apg_with_metric_solves_box_constrained_quadratics(seed, metric):
    """min Σ a_i (y_i − c_i)² over a box: the solution is the clamped centre, with or without M = a."""
    gen = torch.Generator().manual_seed(seed)
    b, d = 5, 6
    spread = 4.0 if metric else 2.0  # condition number up to 1e4 (preconditioned) or 1e2 (plain)
    a = 10.0 ** (spread * torch.rand(d, generator=gen, dtype=F64) - spread / 2)
    c = 2 * torch.rand(b, d, generator=gen, dtype=F64) - 0.5
    h = lambda y, rows: (a * (y - c[rows]) ** 2).sum(1)  # noqa: E731
    grad = lambda y, rows: (h(y, rows), 2 * a * (y - c[rows]))  # noqa: E731
    prox = lambda v, step, rows: v.clamp(0.0, 1.0)  # noqa: E731
    res = apg(h, prox, torch.zeros(b, d, dtype=F64), step=0.5 if metric else 0.5 / float(a.max()), max_iter=1500,
              tol=1e-12, grad_fn=grad, metric=a if metric else None)
    if metric:  # the diagonal preconditioner makes a separable quadratic one Newton step
        torch.testing.assert_close(res.x, c.clamp(0.0, 1.0), atol=1e-9, rtol=0)
        assert int(res.iterations.max()) <= 10
    else:  # the sufficient-decrease test's 1e-7 slack bounds the attainable accuracy
        torch.testing.assert_close(res.x, c.clamp(0.0, 1.0), atol=2e-3, rtol=0)


def test_apg_autograd_and_closed_form_paths_agree():
    gen = torch.Generator().manual_seed(0)
    c = torch.rand(4, 3, generator=gen, dtype=F64)
    h = lambda y, rows: ((y - c[rows]) ** 4).sum(1)  # noqa: E731
    grad = lambda y, rows: (h(y, rows), 4 * (y - c[rows]) ** 3)  # noqa: E731
    prox = lambda v, step, rows: v.clamp(0.2, 0.8)  # noqa: E731
    x0 = torch.full((4, 3), 0.5, dtype=F64)
    one = apg(h, prox, x0, step=0.1, max_iter=50, tol=1e-9)
    two = apg(h, prox, x0, step=0.1, max_iter=50, tol=1e-9, grad_fn=grad)
    torch.testing.assert_close(one.x, two.x)
    assert torch.equal(one.iterations, two.iterations)


def test_apg_stops_at_the_deadline():
    h = lambda y, rows: (y * y).sum(1)  # noqa: E731
    prox = lambda v, step, rows: v  # noqa: E731
    res = apg(h, prox, torch.ones(3, 2, dtype=F64), step=1e-4, max_iter=10_000, tol=0.0,
              deadline=time.perf_counter() - 1.0)
    assert res.iterations.tolist() == [1, 1, 1] and not res.converged.any()


# ---------------------------------------------------------------------- the engine
def _denied(engine, frame: pd.DataFrame, n: int) -> pd.DataFrame:
    pred = engine.predict_proba(engine.encoder.encode(frame)).argmax(1)
    denied = engine.classes.index(2)
    return frame.iloc[np.flatnonzero(pred == denied)[:n]].reset_index(drop=True)


def test_time_limit_gives_an_honest_answer(german_engine, german_dataset):
    _, _, test, _ = german_dataset.split()
    engine = german_engine
    rows = pd.concat([_denied(engine, test, 6), test.head(4)], ignore_index=True)
    before = engine.config
    try:
        engine.config = replace(before, time_limit=1e-9)
        cut = engine.explain(rows)
        engine.config = replace(before, time_limit=60.0)
        full = engine.explain(rows)
    finally:
        engine.config = before
    plain = engine.explain(rows)
    for a, b, c in zip(cut, full, plain):
        if c.status == "already_favourable":
            assert a.status == b.status == "already_favourable"
            continue
        assert a.status == "no_recourse_found" and a.counterfactual is None
        assert "time limit" in a.message
        assert b.to_dict() == c.to_dict()  # an ample limit changes nothing
    assert sum(r.found for r in plain) >= 5


def test_time_limit_bounds_the_search(german_engine, german_dataset):
    """With a short limit the call returns soon after it; every answer given is still verified."""
    _, _, test, _ = german_dataset.split()
    rows = _denied(german_engine, test, 40)
    engine = german_engine
    before = engine.config
    try:
        engine.config = replace(before, time_limit=0.01)
        started = time.perf_counter()
        answers = engine.explain(rows)
        elapsed = time.perf_counter() - started
    finally:
        engine.config = before
    assert elapsed < 2.0
    for r in answers:
        assert r.status in ("recourse_found", "no_recourse_found")
        if r.found:
            again = engine.explain(r.counterfactual)
            assert again[0].status == "already_favourable"
        else:
            assert "time limit" in r.message


def test_explain_is_deterministic_and_solve_accepts_frames(german_engine, german_dataset):
    _, _, test, _ = german_dataset.split()
    engine = german_engine
    rows = _denied(engine, test, 12)
    first = [r.to_dict() for r in engine.explain(rows, density="knn")]
    second = [r.to_dict() for r in engine.explain(rows.to_dict(orient="records"), density="knn")]
    assert first == second
    x = engine.encoder.encode(rows)
    targets = np.full(len(rows), engine.classes.index(1))
    config = replace(engine.config, density="gmm")
    from_frame = engine.solve(x, rows, targets, config)
    from_codes = engine.solve(x, engine.encoder.to_codes(rows), targets, config)
    assert np.array_equal(from_frame.found, from_codes.found) and np.array_equal(from_frame.codes, from_codes.codes)
    assert from_frame.found.mean() >= 0.9


def test_config_defaults_document_the_search():
    config = SCFEConfig()
    assert config.time_limit is None and config.search_steps >= 1 and config.max_iter >= 1


# ---------------------------------------------------------------------- the engine benchmark
def test_engine_benchmark_figures(german_bundle):
    from benchmarks.engine import denied_applicants, format_engine_table, run_engine_benchmark

    engine = german_bundle.engine()
    pool = denied_applicants(engine, 120, seed=1)
    assert len(pool) == 120 and not pool.duplicated().any()
    pred = engine.predict_proba(engine.encoder.encode(pool)).argmax(1)
    assert (pred == engine.classes.index(2)).all()
    engine.validate(pool)  # every drawn applicant is a valid record
    result = run_engine_benchmark(sizes=(1, 3), repeats=2, bundle=german_bundle)
    assert [r["batch"] for r in result["sizes"]] == [1, 3]
    for r in result["sizes"]:
        assert r["calls"] == 2 and 0 < r["median_ms"] <= r["p99_ms"]
        assert r["recourses_per_second"] > 0 and 0.0 <= r["validity"] <= 1.0
    table = format_engine_table(result)
    assert "median ms" in table and "recourses/s" in table


def test_bench_engine_command(german_bundle, monkeypatch):
    import json

    from typer.testing import CliRunner

    import benchmarks.engine
    from cli import app

    monkeypatch.setattr(benchmarks.engine, "demo_bundle", lambda *args, **kwargs: german_bundle)
    result = CliRunner().invoke(app, ["bench", "engine", "--repeats", "1", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert [r["batch"] for r in out["sizes"]] == [1, 8, 100, 500]
    assert all(r["validity"] >= 0.9 and r["recourses_per_second"] > 0 for r in out["sizes"])
    text = CliRunner().invoke(app, ["bench", "engine", "--repeats", "1", "--density", "none"])
    assert text.exit_code == 0 and "batch" in text.stdout and "density=none" in text.stdout


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 40), width=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_distinct_pairs_match_numpy_unique(n, width, seed):
    """``_distinct`` (lexsort) gives numpy.unique(axis=0)'s first positions and inverse."""
    from recourse.search import distinct as _distinct

    rng = np.random.default_rng(seed)
    rows = rng.integers(0, 3, n)
    points = rng.integers(0, 3, (n, width)).astype(float)
    first, inverse = _distinct(rows, points)
    key = np.concatenate([rows[:, None].astype(float), points], axis=1)
    if n == 0:
        assert first.size == 0 and inverse.size == 0
        return
    _, first_np, inverse_np = np.unique(key, axis=0, return_index=True, return_inverse=True)
    np.testing.assert_array_equal(first, first_np)
    np.testing.assert_array_equal(inverse, inverse_np.reshape(-1))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), n=st.integers(1, 64))
def test_engine_margin_shortcut_is_the_logit_margin(german_engine, seed, n):
    """The binary-logit shortcut of ``engine.margin`` gives exactly Z_t − max_{j≠t} Z_j of the logits."""
    from recourse.objective import logit_margin

    assert german_engine.verifier.binary_logit(torch.zeros(1, german_engine.encoder.n_columns,
                                                           dtype=german_engine.dtype)) is not None
    rng = np.random.default_rng(seed)
    x = rng.random((n, german_engine.encoder.n_columns))
    t = rng.integers(0, 2, n)
    with torch.no_grad():
        z = german_engine.verifier.logits(torch.as_tensor(x, dtype=german_engine.dtype)).double()
    expected = logit_margin(z, torch.as_tensor(t)).numpy()
    np.testing.assert_array_equal(german_engine.margin(x, t), expected)


def test_already_in_the_requested_class_names_that_class(german_engine, german_dataset):
    _, _, test, _ = german_dataset.split()
    engine = german_engine
    denied = _denied(engine, test, 1)
    unfavourable = next(c for c in engine.classes if str(c) != str(engine.schema.target.favourable))
    answer = engine.explain(denied, target=unfavourable)[0]
    assert answer.status == "already_favourable"
    assert "requested decision" in answer.message and "favourable decision" not in answer.message
    approved = engine.explain(denied)[0]
    if approved.found:
        again = engine.explain(approved.counterfactual)[0]
        assert again.message == "The model already gives the favourable decision."


def test_solver_options_are_checked_and_clipped(german_engine, german_dataset):
    _, _, test, _ = german_dataset.split()
    engine = german_engine
    row = _denied(engine, test, 1)
    for bad in (0, -1, True, 2.5):
        with pytest.raises(RecordValidationError, match="max_changes"):
            engine.explain(row, max_changes=bad)
    huge = engine.explain(row, max_changes=2**70)[0]
    assert huge.max_changes == len(engine.schema.features)
    name = engine.schema.names[0]
    for bad in (1e300, 1e-9, float("nan")):
        with pytest.raises(RecordValidationError, match=f"cost_weights.{name}"):
            engine.explain(row, cost_weights={name: bad})
    with pytest.raises(RecordValidationError, match="got null"):
        engine.explain(None)
