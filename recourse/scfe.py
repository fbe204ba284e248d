"""The tabular recourse engine (S-CFE): records in, verified :class:`Recourse` objects out.

Pipeline per batch: validate → encode → per-row actionable bounds → batched search over the
classification-loss weight c (all rows at once; each step one APG run on the rows still
searching) → decode and repair (integers, ordinal levels, one-hot groups; two roundings) →
verify with the model on the final decoded values and check every constraint → keep, per row,
the cheapest verified counterfactual.  Rows with none get an honest ``no_recourse_found`` and a
reason (a second search with every mutable feature allowed tells "needs more than m changes"
from "not reachable within the constraints").
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from .actions import actions_for
from .constraints import changed_features, violations
from .core.apg import apg
from .core.projections import simplex_layout
from .encoding import TabularEncoder
from .errors import RecordValidationError, FieldError
from .metrics import lof_scores
from .objective import RowData, SCFEProblem, logit_margin
from .repair import DiscreteRepair
from .runtime import threads_for
from .results import Decision, Recourse
from .schema import FeatureSchema

DEFAULT_DENSITY_WEIGHTS = {"kde": 0.02, "gmm": 0.02, "knn": 0.5}


@dataclass
class SCFEConfig:
    """Solver settings (defaults documented in the README).

    max_changes: m, the most features a counterfactual may change (a categorical counts once).
    density: plausibility term ("kde", "gmm", "knn" or None); density_weight: τ (None = default).
    margin: κ, the logit margin the counterfactual must clear (robustness to rounding).
    search_steps / initial_weight: the loss-weight search (×10 until valid, then bisection).
    max_iter / tol: APG iterations per search step and the per-row stopping tolerance.
    """

    max_changes: int = 3
    density: str | None = "kde"
    density_weight: float | None = None
    margin: float = 0.2
    search_steps: int = 5
    initial_weight: float = 1.0
    max_weight: float = 1e5
    max_iter: int = 60
    tol: float = 1e-4
    diagnose: bool = True

    def tau(self) -> float:
        if self.density is None:
            return 0.0
        return DEFAULT_DENSITY_WEIGHTS.get(self.density, 0.1) if self.density_weight is None else self.density_weight


@dataclass
class BatchSolution:
    """Per-row outcome of one search: verified flags, counterfactual table, costs."""

    found: np.ndarray
    counterfactuals: pd.DataFrame
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
    ):
        self.schema = schema
        self.encoder = TabularEncoder(schema)
        self.device = torch.device(device) if device is not None else classifier.device
        self.dtype = dtype
        self.classifier = classifier.to(self.device, dtype)
        self.densities = {k: d.to(self.device, dtype) for k, d in (densities or {}).items()}
        self.config = config or SCFEConfig()
        self.train_encoded = train_encoded
        self.train_labels = train_labels
        self.classes = list(classifier.classes)
        groups = self.encoder.groups
        self._groups = torch.as_tensor(groups, device=self.device, dtype=torch.long)
        self._weights = torch.as_tensor(self.encoder.proximity_weights(), device=self.device, dtype=dtype)
        self.repair = DiscreteRepair(self.encoder)
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
    ) -> list[Recourse]:
        """Recourse for each record (validated first; errors name row and field).

        ``target``: the class to reach (default: the schema's favourable class), one value or
        one per row.  ``density=True`` uses the configured density, ``None``/``False`` none.
        """
        frame = self.validate(records)
        config = self._config(max_changes, density)
        x = self.encoder.encode(frame)
        probs = self.predict_proba(x)
        pred = probs.argmax(1)
        targets = self._targets(target, len(frame), pred)
        need = np.flatnonzero(pred != targets)
        with threads_for(self.device, x.size):
            solution = self.solve(x[need], frame.iloc[need].reset_index(drop=True), targets[need], config)
            return self._assemble(frame, x, probs, targets, need, solution, config)

    def validate(self, records: dict | Sequence[dict] | pd.DataFrame) -> pd.DataFrame:
        """Validated records as a DataFrame in schema column order."""
        if isinstance(records, pd.DataFrame):
            rows = records.to_dict(orient="records")
        elif isinstance(records, dict):
            rows = [records]
        elif isinstance(records, (list, tuple)):
            rows = list(records)
        else:
            raise RecordValidationError([FieldError("records", "expected an applicant object or a list of them, "
                                                    f"got {type(records).__name__}")])
        if len(rows) == 1 and isinstance(records, dict):
            clean = [self.schema.validate_record(rows[0])]
        else:
            clean = self.schema.validate_records(rows)
        return pd.DataFrame(clean, columns=self.schema.names)

    def predict_proba(self, encoded: np.ndarray) -> np.ndarray:
        """Model probabilities (N, C) for scaled rows."""
        with torch.no_grad():
            t = torch.as_tensor(encoded, device=self.device, dtype=self.dtype)
            return self.classifier.predict_proba(t).double().cpu().numpy()

    # ------------------------------------------------------------------ the search
    def margin(self, encoded: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Logit margin of the target class per row (> 0: the model picks the target class)."""
        with torch.no_grad():
            z = self.classifier.logits(torch.as_tensor(encoded, device=self.device, dtype=self.dtype)).double()
            t = torch.as_tensor(targets, device=self.device, dtype=torch.long)
            return logit_margin(z, t).cpu().numpy()

    def solve(self, x: np.ndarray, originals: pd.DataFrame, targets: np.ndarray, config: SCFEConfig) -> BatchSolution:
        """Cheapest verified counterfactual per row (target class indices ``targets``)."""
        n = len(x)
        originals = originals.reset_index(drop=True)
        found, encoded, cost = np.zeros(n, dtype=bool), x.copy(), np.full(n, np.inf)
        if n == 0:
            return self._finish(x, originals, targets, found, encoded, config)
        lower, upper = self.encoder.bounds(x)
        tensor = lambda a, dt=None: torch.as_tensor(a, device=self.device, dtype=dt or self.dtype)  # noqa: E731
        weight = np.full(n, config.initial_weight)
        lo, hi = np.zeros(n), np.full(n, np.inf)
        data = RowData(
            x=tensor(x), lower=tensor(lower), upper=tensor(upper),
            max_changes=tensor(np.full(n, config.max_changes), torch.long),
            target=tensor(targets, torch.long), loss_weight=tensor(weight),
        )
        density = self._density(config.density)
        step0 = 0.5 / float(self._weights.max())
        active = np.arange(n)
        for _ in range(config.search_steps):
            sub = data.take(tensor(active, torch.long))
            sub.loss_weight = tensor(weight[active])
            problem = SCFEProblem(self.classifier, sub, self._weights, self._groups, self.encoder.n_features,
                                  density, config.tau(), config.margin, self._simplex)
            result = apg(problem.smooth, problem.prox, sub.x, step=step0, max_iter=config.max_iter, tol=config.tol)
            z = result.x.double().cpu().numpy()
            reached = self.margin(z, targets[active]) > 0
            ok, enc, c = self._round_and_repair(z, x[active], originals.iloc[active], targets[active],
                                                lower[active], upper[active], config.max_changes)
            better = ok & (c < cost[active])
            rows = active[better]
            found[rows], cost[rows], encoded[rows] = True, c[better], enc[better]
            hi[active[reached]] = weight[active[reached]]
            lo[active[~reached]] = weight[active[~reached]]
            weight = np.where(np.isinf(hi), weight * 10.0, np.where(lo == 0, weight / 10.0, np.sqrt(lo * np.maximum(hi, 1e-12))))
            settled = (found & (hi / np.maximum(lo, 1e-12) < 3.0)) | (~found & (weight > config.max_weight))
            active = np.flatnonzero(~settled)
            if active.size == 0:
                break
        trimmed = self.repair.trim(x, encoded, targets, self.margin, found)
        ok, enc, c = self.verify(trimmed, originals, targets, config.max_changes)
        take = ok & found & (c < cost)
        encoded[take] = enc[take]
        return self._finish(x, originals, targets, found, encoded, config)

    def _round_and_repair(self, z, x, originals, targets, lower, upper, max_changes):
        """Verify the rounded solver output; complete the rows that fail by discrete repair."""
        ok, enc, cost = self.verify(z, originals, targets, max_changes)
        bad = np.flatnonzero(~ok)
        if bad.size:
            fixed, _ = self.repair.complete(x[bad], enc[bad], targets[bad], lower[bad], upper[bad], max_changes, self.margin)
            ok2, enc2, cost2 = self.verify(fixed, originals.iloc[bad], targets[bad], max_changes)
            ok[bad], enc[bad], cost[bad] = ok2, np.where(ok2[:, None], enc2, enc[bad]), np.where(ok2, cost2, cost[bad])
        return ok, enc, np.where(ok, cost, np.inf)

    def verify(self, z: np.ndarray, originals: pd.DataFrame, targets: np.ndarray, max_changes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Decode (nearest rounding, else rounding away from the original), re-encode, check.

        Returns (valid, re-encoded decoded rows, cost): a row is valid only if the model puts its
        decoded values in the target class and no constraint breaks.
        """
        originals = originals.reset_index(drop=True)
        ok = np.zeros(len(z), dtype=bool)
        enc = np.empty_like(z)
        cost = np.full(len(z), np.inf)
        for rounding in ("nearest", "away"):
            todo = np.flatnonzero(~ok)
            if todo.size == 0:
                break
            frame = self.encoder.decode(z[todo], originals.iloc[todo], rounding=rounding)
            e = self.encoder.encode(frame)
            good = self._admissible(originals.iloc[todo], frame, e, targets[todo], max_changes)
            if rounding == "nearest":
                enc[todo] = e
            enc[todo[good]] = e[good]
            cost[todo[good]] = self.encoder.change_costs(originals.iloc[todo[good]], frame.iloc[np.flatnonzero(good)])
            ok[todo[good]] = True
        return ok, enc, cost

    def _admissible(self, originals, frame, encoded, targets, max_changes) -> np.ndarray:
        broken = violations(self.schema, originals, frame, max_changes)
        return (self.margin(encoded, targets) > 0) & np.array([not b for b in broken], dtype=bool)

    def _finish(self, x, originals, targets, found, encoded, config) -> BatchSolution:
        """Final gate: decode the kept points once more and re-verify everything that is returned."""
        frame = self.encoder.decode(encoded, originals, rounding="nearest")
        enc = self.encoder.encode(frame) if len(frame) else encoded
        final_ok = found & self._admissible(originals, frame, enc, targets, config.max_changes) if len(frame) else found
        frame = frame.where(pd.DataFrame(np.repeat(final_ok[:, None], frame.shape[1], 1), columns=frame.columns), originals)
        probs = self.predict_proba(enc) if len(enc) else np.zeros((0, len(self.classes)))
        prob = probs[np.arange(len(targets)), targets] if len(enc) else np.zeros(0)
        cost = self.encoder.change_costs(originals, frame) if len(frame) else np.zeros(0)
        return BatchSolution(final_ok, frame, np.where(final_ok[:, None], enc, x), np.where(final_ok, cost, np.inf), prob)

    # ------------------------------------------------------------------ helpers
    def _config(self, max_changes: int | None, density: str | None | bool) -> SCFEConfig:
        config = self.config
        if max_changes is not None:
            if int(max_changes) < 1:
                raise RecordValidationError([FieldError("max_changes", "must be at least 1")])
            config = replace(config, max_changes=int(max_changes))
        if density is not True:
            name = None if density in (None, False, "none") else density
            if name is not None and name not in self.densities:
                raise RecordValidationError([FieldError("density", f"unknown density {name!r}; available: {', '.join(sorted(self.densities))}")])
            config = replace(config, density=name)
        return config

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

    def _decision(self, cls_index: int, prob: float) -> Decision:
        value = self.classes[cls_index]
        label = self.schema.target.label_of(value) if self.schema.target else str(value)
        return Decision(label=label, value=value, probability=float(prob))

    def lof(self, encoded: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Target-class local outlier factor (≈1 inlier, larger = outlier), NaN without training data."""
        if self.train_encoded is None or len(encoded) == 0:
            return np.full(len(encoded), np.nan)
        return lof_scores(self.train_encoded, self.train_labels, encoded, targets, _cache=self._lof)

    def _assemble(self, frame, x, probs, targets, need, sol: BatchSolution, config: SCFEConfig) -> list[Recourse]:
        n = len(frame)
        applicants = frame.to_dict(orient="records")
        out: list[Recourse] = []
        cf_records = sol.counterfactuals.to_dict(orient="records")
        changed = changed_features(self.schema, frame.iloc[need], sol.counterfactuals)
        l2 = np.linalg.norm(sol.encoded - x[need], axis=1) if len(need) else np.zeros(0)
        lof = self.lof(sol.encoded[sol.found], targets[need][sol.found])
        lof_rows = np.full(len(need), np.nan)
        lof_rows[sol.found] = lof
        reasons = self._diagnose(x[need], frame.iloc[need].reset_index(drop=True), targets[need], sol, config)
        position = {int(r): i for i, r in enumerate(need)}
        pred = probs.argmax(1)
        for r in range(n):
            decision = self._decision(int(pred[r]), probs[r, pred[r]])
            target = self._decision(int(targets[r]), probs[r, targets[r]])
            if r not in position:
                out.append(Recourse("already_favourable", applicants[r], decision, target,
                                    message="The model already gives the favourable decision.", max_changes=config.max_changes))
                continue
            i = position[r]
            if not sol.found[i]:
                out.append(Recourse("no_recourse_found", applicants[r], decision, target,
                                    message=reasons.get(i, "No recourse found within these constraints."),
                                    max_changes=config.max_changes))
                continue
            cf = cf_records[i]
            acts = actions_for(self.schema, changed[i], applicants[r], cf)
            metrics = {"l0": int(changed[i].sum()), "l2": float(l2[i]), "cost": float(sol.cost[i]), "lof": float(lof_rows[i])}
            out.append(Recourse("recourse_found", applicants[r], decision, target, cf,
                                self._decision(int(targets[r]), sol.probability[i]), acts, metrics,
                                message=f"{len(acts)} change{'s' if len(acts) != 1 else ''} lead to the decision '{target.label}'.",
                                max_changes=config.max_changes))
        return out

    def _diagnose(self, x, originals, targets, sol: BatchSolution, config: SCFEConfig) -> dict[int, str]:
        """Why rows have no recourse: too few changes allowed, or unreachable within the constraints."""
        failed = np.flatnonzero(~sol.found)
        if failed.size == 0:
            return {}
        mutable = sum(not f.immutable for f in self.schema.features)
        if mutable == 0:
            return {int(i): "Every feature is immutable, so nothing can change the decision." for i in failed}
        if not config.diagnose or config.max_changes >= mutable:
            return {int(i): (f"No change of the {mutable} mutable features within their ranges and allowed "
                             "directions reached the target decision.") for i in failed}
        relaxed = self.solve(x[failed], originals.iloc[failed].reset_index(drop=True), targets[failed],
                             replace(config, max_changes=mutable, diagnose=False))
        changed = changed_features(self.schema, originals.iloc[failed], relaxed.counterfactuals).sum(1)
        out = {}
        for j, i in enumerate(failed):
            if relaxed.found[j] and changed[j] > config.max_changes:
                out[int(i)] = (f"No recourse with at most {config.max_changes} changes; the closest found "
                               f"needs {int(changed[j])} changes. Allow more changes to see it.")
            elif relaxed.found[j]:
                out[int(i)] = (f"No verified recourse with at most {config.max_changes} changes was found by the "
                               "sparse search, although a wider search reached the target; try again with more changes allowed.")
            else:
                out[int(i)] = (f"No recourse found within these constraints: even changing all {mutable} mutable "
                               "features within their ranges and allowed directions did not reach the target decision.")
        return out
