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
  original may stay as it is), likewise on :math:`\text{step}\,\mathbb{Z}` for a feature with a ``step``;
  with a ``min_change`` μ, :math:`d^+_j + d^-_j \ge \mu\, c_j`; gain :math:`g_j = a_j \Delta_j / \text{span}_j`;
* binary: one switch variable :math:`t_j \in \{0,1\}` (0 when the direction forbids the switch),
  cost :math:`t_j / s_j`;
* categorical: a one-hot :math:`y_{j\cdot} \in \{0,1\}^{L}`, :math:`\sum_l y_{jl}=1`,
  :math:`c_j = 1 - y_{j,\text{current}}` (a switch counts once and costs :math:`1/s_j`);
* consequences (:mod:`recourse.consequences`): per effect e a variable
  :math:`y_e = \max(lo_e, \min(hi_e, x_e + \Delta_e + \sum_c r_{ce}\Delta_c))` (two binaries, big-M)
  whose change :math:`a_e (y_e - x_e)/\text{span}_e` enters the margin; effects are neither counted
  nor costed; exact when no effect needs snapping (:func:`linear_consequences`);
* the cost uses the engine's cost weights ω (the schema's ``cost_weight``);
* immutable features and those a person cannot act on are constants; a categorical level its
  ``transitions`` do not allow from the current one has :math:`y_{jl} = 0` (an ordinal's
  transitions enter through the interval of reachable levels, ``code_bounds``).

The box ``[v-L, v+U]``, the switches a binary may make and the cost rates :math:`1/s_j` are read
off the engine's :class:`~recourse.actionset.ActionSet` (:meth:`~recourse.actionset.ActionSet.code_bounds`,
:meth:`~recourse.actionset.ActionSet.cost_rates`), the same definition the engine's gate uses.

