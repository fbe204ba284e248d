"""The OpenAPI 3.1 document, generated from the pydantic models and the bundle's feature schema.

The request models give the shape; what depends on the bundle is filled in at document time from its
schema, classes and densities, as strictly as the service checks it (:mod:`recourse.options`): the
applicant's features, the names and range of ``cost_weights``, the features of ``fixed`` and
``limits`` (with numbers or level names as ends), the ``target`` classes and the ``density`` names.
Every operation has an ``operationId`` and an example.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

from pydantic.json_schema import models_json_schema

from recourse.options import MAX_ALTERNATIVES, NO_DENSITY
from recourse.schema import COST_WEIGHT_RANGE, Feature, FeatureSchema

from .bodies import MAX_INT_DIGITS
from .config import ServiceConfig
from .log import ID_DIGITS
from .schemas import REQUEST_MODELS, RESPONSE_MODELS

REF = "#/components/schemas/{model}"
OPTION_MODELS = ("RecourseRequest", "BatchRequest")
"""Request components that carry the solver options."""


def applicant_schema(schema: FeatureSchema) -> dict[str, Any]:
    """JSON Schema of one applicant record: one property per feature with its type, range or levels."""
    props: dict[str, Any] = {}
    for feat in schema.features:
        desc = " ".join(p for p in [feat.title, f"({feat.unit})" if feat.unit else "", "immutable" if feat.immutable else ""] if p)
        if feat.kind in ("continuous", "integer"):
            prop: dict[str, Any] = {"type": "number" if feat.kind == "continuous" else "integer"}
            if feat.range is not None:
                prop["minimum"], prop["maximum"] = feat.range
        elif feat.kind == "binary":
            prop = {"oneOf": [{"type": "boolean"}, {"enum": [0, 1]}] + ([{"enum": feat.level_names}] if feat.levels else [])}
        else:
            prop = {"type": "string", "enum": feat.level_names}
        prop["description"] = desc
        props[feat.name] = prop
    return {"title": "Applicant", "type": "object", "properties": props, "required": schema.names, "additionalProperties": False}


def _limit_ends(feat: Feature) -> dict[str, Any]:
    """``[low, high]`` of one feature's personal limits: numbers (numeric) or level names (ordinal), null open."""
    end = {"type": ["number", "null"]} if feat.is_numeric else {"enum": [*feat.level_names, None]}
    what = "numbers" if feat.is_numeric else "level names"
    return {"type": "array", "items": end, "minItems": 2, "maxItems": 2,
            "description": f"[low, high] ({what}; null: open end; low must not exceed high)"}


def option_schemas(schema: FeatureSchema, classes: Sequence[Any] | None = None,
                   densities: Iterable[str] | None = None, robust: bool = True) -> dict[str, dict[str, Any]]:
    """Strict JSON Schemas (without null) of the options, by option name, as strict as the service.

    ``classes``: the model's classes as ``GET /v1/models`` lists them (JSON types kept);
    ``densities``: the fitted density names (``"none"`` is added).  Either None: left as generated.
    ``robust``: whether the bundle has refits to verify with (without: only ``false`` is accepted).
    """
    names = schema.names
    low, high = COST_WEIGHT_RANGE
    out: dict[str, dict[str, Any]] = {
        "max_changes": {"type": "integer", "minimum": 1},
        "alternatives": {"type": "integer", "minimum": 1, "maximum": MAX_ALTERNATIVES},
        "robust": {"type": "boolean"} if robust else {"const": False, "description": "this bundle has no refits"},
        "cost_weights": {"type": "object", "propertyNames": {"enum": names},
                         "additionalProperties": {"type": "number", "minimum": low, "maximum": high}},
        "fixed": {"type": "array", "items": {"enum": names}},
        "limits": {"type": "object", "additionalProperties": False,
                   "properties": {f.name: _limit_ends(f) for f in schema.features if f.is_numeric or f.kind == "ordinal"}},
    }
    if classes is not None:
        out["target"] = {"enum": list(classes)}
        if schema.score_target is not None:  # a score: also a threshold of the request's own
            out["target"] = {"oneOf": [out["target"], {
                "type": "object", "additionalProperties": False, "minProperties": 1, "maxProperties": 1,
                "properties": {"at_least": {"type": "number"}, "at_most": {"type": "number"}},
                "description": "the score to reach instead of the bundle's threshold (exactly one of the two)"}]}
    if schema.score_target is not None:
        out["min_probability"] = {"not": {}, "description": "a score has no probability: ask for a threshold with target"}
    if densities is not None:
        out["density"] = {"enum": [*sorted(densities), NO_DENSITY]}
    return out


def _nullable(strict: dict[str, Any], generated: dict[str, Any]) -> dict[str, Any]:
    """``strict`` or null, keeping the generated property's title, description and default."""
    keep = {k: generated[k] for k in ("title", "description", "default") if k in generated}
    return {"anyOf": [strict, {"type": "null"}], **keep}


