"""Delivery workers against a real spool and the real outbox transport."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from relay.config.current import Current
from relay.config.schema import SpoolConfig
from relay.daemon.health import Health
from relay.delivery.outbox import OutboxTransport
from relay.delivery.retry import RetryPolicy
from relay.delivery.smtp import SmtpTransport
from relay.delivery.workers import Deliverer
from relay.errors import SpoolError
from relay.metrics import Metrics
from relay.model import State
from relay.spool.messages import Row
from relay.spool.sqlite import SqliteSpool
from tests import spooldb
from tests.fakes import FakeProvider, wait_for
from tests.helpers import closed_port, make_config, render, serve_fake


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


class FailsToRecord(SqliteSpool):
    """A spool that refuses delivery's outcomes while `broken`, as a full disk does."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.broken = True

    async def finish(self, relay_id: str, state: State, *, durable: bool = False, **values: Any) -> bool:
        if self.broken:
            raise SpoolError("spool unavailable, message not accepted; try again later")
        return await super().finish(relay_id, state, durable=durable, **values)


async def test_a_spool_failure_after_sending_strands_no_row_and_sends_none_twice(tmp_path: Path) -> None:
    spool = FailsToRecord(tmp_path / "spool.db")
    await spool.open()
    cfg = make_config()
    rendered = [
        render(f"Subject: x\r\n\r\nalert {n}".encode(), [f"7999{1_000_000 + n:07d}@sms.example.com"], cfg)
        for n in range(12)
    ]
    mails = [dataclasses.replace(r.provider_mails[0], relay_id=f"m{n}") for n, r in enumerate(rendered)]
    rows = [
        r
        for m in mails
        for r in (await spool.enqueue([m], mail_from="a@b", inbound_id="", claimed=True)).rows
    ]
    outbox = tmp_path / "outbox"
    deliverer = Deliverer(
        spool, lambda: OutboxTransport(outbox), lambda m: m, metrics=Metrics(), concurrency=1
    )
    here = dataclasses.replace(cfg, spool=SpoolConfig(tmp_path / "spool.db"))
    health = Health(spool, Current(here), lambda: "", lambda: deliverer.unwritten)
    deliverer.take(rows)
    deliverer.start()
    try:
        # One sent and not recorded; nothing more is sent until the spool takes that outcome.
        await wait_for(lambda: deliverer.unwritten == 1, timeout=10)
        assert "delivery outcome(s) waiting to be recorded" in await health.check()
        spool.broken = False  # the disk has room again

        async def states() -> set[State]:
            return {r.state for r in [await spool.get(m.relay_id) for m in mails] if r}

        for _ in range(400):  # bounded: FAULT_NAP (5 s) and a few seconds of writing
            if await states() == {State.DRY_RUN}:
                break
            await asyncio.sleep(0.05)
        assert await states() == {State.DRY_RUN}  # every row recorded, none left `sending`
        assert len(list(outbox.glob("*.eml"))) == 12  # each written once: nothing sent twice
        assert deliverer.unwritten == 0 and await health.check() == ""
    finally:
        await deliverer.stop(5)
        await spool.close()


async def test_two_workers_failing_at_once_grow_the_pause_once(tmp_path: Path) -> None:
    spool = SqliteSpool(tmp_path / "spool.db")
    await spool.open()
    rendered = [
        render(f"Subject: x\r\n\r\nalert {n}".encode(), ["79991234567@sms.example.com"]) for n in range(2)
    ]
    mails = [dataclasses.replace(r.provider_mails[0], relay_id=f"m{n}") for n, r in enumerate(rendered)]
    rows = [
        r
        for m in mails
        for r in (await spool.enqueue([m], mail_from="a@b", inbound_id="", claimed=True)).rows
    ]
    # Both workers dial at the same moment and find nothing listening: one outage, seen twice.
    with closed_port() as port:
        deliverer = Deliverer(
            spool, lambda: SmtpTransport(("127.0.0.1",), port, timeout=5, starttls="auto"), lambda m: m,
            metrics=Metrics(), concurrency=2, policy=RetryPolicy(min_backoff=60, max_backoff=600), batch=1,
        )  # fmt: skip
        deliverer.take(rows)
        started = time.time()
        deliverer.start()
        try:

            async def deferred() -> bool:
                # Each tried and deferred, or (seen the pause first) back in the queue untried.
                found = [await spool.get(m.relay_id) for m in mails]
                states = {r.state for r in found if r is not None}
                return State.DEFERRED in states and states <= {State.DEFERRED, State.QUEUED}

            for _ in range(300):
                if await deferred():
                    break
                await asyncio.sleep(0.02)
            assert await deferred()
            # one outage: the first pause (min_backoff / 6 = 10 s) from the moment it was seen,
            # between the start and now, not doubled by the second worker (20 s). Bounds on
            # both sides of the moment, so a slow machine cannot fail it.
            assert started + 10 <= deliverer.paused_until <= time.time() + 10
        finally:
            await deliverer.stop(5)
            await spool.close()


async def _rows(spool: SqliteSpool, texts: list[str], claimed: bool = False) -> list[str]:
    cfg = make_config()
    ids = []
    for n, text in enumerate(texts):
        mail = render(f"Subject: x\r\n\r\n{text}".encode(), [f"7999{2_000_000 + n:07d}@sms.example.com"], cfg)
        m = dataclasses.replace(mail.provider_mails[0], relay_id=f"r{n}")
        await spool.enqueue([m], mail_from="a@b", inbound_id="", claimed=claimed)
        ids.append(m.relay_id)
    return ids


