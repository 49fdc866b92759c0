"""The durable queue: SQLite in WAL mode with synchronous=FULL, and group commit.

Every write goes through one writer task: operations that arrive while a commit is in flight
are committed together in the next transaction, so N concurrent SMTP sessions cost one fsync,
not N. A caller's future resolves only after its transaction is on disk; the listener answers
250 only then (DESIGN.md section 4).

Only new messages need that fsync. Delivery's state changes (claimed, sent, deferred) are
committed with synchronous=NORMAL: atomic, and safe against a crash of the process, while a
power loss may undo the last of them, so a message can be sent again (at-least-once, as
DESIGN.md promises; the relay id makes the duplicate visible), never lost. The next durable
commit makes them durable too, since the WAL is written in order.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from relay.errors import SpoolError
from relay.model import ProviderMail, ProviderReply, State
from relay.outcomes import REPLIES_SCHEMA, Applied, apply_reply
from relay.policy import Rule

log = logging.getLogger("relay.spool")
T = TypeVar("T")
Op = Callable[[sqlite3.Connection], Any]

# States a message does not leave by itself: what retention may delete.
FINISHED = (State.CONFIRMED, State.FAILED, State.EXPIRED, State.DUPLICATE, State.SENT, State.UNCONFIRMED)

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY,            -- the relay id, also the provider's <id>
    state TEXT NOT NULL,
    mode TEXT NOT NULL,
    route TEXT NOT NULL,
    mail_from TEXT NOT NULL,        -- the original envelope sender
    rcpt_tos TEXT NOT NULL,         -- JSON list: the original recipients
    inbound_id TEXT NOT NULL,       -- Message-ID of the original mail
    phones TEXT NOT NULL,           -- JSON list
    texts TEXT NOT NULL,            -- JSON list
    parts INTEGER NOT NULL,
    encoding TEXT NOT NULL,
    upstream_from TEXT NOT NULL,
    upstream_to TEXT NOT NULL,
    message BLOB NOT NULL,          -- the exact provider mail with the password masked
    masked INTEGER NOT NULL,        -- 1: put the configured password in at send time
    attempts INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    next_attempt REAL NOT NULL,
    last_error TEXT NOT NULL DEFAULT '',
    error_code INTEGER,
    sms_count INTEGER
);
DROP INDEX IF EXISTS messages_due;  -- replaced by messages_waiting
-- Only the rows waiting to be sent, in the order they are due: claiming stays cheap however
-- many finished rows the spool keeps. Queries must spell the same WHERE to use it.
CREATE INDEX IF NOT EXISTS messages_waiting ON messages (next_attempt) WHERE state IN ('queued', 'deferred');
"""
STORM_SCHEMA = """
-- Alert-storm control (relay/stormstore.py): held alerts, dedup windows, sends per phone.
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY,            -- the relay id the client's 250 named
    route TEXT NOT NULL,
    phones TEXT NOT NULL,           -- JSON list
    text TEXT NOT NULL,
    kind TEXT NOT NULL,             -- problem, recovery, followup
    alert_key TEXT NOT NULL,
    dedup TEXT NOT NULL,
    urgent INTEGER NOT NULL,
    received REAL NOT NULL,
    due REAL NOT NULL,
    state TEXT NOT NULL,            -- held, sent, repeat, cancelled
    message_id TEXT,                -- the provider request it went out in
    mail_from TEXT NOT NULL,
    inbound_id TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    updated REAL NOT NULL,
    rcpt TEXT NOT NULL DEFAULT ''   -- the address the mail came to
);
CREATE INDEX IF NOT EXISTS alerts_held ON alerts (route, alert_key) WHERE state = 'held';
CREATE INDEX IF NOT EXISTS alerts_updated ON alerts (updated);
CREATE TABLE IF NOT EXISTS dedup_windows (
    key TEXT PRIMARY KEY,
    route TEXT NOT NULL,
    phones TEXT NOT NULL,
    text TEXT NOT NULL,
    opened REAL NOT NULL,
    closes REAL NOT NULL,
    repeats INTEGER NOT NULL,
    source TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS phone_sends (phone TEXT NOT NULL, at REAL NOT NULL, digest TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS phone_sends_by_phone ON phone_sends (phone, at);
"""
WAITING = "state IN ('queued', 'deferred')"  # the partial index's condition, verbatim


