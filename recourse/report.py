"""Human-readable text for a :class:`~recourse.results.Recourse` (the CLI's default output)."""
from __future__ import annotations

from .actions import format_value
from .results import Decision, Recourse
from .schema import FeatureSchema

STATUS_TEXT = {
    "recourse_found": "recourse found",
    "no_recourse_found": "no recourse found within these constraints",
    "already_favourable": "already favourable",
}


def decision_text(d: Decision, schema: FeatureSchema) -> str:
    """'denied (model probability 0.38)', or for a score target 'progression above 140 (predicted 162.3)'."""
    if d.score is not None and schema.score_target is not None:
        return f"{d.label} (predicted {schema.score_target.show(d.score)})"
    return f"{d.label} (model probability {d.probability:.2f})"


def format_recourse(rec: Recourse, schema: FeatureSchema) -> str:
    """Decision, status, actions in plain words, the counterfactual record and its metrics."""
    d = rec.decision
    lines = [
        f"Decision: {decision_text(d, schema)}",
        f"Status:   {STATUS_TEXT[rec.status]}",
    ]
    if rec.message:
        lines.append(f"          {rec.message}")
    if rec.counterfactual is None:
        return "\n".join(lines)
    lines += ["", f"What would change the decision ({len(rec.actions)} of at most {rec.max_changes} changes):"]
    lines += [f"  {i}. {a.text}" for i, a in enumerate(rec.actions, 1)]
    if rec.consequences:
        lines += ["", "What follows from these changes (not actions of yours):"]
        lines += [f"  - {c.text}" for c in rec.consequences]
    cd = rec.counterfactual_decision
    lines += ["", f"New decision: {decision_text(cd, schema)}, verified with the model."]
    if rec.reasons:
        lines += ["", "Principal reasons (each change on its own, strongest first):"]
        lines += [f"  - {r.text}" for r in rec.reasons]
    follows = {c.feature for c in rec.consequences}
    lines += ["", "Counterfactual record (* = changed" + (", ~ = follows from a change):" if follows else "):")]
    changed = {a.feature for a in rec.actions}
    width = max(len(f.title) for f in schema.features)
    for feat in schema.features:
        new = format_value(feat, rec.counterfactual[feat.name], with_unit=True)
        if feat.name in changed or feat.name in follows:
            old = format_value(feat, rec.applicant[feat.name], with_unit=True)
            mark = "*" if feat.name in changed else "~"
            lines.append(f"  {mark} {feat.title:<{width}}  {new}   (was {old})")
        else:
            lines.append(f"    {feat.title:<{width}}  {new}")
    m = rec.metrics
    lof = "n/a" if m.get("lof") != m.get("lof") else f"{m['lof']:.2f}"
    lines += ["", f"Metrics: {m['l0']} feature(s) changed, l2 = {m['l2']:.3f} (scaled encoding), "
              f"cost = {m['cost']:.2f} (in cost-scale units), LOF = {lof} (about 1 = typical of "
              + ("training rows that reach the target)" if schema.score_target is not None else "approved applicants)")]
    if rec.alternatives is not None:
        lines += ["", *format_alternatives(rec, schema)]
    return "\n".join(lines)


def format_alternatives(rec: Recourse, schema: FeatureSchema | None = None) -> list[str]:
    """The alternatives (each verified, different changed features), cheapest first after the answer above."""
    alts = rec.alternatives or []
    div = rec.diversity
    head = (f"Alternatives ({len(alts)} verified, each changing a different set of features"
            + (f"; diversity {div:.2f} = mean pairwise Jaccard distance" if div is not None else "") + "):")
    lines = [head]
    for i, alt in enumerate(alts, 1):
        m = alt.metrics
        tag = " (the answer above)" if i == 1 else ""
        d = alt.counterfactual_decision
        said = (f"predicted {schema.score_target.show(d.score)}" if d.score is not None and schema is not None
                and schema.score_target is not None else f"model probability {d.probability:.2f}")
        lines.append(f"  {chr(64 + i) if i <= 26 else i}. cost {m['cost']:.2f}, {m['l0']} change(s), {said}{tag}")
        lines += [f"     - {a.text}" for a in alt.actions]
        lines += [f"       ({c.text})" for c in alt.consequences]
    return lines
