"""Group commit: one writer task, one SQLite connection, one thread; N callers, one fsync.

Operations that arrive while a commit is in flight are committed together in the next
transaction, so N concurrent SMTP sessions cost one fsync, not N. A caller's future resolves
only after its transaction is committed, and on disk (fsynced) if it asked for `durable`; the
listener answers 250 only then (DESIGN.md section 4).

Only new messages need that fsync. Delivery's state changes (claimed, sent, deferred) are
committed with synchronous=NORMAL: atomic, and safe against a crash of the process, while a
power loss may undo the last of them, so a message can be sent again (at-least-once, as
DESIGN.md promises; the relay id makes the duplicate visible), never lost. The next durable
commit makes them durable too, since the WAL is written in order.

Failure: an operation that raises sqlite3.IntegrityError fails alone (a savepoint per
operation); any other error fails the whole batch and every caller in it gets SpoolError. SQLite
rolls back the whole transaction on SQLITE_FULL, savepoints included, so partial success is
not an option there.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from relay.errors import SpoolError

log = logging.getLogger("relay.spool")
T = TypeVar("T")
Op = Callable[[sqlite3.Connection], Any]
_Pending = tuple[Op, "asyncio.Future[Any]", bool]


class GroupCommitWriter:
    """Runs operations on `conn` in the executor's one thread, batched into transactions."""

    def __init__(self, conn: sqlite3.Connection, executor: ThreadPoolExecutor) -> None:
        self.conn = conn
        self.executor = executor
        self._pending: list[_Pending] = []
        self._synchronous = ""  # what the connection is set to; "" until the first commit
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
        for _, future, _ in pending:
            if not future.done():
                future.set_exception(SpoolError("spool closed, message not accepted; try again later"))

    async def write(self, op: Callable[[sqlite3.Connection], T], *, durable: bool = True) -> T:
        """Run `op` in the next transaction; return once that transaction is committed, and
        on disk (fsynced) if `durable`."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((op, future, durable))
        self._wake.set()
        return await future

    async def read(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """Run a read-only `op` on the writer's thread (one connection, never two at once)."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, op, self.conn)

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
                for _, future, _ in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (_, future, _), (ok, value) in zip(batch, results, strict=True):
                if future.done():  # the caller was cancelled; its operation committed anyway
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

    def _commit(self, batch: list[_Pending]) -> list[tuple[bool, Any]]:
        conn = self.conn
        synchronous = "FULL" if any(durable for _, _, durable in batch) else "NORMAL"
        if synchronous != self._synchronous:  # a connection setting, changed between transactions
            conn.execute(f"PRAGMA synchronous={synchronous}")
            self._synchronous = synchronous
        results: list[tuple[bool, Any]] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for op, _, _ in batch:
                # A savepoint per operation: one failing operation does not undo the others.
                conn.execute("SAVEPOINT op")
                try:
                    results.append((True, op(conn)))
                    conn.execute("RELEASE op")
                except sqlite3.IntegrityError as exc:
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    results.append((False, SpoolError(f"spool rejected the write: {exc}")))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self.commits += 1
        self.failing = ""
        return results
