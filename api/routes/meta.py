"""Health, readiness, Prometheus metrics and the OpenAPI document (no API key needed)."""
from __future__ import annotations

import json

from flask import Blueprint, Response, current_app

from ..openapi import openapi_document
from ..telemetry import CONTENT_TYPE
from .v1 import model_info

bp = Blueprint("meta", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return Response(json.dumps({"status": "ok", "checks": {"process": True}}), mimetype="application/json")


@bp.get("/readyz")
def readyz() -> Response:
    service = current_app.extensions["recourse"]
    checks = {"model": service.ready, "database": service.log.ping()}
    ok = all(checks.values())
    body = {"status": "ok" if ok else "unavailable", "checks": checks}
    promises = service.promise_note()
    if promises is not None:  # a note, not a check: a new model may break earlier promises and still serve
        body["promises"] = promises
    return Response(json.dumps(body), status=200 if ok else 503, mimetype="application/json")


@bp.get("/metrics")
def metrics() -> Response:
    return Response(current_app.extensions["recourse_telemetry"].exposition(), content_type=CONTENT_TYPE)


@bp.get("/openapi.json")
def openapi() -> Response:
    service = current_app.extensions["recourse"]
    document = openapi_document(service.engine.schema, service.config, model=model_info(service),
                                densities=service.engine.densities, robust=bool(service.engine.family))
    return Response(json.dumps(document), mimetype="application/json")
