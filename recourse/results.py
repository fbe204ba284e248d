"""What the engine returns: one :class:`Recourse` per applicant, plain data, JSON-ready."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Status = Literal["recourse_found", "no_recourse_found", "already_favourable"]


def to_jsonable(value: Any) -> Any:
    """Python scalars from numpy scalars (for JSON output); floats rounded to 6 significant digits."""
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < 1e15:
            return value
        return float(f"{value:.6g}") if math.isfinite(value) else None
    return value


@dataclass
class Decision:
    """The model's decision: class value, its display label and the model's probability of it; for
    a score target (:mod:`recourse.scores`) the predicted ``score`` instead (``probability`` None)."""

    label: str
    value: int | str
    probability: float | None
    score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """label, value, probability (and score for a score target)."""
        out = {"label": self.label, "value": self.value, "probability": self.probability}
        if self.score is not None:
            out["score"] = self.score
        return out

    def describe(self, show_score: Any = None) -> str:
        """'denied (probability 0.38)', or for a score 'progression above 140 (predicted 162.30)';
        ``show_score`` formats the score (default: two decimals)."""
        if self.score is not None:
            return f"{self.label} (predicted {show_score(self.score) if show_score else f'{self.score:.2f}'})"
        return f"{self.label} (probability {self.probability:.2f})"


@dataclass
class Action:
    """One feature change, in words."""

    feature: str
    label: str
    from_: Any
    to: Any
    text: str

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable({"feature": self.feature, "label": self.label, "from": self.from_, "to": self.to, "text": self.text})


@dataclass
class Alternative:
    """One verified counterfactual among an applicant's alternatives: record, decision, actions, metrics."""

    counterfactual: dict[str, Any]
    counterfactual_decision: Decision
    actions: list[Action] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    consequences: list[Action] = field(default_factory=list)
    """Features the actions move without being acted on (the schema's structural model)."""

    @property
    def features(self) -> frozenset[str]:
        """The changed features (names)."""
        return frozenset(a.feature for a in self.actions)

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable({"counterfactual_decision": self.counterfactual_decision.to_dict(),
                            "actions": [a.to_dict() for a in self.actions],
                            "consequences": [a.to_dict() for a in self.consequences],
                            "counterfactual": self.counterfactual, "metrics": self.metrics})


@dataclass
class Reason:
    """One principal reason: a feature, its value, the value the recourse needs, its effect alone
    (see :mod:`recourse.reasons`)."""

    feature: str
    label: str
    value: Any
    needed: Any
    score_change: float
    probability_alone: float | None
    text: str
    score_alone: float | None = None
    """For a score target: the predicted score with only this change (``probability_alone`` None)."""

    def to_dict(self) -> dict[str, Any]:
        out = {"feature": self.feature, "label": self.label, "value": self.value, "needed": self.needed,
               "score_change": self.score_change, "probability_alone": self.probability_alone, "text": self.text}
        if self.score_alone is not None:
            out["score_alone"] = self.score_alone
        return to_jsonable(out)


def jaccard_diversity(sets: list[frozenset[str]] | list[set[str]]) -> float | None:
    r"""Mean pairwise Jaccard distance :math:`\frac{2}{K(K-1)}\sum_{i<j} 1 - |S_i \cap S_j| / |S_i \cup S_j|`
    between changed-feature sets (None for fewer than two sets; two empty sets are at distance 0)."""
    if len(sets) < 2:
        return None
    total, pairs = 0.0, 0
    for i in range(len(sets)):
        for j in range(i + 1, len(sets)):
            union = len(sets[i] | sets[j])
            total += 1.0 - (len(sets[i] & sets[j]) / union if union else 1.0)
            pairs += 1
    return total / pairs


