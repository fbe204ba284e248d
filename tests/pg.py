"""A throwaway PostgreSQL server for the test run: Debian's binaries (``make postgres`` installs
the ``postgresql`` package where they are missing), a data directory under ``build/``, a random
loopback port, its Unix socket in that directory; stopped and removed afterwards.

As root (CI, the developers' machines) the server runs as the ``postgres`` user, which owns the
data directory (``initdb`` refuses to run as root).  By hand, e.g. for ``recourse bench http``::

    .venv/bin/python -m tests.pg        # prints the URL; Ctrl-C stops the server and removes it
"""
from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BUILD = REPO / "build"
SERVER_USER = "postgres"
"""The user the server runs as when the tests run as root."""
DATABASE = "recourse"


def binaries() -> Path | None:
    """The folder of ``initdb`` and ``pg_ctl``: Debian's newest ``/usr/lib/postgresql/N/bin``, else the PATH's."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: [int(x) for x in re.findall(r"\d+", p.parent.parent.name)] or [0])
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def unavailable() -> str | None:
    """Why no throwaway server can be started here, or None."""
    if binaries() is None:
        return "PostgreSQL's binaries (initdb, pg_ctl) are not installed (`make postgres` installs Debian's postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            return f"running as root and there is no '{SERVER_USER}' user to run the server as"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThrowawayPostgres:
    """One server: :meth:`start` → :attr:`url` (``postgresql://postgres@127.0.0.1:PORT/recourse``), :meth:`stop`."""

    def __init__(self, root: Path = BUILD):
        self.root = root
        self.bin = binaries()
        self.dir: Path | None = None
        self.port = 0
        self.url = ""

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", SERVER_USER, "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if check and done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({done.returncode}): {(done.stderr or done.stdout).strip()[-1500:]}")
        return done

    def _folder(self) -> Path:
        """A new folder the server's user owns, under ``root`` (or the system's temporary folder
        where that user cannot reach ``root``)."""
        self.root.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix="pg-", dir=self.root))
        if os.geteuid() != 0:
            return folder
        user = pwd.getpwnam(SERVER_USER)
        os.chown(folder, user.pw_uid, user.pw_gid)
        reachable = subprocess.run(["runuser", "-u", SERVER_USER, "--", "test", "-w", str(folder)]).returncode == 0
        if reachable:
            return folder
        folder.rmdir()
        folder = Path(tempfile.mkdtemp(prefix="recourse-pg-"))
        os.chown(folder, user.pw_uid, user.pw_gid)
        return folder

    def start(self, attempts: int = 3) -> "ThrowawayPostgres":
        if self.bin is None:
            raise RuntimeError(unavailable() or "no PostgreSQL binaries")
        self.dir = self._folder()
        data = self.dir / "data"
        self._run("initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")
        for attempt in range(attempts):  # a port found free may be taken before the server binds it
            self.port = free_port()
            if self.resume(check=attempt == attempts - 1):
                break
        self._run("createdb", "-h", str(self.dir), "-p", str(self.port), "-U", "postgres", DATABASE)
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE}"
        return self

    def resume(self, check: bool = True) -> bool:
        """Start the server (again, after :meth:`pause`) on its port; whether it started."""
        assert self.dir is not None
        done = self._run("pg_ctl", "-D", str(self.dir / "data"), "-l", str(self.dir / "server.log"), "-w", "-t", "60",
                         "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=200",
                         "start", check=check)
        return done.returncode == 0

    def pause(self) -> None:
        """Stop the server, keeping its data (:meth:`resume` starts it again)."""
        if self.dir is not None and (self.dir / "data" / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "immediate", "-w", "stop", check=False)

    def stop(self) -> None:
        """Stop the server and remove its folder."""
        if self.dir is None:
            return
        self.pause()
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None

    def __enter__(self) -> "ThrowawayPostgres":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM, too, stops the server and removes its folder
    with ThrowawayPostgres() as server:
        print(server.url, flush=True)
        try:
            while True:
                signal.pause()
        except KeyboardInterrupt:
            pass
