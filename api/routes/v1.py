"""``/v1``: recourse for one applicant or a batch, decisions, stored answers, the schema, the models."""
from __future__ import annotations

import json
import socket
from typing import Any

from flask import Blueprint, Response, current_app, g, request
from werkzeug.routing import BaseConverter

from ..bodies import parse_body
from ..problems import Problem, clip
from ..schemas import BatchRequest, PredictRequest, RecourseRequest

bp = Blueprint("v1", __name__, url_prefix="/v1")


class AnswerIdConverter(BaseConverter):
    """The ``answer_id`` segment of ``/v1/recourse/<answer_id>``: any segment except the static names
    beside it (``batch``).  Refused in the pattern (not in ``to_python``), so that routing never counts
    ``/v1/recourse/batch`` as a stored answer: GET there is 405 and OPTIONS advertises only POST.
    Malformed ids still reach the view, which answers a 404 that says what an id looks like."""

    RESERVED = ("batch",)
    regex = "(?!(?:" + "|".join(RESERVED) + r")\Z)[^/]+"
    part_isolating = True  # one path segment (werkzeug would guess False from the "/" in the pattern)


bp.record_once(lambda state: state.app.url_map.converters.setdefault("answer_id", AnswerIdConverter))


def _service():
    return current_app.extensions["recourse"]


def _json(text: str, status: int = 200) -> Response:
    return Response(text, status=status, mimetype="application/json")


PREFIX = "/v1"


def _presented(name: str) -> str:
    return request.headers.get(name, "").strip()


@bp.before_app_request
def _authenticate() -> None:
    """Every request under ``/v1`` needs a valid key, checked before routing: an unknown path or a
    wrong method answers 401 without a key, never 404/405.  (An app-wide hook: a blueprint's own
    ``before_request`` does not run for URLs that match none of its routes.)

    The key comes from ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``; an empty or blank
    header does not hide a key in the other one, and either valid key is accepted.  The key's
    client (digest and role, :class:`api.keys.Client`) is ``g.client``: the owner of the answers
    it asks for (None without authentication).
    """
    g.client = None
    if not current_app.config["RECOURSE_AUTH_REQUIRED"]:
        return
    if not request.path.startswith(PREFIX) and request.blueprint != bp.name:
        return
    header = _presented("Authorization")
    scheme, _, credentials = header.partition(" ")
    bearer = scheme.lower() == "bearer"
    keys = [key for key in (credentials.strip() if bearer else "", _presented("X-API-Key")) if key]
    ring = current_app.extensions["recourse_keys"]
    clients = [ring.identify(key) for key in keys]  # a list: every presented key is checked
    client = next((c for c in clients if c is not None), None)
    if client is not None:
        g.client = client
        return
    if keys:
        detail = "wrong API key"
    elif header and not bearer:
        detail = f"the Authorization scheme {clip(scheme, 40)!r} is not supported"
    else:
        detail = "missing API key"
    raise Problem(401, f"{detail}: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
                  headers={"WWW-Authenticate": 'Bearer realm="recourse"'})


def client_gone(environ: dict) -> Any:
    """gone() for this request: whether its client has closed the connection (a zero-byte peek on
    the socket gunicorn's workers expose; always False where there is none, e.g. tests)."""
    sock = environ.get("gunicorn.socket")
    if sock is None:
        return None

    def gone() -> bool:
        try:
            return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except (BlockingIOError, InterruptedError):
            return False  # connected, nothing sent
        except OSError:
            return True

    return gone


@bp.post("/recourse")
def recourse() -> Response:
    return _json(_service().recourse(parse_body(RecourseRequest), g.client, client_gone(request.environ)))


@bp.post("/recourse/batch")
def recourse_batch() -> Response:
    return _json(_service().recourse_batch(parse_body(BatchRequest), g.client, client_gone(request.environ)))


@bp.post("/predict")
def predict() -> Response:
    return _json(_service().predict(parse_body(PredictRequest), g.client))


@bp.get("/recourse/<answer_id:answer_id>")
def stored_answer(answer_id: str) -> Response:
    return _json(_service().stored(answer_id, g.client))


@bp.delete("/recourse/<answer_id:answer_id>")
def erase_answer(answer_id: str) -> Response:
    return _json(_service().erase(answer_id, g.client))


@bp.get("/schema")
def schema() -> Response:
    return _json(_service().engine.schema.model_dump_json(exclude_none=True))


def model_info(service: Any) -> dict[str, Any]:
    """The model as ``GET /v1/models`` lists it (the OpenAPI document takes its classes from here too)."""
    meta = service.bundle.metadata
    return {
        **service.model_ref, "dataset": meta.get("dataset", ""), "model": meta.get("model", ""),
        "classes": meta.get("classes", []), "densities": meta.get("densities", []),
        "defaults": meta.get("defaults", {}), "created": meta.get("created"), "training": meta.get("training", {}),
    }


@bp.get("/models")
def models() -> Response:
    return _json(json.dumps({"models": [model_info(_service())]}))
