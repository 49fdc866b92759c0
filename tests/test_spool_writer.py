"""The group-commit writer on a real SQLite file: batching, order, and what a failure fails."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from relay.errors import SpoolError
from relay.spool.sqlite import connect
from relay.spool.writer import GroupCommitWriter, SqliteEngine


@pytest.fixture
async def writer(tmp_path: Path) -> AsyncIterator[GroupCommitWriter]:
    conn = connect(tmp_path / "w.db")
    conn.execute("CREATE TABLE log (n INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    executor = ThreadPoolExecutor(max_workers=1)
    w = GroupCommitWriter(SqliteEngine(conn), executor)
    w.start()
    yield w
    await w.stop()
    conn.close()
    executor.shutdown()


def insert(n: int, v: str = "x") -> Callable[[sqlite3.Connection], int]:
    return lambda c: int(c.execute("INSERT INTO log (n, v) VALUES (?, ?)", (n, v)).lastrowid or 0)


def sqlite(w: GroupCommitWriter) -> sqlite3.Connection:
    assert isinstance(w.engine, SqliteEngine)
    return w.engine.conn


def logged(w: GroupCommitWriter) -> list[tuple[int, str]]:
    return [tuple(r) for r in sqlite(w).execute("SELECT n, v FROM log ORDER BY rowid")]


async def test_concurrent_writes_share_one_commit_in_submission_order(writer: GroupCommitWriter) -> None:
    results = await asyncio.gather(*(writer.write(insert(n)) for n in range(20)))
    assert results == list(range(20))  # each caller gets its own operation's result
    assert writer.commits == 1  # twenty callers, one transaction (one fsync)
    assert [n for n, _ in logged(writer)] == list(range(20))
    # rowid order is insertion order: the batch ran in the order the callers came
    assert [r[0] for r in sqlite(writer).execute("SELECT n FROM log ORDER BY rowid")] == list(range(20))


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
    pages = int(sqlite(writer).execute("PRAGMA page_count").fetchone()[0])
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
    w = GroupCommitWriter(SqliteEngine(conn), executor)  # never started: nothing is taken
    pending = asyncio.ensure_future(w.write(lambda c: None))
    await asyncio.sleep(0)  # let it queue its operation
    await w.stop()
    with pytest.raises(SpoolError, match="spool closed"):
        await pending
    conn.close()
    executor.shutdown()


WAL_PROBE = r"""
import resource, signal, sqlite3, sys
from pathlib import Path
from relay.spool.sqlite import connect
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG), as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (2 * 1024 * 1024, 2 * 1024 * 1024))
conn = connect(Path(sys.argv[1]))
conn.execute("CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v BLOB)")
conn.execute("INSERT OR REPLACE INTO t VALUES (1, zeroblob(4000))")
for n in range(2000):  # the database stays one row; only the WAL could grow
    try:
        conn.execute("UPDATE t SET v = randomblob(4000) WHERE k = 1")
    except sqlite3.OperationalError as exc:
        print(f"failed after {n} commits: {exc}")
        sys.exit(1)
print("ok")
"""


def test_the_spool_keeps_committing_with_2_mib_of_room(tmp_path: Path) -> None:
    """The WAL is bounded near 1 MiB: 2,000 commits fit in a 2 MiB file-size limit (with
    SQLite's defaults the WAL grows to ~4 MiB before its first checkpoint, and fails here)."""
    done = subprocess.run(
        [sys.executable, "-c", WAL_PROBE, str(tmp_path / "spool.db")],
        capture_output=True, text=True, timeout=120, cwd=Path(__file__).parent.parent,
    )  # fmt: skip
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stdout + done.stderr
