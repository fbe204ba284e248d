"""Feature schema: what each feature is, what may change, and how records are validated.

A schema is plain JSON (one file per data set under ``datasets/``) read into pydantic models.
Feature kinds:

* ``continuous`` – a real number in ``range``; optional ``precision`` (decimals kept).
* ``integer``    – a whole number in ``range``.
* ``binary``     – ``true``/``false`` (or 1/0).
* ``categorical``– one of ``levels`` (unordered; one-hot encoded; counts as one feature).
* ``ordinal``    – one of ``levels`` (ordered, lowest first).

Actionability per feature: ``immutable`` (a protected or fixed attribute), ``actionable`` (false:
a person cannot act on it), ``transitions`` (categorical / ordinal: the allowed moves between
levels), ``direction`` (``any``/``increase``/``decrease``),
``max_change`` (raw units; levels for ordinals), ``step`` (numeric: changed values land on its
multiples), ``min_change`` (the smallest change worth advising) and ``cost_scale`` (the size of a change that
costs 1; default from data: the median absolute deviation, see :mod:`recourse.encoding`) and
``cost_weight`` (default 1; a change of this feature costs ``cost_weight`` × |Δ| / ``cost_scale``,
so 5 makes it five times as expensive; per request weights override it, see
:meth:`recourse.scfe.RecourseEngine.explain`).

Consequences (schema level, ``consequences``): the additive structural model of how an action on
one feature moves others (``{"cause": "age", "effect": "present_residence_since", "rate": 1}``:
waiting a year adds a year at the present residence); see :mod:`recourse.consequences`.

Numbers are bounded so that the solver's arithmetic stays finite: range ends within
±:data:`MAX_ABS_VALUE`, cost scales and maximum changes within [1e-12, :data:`MAX_ABS_VALUE`],
cost weights within :data:`COST_WEIGHT_RANGE`.  Error messages echo at most
:data:`MAX_ECHO` characters of an input value and list the known features once per validation.
"""
from __future__ import annotations

import json
import math
import operator
import sys
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn, Union

from pydantic import (BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator,
                      model_validator)

from .errors import FieldError, RecordValidationError, SchemaError

Kind = Literal["continuous", "integer", "binary", "categorical", "ordinal"]
Direction = Literal["any", "increase", "decrease"]

MAX_ABS_VALUE = 1e12
"""Largest magnitude of a range end, cost scale or maximum change (wider ranges overflow the solver)."""
MIN_SCALE = 1e-12
"""Smallest cost scale or maximum change."""
COST_WEIGHT_RANGE = (1e-6, 1e6)
"""Allowed cost weights (schema ``cost_weight`` and per-request overrides)."""
MAX_ECHO = 80
"""Input values longer than this are shortened in error messages."""
MAX_LISTED = 40
"""At most this many known feature names are listed in an unknown-feature error."""


