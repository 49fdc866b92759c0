"""The group-commit writer on a real SQLite file: batching, order, and what a failure fails."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from relay.errors import SpoolError
from relay.spool.sqlite import connect
from relay.spool.writer import GroupCommitWriter


@pytest.fixture
async def writer(tmp_path: Path) -> AsyncIterator[GroupCommitWriter]:
    conn = connect(tmp_path / "w.db")
    conn.execute("CREATE TABLE log (n INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    executor = ThreadPoolExecutor(max_workers=1)
    w = GroupCommitWriter(conn, executor)
    w.start()
    yield w
    await w.stop()
    conn.close()
    executor.shutdown()


def insert(n: int, v: str = "x") -> Callable[[sqlite3.Connection], int]:
    return lambda c: int(c.execute("INSERT INTO log (n, v) VALUES (?, ?)", (n, v)).lastrowid or 0)


def logged(w: GroupCommitWriter) -> list[tuple[int, str]]:
    return [tuple(r) for r in w.conn.execute("SELECT n, v FROM log ORDER BY rowid")]


async def test_concurrent_writes_share_one_commit_in_submission_order(writer: GroupCommitWriter) -> None:
    results = await asyncio.gather(*(writer.write(insert(n)) for n in range(20)))
    assert results == list(range(20))  # each caller gets its own operation's result
    assert writer.commits == 1  # twenty callers, one transaction (one fsync)
    assert [n for n, _ in logged(writer)] == list(range(20))
    # rowid order is insertion order: the batch ran in the order the callers came
    assert [r[0] for r in writer.conn.execute("SELECT n FROM log ORDER BY rowid")] == list(range(20))


async def test_a_rejected_operation_fails_only_its_caller(writer: GroupCommitWriter) -> None:
    await writer.write(insert(1))
    outcomes = await asyncio.gather(
        writer.write(insert(2)),
        writer.write(insert(1, "duplicate key")),
        writer.write(insert(3)),
        return_exceptions=True,
    )
    assert outcomes[0] == 2 and outcomes[2] == 3
    assert isinstance(outcomes[1], SpoolError) and "rejected" in str(outcomes[1])
    assert logged(writer) == [(1, "x"), (2, "x"), (3, "x")]


async def test_a_failed_batch_fails_exactly_its_callers_and_commits_none_of_it(
    writer: GroupCommitWriter,
) -> None:
    def broken(c: sqlite3.Connection) -> None:
        c.execute("INSERT INTO no_such_table VALUES (1)")

    outcomes = await asyncio.gather(
        writer.write(insert(1)),
        writer.write(broken),
        writer.write(insert(2)),
        return_exceptions=True,
    )
    assert all(isinstance(o, SpoolError) for o in outcomes)
    assert isinstance(outcomes[0], SpoolError) and isinstance(outcomes[0].__cause__, sqlite3.OperationalError)
    assert logged(writer) == [] and writer.failing  # nothing of the batch, and /health knows
    assert await writer.write(insert(3)) == 3  # the next batch is unaffected
    assert logged(writer) == [(3, "x")] and writer.failing == ""


async def test_disk_full_fails_the_batch_then_recovers(writer: GroupCommitWriter) -> None:
    await writer.write(insert(1))
    pages = int(writer.conn.execute("PRAGMA page_count").fetchone()[0])
    await writer.write(lambda c: c.execute(f"PRAGMA max_page_count = {pages}"))
    big = "y" * 200_000
    outcomes = await asyncio.gather(
        writer.write(insert(2, big)),
        writer.write(insert(3)),
        return_exceptions=True,
    )
    assert all(isinstance(o, SpoolError) for o in outcomes)
    assert isinstance(outcomes[0], SpoolError)
    cause = outcomes[0].__cause__
    assert isinstance(cause, sqlite3.OperationalError) and "full" in str(cause)
    assert [n for n, _ in logged(writer)] == [1]
    await writer.write(lambda c: c.execute("PRAGMA max_page_count = 1073741823"))
    assert await writer.write(insert(2, big)) == 2
    assert writer.failing == ""


async def test_durable_batches_are_fsynced_others_not(writer: GroupCommitWriter) -> None:
    def synchronous(c: sqlite3.Connection) -> int:
        return int(c.execute("PRAGMA synchronous").fetchone()[0])

    assert await writer.write(synchronous, durable=False) == 1  # NORMAL
    assert await writer.write(synchronous, durable=True) == 2  # FULL
    both = await asyncio.gather(writer.write(synchronous, durable=False), writer.write(synchronous))
    assert list(both) == [2, 2]  # one durable caller makes the whole transaction durable


async def test_stop_fails_what_never_began(tmp_path: Path) -> None:
    conn = connect(tmp_path / "s.db")
    executor = ThreadPoolExecutor(max_workers=1)
    w = GroupCommitWriter(conn, executor)  # never started: nothing is taken
    pending = asyncio.ensure_future(w.write(lambda c: None))
    await asyncio.sleep(0)  # let it queue its operation
    await w.stop()
    with pytest.raises(SpoolError, match="spool closed"):
        await pending
    conn.close()
    executor.shutdown()
