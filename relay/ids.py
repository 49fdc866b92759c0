"""Relay-assigned request ids: unique in the spool, valid for the provider, sortable by time."""

from __future__ import annotations

import secrets
import time


def new_id() -> str:
    """e.g. 'r19a3f0c2b1d-5e0f2a9c': milliseconds since the epoch in hex, then 32 random bits.

    At most 40 characters of [A-Za-z0-9._-], as the provider requires of an id.
    """
    return f"r{int(time.time() * 1000):x}-{secrets.token_hex(4)}"
