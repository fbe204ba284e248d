r"""Exact minimal-cost recourse for linear (logistic-regression) bundles by mixed-integer programming.

For a binary model whose target-class logit margin is affine in the scaled encoding,
:math:`M(z) = a^\top z + b`, the cheapest admissible counterfactual with at most m changed
features is the MILP (one per applicant x, solved with :func:`scipy.optimize.milp` / HiGHS)

.. math::

    \min \sum_j \frac{|\Delta_j|}{s_j}
    \quad\text{s.t.}\quad M(x) + \sum_j g_j(\Delta_j) \ge \varepsilon,\quad
    \sum_j c_j \le m,\quad \Delta_j \in \mathcal{A}_j(x),

with exactly the engine's cost (:meth:`TabularEncoder.change_costs`) and constraints:

* numeric / ordinal feature j (raw units, level index for ordinals): :math:`\Delta_j = d^+_j - d^-_j`,
  :math:`0 \le d^+_j \le U_j c_j`, :math:`0 \le d^-_j \le L_j c_j` where ``[v-L, v+U]`` is the
  range ∩ direction ∩ ``max_change`` box; integers and ordinal levels are integral, a continuous
  feature with ``precision`` p that moves lands on the grid :math:`10^{-p}\mathbb{Z}` (an integer k with
  :math:`v + \Delta = k\,10^{-p}`, imposed by big-M only when :math:`c_j = 1`, so an off-grid
  original may stay as it is); gain :math:`g_j = a_j \Delta_j / \text{span}_j`;
* binary: one switch variable :math:`t_j \in \{0,1\}` (0 when the direction forbids the switch),
  cost :math:`t_j / s_j`;
* categorical: a one-hot :math:`y_{j\cdot} \in \{0,1\}^{L}`, :math:`\sum_l y_{jl}=1`,
  :math:`c_j = 1 - y_{j,\text{current}}` (a switch counts once and costs :math:`1/s_j`);
* immutable features are constants.

**Margin.**  The engine *accepts* a counterfactual when the model's margin on the final decoded
values is > 0 (κ = ``SCFEConfig.margin`` is only the hinge target of the smooth search; the trim
step accepts any positive margin).  The exact problem therefore uses the same acceptance set,
:math:`M > 0`, implemented as :math:`M \ge \varepsilon` with a tiny ε (``EPSILON``, above float32
round-off), so the exact optimum is a lower bound on the cost of anything the engine can return
and the optimality gap is fair.  An infeasible MILP certifies that no counterfactual with at most m
changes reaches margin ε; one with margin in (0, ε) is numerically indistinguishable from none.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import csr_matrix

from ..encoding import TabularEncoder, level_positions
from ..schema import Feature

EPSILON = 1e-4
LINEARITY_TOL = 1e-3


@dataclass
class LinearMargin:
    """Target-class logit margin as an affine map of the scaled encoding: M(z) = a·z + b."""

    a: np.ndarray
    b: float


@dataclass
class ExactResult:
    """Per-row exact answers: status ('optimal' | 'infeasible' | 'error'), cost, changes, counterfactuals."""

    status: np.ndarray
    cost: np.ndarray
    n_changes: np.ndarray
    counterfactuals: pd.DataFrame

    @property
    def certified_none(self) -> np.ndarray:
        return self.status == "infeasible"


def linear_margin(engine, target: int) -> LinearMargin | None:
    """Read the affine margin off the model by probing (origin and unit vectors).

    Returns None when the model is not affine in its input (an MLP) or not binary: checked on the
    bundle's training rows, |M(z) − (a·z + b)| < ``LINEARITY_TOL``.
    """
    if len(engine.classes) != 2:
        return None
    d = engine.encoder.n_columns
    probes = np.vstack([np.zeros((1, d)), np.eye(d)])
    m = engine.margin(probes, np.full(d + 1, target)).astype(np.float64)
    b, a = float(m[0]), m[1:] - m[0]
    check = engine.train_encoded[:200] if engine.train_encoded is not None else np.random.default_rng(0).random((50, d))
    pred = check @ a + b
    actual = engine.margin(check, np.full(len(check), target))
    if np.max(np.abs(pred - actual)) > LINEARITY_TOL * max(1.0, float(np.max(np.abs(actual)))):
        return None
    return LinearMargin(a, b)


def _raw_bounds(feat: Feature, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Allowed raw values (index for ordinals) per row: range ∩ direction ∩ max_change, on the lattice."""
    lo, hi = feat.range if feat.is_numeric else (0.0, float(len(feat.levels) - 1))
    lower, upper = np.full_like(v, lo, dtype=float), np.full_like(v, hi, dtype=float)
    if feat.direction == "increase":
        lower = np.maximum(lower, v)
    elif feat.direction == "decrease":
        upper = np.minimum(upper, v)
    if feat.max_change is not None:
        lower = np.maximum(lower, v - feat.max_change)
        upper = np.minimum(upper, v + feat.max_change)
    if feat.kind in ("integer", "ordinal"):
        lower, upper = np.ceil(lower - 1e-9), np.floor(upper + 1e-9)
    elif feat.precision is not None:
        q = 10.0 ** feat.precision
        lower, upper = np.ceil(lower * q - 1e-9) / q, np.floor(upper * q + 1e-9) / q
    return np.minimum(lower, v), np.maximum(upper, v)


