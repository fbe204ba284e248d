"""Reading a JSON request body into a pydantic model, with problem-details errors."""
from __future__ import annotations

import json
from typing import Any, TypeVar

from flask import request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import RequestEntityTooLarge

from .problems import Problem, describe, field_error

M = TypeVar("M", bound=BaseModel)

MAX_INT_DIGITS = 4300
"""Longest integer literal accepted in a body (Python's default limit for converting digits)."""


class _IntegerTooLong(ValueError):
    def __init__(self, digits: int):
        super().__init__(digits)
        self.digits = digits


def parse_body(model: type[M]) -> M:
    """415 unless identity-encoded JSON, 413 when too large, 400 when malformed, 422 when it does not fit ``model``."""
    mimetype = request.mimetype or ""
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        raise Problem(415, f"send the body as application/json (got {mimetype or 'no content type'})")
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise Problem(415, f"Content-Encoding {encoding!r} is not supported: send the body uncompressed (identity)")
    raw = _read_body()
    try:
        data = json.loads(raw.decode("utf-8"), parse_int=_int)
    except UnicodeDecodeError as exc:
        raise Problem(400, f"the body is not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise Problem(400, f"the body is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    except _IntegerTooLong as exc:
        raise Problem(400, f"the body has an integer with {exc.digits} digits; numbers may have at most {MAX_INT_DIGITS}") from None
    except RecursionError:
        raise Problem(400, "the body is nested too deeply") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [field_error(list(e["loc"]), _message(e)) for e in exc.errors(include_url=False)]
        raise Problem(422, "the request body does not have the expected fields", errors) from None


def _read_body() -> bytes:
    """The body; 413 also for a body without Content-Length (chunked) that goes past the limit.

    Werkzeug stops reading such a stream at the limit without saying so: one more byte
    from the server's stream tells a body of exactly the limit from a longer one.
    """
    raw = request.get_data(cache=False)
    limit = request.max_content_length
    if limit is not None and request.content_length is None and len(raw) >= limit and request.environ["wsgi.input"].read(1):
        raise RequestEntityTooLarge()
    return raw


def _int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise _IntegerTooLong(digits)
    return int(text)


EXPECTED = {
    "model_type": "a JSON object", "model_attributes_type": "a JSON object", "dict_type": "a JSON object",
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "float_parsing": "a number", "string_type": "a string", "list_type": "an array",
    "bool_type": "true or false", "bool_parsing": "true or false",
}
"""What a pydantic error type expected, in words (its own message can name internal classes)."""


def _message(error: dict[str, Any]) -> str:
    """A plain-words message for a pydantic error."""
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "missing field"
    if kind == "float_type" and type(error["input"]) is int:
        return "number too large: outside the range of a finite number"
    if kind in EXPECTED:
        return f"expected {EXPECTED[kind]}, got {describe(error['input'])}"
    return error["msg"]
