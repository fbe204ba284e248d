"""The tabular recourse engine (S-CFE): records in, verified :class:`Recourse` objects out.

Pipeline per batch: validate → encode (array "codes", see :meth:`TabularEncoder.to_codes`) →
per-row actionable bounds → search over the classification-loss weight c: one APG run over
every (row, weight) pair of a ladder c_b·10^(−2…2) at once (c_b from the row's margin
gradient; a second round with larger weights for rows still without an answer) → decode and
repair every candidate (integers, ordinal levels, one-hot groups; two roundings; greedy
completion of candidates the model rejects, trimming of the ones it accepts) → verify with the
model on the final decoded values and check every constraint → keep, per row, the cheapest
verified counterfactual.  Rows with none get an honest ``no_recourse_found`` and a reason (a
second search with every mutable feature allowed tells "needs more than m changes" from "not
reachable within the constraints", or the time limit stopped the search).

Everything between the input records and the output :class:`Recourse` objects runs on arrays
(numpy on the host, torch tensors on the solver's device); the APG iterations use closed-form
gradients (:class:`~recourse.objective.MarginGradient`, the densities' ``value_and_grad``)
and a diagonal preconditioner (the proximity weights W, see :meth:`RecourseEngine._run`).
"""
from __future__ import annotations

import copy
import math
import operator
import time
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from .actions import actions_for
from .constraints import admissible
from .core.apg import apg
from .core.projections import group_sums, simplex_layout
from .encoding import TabularEncoder
from .errors import RecordValidationError, FieldError
from .metrics import lof_scores
from .objective import MarginGradient, RowData, SCFEProblem, logit_margin
from .repair import DiscreteRepair
from .runtime import threads_for
from .results import Alternative, Decision, Recourse
from .schema import COST_WEIGHT_RANGE, FeatureSchema, json_type

DEFAULT_DENSITY_WEIGHTS = {"kde": 0.02, "gmm": 0.02, "knn": 0.5}
INITIAL_STEP = 0.1
"""First APG step in the W-norm (1/L of the proximity term alone is 0.5; a smaller first step
keeps the ℓ0 projection from committing to groups before the hinge and density have spoken)."""
RUN_CHUNK = 16_384
"""Most (row, weight) candidates in one APG run; larger searches run in consecutive chunks."""


@dataclass
class SCFEConfig:
    """Solver settings (defaults documented in the README).

    max_changes: m, the most features a counterfactual may change (a categorical counts once).
    density: plausibility term ("kde", "gmm", "knn" or None); density_weight: τ (None = default).
    margin: κ, the logit margin the counterfactual must clear (robustness to rounding).
    search_steps / initial_weight / max_weight: the loss-weight search, in rounds of one batched
    APG run each: round 1 tries the weights initial_weight · c_b · 10^(−2…2) per row b (c_b: the
    weight at which the linearised problem reaches κ), later rounds 10^3, 10^4, … (up to
    max_weight · c_b) for rows still without a verified answer.
    max_iter / tol: APG iterations per run and the per-row stopping tolerance.
    diagnose: on failure, search again with every mutable feature allowed to say why.
    time_limit: wall-clock seconds for one ``explain`` call (None: no limit); when it is up the
    search stops and rows without a verified answer get ``no_recourse_found`` saying so.
    """

    max_changes: int = 3
    density: str | None = "kde"
    density_weight: float | None = None
    margin: float = 0.2
    search_steps: int = 2
    initial_weight: float = 1.0
    max_weight: float = 1e5
    max_iter: int = 10
    tol: float = 1e-4
    diagnose: bool = True
    time_limit: float | None = None
    polish: bool = True
    """Cost polish after verification (recourse/polish.py): cheaper verified answers, same constraints."""
    cost_weights: tuple[float, ...] | None = None
    """Per-feature cost weights ω_j (schema order; None: the schema's ``cost_weight``s)."""

    def tau(self) -> float:
        if self.density is None:
            return 0.0
        return DEFAULT_DENSITY_WEIGHTS.get(self.density, 0.1) if self.density_weight is None else self.density_weight


@dataclass
class BatchSolution:
    """Per-row outcome of one search: verified flags, counterfactual codes (the original's where
    none), their encoding, costs, target-class probabilities; ``extra["cut"]``: rows the time
    limit stopped before a verified answer."""

    found: np.ndarray
    codes: np.ndarray
    encoded: np.ndarray
    cost: np.ndarray
    probability: np.ndarray
    extra: dict[str, Any] = field(default_factory=dict)


