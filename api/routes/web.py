"""The pages a person opens: the console at ``/`` and the API documentation at ``/docs`` (no API
key needed to load them; the console asks for one).  Every asset ships with the package: the
console's own files in ``api/static``, Swagger UI 5 (which reads OpenAPI 3.1) from the
``swagger-ui-py`` package; nothing is fetched from another site."""
from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, abort, send_from_directory

STATIC = Path(__file__).resolve().parent.parent / "static"
ASSETS = {"console.html", "console.js", "console.css"}
DOCS_ASSETS = {"swagger-ui.css", "swagger-ui-bundle.js"}
DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>recourse API</title><link rel="icon" href="data:,"><link rel="stylesheet" href="/docs/assets/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script></body></html>
"""
DOCS_INIT = """window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis], layout: "BaseLayout"});
"""

bp = Blueprint("web", __name__)


def _swagger_dir() -> Path:
    import swagger_ui

    return Path(swagger_ui.__file__).resolve().parent / "static"


@bp.get("/")
def console() -> Response:
    return send_from_directory(STATIC, "console.html", mimetype="text/html", max_age=0)


@bp.get("/static/<name>")
def static_file(name: str) -> Response:
    if name not in ASSETS:
        abort(404)
    return send_from_directory(STATIC, name, max_age=300)


@bp.get("/docs")
def docs() -> Response:
    return Response(DOCS_PAGE, mimetype="text/html")


@bp.get("/docs/init.js")
def docs_init() -> Response:
    return Response(DOCS_INIT, mimetype="text/javascript")


@bp.get("/docs/assets/<name>")
def docs_asset(name: str) -> Response:
    if name not in DOCS_ASSETS:
        abort(404)
    return send_from_directory(_swagger_dir(), name, max_age=3600)
