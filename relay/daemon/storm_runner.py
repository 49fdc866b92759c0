"""Runs the alert-storm planner: held alerts become digest SMS when they fall due.

One task. It runs a planner tick (spool.interface.Storm.storm_tick: plan and queue, in one spool
transaction) when the listener admits an alert due sooner than the next planned tick, and at
the time the last tick said something will be due; never less often than once a minute, so a
clock jump or a reload is picked up. The clock is injectable: tests run storms in simulated time.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable

from relay import pipeline
from relay.accept.service import Delivery
from relay.background import Background
from relay.config.current import Current
from relay.ids import new_id
from relay.spool.interface import Storm

log = logging.getLogger("relay.storm")
MAX_SLEEP = 60.0
RETRY_AFTER_ERROR = 5.0


class StormRunner:
    def __init__(
        self,
        spool: Storm,
        current: Current,
        hostname: str,
        delivery: Delivery,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.spool = spool
        self.current = current  # the config in force
        self.hostname = hostname
        self.delivery = delivery
        self.clock = clock
        self.ticks = 0
        self._next: float | None = None
        self.loop = Background("storm-runner", self._tick, log=log, retry=RETRY_AFTER_ERROR)

    def start(self) -> None:
        self.loop.start()

    def due(self, at: float) -> None:
        """An alert was admitted that is due at `at`: look sooner if that is before the plan."""
        if self._next is None or at < self._next:
            self.loop.wake()

    @property
    def next_tick(self) -> float | None:
        """When the last tick said something will be due (the planner's clock), if anything."""
        return self._next

    def wake(self) -> None:
        self.loop.wake()

    async def stop(self) -> None:
        await self.loop.stop()

    async def _tick(self) -> float:
        """One planner tick; returns how long to sleep."""
        now = self.clock()
        compose = functools.partial(
            pipeline.storm_outgoing,
            now=now,
            config=self.current.config,
            hostname=self.hostname,
            new_id=new_id,
        )
        try:
            result = await self.spool.storm_tick(now=now, compose=compose)
        except Exception:  # the spool logs and reports its own failures; keep planning
            log.exception("event=storm_tick_failed")
            self._next = now + RETRY_AFTER_ERROR
            return RETRY_AFTER_ERROR
        self.ticks += 1
        for row in result.rows:
            log.info(
                "event=digest id=%s route=%s phones=%d parts=%d",
                row.id,
                row.route,
                len(row.phones),
                row.parts,
            )
        for d in result.digests:
            log.info("event=digest_alerts route=%s alerts=%s left=%d", d.route, ",".join(d.alerts), d.left)
        if result.rows:
            self.delivery.wake()
        self._next = result.next_wake
        if result.next_wake is None:
            return MAX_SLEEP
        return min(MAX_SLEEP, max(0.0, result.next_wake - self.clock()))