def example_applicant(schema: FeatureSchema) -> dict[str, Any]:
    """A valid applicant for the examples: mid-range numbers, the first level, false."""
    record: dict[str, Any] = {}
    for feat in schema.features:
        if feat.is_numeric:
            low, high = feat.range if feat.range is not None else (0.0, 0.0)
            middle = (low + high) / 2
            record[feat.name] = int(round(middle)) if feat.kind == "integer" else float(middle)
        elif feat.kind == "binary":
            record[feat.name] = False
        else:
            record[feat.name] = feat.level_names[0]
    return record


def example_options(schema: FeatureSchema, classes: Sequence[Any] | None = None,
                    densities: Iterable[str] | None = None) -> dict[str, Any]:
    """Options every bundle accepts, one of each kind: the favourable target, a cost weight, a fixed
    feature, a one-sided limit, a confidence, a density."""
    options: dict[str, Any] = {"max_changes": 2}
    if schema.score_target is None:
        options["min_probability"] = 0.6
    first = schema.features[0].name
    options["cost_weights"] = {first: 2}
    options["fixed"] = [first]
    limited = next((f for f in schema.features if f.is_numeric or f.kind == "ordinal"), None)
    if limited is not None:
        if limited.is_numeric:
            options["limits"] = {limited.name: [None, limited.range[1] if limited.range is not None else 0]}
        else:
            options["limits"] = {limited.name: [limited.level_names[0], None]}
    if classes and schema.score_target is not None:
        side = "at_least" if schema.score_target.direction > 0 else "at_most"
        options["target"] = {side: schema.score_target.threshold}
    elif classes:
        favourable = schema.target.favourable if schema.target is not None else None
        options["target"] = next((c for c in classes if str(c) == str(favourable)), classes[-1])
    if densities is not None:
        options["density"] = NO_DENSITY
    return options


def _examples(**values: tuple[str, Any]) -> dict[str, Any]:
    """OpenAPI ``examples``: name -> (summary, value)."""
    return {name: {"summary": summary, "value": value} for name, (summary, value) in values.items()}


