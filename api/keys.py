"""API keys: stored only as SHA-256 digests, checked in constant time.

A key is a random URL-safe token (``recourse keys new``); the service keeps ``sha256:<hex>`` of
it, and the key's role (:data:`ROLES`): each stored answer belongs to the key that asked for it.  A presented key is hashed and compared with every stored digest by
:func:`hmac.compare_digest`, without stopping at the first match, so timing reveals nothing.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

PREFIX = "sha256:"
KEY_FILE_MODE = 0o600
"""Mode of a key file ``recourse keys new --file`` creates (readable by the service's user only)."""


def hash_key(key: str) -> str:
    """``sha256:<hex>`` digest of an API key."""
    return PREFIX + hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    """A fresh random API key (256 bits)."""
    return "rk_" + secrets.token_urlsafe(32)


def is_digest(text: str) -> bool:
    body = text[len(PREFIX):] if text.startswith(PREFIX) else ""
    return len(body) == 64 and all(c in "0123456789abcdef" for c in body)


ROLES = ("client", "auditor", "admin")
"""What a key may do: ``client`` (the default) reads only the answers it created; ``auditor`` reads
every stored answer; ``admin`` reads every answer and may erase one."""


@dataclass(frozen=True)
class Client:
    """The caller a key identifies: its digest (the owner recorded with each answer) and its role."""

    digest: str
    role: str = "client"

    @property
    def reads_all(self) -> bool:
        return self.role in ("auditor", "admin")

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class KeyRing:
    """The accepted key digests and their roles; ``identify`` is constant-time in the presented key."""

    def __init__(self, digests: Iterable[str], roles: Mapping[str, str] | None = None):
        self._digests = [d.encode() for d in digests]
        bad = [d.decode() for d in self._digests if not is_digest(d.decode())]
        if bad:
            raise ValueError(f"api key digests must look like sha256:<64 hex digits>, got {bad[0][:20]!r}")
        self._roles = dict(roles or {})
        unknown = [r for r in self._roles.values() if r not in ROLES]
        if unknown:
            raise ValueError(f"unknown key role {unknown[0]!r}; roles: {', '.join(ROLES)}")

    def __len__(self) -> int:
        return len(self._digests)

    def identify(self, presented: str | None) -> Client | None:
        """The client of a presented key (None: not an accepted key); every digest is compared."""
        if not presented:
            return None
        digest = hash_key(presented).encode()
        match = None
        for stored in self._digests:
            if hmac.compare_digest(digest, stored):
                match = stored
        if match is None:
            return None
        text = match.decode()
        return Client(text, self._roles.get(text, "client"))

    def check(self, presented: str | None) -> bool:
        return self.identify(presented) is not None


@dataclass(frozen=True)
class KeyLine:
    """One line of a key file: ``[NAME] [role=auditor|admin] sha256:<hex>``."""

    name: str
    digest: str
    role: str = "client"


def read_key_file(path: Path) -> list[str]:
    """Digests from a key file (see :func:`read_key_lines`)."""
    return [line.digest for line in read_key_lines(path)]


def read_key_lines(path: Path) -> list[KeyLine]:
    """The keys of a key file: one ``sha256:<hex>`` per line, optionally after a ``name`` and a
    ``role=auditor`` or ``role=admin`` (default: a client, which reads only its own answers); ``#`` comments.

    Raises ValueError naming the file for every problem: unreadable, not UTF-8 text, a bad line.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a text key file (byte {exc.start} is not UTF-8)") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the key file ({exc.strerror or exc})") from None
    keys = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        *words, digest = line.split()
        if not is_digest(digest):
            raise ValueError(f"{path}, line {number}: expected 'sha256:<64 hex digits>' (optionally after a name)")
        role, names = "client", []
        for word in words:
            if word.startswith("role="):
                role = word[len("role="):]
                if role not in ROLES:
                    raise ValueError(f"{path}, line {number}: unknown role {role!r}; roles: {', '.join(ROLES)}")
            else:
                names.append(word)
        if len(names) > 1:
            raise ValueError(f"{path}, line {number}: expected '[NAME] [role=ROLE] sha256:<hex>', got {len(names)} names")
        keys.append(KeyLine(names[0] if names else "", digest, role))
    return keys


def add_to_key_file(path: Path, name: str, digest: str, role: str = "client") -> None:
    """Append the line ``name [role=ROLE] digest`` to the key file at ``path``, creating it with mode 0600
    (an existing file keeps its mode).  Raises ValueError for a name :func:`read_key_file` would
    not read back (empty, with spaces or ``#``) or a bad digest; OSError when it cannot write."""
    if not name or any(c.isspace() or c == "#" for c in name):
        raise ValueError(f"{name!r} is not a usable key name: use one word without spaces or '#'")
    if not is_digest(digest):
        raise ValueError("expected a digest 'sha256:<64 hex digits>'")
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    prefix = ""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, KEY_FILE_MODE)
        os.fchmod(fd, KEY_FILE_MODE)  # exactly 0600, whatever the umask
    except FileExistsError:
        with open(path, "rb") as existing:  # start a new line if the last one is unfinished
            if existing.seek(0, os.SEEK_END) > 0:
                existing.seek(-1, os.SEEK_END)
                prefix = "" if existing.read(1) == b"\n" else "\n"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        f.write(f"{prefix}{name} {'' if role == 'client' else f'role={role} '}{digest}\n")
