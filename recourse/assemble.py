"""Assembly: verified solutions in, one :class:`~recourse.results.Recourse` per applicant out.

Metrics per answer: ``l0`` (features changed), ``l2`` (distance in the scaled encoding),
``cost`` (:math:`\\sum_j \\omega_j |\\Delta_j| / s_j`) and ``lof`` (target-class local outlier
factor; NaN without training data); the actions in words; the principal reasons
(:mod:`recourse.reasons`) are added by the engine once the results exist.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .actions import actions_for, consequences_for
from .config import SCFEConfig
from .encoding import TabularEncoder
from .results import Alternative, Decision, Recourse
from .schema import FeatureSchema
from .verify import BatchSolution, Candidate

Plausibility = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass
class Batch:
    """One call's applicants: validated records, their codes and scaled encoding, the model's
    probabilities (N, C), the target class index per row, and the positions of the rows that need
    a counterfactual (the model does not already give the target)."""

    rows: list[dict[str, Any]]
    codes: np.ndarray
    x: np.ndarray
    probs: np.ndarray
    targets: np.ndarray
    need: np.ndarray


class Assembler:
    """Builds :class:`Recourse` objects for one schema and one model's classes."""

    def __init__(self, schema: FeatureSchema, encoder: TabularEncoder, classes: list[Any], lof: Plausibility,
                 scorer: Callable[[np.ndarray], np.ndarray] | None = None):
        """``scorer``: for a score target, the predicted score of scaled rows (decisions then carry it)."""
        self.schema, self.encoder, self.classes, self.lof = schema, encoder, classes, lof
        self.scorer = scorer
        self.consequences = encoder.action_set.consequences

    def _scores(self, encoded: np.ndarray) -> list[float | None]:
        """The predicted score of each row (None each without a score target)."""
        if self.scorer is None or len(encoded) == 0:
            return [None] * len(encoded)
        return [float(v) for v in self.scorer(encoded)]

    def outcomes(self, originals: np.ndarray, interventions: np.ndarray,
                 encoded: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(changed (N, F) interventions, counterfactual codes, their encoding, moved (N, F) effects)
        for interventions on originals (codes; ``encoded``: the interventions' encoding)."""
        changed = self.encoder.changed_codes(originals, interventions)
        if not self.consequences.active or len(originals) == 0:
            return changed, interventions, encoded, np.zeros_like(changed)
        seen = self.consequences.apply(originals, interventions)
        moved = self.consequences.moved(interventions, seen)
        return changed, seen, self.encoder.encode_codes(seen), moved

    def acted(self, interventions: np.ndarray, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The records of the interventions (what the actions set): ``records`` (the counterfactuals)
        themselves without consequences."""
        return self.encoder.records_from_codes(interventions) if self.consequences.active else records

    def _consequences(self, moved: np.ndarray, origin: np.ndarray, interventions: np.ndarray,
                      acted: dict[str, Any], counterfactual: dict[str, Any]) -> list:
        """The moved effects of one answer, in words: from the value the actions leave (``acted``)
        to the counterfactual's."""
        if not moved.any():
            return []
        causes = {int(j): self.consequences.causes_of(int(j), origin, interventions) for j in np.flatnonzero(moved)}
        return consequences_for(self.schema, moved, acted, counterfactual, causes)

    def decision(self, class_index: int, probability: float, score: float | None = None) -> Decision:
        """The decision for a class index: its value, display label and the model's probability (a
        score target: the predicted ``score`` instead of a probability)."""
        value = self.classes[class_index]
        label = self.schema.target.label_of(value) if self.schema.target else str(value)
        if score is not None:
            return Decision(label=label, value=value, probability=None, score=float(score))
        return Decision(label=label, value=value, probability=float(probability))

    def already_message(self, target: Decision) -> str:
        """Why no change is needed: the favourable class, or another class the caller asked for."""
        if self.schema.target is None or str(target.value) == str(self.schema.target.favourable):
            return "The model already gives the favourable decision."
        return f"The model already gives the requested decision ({target.label})."

    def assemble(self, batch: Batch, solution: BatchSolution, config: SCFEConfig, failures: dict[int, str],
                 alternatives: list[list[Candidate]] | None = None) -> list[Recourse]:
        """One :class:`Recourse` per row of ``batch`` (``solution``, ``failures`` and ``alternatives``
        are by position among ``batch.need``)."""
        need, sol = batch.need, solution
        alt_of = self._alternatives(batch, alternatives) if alternatives is not None else None
        changed, seen, seen_enc, moved = self.outcomes(batch.codes[need], sol.codes, sol.encoded)
        l2 = np.linalg.norm(seen_enc - batch.x[need], axis=1) if len(need) else np.zeros(0)
        lof_rows = np.full(len(need), np.nan)
        lof_rows[sol.found] = self.lof(seen_enc[sol.found], batch.targets[need][sol.found])
        found_rows = np.flatnonzero(sol.found).tolist()
        cf_of = dict(zip(found_rows, self.encoder.records_from_codes(seen[sol.found])))
        acted_of = dict(zip(found_rows, self.acted(sol.codes[sol.found], list(cf_of.values()))))
        position = {int(r): i for i, r in enumerate(need)}
        pred = batch.probs.argmax(1)
        score = self._scores(batch.x)
        cf_score = dict(zip(found_rows, self._scores(seen_enc[sol.found])))
        out: list[Recourse] = []
        for r, row in enumerate(batch.rows):
            decision = self.decision(int(pred[r]), batch.probs[r, pred[r]], score[r])
            target = self.decision(int(batch.targets[r]), batch.probs[r, batch.targets[r]], score[r])
            common = dict(max_changes=config.max_changes)
            if r not in position:
                out.append(Recourse("already_favourable", row, decision, target, message=self.already_message(target),
                                    alternatives=None if alt_of is None else [], **common))
                continue
            i = position[r]
            if not sol.found[i]:
                out.append(Recourse("no_recourse_found", row, decision, target,
                                    message=failures.get(i, "No recourse found within these constraints."),
                                    alternatives=None if alt_of is None else [], **common))
                continue
            acts = actions_for(self.schema, changed[i], row, acted_of[i])
            effects = self._consequences(moved[i], batch.codes[r], sol.codes[i], acted_of[i], cf_of[i])
            metrics = {"l0": int(changed[i].sum()), "l2": float(l2[i]), "cost": float(sol.cost[i]), "lof": float(lof_rows[i])}
            verb = "s lead" if len(acts) != 1 else " leads"
            out.append(Recourse("recourse_found", row, decision, target, cf_of[i],
                                self.decision(int(batch.targets[r]), sol.probability[i], cf_score[i]), acts, metrics,
                                message=f"{len(acts)} change{verb} to the decision '{target.label}'.",
                                alternatives=None if alt_of is None else alt_of[i], consequences=effects,
                                **common))
        return out

    def _alternatives(self, batch: Batch, alternatives: list[list[Candidate]]) -> list[list[Alternative]]:
        """:class:`Alternative` objects per solved row (metrics and LOF computed in one batch)."""
        owner = np.asarray([i for i, a in enumerate(alternatives) for _ in a], dtype=np.int64)
        if owner.size == 0:
            return [[] for _ in alternatives]
        flat = [c for a in alternatives for c in a]
        new = np.stack([c.codes for c in flat])
        enc = np.stack([c.encoded for c in flat])
        orig_rows = batch.need[owner]
        changed, seen, enc, moved = self.outcomes(batch.codes[orig_rows], new, enc)
        l2 = np.linalg.norm(enc - batch.x[orig_rows], axis=1)
        lof = self.lof(enc, batch.targets[orig_rows])
        records = self.encoder.records_from_codes(seen)
        acted = self.acted(new, records)
        out: list[list[Alternative]] = [[] for _ in alternatives]
        scores = self._scores(enc)
        for t, i in enumerate(owner.tolist()):
            r = int(batch.need[i])
            acts = actions_for(self.schema, changed[t], batch.rows[r], acted[t])
            metrics = {"l0": int(changed[t].sum()), "l2": float(l2[t]), "cost": float(flat[t].cost), "lof": float(lof[t])}
            effects = self._consequences(moved[t], batch.codes[r], new[t], acted[t], records[t])
            out[i].append(Alternative(records[t], self.decision(int(batch.targets[r]), flat[t].probability, scores[t]), acts, metrics,
                                      effects))
        return out