def _body(name: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": {"$ref": REF.format(model=name)}}}}


def _ok(name: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": REF.format(model=name)}}}}


def _problems(*codes: int) -> dict[str, Any]:
    text = {400: f"Malformed JSON (or an integer of more than {MAX_INT_DIGITS} digits, or nesting too deep)", 401: "Missing or wrong API key",
            403: "The key's role does not allow it (erasure needs an admin key)", 404: "Not found", 413: "Body too large (with or without Content-Length)",
            415: "Not application/json, or compressed (only Content-Encoding identity is accepted)",
            422: "Invalid request or applicant", 503: "No answer in time"}
    problem = {"application/problem+json": {"schema": {"$ref": REF.format(model="Problem")}}}
    return {str(c): {"description": text[c], "content": problem} for c in codes}


def _with_example(response: dict[str, Any], value: Any, media: str = "application/json") -> dict[str, Any]:
    """``response`` with an example of its ``media`` content."""
    response["content"][media]["example"] = value
    return response


def openapi_document(schema: FeatureSchema, config: ServiceConfig, model: dict[str, Any] | None = None,
                     densities: Iterable[str] | None = None, robust: bool = True) -> dict[str, Any]:
    """A complete, valid OpenAPI 3.1 document for this service and bundle.

    ``model``: the model as ``GET /v1/models`` lists it (its ``classes`` become the ``target`` enum;
    None: the schema's target classes); ``densities``: the densities the engine has fitted (None: any name).
    """
    classes = model.get("classes") if model is not None else (schema.target.classes if schema.target is not None else None)
    _, defs = models_json_schema([(m, "validation") for m in REQUEST_MODELS] + [(m, "serialization") for m in RESPONSE_MODELS],
                                 ref_template=REF)
    components = dict(defs.get("$defs", {}))
    components["Applicant"] = applicant_schema(schema)
    for name in ("RecourseRequest", "PredictRequest"):
        components[name]["properties"]["applicant"] = {"$ref": REF.format(model="Applicant")}
    batch = components["BatchRequest"]["properties"]["applicants"]
    batch["items"] = {"$ref": REF.format(model="Applicant")}
    batch["maxItems"] = config.max_batch
    strict = option_schemas(schema, classes, densities, robust)
    for name in OPTION_MODELS:
        props = components[name]["properties"]
        for option, body in strict.items():
            props[option] = _nullable(body, props[option])
    secured = [{"bearer": []}, {"apiKey": []}] if config.auth_required else []
    input_errors = _problems(400, 401, 413, 415, 422, 503)

    applicant = example_applicant(schema)
    options = example_options(schema, classes, densities)
    requests = {
        "RecourseRequest": _examples(plain=("One applicant, the bundle's defaults", {"applicant": applicant}),
                                     options=("One applicant with options", {"applicant": applicant, **options})),
        "BatchRequest": _examples(plain=("Two applicants", {"applicants": [applicant, applicant]}),
                                  options=("Two applicants, the same options for both",
                                           {"applicants": [applicant, applicant], **options})),
        "PredictRequest": _examples(plain=("One applicant", {"applicant": applicant})),
    }

    def op(operation_id: str, summary: str, request: str | None, response: str, errors: dict, secure: bool = True,
           **extra: Any) -> dict:
        out: dict[str, Any] = {"operationId": operation_id, "summary": summary,
                               "responses": {"200": _ok(response, summary), **errors}}
        if request:
            out["requestBody"] = _body(request)
            out["requestBody"]["content"]["application/json"]["examples"] = requests[request]
        out["security"] = secured if secure else []
        out.update(extra)
        return out

    answer_id = {"name": "answer_id", "in": "path", "required": True, "description": f"An answer's id ({ID_DIGITS} hexadecimal digits)",
                 "schema": {"type": "string", "pattern": f"^[0-9a-f]{{{ID_DIGITS}}}$"}, "example": "0123456789abcdef" * (ID_DIGITS // 16)}
    short_schema = schema.model_copy(update={"features": schema.features[:2]}).model_dump(mode="json", exclude_none=True)
    listed = {k: v for k, v in (model or {}).items() if k not in ("training", "created")}
    paths = {
        "/v1/recourse": {"post": op("recourse", "Decision, principal reasons and recourse for one applicant", "RecourseRequest",
                                    "RecourseAnswer", input_errors)},
        "/v1/recourse/batch": {"post": op("recourseBatch", "Recourse for many applicants, solved as one batch", "BatchRequest",
                                          "BatchAnswer", input_errors)},
        "/v1/predict": {"post": op("predict", "The decision only", "PredictRequest", "PredictAnswer", _problems(400, 401, 413, 415, 422))},
        "/v1/recourse/{answer_id}": {"get": op(
            "getAnswer", "An answer given earlier (recourse or decision), exactly as given; a client key reads only "
            "the answers it asked for (others: 404), an auditor or admin key any", None, "RecourseAnswer",
            _problems(401, 404), parameters=[answer_id]),
            "delete": op("eraseAnswer", "Erase one stored answer for good (admin keys only; the erasure is recorded)",
                         None, "Erasure", _problems(401, 403, 404), parameters=[answer_id])},
        "/v1/schema": {"get": op("getSchema", "The feature schema (for forms)", None, "FeatureSchema", _problems(401))},
        "/v1/models": {"get": op("listModels", "The model this service answers with", None, "ModelList", _problems(401))},
        "/healthz": {"get": op("healthz", "Liveness", None, "Health", {}, secure=False)},
        "/readyz": {"get": op("readyz", "Readiness: model loaded and warm, database reachable", None, "Health",
                              {"503": _with_example(_ok("Health", "Not ready"),
                                                    {"status": "unavailable", "checks": {"model": True, "database": False}})},
                              secure=False)},
        "/metrics": {"get": {"operationId": "metrics", "summary": "Prometheus metrics", "security": [],
                             "responses": {"200": {"description": "Prometheus text format", "content": {"text/plain": {
                                 "schema": {"type": "string"},
                                 "example": "# TYPE recourse_http_requests_total counter\n"
                                            'recourse_http_requests_total{endpoint="/v1/recourse",method="POST",status="200"} 1.0\n'}}}}}},
        "/openapi.json": {"get": {"operationId": "openapi", "summary": "This document", "security": [],
                                  "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {
                                      "schema": {"type": "object"},
                                      "example": {"openapi": "3.1.0", "info": {"title": "recourse", "version": "1"}, "paths": {}}}}}}}},
    }
    stored = paths["/v1/recourse/{answer_id}"]["get"]["responses"]["200"]["content"]["application/json"]
    stored["schema"] = {"oneOf": [{"$ref": REF.format(model="RecourseAnswer")}, {"$ref": REF.format(model="PredictAnswer")}]}
    _with_example(paths["/v1/schema"]["get"]["responses"]["200"], short_schema)
    _with_example(paths["/v1/recourse/{answer_id}"]["delete"]["responses"]["200"],
                  {"id": answer_id["example"], "erased": True})
    if listed:
        _with_example(paths["/v1/models"]["get"]["responses"]["200"], {"models": [listed]})
    _with_example(paths["/healthz"]["get"]["responses"]["200"], {"status": "ok", "checks": {"process": True}})
    _with_example(paths["/readyz"]["get"]["responses"]["200"], {"status": "ok", "checks": {"model": True, "database": True}})
    feature_schema = FeatureSchema.model_json_schema(ref_template=REF)
    components.update(feature_schema.pop("$defs", {}))
    components["FeatureSchema"] = feature_schema
    return {
        "openapi": "3.1.0",
        "info": {"title": "recourse", "version": "1",
                 "description": "Decisions, principal reasons and verified sparse recourse (S-CFE) for one applicant or a batch. "
                                "Every answer is logged and can be fetched again by id."},
        "servers": [{"url": "/", "description": "This service (paths are relative to where it is served)"}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
        },
    }
