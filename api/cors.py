"""Cross-origin requests: which web origins' pages may call the API from a browser.

For an allowed ``Origin`` every response carries ``Access-Control-Allow-Origin`` (the origin
itself) and ``Vary: Origin``; a preflight (``OPTIONS`` with ``Access-Control-Request-Method``)
is answered 204 before authentication, since a browser sends it without the key, naming the
methods and the headers the API takes.  Other origins get no such headers (the browser then
refuses the call) and their preflight is handled like any request.
"""
from __future__ import annotations

from typing import Iterable

from flask import Response, request

METHODS = "GET, POST, DELETE, OPTIONS"
HEADERS = "Authorization, X-API-Key, Content-Type"
MAX_AGE = "600"


class CrossOrigin:
    """The CORS policy of one app (``origins``: exact origins, or ``*`` for any)."""

    def __init__(self, origins: Iterable[str]):
        self.origins = {o.rstrip("/") for o in origins}

    def allowed(self, origin: str | None) -> bool:
        return bool(origin) and ("*" in self.origins or origin.rstrip("/") in self.origins)

    def preflight(self) -> Response | None:
        """A preflight request from an allowed origin: 204 with the policy (no key needed)."""
        origin = request.headers.get("Origin")
        if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers or not self.allowed(origin):
            return None
        response = Response(status=204)
        response.headers.update({"Access-Control-Allow-Methods": METHODS, "Access-Control-Allow-Headers": HEADERS,
                                 "Access-Control-Max-Age": MAX_AGE})
        return response

    def allow(self, response: Response) -> Response:
        """Every response to an allowed origin says so."""
        origin = request.headers.get("Origin")
        if self.allowed(origin):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = "Retry-After"
            response.vary.add("Origin")
        return response
