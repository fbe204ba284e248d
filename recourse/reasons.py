r"""Principal reasons for an unfavourable decision, read off a verified counterfactual.

For an applicant :math:`x` with counterfactual :math:`y` and target class :math:`t`, the reasons
are the features :math:`j` the counterfactual changes.  Each is scored by how far its change
*alone* moves the model toward :math:`t`:

.. math::  \Delta_j = M_t(x \oplus_j y) - M_t(x), \qquad
           M_t(z) = Z_t(z) - \max_{k \ne t} Z_k(z),

where :math:`x \oplus_j y` is :math:`x` with feature :math:`j` set to its counterfactual value and
:math:`Z` the model's logits.  Reasons are ranked by :math:`\Delta_j` (largest first) and carry
the target-class probability with that single change.  All single-change rows of a batch are
scored in one model call.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .actions import format_value
from .results import Recourse, to_jsonable


@dataclass
class Reason:
    """One principal reason: a feature, its value, the value the recourse needs, its effect alone."""

    feature: str
    label: str
    value: Any
    needed: Any
    score_change: float
    probability_alone: float
    text: str

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable({
            "feature": self.feature, "label": self.label, "value": self.value, "needed": self.needed,
            "score_change": self.score_change, "probability_alone": self.probability_alone, "text": self.text,
        })


def principal_reasons(engine: Any, results: Sequence[Recourse]) -> list[list[Reason]]:
    """Ranked reasons for each result (empty for results without a counterfactual).

    ``engine`` is the :class:`~recourse.scfe.RecourseEngine` that produced ``results``.
    """
    rows: list[dict[str, Any]] = []
    owners: list[tuple[int, int]] = []
    bases: list[dict[str, Any]] = []
    targets: list[int] = []
    class_index = {str(c): i for i, c in enumerate(engine.classes)}
    for i, res in enumerate(results):
        if res.counterfactual is None or res.target is None:
            continue
        bases.append(res.applicant)
        targets.append(class_index[str(res.target.value)])
        for a, action in enumerate(res.actions):
            rows.append({**res.applicant, action.feature: res.counterfactual[action.feature]})
            owners.append((i, a))
    out: list[list[Reason]] = [[] for _ in results]
    if not rows:
        return out
    names = engine.schema.names
    encoder = engine.encoder
    base_enc = encoder.encode(pd.DataFrame(bases, columns=names))
    single_enc = encoder.encode(pd.DataFrame(rows, columns=names))
    base_of = np.repeat(np.arange(len(bases)), [len(results[i].actions) for i in _found(results)])
    target_rows = np.asarray(targets, dtype=np.int64)[base_of]
    base_margin = engine.margin(base_enc, np.asarray(targets, dtype=np.int64))[base_of]
    single_margin = engine.margin(single_enc, target_rows)
    single_prob = engine.predict_proba(single_enc)[np.arange(len(rows)), target_rows]
    delta = single_margin - base_margin
    for k, (i, a) in enumerate(owners):
        res = results[i]
        action = res.actions[a]
        feat = engine.schema.feature(action.feature)
        text = (f"{feat.title}: {format_value(feat, action.from_, True)} "
                f"(the recourse needs {format_value(feat, action.to, True)}); on its own this change "
                f"{'raises' if single_prob[k] >= res.target.probability else 'lowers'} the probability of "
                f"'{res.target.label}' from {res.target.probability:.0%} to {single_prob[k]:.0%}.")
        out[i].append(Reason(action.feature, feat.title, action.from_, action.to, float(delta[k]), float(single_prob[k]), text))
    for reasons in out:
        reasons.sort(key=lambda r: -r.score_change)
    return out


def _found(results: Sequence[Recourse]) -> list[int]:
    return [i for i, r in enumerate(results) if r.counterfactual is not None and r.target is not None]
