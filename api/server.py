"""``recourse serve``: the app under gunicorn (threaded workers), never Flask's development server.

Each worker process builds its own app (bundle, engine, log connection) after the fork; threads
in a worker share one micro-batching solver, so concurrent requests are solved together.  With
more than one worker, Prometheus metrics are aggregated through a multiprocess directory
(``/tmp/recourse-metrics-*``, removed when the server shuts down).

Settings that cannot work (an unusable ``database``: a bad file, a PostgreSQL server that cannot be reached, a ``host`` that does not resolve, a ``port``
that cannot be bound) are found by :func:`preflight` before gunicorn starts, and reported by
:func:`serve` in one line naming the ``recourse serve`` option (``--database``, ...); a worker
that cannot build the app prints the error's message, not a traceback.
Requests that gunicorn refuses before the app sees them (a request line over 4,094 bytes, too
many or too large headers, malformed framing) get problem details too (:mod:`api.worker`).
"""
from __future__ import annotations

import errno
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.errors import AppImportError

from .config import ServiceConfig
from .worker import WORKER_CLASS


class ServeError(ValueError):
    """A server setting that cannot work: ``field`` (``database``, ``host`` or ``port``) and
    ``detail``, e.g. ``ServeError("port", "8080: already in use on 127.0.0.1")``; its message is
    ``"<field> <detail>"``."""

    def __init__(self, field: str, detail: str):
        super().__init__(f"{field} {detail}")
        self.field = field
        self.detail = detail

    def option_message(self) -> str:
        """The message with the field as the ``recourse serve`` option that sets it (``--database ...``)."""
        return f"--{self.field.replace('_', '-')} {self.detail}"


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
            try:
                return create_app(self.service_config)
            except Exception as exc:  # gunicorn prints this message (traceback only at gunicorn's debug log level)
                raise AppImportError(f"error: {exc or type(exc).__name__}") from exc


def _when_ready(server: Any) -> None:
    """Gunicorn hook: the socket listens; the workers are loading the model."""
    print(f"recourse service listening on http://{server.cfg.bind[0]}; {server.cfg.workers} workers loading the model "
          "(stop with Ctrl-C or SIGTERM)", file=sys.stderr, flush=True)


def _post_worker_init(worker: Any) -> None:
    """Gunicorn hook, in a worker: its app is built (model loaded, solver warm); it answers from now on."""
    print(f"recourse service ready: worker {worker.pid} answers", file=sys.stderr, flush=True)


def _on_exit(server: Any) -> None:
    """Gunicorn hook: the arbiter is about to exit (after its workers)."""
    print("recourse service stopped", file=sys.stderr, flush=True)


def _child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def check_database(database: Path | str, sync: str = "full") -> None:
    """Open (creating and migrating if needed) the explanation log ``database`` (a file path or a
    PostgreSQL URL) once and close it again, or raise :class:`ServeError` (a path that cannot be
    a database file, a server that cannot be reached, a URL of an unsupported kind, ...)."""
    from .log import ExplanationLog, LogOpenError

    try:
        ExplanationLog(database, sync=sync).close()  # nothing is left open across gunicorn's fork
    except (LogOpenError, ValueError) as exc:
        raise ServeError("database", str(exc)) from None


def check_address(host: str, port: int) -> None:
    """Raise :class:`ServeError` unless ``host`` resolves and ``host:port`` can be bound now."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise ServeError("host", f"{host}: not a known host name or address ({getattr(exc, 'strerror', None) or exc})") from None
    except OverflowError:
        raise ServeError("port", f"{port}: not a port number (1 to 65535)") from None
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRNOTAVAIL:
                raise ServeError("host", f"{host}: not an address of this machine ({exc.strerror})") from None
            if exc.errno == errno.EADDRINUSE:
                raise ServeError("port", f"{port}: already in use on {host} (another server is listening there)") from None
            raise ServeError("port", f"{port}: cannot listen on {host} ({exc.strerror or exc})") from None


def preflight(config: ServiceConfig, host: str, port: int) -> None:
    """Check, before any worker starts, what would otherwise stop every worker; raises :class:`ServeError`."""
    check_database(config.database, config.log_sync)
    check_address(host, port)


def serve(config: ServiceConfig, host: str = "127.0.0.1", port: int = 8080, workers: int = 2, threads: int = 16,
          timeout: int = 120) -> None:
    """Run the service until interrupted (SIGINT/SIGTERM shut it down gracefully).

    A setting that cannot work (see :func:`preflight`) is printed as one ``error:`` line naming
    its ``recourse serve`` option, and the process exits with status 2 before gunicorn starts;
    otherwise one line on stderr says where the service listens.
    """
    try:
        preflight(config, host, port)
    except ServeError as exc:
        print(f"error: {exc.option_message()}", file=sys.stderr)
        raise SystemExit(2) from None
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"  # an IPv6 address in brackets
    from .log import describe

    print(f"recourse service starting on http://{bind} (bundle {config.bundle}, log {describe(config.database)}, {workers} workers)",
          file=sys.stderr, flush=True)
    options: dict[str, Any] = {
        "bind": bind, "workers": workers, "worker_class": WORKER_CLASS, "threads": threads,
        "timeout": timeout, "graceful_timeout": 30, "keepalive": 30, "accesslog": None, "errorlog": "-",
        "loglevel": "warning", "preload_app": False, "when_ready": _when_ready, "post_worker_init": _post_worker_init,
        "on_exit": _on_exit,
    }
    metrics_dir = None
    if workers > 1:
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # one given by the caller is the caller's to remove
            metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="recourse-metrics-")
        options["child_exit"] = _child_exit
    arbiter = os.getpid()
    try:
        _Server(config, options).run()  # returns or raises SystemExit when gunicorn shuts down
    finally:
        # a worker's exit (SystemExit raised in the forked child) unwinds through here too: only
        # the arbiter, after its workers are gone, removes the directory they share
        if metrics_dir is not None and os.getpid() == arbiter:
            shutil.rmtree(metrics_dir, ignore_errors=True)
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