@dataclass
class Recourse:
    """The answer for one applicant."""

    status: Status
    applicant: dict[str, Any]
    decision: Decision
    target: Decision | None = None
    counterfactual: dict[str, Any] | None = None
    counterfactual_decision: Decision | None = None
    actions: list[Action] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    message: str = ""
    max_changes: int | None = None
    alternatives: list[Alternative] | None = None
    """With ``explain(alternatives=K)``: up to K verified counterfactuals with different changed-feature
    sets, the ordinary answer first, then by cost (empty when none); None when not requested."""
    reasons: list[Reason] = field(default_factory=list)
    """The principal reasons of the decision: the changed features ranked by their effect alone
    (empty without a counterfactual)."""
    consequences: list[Action] = field(default_factory=list)
    """Features the actions move without being acted on (the schema's structural model, e.g. years
    at the present residence after waiting); the counterfactual shows them moved."""

    @property
    def found(self) -> bool:
        return self.status == "recourse_found"

    @property
    def diversity(self) -> float | None:
        """Mean pairwise Jaccard distance between the alternatives' changed-feature sets (None: < 2)."""
        return jaccard_diversity([a.features for a in self.alternatives or []])

    def summary(self) -> dict[str, Any]:
        """One flat row: status, decision and probability, the new decision's probability, the
        changed features, the actions in words, ℓ0 and cost (see :func:`answers_frame`); for a score
        target also ``score`` and ``new_score``."""
        return {
            "status": self.status,
            "decision": self.decision.label,
            "probability": self.decision.probability,
            "new_decision": self.counterfactual_decision.label if self.counterfactual_decision else None,
            "new_probability": self.counterfactual_decision.probability if self.counterfactual_decision else None,
            "changed": ", ".join(a.feature for a in self.actions),
            "actions": "; ".join(a.text for a in self.actions),
            "l0": self.metrics.get("l0") if self.counterfactual is not None else None,
            "cost": self.metrics.get("cost") if self.counterfactual is not None else None,
            "message": self.message,
        } | ({"score": self.decision.score,
              "new_score": self.counterfactual_decision.score if self.counterfactual_decision else None}
             if self.decision.score is not None else {})

    def _repr_html_(self) -> str:
        """A notebook shows an answer as a small table: the decision, each action, the new decision."""
        from html import escape

        rows = [("decision", self.decision.describe()),
                ("status", self.message or self.status)]
        rows += [(f"action {i}", a.text) for i, a in enumerate(self.actions, 1)]
        rows += [("follows", a.text) for a in self.consequences]
        if self.counterfactual_decision is not None:
            rows.append(("new decision", f"{self.counterfactual_decision.describe()}, verified"))
        if self.counterfactual is not None and self.metrics:
            rows.append(("changes, cost", f"{self.metrics.get('l0', 0):.0f}, {self.metrics.get('cost', 0):.2f}"))
        body = "".join(f"<tr><th style='text-align:left'>{escape(k)}</th><td style='text-align:left'>{escape(str(v))}</td></tr>"
                       for k, v in rows)
        return f"<table class='recourse-answer'>{body}</table>"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "status": self.status,
            "message": self.message,
            "decision": self.decision.to_dict(),
            "max_changes": self.max_changes,
        }
        if self.target is not None:
            out["target"] = {"label": self.target.label, "value": self.target.value}
        if self.counterfactual is not None:
            out["counterfactual_decision"] = self.counterfactual_decision.to_dict()
            out["actions"] = [a.to_dict() for a in self.actions]
            out["consequences"] = [a.to_dict() for a in self.consequences]
            out["counterfactual"] = self.counterfactual
            out["metrics"] = self.metrics
        else:
            out["actions"] = []
            out["consequences"] = []
        out["applicant"] = self.applicant
        if self.alternatives is not None:  # only when requested: the JSON is otherwise unchanged
            out["alternatives"] = [a.to_dict() for a in self.alternatives]
            out["diversity"] = self.diversity
        out["reasons"] = [r.to_dict() for r in self.reasons]
        return to_jsonable(out)


def answers_frame(answers: list["Recourse"]) -> "Any":
    """A batch of answers as a pandas DataFrame, one row per applicant (:meth:`Recourse.summary`):
    status, decision, probability, new_decision, new_probability, changed, actions, l0, cost, message
    (and score, new_score for a score target)."""
    import pandas as pd

    columns = ["status", "decision", "probability", "new_decision", "new_probability", "changed", "actions", "l0", "cost", "message"]
    frame = pd.DataFrame([a.summary() for a in answers])
    if any(a.decision.score is not None for a in answers):  # a score target: the scores beside the decisions
        columns[3:3] = ["score"]
        columns[6:6] = ["new_score"]
    return frame.reindex(columns=columns)