class ExactSolver:
    """MILP recourse for one linear engine (see the module docstring for the formulation)."""

    def __init__(self, engine, margin: LinearMargin, max_changes: int, epsilon: float = EPSILON, time_limit: float = 10.0):
        self.engine = engine
        self.encoder: TabularEncoder = engine.encoder
        self.lin = margin
        self.m = int(max_changes)
        self.epsilon = float(epsilon)
        self.time_limit = time_limit

    def solve(self, frame: pd.DataFrame) -> ExactResult:
        """Exact recourse for each (validated) row of ``frame``; one MILP per row."""
        frame = frame.reset_index(drop=True)
        n = len(frame)
        x = self.encoder.encode(frame)
        base = x @ self.lin.a + self.lin.b
        per_feature = self._feature_data(frame)
        status = np.empty(n, dtype=object)
        cost = np.full(n, np.nan)
        changes = np.full(n, -1, dtype=np.int64)
        cf = frame.copy()
        for i in range(n):  # one MILP per applicant: the solver call dominates
            st, c, k, values = self._solve_row(i, float(base[i]), per_feature)
            status[i], cost[i], changes[i] = st, c, k
            for name, val in values.items():
                cf.at[i, name] = val
        return ExactResult(status.astype(str), cost, changes, cf)

    # ------------------------------------------------------------------ per-feature data (vectorised)
    def _feature_data(self, frame: pd.DataFrame) -> list[dict]:
        out = []
        for fc in self.encoder.layout:
            feat = fc.feature
            if feat.immutable:
                continue
            a = self.lin.a[fc.slice]
            s = feat.cost_scale or 1.0
            col = frame[feat.name]
            if feat.kind == "categorical":
                cur = level_positions(feat, col).astype(int)
                out.append(dict(feat=feat, kind="cat", a=a, s=s, cur=cur))
            elif feat.kind == "binary":
                v = col.astype(bool).to_numpy()
                allowed = np.where(v, feat.direction != "increase", feat.direction != "decrease")
                out.append(dict(feat=feat, kind="bin", gain=a[0] * np.where(v, -1.0, 1.0), s=s, v=v, allowed=allowed))
            else:
                v = level_positions(feat, col) if feat.kind == "ordinal" else col.to_numpy(dtype=float)
                lower, upper = _raw_bounds(feat, v)
                span = (feat.range[1] - feat.range[0]) if feat.is_numeric else float(len(feat.levels) - 1)
                out.append(dict(feat=feat, kind="num", slope=a[0] / span, s=s, v=v, L=v - lower, U=upper - v,
                                integral=feat.kind in ("integer", "ordinal"),
                                q=(10.0 ** feat.precision) if (feat.kind == "continuous" and feat.precision is not None) else None))
        return out

    # ------------------------------------------------------------------ one MILP
    def _solve_row(self, i: int, base: float, feats: list[dict]) -> tuple[str, float, int, dict]:
        obj, lb, ub, integ = [], [], [], []
        rows: list[tuple[dict[int, float], float, float]] = []  # (coefficients, lower, upper)
        gain: dict[int, float] = {}
        count: dict[int, float] = {}
        slots: list[tuple[dict, tuple[int, ...]]] = []  # (feature data, its variables) for reading the answer

        def var(c: float, lo: float, hi: float, integral: bool) -> int:
            obj.append(c), lb.append(lo), ub.append(hi), integ.append(1 if integral else 0)
            return len(obj) - 1

        for f in feats:
            if f["kind"] == "num":
                L, U = float(f["L"][i]), float(f["U"][i])
                if L <= 0 and U <= 0:
                    continue
                c = var(0.0, 0.0, 1.0, True)
                dp = var(1.0 / f["s"], 0.0, U, f["integral"])
                dm = var(1.0 / f["s"], 0.0, L, f["integral"])
                rows.append(({dp: 1.0, c: -U}, -np.inf, 0.0))
                rows.append(({dm: 1.0, c: -L}, -np.inf, 0.0))
                if f["q"] is not None:  # a moved value lands on the grid: v + Δ = k / q, binding only when c = 1
                    q, v = f["q"], float(f["v"][i])
                    k = var(0.0, np.ceil((v - L) * q - 1e-9), np.floor((v + U) * q + 1e-9), True)
                    big = q * (L + U) + q * max(L, U) + 2.0
                    rows.append(({dp: q, dm: -q, k: -1.0, c: big}, -np.inf, big - q * v))
                    rows.append(({dp: q, dm: -q, k: -1.0, c: -big}, -big - q * v, np.inf))
                gain[dp], gain[dm] = f["slope"], -f["slope"]
                count[c] = 1.0
                slots.append((f, (dp, dm)))
            elif f["kind"] == "bin":
                if not f["allowed"][i]:
                    continue
                t = var(1.0 / f["s"], 0.0, 1.0, True)
                gain[t] = float(f["gain"][i])
                count[t] = 1.0
                slots.append((f, (t,)))
            else:
                cur = int(f["cur"][i])
                ys = [var(0.0, 0.0, 1.0, True) for _ in range(len(f["a"]))]
                c = var(1.0 / f["s"], 0.0, 1.0, True)
                rows.append(({**{y: 1.0 for y in ys}}, 1.0, 1.0))
                rows.append(({c: 1.0, ys[cur]: 1.0}, 1.0, 1.0))
                for lvl, y in enumerate(ys):
                    gain[y] = float(f["a"][lvl] - f["a"][cur])
                count[c] = 1.0
                slots.append((f, tuple(ys)))
        if base >= self.epsilon:
            return "optimal", 0.0, 0, {}
        if not obj:
            return "infeasible", np.nan, -1, {}
        rows.append((gain, self.epsilon - base, np.inf))
        rows.append((count, -np.inf, float(self.m)))
        n_var = len(obj)
        data, r_idx, c_idx, lo_c, hi_c = [], [], [], [], []
        for r, (coefs, lo, hi) in enumerate(rows):
            for j, v in coefs.items():
                data.append(v), r_idx.append(r), c_idx.append(j)
            lo_c.append(lo), hi_c.append(hi)
        A = csr_matrix((data, (r_idx, c_idx)), shape=(len(rows), n_var))
        res = milp(np.asarray(obj), constraints=LinearConstraint(A, lo_c, hi_c), integrality=np.asarray(integ),
                   bounds=Bounds(np.asarray(lb), np.asarray(ub)),
                   options={"time_limit": self.time_limit, "mip_rel_gap": 1e-7})
        if res.status == 2:
            return "infeasible", np.nan, -1, {}
        if res.x is None or res.status not in (0,):
            return "error", np.nan, -1, {}
        sol = res.x
        values: dict = {}
        for f, vs in slots:
            feat = f["feat"]
            if f["kind"] == "num":
                delta = sol[vs[0]] - sol[vs[1]]
                if abs(delta) < 1e-7:
                    continue
                v = float(f["v"][i]) + delta
                if f["integral"]:
                    v = round(v)
                elif f["q"] is not None:
                    v = round(v * f["q"]) / f["q"]
                if feat.kind == "ordinal":
                    values[feat.name] = feat.level_names[int(v)]
                elif feat.kind == "integer":
                    values[feat.name] = int(v)
                else:
                    values[feat.name] = float(v)
            elif f["kind"] == "bin":
                if sol[vs[0]] > 0.5:
                    values[feat.name] = not bool(f["v"][i])
            else:
                pick = int(np.argmax([sol[y] for y in vs]))
                if pick != int(f["cur"][i]):
                    values[feat.name] = feat.level_names[pick]
        return "optimal", float(res.fun), len(values), values


