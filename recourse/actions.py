"""Plain-words actions: the changes between an applicant and a counterfactual, with units.

Phrasing, by feature kind (placeholders ``{label}``, ``{from}``, ``{to}``, ``{unit}`` and, for
numbers, ``{delta}`` (the size of the change with its unit, e.g. "Wait {delta}" → "Wait 2 years"); a schema
may override any of them in ``phrases``):

* numeric: "Increase the loan duration from 12 to 24 months";
* ordinal: a level's own ``text`` when moving to it from a level that has none
  ("Open a savings account with 100 to 500 DM"), else "Raise savings from … to …";
* categorical: "Change loan purpose from 'new car' to 'used car'";
* binary: ``phrases.on`` / ``phrases.off``, else "Change registered telephone from no to yes".
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .results import Action
from .schema import Feature, FeatureSchema

DEFAULTS = {
    "increase": "Increase the {label} from {from} to {to}",
    "decrease": "Decrease the {label} from {from} to {to}",
    "change": "Change the {label} from '{from}' to '{to}'",
    "ordinal_increase": "Raise the {label} from '{from}' to '{to}'",
    "ordinal_decrease": "Lower the {label} from '{from}' to '{to}'",
}


def decimals(feat: Feature, number: float) -> int:
    """Decimals a person would write: the feature's ``precision``, else its ``step``'s, else two for
    amounts of 1 or more and three significant digits below."""
    if feat.precision is not None:
        return feat.precision
    if feat.step is not None:
        text = f"{feat.step:.12f}".rstrip("0")
        return len(text.split(".")[1]) if "." in text else 0
    magnitude = abs(number)
    return 2 if magnitude >= 1 or magnitude == 0 else min(12, 2 - math.floor(math.log10(magnitude)))


def format_value(feat: Feature, value: Any, with_unit: bool = False) -> str:
    """A value as a person reads it: thousands separators, the feature's precision, yes/no."""
    if feat.kind == "binary":
        names = feat.level_names or ["no", "yes"]
        return names[int(bool(value))]
    if feat.is_numeric:
        number = float(value)
        if feat.kind == "integer" or number.is_integer():
            text = f"{int(round(number)):,}"
        else:
            text = f"{number:,.{decimals(feat, number)}f}".rstrip("0").rstrip(".")
        return f"{text} {unit_for(feat, number)}" if with_unit and feat.unit else text
    return str(value)


def unit_for(feat: Feature, number: float) -> str:
    """The feature's unit, in the singular for exactly 1 of a plain plural unit ("1 year", "1 month")."""
    unit = feat.unit or ""
    if abs(number) == 1 and unit.endswith("s") and unit.isalpha() and unit.islower():
        return unit[:-1]
    return unit


def describe(feat: Feature, before: Any, after: Any) -> str:
    """One sentence for the change of ``feat`` from ``before`` to ``after``."""
    phrases = feat.phrases or {}
    fields = {"label": feat.title, "unit": feat.unit or "", "from": format_value(feat, before), "to": format_value(feat, after),
              "delta": format_value(feat, abs(float(after) - float(before)), True) if feat.is_numeric else ""}
    if feat.kind == "binary":
        key = "on" if bool(after) else "off"
        template = phrases.get(key, phrases.get("change", DEFAULTS["change"]))
    elif feat.kind == "categorical":
        template = phrases.get("change", DEFAULTS["change"])
    elif feat.kind == "ordinal":
        names = feat.level_names
        i, j = names.index(before), names.index(after)
        target = feat.levels[j]
        if target.text and not feat.levels[i].text:
            return target.text
        key = "increase" if j > i else "decrease"
        template = phrases.get(key, DEFAULTS[f"ordinal_{key}"])
    else:
        key = "increase" if float(after) > float(before) else "decrease"
        template = phrases.get(key, DEFAULTS[key])
        if "{unit}" not in template and "{delta}" not in template and feat.unit:
            template += " {unit}"
    text = template.replace("{from}", "{from_}").format(from_=fields["from"], **{k: v for k, v in fields.items() if k != "from"})
    return text[:1].upper() + text[1:]


def actions_for(schema: FeatureSchema, changed: np.ndarray, applicant: dict[str, Any], counterfactual: dict[str, Any]) -> list[Action]:
    """Actions for the features flagged in ``changed`` (F,), in schema order."""
    return [
        Action(f.name, f.title, applicant[f.name], counterfactual[f.name], describe(f, applicant[f.name], counterfactual[f.name]))
        for f, moved in zip(schema.features, changed)
        if moved
    ]


def consequences_for(schema: FeatureSchema, moved: np.ndarray, applicant: dict[str, Any],
                     counterfactual: dict[str, Any], causes: dict[int, list[int]]) -> list[Action]:
    """The features the actions move (``moved`` (F,)), in schema order, from their value after the
    actions (``applicant``: the applicant's, or the one an action sets) to the counterfactual's:
    "Years at present residence becomes 4 years (now 2 years): it follows from the change of age";
    ``causes``: per moved feature index, the features whose change moves it."""
    out = []
    for j, (f, flag) in enumerate(zip(schema.features, moved)):
        if not flag:
            continue
        before, after = applicant[f.name], counterfactual[f.name]
        why = ", ".join(schema.features[c].title for c in causes.get(j, []))
        text = (f"{f.title} becomes {format_value(f, after, True)} (now {format_value(f, before, True)})"
                + (f": it follows from the change of {why}" if why else ""))
        out.append(Action(f.name, f.title, before, after, text[:1].upper() + text[1:]))
    return out
