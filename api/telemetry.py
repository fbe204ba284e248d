"""Prometheus metrics: request counts and latencies per endpoint, recourse outcomes, solver batches.

Label values are bounded whatever clients send: ``endpoint`` is a route rule (``/v1/recourse/<answer_id>``)
or ``(unmatched)``, ``method`` one of :data:`METHODS` or ``OTHER``, ``status`` an HTTP status code.

Each app has its own registry (no global state).  Under a multi-process server
(``PROMETHEUS_MULTIPROC_DIR`` set before start), values are shared through prometheus_client's
multiprocess files and the exposition aggregates every worker.
"""
from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
CONTENT_TYPE = CONTENT_TYPE_LATEST
METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"})
"""HTTP methods kept as ``method`` label values; any other method is counted as :data:`OTHER_METHOD`."""
OTHER_METHOD = "OTHER"
UNMATCHED = "(unmatched)"
"""The ``endpoint`` label of a request that matched no route (whatever its path)."""


def method_label(method: str) -> str:
    """``method`` if it is a standard one, else ``OTHER``: invented methods cannot add series."""
    return method if method in METHODS else OTHER_METHOD


class Telemetry:
    """The service's metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("recourse_http_requests", "HTTP requests by endpoint, method and status code.",
                                ["endpoint", "method", "status"], registry=self.registry)
        self.latency = Histogram("recourse_http_request_duration_seconds", "Time to answer a request, by endpoint.",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.outcomes = Counter("recourse_outcomes", "Recourse answers given, by status.", ["status"], registry=self.registry)
        self.batch_rows = Histogram("recourse_solver_batch_rows", "Rows per engine call (micro-batches and batch requests).",
                                    buckets=BATCH_BUCKETS, registry=self.registry)
        self.shed = Counter("recourse_shed_rows", "Applicant rows not solved or not logged: overloaded (refused "
                            "with 503 at once) or abandoned (the request's deadline passed or its client left).",
                            ["reason"], registry=self.registry)
        self.promises = Gauge("recourse_earlier_promises", "Answers of earlier bundles re-checked on this bundle at "
                              "start-up, by outcome (kept, broken, uncheckable).", ["outcome"], registry=self.registry,
                              multiprocess_mode="max")

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        """Count one request; ``endpoint`` is a route's rule or :data:`UNMATCHED` (never the raw path),
        so the labels take boundedly many values."""
        self.requests.labels(endpoint, method_label(method), str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def outcome(self, status: str) -> None:
        self.outcomes.labels(status).inc()

    def exposition(self) -> bytes:
        """The metrics in Prometheus text format (all workers when multi-process)."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
