"""SMTP AUTH users: a file of `user:scrypt$...` lines, checked in constant time.

Create a line with `smsc-relay passwd USER` (it asks for the password).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from pathlib import Path

# scrypt parameters: ~50 ms per check on a small server, 16 MiB of memory.
N, R, P = 2**14, 8, 1


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=N, r=R, p=P, dklen=32)
    return f"scrypt${N}${R}${P}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=32
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, base64.b64decode(digest))


def load_users(path: Path) -> dict[str, str]:
    """user -> stored hash; raises ValueError naming the bad line (never echoing a hash)."""
    users: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, stored = line.partition(":")
        if not sep or not user or not stored.startswith("scrypt$") or stored.count("$") != 5:
            raise ValueError(f"line {number}: expected user:scrypt$... (made by `smsc-relay passwd USER`)")
        users[user] = stored
    return users
