"""The spool's operations on either engine: the SQL is messages.py's, replies.py's, alerts.py's
and tracking.py's; the transactions are writer.py's group commit. sqlite.py and postgres.py say
how to connect, migrate and recover, and how a claim and a wake-up work on their engine.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from relay.errors import SpoolError
from relay.model import PartStatus, PhoneStatus, ProviderMail, ProviderReply, State
from relay.provider_errors import Rule
from relay.spool import alerts, messages, receipts, replies, tracking
from relay.spool.alerts import Tick
from relay.spool.db import Db
from relay.spool.interface import Enqueued, StormAdmit
from relay.spool.messages import Claim, Row
from relay.spool.replies import Applied
from relay.spool.writer import GroupCommitWriter
from relay.storm.plan import Compose

T = TypeVar("T")
PRUNE_LIMIT = 10_000  # rows of each kind per prune call, so one call never holds the writer long
QUEUED = "queued"  # what a notification says: rows anyone may claim were queued
CONTROL = "control"  # the pause (or its end) was written


class SqlSpool:
    """The Spool (relay/spool/interface.py) over a GroupCommitWriter; `open` is the engine's."""

    skip_locked = False  # the claim passes over rows another relay's transaction is claiming

    def __init__(self, claim: Claim, clock: Callable[[], float] = time.time) -> None:
        self.claim_as = claim  # the holder written on this relay's `sending` rows
        self.clock = clock  # stamps rows; delivery schedules by it
        self._writer: GroupCommitWriter | None = None
        self.reply_key = b""  # the reply tags' key, read (or made) by open()

    @property
    def writer(self) -> GroupCommitWriter:
        if self._writer is None:
            raise SpoolError("spool is not open")
        return self._writer

    @property
    def commits(self) -> int:
        return self._writer.commits if self._writer else 0

    @property
    def failing(self) -> str:
        return self._writer.failing if self._writer else ""

    def notify(self, conn: Db, what: str) -> None:
        """Tell the other relays (PostgreSQL: NOTIFY, sent when the transaction commits)."""

    async def write(self, op: Callable[[Any], T], *, durable: bool = True, shared: bool = False) -> T:
        """Raw access for engine-specific tests and tools; the relay itself uses the methods."""
        return await self.writer.write(op, durable=durable, shared=shared)

    # ---- messages ------------------------------------------------------------------------
    async def enqueue(
        self,
        mails: Sequence[ProviderMail],
        *,
        mail_from: str,
        inbound_id: str,
        claimed: bool = False,
        storm: StormAdmit | None = None,
        protect: bool = False,
        inbound: bytes | None = None,
        config: str = "",
    ) -> Enqueued:
        now = self.clock()
        state, attempts = (State.SENDING, 1) if claimed else (State.QUEUED, 0)
        rows = messages.new_rows(
            mails, mail_from=mail_from, inbound_id=inbound_id, state=state, attempts=attempts, now=now,
            inbound=inbound, config=config,
        )  # fmt: skip

        def op(conn: Db) -> Enqueued:
            final = alerts.protect(conn, rows, mails, now) if protect else rows
            messages.insert(conn, final, self.claim_as)
            if any(r.state is State.QUEUED for r in final):
                self.notify(conn, QUEUED)
            if storm is None or not storm.alerts:
                return Enqueued(final)
            admitted = alerts.admit(
                conn, storm.alerts, settings=storm.settings, now=storm.now, mail_from=mail_from,
                inbound_id=inbound_id,
            )  # fmt: skip
            return Enqueued(final, tuple(admitted))

        # Phone limits and dedup windows are read, then written: one relay at a time.
        return await self.writer.write(op, shared=protect or bool(storm and storm.alerts))

    async def claim(self, limit: int, now: float) -> list[Row]:
        return await self.writer.write(
            lambda conn: messages.claim(conn, limit, now, self.claim_as, skip_locked=self.skip_locked)
        )

    async def finish(self, relay_id: str, state: State, *, durable: bool = False, **values: Any) -> bool:
        now = self.clock()

        def op(conn: Db) -> bool:
            changed = messages.finish(conn, relay_id, state, now, values, self.claim_as.holder)
            if changed and state is State.QUEUED:  # given back untried: any relay may take it
                self.notify(conn, QUEUED)
            return changed

        return await self.writer.write(op, durable=durable)

    async def next_due(self) -> float | None:
        return await self.writer.read(messages.next_due)

    async def get(self, relay_id: str) -> Row | None:
        return await self.writer.read(lambda conn: messages.get(conn, relay_id))

    async def counts(self) -> dict[State, int]:
        return await self.writer.read(messages.counts)

    async def oldest_waiting(self) -> float | None:
        return await self.writer.read(messages.oldest_pending)

    async def count_waiting(self) -> int:
        return await self.writer.read(messages.count_waiting)

    async def sweep_unconfirmed(self, older_than: float) -> int:
        now = self.clock()
        return await self.writer.write(lambda conn: messages.sweep_unconfirmed(conn, now, older_than))

    async def hold_uncertain(self, until: float) -> int:
        return await self.writer.write(lambda conn: messages.hold_uncertain(conn, until))

    async def prune(self, older_than: float, limit: int = PRUNE_LIMIT) -> tuple[int, int]:
        """Delete finished messages, replies and alerts last touched before `older_than`."""

        def op(conn: Db) -> tuple[int, int]:
            count = messages.prune(conn, older_than, limit)
            kept = replies.prune(conn, older_than, limit)
            kept += replies.prune_kept(conn, self.clock() - replies.KEEP_KEPT, limit)
            alerts.prune(conn, older_than, limit)
            if count:
                tracking.prune(conn)
            receipts.prune(conn, older_than)
            return count, kept

        return await self.writer.write(op, durable=False)

    async def keep_claims(self) -> int:
        """Renew this relay's claims and give back rows whose holder stopped renewing (a
        shared spool; on SQLite one relay holds every claim and this does nothing)."""
        return 0

    # ---- provider replies and queue control ---------------------------------------------
    async def record_reply(
        self,
        reply: ProviderReply,
        *,
        mail_from: str,
        raw: bytes,
        untrusted: str = "",
        pause_for: Callable[[Rule], float] = lambda rule: 3600.0,
        cause: Callable[[], str] = lambda: "",
    ) -> Applied:
        now = self.clock()

        def op(conn: Db) -> Applied:
            applied = replies.record(
                conn, reply, now=now, mail_from=mail_from, raw=raw, untrusted=untrusted, pause_for=pause_for,
                cause=cause,
            )  # fmt: skip
            if applied.pause is not None:
                self.notify(conn, CONTROL)
            return applied

        return await self.writer.write(op, shared=True)

    async def set_control(self, key: str, value: str | None) -> None:
        def op(conn: Db) -> None:
            messages.set_control(conn, key, value)
            if key.startswith("pause"):  # `queue resume`: the other relays resume too
                self.notify(conn, CONTROL)

        await self.writer.write(op)

    async def control(self) -> dict[str, str]:
        return await self.writer.read(messages.get_control)

    async def add_control(self, key: str, value: str) -> bool:
        return await self.writer.write(lambda conn: messages.add_control(conn, key, value), durable=False)

    async def take_turn(self, key: str, now: float, interval: float) -> bool:
        return await self.writer.write(
            lambda conn: messages.take_turn(conn, key, now, interval), durable=False, shared=True
        )

    # ---- delivery tracking --------------------------------------------------------------
    async def start_tracking(
        self,
        relay_id: str,
        *,
        via: str,
        next_poll: float | None,
        until: float | None,
        parts: Sequence[tuple[str, str]] = (),
    ) -> None:
        now = self.clock()

        def op(conn: Db) -> None:
            tracking.start(conn, relay_id, via, next_poll, until)
            if parts:
                receipts.keep_parts(conn, relay_id, parts, now)

        # Durable with SMPP parts: a receipt needs its part to be matched, after a crash too.
        await self.writer.write(op, durable=bool(parts))

    async def record_receipts(
        self, found: Sequence[PartStatus], settle: Sequence[str], now: float
    ) -> list[tracking.Finished]:
        return await self.writer.write(lambda conn: receipts.record(conn, found, settle, now))

    async def tracking_due(self, now: float, max_pairs: int) -> list[tuple[str, str]]:
        return await self.writer.read(lambda conn: tracking.due(conn, now, max_pairs))

    async def record_statuses(
        self, found: Sequence[PhoneStatus], asked: Sequence[tuple[str, str]], now: float
    ) -> list[tracking.Finished]:
        return await self.writer.write(lambda conn: tracking.record(conn, found, asked, now))

    async def expire_tracking(self, now: float) -> list[tracking.Finished]:
        return await self.writer.write(lambda conn: tracking.expire(conn, now))

    # ---- storm control ------------------------------------------------------------------
    async def storm_tick(self, *, now: float, compose: Compose) -> Tick:
        wall = self.clock()

        def op(conn: Db) -> Tick:
            tick = alerts.tick(conn, now=now, compose=compose, wall=wall)
            if tick.rows:
                self.notify(conn, QUEUED)
            return tick

        # One relay plans at a time: the held alerts and phone history it reads are its own
        # until it has queued the digests and marked the alerts sent.
        return await self.writer.write(op, shared=True)

    async def alert_senders(self, relay_id: str) -> dict[str, list[str]]:
        return await self.writer.read(lambda conn: alerts.senders(conn, relay_id))
