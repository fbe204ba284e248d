"""``recourse serve``: the app under gunicorn (threaded workers), never Flask's development server.

Each worker process builds its own app (bundle, engine, log connection) after the fork; threads
in a worker share one micro-batching solver, so concurrent requests are solved together.  With
more than one worker, Prometheus metrics are aggregated through a multiprocess directory.
"""
from __future__ import annotations

import os
import tempfile
from typing import Any

from gunicorn.app.base import BaseApplication

from .config import ServiceConfig


class _Server(BaseApplication):
    def __init__(self, config: ServiceConfig, options: dict[str, Any]):
        self.service_config = config
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        import warnings

        import torch

        from . import create_app

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(self.options["workers"])))

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the no-auth warning is printed once by serve()
            return create_app(self.service_config)


def _child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def serve(config: ServiceConfig, host: str = "127.0.0.1", port: int = 8080, workers: int = 2, threads: int = 16,
          timeout: int = 120) -> None:
    """Run the service until interrupted (SIGINT/SIGTERM shut it down gracefully)."""
    options: dict[str, Any] = {
        "bind": f"{host}:{port}", "workers": workers, "worker_class": "gthread", "threads": threads,
        "timeout": timeout, "graceful_timeout": 30, "keepalive": 30, "accesslog": None, "errorlog": "-",
        "loglevel": "warning", "preload_app": False,
    }
    if workers > 1:
        os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="recourse-metrics-"))
        options["child_exit"] = _child_exit
    _Server(config, options).run()
