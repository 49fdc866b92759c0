"""Delivery tracking: ask status.php, within its limits, until each phone's status is final.

The provider answers status.php at most once a minute in its list form, and at most five
times a minute for one message: so one list request a minute, with at most five phones of a
message in it. When the last request was made is kept in the spool (control
`status_polled_at`), written before the request goes out, so a restart never asks twice
within the minute. Statuses, and when each message is next due, are in the spool too
(relay/spool/tracking.py): a restart resumes where it stopped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from relay import provider_errors
from relay.background import Background
from relay.delivery.http import ApiClient
from relay.errors import DeliveryError, SpoolError
from relay.metrics import Metrics
from relay.model import State
from relay.parsers.api import StatusError
from relay.spool.interface import Control, Finished, Tracking

log = logging.getLogger("relay.tracking")
POLLED_KEY = "status_polled_at"
LIST_INTERVAL = 60.0  # the provider's limit: one list request a minute
MAX_PAIRS = 100  # (id, phone) pairs in one list request
LIMIT_CODE = 9  # status.php: more than allowed within a minute


class TrackerSpool(Tracking, Control, Protocol):
    """Statuses to ask and keep; the turn (one relay asks) and the pause kept in control."""


class Tracker:
    def __init__(
        self,
        spool: TrackerSpool,
        client: ApiClient,
        *,
        metrics: Metrics,
        on_undelivered: Callable[[str], None] = lambda relay_id: None,
        clock: Callable[[], float] = time.time,
        enabled: Callable[[], bool] = lambda: True,
        interval: float = LIST_INTERVAL,
        max_pairs: int = MAX_PAIRS,
    ) -> None:
        self.spool = spool
        self.client = client
        self.metrics = metrics
        self.on_undelivered = on_undelivered  # the sender's notice (notify:)
        self.clock = clock
        self.enabled = enabled  # provider.track_delivery in force: off, the loop touches nothing
        self.interval = interval
        self.max_pairs = max_pairs
        self.requests = 0  # list requests made by this process (tests, stats)
        self.loop = Background("tracking", self._step, log=log, retry=interval / 4)

    async def tick(self) -> bool:
        """One round: settle what is out of time, then one list request if one is allowed and
        anything is due. True when a request was made."""
        now = self.clock()
        self._finished(await self.spool.expire_tracking(now))
        last = float((await self.spool.control()).get(POLLED_KEY, "0"))
        if now < last + self.interval:
            return False
        pairs = await self.spool.tracking_due(now, self.max_pairs)
        if not pairs:
            return False
        # Written first, as a turn taken: if we die after asking, the next start still waits
        # out the minute, and of two relays sharing the spool only one asks in it.
        if not await self.spool.take_turn(POLLED_KEY, now, self.interval):
            return False
        self.requests += 1
        try:
            found = await self.client.statuses(pairs)
        except StatusError as exc:
            limited = exc.code == LIMIT_CODE
            self.metrics.status_polls.labels("limit" if limited else "error").inc()
            log.warning(
                "event=status_refused code=%d error=%r pairs=%d", exc.code, exc.description, len(pairs)
            )
            if limited:  # asked too often (another relay with this login?): skip a minute more
                await self.spool.set_control(POLLED_KEY, f"{now + self.interval:.3f}")
            return True
        except DeliveryError as exc:
            self.metrics.status_polls.labels("error").inc()
            log.warning("event=status_failed error=%r pairs=%d", exc.text, len(pairs))
            return True
        self.metrics.status_polls.labels("ok").inc()
        for status in found:
            if provider_errors.status_final(status.status):
                label = str(status.status) if status.status in provider_errors.STATUSES else "other"
                self.metrics.phone_statuses.labels(label).inc()
        self._finished(await self.spool.record_statuses(found, pairs, now))
        return True

    def _finished(self, done: list[Finished]) -> None:
        report(done, self.metrics, self.on_undelivered)

    def wake(self) -> None:
        self.loop.wake()

    def start(self) -> None:
        self.loop.start()

    async def stop(self) -> None:
        await self.loop.stop()

    async def _step(self) -> float:
        try:
            if self.enabled():
                await self.tick()
        except SpoolError as exc:
            log.error("event=tracking_failed error=%r", str(exc))
        # A quarter of the interval: a due message waits at most that beyond its time.
        return self.interval / 4


def report(done: list[Finished], metrics: Metrics, on_undelivered: Callable[[str], None]) -> None:
    """Messages tracking finished (by status.php or by SMPP receipts): logged, counted, and
    the sender told of an undelivered one."""
    for f in done:
        metrics.requests.labels(f.state.value).inc()
        level = logging.INFO if f.state is State.DELIVERED else logging.WARNING
        log.log(level, "event=%s id=%s detail=%r", f.state.value.replace("-", "_"), f.relay_id, f.detail)
        if f.state is State.UNDELIVERED:
            on_undelivered(f.relay_id)