class Level(BaseModel):
    """One level of a categorical or ordinal feature."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="value used in records, e.g. '100 to 500 DM'")
    code: str | None = Field(default=None, description="code in the raw data file, e.g. 'A62'")
    text: str | None = Field(default=None, description="action phrase for moving to this level")


class Feature(BaseModel):
    """One input feature and its actionability."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    kind: Kind
    label: str | None = None
    unit: str | None = None
    range: tuple[float, float] | None = None
    levels: list[Level] | None = None
    precision: int | None = Field(default=None, ge=0, le=12)
    immutable: bool = False
    direction: Direction = "any"
    max_change: float | None = Field(default=None, ge=MIN_SCALE, le=MAX_ABS_VALUE, allow_inf_nan=False)
    step: float | None = Field(default=None, gt=0, le=MAX_ABS_VALUE, allow_inf_nan=False,
                               description="numeric: a changed value lands on a multiple of step (e.g. 50 DM)")
    min_change: float | None = Field(default=None, ge=MIN_SCALE, le=MAX_ABS_VALUE, allow_inf_nan=False,
                                     description="numeric (raw units) or ordinal (levels): the smallest change worth "
                                     "advising; smaller changes are never proposed")
    cost_scale: float | None = Field(default=None, ge=MIN_SCALE, le=MAX_ABS_VALUE, allow_inf_nan=False)
    cost_weight: float = Field(default=1.0, ge=COST_WEIGHT_RANGE[0], le=COST_WEIGHT_RANGE[1], allow_inf_nan=False,
                               description="multiplies this feature's change cost (e.g. 5: five times as expensive)")
    phrases: dict[Literal["increase", "decrease", "change", "on", "off"], str] | None = None
    actionable: bool = Field(default=True, description="false: a person cannot act on this feature (it never "
                             "changes), although it is not a protected attribute")
    transitions: dict[str, list[str]] | None = Field(
        default=None, description="categorical / ordinal: the allowed moves, {from level: [to levels]}; a level "
        "that is not a key may not move (staying is always allowed); none given: every move")
    note: str | None = Field(default=None, description="why the feature may or may not change, and how (documentation)")

    @field_validator("levels", mode="before")
    @classmethod
    def _levels_from_strings(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @model_validator(mode="after")
    def _check_kind(self) -> "Feature":
        where = f"feature '{shorten(self.name)}'"
        if not self.name.strip():
            raise ValueError("a feature name must not be blank")
        if self.kind in ("categorical", "ordinal"):
            if not self.levels or len(self.levels) < 2:
                raise ValueError(f"{where}: a {self.kind} feature needs at least 2 levels")
            names = [lvl.name for lvl in self.levels]
            if len(set(names)) != len(names):
                raise ValueError(f"{where}: duplicate level names")
            if self.range is not None:
                raise ValueError(f"{where}: a {self.kind} feature takes levels, not a range")
        if self.step is not None:
            if not self.is_numeric:
                raise ValueError(f"{where}: step is for numeric features (levels already are steps)")
            if self.kind == "integer" and float(self.step) != int(self.step):
                raise ValueError(f"{where}: an integer feature needs a whole-number step, got {self.step:g}")
            if self.kind == "continuous" and self.precision is not None:
                grid = self.step * 10 ** self.precision
                if abs(grid - round(grid)) > 1e-9 * max(1.0, grid):
                    raise ValueError(f"{where}: step {self.step:g} is finer than its precision ({self.precision} decimals)")
        if self.min_change is not None and self.kind not in ("continuous", "integer", "ordinal"):
            raise ValueError(f"{where}: min_change is for numeric and ordinal features")
        if self.transitions is not None:
            if self.kind not in ("categorical", "ordinal"):
                raise ValueError(f"{where}: transitions are for categorical and ordinal features")
            names = set(self.level_names)
            for source, targets in self.transitions.items():
                unknown = [v for v in [source, *targets] if v not in names]
                if unknown:
                    raise ValueError(f"{where}: transitions name unknown level {shorten(repr(unknown[0]))}; "
                                     f"levels: {', '.join(map(repr, self.level_names))}")
        if self.kind == "categorical" and self.direction != "any":
            raise ValueError(f"{where}: categories are unordered; direction must be 'any'")
        if self.kind == "binary" and self.levels is not None and len(self.levels) != 2:
            raise ValueError(f"{where}: binary levels, if given, are [false_name, true_name]")
        if self.kind == "binary" and self.range is not None:
            raise ValueError(f"{where}: a binary feature is true/false and takes no range")
        if self.range is not None:
            lo, hi = self.range
            if not (math.isfinite(lo) and math.isfinite(hi)) or lo >= hi:
                raise ValueError(f"{where}: range must be finite with low < high, got {self.range}")
            if max(abs(lo), abs(hi)) > MAX_ABS_VALUE:
                raise ValueError(f"{where}: range ends must lie within ±{MAX_ABS_VALUE:g}, got {self.range}")
        if self.kind == "integer" and self.range is not None:
            if any(float(v) != int(v) for v in self.range):
                raise ValueError(f"{where}: an integer feature needs a whole-number range")
        return self

    @property
    def title(self) -> str:
        """Human label, defaulting to the name with spaces."""
        return self.label or self.name.replace("_", " ")

    @property
    def level_names(self) -> list[str]:
        return [lvl.name for lvl in self.levels or []]

    @property
    def is_numeric(self) -> bool:
        return self.kind in ("continuous", "integer")


class Target(BaseModel):
    """The label column: its name, the favourable class and display names of the classes."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["classification"] | None = None
    name: str
    classes: list[int | str]
    favourable: int | str
    labels: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> "Target":
        if not self.name.strip():
            raise ValueError("target: the name must not be blank")
        keys = [str(c) for c in self.classes]
        if len(keys) < 2 or len(set(keys)) != len(keys):
            raise ValueError(f"target: classes must be at least 2 different values, got {self.classes}")
        if self.favourable not in self.classes:
            raise ValueError(f"target: favourable class {self.favourable!r} is not in classes {self.classes}")
        unknown = [k for k in self.labels if k not in keys]
        if unknown:
            raise ValueError(f"target.labels: {', '.join(repr(shorten(k)) for k in unknown)} "
                             f"{'is not a class' if len(unknown) == 1 else 'are not classes'}; classes: {self.classes}")
        return self

    def label_of(self, cls: int | str) -> str:
        return self.labels.get(str(cls), str(cls))


REACHED, NOT_REACHED = "reached", "not_reached"
"""The two decisions of a score target: the score is on the favourable side of its threshold, or not."""


class ScoreTarget(BaseModel):
    r"""A regression target: a score the model predicts (a credit score, a predicted default rate)
    and the favourable side of a threshold, ``at_least`` or ``at_most`` (exactly one).

    The engine decides two classes, :data:`NOT_REACHED` and :data:`REACHED` (favourable): a
    score model f becomes the binary logit :math:`z = s\,(f - \tau)/\sigma` (s = +1 for
    ``at_least``, −1 for ``at_most``; σ the training scores' standard deviation), so every
    part of the engine sees an ordinary binary model and its answers report the score itself
    (:mod:`recourse.scores`).  A request may ask for another threshold (``{"at_least": 700}``).
    """

    model_config = ConfigDict(extra="forbid")
    kind: Literal["regression"]
    name: str
    label: str | None = Field(default=None, description="how the score is named in sentences, e.g. 'credit score'")
    unit: str = ""
    precision: int = Field(default=2, ge=0, le=12, description="decimals shown for the score")
    at_least: float | None = Field(default=None, allow_inf_nan=False, ge=-MAX_ABS_VALUE, le=MAX_ABS_VALUE)
    at_most: float | None = Field(default=None, allow_inf_nan=False, ge=-MAX_ABS_VALUE, le=MAX_ABS_VALUE)

    @model_validator(mode="after")
    def _check(self) -> "ScoreTarget":
        if not self.name.strip():
            raise ValueError("target: the name must not be blank")
        if (self.at_least is None) == (self.at_most is None):
            raise ValueError("target: a score target gives exactly one of at_least or at_most (the favourable side "
                             "of one threshold)")
        return self

    @property
    def threshold(self) -> float:
        """τ: the threshold the score must reach."""
        return float(self.at_least if self.at_least is not None else self.at_most)

    @property
    def direction(self) -> int:
        """s: +1 when the score must be at least τ, −1 when at most."""
        return 1 if self.at_least is not None else -1

    @property
    def classes(self) -> list[str]:
        """The two decisions, not reached first (class index 1 is the favourable one)."""
        return [NOT_REACHED, REACHED]

    @property
    def favourable(self) -> str:
        return REACHED

    @property
    def labels(self) -> dict[str, str]:
        name = self.label or self.name.replace("_", " ")
        t = self.show(self.threshold)
        good, bad = ("at least", "below") if self.direction > 0 else ("at most", "above")
        return {REACHED: f"{name} {good} {t}", NOT_REACHED: f"{name} {bad} {t}"}

    def label_of(self, cls: int | str) -> str:
        return self.labels.get(str(cls), str(cls))

    def show(self, value: float) -> str:
        """A score as people write it: the target's decimals and unit."""
        text = f"{float(value):,.{self.precision}f}"
        return text + ("%" if self.unit == "%" else f" {self.unit}" if self.unit else "")

    def with_threshold(self, at_least: float | None = None, at_most: float | None = None) -> "ScoreTarget":
        """This target with another threshold (exactly one of the two)."""
        return ScoreTarget(kind="regression", name=self.name, label=self.label, unit=self.unit,
                           precision=self.precision, at_least=at_least, at_most=at_most)


def _target_kind(value: Any) -> str:
    kind = value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)
    return "regression" if kind == "regression" else "classification"


AnyTarget = Annotated[Union[Annotated[Target, Tag("classification")], Annotated[ScoreTarget, Tag("regression")]],
                      Discriminator(_target_kind)]
"""A classification target (classes) or a score target (``"kind": "regression"``)."""


class Consequence(BaseModel):
    r"""One edge of the additive structural model: changing ``cause`` by Δ moves ``effect`` by ``rate``·Δ.

    Units are codes (raw units; levels for ordinals).  E.g. ``{"cause": "age", "effect":
    "present_residence_since", "rate": 1}``: each year waited is a year more at the present
    residence.  See :mod:`recourse.consequences`.
    """

    model_config = ConfigDict(extra="forbid")
    cause: str = Field(min_length=1, description="the feature a person acts on")
    effect: str = Field(min_length=1, description="the feature that moves with it")
    rate: float = Field(description="change of the effect per unit change of the cause (codes units)",
                        allow_inf_nan=False, ge=-MAX_ABS_VALUE, le=MAX_ABS_VALUE)
    note: str | None = Field(default=None, description="why the effect follows (documentation)")


class FeatureSchema(BaseModel):
    """All features of a data set, in model-input order, and the target."""

    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    features: list[Feature]
    target: AnyTarget | None = None
    consequences: list[Consequence] = Field(
        default_factory=list, description="the additive structural model: how an action on one feature moves others")

    @model_validator(mode="after")
    def _unique(self) -> "FeatureSchema":
        names = [f.name for f in self.features]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate feature names: {dupes}")
        if not names:
            raise ValueError("a schema needs at least one feature")
        self._check_consequences()
        return self

    def _check_consequences(self) -> None:
        """Causes and effects are known numeric or ordinal features; one edge per pair; no chains
        (an effect is never a cause), so the structural model applies in one step."""
        kinds = {f.name: f.kind for f in self.features}
        seen: set[tuple[str, str]] = set()
        causes = {c.cause for c in self.consequences}
        for i, edge in enumerate(self.consequences):
            where = f"consequences.{i}"
            for role in ("cause", "effect"):
                name = getattr(edge, role)
                if name not in kinds:
                    raise ValueError(f"{where}.{role}: unknown feature {shorten(repr(name))}")
                if kinds[name] not in ("continuous", "integer", "ordinal"):
                    raise ValueError(f"{where}.{role}: '{shorten(name)}' is {kinds[name]}; consequences link "
                                     "numeric and ordinal features")
            if edge.cause == edge.effect:
                raise ValueError(f"{where}: a feature cannot be its own consequence")
            if edge.rate == 0:
                raise ValueError(f"{where}.rate: must not be 0 (leave the edge out instead)")
            if (edge.cause, edge.effect) in seen:
                raise ValueError(f"{where}: a second edge from '{shorten(edge.cause)}' to '{shorten(edge.effect)}'")
            seen.add((edge.cause, edge.effect))
            if edge.effect in causes:
                raise ValueError(f"{where}.effect: '{shorten(edge.effect)}' is also a cause; chains of consequences "
                                 "are not supported (link each cause to every feature it moves)")

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, path: str | Path) -> "FeatureSchema":
        """Read a schema JSON file; problems raise :class:`SchemaError` naming the place."""
        return cls.from_dict(read_json_file(path, SchemaError), source=str(path))

    @classmethod
    def from_dict(cls, data: dict, source: str = "schema") -> "FeatureSchema":
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            lines = [f"{_loc(e['loc'])}: {e['msg']}" for e in exc.errors()]
            raise SchemaError(f"{source}: invalid schema\n  " + "\n  ".join(lines)) from None

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.model_dump(mode="json", exclude_none=True), indent=2) + "\n")

    # ------------------------------------------------------------------ access
    @property
    def score_target(self) -> ScoreTarget | None:
        """The target when it is a score (regression), else None."""
        return self.target if isinstance(self.target, ScoreTarget) else None

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    def feature(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(f"unknown feature '{name}'")

    def check_max_changes(self, value: int) -> int:
        """``value`` if it is a whole number from 1 to the number of features, else ValueError saying so."""
        n = len(self.features)
        try:
            m = None if isinstance(value, bool) else operator.index(value)
        except TypeError:
            m = None
        if m is None or not 1 <= m <= n:
            raise ValueError(f"must be a whole number from 1 to {n} (the number of features of '{shorten(self.name)}'), "
                             f"got {show_value(value)}")
        return m

    # ------------------------------------------------------------------ validation
    def validate_record(self, record: Any, prefix: str = "") -> dict[str, Any]:
        """Check one applicant record; return it normalised (ints, floats, bools, level names).

        Raises :class:`RecordValidationError` listing every problem, each naming its field:
        unknown feature, missing feature, wrong type, NaN or infinity, out of range, unknown category.
        """
        errors = _Errors()
        out = self._check_record(record, prefix, errors)
        if errors:
            raise RecordValidationError(errors)
        return out

    def validate_records(self, records: list[Any]) -> list[dict[str, Any]]:
        """Validate a batch; errors carry the row index (``"3.age"``) and all rows are checked."""
        if not isinstance(records, list):
            raise RecordValidationError([FieldError("records", "expected a list of applicant records")])
        errors = _Errors()
        out = [self._check_record(r, f"{i}.", errors) for i, r in enumerate(records)]
        if errors:
            raise RecordValidationError(errors)
        return out

    def _check_record(self, record: Any, prefix: str, errors: "_Errors") -> dict[str, Any]:
        if not isinstance(record, dict):
            errors.append(FieldError(prefix.rstrip(".") or "record",
                                     f"expected an object of feature values, got {json_type(record)}"))
            return {}
        known = set(self.names)
        for key in record:
            if key not in known:
                errors.append(FieldError(f"{prefix}{key}", errors.unknown_feature(self.names)))
        out: dict[str, Any] = {}
        for feat in self.features:
            if feat.name not in record:
                errors.append(FieldError(f"{prefix}{feat.name}", "missing feature"))
                continue
            try:
                out[feat.name] = check_value(feat, record[feat.name])
            except ValueError as exc:
                errors.append(FieldError(f"{prefix}{feat.name}", str(exc)))
        return out


def check_value(feat: Feature, value: Any) -> Any:
    """Normalise one raw value for ``feat`` or raise ValueError with a plain-words message."""
    if feat.kind in ("continuous", "integer"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"wrong type: expected a number, got {show_value(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"must be a finite number, got {value}")
        if isinstance(value, int) and abs(value) > 1e300:
            raise ValueError("number too large: outside the allowed range of a finite number")
        if feat.kind == "integer":
            if float(value) != int(value):
                raise ValueError(f"must be a whole number, got {value}")
            value = int(value)
        else:
            value = float(value)
        if feat.range is not None:
            lo, hi = feat.range
            if not lo <= value <= hi:
                unit = f" {feat.unit}" if feat.unit else ""
                raise ValueError(f"{shorten(str(value))} is outside the allowed range [{_num(lo)}, {_num(hi)}]{unit}")
        return value
    if feat.kind == "binary":
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value in (0, 1):
            return bool(value)
        if feat.levels and isinstance(value, str) and value in feat.level_names:
            return feat.level_names.index(value) == 1
        expected = "true or false" + (f" (or {feat.levels[0].name!r}/{feat.levels[1].name!r})" if feat.levels else "")
        raise ValueError(f"wrong type: expected {expected}, got {show_value(value)}")
    # categorical / ordinal
    if not isinstance(value, str):
        raise ValueError(f"wrong type: expected one of the category names, got {show_value(value)}")
    if value not in feat.level_names:
        choices = ", ".join(repr(n) for n in feat.level_names)
        raise ValueError(f"unknown category {shorten(repr(value))}; expected one of {choices}")
    return value


class _Errors(list):
    """The errors of one validation call; the known features are listed in the first unknown-feature error only."""

    listed = False

    def unknown_feature(self, names: list[str]) -> str:
        if self.listed:
            return "unknown feature"
        self.listed = True
        shown = ", ".join(names[:MAX_LISTED]) + (f", ... ({len(names)} in all)" if len(names) > MAX_LISTED else "")
        return f"unknown feature; known features: {shown}"


def json_type(value: Any) -> str:
    """The JSON name of a value's type (null, boolean, number, string, array, object), else its Python type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def read_json_file(path: str | Path, error: type[ValueError] = ValueError) -> Any:
    """Parse a JSON file; a missing or unreadable file and malformed, too deeply nested or
    too long-numbered JSON raise ``error`` with a message naming the file and the problem."""
    path = Path(path)

    def refuse(problem: str) -> NoReturn:
        raise error(f"{path}: {problem}")

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        refuse("no such file")
    except IsADirectoryError:
        refuse("is a directory, not a file")
    except UnicodeDecodeError:
        refuse("cannot read (not UTF-8 text)")
    except OSError as exc:
        refuse(f"cannot read ({exc.strerror or exc.__class__.__name__})")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        refuse(f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})")
    except RecursionError:
        refuse("not usable JSON (nested too deeply)")
    except ValueError as exc:  # an integer longer than Python converts (sys.get_int_max_str_digits)
        refuse(f"not usable JSON (a number with more than {sys.get_int_max_str_digits()} digits)" if "digits" in str(exc)
               else f"not usable JSON ({shorten(str(exc))})")


def shorten(text: str, limit: int = MAX_ECHO) -> str:
    """``text`` shortened to ``limit`` characters (with '...') for echoing in a message."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def show_value(value: Any) -> str:
    """A short JSON-like rendering of an input value for an error message."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10 ** 60:
        return "a number too large to show"
    text = json.dumps(value) if isinstance(value, (str, bool, int, float, type(None))) else type(value).__name__
    return shorten(text)


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def _loc(loc: tuple) -> str:
    """A pydantic error location as a dotted path, without the target union's tags."""
    parts = [p for i, p in enumerate(loc) if not (i and loc[i - 1] == "target" and p in ("classification", "regression"))]
    return ".".join(str(p) for p in parts) or "schema"
