"""The OpenAPI 3.1 document, generated from the pydantic models and the bundle's feature schema."""
from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from recourse.schema import FeatureSchema

from .bodies import MAX_INT_DIGITS
from .config import ServiceConfig
from .schemas import REQUEST_MODELS, RESPONSE_MODELS

REF = "#/components/schemas/{model}"


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


def _body(name: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": {"$ref": REF.format(model=name)}}}}


def _ok(name: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": REF.format(model=name)}}}}


def _problems(*codes: int) -> dict[str, Any]:
    text = {400: f"Malformed JSON (or an integer of more than {MAX_INT_DIGITS} digits, or nesting too deep)", 401: "Missing or wrong API key",
            404: "Not found", 413: "Body too large (with or without Content-Length)",
            415: "Not application/json, or compressed (only Content-Encoding identity is accepted)",
            422: "Invalid request or applicant", 503: "No answer in time"}
    problem = {"application/problem+json": {"schema": {"$ref": REF.format(model="Problem")}}}
    return {str(c): {"description": text[c], "content": problem} for c in codes}


def openapi_document(schema: FeatureSchema, config: ServiceConfig) -> dict[str, Any]:
    """A complete, valid OpenAPI 3.1 document for this service and bundle."""
    _, defs = models_json_schema([(m, "validation") for m in REQUEST_MODELS] + [(m, "serialization") for m in RESPONSE_MODELS],
                                 ref_template=REF)
    components = dict(defs.get("$defs", {}))
    components["Applicant"] = applicant_schema(schema)
    for name in ("RecourseRequest", "PredictRequest"):
        components[name]["properties"]["applicant"] = {"$ref": REF.format(model="Applicant")}
    batch = components["BatchRequest"]["properties"]["applicants"]
    batch["items"] = {"$ref": REF.format(model="Applicant")}
    batch["maxItems"] = config.max_batch
    secured = [{"bearer": []}, {"apiKey": []}] if config.auth_required else []
    input_errors = _problems(400, 401, 413, 415, 422, 503)

    def op(summary: str, request: str | None, response: str, errors: dict, secure: bool = True, **extra: Any) -> dict:
        out: dict[str, Any] = {"summary": summary, "responses": {"200": _ok(response, summary), **errors}}
        if request:
            out["requestBody"] = _body(request)
        out["security"] = secured if secure else []
        out.update(extra)
        return out

    paths = {
        "/v1/recourse": {"post": op("Decision, principal reasons and recourse for one applicant", "RecourseRequest", "RecourseAnswer", input_errors)},
        "/v1/recourse/batch": {"post": op("Recourse for many applicants, solved as one batch", "BatchRequest", "BatchAnswer", input_errors)},
        "/v1/predict": {"post": op("The decision only", "PredictRequest", "PredictAnswer", _problems(400, 401, 413, 415, 422))},
        "/v1/recourse/{answer_id}": {"get": op(
            "An answer given earlier (recourse or decision), exactly as given", None, "RecourseAnswer", _problems(401, 404),
            parameters=[{"name": "answer_id", "in": "path", "required": True, "schema": {"type": "string"}}])},
        "/v1/schema": {"get": op("The feature schema (for forms)", None, "FeatureSchema", _problems(401))},
        "/v1/models": {"get": op("The model this service answers with", None, "ModelList", _problems(401))},
        "/healthz": {"get": op("Liveness", None, "Health", {}, secure=False)},
        "/readyz": {"get": op("Readiness: model loaded and warm, database reachable", None, "Health",
                              {"503": _ok("Health", "Not ready")}, secure=False)},
        "/metrics": {"get": {"summary": "Prometheus metrics", "security": [],
                             "responses": {"200": {"description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/openapi.json": {"get": {"summary": "This document", "security": [],
                                  "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
    }
    stored = paths["/v1/recourse/{answer_id}"]["get"]["responses"]["200"]["content"]["application/json"]
    stored["schema"] = {"oneOf": [{"$ref": REF.format(model="RecourseAnswer")}, {"$ref": REF.format(model="PredictAnswer")}]}
    feature_schema = FeatureSchema.model_json_schema(ref_template=REF)
    components.update(feature_schema.pop("$defs", {}))
    components["FeatureSchema"] = feature_schema
    return {
        "openapi": "3.1.0",
        "info": {"title": "recourse", "version": "1",
                 "description": "Decisions, principal reasons and verified sparse recourse (S-CFE) for one applicant or a batch. "
                                "Every answer is logged and can be fetched again by id."},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
        },
    }
