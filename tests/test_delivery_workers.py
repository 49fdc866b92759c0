"""Delivery workers against a real spool and the real outbox transport."""

from __future__ import annotations

from pathlib import Path

from relay.delivery.outbox import OutboxTransport
from relay.delivery.workers import Deliverer
from relay.metrics import Metrics
from relay.spool.messages import Row
from relay.spool.sqlite import SqliteSpool
from tests.fakes import wait_for
from tests.helpers import make_config, render


class HandOverWhileLooking(SqliteSpool):
    """Hands fresh rows to delivery at the worst moment: while an idle worker is still
    looking for work (between its claim and its nap), as a listener's 250 can."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.deliverer: Deliverer | None = None
        self.pending: list[Row] = []

    async def next_due(self) -> float | None:
        due = await super().next_due()
        if self.pending and self.deliverer is not None:
            self.deliverer.take(self.pending)
            self.pending = []
        return due


async def test_a_row_handed_over_while_a_worker_looks_is_not_left_for_the_idle_poll(tmp_path: Path) -> None:
    spool = HandOverWhileLooking(tmp_path / "spool.db")
    await spool.open()
    mails = render(b"Subject: x\r\n\r\ny", ["79991234567@sms.example.com"], make_config()).provider_mails
    spool.pending = (await spool.enqueue(mails, mail_from="a@b", inbound_id="", claimed=True)).rows
    outbox = tmp_path / "outbox"
    deliverer = Deliverer(
        spool, lambda: OutboxTransport(outbox), lambda m: m, metrics=Metrics(), concurrency=1,
        idle_poll=3600,  # a lost wake-up would leave the row waiting an hour
    )  # fmt: skip
    spool.deliverer = deliverer
    deliverer.start()
    try:
        await wait_for(lambda: (outbox / f"{mails[0].relay_id}.eml").exists(), timeout=10)
        assert spool.pending == []  # it was handed over in the race window, not before
    finally:
        await deliverer.stop(5)
        await spool.close()
