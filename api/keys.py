"""API keys: stored only as SHA-256 digests, checked in constant time.

A key is a random URL-safe token (``recourse keys new``); the service keeps ``sha256:<hex>`` of
it.  A presented key is hashed and compared with every stored digest by
:func:`hmac.compare_digest`, without stopping at the first match, so timing reveals nothing.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path
from typing import Iterable

PREFIX = "sha256:"


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