@dataclass(frozen=True, slots=True)
class Row:
    id: str
    state: State
    mode: str
    route: str
    mail_from: str
    rcpt_tos: list[str]
    inbound_id: str
    phones: list[str]
    texts: list[str]
    parts: int
    encoding: str
    upstream_from: str
    upstream_to: str
    message: bytes
    masked: bool
    attempts: int
    created: float
    updated: float
    next_attempt: float
    last_error: str
    error_code: int | None
    sms_count: int | None

    @classmethod
    def from_db(cls, r: sqlite3.Row) -> Row:
        d = dict(r)
        for key in ("rcpt_tos", "phones", "texts"):
            d[key] = json.loads(d[key])
        d["state"] = State(d["state"])
        d["masked"] = bool(d["masked"])
        return cls(**d)


def new_rows(
    mails: Sequence[ProviderMail], *, mail_from: str, inbound_id: str, state: State, attempts: int, now: float
) -> list[Row]:
    return [
        Row(
            id=m.relay_id, state=state, mode=m.mode.value, route=m.route, mail_from=mail_from,
            rcpt_tos=list(m.rcpt_tos), inbound_id=inbound_id, phones=list(m.phones), texts=list(m.texts),
            parts=m.segments.parts, encoding=m.segments.encoding, upstream_from=m.mail_from,
            upstream_to=m.rcpt_to,
            message=m.masked.encode("ascii") if m.keeps_config_secret else m.message,
            masked=m.keeps_config_secret, attempts=attempts, created=now, updated=now, next_attempt=now,
            last_error="", error_code=None, sms_count=None,
        )
        for m in mails
    ]  # fmt: skip


def insert_rows(conn: sqlite3.Connection, rows: Sequence[Row]) -> None:
    conn.executemany(
        "INSERT INTO messages (id, state, mode, route, mail_from, rcpt_tos, inbound_id, phones,"
        " texts, parts, encoding, upstream_from, upstream_to, message, masked, attempts, created,"
        " updated, next_attempt) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                r.id, r.state.value, r.mode, r.route, r.mail_from, json.dumps(r.rcpt_tos), r.inbound_id,
                json.dumps(r.phones), json.dumps(r.texts, ensure_ascii=False), r.parts, r.encoding,
                r.upstream_from, r.upstream_to, r.message, int(r.masked), r.attempts, r.created, r.updated,
                r.next_attempt,
            )
            for r in rows
        ],
    )  # fmt: skip


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")  # the WAL is fsynced at every commit
    conn.execute("PRAGMA busy_timeout=10000")  # `queue` commands may read while we write
    return conn


