"""What the engine returns: one :class:`Recourse` per applicant, plain data, JSON-ready."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
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
    """The model's decision: class value, its display label and the model's probability of it."""

    label: str
    value: int | str
    probability: float


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

    @property
    def found(self) -> bool:
        return self.status == "recourse_found"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "status": self.status,
            "message": self.message,
            "decision": asdict(self.decision),
            "max_changes": self.max_changes,
        }
        if self.target is not None:
            out["target"] = {"label": self.target.label, "value": self.target.value}
        if self.counterfactual is not None:
            out["counterfactual_decision"] = asdict(self.counterfactual_decision)
            out["actions"] = [a.to_dict() for a in self.actions]
            out["counterfactual"] = self.counterfactual
            out["metrics"] = self.metrics
        else:
            out["actions"] = []
        out["applicant"] = self.applicant
        return to_jsonable(out)
