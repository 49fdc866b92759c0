"""The durable queue on SQLite: WAL, synchronous=FULL for new mail, group commit.

One relay per spool file. The operations are base.py's (the SQL is messages.py's, replies.py's,
alerts.py's, tracking.py's); the transactions are writer.py's.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import socket
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from relay import access
from relay.errors import SpoolError
from relay.spool import messages, schema
from relay.spool.base import SqlSpool
from relay.spool.messages import Claim
from relay.spool.writer import GroupCommitWriter, SqliteEngine

T = TypeVar("T")


def connect(path: Path) -> sqlite3.Connection:
    """A connection as the spool uses it: autocommit (transactions are explicit), WAL. A file the
    process may not open or write is a SpoolError that says why (owner, mode, user)."""
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
    except sqlite3.OperationalError as exc:
        why = access.explain(Path(path))
        raise SpoolError(f"cannot open the spool {path}: {why or exc}") from None
    except sqlite3.DatabaseError as exc:  # not a database at all, or one damaged past reading
        raise SpoolError(
            f"the spool {path} is not a readable SQLite database ({exc}): move it aside and restore it from a"
            " backup, or start with an empty spool (the relay makes a new one)"
        ) from None
    conn.execute("PRAGMA synchronous=FULL")  # the WAL is fsynced at every commit
    conn.execute("PRAGMA busy_timeout=10000")  # `queue` commands may read while we write
    # The WAL is checkpointed every 256 pages (1 MiB) and cut back to 1 MiB after, instead of
    # SQLite's 1000 pages and no limit: on a nearly full disk the relay needs ~1 MiB free to go
    # on committing, not 4 MiB (a WAL that grew in a burst would otherwise keep its size).
    conn.execute("PRAGMA wal_autocheckpoint=256")
    conn.execute(f"PRAGMA journal_size_limit={1024 * 1024}")
    return conn


def lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def hold(path: Path) -> int:
    """The relay's lock on its spool file (flock on `<spool>.lock`), held while it runs and let go
    by the kernel when it dies: a second relay on the same file, or `spool migrate` of a spool a
    relay still serves, finds it taken."""
    lock = lock_path(path)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise SpoolError(
            f"another relay serves {path} (it holds {lock}): one SQLite spool, one relay"
        ) from None
    return fd


def held(path: Path) -> bool:
    """Whether a running relay holds this spool (its lock is taken)."""
    try:
        fd = os.open(lock_path(path), os.O_RDONLY)
    except FileNotFoundError:
        return False  # no relay has ever run on it, or it was copied here without its lock
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


class SqliteSpool(SqlSpool):
    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        # One relay holds every claim: the lease is never read (open() takes all back).
        super().__init__(Claim(socket.gethostname()), clock)
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool")
        self._conn: sqlite3.Connection | None = None
        self._lock: int | None = None  # the flock on `<spool>.lock` while this relay serves it

    async def open(self) -> int:
        """Open (creating, migrating) the spool; rows left `sending` by a crash are queued again."""
        try:
            conn, recovered = await self._in_thread(self._open)
        except (sqlite3.Error, OSError) as exc:
            raise SpoolError(f"cannot open spool {self.path}: {exc}") from exc
        self._conn = conn
        self._writer = GroupCommitWriter(SqliteEngine(conn), self._executor)
        self._writer.start()
        return recovered

    def _open(self) -> tuple[sqlite3.Connection, int]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self._lock is None:
            self._lock = hold(self.path)
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
            self._writer = None
        if self._conn is not None:
            await self._in_thread(self._conn.close)
            self._conn = None
        self._executor.shutdown(wait=True)
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    async def watch(self, wake: Callable[[str], None]) -> None:
        """Nothing to watch: no other relay writes this file (`queue` commands are polled)."""
