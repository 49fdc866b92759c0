"""Recording delivery outcomes in the spool, and keeping those it cannot take yet.

A row that was sent must never be sent again for want of its outcome, nor stranded: when the
spool fails (disk full, locked, the database gone), the write is kept in order and tried again
before any new work (relay/delivery/workers.py checks `flush` first).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from relay.errors import SpoolError
from relay.model import State
from relay.spool.interface import Messages

log = logging.getLogger("relay.delivery")


class Outcomes:
    def __init__(self, spool: Messages) -> None:
        self.spool = spool
        self._flushing = asyncio.Lock()
        self._unwritten: collections.deque[tuple[str, str, Callable[[], Awaitable[object]]]] = (
            collections.deque()
        )

    @property
    def unwritten(self) -> int:
        """Delivery outcomes waiting for the spool to take them (for /health)."""
        return len(self._unwritten)

    async def record(self, relay_id: str, state: State, **values: Any) -> None:
        """spool.finish, or, when the spool fails, kept for the next try (never lost)."""
        await self.keep(relay_id, state.value, lambda: self.spool.finish(relay_id, state, **values))

    async def keep(self, relay_id: str, what: str, write: Callable[[], Awaitable[object]]) -> bool:
        """Run a spool write; when the spool fails, keep it for `flush` (never lost)."""
        try:
            await write()
        except SpoolError as exc:
            self._unwritten.append((relay_id, what, write))
            log.error("event=outcome_unwritten id=%s state=%s error=%r", relay_id, what, str(exc))
            return False
        return True

    async def flush(self) -> bool:
        """Write what the spool could not take before; False while it still cannot. One worker
        at a time: two would write the same outcome and both take it off the list."""
        async with self._flushing:
            while self._unwritten:
                relay_id, what, write = self._unwritten[0]
                try:
                    await write()
                except SpoolError:
                    return False
                self._unwritten.popleft()
                note = "after a spool failure"
                log.warning("event=outcome_written id=%s state=%s note=%r", relay_id, what, note)
            return True