class RecourseEngine:
    """Batched S-CFE over a schema, a differentiable classifier and fitted class-conditional densities."""

    def __init__(
        self,
        schema: FeatureSchema,
        classifier: Any,
        densities: dict[str, Any] | None = None,
        train_encoded: np.ndarray | None = None,
        train_labels: np.ndarray | None = None,
        config: SCFEConfig | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
        verifier: Any | None = None,
    ):
        self.schema = schema
        self.encoder = TabularEncoder(schema)
        self.device = torch.device(device) if device is not None else classifier.device
        self.dtype = dtype
        self.classifier = classifier.to(self.device, dtype)
        # The model whose decisions count: the classifier itself, or the real model (e.g. a tree
        # ensemble) when the classifier is a differentiable surrogate that only steers the solver.
        self.verifier = verifier.to(self.device, dtype) if verifier is not None else self.classifier
        self.densities = {k: d.to(self.device, dtype) for k, d in (densities or {}).items()}
        self.config = config or SCFEConfig()
        self.train_encoded = train_encoded
        self.train_labels = train_labels
        self.classes = list(classifier.classes)
        groups = self.encoder.groups
        self._groups = torch.as_tensor(groups, device=self.device, dtype=torch.long)
        self._base_weights = self.encoder.proximity_weights()
        self._schema_cost_weights = np.array([f.cost_weight for f in schema.features], dtype=float)
        self._weights = self._proximity_tensor(self._schema_cost_weights)
        self._repairs: dict[tuple[float, ...], DiscreteRepair] = {}
        self._plain_repair = DiscreteRepair(self.encoder)
        self.repair = self._repair_for(self._schema_cost_weights)
        self._simplex = simplex_layout(self.encoder.simplex_groups(), self.device)
        self._lof: dict[int, Any] = {}

    # ------------------------------------------------------------------ public API
    def explain(
        self,
        records: dict | Sequence[dict] | pd.DataFrame,
        *,
        max_changes: int | None = None,
        density: str | None | bool = True,
        target: int | str | Sequence[int | str] | None = None,
        alternatives: int | None = None,
        cost_weights: dict[str, float] | None = None,
    ) -> list[Recourse]:
        r"""Recourse for each record (validated first; errors name row and field).

        ``target``: the class to reach (default: the schema's favourable class), one value or
        one per row.  ``density=True`` uses the configured density, ``None``/``False`` none.
        ``alternatives``: K ≥ 1, also return up to K verified counterfactuals with pairwise
        different changed-feature sets (:attr:`Recourse.alternatives`, the ordinary answer
        first, then by cost; see :meth:`_alternatives`).  ``cost_weights``: per-feature weights
        ω_j > 0 overriding the schema's ``cost_weight`` for this call: the cost becomes
        :math:`\sum_j \omega_j |\Delta_j| / s_j` (reported, ranked and used by the repair) and
        the solver's proximity weights of feature j are multiplied by :math:`\omega_j^2`.
        """
        rows = self._validated(records)
        config = self._config(max_changes, density, cost_weights)
        k_alt = _alternatives_count(alternatives)
        deadline = time.perf_counter() + config.time_limit if config.time_limit is not None else None
        codes = self.encoder.to_codes(rows)
        x = self.encoder.encode_codes(codes)
        with threads_for(self.device, x.size):
            probs = self.predict_proba(x)
            pred = probs.argmax(1)
            targets = self._targets(target, len(rows), pred)
            need = np.flatnonzero(pred != targets)
            solution = self._solve(x[need], codes[need], targets[need], config, deadline)
            alts = None
            if k_alt is not None:
                alts = self._alternatives(x[need], codes[need], targets[need], solution, config, deadline, k_alt)
            return self._assemble(rows, codes, x, probs, targets, need, solution, config, deadline, alts)

    def validate(self, records: dict | Sequence[dict] | pd.DataFrame) -> pd.DataFrame:
        """Validated records as a DataFrame in schema column order."""
        return pd.DataFrame(self._validated(records), columns=self.schema.names)

    def _validated(self, records: dict | Sequence[dict] | pd.DataFrame) -> list[dict[str, Any]]:
        """Validated records as dicts (ints, floats, bools, level names), in input order."""
        if isinstance(records, pd.DataFrame):
            rows = records.to_dict(orient="records")
        elif isinstance(records, dict):
            rows = [records]
        elif isinstance(records, (list, tuple)):
            rows = list(records)
        else:
            raise RecordValidationError([FieldError("records", "expected an applicant object or a list of them, "
                                                    f"got {json_type(records)}")])
        if len(rows) == 1 and isinstance(records, dict):
            return [self.schema.validate_record(rows[0])]
        return self.schema.validate_records(rows)

    def predict_proba(self, encoded: np.ndarray) -> np.ndarray:
        """Model probabilities (N, C) for scaled rows."""
        with torch.no_grad():
            t = torch.as_tensor(encoded, device=self.device, dtype=self.dtype)
            return self.verifier.predict_proba(t).double().cpu().numpy()

    # ------------------------------------------------------------------ the search
    def margin(self, encoded: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Logit margin of the target class per row (> 0: the model picks the target class)."""
        with torch.no_grad():
            x = torch.as_tensor(encoded, device=self.device, dtype=self.dtype)
            single = getattr(self.verifier, "binary_logit", None)
            z1 = single(x) if single is not None else None
            if z1 is not None:  # logits [0, z]: margin z for class 1, −z for class 0 (exactly)
                return np.where(np.asarray(targets) == 1, 1.0, -1.0) * z1.double().cpu().numpy()
            z = self.verifier.logits(x).double()
            t = torch.as_tensor(targets, device=self.device, dtype=torch.long)
            return logit_margin(z, t).cpu().numpy()

    def solve(self, x: np.ndarray, originals: pd.DataFrame | np.ndarray, targets: np.ndarray,
              config: SCFEConfig) -> BatchSolution:
        """Cheapest verified counterfactual per row (target class indices ``targets``).

        ``originals``: the rows' raw records (a DataFrame) or their codes (see
        :meth:`TabularEncoder.to_codes`); ``x`` their scaled encoding.
        """
        codes = self.encoder.to_codes(originals) if isinstance(originals, pd.DataFrame) else np.asarray(originals, float)
        deadline = time.perf_counter() + config.time_limit if config.time_limit is not None else None
        return self._solve(np.asarray(x, dtype=np.float64), codes, np.asarray(targets, dtype=np.int64), config, deadline)

    def _solve(self, x: np.ndarray, codes: np.ndarray, targets: np.ndarray, config: SCFEConfig,
               deadline: float | None, pinned: np.ndarray | None = None) -> BatchSolution:
        r"""The loss-weight search: per round, one APG run over every (row, weight) pair of the ladder.

        Row b's weights are :math:`c_b \cdot 10^k` for the round's exponents k (round 1:
        −2…2; later rounds, only for rows still without a verified answer: 3, 4, … up to
        ``max_weight``), with :math:`c_b` from :meth:`_base_weight`.  Every candidate is rounded,
        verified, completed by discrete repair if it fails and trimmed if it passes; each row
        keeps its cheapest verified candidate.  ``pinned`` (N, F) bool: features row b must not
        change (their bounds are pinned to zero; used for the alternatives).
        """
        n = len(x)
        found, encoded, cost = np.zeros(n, dtype=bool), x.copy(), np.full(n, np.inf)
        cut = np.zeros(n, dtype=bool)
        if n == 0:
            return self._finish(x, codes, targets, found, encoded, config, cut)
        lower, upper = self.encoder.bounds(x)
        if pinned is not None:
            cols = np.asarray(pinned, dtype=bool)[:, self.encoder.groups]
            lower, upper = np.where(cols, 0.0, lower), np.where(cols, 0.0, upper)
        base = config.initial_weight * self._base_weight(x, targets, lower, upper, config)
        density = self._density(config.density)
        active = np.arange(n)
        for ladder in _ladders(config):
            if active.size == 0:
                break
            if _past(deadline):
                cut[active] = True
                break
            k = len(ladder)
            rows = np.repeat(active, k)
            weight = (base[active, None] * ladder[None, :]).reshape(-1)
            z = self._run(x[rows], lower[rows], upper[rows], targets[rows], weight, density, config, deadline)
            ok, enc, c = self._candidates(z, x[rows], codes[rows], targets[rows], lower[rows], upper[rows], k,
                                          config.max_changes, deadline, weights=self._cost_weights(config))
            by_row = c.reshape(-1, k)
            best = by_row.argmin(1)  # the first (lowest weight) of equally cheap candidates
            has = np.isfinite(by_row[np.arange(len(active)), best])
            take = active[has]
            found[take] = True
            cost[take] = by_row[has, best[has]]
            encoded[take] = enc[(np.arange(len(active)) * k + best)[has]]
            active = active[~has]
            if _past(deadline):
                cut[active] = True
                break
        if config.polish and not _past(deadline):  # cost polish (recourse/polish.py); pinned features stay
            from .polish import polish_solution
            found, encoded = polish_solution(self, x, codes, targets, found, encoded, config.max_changes,
                                             weights=self._cost_weights(config), frozen=pinned)
        return self._finish(x, codes, targets, found, encoded, config, cut & ~found)

    def _base_weight(self, x: np.ndarray, targets: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                     config: SCFEConfig) -> np.ndarray:
        r"""Per row, the loss weight at which a linearised problem just reaches the margin κ.

        Linearising the margin at x, :math:`m(x + w) \approx m_0 + g^\top w`, the minimiser of
        :math:`c\,[\kappa - m_0 - g^\top w]_+ + \sum_i W_i w_i^2` reaches the margin once
        :math:`c \ge c^* = 2(\kappa - m_0) / \sum_{i \in S} g_i^2 / W_i`, S the columns that
        may move in the direction of :math:`g_i` within the m groups with the largest
        :math:`\sum g_i^2 / W_i`.  Clipped to [1e-4, 1e4].
        """
        with torch.no_grad():
            xt = torch.as_tensor(x, device=self.device, dtype=self.dtype)
            t = torch.as_tensor(targets, device=self.device, dtype=torch.long)
            m0, g = MarginGradient(self.classifier)(xt, t)
            movable = torch.where(g > 0, torch.as_tensor(upper > 0, device=self.device),
                                  torch.as_tensor(lower < 0, device=self.device))
            gain = torch.where(movable, g * g / self._proximity(config), 0.0)
            per_group = group_sums(gain, self._groups, self.encoder.n_features)
            k = max(1, min(int(config.max_changes), self.encoder.n_features))
            reach = per_group.topk(k, dim=1).values.sum(1)
            c0 = 2.0 * (config.margin - m0) / reach.clamp_min(1e-12)
            return c0.double().clamp(1e-4, 1e4).cpu().numpy()

    def _run(self, x: np.ndarray, lower: np.ndarray, upper: np.ndarray, targets: np.ndarray, weight: np.ndarray,
             density: Any, config: SCFEConfig, deadline: float | None) -> np.ndarray:
        r"""One APG run of the S-CFE problem on the given rows; the solver's points (float64).

        Variable metric M = W (the proximity weights): the gradient step is
        :math:`u - \alpha W^{-1}\nabla h(u)` and the prox projects in the W-norm, so the
        proximity term :math:`\sum_i W_i (y_i - x_i)^2` is perfectly conditioned whatever the
        spread of W (clipped to [1/25, 25]); first step ``INITIAL_STEP``.
        """
        n = len(x)
        if n > RUN_CHUNK:  # bounded memory (the density's (rows × points) matrices): runs of RUN_CHUNK rows
            return np.concatenate([self._run(x[s:s + RUN_CHUNK], lower[s:s + RUN_CHUNK], upper[s:s + RUN_CHUNK],
                                             targets[s:s + RUN_CHUNK], weight[s:s + RUN_CHUNK], density, config, deadline)
                                   for s in range(0, n, RUN_CHUNK)])
        tensor = lambda a, dt=None: torch.as_tensor(a, device=self.device, dtype=dt or self.dtype)  # noqa: E731
        data = RowData(x=tensor(x), lower=tensor(lower), upper=tensor(upper),
                       max_changes=tensor(np.full(n, config.max_changes), torch.long),
                       target=tensor(targets, torch.long), loss_weight=tensor(weight))
        weights = self._proximity(config)
        simplex_cols = np.concatenate([np.asarray(g, dtype=np.int64) for g in self.encoder.simplex_groups()] or [np.zeros(0, np.int64)])
        pinned_simplex = bool(simplex_cols.size) and bool(((lower[:, simplex_cols] == 0) & (upper[:, simplex_cols] == 0)).any())
        problem = SCFEProblem(self.classifier, data, weights, self._groups, self.encoder.n_features,
                              density, config.tau(), config.margin, self._simplex, metric=weights,
                              pinned_simplex=pinned_simplex)
        result = apg(problem.value, problem.prox, data.x, step=INITIAL_STEP, max_iter=config.max_iter, tol=config.tol,
                     deadline=deadline, grad_fn=problem.value_and_grad, metric=weights)
        return result.x.double().cpu().numpy()

    def _candidates(self, z: np.ndarray, x: np.ndarray, codes: np.ndarray, targets: np.ndarray, lower: np.ndarray,
                    upper: np.ndarray, k: int, max_changes: int, deadline: float | None,
                    weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Verified, repaired and trimmed candidates (``k`` consecutive ones per row): (ok, encoded, cost).

        Repair and trimming are deterministic in (row, lattice point), so each distinct pair is
        worked on once (low loss weights often all round back to the applicant).
        """
        repair = self._repair_for(weights) if weights is not None else self.repair
        ok, enc, cost, _ = self.verify(z, codes, targets, max_changes, x=x, weights=weights)
        row_of = np.arange(len(z)) // k
        bad = np.flatnonzero(~ok)
        if bad.size and not _past(deadline):
            uniq, inverse = _distinct(row_of[bad], enc[bad])
            u = bad[uniq]
            fixed, _ = repair.complete(x[u], enc[u], targets[u], lower[u], upper[u], max_changes, self.margin)
            ok2, enc2, cost2, _ = self.verify(fixed, codes[u], targets[u], max_changes, x=x[u], weights=weights)
            ok2, enc2, cost2 = ok2[inverse], enc2[inverse], cost2[inverse]
            ok[bad], enc[bad], cost[bad] = ok2, np.where(ok2[:, None], enc2, enc[bad]), np.where(ok2, cost2, cost[bad])
        good = np.flatnonzero(ok)
        if good.size:
            uniq, inverse = _distinct(row_of[good], enc[good])
            u = good[uniq]
            trimmed = repair.trim(x[u], enc[u], targets[u], self.margin, np.ones(u.size, dtype=bool))
            ok3, enc3, cost3, _ = self.verify(trimmed, codes[u], targets[u], max_changes, x=x[u], weights=weights)
            ok3, enc3, cost3 = ok3[inverse], enc3[inverse], cost3[inverse]
            better = ok3 & (cost3 < cost[good])
            enc[good[better]], cost[good[better]] = enc3[better], cost3[better]
        return ok, enc, np.where(ok, cost, np.inf)

    def verify(self, z: np.ndarray, originals: pd.DataFrame | np.ndarray, targets: np.ndarray, max_changes: int,
               x: np.ndarray | None = None,
               weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Decode (nearest rounding, else rounding away from the original), re-encode, check.

        ``originals``: raw records (DataFrame) or codes; ``x`` their encoding (computed if None).
        Returns (valid, re-encoded decoded rows, cost, decoded codes): a row is valid only if the
        model puts its decoded values in the target class and no constraint breaks.  ``weights``:
        per-feature cost weights ω (None: the schema's).
        """
        codes = self.encoder.to_codes(originals) if isinstance(originals, pd.DataFrame) else originals
        x = self.encoder.encode_codes(codes) if x is None else x
        ok = np.zeros(len(z), dtype=bool)
        enc = np.empty_like(z)
        cost = np.full(len(z), np.inf)
        out = codes.copy()
        for rounding in ("nearest", "away"):
            todo = np.flatnonzero(~ok)
            if todo.size == 0:
                break
            new = self.encoder.decode_codes(z[todo], x[todo], codes[todo], rounding=rounding)
            e = self.encoder.encode_codes(new)
            good = self._admissible(codes[todo], new, e, targets[todo], max_changes)
            if rounding == "nearest":
                enc[todo] = e
                out[todo] = new
            rows = todo[good]
            enc[rows], out[rows] = e[good], new[good]
            cost[rows] = self.change_costs(codes[rows], new[good], weights)
            ok[rows] = True
        return ok, enc, cost, out

    def _admissible(self, originals: np.ndarray, new: np.ndarray, encoded: np.ndarray, targets: np.ndarray,
                    max_changes: int) -> np.ndarray:
        """Codes that the model puts in the target class and that break no constraint."""
        good = admissible(self.encoder, originals, new, max_changes)
        rows = np.flatnonzero(good)
        if rows.size:
            good[rows] = self.margin(encoded[rows], targets[rows]) > 0
        return good

    def _finish(self, x, codes, targets, found, encoded, config, cut) -> BatchSolution:
        """Final gate: decode the kept points once more and re-verify everything that is returned."""
        n = len(x)
        if n == 0:
            return BatchSolution(found, codes.copy(), encoded, np.zeros(0), np.zeros(0), {"cut": cut})
        new = self.encoder.decode_codes(encoded, x, codes, rounding="nearest")
        enc = self.encoder.encode_codes(new)
        final_ok = found & self._admissible(codes, new, enc, targets, config.max_changes)
        new = np.where(final_ok[:, None], new, codes)
        probs = self.predict_proba(enc)
        prob = probs[np.arange(n), targets]
        cost = self.change_costs(codes, new, self._cost_weights(config))
        return BatchSolution(final_ok, new, np.where(final_ok[:, None], enc, x), np.where(final_ok, cost, np.inf), prob,
                             {"cut": cut & ~final_ok})

    # ------------------------------------------------------------------ helpers
    def _config(self, max_changes: int | None, density: str | None | bool,
                cost_weights: dict[str, float] | None = None) -> SCFEConfig:
        config = self.config
        if cost_weights is not None:
            config = replace(config, cost_weights=tuple(self._merged_cost_weights(cost_weights).tolist()))
        if max_changes is not None:
            try:
                m = None if isinstance(max_changes, bool) else operator.index(max_changes)
            except TypeError:
                m = None
            if m is None or m < 1:
                raise RecordValidationError([FieldError("max_changes", f"must be a whole number ≥ 1, got {max_changes!r}")])
            # more changes than features is no constraint at all: the same as one per feature
            config = replace(config, max_changes=min(m, len(self.schema.features)))
        if density is not True:
            name = None if density in (None, False, "none") else density
            if name is not None and name not in self.densities:
                raise RecordValidationError([FieldError("density", f"unknown density {name!r}; available: {', '.join(sorted(self.densities))}")])
            config = replace(config, density=name)
        return config

    def _merged_cost_weights(self, cost_weights: dict[str, float]) -> np.ndarray:
        """The schema's ``cost_weight``s with the request's overrides (unknown names, ω ≤ 0 → errors)."""
        if not isinstance(cost_weights, dict):
            raise RecordValidationError([FieldError("cost_weights", "expected an object of feature: weight")])
        out = self._schema_cost_weights.copy()
        index = {name: j for j, name in enumerate(self.schema.names)}
        errors = []
        for name, w in cost_weights.items():
            where = f"cost_weights.{name}"
            if name not in index:
                errors.append(FieldError(where, f"unknown feature {name!r}"))
                continue
            try:
                value = float(w)
            except (TypeError, ValueError):
                value = float("nan")
            lo, hi = COST_WEIGHT_RANGE
            if isinstance(w, bool) or not math.isfinite(value) or not lo <= value <= hi:
                errors.append(FieldError(where, f"must be a number from {lo:g} to {hi:g}, got {w!r}"))
                continue
            out[index[name]] = value
        if errors:
            raise RecordValidationError(errors)
        return out

    def _cost_weights(self, config: SCFEConfig) -> np.ndarray:
        """Per-feature cost weights ω (F,) of a call."""
        return self._schema_cost_weights if config.cost_weights is None else np.asarray(config.cost_weights, float)

    def _proximity_tensor(self, weights: np.ndarray) -> torch.Tensor:
        r"""Proximity weights :math:`W_c\,\omega_{g(c)}^2` (the squared counterpart of the weighted ℓ1 cost)."""
        w = self._base_weights * np.asarray(weights, float)[self.encoder.groups] ** 2
        return torch.as_tensor(w, device=self.device, dtype=self.dtype)

    def _proximity(self, config: SCFEConfig) -> torch.Tensor:
        return self._weights if config.cost_weights is None else self._proximity_tensor(self._cost_weights(config))

    def change_costs(self, a: np.ndarray, b: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        r"""Cost :math:`\sum_j \omega_j |\Delta_j| / s_j` per row between codes ``a`` and ``b`` (ω: the schema's if None)."""
        w = self._schema_cost_weights if weights is None else np.asarray(weights, float)
        delta = np.abs(b - a)
        delta = np.where(self.encoder.is_binary | self.encoder.is_categorical, (a != b).astype(float), delta)
        terms = delta * (w / self.encoder.cost_scale)
        return terms.sum(1) if terms.shape[1] else np.zeros(len(a))

    def _repair_for(self, weights: np.ndarray) -> DiscreteRepair:
        """The discrete repair with its per-column costs scaled by ω (a shallow copy, cached per ω)."""
        key = tuple(float(v) for v in np.asarray(weights, float))
        if all(v == 1.0 for v in key):
            return self._plain_repair
        if key not in self._repairs:
            if len(self._repairs) > 64:
                self._repairs.clear()
            repair = copy.copy(self._plain_repair)
            repair.cost_coef = self._plain_repair.cost_coef * np.asarray(key)[self.encoder.groups]
            repair._pair_coef = repair.cost_coef[repair._pair_col]
            self._repairs[key] = repair
        return self._repairs[key]

    def _alternatives(self, x: np.ndarray, codes: np.ndarray, targets: np.ndarray, sol: BatchSolution,
                      config: SCFEConfig, deadline: float | None, k: int) -> list[list[tuple]]:
        r"""Up to ``k`` verified counterfactuals per row with pairwise different changed-feature sets.

        The first is the row's ordinary answer :math:`S_1`.  Each round re-solves, in ONE batched
        :meth:`_solve`, every (row, H) job for the rows still short of k answers, where H is a
        *hitting set* of the row's answers so far (a set of features meeting every earlier
        changed set :math:`S_i`): for each feature f of their union, H = {f} plus, for every
        :math:`S_i` without f, its feature found in most of the sets.  H's features are pinned
        (bounds zero), so any answer avoids H and therefore differs from every earlier
        :math:`S_i`.  New sets are kept (the cheapest answer per set), at most k − 1 rounds.
        Returns per row a list of (codes, encoded, cost, probability), the ordinary answer
        first, then by cost.
        """
        n, f = len(x), self.encoder.n_features
        found = {i: [(sol.codes[i], sol.encoded[i], float(sol.cost[i]), float(sol.probability[i]))]
                 for i in np.flatnonzero(sol.found)}
        sets = {i: [self.encoder.changed_codes(codes[i:i + 1], sol.codes[i:i + 1])[0]] for i in found}
        tried: dict[int, set[bytes]] = {i: set() for i in found}
        sub_config = replace(config, diagnose=False)
        for _ in range(k - 1):
            jobs, masks = [], []
            for i, have in sets.items():
                if len(have) >= k:
                    continue
                stack = np.stack(have)
                union = np.flatnonzero(stack.any(0))
                count = stack.sum(0)
                for j in union:
                    h = np.zeros(f, dtype=bool)
                    h[j] = True
                    for s_i in have:
                        if not (s_i & h).any():
                            cand = np.flatnonzero(s_i)
                            h[cand[np.argmax(count[cand])]] = True
                    key = h.tobytes()
                    if key not in tried[i] and h.sum() < f:
                        tried[i].add(key)
                        jobs.append(i)
                        masks.append(h)
            if not jobs or _past(deadline):
                break
            rows, pinned = np.asarray(jobs), np.stack(masks)
            sub = self._solve(x[rows], codes[rows], targets[rows], sub_config, deadline, pinned=pinned)
            changed = self.encoder.changed_codes(codes[rows], sub.codes)
            ok = sub.found & ~(changed & pinned).any(1) & (changed.sum(1) <= config.max_changes)
            for t in np.argsort(np.where(ok, sub.cost, np.inf), kind="stable")[: int(ok.sum())]:
                i = int(rows[t])
                if not any(np.array_equal(changed[t], s_i) for s_i in sets[i]):
                    sets[i].append(changed[t])
                    found[i].append((sub.codes[t], sub.encoded[t], float(sub.cost[t]), float(sub.probability[t])))
        out: list[list[tuple]] = [[] for _ in range(n)]
        for i, answers in found.items():
            out[i] = [answers[0]] + sorted(answers[1:], key=lambda a: a[2])[: k - 1]
        return out

    def _density(self, name: str | None) -> Any:
        if name is None:
            return None
        if name not in self.densities:
            raise ValueError(f"density {name!r} is not fitted in this engine; available: {sorted(self.densities)}")
        return self.densities[name]

    def _targets(self, target: Any, n: int, pred: np.ndarray) -> np.ndarray:
        if target is None:
            if self.schema.target is None:
                raise ValueError("no target given and the schema names no favourable class")
            target = self.schema.target.favourable
        values = list(target) if isinstance(target, (list, tuple, np.ndarray, pd.Series)) else [target] * n
        if len(values) != n:
            raise RecordValidationError([FieldError("target", f"expected {n} target values, got {len(values)}")])
        index = {str(c): i for i, c in enumerate(self.classes)}
        out = []
        for v in values:
            if str(v) not in index:
                raise RecordValidationError([FieldError("target", f"unknown class {v!r}; classes: {self.classes}")])
            out.append(index[str(v)])
        return np.asarray(out, dtype=np.int64)

    def _already_message(self, target: Decision) -> str:
        """Why no change is needed: the favourable class, or another class the caller asked for."""
        if self.schema.target is None or str(target.value) == str(self.schema.target.favourable):
            return "The model already gives the favourable decision."
        return f"The model already gives the requested decision ({target.label})."

    def _decision(self, cls_index: int, prob: float) -> Decision:
        value = self.classes[cls_index]
        label = self.schema.target.label_of(value) if self.schema.target else str(value)
        return Decision(label=label, value=value, probability=float(prob))

    def lof(self, encoded: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Target-class local outlier factor (≈1 inlier, larger = outlier), NaN without training data."""
        if self.train_encoded is None or len(encoded) == 0:
            return np.full(len(encoded), np.nan)
        return lof_scores(self.train_encoded, self.train_labels, encoded, targets, _cache=self._lof)

    def _assemble(self, rows: list[dict[str, Any]], codes: np.ndarray, x: np.ndarray, probs: np.ndarray,
                  targets: np.ndarray, need: np.ndarray, sol: BatchSolution, config: SCFEConfig,
                  deadline: float | None = None, alts: list[list[tuple]] | None = None) -> list[Recourse]:
        n = len(rows)
        alt_of = self._assemble_alternatives(rows, codes, x, targets, need, alts) if alts is not None else None
        out: list[Recourse] = []
        changed = self.encoder.changed_codes(codes[need], sol.codes)
        l2 = np.linalg.norm(sol.encoded - x[need], axis=1) if len(need) else np.zeros(0)
        lof_rows = np.full(len(need), np.nan)
        lof_rows[sol.found] = self.lof(sol.encoded[sol.found], targets[need][sol.found])
        cf_records = self.encoder.records_from_codes(sol.codes[sol.found])
        cf_of = dict(zip(np.flatnonzero(sol.found).tolist(), cf_records))
        reasons = self._diagnose(x[need], codes[need], targets[need], sol, config, deadline)
        position = {int(r): i for i, r in enumerate(need)}
        pred = probs.argmax(1)
        for r in range(n):
            decision = self._decision(int(pred[r]), probs[r, pred[r]])
            target = self._decision(int(targets[r]), probs[r, targets[r]])
            if r not in position:
                out.append(Recourse("already_favourable", rows[r], decision, target,
                                    message=self._already_message(target), max_changes=config.max_changes,
                                    alternatives=None if alt_of is None else []))
                continue
            i = position[r]
            if not sol.found[i]:
                out.append(Recourse("no_recourse_found", rows[r], decision, target,
                                    message=reasons.get(i, "No recourse found within these constraints."),
                                    max_changes=config.max_changes, alternatives=None if alt_of is None else []))
                continue
            cf = cf_of[i]
            acts = actions_for(self.schema, changed[i], rows[r], cf)
            metrics = {"l0": int(changed[i].sum()), "l2": float(l2[i]), "cost": float(sol.cost[i]), "lof": float(lof_rows[i])}
            out.append(Recourse("recourse_found", rows[r], decision, target, cf,
                                self._decision(int(targets[r]), sol.probability[i]), acts, metrics,
                                message=f"{len(acts)} change{'s lead' if len(acts) != 1 else ' leads'} to the decision '{target.label}'.",
                                max_changes=config.max_changes, alternatives=None if alt_of is None else alt_of[i]))
        return out

    def _assemble_alternatives(self, rows: list[dict[str, Any]], codes: np.ndarray, x: np.ndarray, targets: np.ndarray,
                               need: np.ndarray, alts: list[list[tuple]]) -> list[list[Alternative]]:
        """:class:`Alternative` objects per solved row (metrics and LOF computed in one batch)."""
        owner = np.asarray([i for i, a in enumerate(alts) for _ in a], dtype=np.int64)
        if owner.size == 0:
            return [[] for _ in alts]
        new = np.stack([c for a in alts for c, _, _, _ in a])
        enc = np.stack([e for a in alts for _, e, _, _ in a])
        cost = np.asarray([c for a in alts for _, _, c, _ in a])
        prob = np.asarray([p for a in alts for _, _, _, p in a])
        orig_rows = need[owner]
        changed = self.encoder.changed_codes(codes[orig_rows], new)
        l2 = np.linalg.norm(enc - x[orig_rows], axis=1)
        lof = self.lof(enc, targets[orig_rows])
        records = self.encoder.records_from_codes(new)
        out: list[list[Alternative]] = [[] for _ in alts]
        for t, i in enumerate(owner.tolist()):
            r = int(need[i])
            acts = actions_for(self.schema, changed[t], rows[r], records[t])
            metrics = {"l0": int(changed[t].sum()), "l2": float(l2[t]), "cost": float(cost[t]), "lof": float(lof[t])}
            out[i].append(Alternative(records[t], self._decision(int(targets[r]), prob[t]), acts, metrics))
        return out

    def _diagnose(self, x: np.ndarray, codes: np.ndarray, targets: np.ndarray, sol: BatchSolution,
                  config: SCFEConfig, deadline: float | None = None) -> dict[int, str]:
        """Why rows have no recourse: too few changes allowed, or unreachable within the constraints."""
        failed = np.flatnonzero(~sol.found)
        if failed.size == 0:
            return {}
        out: dict[int, str] = {}
        cut = sol.extra.get("cut", np.zeros(len(sol.found), dtype=bool))
        for i in np.flatnonzero(cut):
            out[int(i)] = (f"No recourse found: the search stopped at the time limit ({config.time_limit:g} s) "
                           "before a verified counterfactual was found. Allow more time to search further.")
        failed = failed[~cut[failed]]
        if failed.size == 0:
            return out
        mutable = int((~self.encoder.immutable).sum())
        if mutable == 0:
            out.update({int(i): "Every feature is immutable, so nothing can change the decision." for i in failed})
            return out
        if not config.diagnose or config.max_changes >= mutable:
            out.update({int(i): (f"No change of the {mutable} mutable features within their ranges and allowed "
                                 "directions reached the target decision.") for i in failed})
            return out
        if _past(deadline):
            out.update({int(i): ("No recourse found within these constraints (the time limit left no time to "
                                 "check whether more changes would help).") for i in failed})
            return out
        relaxed = self._solve(x[failed], codes[failed], targets[failed],
                              replace(config, max_changes=mutable, diagnose=False), deadline)
        changed = self.encoder.changed_codes(codes[failed], relaxed.codes).sum(1)
        for j, i in enumerate(failed):
            if relaxed.found[j] and changed[j] > config.max_changes:
                out[int(i)] = (f"No recourse with at most {config.max_changes} changes; the closest found "
                               f"needs {int(changed[j])} changes. Allow more changes to see it.")
            elif relaxed.found[j]:
                out[int(i)] = (f"No verified recourse with at most {config.max_changes} changes was found by the "
                               "sparse search, although a wider search reached the target; try again with more changes allowed.")
            elif relaxed.extra.get("cut", np.zeros(0, bool))[j:j + 1].any():
                out[int(i)] = ("No recourse found within these constraints (the time limit stopped the check "
                               "whether more changes would help).")
            else:
                out[int(i)] = (f"No recourse found within these constraints: even changing all {mutable} mutable "
                               "features within their ranges and allowed directions did not reach the target decision.")
        return out


_LADDER_SIZE = 5  # loss weights per row in the first search round


def _ladders(config: SCFEConfig) -> list[np.ndarray]:
    """Loss-weight multipliers per search round: 10^(−2…2), then 10^3, 10^4, … (three per round) up to ``max_weight``."""
    top = math.floor(math.log10(max(config.max_weight, 1.0)) + 1e-9)
    out = [10.0 ** np.arange(-2, -2 + _LADDER_SIZE)]
    for r in range(1, max(1, config.search_steps)):
        exps = np.arange(3 * r, 3 * r + 3)
        exps = exps[exps <= top]
        if exps.size == 0:
            break
        out.append(10.0 ** exps)
    return out


def _alternatives_count(alternatives: int | None) -> int | None:
    """K of ``explain(alternatives=K)`` checked (None: not requested)."""
    if alternatives is None:
        return None
    if isinstance(alternatives, bool) or not isinstance(alternatives, (int, np.integer)) or int(alternatives) < 1:
        raise RecordValidationError([FieldError("alternatives", f"must be a whole number ≥ 1, got {alternatives!r}")])
    return int(alternatives)


def _distinct(rows: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the first of each distinct (row, point) pair and, per pair, its distinct index."""
    key = np.concatenate([rows[:, None].astype(points.dtype), points], axis=1)
    if len(key) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    order = np.lexsort(key.T[::-1])  # rows sorted lexicographically (stable: ties keep input order)
    ordered = key[order]
    new = np.ones(len(key), dtype=bool)
    new[1:] = (ordered[1:] != ordered[:-1]).any(1)
    group = np.cumsum(new) - 1  # distinct index of each sorted position
    inverse = np.empty(len(key), dtype=np.int64)
    inverse[order] = group
    return order[new], inverse


def _past(deadline: float | None) -> bool:
    """Whether the wall-clock ``deadline`` (``time.perf_counter()`` seconds) has passed."""
    return deadline is not None and time.perf_counter() >= deadline
