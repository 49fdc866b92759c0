"""Relay-assigned request ids: unique in the spool, valid for the provider, sortable by time."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time


def new_id() -> str:
    """e.g. 'r19a3f0c2b1d-5e0f2a9c': milliseconds since the epoch in hex, then 32 random bits.

    At most 40 characters of [A-Za-z0-9._-], as the provider requires of an id.
    """
    return f"r{int(time.time() * 1000):x}-{secrets.token_hex(4)}"


# ---- reply tags: the provider's replies authenticated by their return path ---------------------
# Each provider mail goes out from `local+<tag>@domain`, the tag an HMAC of its relay id under a
# key only the relay knows (as BATV tags bounces). A reply that names an id must come to that
# id's tag: ids are no secret (250 texts, Subject, Message-ID), tags are.
TAG_LENGTH = 16
_TAG = re.compile(rf"[a-z2-7]{{{TAG_LENGTH}}}")


def reply_tag(key: bytes, relay_id: str) -> str:
    digest = hmac.new(key, relay_id.encode(), hashlib.sha256).digest()
    return base64.b32encode(digest).decode("ascii").lower()[:TAG_LENGTH]


def tagged(address: str, tag: str) -> str:
    local, _, domain = address.rpartition("@")
    return f"{local}+{tag}@{domain}"


def split_tag(address: str) -> tuple[str, str]:
    """(the address without its tag, the tag or "")."""
    local, _, domain = address.rpartition("@")
    base, plus, tag = local.rpartition("+")
    if plus and base and _TAG.fullmatch(tag.lower()):
        return f"{base}@{domain}", tag.lower()
    return address, ""