@contextlib.asynccontextmanager
async def delivering(
    tmp_path: Path, fake: FakeProvider, make: Callable[[int], SmtpTransport] | None = None, **options: Any
) -> AsyncIterator[tuple[SqliteSpool, Deliverer]]:
    """A spool, the fake provider, and a started Deliverer sending to it; all stopped after."""
    spool = SqliteSpool(tmp_path / "spool.db")
    await spool.open()
    server, port = await serve_fake(fake)
    maker = make or (lambda port: SmtpTransport(("127.0.0.1",), port, timeout=5, starttls="auto"))
    deliverer = Deliverer(spool, lambda: maker(port), lambda m: m, metrics=Metrics(), **options)
    try:
        yield spool, deliverer
    finally:
        await deliverer.stop(10)
        await spool.close()
        server.close()


async def test_a_slow_provider_session_holds_only_its_own_message(tmp_path: Path) -> None:
    """Two workers; the first row claimed is answered slowly. The other seven of its claim go
    out through the free worker meanwhile (before: they waited behind it in its batch). The slow
    one is answered only when the test says so: order, not time."""
    gate = asyncio.Event()
    fake = FakeProvider(slow_text="slow one", slow_gate=gate)
    async with delivering(tmp_path, fake, concurrency=2, batch=8) as (spool, deliverer):
        await _rows(spool, ["slow one"] + [f"fast {n}" for n in range(8)])
        deliverer.start()
        await wait_for(lambda: fake.slow_busy == 1, timeout=30)
        await wait_for(lambda: len(fake.received) == 8, timeout=30)  # while the slow one still waits
        assert fake.slow_busy == 1
        assert all("fast" in r.body for r in fake.received)  # the eight fast ones, not the slow one
        gate.set()
        await wait_for(lambda: len(fake.received) == 9, timeout=30)


async def test_a_reused_connection_closed_at_mail_is_redialled_at_once(tmp_path: Path) -> None:
    fake = FakeProvider(close_reused=1)
    transports: list[SmtpTransport] = []

    def make(port: int) -> SmtpTransport:
        transports.append(SmtpTransport(("127.0.0.1",), port, timeout=5, starttls="auto"))
        return transports[-1]

    async with delivering(tmp_path, fake, make, concurrency=1) as (spool, deliverer):
        deliverer.start()
        (first,) = await _rows(spool, ["first"])
        deliverer.wake()
        await wait_for(lambda: len(fake.received) == 1)
        await spooldb.update(spool, "messages", {"id": first}, id="done")
        (second,) = await _rows(spool, ["second"])
        deliverer.wake()
        await wait_for(lambda: len(fake.received) == 2)
        await wait_for(lambda: deliverer.in_flight == set())
        row = await spool.get(second)
        assert row is not None and (row.state, row.attempts) == (State.SENT, 1)  # no deferral
        assert deliverer.paused_until == 0.0  # and no pause of the pool
        assert transports[0].redials == 1 and fake.sessions == 2


async def test_one_broken_session_does_not_pause_the_pool(tmp_path: Path) -> None:
    fake = FakeProvider(drop_on_data=1)
    policy = RetryPolicy(min_backoff=60, max_backoff=600)
    async with delivering(tmp_path, fake, concurrency=2, policy=policy) as (spool, deliverer):
        ids = await _rows(spool, ["dropped", "next"])
        deliverer.start()
        await wait_for(lambda: len(fake.received) == 1)
        await wait_for(lambda: deliverer.in_flight == set())
        rows = [await spool.get(i) for i in ids]
        # Two workers at once: whichever reached DATA first had its session dropped.
        by_state = {r.state: r for r in rows if r is not None}
        assert set(by_state) == {State.DEFERRED, State.SENT}
        assert by_state[State.DEFERRED].uncertain  # dropped after DATA: may have gone
        assert (
            fake.received[0].sms.entries[0].text == by_state[State.SENT].texts[0]
        )  # the one that got through
        assert deliverer.paused_until == 0.0


class PausedWhileReading(SqliteSpool):
    """A reply pauses delivery while a worker's read of the control row is still out: the row it
    reads was written before that pause (two relays on one spool saw this under load)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.deliverer: Deliverer | None = None
        self.paused = False

    async def control(self) -> dict[str, str]:
        row = await super().control()
        if self.deliverer is not None and not self.paused:
            # the reply is applied as the spool applies one: the control row first, then delivery
            self.paused = True
            until, reason = time.time() + 3600, "provider ERROR 3: not enough money"
            await self.set_control("paused_until", f"{until:.3f}")
            await self.set_control("pause_reason", reason)
            self.deliverer.pause(until, reason)
        return row  # read before the pause was written


async def test_a_pause_made_while_the_control_row_is_read_is_not_undone_by_it(tmp_path: Path) -> None:
    spool = PausedWhileReading(tmp_path / "spool.db")
    await spool.open()
    outbox = tmp_path / "outbox"
    deliverer = Deliverer(
        spool, lambda: OutboxTransport(outbox), lambda m: m, metrics=Metrics(), concurrency=1
    )
    spool.deliverer = deliverer
    deliverer.start()
    try:
        await wait_for(lambda: spool.paused, timeout=10)
        # The listener hands new mail straight to delivery when can_take() says so: a pause
        # undone by the stale row would let it (the next read comes a second later).
        for _ in range(30):
            assert not deliverer.can_take(1), f"pause undone: {deliverer.pause_reason!r}"
            await asyncio.sleep(0.01)
        assert deliverer.pause_reason.startswith("provider ERROR 3")
    finally:
        await deliverer.stop(5)
        await spool.close()
