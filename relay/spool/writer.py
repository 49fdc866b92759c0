"""Group commit: one writer task, one connection at a time, one thread; N callers, one commit.

Operations that arrive while a commit is in flight are committed together in the next
transaction, so N concurrent SMTP sessions cost one fsync, not N. A caller's future resolves
only after its transaction is committed, and on disk (fsynced) if it asked for `durable`; the
listener answers 250 only then (DESIGN.md section 4).

Only new messages need that fsync. Delivery's state changes (claimed, sent, deferred) are
committed without waiting for it (SQLite synchronous=NORMAL, PostgreSQL synchronous_commit
off): atomic, and safe against a crash of the process, while a power loss may undo the last of
them, so a message can be sent again (at-least-once, as DESIGN.md promises; the relay id makes
the duplicate visible), never lost. The next durable commit makes them durable too, since the
log is written in order.

An unreachable database: with `give_up` (PostgreSQL: spool.outage_reply), an operation fails
with SpoolError (the listener's 451) that many seconds after it was written, whether it waited
in the queue (behind a batch that is waiting for the database) or in its batch, for a
connection (the batch waits no longer than its earliest operation may). Those of a batch that
never began whose time is not up yet are tried again, first in the next batch: nothing of theirs
ran. A batch that began has its outcome, committed or not, which its callers get.

Failure: an operation that raises the engine's integrity error fails alone (the batch is rolled
back and run again with a savepoint per operation: operations are functions of the database,
safe to run twice when the first run was undone); any other error fails the whole batch and
every caller in it gets SpoolError. SQLite rolls back the whole transaction on SQLITE_FULL,
savepoints included, so partial success is not an option there.

The engine (SQLite here, PostgreSQL in postgres.py) says how a transaction begins and ends.
`shared`: an operation reads what it then writes across relays (phone limits, storm state, the
provider pause); the engine serializes such transactions (SQLite's BEGIN IMMEDIATE does for
every one; PostgreSQL takes an advisory lock first, before any row lock, so no deadlock).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from relay.background import Background
from relay.errors import SpoolError
from relay.spool.db import Db

log = logging.getLogger("relay.spool")
T = TypeVar("T")
Op = Callable[[Any], Any]
SLACK = 0.01  # seconds: a deadline this close counts as passed (timers may fire a little early)
UNAVAILABLE = "spool unavailable, message not accepted; try again later"


@dataclass(eq=False, slots=True)  # eq=False: compared by identity, as queue entries are
class _Pending:
    op: Op
    future: asyncio.Future[Any]
    durable: bool
    shared: bool
    deadline: float | None  # time.monotonic() when it fails if not begun; None: never


class _NotBegun(Exception):
    """The batch's transaction did not begin (no connection by its deadline): nothing ran."""


class Engine(Protocol):
    integrity_errors: tuple[type[Exception], ...]  # an operation's own fault: it fails alone
    errors: tuple[type[Exception], ...]  # the database's errors (unreachable, full, ...)

    def transaction(
        self, *, durable: bool, shared: bool, deadline: float | None = None
    ) -> AbstractContextManager[Db]:
        """BEGIN .. COMMIT around the block (ROLLBACK when it raises); `deadline`
        (time.monotonic()): raise rather than wait past it for the database to begin."""

    def reading(self) -> AbstractContextManager[Db]:
        """A connection for reads outside the writer's transactions."""


class SqliteEngine:
    """The spool's one SQLite connection (autocommit mode: transactions are explicit)."""

    integrity_errors: tuple[type[Exception], ...] = (sqlite3.IntegrityError,)
    errors: tuple[type[Exception], ...] = (sqlite3.Error,)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._synchronous = ""  # what the connection is set to; "" until the first commit

    @contextmanager
    def transaction(self, *, durable: bool, shared: bool, deadline: float | None = None) -> Iterator[Db]:
        # `deadline` is not needed: a local file's lock is the busy timeout's (sqlite.py).
        conn = self.conn
        synchronous = "FULL" if durable else "NORMAL"
        if synchronous != self._synchronous:  # a connection setting, changed between transactions
            conn.execute(f"PRAGMA synchronous={synchronous}")
            self._synchronous = synchronous
        conn.execute("BEGIN IMMEDIATE")  # one writer at a time: `shared` needs nothing more
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @contextmanager
    def reading(self) -> Iterator[Db]:
        yield self.conn


