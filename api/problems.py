"""Errors as RFC 9457 problem details (``application/problem+json``), never a stack trace.

Every error response has ``type``, ``title``, ``status`` and ``detail``; input errors add
``errors``: one entry per problem with ``field`` (dotted path), ``pointer`` (JSON Pointer into
the request body) and ``message``.  A response lists at most :data:`MAX_ERRORS` of them (the
detail counts the rest) and every text in it is cut to at most :data:`MAX_TEXT` characters, so an
error response stays small whatever the request held.
"""
from __future__ import annotations

import json
from typing import Any

from flask import Flask, Response
from werkzeug.exceptions import HTTPException

PROBLEM_TYPE = "urn:recourse:problem:"
MAX_ERRORS = 50
"""Most field errors listed in one response."""
MAX_TEXT = 300
"""Most characters of any one text (detail, field, pointer, message) in a response."""
TITLES = {
    400: "Malformed request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found", 405: "Method not allowed",
    413: "Request body too large", 415: "Unsupported media type", 422: "Invalid request",
    500: "Internal error", 503: "Service unavailable",
}
SLUGS = {
    400: "malformed-json", 401: "unauthorized", 403: "forbidden", 404: "not-found", 405: "method-not-allowed",
    413: "body-too-large", 415: "unsupported-media-type", 422: "invalid-request", 500: "internal-error",
    503: "unavailable",
}


class Problem(Exception):
    """An error to answer with a problem-details body."""

    def __init__(self, status: int, detail: str, errors: list[dict[str, str]] | None = None,
                 headers: dict[str, str] | None = None, slug: str | None = None):
        super().__init__(detail)
        self.status, self.detail, self.errors = status, detail, errors or []
        self.headers = headers or {}
        self.slug = slug or SLUGS.get(status, "error")

    def body(self) -> dict[str, Any]:
        """The problem-details object: at most MAX_ERRORS errors, every text at most MAX_TEXT characters."""
        detail, hidden = clip(self.detail), len(self.errors) - MAX_ERRORS
        if hidden > 0:
            detail += f" ({len(self.errors)} problems; the first {MAX_ERRORS} are listed, {hidden} more are not)"
        out: dict[str, Any] = {"type": PROBLEM_TYPE + self.slug, "title": TITLES.get(self.status, "Error"),
                               "status": self.status, "detail": detail}
        if self.errors:
            out["errors"] = [{k: clip(v) for k, v in e.items()} for e in self.errors[:MAX_ERRORS]]
        return out


def describe(value: Any) -> str:
    """A JSON value for a message: a scalar shown (cut short), a container only named."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return clip(json.dumps(value[:41] if isinstance(value, str) else value), 40)


def clip(text: str, limit: int = MAX_TEXT) -> str:
    """``text`` cut to at most ``limit`` characters, ending in "…" when cut."""
    return text if len(text) <= limit else text[:limit - 1] + "…"


def field_error(path: list[str | int], message: str) -> dict[str, str]:
    """One input problem: dotted field path, JSON Pointer and message."""
    field = ".".join(str(p) for p in path) or "(body)"
    pointer = "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)
    return {"field": field, "pointer": pointer, "message": message}


def problem_response(problem: Problem) -> Response:
    response = Response(json.dumps(problem.body()), status=problem.status, mimetype="application/problem+json")
    for key, value in problem.headers.items():
        response.headers[key] = value
    return response


def register(app: Flask) -> None:
    """Turn every error (ours, HTTP ones, unexpected ones) into problem details."""

    @app.errorhandler(Problem)
    def _problem(exc: Problem) -> Response:
        return problem_response(exc)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        status = exc.code or 500
        headers = {}
        if status == 405:
            allowed = getattr(exc, "valid_methods", None) or []
            headers["Allow"] = ", ".join(sorted(allowed))
            detail = f"this endpoint allows {', '.join(sorted(allowed)) or 'no methods'}"
        elif status == 404:
            detail = "no such endpoint; see /openapi.json"
        elif status == 413:
            detail = f"the request body is larger than the limit of {app.config.get('MAX_CONTENT_LENGTH')} bytes"
        elif status == 400:
            detail = "the request could not be read"
        else:
            detail = exc.description or TITLES.get(status, "error")
        return problem_response(Problem(status, detail, headers=headers))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        app.logger.exception("unhandled error")
        return problem_response(Problem(500, "the server could not answer this request; it has been logged"))
