"""The gunicorn worker of ``recourse serve``: gthread, with problem details for the errors that
gunicorn answers itself.

Requests that fail before the app sees them (a request line over 4,094 bytes: 414; more than 100
headers or one over 8,190 bytes: 431; a NUL byte in a header, obsolete line folding, a negative
or duplicate Content-Length, both Content-Length and Transfer-Encoding: 400; an unsupported
transfer coding: 501) are answered by gunicorn's own error writer, which sends HTML.  This worker
replaces that writer, in the worker process only, by one that sends the same status as an
``application/problem+json`` body like every other error of the service.
"""
from __future__ import annotations

import json

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker

from .problems import PROBLEM_TYPE, clip

SLUGS = {400: "malformed-request", 403: "forbidden", 414: "request-line-too-long", 417: "expectation-failed",
         431: "headers-too-large", 500: "internal-error", 501: "not-implemented"}


def problem_bytes(status: int, reason: str, detail: str) -> bytes:
    """A complete HTTP/1.1 response (Connection: close) with a problem-details body."""
    body = json.dumps({"type": PROBLEM_TYPE + SLUGS.get(status, "malformed-request"), "title": reason, "status": status,
                       "detail": clip(detail or reason)}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/problem+json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
    return head + body


def write_problem(sock, status_int: int, reason: str, mesg: str) -> None:
    """Drop-in for ``gunicorn.util.write_error``: the same status, as problem details."""
    util.write_nonblock(sock, problem_bytes(int(status_int), reason, mesg))


class ProblemWorker(ThreadWorker):
    """gthread worker whose own error responses are problem details (see the module docstring)."""

    def init_process(self) -> None:
        util.write_error = write_problem  # the one writer gunicorn's handle_error calls
        super().init_process()


WORKER_CLASS = f"{__name__}.ProblemWorker"
"""The ``worker_class`` setting that names :class:`ProblemWorker`."""