class Spool:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool")
        self._conn: sqlite3.Connection | None = None
        self._pending: list[tuple[Op, asyncio.Future[Any], bool]] = []
        self._synchronous = "FULL"
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self.commits = 0  # transactions written: with group commit, fewer than operations
        self.failing = ""  # the last commit error, until a commit succeeds again (for /health)

    async def open(self) -> int:
        """Open (creating) the spool; rows left `sending` by a crash are queued again."""
        loop = asyncio.get_running_loop()
        try:
            recovered = await loop.run_in_executor(self._executor, self._open)
        except (sqlite3.Error, OSError) as exc:
            raise SpoolError(f"cannot open spool {self.path}: {exc}") from exc
        self._writer = asyncio.create_task(self._write_loop(), name="spool-writer")
        return recovered

    def _open(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = connect(self.path)
        self._conn.executescript(SCHEMA + REPLIES_SCHEMA + STORM_SCHEMA)
        self.path.chmod(0o600)
        cur = self._conn.execute(
            "UPDATE messages SET state = ?, updated = ? WHERE state = ?",
            (State.QUEUED.value, time.time(), State.SENDING.value),
        )
        return cur.rowcount

    async def close(self) -> None:
        if self._writer:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
        if self._conn:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._conn.close)
        self._executor.shutdown(wait=True)

    # ---- writes: group-committed -------------------------------------------------------
    async def write(self, op: Callable[[sqlite3.Connection], T], *, durable: bool = True) -> T:
        """Run `op` in the next transaction; return once that transaction is committed, and
        on disk (fsynced) if `durable`."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((op, future, durable))
        self._wake.set()
        return await future

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            if not batch:
                continue
            try:
                results = await loop.run_in_executor(self._executor, self._commit, batch)
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
                if future.done():
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

    def _commit(self, batch: list[tuple[Op, asyncio.Future[Any], bool]]) -> list[tuple[bool, Any]]:
        assert self._conn is not None
        conn = self._conn
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

    async def enqueue(
        self,
        mails: Sequence[ProviderMail],
        *,
        mail_from: str,
        inbound_id: str,
        claimed: bool = False,
        also: Op | None = None,
    ) -> list[Row]:
        """Store new provider mails durably; return them as rows.

        `claimed`: the rows go in as `sending` (attempt 1), owned by a delivery worker that is
        handed them in memory, which saves a claim transaction per message. A crash before
        they are sent leaves them `sending`, and `open()` queues those again. `also` runs in
        the same transaction (a mail's storm alerts: all of the mail is stored, or none).
        """
        now = time.time()
        state, attempts = (State.SENDING, 1) if claimed else (State.QUEUED, 0)
        rows = new_rows(
            mails, mail_from=mail_from, inbound_id=inbound_id, state=state, attempts=attempts, now=now
        )

        def op(conn: sqlite3.Connection) -> None:
            insert_rows(conn, rows)
            if also is not None:
                also(conn)

        await self.write(op)
        return rows

    async def claim(self, limit: int, now: float) -> list[Row]:
        """Due rows, moved to `sending` in the same transaction: no two workers get one row."""

        def op(conn: sqlite3.Connection) -> list[Row]:
            paused = conn.execute("SELECT value FROM control WHERE key = 'paused_until'").fetchone()
            if paused is not None and float(paused[0]) > now:
                return []  # a provider error holds the queue (written with the error itself)
            found = conn.execute(
                f"SELECT * FROM messages WHERE {WAITING} AND next_attempt <= ? ORDER BY next_attempt LIMIT ?",
                (now, limit),
            ).fetchall()
            ids = [r["id"] for r in found]
            conn.executemany(
                "UPDATE messages SET state = ?, attempts = attempts + 1, updated = ? WHERE id = ?",
                [(State.SENDING.value, now, i) for i in ids],
            )
            return [
                dataclasses.replace(Row.from_db(r), state=State.SENDING, attempts=r["attempts"] + 1)
                for r in found
            ]

        return await self.write(op)

    async def finish(self, relay_id: str, state: State, *, durable: bool = False, **values: Any) -> None:
        """Record an attempt's outcome: state plus any of next_attempt, last_error, error_code...

        Not fsynced by default: losing it to a power cut means one resend, not a lost message."""
        allowed = {"next_attempt", "last_error", "error_code", "sms_count", "attempts"}
        assert set(values) <= allowed, values
        columns = "".join(f", {k} = ?" for k in values)

        def op(conn: sqlite3.Connection) -> None:
            # Only the attempt's owner moves a row out of `sending`: a provider reply that came
            # first (confirmed, failed...) is not overwritten.
            conn.execute(
                f"UPDATE messages SET state = ?, updated = ?{columns} WHERE id = ? AND state = 'sending'",
                (state.value, time.time(), *values.values(), relay_id),
            )

        await self.write(op, durable=durable)

    async def next_due(self) -> float | None:
        def op() -> float | None:
            assert self._conn is not None
            row = self._conn.execute(f"SELECT MIN(next_attempt) FROM messages WHERE {WAITING}").fetchone()
            return None if row[0] is None else float(row[0])

        return await asyncio.get_running_loop().run_in_executor(self._executor, op)

    # ---- provider replies and queue control --------------------------------------------------
    async def record_reply(
        self,
        reply: ProviderReply,
        *,
        mail_from: str,
        raw: bytes,
        untrusted: str = "",
        pause_for: Callable[[Rule], float] = lambda rule: 3600.0,
    ) -> Applied:
        """Keep the reply and move its message to the state the reply means; an `untrusted`
        reply (the reason) is kept and changes nothing. A reply that pauses the queue writes the
        pause in the same transaction, so no worker can claim the message in between."""

        def op(conn: sqlite3.Connection) -> Applied:
            applied = Applied(f"kept (untrusted: {untrusted})") if untrusted else apply_reply(conn, reply)
            if applied.pause is not None:
                until = time.time() + pause_for(applied.pause)
                reason = f"provider ERROR {reply.code}: {applied.pause.meaning}"
                conn.executemany(
                    "INSERT OR REPLACE INTO control (key, value) VALUES (?, ?)",
                    [("paused_until", f"{until:.3f}"), ("pause_reason", reason)],
                )
                applied = dataclasses.replace(applied, paused_until=until, pause_reason=reason)
            conn.execute(
                "INSERT INTO replies (received, relay_id, kind, code, sms_count, description, line, outcome,"
                " mail_from, raw) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (time.time(), reply.relay_id, reply.kind.value, reply.code, reply.sms_count,
                 reply.description, reply.line, applied.outcome, mail_from, raw),
            )  # fmt: skip
            return applied

        return await self.write(op)

    async def counts(self) -> dict[str, int]:
        def op() -> dict[str, int]:
            assert self._conn is not None
            return dict(self._conn.execute("SELECT state, COUNT(*) FROM messages GROUP BY state").fetchall())

        return await asyncio.get_running_loop().run_in_executor(self._executor, op)

    async def count_waiting(self) -> int:
        def op() -> int:
            assert self._conn is not None
            return int(self._conn.execute(f"SELECT COUNT(*) FROM messages WHERE {WAITING}").fetchone()[0])

        return await asyncio.get_running_loop().run_in_executor(self._executor, op)

    async def get(self, relay_id: str) -> Row | None:
        def op() -> Row | None:
            assert self._conn is not None
            found = self._conn.execute("SELECT * FROM messages WHERE id = ?", (relay_id,)).fetchone()
            return None if found is None else Row.from_db(found)

        return await asyncio.get_running_loop().run_in_executor(self._executor, op)

    async def sweep_unconfirmed(self, older_than: float) -> int:
        """`sent` rows with no provider reply for `older_than` seconds become `unconfirmed`."""

        def op(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "UPDATE messages SET state = ?, updated = ? WHERE state = ? AND updated < ?",
                (State.UNCONFIRMED.value, time.time(), State.SENT.value, time.time() - older_than),
            )
            return cur.rowcount

        return await self.write(op)

    async def prune(self, older_than: float, limit: int = 10_000) -> tuple[int, int]:
        """Delete finished messages and provider replies last touched before `older_than` (epoch
        seconds); at most `limit` of each per call, so one call never holds the writer long."""
        finished = tuple(s.value for s in FINISHED)

        def op(conn: sqlite3.Connection) -> tuple[int, int]:
            marks = ",".join("?" * len(finished))
            messages = conn.execute(
                f"DELETE FROM messages WHERE id IN (SELECT id FROM messages WHERE state IN ({marks})"
                " AND updated < ? LIMIT ?)",
                (*finished, older_than, limit),
            ).rowcount
            replies = conn.execute(
                "DELETE FROM replies WHERE n IN (SELECT n FROM replies WHERE received < ? LIMIT ?)",
                (older_than, limit),
            ).rowcount
            # Alerts that are done (sent, counted, cancelled): their SMS is a message row already.
            conn.execute(
                "DELETE FROM alerts WHERE id IN (SELECT id FROM alerts WHERE state != 'held' AND updated < ?"
                " LIMIT ?)",
                (older_than, limit),
            )
            return messages, replies

        return await self.write(op, durable=False)

    async def alert_senders(self, relay_id: str) -> dict[str, list[str]]:
        """For a storm digest: the original envelope senders of the alerts in it, each with the
        addresses it mailed (a failure notice goes to each of them)."""

        def op() -> dict[str, list[str]]:
            assert self._conn is not None
            found: dict[str, list[str]] = {}
            for mail_from, rcpt in self._conn.execute(
                "SELECT mail_from, rcpt FROM alerts WHERE message_id = ? ORDER BY received", (relay_id,)
            ):
                rcpts = found.setdefault(mail_from, [])
                if rcpt and rcpt not in rcpts:
                    rcpts.append(rcpt)
            return found

        return await asyncio.get_running_loop().run_in_executor(self._executor, op)

    async def set_control(self, key: str, value: str | None) -> None:
        def op(conn: sqlite3.Connection) -> None:
            if value is None:
                conn.execute("DELETE FROM control WHERE key = ?", (key,))
            else:
                conn.execute("INSERT OR REPLACE INTO control (key, value) VALUES (?, ?)", (key, value))

        await self.write(op)

    async def control(self) -> dict[str, str]:
        def op() -> dict[str, str]:
            assert self._conn is not None
            return dict(self._conn.execute("SELECT key, value FROM control").fetchall())

        return await asyncio.get_running_loop().run_in_executor(self._executor, op)
