"""SMTP AUTH: scrypt password hashes (`smsc-relay passwd USER` makes a users-file line) and
the authenticator aiosmtpd calls, checking in constant time."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
from collections.abc import Mapping
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from relay.smtp.session import peer_of

log = logging.getLogger("relay.listener")

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


class Authenticator:
    """aiosmtpd's `authenticator` for the users of listen.auth (PLAIN and LOGIN, inside TLS)."""

    def __init__(self, users: Mapping[str, str]) -> None:
        self.users = users
        # user -> HMAC of the last password that verified: scrypt costs ~50 ms and aiosmtpd
        # calls the authenticator synchronously, so only a first login per password pays it.
        self._verified: dict[str, bytes] = {}
        self._cache_key = secrets.token_bytes(32)

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user = auth_data.login.decode("utf-8", "replace")
        password = auth_data.password.decode("utf-8", "replace")
        stored = self.users.get(user)
        tag = hmac.new(self._cache_key, f"{user}\0{password}".encode(), "sha256").digest()
        ok = stored is not None and (
            hmac.compare_digest(self._verified.get(user, b""), tag) or verify(password, stored)
        )
        if ok:
            self._verified[user] = tag
        log.log(
            logging.INFO if ok else logging.WARNING,
            "event=auth user=%s ok=%s peer=%s",
            user,
            ok,
            peer_of(session),
        )
        return AuthResult(success=ok, handled=False)
