"""Request and response bodies (pydantic); the OpenAPI document is generated from them."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainValidator, StrictBool, StrictFloat, StrictInt
from pydantic_core import PydanticCustomError

from recourse.options import MAX_ALTERNATIVES, RequestOptions

from .problems import MAX_ERRORS, MAX_TEXT, describe

Status = Literal["recourse_found", "no_recourse_found", "already_favourable"]


def _whole(value: Any) -> Any:
    """A JSON number without a fraction as an int (JSON Schema's "integer" includes 2.0); anything else unchanged."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    return value


JsonInt = Annotated[StrictInt, BeforeValidator(_whole)]
"""An integer as JSON Schema means it: 3 or 3.0, never true, "3" or 3.5."""


def _one_class(value: Any) -> str | int | dict | None:
    """A class as JSON gives it: a string or an integer (never true/false, a fraction or an array); or,
    for a bundle that decides a score, a threshold object (checked by the service)."""
    value = _whole(value)
    if value is None or isinstance(value, (str, dict)) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    note = "; one target applies to every applicant (per-applicant targets are not supported)" if isinstance(value, list) else ""
    message = f"expected one class of the model, a string or an integer as in GET /v1/models, got {describe(value)}{note}"
    raise PydanticCustomError("class_name", "{message}", {"message": message})


class ScoreThreshold(BaseModel):
    """A bundle that decides a score: the score to reach, instead of the bundle's threshold (exactly one)."""

    model_config = ConfigDict(extra="forbid")
    at_least: float | None = Field(default=None, description="the score must be at least this")
    at_most: float | None = Field(default=None, description="the score must be at most this")


ClassName = Annotated[str | int | dict | None,
                      PlainValidator(_one_class, json_schema_input_type=str | int | ScoreThreshold | None)]
"""A target class: the bundle decides whether its classes are strings or integers (checked by the service);
or a :class:`ScoreThreshold` for a bundle that decides a score."""


_OPTIONS = RequestOptions.model_fields


class Options(BaseModel):
    """Solver options shared by the recourse endpoints: the JSON form of
    :class:`recourse.options.RequestOptions` (strict JSON types here; the rules are the library's)."""

    model_config = ConfigDict(extra="forbid")
    max_changes: Annotated[JsonInt, Field(ge=1)] | None = Field(default=None, description=_OPTIONS["max_changes"].description)
    density: str | None = Field(default=None, description="Plausibility term: one of the bundle's densities (kde, gmm, knn) or 'none'.")
    target: ClassName = Field(default=None, description="Class to reach, exactly as listed in GET /v1/models (default: the favourable class); one for all applicants of a batch. A bundle that decides a score (a regression target) also takes another threshold: {\"at_least\": number} or {\"at_most\": number}.")
    alternatives: Annotated[JsonInt, Field(ge=1, le=MAX_ALTERNATIVES)] | None = Field(default=None, description=_OPTIONS["alternatives"].description)
    min_probability: StrictFloat | None = Field(default=None, gt=0.0, lt=1.0, description=_OPTIONS["min_probability"].description)
    robust: StrictBool | None = Field(default=None, description=_OPTIONS["robust"].description)
    fixed: list[str] | None = Field(default=None, description=_OPTIONS["fixed"].description)
    limits: dict[str, Annotated[list[StrictFloat | StrictInt | str | None], Field(min_length=2, max_length=2)]] | None = Field(
        default=None, description=_OPTIONS["limits"].description)
    cost_weights: dict[str, StrictFloat] | None = Field(default=None, description=_OPTIONS["cost_weights"].description)


class RecourseRequest(Options):
    """One applicant and optional solver options."""

    applicant: Any = Field(description="Feature values, one per schema feature (see GET /v1/schema); checked against the schema by the service.")


class BatchRequest(Options):
    """Several applicants solved as one batch with the same options."""

    applicants: list[Any] = Field(min_length=1, description="Applicants (at most the configured batch limit); every row is checked against the schema, all problems reported together.")


class PredictRequest(BaseModel):
    """One applicant, decision only."""

    model_config = ConfigDict(extra="forbid")
    applicant: Any = Field(description="Feature values, one per schema feature (see GET /v1/schema).")


class Decision(BaseModel):
    label: str
    value: int | str
    probability: float | None = Field(description="The model's probability of this decision (null for a bundle that decides a score).")
    score: float | None = Field(default=None, description="A bundle that decides a score: the predicted score (absent otherwise).")


class TargetRef(BaseModel):
    label: str
    value: int | str


class Action(BaseModel):
    feature: str
    label: str
    from_: Any = Field(alias="from")
    to: Any
    text: str


class Reason(BaseModel):
    """A principal reason: a feature the recourse must change, ranked by its effect alone."""

    feature: str
    label: str
    value: Any
    needed: Any
    score_change: float = Field(description="Change of the target-class logit margin from this change alone.")
    probability_alone: float | None = Field(description="Target-class probability with only this change (null for a bundle that decides a score).")
    text: str
    score_alone: float | None = Field(default=None, description="A bundle that decides a score: the predicted score with only this change.")


class ModelRef(BaseModel):
    id: str
    hash: str


class Metrics(BaseModel):
    l0: int
    l2: float
    cost: float
    lof: float | None


class RecourseAnswer(BaseModel):
    """The answer for one applicant, as stored in the explanation log."""

    id: str
    created: str
    model: ModelRef
    status: Status
    message: str
    decision: Decision
    target: TargetRef | None = None
    counterfactual_decision: Decision | None = None
    actions: list[Action]
    consequences: list[Action] = Field(default_factory=list, description="Features the actions move without being "
                                       "acted on (the schema's consequences, e.g. years at the residence after waiting).")
    counterfactual: dict[str, Any] | None = None
    metrics: Metrics | None = None
    reasons: list[Reason]
    max_changes: int | None = None
    alternatives: list[dict[str, Any]] | None = None
    diversity: float | None = None
    applicant: dict[str, Any]


class Erasure(BaseModel):
    """The answer to an erasure: the id, now gone for good."""

    id: str
    erased: bool


class BatchAnswer(BaseModel):
    count: int
    model: ModelRef
    results: list[RecourseAnswer]


class PredictAnswer(BaseModel):
    id: str
    created: str
    model: ModelRef
    decision: Decision
    favourable: bool
    probabilities: dict[str, float] | None = Field(default=None, description="Each class's probability (absent for a bundle that decides a score: its decision carries the score).")


class ModelInfo(BaseModel):
    id: str
    hash: str
    dataset: str
    model: str
    classes: list[int | str]
    densities: list[str]
    defaults: dict[str, Any]
    created: str | None = None
    training: dict[str, Any] = Field(default_factory=dict)


class ModelList(BaseModel):
    models: list[ModelInfo]


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, bool] = Field(default_factory=dict)


class FieldProblem(BaseModel):
    field: str
    pointer: str
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldProblem] = Field(default_factory=list, description=f"At most {MAX_ERRORS} (the detail counts the rest); texts cut to {MAX_TEXT} characters.")


RESPONSE_MODELS = [RecourseAnswer, BatchAnswer, PredictAnswer, ModelList, Health, Problem, Erasure]
REQUEST_MODELS = [RecourseRequest, BatchRequest, PredictRequest]
