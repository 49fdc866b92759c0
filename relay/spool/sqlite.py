"""The durable queue on SQLite: WAL, synchronous=FULL for new mail, group commit.

`SqliteSpool` is the first implementation of relay/spool/interface.py's `Spool`. The SQL is
in messages.py, replies.py and alerts.py; the transactions are writer.py's.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from relay.config.schema import Config
from relay.errors import SpoolError
from relay.model import PhoneStatus, ProviderMail, ProviderReply, State
from relay.provider_errors import Rule
from relay.spool import alerts, messages, replies, schema, tracking
from relay.spool.alerts import Tick
from relay.spool.interface import Enqueued, StormAdmit
from relay.spool.messages import Row
from relay.spool.replies import Applied
from relay.spool.writer import GroupCommitWriter

T = TypeVar("T")
PRUNE_LIMIT = 10_000  # rows of each kind per prune call, so one call never holds the writer long


def connect(path: Path) -> sqlite3.Connection:
    """A connection as the spool uses it: autocommit (transactions are explicit), WAL."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")  # the WAL is fsynced at every commit
    conn.execute("PRAGMA busy_timeout=10000")  # `queue` commands may read while we write
    # The WAL is checkpointed every 256 pages (1 MiB) and cut back to 1 MiB after, instead of
    # SQLite's 1000 pages and no limit: on a nearly full disk the relay needs ~1 MiB free to go
    # on committing, not 4 MiB (a WAL that grew in a burst would otherwise keep its size).
    conn.execute("PRAGMA wal_autocheckpoint=256")
    conn.execute(f"PRAGMA journal_size_limit={1024 * 1024}")
    return conn


class SqliteSpool:
    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock  # stamps rows; delivery schedules by it
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool")
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

    async def open(self) -> int:
        """Open (creating, migrating) the spool; rows left `sending` by a crash are queued again."""
        try:
            conn, recovered = await self._in_thread(self._open)
        except (sqlite3.Error, OSError) as exc:
            raise SpoolError(f"cannot open spool {self.path}: {exc}") from exc
        self._writer = GroupCommitWriter(conn, self._executor)
        self._writer.start()
        return recovered

    def _open(self) -> tuple[sqlite3.Connection, int]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = connect(self.path)
        try:
            schema.migrate(conn)
            self.path.chmod(0o600)
            self.reply_key = messages.reply_key(conn)
            return conn, messages.requeue_sending(conn, self.clock())
        except BaseException:
            conn.close()
            raise

    async def _in_thread(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def close(self) -> None:
        if self._writer is not None:
            await self._writer.stop()
            await self._in_thread(self._writer.conn.close)
            self._writer = None
        self._executor.shutdown(wait=True)

    async def write(self, op: Callable[[sqlite3.Connection], T], *, durable: bool = True) -> T:
        """Raw access for SQLite-specific tests and tools; the relay itself uses the methods."""
        return await self.writer.write(op, durable=durable)

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
    ) -> Enqueued:
        now = self.clock()
        state, attempts = (State.SENDING, 1) if claimed else (State.QUEUED, 0)
        rows = messages.new_rows(
            mails, mail_from=mail_from, inbound_id=inbound_id, state=state, attempts=attempts, now=now
        )

        def op(conn: sqlite3.Connection) -> Enqueued:
            final = alerts.protect(conn, rows, mails, now) if protect else rows
            messages.insert(conn, final)
            if storm is None or not storm.alerts:
                return Enqueued(final)
            admitted = alerts.admit(
                conn, storm.alerts, settings=storm.settings, now=storm.now, mail_from=mail_from,
                inbound_id=inbound_id,
            )  # fmt: skip
            return Enqueued(final, tuple(admitted))

        return await self.writer.write(op)

    async def claim(self, limit: int, now: float) -> list[Row]:
        return await self.writer.write(lambda conn: messages.claim(conn, limit, now))

    async def finish(self, relay_id: str, state: State, *, durable: bool = False, **values: Any) -> None:
        now = self.clock()
        await self.writer.write(
            lambda conn: messages.finish(conn, relay_id, state, now, values), durable=durable
        )

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

    async def prune(self, older_than: float, limit: int = PRUNE_LIMIT) -> tuple[int, int]:
        """Delete finished messages, replies and alerts last touched before `older_than`."""

        def op(conn: sqlite3.Connection) -> tuple[int, int]:
            count = messages.prune(conn, older_than, limit)
            kept = replies.prune(conn, older_than, limit)
            kept += replies.prune_kept(conn, self.clock() - replies.KEEP_KEPT, limit)
            alerts.prune(conn, older_than, limit)
            if count:
                tracking.prune(conn)
            return count, kept

        return await self.writer.write(op, durable=False)

    # ---- provider replies and queue control ---------------------------------------------
    async def record_reply(
        self,
        reply: ProviderReply,
        *,
        mail_from: str,
        raw: bytes,
        untrusted: str = "",
        pause_for: Callable[[Rule], float] = lambda rule: 3600.0,
    ) -> Applied:
        now = self.clock()
        return await self.writer.write(
            lambda conn: replies.record(
                conn, reply, now=now, mail_from=mail_from, raw=raw, untrusted=untrusted, pause_for=pause_for
            )
        )

    async def set_control(self, key: str, value: str | None) -> None:
        await self.writer.write(lambda conn: messages.set_control(conn, key, value))

    async def control(self) -> dict[str, str]:
        return await self.writer.read(messages.get_control)

    # ---- delivery tracking --------------------------------------------------------------
    async def start_tracking(
        self, relay_id: str, *, via: str, next_poll: float | None, until: float | None
    ) -> None:
        await self.writer.write(
            lambda conn: tracking.start(conn, relay_id, via, next_poll, until), durable=False
        )

    async def tracking_due(self, now: float, max_pairs: int) -> list[tuple[str, str]]:
        return await self.writer.read(lambda conn: tracking.due(conn, now, max_pairs))

    async def record_statuses(
        self, found: Sequence[PhoneStatus], asked: Sequence[tuple[str, str]], now: float
    ) -> list[tracking.Finished]:
        return await self.writer.write(lambda conn: tracking.record(conn, found, asked, now))

    async def expire_tracking(self, now: float) -> list[tracking.Finished]:
        return await self.writer.write(lambda conn: tracking.expire(conn, now))

    # ---- storm control ------------------------------------------------------------------
    async def storm_tick(
        self, *, now: float, config: Config, hostname: str, new_id: Callable[[], str]
    ) -> Tick:
        wall = self.clock()
        return await self.writer.write(
            lambda conn: alerts.tick(
                conn, now=now, config=config, hostname=hostname, new_id=new_id, wall=wall
            )
        )

    async def alert_senders(self, relay_id: str) -> dict[str, list[str]]:
        return await self.writer.read(lambda conn: alerts.senders(conn, relay_id))
