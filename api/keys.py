"""API keys: stored only as SHA-256 digests, checked in constant time.

A key is a random URL-safe token (``recourse keys new``); the service keeps ``sha256:<hex>`` of
it.  A presented key is hashed and compared with every stored digest by
:func:`hmac.compare_digest`, without stopping at the first match, so timing reveals nothing.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import Iterable

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


class KeyRing:
    """The accepted key digests; ``check`` is constant-time in the presented key."""

    def __init__(self, digests: Iterable[str]):
        self._digests = [d.encode() for d in digests]
        bad = [d.decode() for d in self._digests if not is_digest(d.decode())]
        if bad:
            raise ValueError(f"api key digests must look like sha256:<64 hex digits>, got {bad[0][:20]!r}")

    def __len__(self) -> int:
        return len(self._digests)

    def check(self, presented: str | None) -> bool:
        if not presented:
            return False
        digest = hash_key(presented).encode()
        match = False
        for stored in self._digests:
            match |= hmac.compare_digest(digest, stored)
        return match


def read_key_file(path: Path) -> list[str]:
    """Digests from a key file: one ``sha256:<hex>`` per line, optional ``name`` before it; ``#`` comments.

    Raises ValueError naming the file for every problem: unreadable, not UTF-8 text, a bad line.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a text key file (byte {exc.start} is not UTF-8)") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the key file ({exc.strerror or exc})") from None
    digests = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        digest = line.split()[-1]
        if not is_digest(digest):
            raise ValueError(f"{path}, line {number}: expected 'sha256:<64 hex digits>' (optionally after a name)")
        digests.append(digest)
    return digests


def add_to_key_file(path: Path, name: str, digest: str) -> None:
    """Append the line ``name digest`` to the key file at ``path``, creating it with mode 0600
    (an existing file keeps its mode).  Raises ValueError for a name :func:`read_key_file` would
    not read back (empty, with spaces or ``#``) or a bad digest; OSError when it cannot write."""
    if not name or any(c.isspace() or c == "#" for c in name):
        raise ValueError(f"{name!r} is not a usable key name: use one word without spaces or '#'")
    if not is_digest(digest):
        raise ValueError("expected a digest 'sha256:<64 hex digits>'")
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
        f.write(f"{prefix}{name} {digest}\n")
