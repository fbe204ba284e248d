"""The one options policy: request options checked once, the same way for every entry point.

Python (:meth:`RecourseEngine.explain`), the command line, the HTTP service and the population
audit all build a :class:`RequestOptions` and resolve it against an engine with
:meth:`RequestOptions.resolve`; the rules live here and nowhere else:

* ``max_changes``: a whole number ≥ 1 (not a boolean, not a fraction).  More changes than the
  schema has features is no constraint at all: the value is clipped to the number of features
  and the answer's ``max_changes`` reports the value used.
* ``density``: one of the engine's fitted densities, ``"none"`` (or Python ``None``/``False``)
  for no plausibility term; unset: the engine's default.
* ``alternatives``: a whole number from 1 to :data:`MAX_ALTERNATIVES`.
* ``cost_weights``: {feature: ω} with known feature names and ω within
  :data:`~recourse.schema.COST_WEIGHT_RANGE`; they override the schema's ``cost_weight``.
* ``target``: checked against the model's classes by the engine (one class, or one per row); for
  a score target (:mod:`recourse.scores`) also ``{"at_least": v}`` or ``{"at_most": v}``, another
  threshold for this request.
* ``min_probability``: the confidence every answer must reach, a number in (0, 1) (default:
  the bundle's); the model's probability of the target class on the counterfactual is at least
  this.
* ``robust``: true or false; true needs a bundle with a committee of refits (``family``) and
  verifies every answer with each member (:mod:`recourse.committee`); default: false.
* ``fixed``: features this applicant cannot change (known names); they are pinned like the
  schema's immutables.
* ``limits``: {feature: [low, high]}, the values this applicant can reach for a numeric feature
  (numbers) or an ordinal one (level names); ``null`` for an open end; within the schema's range.
  The schema's rules still hold; an unchanged value outside the limits stays as it is.

Errors are :class:`~recourse.errors.OptionsError` listing every bad field by its name
(``max_changes``, ``cost_weights.age``); shells translate names into their own vocabulary.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import FieldError, OptionsError
from .schema import COST_WEIGHT_RANGE, show_value

MAX_ALTERNATIVES = 10
"""Most alternatives one request may ask for (each costs one more batched search round)."""
NO_DENSITY = "none"
"""The density name that switches the plausibility term off."""


def _plain(value: Any) -> Any:
    """numpy scalars as Python scalars (a numpy integer is a whole number like any other)."""
    return value.item() if isinstance(value, np.generic) else value


def whole_number(value: Any, field: str, low: int = 1, high: int | None = None) -> int:
    """``value`` as an int if it is a whole number in [low, high] (booleans and fractions refused)."""
    value = _plain(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        span = f"≥ {low}" if high is None else f"from {low} to {high}"
        raise OptionsError([FieldError(field, f"must be a whole number {span}, got {show_value(value)}")])
    return value


class RequestOptions(BaseModel):
    """Per-request options (unset fields: the engine's defaults); see the module docstring for the rules."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    max_changes: int | None = Field(default=None, description="Most features the recourse may change; more than "
                                    "the number of features means no limit (clipped; default: the bundle's).")
    density: str | None = Field(default=None, description="Plausibility term: one of the bundle's densities "
                                "(kde, gmm, knn) or 'none' (default: the bundle's).")
    target: Any = Field(default=None, description="Class to reach (default: the favourable class); for a bundle "
                        "that decides a score, another threshold: {\"at_least\": number} or {\"at_most\": number}.")
    alternatives: int | None = Field(default=None, description="Also return up to K verified alternatives using "
                                     f"different features (1 to {MAX_ALTERNATIVES}).")
    min_probability: float | None = Field(default=None, description="The least probability of the target class "
                                          "every answer must have (0 to 1, exclusive; default: the bundle's).")
    robust: bool | None = Field(default=None, description="Verify every answer with the model and each of its stored "
                                "refits, so that it survives retraining (needs a bundle built with a family; "
                                "default: false).")
    fixed: list[str] | None = Field(default=None, description="Features this applicant cannot change, e.g. "
                                    "[\"duration\"] (pinned like the schema's immutables).")
    limits: dict[str, tuple[Any, Any]] | None = Field(
        default=None, description="Per feature the lowest and highest value the applicant can reach: numbers for a "
        "numeric feature, level names for an ordinal one, null for an open end, e.g. {\"credit_amount\": [1000, null]}.")
    cost_weights: dict[str, float] | None = Field(default=None, description="Per-feature cost weights "
                                                  f"({COST_WEIGHT_RANGE[0]:g} to {COST_WEIGHT_RANGE[1]:g}), e.g. "
                                                  "{\"present_employment\": 5}: changes of that feature count as more expensive.")

    @field_validator("max_changes", mode="before")
    @classmethod
    def _max_changes(cls, value: Any) -> int | None:
        return None if value is None else whole_number(value, "max_changes")

    @field_validator("alternatives", mode="before")
    @classmethod
    def _alternatives(cls, value: Any) -> int | None:
        return None if value is None else whole_number(value, "alternatives", 1, MAX_ALTERNATIVES)

    @field_validator("density", mode="before")
    @classmethod
    def _density(cls, value: Any) -> str | None:
        if value is None or value is True:
            return None
        if value is False:
            return NO_DENSITY
        if not isinstance(value, str):
            raise OptionsError([FieldError("density", f"expected a density name, got {show_value(_plain(value))}")])
        return value

    @field_validator("min_probability", mode="before")
    @classmethod
    def _min_probability(cls, value: Any) -> float | None:
        value = _plain(value)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
            raise OptionsError([FieldError("min_probability", f"must be a number between 0 and 1 (exclusive), "
                                                              f"got {show_value(value)}")])
        return float(value)

    @field_validator("robust", mode="before")
    @classmethod
    def _robust(cls, value: Any) -> bool | None:
        value = _plain(value)
        if value is None or isinstance(value, bool):
            return value
        raise OptionsError([FieldError("robust", f"must be true or false, got {show_value(value)}")])

    @field_validator("fixed", mode="before")
    @classmethod
    def _fixed(cls, value: Any) -> list[str] | None:
        if value is None:
            return None
        if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise OptionsError([FieldError("fixed", f"expected a list of feature names, got {show_value(_plain(value))}")])
        return list(dict.fromkeys(value))

    @field_validator("limits", mode="before")
    @classmethod
    def _limits(cls, value: Any) -> dict[str, tuple[Any, Any]] | None:
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise OptionsError([FieldError("limits", "expected an object of feature: [low, high]")])
        out, errors = {}, []
        for name, pair in value.items():
            ends = list(pair) if isinstance(pair, (list, tuple)) else None
            if ends is None or len(ends) != 2:
                errors.append(FieldError(f"limits.{name}", f"expected [low, high], got {show_value(_plain(pair))}"))
                continue
            ends = [_plain(e) for e in ends]
            bad = [e for e in ends if e is not None and (isinstance(e, bool) or not isinstance(e, (int, float, str))
                                                         or (isinstance(e, float) and not math.isfinite(e)))]
            if bad:
                errors.append(FieldError(f"limits.{name}", f"each end must be a number, a level name or null, "
                                                           f"got {show_value(bad[0])}"))
                continue
            out[str(name)] = (ends[0], ends[1])
        if errors:
            raise OptionsError(errors)
        return out

    @field_validator("cost_weights", mode="before")
    @classmethod
    def _cost_weights(cls, value: Any) -> dict[str, float] | None:
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise OptionsError([FieldError("cost_weights", "expected an object of feature: weight")])
        lo, hi = COST_WEIGHT_RANGE
        out, errors = {}, []
        for name, w in value.items():
            w = _plain(w)
            number = float(w) if isinstance(w, (int, float)) and not isinstance(w, bool) else math.nan
            if not (math.isfinite(number) and lo <= number <= hi):
                errors.append(FieldError(f"cost_weights.{name}", f"must be a number from {lo:g} to {hi:g}, got {show_value(w)}"))
            out[str(name)] = number
        if errors:
            raise OptionsError(errors)
        return out

    def __init__(self, **values: Any) -> None:
        """Checked options from keyword values; :class:`OptionsError` naming every bad field."""
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise OptionsError(_field_errors(exc)) from None

    def resolve(self, engine: Any) -> "ResolvedOptions":
        """The options an engine runs with: its configuration with these overrides, checked against it.

        ``engine`` needs ``schema``, ``densities`` (fitted names) and ``config``; raises
        :class:`OptionsError` for an unfitted density or an unknown cost-weight feature.
        """
        errors: list[FieldError] = []
        config = engine.config
        n_features = len(engine.schema.features)
        m = config.max_changes if self.max_changes is None else self.max_changes
        density = config.density
        if self.density is not None:
            density = None if self.density == NO_DENSITY else self.density
            if density is not None and density not in engine.densities:
                errors.append(FieldError("density", f"unknown density {show_value(density)}; available: "
                                                    f"{', '.join(sorted(engine.densities) + [NO_DENSITY])}"))
        weights = None
        if self.cost_weights:
            names = engine.schema.names
            unknown = [FieldError(f"cost_weights.{k}", f"unknown feature {show_value(k)}") for k in self.cost_weights if k not in names]
            errors += unknown
            if not unknown:
                base = np.array([f.cost_weight for f in engine.schema.features], dtype=float)
                for k, w in self.cost_weights.items():
                    base[names.index(k)] = w
                weights = tuple(base.tolist())
        actions, limit_errors = self._actions(engine.encoder.action_set, engine.schema)
        errors += limit_errors
        if self.min_probability is not None and getattr(engine, "score", None) is not None:
            errors.append(FieldError("min_probability", "this bundle decides a score, which has no probability; ask "
                                                        "for a stricter threshold instead, e.g. target {\"at_least\": number}"))
        if self.robust and not engine.family:
            errors.append(FieldError("robust", "this bundle has no committee of refits to verify with; build the "
                                               "bundle with a family of refits"))
        if errors:
            raise OptionsError(errors)
        changes = {"max_changes": min(int(m), n_features), "density": density}
        if self.min_probability is not None:
            changes["min_probability"] = self.min_probability
        if self.robust is not None:
            changes["robust"] = self.robust
        if weights is not None:
            changes["cost_weights"] = weights
        return ResolvedOptions(config=config.with_(**changes), target=self.target, alternatives=self.alternatives,
                               actions=actions)

    def _actions(self, base: Any, schema: Any) -> tuple[Any, list[FieldError]]:
        """The call's action set: the schema's with ``fixed`` and ``limits`` applied (None: none given)."""
        if not self.fixed and not self.limits:
            return None, []
        names, errors = schema.names, []
        fixed = np.zeros(len(names), dtype=bool)
        for k, name in enumerate(self.fixed or []):
            if name not in names:
                errors.append(FieldError(f"fixed.{k}", f"unknown feature {show_value(name)}"))
            else:
                fixed[names.index(name)] = True
        low, high = np.full(len(names), np.nan), np.full(len(names), np.nan)
        for name, ends in (self.limits or {}).items():
            where = f"limits.{name}"
            if name not in names:
                errors.append(FieldError(where, f"unknown feature {show_value(name)}"))
                continue
            j = names.index(name)
            feat = schema.features[j]
            if feat.kind in ("categorical", "binary"):
                errors.append(FieldError(where, f"limits apply to numeric and ordinal features; "
                                                f"'{name}' is {feat.kind} (keep it with `fixed`)"))
                continue
            codes = []
            for end in ends:
                if end is None:
                    codes.append(np.nan)
                elif feat.kind == "ordinal":
                    if end not in feat.level_names:
                        errors.append(FieldError(where, f"unknown level {show_value(end)}; levels: "
                                                        f"{', '.join(map(repr, feat.level_names))}"))
                        break
                    codes.append(float(feat.level_names.index(end)))
                elif isinstance(end, str):
                    errors.append(FieldError(where, f"expected numbers for a numeric feature, got {show_value(end)}"))
                    break
                else:
                    codes.append(float(end))
            if len(codes) != 2:
                continue
            if not np.isnan(codes).any() and codes[0] > codes[1]:
                errors.append(FieldError(where, f"low must not exceed high, got {list(ends)}"))
                continue
            low[j], high[j] = codes
        if errors:
            return None, errors
        return base.restricted(fixed=fixed, low=low, high=high), []


@dataclass(frozen=True)
class ResolvedOptions:
    """Request options resolved against an engine: the solver configuration of the call, the target
    (None: the favourable class) and the number of alternatives (None: not requested)."""

    config: Any
    target: Any = None
    alternatives: int | None = None
    actions: Any = None
    """The call's :class:`~recourse.actionset.ActionSet` when the request set personal limits (else None)."""


def _field_errors(exc: ValidationError) -> list[FieldError]:
    """Field errors from pydantic's, our own :class:`OptionsError` inside a validator kept as it is."""
    out: list[FieldError] = []
    for e in exc.errors():
        inner = (e.get("ctx") or {}).get("error")
        if isinstance(inner, OptionsError):
            out += inner.errors
            continue
        where = ".".join(str(p) for p in e["loc"]) or "options"
        message = "unknown option" if e["type"] == "extra_forbidden" else e["msg"]
        out.append(FieldError(where, message))
    return out
