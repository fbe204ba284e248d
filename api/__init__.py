"""The HTTP recourse service: ``create_app(config)`` builds a Flask app (no module-level state).

Blueprints: :mod:`api.routes.v1` (recourse, batch, predict, stored answers, schema, models) and
:mod:`api.routes.meta` (healthz, readyz, metrics, openapi.json).  Work is done by
:class:`api.service.RecourseService`; answers are logged in :class:`api.log.ExplanationLog`.
"""
from __future__ import annotations

import time
import warnings
from typing import Any, Mapping

from flask import Flask, g, request

from .config import ServiceConfig

__all__ = ["create_app", "ServiceConfig"]


def create_app(config: ServiceConfig | Mapping[str, Any] | None = None, bundle: Any = None) -> Flask:
    """Build the app: load the bundle (or use ``bundle``), open the log, warm the solver.

    ``config`` is a :class:`ServiceConfig` or a mapping of its fields.
    """
    from recourse.bundle import demo_bundle, load_bundle

    from . import problems
    from .keys import KeyRing
    from .log import ExplanationLog
    from .cors import CrossOrigin
    from .routes import meta, v1, web
    from .service import RecourseService
    from .telemetry import UNMATCHED, Telemetry

    cfg = config if isinstance(config, ServiceConfig) else ServiceConfig(**dict(config or {}))
    if cfg.auth_required and not cfg.api_key_hashes:
        raise ValueError("authentication is required but no API keys are configured (give key digests, or disable auth for a local demo)")
    if not cfg.auth_required:
        warnings.warn("recourse service running WITHOUT authentication: for local demos only", stacklevel=2)
    app = Flask("recourse_api")
    app.config.update(MAX_CONTENT_LENGTH=cfg.max_body_bytes, RECOURSE_AUTH_REQUIRED=cfg.auth_required, JSON_SORT_KEYS=False)
    if bundle is None:
        bundle = load_bundle(cfg.bundle) if cfg.bundle is not None else demo_bundle("german")
    telemetry = Telemetry()
    service = RecourseService(bundle, cfg, ExplanationLog(cfg.database, sync=cfg.log_sync), telemetry)
    service.warm_up()
    service.check_earlier_promises()
    app.extensions.update(recourse=service, recourse_keys=KeyRing(cfg.api_key_hashes, cfg.api_key_roles), recourse_telemetry=telemetry)
    problems.register(app)

    @app.before_request
    def _start_clock() -> None:  # registered first: runs before the authentication hook
        g.started = time.perf_counter()

    cors = CrossOrigin(cfg.cors_origins)
    app.before_request(cors.preflight)  # before authentication: a browser's preflight carries no key
    app.after_request(cors.allow)
    app.register_blueprint(v1.bp)  # also installs the app-wide /v1 authentication hook (before routing)
    app.register_blueprint(meta.bp)
    app.register_blueprint(web.bp)

    @app.after_request
    def _observe(response):
        endpoint = request.url_rule.rule if request.url_rule is not None else UNMATCHED  # never the raw path
        telemetry.observe(endpoint, request.method, response.status_code, time.perf_counter() - g.get("started", time.perf_counter()))
        return response

    return app
