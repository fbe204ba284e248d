"""Promises across model versions: do the answers given under one model still hold under another?

Every recourse answer is a promise ("change these things and you will be approved").  When a new
bundle replaces the old one, :func:`check_promises` re-verifies each stored counterfactual with
the new model: a promise is *kept* when the new model puts the counterfactual in the promised
class, with at least the probability the answer was given under (its ``min_probability`` when
one was asked, else a plain decision); *broken* otherwise; *uncheckable* when the stored record
no longer fits the new bundle's schema (a renamed feature, a removed level).  Reported overall,
per group of an applicant attribute, and promise by promise.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .errors import RecordValidationError
from .results import to_jsonable


@dataclass(frozen=True)
class Promise:
    """One stored answer: its id, the applicant, the counterfactual, the promised class and level."""

    id: str
    applicant: dict[str, Any]
    counterfactual: dict[str, Any]
    target: Any
    min_probability: float | None = None
    created: str | None = None


@dataclass
class PromiseReport:
    """The outcome of :func:`check_promises` (``to_dict`` for JSON)."""

    total: int
    kept: int
    broken: int
    uncheckable: int
    broken_ids: list[str] = field(default_factory=list)
    uncheckable_ids: list[str] = field(default_factory=list)
    details: list[dict[str, Any]] = field(default_factory=list)
    groups: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)

    @property
    def broken_share(self) -> float:
        checked = self.kept + self.broken
        return self.broken / checked if checked else 0.0

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable({"total": self.total, "kept": self.kept, "broken": self.broken, "uncheckable": self.uncheckable,
                "broken_share": self.broken_share, "broken_ids": self.broken_ids,
                "uncheckable_ids": self.uncheckable_ids, "groups": self.groups, "details": self.details})


def check_promises(engine: Any, promises: Sequence[Promise], group_by: Sequence[str] = ()) -> PromiseReport:
    """Re-verify every promise with ``engine``'s model (batched: one model call for all of them).

    ``group_by``: applicant attributes to break the counts down by (``groups[attribute][value]`` =
    {total, kept, broken}).
    """
    report = PromiseReport(total=len(promises), kept=0, broken=0, uncheckable=0)
    checkable, records = [], []
    for p in promises:
        try:
            record = engine.schema.validate_record(p.counterfactual)
            target = engine.target_indices(p.target, 1)[0]
        except RecordValidationError as exc:
            report.uncheckable += 1
            report.uncheckable_ids.append(p.id)
            report.details.append({"id": p.id, "status": "uncheckable", "reason": str(exc.errors[0])})
            continue
        checkable.append((p, int(target)))
        records.append(record)
    if checkable:
        probs = engine.predict_proba(engine.encode(records))
        targets = np.array([t for _, t in checkable])
        p_target = probs[np.arange(len(targets)), targets]
        decided = probs.argmax(1) == targets
        for (promise, _), prob, ok_class in zip(checkable, p_target, decided):
            level = promise.min_probability
            kept = bool(ok_class and (level is None or prob >= level - 1e-9))
            report.kept += kept
            report.broken += not kept
            if not kept:
                report.broken_ids.append(promise.id)
            report.details.append({"id": promise.id, "status": "kept" if kept else "broken",
                                   "probability": float(prob), "min_probability": level})
    status = {d["id"]: d["status"] for d in report.details}
    for attribute in group_by:
        counts: dict[str, dict[str, int]] = defaultdict(lambda: {"total": 0, "kept": 0, "broken": 0, "uncheckable": 0})
        for p in promises:
            value = str(p.applicant.get(attribute, "(missing)"))
            counts[value]["total"] += 1
            counts[value][status[p.id]] += 1
        report.groups[attribute] = dict(counts)
    return report
