"""A session's transport, to write a last reply to, on asyncio's loop and on uvloop alike."""

from __future__ import annotations

import asyncio
from typing import cast


def writable(transport: asyncio.BaseTransport | None) -> asyncio.WriteTransport | None:
    """`transport` if a last reply can still be written to it, else None (gone, or closing).

    By what it does, not by its class: uvloop's transports are no asyncio.Transport subclasses,
    so `isinstance(t, asyncio.WriteTransport)` is False for every session served on uvloop."""
    if transport is None or transport.is_closing() or not callable(getattr(transport, "write", None)):
        return None
    return cast(asyncio.WriteTransport, transport)