class GroupCommitWriter:
    """Runs operations in the executor's one thread, batched into the engine's transactions."""

    def __init__(
        self,
        engine: Engine,
        executor: ThreadPoolExecutor,
        reader: ThreadPoolExecutor | None = None,
        *,
        give_up: float | None = None,
    ) -> None:
        self.engine = engine
        self.give_up = give_up  # seconds an operation waits for the database; None: the engine's
        self.executor = executor
        # Reads on a thread of their own when the engine has connections to spare (PostgreSQL):
        # a commit then never waits behind reads, which matters most when the database is
        # down and each of them waits for a connection; SQLite's one connection has one thread.
        self.reader = reader or executor
        self._pending: list[_Pending] = []  # not yet in a batch
        self.loop = Background("spool-writer", self._batch, log=log)  # a batch, then wait until woken
        self.commits = 0  # transactions written: with group commit, fewer than operations
        self.failing = ""  # the last commit error, until a commit succeeds again (for /health)

    def start(self) -> None:
        self.loop.start()

    async def stop(self) -> None:
        """Stop taking batches; operations not yet begun fail with SpoolError."""
        await self.loop.stop()
        pending, self._pending = self._pending, []
        for p in pending:
            if not p.future.done():
                p.future.set_exception(SpoolError("spool closed, message not accepted; try again later"))

    async def write(self, op: Callable[[Any], T], *, durable: bool = True, shared: bool = False) -> T:
        """Run `op` in the next transaction; return once that transaction is committed, and
        on disk (fsynced) if `durable`. `shared`: see the module's docstring."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        deadline = None if self.give_up is None else time.monotonic() + self.give_up
        entry = _Pending(op, future, durable, shared, deadline)
        self._pending.append(entry)
        self.loop.wake()
        timer = None if self.give_up is None else loop.call_later(self.give_up, self._expire, entry)
        try:
            return await future
        finally:
            if timer is not None:
                timer.cancel()

    def _expire(self, entry: _Pending) -> None:
        """Its time is up: if it is still waiting for a batch, it fails (nothing of it ran). In
        a batch, it has its batch's outcome, due by its deadline (see _batch)."""
        if entry in self._pending and not entry.future.done():
            self._pending.remove(entry)
            entry.future.set_exception(SpoolError(UNAVAILABLE))

    async def read(self, op: Callable[[Any], T]) -> T:
        """Run a read-only `op` on the writer's thread (one connection, never two at once)."""

        def run() -> T:
            with self.engine.reading() as conn:
                return op(conn)

        errors: tuple[type[Exception], ...] = (*self.engine.errors, OSError)
        try:
            return await asyncio.get_running_loop().run_in_executor(self.reader, run)
        except errors as exc:
            raise SpoolError(f"spool unavailable: {exc}") from exc

    async def _batch(self) -> None:
        """One batch: what is pending, in one transaction (run by self.loop when woken)."""
        loop = asyncio.get_running_loop()
        # One turn of the loop first: the sessions whose DATA is already in get into this batch
        # (a commit's fsync costs the same for one mail as for ten).
        await asyncio.sleep(0)
        batch, self._pending = self._pending, []
        if not batch:
            return
        # The batch waits for the database no longer than its earliest operation may.
        deadline = min((p.deadline for p in batch if p.deadline is not None), default=None)
        try:
            results = await loop.run_in_executor(self.executor, self._commit, batch, deadline)
        except _NotBegun as exc:
            now = time.monotonic()
            late = [p for p in batch if p.deadline is not None and p.deadline <= now + SLACK]
            if late and len(late) < len(batch):  # the others wait on, first in the next batch
                self._pending[:0] = [p for p in batch if p not in late]
                self.loop.wake()
                batch = late
            self._fail(batch, exc.__cause__ or exc)
            return
        except Exception as exc:
            self._fail(batch, exc)
            return
        for p, (ok, value) in zip(batch, results, strict=True):
            if p.future.done():  # the caller was cancelled; its operation committed anyway
                continue
            if ok:
                p.future.set_result(value)
            else:
                p.future.set_exception(value)

    def _fail(self, batch: list[_Pending], exc: BaseException) -> None:
        log.error("event=spool_commit_failed error=%r ops=%d", exc, len(batch))
        self.failing = str(exc)
        error = SpoolError(UNAVAILABLE)
        error.__cause__ = exc
        for p in batch:
            if not p.future.done():
                p.future.set_exception(error)

    def _commit(self, batch: list[_Pending], deadline: float | None) -> list[tuple[bool, Any]]:
        durable = any(p.durable for p in batch)
        shared = any(p.shared for p in batch)
        begun = False
        try:
            # First without savepoints: an operation's own fault (an integrity error) is rare,
            # and on PostgreSQL each savepoint costs two round trips per operation.
            with self.engine.transaction(durable=durable, shared=shared, deadline=deadline) as conn:
                begun = True
                results: list[tuple[bool, Any]] = [(True, p.op(conn)) for p in batch]
        except self.engine.integrity_errors as exc:
            if len(batch) == 1:  # alone, its failure is its transaction's
                return [(False, SpoolError(f"spool rejected the write: {exc}"))]
            results = self._commit_each(batch, durable=durable, shared=shared)  # all rolled back: again
        except Exception as exc:
            if not begun:
                raise _NotBegun() from exc
            raise
        self.commits += 1
        self.failing = ""
        return results

    def _commit_each(self, batch: list[_Pending], *, durable: bool, shared: bool) -> list[tuple[bool, Any]]:
        """The batch again, a savepoint per operation: the failing one fails alone."""
        results: list[tuple[bool, Any]] = []
        with self.engine.transaction(durable=durable, shared=shared) as conn:
            for p in batch:
                conn.execute("SAVEPOINT op")
                try:
                    results.append((True, p.op(conn)))
                    conn.execute("RELEASE op")
                except self.engine.integrity_errors as exc:
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    results.append((False, SpoolError(f"spool rejected the write: {exc}")))
        return results
