"""SMPP deliver_sm -> the spool (issue 24): what the provider's sessions push, read in the core
(relay/parsers/receipt.py) and written in batches, in order, by one background loop.

The session's reader hands each deliver_sm over at once (smpp34 has already answered it), so
nothing here may block it: `deliver` reads and queues, the loop writes. A batch the spool cannot
take stays queued and is written after (a receipt is not lost to a spool outage). The queue is
bounded (MAX_PENDING): past it the oldest receipt is dropped and logged; its phone is then
settled as one without a receipt (status.php with track_delivery, else status-unknown).
What the receipts finish is logged, counted and, when undelivered, told to the sender, as
status.php tracking's results are (relay/delivery/tracker.py `report`).
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from relay.background import Background
from relay.delivery.tracker import report
from relay.errors import SpoolError
from relay.metrics import Metrics
from relay.model import Inbound, PartStatus
from relay.parsers import receipt
from relay.spool.interface import Tracking

if TYPE_CHECKING:
    import smpp34

log = logging.getLogger("relay.smpp")
MAX_PENDING = 20_000  # deliver_sm read but not yet written
BATCH = 500  # written in one transaction
IDLE = 60.0  # seconds the loop sleeps when nothing is queued (it is woken by each arrival)
RETRY = 5.0  # after a spool failure


class ReceiptSpool(Tracking, Protocol):
    """Receipts onto their parts; the messages they finish."""


class Receipts:
    def __init__(
        self,
        spool: ReceiptSpool,
        *,
        metrics: Metrics,
        on_undelivered: Callable[[str], None] = lambda relay_id: None,
        clock: Callable[[], float] = time.time,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self.spool = spool
        self.metrics = metrics
        self.on_undelivered = on_undelivered  # the sender's notice (notify:)
        self.clock = clock
        self.max_pending = max_pending
        self.pending: collections.deque[PartStatus] = collections.deque()
        self.to_settle: dict[str, None] = {}
        self.dropped = 0
        self.loop = Background("smpp-receipts", self._step, log=log, retry=RETRY)

    def deliver(self, event: smpp34.DeliverSmEvent) -> None:
        """A session's deliver_sm (its on_deliver): read, logged, queued for the spool."""
        found = receipt.read(
            event.esm_class, event.short_message, {t.tag: t.value for t in event.tlvs},
            source=event.source_addr, data_coding=event.data_coding,
        )  # fmt: skip
        self.metrics.smpp_inbound.labels(found.kind.value).inc()
        if found.kind is Inbound.RECEIPT:
            log.info(
                "event=smpp_receipt message_id=%s status=%d err=%d", found.message_id, found.status, found.err
            )
        else:  # kept in the spool (smpp_inbound) as well as logged
            log.warning("event=smpp_deliver_sm kind=%s digest=%r", found.kind.value, found.digest)
        if len(self.pending) >= self.max_pending:
            lost = self.pending.popleft()
            self.dropped += 1
            log.error("event=smpp_receipt_dropped digest=%r note='the spool is behind'", lost.digest)
        self.pending.append(found)
        self.loop.wake()

    def settle(self, relay_id: str) -> None:
        """A request's parts were written: receipts that came before them can finish it now."""
        self.to_settle[relay_id] = None
        self.loop.wake()

    def start(self) -> None:
        self.loop.start()

    async def stop(self) -> None:
        """Write what is queued (bounded by the spool's own timeouts), then end the loop."""
        await self.loop.stop()
        if self.pending or self.to_settle:
            await self._step()

    async def _step(self) -> float:
        while self.pending or self.to_settle:
            batch = [self.pending[i] for i in range(min(BATCH, len(self.pending)))]
            ids = list(self.to_settle)
            try:
                done = await self.spool.record_receipts(batch, ids, self.clock())
            except SpoolError as exc:
                log.error("event=smpp_receipts_unwritten pending=%d error=%r", len(self.pending), str(exc))
                return RETRY
            for _ in batch:
                self.pending.popleft()
            for relay_id in ids:
                self.to_settle.pop(relay_id, None)
            report(done, self.metrics, self.on_undelivered)
        return IDLE
