"""Reading a JSON request body into a pydantic model, with problem-details errors."""
from __future__ import annotations

import json
from typing import TypeVar

from flask import request
from pydantic import BaseModel, ValidationError

from .problems import Problem, field_error

M = TypeVar("M", bound=BaseModel)


def parse_body(model: type[M]) -> M:
    """415 unless JSON, 413 when too large, 400 when malformed, 422 when it does not fit ``model``."""
    mimetype = request.mimetype or ""
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        raise Problem(415, f"send the body as application/json (got {mimetype or 'no content type'})")
    raw = request.get_data(cache=False)
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise Problem(400, f"the body is not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise Problem(400, f"the body is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    except RecursionError:
        raise Problem(400, "the body is nested too deeply") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [field_error(list(e["loc"]), _message(e)) for e in exc.errors(include_url=False)]
        raise Problem(422, "the request body does not have the expected fields", errors) from None


def _message(error: dict) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown field"
    if error["type"] == "missing":
        return "missing field"
    return error["msg"]