**Margin.**  The engine *accepts* a counterfactual when the model's margin on the final decoded
values is > 0 (κ = ``SCFEConfig.margin`` is only the hinge target of the smooth search; the trim
step accepts any positive margin).  The exact problem uses that acceptance set less a thin band:
:math:`M \ge \varepsilon` with a tiny ε (``EPSILON``, above float32 round-off, so that its own
answers pass the engine's float32 check).  The exact optimum is therefore a lower bound on the
cost of every engine answer whose margin exceeds ε; an answer in the band (0, ε] (a probability
within ~10⁻⁵ of the confidence asked) can be one lattice step cheaper, and the engine may answer
a row in that band where the MILP finds none.  An infeasible MILP certifies that no
counterfactual with at most m changes reaches margin ε.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import csr_matrix

from .encoding import TabularEncoder

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
        self._effects = self._effect_data(frame)
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
        """Per mutable feature the MILP's data for every row: the box (numeric / ordinal), the allowed
        switch (binary) or the current level (categorical), the gain per unit and the cost rate 1/s_j."""
        actions = self.encoder.action_set
        codes = self.encoder.to_codes(frame)
        lower, upper = actions.code_bounds(codes)
        rate = actions.cost_rates(actions.cost_weight)  # the schema's weights ω, as the engine's cost
        out = []
        for j, fc in enumerate(self.encoder.layout):
            feat = fc.feature
            if actions.immutable[j]:
                continue
            a = self.lin.a[fc.slice]
            v = codes[:, j]
            if actions.is_categorical[j]:
                cur = v.astype(int)
                out.append(dict(feat=feat, kind="cat", a=a, rate=rate[j], cur=cur,
                                allowed=actions.transition[j, cur][:, :len(a)]))
            elif actions.is_binary[j]:
                on = v > 0.5
                out.append(dict(feat=feat, kind="bin", gain=a[0] * np.where(on, -1.0, 1.0), rate=rate[j], v=on,
                                allowed=upper[:, j] > lower[:, j]))
            else:
                lattice = bool((actions.is_continuous[j] and not actions.free[j]) or actions.has_step[j])
                step = float(actions.step[j]) if actions.has_step[j] else None
                out.append(dict(feat=feat, index=j, kind="num", slope=a[0] / actions.span[j], rate=rate[j], v=v,
                                L=v - lower[:, j], U=upper[:, j] - v,
                                integral=bool(actions.is_integer[j] or actions.is_ordinal[j]),
                                q=(1.0 / step if step is not None else float(actions.q[j])) if lattice else None,
                                step=step, min_change=float(actions.min_change[j])))
        return out

    def _effect_data(self, frame: pd.DataFrame) -> list[dict]:
        """Per effect of the schema's consequences: its values, range, slope and incoming edges."""
        cons = self.encoder.action_set.consequences
        if not cons.active:
            return []
        actions = self.encoder.action_set
        codes = self.encoder.to_codes(frame)
        out = []
        for e in cons.effects:
            fc = self.encoder.layout[e]
            edges = [(int(c), float(r)) for c, f, r in zip(cons.cause, cons.effect, cons.rate) if f == e]
            out.append(dict(feat=fc.feature, index=int(e), v=codes[:, e], lo=float(cons.low[e]), hi=float(cons.high[e]),
                            slope=self.lin.a[fc.start] / actions.span[e], edges=edges,
                            integral=bool(actions.is_integer[e] or actions.is_ordinal[e])))
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
                dp = var(f["rate"], 0.0, U, f["integral"])
                dm = var(f["rate"], 0.0, L, f["integral"])
                rows.append(({dp: 1.0, c: -U}, -np.inf, 0.0))
                rows.append(({dm: 1.0, c: -L}, -np.inf, 0.0))
                if f["min_change"] > 0:  # a moved feature moves by at least its min_change: |Δ| ≥ μ c
                    rows.append(({dp: 1.0, dm: 1.0, c: -f["min_change"]}, 0.0, np.inf))
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
                t = var(f["rate"], 0.0, 1.0, True)
                gain[t] = float(f["gain"][i])
                count[t] = 1.0
                slots.append((f, (t,)))
            else:
                cur = int(f["cur"][i])
                ys = [var(0.0, 0.0, 1.0 if f["allowed"][i, lvl] else 0.0, True) for lvl in range(len(f["a"]))]
                c = var(f["rate"], 0.0, 1.0, True)
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
        effects, shift = self._consequence_rows(i, slots, var, rows, gain)
        rows.append((gain, self.epsilon - base + shift, np.inf))
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
                if f["step"] is not None:
                    v = round(v / f["step"]) * f["step"]
                elif f["integral"]:
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
        acted = len(values)
        for g, y in effects:  # the consequences' values (not counted as changes)
            value = float(sol[y])
            if abs(value - float(g["v"][i])) < 1e-7:
                continue
            feat = g["feat"]
            if g["integral"]:
                value = round(value)
            values[feat.name] = (feat.level_names[int(value)] if feat.kind == "ordinal"
                                 else int(value) if feat.kind == "integer" else value)
        return "optimal", float(res.fun), acted, values

    def _consequence_rows(self, i: int, slots: list, var, rows: list, gain: dict[int, float]) -> tuple[list, float]:
        r"""The consequences as MILP rows: per effect e, :math:`u = x_e + \Delta_e + \sum_c r_{ce}\Delta_c` and
        :math:`y = \max(lo, \min(hi, u))` (two binaries, big-M); the margin gains :math:`a_e (y - x_e)`
        in place of :math:`a_e\Delta_e`.  Returns ((effect data, y variable) pairs, the constant
        :math:`\sum_e a_e x_e` the margin row's lower bound moves by)."""
        moves = {f["index"]: vs for f, vs in slots if f["kind"] == "num"}
        boxes = {f["index"]: (float(f["L"][i]), float(f["U"][i])) for f, _ in slots if f["kind"] == "num"}
        out, shift = [], 0.0
        for g in self._effects:
            causes = [(c, r) for c, r in g["edges"] if c in moves]
            if not causes:
                continue
            e, v, lo, hi = g["index"], float(g["v"][i]), g["lo"], g["hi"]
            terms: dict[int, float] = {}
            reach = hi - lo + abs(v)
            for c, r in causes:
                dp, dm = moves[c]
                terms[dp], terms[dm] = terms.get(dp, 0.0) + r, terms.get(dm, 0.0) - r
                reach += abs(r) * sum(boxes[c])
            if e in moves:  # the effect's own intervention; its gain now comes through y
                dp, dm = moves[e]
                terms[dp], terms[dm] = terms.get(dp, 0.0) + 1.0, terms.get(dm, 0.0) - 1.0
                gain.pop(dp, None), gain.pop(dm, None)
                reach += sum(boxes[e])
            big = 2.0 * reach + 1.0
            u_lo, u_hi = -big + v, big + v
            u = var(0.0, u_lo, u_hi, False)
            rows.append(({u: 1.0, **{k: -w for k, w in terms.items()}}, v, v))  # u = v + Σ terms
            w, y = var(0.0, u_lo, hi, False), var(0.0, lo, hi, False)
            b1, b2 = var(0.0, 0.0, 1.0, True), var(0.0, 0.0, 1.0, True)
            rows.append(({w: 1.0, u: -1.0}, -np.inf, 0.0))                # w ≤ u (and w ≤ hi: its bound)
            rows.append(({w: 1.0, b1: big}, hi, np.inf))                  # w ≥ hi − M b1
            rows.append(({w: 1.0, u: -1.0, b1: -big}, -big, np.inf))      # w ≥ u − M (1 − b1)
            rows.append(({y: 1.0, w: -1.0}, 0.0, np.inf))                 # y ≥ w (and y ≥ lo: its bound)
            rows.append(({y: 1.0, b2: -big}, -np.inf, lo))                # y ≤ lo + M b2
            rows.append(({y: 1.0, w: -1.0, b2: big}, -np.inf, big))       # y ≤ w + M (1 − b2)
            gain[y] = gain.get(y, 0.0) + g["slope"]
            shift += g["slope"] * v
            out.append((g, y))
        return out, shift


def _lattice_step(actions, j: int) -> float:
    """The spacing of feature j's values (0: a free continuous feature)."""
    if actions.has_step[j]:
        return float(actions.step[j])
    if actions.free[j]:
        return 0.0
    return 1.0 / float(actions.q[j])


def linear_consequences(actions) -> bool:
    """Whether the schema's consequences are exact in the MILP: no effect ever needs snapping (each
    edge's rate times its cause's spacing is a whole multiple of the effect's spacing, or the effect
    is free); clipping to the range is modelled exactly (two binaries per effect)."""
    cons = actions.consequences
    for c, e, r in zip(cons.cause, cons.effect, cons.rate):
        step_e, step_c = _lattice_step(actions, int(e)), _lattice_step(actions, int(c))
        if step_e == 0.0:
            continue
        ratio = r * step_c / step_e
        if step_c == 0.0 or abs(ratio - round(ratio)) > 1e-9:
            return False
    return True


def exact_recourse(engine, frame: pd.DataFrame, max_changes: int, target: int | None = None,
                   epsilon: float | None = None, margin: LinearMargin | None = None) -> ExactResult | None:
    """Exact answers for the rows of ``frame`` (None when the engine's model is not linear, or its
    schema's consequences would need snapping, see :func:`linear_consequences`).

    ``epsilon``: the margin the answers must reach (default: ``EPSILON`` above the margin threshold
    of the engine's confidence ``min_probability``, so the optimum is a lower bound of what the
    engine may return outside that thin band, see the module docstring); ``margin``: the target's affine margin when
    already known (else probed, :func:`linear_margin`).  Every optimal counterfactual is re-checked
    with the engine's own model on the decoded values and its cost recomputed with
    :meth:`TabularEncoder.change_costs`; a row failing the check is marked ``error``.
    """
    if target is None:
        target = engine.classes.index(engine.schema.target.favourable) if engine.schema.target else 1
    lin = linear_margin(engine, target) if margin is None else margin
    if lin is None or not linear_consequences(engine.encoder.action_set):
        return None
    threshold = engine.config.margin_threshold(len(engine.classes))
    epsilon = threshold + EPSILON if epsilon is None else epsilon
    result = ExactSolver(engine, lin, max_changes, epsilon).solve(frame)
    ok = result.status == "optimal"
    if ok.any():
        orig = frame.reset_index(drop=True)
        enc = engine.encoder.encode(result.counterfactuals)
        verified = engine.margin(enc, np.full(len(enc), target)) > threshold
        actions = engine.encoder.action_set  # the cost of the interventions, with the engine's weights
        before, after = engine.encoder.to_codes(orig), engine.encoder.to_codes(result.counterfactuals)
        costs = actions.cost(before, actions.consequences.interventions(before, after), actions.cost_weight)
        bad = ok & (~verified | (np.abs(costs - np.nan_to_num(result.cost)) > 1e-6 * np.maximum(1.0, costs)))
        result.status = np.where(bad, "error", result.status)
        result.cost = np.where(ok & ~bad, costs, result.cost)
    return result
