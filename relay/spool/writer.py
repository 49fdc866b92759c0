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
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol, TypeVar

from relay.errors import SpoolError
from relay.spool.db import Db

log = logging.getLogger("relay.spool")
T = TypeVar("T")
Op = Callable[[Any], Any]
_Pending = tuple[Op, "asyncio.Future[Any]", bool, bool]


class Engine(Protocol):
    integrity_errors: tuple[type[Exception], ...]  # an operation's own fault: it fails alone
    errors: tuple[type[Exception], ...]  # the database's errors (unreachable, full, ...)

    def transaction(self, *, durable: bool, shared: bool) -> AbstractContextManager[Db]:
        """BEGIN .. COMMIT around the block (ROLLBACK when it raises)."""

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
    def transaction(self, *, durable: bool, shared: bool) -> Iterator[Db]:
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
        self, engine: Engine, executor: ThreadPoolExecutor, reader: ThreadPoolExecutor | None = None
    ) -> None:
        self.engine = engine
        self.executor = executor
        # Reads on a thread of their own when the engine has connections to spare (PostgreSQL):
        # a commit then never waits behind reads, which matters most when the database is
        # down and each of them waits for a connection; SQLite's one connection has one thread.
        self.reader = reader or executor
        self._pending: list[_Pending] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.commits = 0  # transactions written: with group commit, fewer than operations
        self.failing = ""  # the last commit error, until a commit succeeds again (for /health)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="spool-writer")

    async def stop(self) -> None:
        """Stop taking batches; operations not yet begun fail with SpoolError."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        pending, self._pending = self._pending, []
        for _, future, _, _ in pending:
            if not future.done():
                future.set_exception(SpoolError("spool closed, message not accepted; try again later"))

    async def write(self, op: Callable[[Any], T], *, durable: bool = True, shared: bool = False) -> T:
        """Run `op` in the next transaction; return once that transaction is committed, and
        on disk (fsynced) if `durable`. `shared`: see the module's docstring."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((op, future, durable, shared))
        self._wake.set()
        return await future

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

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            if not batch:
                continue
            try:
                results = await loop.run_in_executor(self.executor, self._commit, batch)
            except Exception as exc:
                log.error("event=spool_commit_failed error=%r ops=%d", exc, len(batch))
                self.failing = str(exc)
                error = SpoolError("spool unavailable, message not accepted; try again later")
                error.__cause__ = exc
                for _, future, _, _ in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (_, future, _, _), (ok, value) in zip(batch, results, strict=True):
                if future.done():  # the caller was cancelled; its operation committed anyway
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

    def _commit(self, batch: list[_Pending]) -> list[tuple[bool, Any]]:
        durable = any(d for _, _, d, _ in batch)
        shared = any(sh for _, _, _, sh in batch)
        try:
            # First without savepoints: an operation's own fault (an integrity error) is rare,
            # and on PostgreSQL each savepoint costs two round trips per operation.
            with self.engine.transaction(durable=durable, shared=shared) as conn:
                results: list[tuple[bool, Any]] = [(True, op(conn)) for op, _, _, _ in batch]
        except self.engine.integrity_errors as exc:
            if len(batch) == 1:  # alone, its failure is its transaction's
                return [(False, SpoolError(f"spool rejected the write: {exc}"))]
            results = self._commit_each(batch, durable=durable, shared=shared)  # all rolled back: again
        self.commits += 1
        self.failing = ""
        return results

    def _commit_each(self, batch: list[_Pending], *, durable: bool, shared: bool) -> list[tuple[bool, Any]]:
        """The batch again, a savepoint per operation: the failing one fails alone."""
        results: list[tuple[bool, Any]] = []
        with self.engine.transaction(durable=durable, shared=shared) as conn:
            for op, _, _, _ in batch:
                conn.execute("SAVEPOINT op")
                try:
                    results.append((True, op(conn)))
                    conn.execute("RELEASE op")
                except self.engine.integrity_errors as exc:
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    results.append((False, SpoolError(f"spool rejected the write: {exc}")))
        return results
