"""The spool on PostgreSQL: two (or more) relays share one queue (issue 15, docs/ha.md).

The operations are base.py's and the SQL is the same text as SQLite's (messages.py, replies.py,
alerts.py, tracking.py): `PgDb` turns its `?` marks into psycopg's and gives rows that read
like sqlite3.Row. What differs is here:

- Durability: a transaction with new mail commits with `synchronous_commit = on`, so the 250
  comes after the commit is flushed on the primary (and on the standby that
  `synchronous_standby_names` names, when the server has one); delivery's state changes commit
  with it off, as SQLite's synchronous=NORMAL (a crash of the server may undo the last of them:
  a resend, never a loss).
- Group commit: the same writer as SQLite's, one transaction per batch of concurrent sessions.
- Claims: `FOR UPDATE SKIP LOCKED` under a lease (claimed_by, lease_until) that keep_claims()
  renews; a relay that dies stops renewing, and when the lease runs out the other relays give
  its rows back to the queue, marked uncertain (at-least-once; the relay id shows a duplicate).
- Shared state: a transaction that reads what it then writes across relays (phone limits,
  dedup windows, the storm planner, the provider pause, the status poll's turn) first takes
  one advisory lock, so relays take turns there, as SQLite's single writer does.
- Wake-ups: NOTIFY smsc_relay when rows anyone may claim are queued or the pause changes; each
  relay LISTENs (watch()) and wakes its workers, besides polling.
- Outages: a write waits `outage_reply` seconds for the database, then fails (451: the client
  keeps the mail); the pool tries to connect again at least every second while a write waits,
  and a connection the outage broke is found at its first statement and replaced, so a relay
  takes mail again within about a second of the database (docs/ha.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from relay.errors import SpoolError
from relay.model import State
from relay.spool import messages
from relay.spool.base import QUEUED, SqlSpool
from relay.spool.db import Db
from relay.spool.messages import Claim
from relay.spool.pgdb import PgDb, connection_kwargs, masked, migrate, pool_kwargs
from relay.spool.writer import GroupCommitWriter

log = logging.getLogger("relay.spool")
T = TypeVar("T")
LEASE = 60.0  # seconds a claim is held without renewal before other relays may take the row
CHANNEL = "smsc_relay"
SHARED_LOCK = 0x534D5343  # pg_advisory_xact_lock key of the shared state ("SMSC")
LISTEN_RETRY = (1.0, 30.0)  # seconds between attempts to listen again: first, at most
OUTAGE_REPLY = 5.0  # seconds a write waits for the database (spool.outage_reply)
# psycopg_pool's reconnect_timeout: its attempts to connect back off (1, 2, 4 ... s) until
# this, then stop until a client asks for a connection when none is ready; a waiting write
# asks again every POLL. So a connection is tried about once a second while mail waits. (At 5 s
# the tries were 2 s apart at the end, then none: the write that kept waiting started none.)
RECONNECT = 1.0
POLL = 0.5  # seconds a write waits for the pool at a time before it asks again
STALE = 3  # connections a write tries that find the server gone: the pool holds at most 2


def notify(conn: Db, what: str) -> None:
    """Tell the relays LISTENing (sent when the transaction commits; one per payload)."""
    conn.execute("SELECT pg_notify(?, ?)", (CHANNEL, what))


class PgEngine:
    """Transactions on pooled connections (writer.py's Engine): a connection the server
    dropped is replaced by the pool, so the relay recovers from a database restart by itself."""

    integrity_errors: tuple[type[Exception], ...] = (psycopg.errors.IntegrityError,)
    errors: tuple[type[Exception], ...] = (psycopg.Error,)

    def __init__(self, pool: ConnectionPool[psycopg.Connection[Any]], dsn: str) -> None:
        self.pool = pool
        self._dsn = dsn

    @contextlib.contextmanager
    def transaction(self, *, durable: bool, shared: bool, deadline: float | None = None) -> Iterator[Db]:
        try:
            conn = self._begin(f"SET LOCAL synchronous_commit = {'on' if durable else 'off'}", deadline)
            try:
                db = PgDb(conn)
                if shared:  # first, before any row lock: relays take turns, never deadlock on it
                    db.execute("SELECT pg_advisory_xact_lock(?)", (SHARED_LOCK,))
                yield db
                conn.commit()
            except BaseException:
                if not conn.broken:
                    with contextlib.suppress(psycopg.Error):
                        conn.rollback()
                raise
            finally:
                self.pool.putconn(conn)
        except psycopg.Error as exc:
            raise type(exc)(masked(str(exc), self._dsn)) from None

    def _begin(self, first: str, deadline: float | None) -> psycopg.Connection[Any]:
        """A connection in a transaction that ran `first`. A connection the server dropped
        while it sat in the pool (a restart) fails at once, before anything of the caller's
        ran: it goes back to the pool, which replaces it, and the next one is tried."""
        for attempt in range(STALE):
            conn = self._getconn(deadline)
            try:
                PgDb(conn).execute(first)  # BEGIN, then `first`: a round trip each
                return conn
            except psycopg.Error:
                self.pool.putconn(conn)  # rolled back, or replaced when broken
                if not conn.broken or attempt == STALE - 1:
                    raise
        raise AssertionError("unreachable")  # the last attempt returns or raises

    def _getconn(self, deadline: float | None) -> psycopg.Connection[Any]:
        """A connection from the pool by `deadline` (None: within the pool's timeout), asked
        for every POLL: each request lets the pool start a new attempt to connect when its
        last one gave up (RECONNECT), so a connection is made soon after the database is back."""
        if deadline is None:
            return self.pool.getconn()
        for _ in range(int(max(0.0, deadline - time.monotonic()) / POLL) + 2):  # bounded by the deadline
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                return self.pool.getconn(timeout=min(POLL, left))
            except PoolTimeout:
                continue
        raise PoolTimeout("no connection to the database within spool.outage_reply")

    @contextlib.contextmanager
    def reading(self) -> Iterator[Db]:
        with self._connection() as conn:
            conn.autocommit = True  # each read its own snapshot, no transaction left open
            try:
                yield PgDb(conn)
            finally:
                conn.autocommit = False

    @contextlib.contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        try:
            with self.pool.connection() as conn:
                yield conn
        except psycopg.Error as exc:
            # The pool's timeout and libpq's texts carry no password; masked all the same.
            raise type(exc)(masked(str(exc), self._dsn)) from None


class PostgresSpool(SqlSpool):
    skip_locked = True

    def __init__(
        self,
        dsn: str,
        *,
        relay: str,
        clock: Callable[[], float] = time.time,
        lease: float = LEASE,
        open_timeout: float = 10.0,
        outage_reply: float = OUTAGE_REPLY,
        pool_size: int = 2,
    ) -> None:
        super().__init__(Claim(relay, lease), clock)
        self._dsn = dsn  # never logged: it may hold a password
        self.relay = relay  # this relay's name in `claimed_by`: unique among the relays
        self.lease = lease
        self.open_timeout = open_timeout  # seconds to reach the database at start
        self.outage_reply = outage_reply  # seconds a write waits for the database before it fails (451)
        self.pool_size = pool_size
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool")
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool-read")
        self._pool: ConnectionPool[psycopg.Connection[Any]] | None = None

    def __repr__(self) -> str:
        return f"PostgresSpool(relay={self.relay!r})"

    async def _in_thread(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def open(self) -> int:
        """Connect, migrate, and take back this relay's own claims and any whose lease ran out;
        returns how many rows went back to the queue."""
        try:
            recovered = await self._in_thread(self._open)
        except SpoolError:
            raise
        except psycopg.Error as exc:
            raise SpoolError(f"cannot open the PostgreSQL spool: {masked(str(exc), self._dsn)}") from None
        pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            self._dsn, min_size=1, max_size=self.pool_size, kwargs=pool_kwargs(self._dsn), open=False,
            timeout=self.outage_reply, name="spool", reconnect_timeout=RECONNECT,
        )  # fmt: skip
        try:
            await self._in_thread(lambda: pool.open(wait=True, timeout=self.open_timeout))
        except psycopg.Error as exc:
            await self._in_thread(pool.close)
            raise SpoolError(f"cannot open the PostgreSQL spool: {masked(str(exc), self._dsn)}") from None
        self._pool = pool
        self._writer = GroupCommitWriter(
            PgEngine(pool, self._dsn), self._executor, self._reader, give_up=self.outage_reply
        )
        self._writer.start()
        return recovered

    def _open(self) -> int:
        # One direct connection first: an unreachable database fails at once with libpq's
        # reason (a pool would keep retrying), and the schema is brought up to date.
        timeout = max(1, int(self.open_timeout))
        with psycopg.connect(self._dsn, connect_timeout=timeout, **connection_kwargs()) as conn:
            migrate(conn)
            db = PgDb(conn)
            with conn.transaction():
                self.reply_key = messages.reply_key(db)  # one key for all relays of this queue
                return messages.requeue_sending(db, self.clock(), self.relay)

    async def close(self) -> None:
        if self._writer is not None:
            await self._writer.stop()
            self._writer = None
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await self._in_thread(lambda: pool.close(timeout=5.0))
        self._executor.shutdown(wait=True)
        self._reader.shutdown(wait=True)

    def notify(self, conn: Db, what: str) -> None:
        notify(conn, what)

    async def keep_claims(self) -> int:
        """Renew this relay's leases; give back rows whose holder stopped renewing (it died:
        they are marked uncertain, since it may have sent them). Returns how many came back."""
        now = self.clock()

        def op(conn: Db) -> int:
            messages.renew(conn, self.claim_as, now)
            back = conn.execute(
                "UPDATE messages SET state = ?, updated = ?, uncertain = 1, claimed_by = NULL,"
                " lease_until = NULL WHERE state = ? AND lease_until < ?",
                (State.QUEUED.value, now, State.SENDING.value, now),
            ).rowcount
            if back:
                self.notify(conn, QUEUED)
            return int(back)

        return await self.writer.write(op, durable=False)

    async def watch(self, wake: Callable[[str], None]) -> None:
        """LISTEN for the other relays' news and call `wake` with it, until cancelled; a lost
        connection is made again (polling goes on meanwhile, so nothing waits for this)."""
        delay = LISTEN_RETRY[0]
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._dsn, autocommit=True, connect_timeout=max(1, int(self.open_timeout))
                )
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    delay = LISTEN_RETRY[0]
                    wake(QUEUED)  # what was queued while we were not listening
                    async for note in conn.notifies():
                        wake(note.payload)
            except psycopg.Error as exc:
                text = masked(str(exc), self._dsn)
                log.warning("event=spool_listen_lost error=%r retry=%.0fs", text, delay)
            await asyncio.sleep(delay)
            delay = min(LISTEN_RETRY[1], delay * 2)
