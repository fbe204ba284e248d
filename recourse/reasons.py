r"""Principal reasons for an unfavourable decision, read off a verified counterfactual.

For an applicant :math:`x` with counterfactual :math:`y` and target class :math:`t`, the reasons
are the features :math:`j` the counterfactual changes.  Each is scored by how far its change
*alone* moves the model toward :math:`t`:

.. math::  \Delta_j = M_t(x \oplus_j y) - M_t(x), \qquad
           M_t(z) = Z_t(z) - \max_{k \ne t} Z_k(z),

where :math:`x \oplus_j y` is :math:`x` with feature :math:`j` set to its counterfactual value and
:math:`Z` the model's logits.  Reasons are ranked by :math:`\Delta_j` (largest first) and carry
the target-class probability with that single change (and its consequences, when the schema's
structural model links it to other features).  All single-change rows of a batch are
scored in one model call.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .actions import format_value
from .results import Reason, Recourse


def principal_reasons(engine: Any, results: Sequence[Recourse]) -> list[list[Reason]]:
    """Ranked reasons for each result (empty for results without a counterfactual).

    ``engine``: anything with ``encoder``, ``schema``, ``classes``, ``margin(encoded, targets)`` and
    ``predict_proba(encoded)`` (the :class:`~recourse.scfe.RecourseEngine` that produced ``results``).
    """
    found = [i for i, r in enumerate(results) if r.counterfactual is not None and r.target is not None and r.actions]
    out: list[list[Reason]] = [[] for _ in results]
    if not found:
        return out
    encoder, schema = engine.encoder, engine.schema
    position = {name: j for j, name in enumerate(schema.names)}
    base = encoder.to_codes([results[i].applicant for i in found])
    cf = encoder.to_codes([{**results[i].applicant, **{a.feature: a.to for a in results[i].actions}}
                           for i in found])  # the interventions (the counterfactual, without consequences)
    counts = np.array([len(results[i].actions) for i in found])
    owner = np.repeat(np.arange(len(found)), counts)
    feature = np.array([position[a.feature] for i in found for a in results[i].actions])
    single = base[owner].copy()
    single[np.arange(len(owner)), feature] = cf[owner, feature]
    class_index = {str(c): k for k, c in enumerate(engine.classes)}
    targets = np.array([class_index[str(results[i].target.value)] for i in found], dtype=np.int64)
    base_margin = engine.margin(encoder.encode_codes(base), targets)[owner]
    single_enc = encoder.encode_codes(encoder.action_set.consequences.apply(base[owner], single))  # with its consequences
    delta = engine.margin(single_enc, targets[owner]) - base_margin
    scored = getattr(engine, "score", None) is not None  # a score target: the score, not a probability
    prob = engine.scores(single_enc) if scored else engine.predict_proba(single_enc)[np.arange(len(owner)), targets[owner]]
    k = 0
    for i in found:
        res = results[i]
        for action in res.actions:
            feat = schema.feature(action.feature)
            text = (f"{feat.title}: {format_value(feat, action.from_, True)} "
                    f"(the recourse needs {format_value(feat, action.to, True)}); on its own this change ")
            if scored:
                show = schema.target.show
                name = schema.target.label or schema.target.name.replace("_", " ")
                text += f"moves the predicted {name} from {show(res.decision.score)} to {show(prob[k])}."
                reason = Reason(action.feature, feat.title, action.from_, action.to, float(delta[k]), None, text,
                                score_alone=float(prob[k]))
            else:
                text += (f"{'raises' if prob[k] >= res.target.probability else 'lowers'} the probability of "
                         f"'{res.target.label}' from {res.target.probability:.0%} to {prob[k]:.0%}.")
                reason = Reason(action.feature, feat.title, action.from_, action.to, float(delta[k]), float(prob[k]), text)
            reason.text = reason.text[:1].upper() + reason.text[1:]
            out[i].append(reason)
            k += 1
        out[i].sort(key=lambda r: -r.score_change)
    return out