def exact_recourse(engine, frame: pd.DataFrame, max_changes: int, target: int | None = None,
                   epsilon: float = EPSILON) -> ExactResult | None:
    """Exact answers for the rows of ``frame`` (None when the engine's model is not linear).

    Every optimal counterfactual is re-checked with the engine's own model on the decoded values
    (margin > 0) and its cost recomputed with :meth:`TabularEncoder.change_costs`; a row failing the
    check is marked ``error``.
    """
    if target is None:
        target = engine.classes.index(engine.schema.target.favourable) if engine.schema.target else 1
    lin = linear_margin(engine, target)
    if lin is None:
        return None
    result = ExactSolver(engine, lin, max_changes, epsilon).solve(frame)
    ok = result.status == "optimal"
    if ok.any():
        orig = frame.reset_index(drop=True)
        enc = engine.encoder.encode(result.counterfactuals)
        verified = engine.margin(enc, np.full(len(enc), target)) > 0
        costs = engine.encoder.change_costs(orig, result.counterfactuals)
        bad = ok & (~verified | (np.abs(costs - np.nan_to_num(result.cost)) > 1e-6 * np.maximum(1.0, costs)))
        result.status = np.where(bad, "error", result.status)
        result.cost = np.where(ok & ~bad, costs, result.cost)
    return result
