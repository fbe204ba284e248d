"""What ``recourse serve`` does before the server runs: collect the API keys, check the options,
load (and for the demo, build) the bundle in a separate process, make the service's settings."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from . import CommandError

if TYPE_CHECKING:
    from api.config import ServiceConfig

LOG_SYNC = ("full", "normal")

_LOAD_BUNDLE = ("import sys; from recourse.bundle import demo_bundle, load_bundle; from recourse.errors import BundleError\n"
                "try:\n    b = load_bundle(sys.argv[1]) if sys.argv[1] else demo_bundle('german')\n    b.engine()\n"
                "except (BundleError, ValueError, OSError) as exc:\n    sys.exit(f'error: {exc}')\nprint(b.path)")


def check_log_sync(value: str) -> str:
    """``--log-sync``: full or normal."""
    if value not in LOG_SYNC:
        raise CommandError(f"--log-sync: expected full or normal, got {value!r}")
    return value


def key_digests(api_keys: Path | None, no_auth: bool) -> list[str]:
    """Digests of the accepted keys: ``$RECOURSE_API_KEY`` and the key file; at least one unless ``no_auth``."""
    from api.keys import hash_key, read_key_file

    digests: list[str] = []
    if os.environ.get("RECOURSE_API_KEY"):
        digests.append(hash_key(os.environ["RECOURSE_API_KEY"]))
    if api_keys is not None:
        if not api_keys.is_file():
            raise CommandError(f"--api-keys {api_keys}: no such file")
        try:
            digests += read_key_file(api_keys)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
    if not no_auth and not digests:
        raise CommandError("no API keys: give --api-keys FILE (make one with `recourse keys new`), set RECOURSE_API_KEY, "
                           "or use --no-auth for a local demo")
    return digests


def key_roles(api_keys: Path | None) -> dict[str, str]:
    """{digest: role} of the key file's auditor and admin keys (``role=`` on their lines)."""
    from api.keys import read_key_lines

    if api_keys is None or not api_keys.is_file():
        return {}
    try:
        return {line.digest: line.role for line in read_key_lines(api_keys) if line.role != "client"}
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def resolve_bundle(bundle: Path | None) -> Path:
    """The bundle's directory, loaded once (and for the demo, built if needed) in a separate
    process, so that no torch thread pool exists before the workers fork."""
    done = subprocess.run([sys.executable, "-c", _LOAD_BUNDLE, str(bundle or "")], capture_output=True, text=True)
    if done.returncode != 0:
        text = done.stderr.strip()
        starts = [m.end() for m in re.finditer(r"(?m)^error: ", text)]  # the whole message, every line of it
        raise CommandError(text[starts[-1]:] if starts else text.splitlines()[-1] if text
                           else f"could not load the bundle (exit {done.returncode})")
    return Path(done.stdout.strip().splitlines()[-1])


def database_target(database: str | None) -> "Path | str":
    """``--database``: a file path (SQLite) or a ``postgresql://`` URL; none given:
    ``$RECOURSE_DATABASE``, else the default file (:func:`api.log.default_database`)."""
    from api.log import ENVIRONMENT, default_database, parse_target

    try:
        return parse_target(database) if database is not None else default_database()
    except ValueError as exc:
        raise CommandError(f"--database {exc}" if database is not None else f"${ENVIRONMENT} {exc}") from None


def service_config(bundle: Path | None, digests: list[str], no_auth: bool, database: str | None, max_batch: int,
                   time_limit: float, log_sync: str, batch_wait_ms: float,
                   roles: dict[str, str] | None = None, cors_origins: list[str] | None = None) -> "ServiceConfig":
    """The service's settings from the ``serve`` options (``digests``: :func:`key_digests`); the
    bundle is loaded first (:func:`resolve_bundle`)."""
    from api.config import ServiceConfig

    target = database_target(database)
    path = resolve_bundle(bundle)
    return ServiceConfig(bundle=path, database=target,
                         api_key_hashes=digests, api_key_roles=roles or {}, auth_required=not no_auth,
                         max_batch=max_batch, time_limit=time_limit,
                         log_sync=log_sync, batch_wait=batch_wait_ms / 1000.0, cors_origins=cors_origins or [])
