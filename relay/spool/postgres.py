"""The spool on PostgreSQL, for two relays sharing one queue (issue 15): first part.

What is here: the schema with numbered migrations, and the message lifecycle that two relays
share: enqueue (committed with synchronous_commit on before it returns), claim with
`FOR UPDATE SKIP LOCKED` under a lease the claiming relay renews, finish by the lease holder
only, leases that ran out given back to the queue (uncertain: the dead relay may have sent),
the queue-wide pause, counts. Not yet here, and so not selectable in the config: group
commit, replies, storm state, phone limits, tracking, LISTEN/NOTIFY (see the issue's note).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from relay.errors import SpoolError
from relay.model import ProviderMail, State
from relay.spool.messages import Row, from_db, new_rows

WAITING = "state IN ('queued', 'deferred')"
LEASE = 60.0  # seconds a claim is held without renewal before other relays may take the row

_V1 = f"""
CREATE TABLE messages (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    mode TEXT NOT NULL,
    route TEXT NOT NULL,
    mail_from TEXT NOT NULL,
    rcpt_tos TEXT NOT NULL,
    inbound_id TEXT NOT NULL,
    phones TEXT NOT NULL,
    texts TEXT NOT NULL,
    parts INTEGER NOT NULL,
    encoding TEXT NOT NULL,
    upstream_from TEXT NOT NULL,
    upstream_to TEXT NOT NULL,
    message BYTEA NOT NULL,
    masked BOOLEAN NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created DOUBLE PRECISION NOT NULL,
    updated DOUBLE PRECISION NOT NULL,
    next_attempt DOUBLE PRECISION NOT NULL,
    last_error TEXT NOT NULL DEFAULT '',
    error_code INTEGER,
    sms_count INTEGER,
    uncertain BOOLEAN NOT NULL DEFAULT FALSE,
    via TEXT NOT NULL DEFAULT '',
    cost TEXT NOT NULL DEFAULT '',
    balance TEXT NOT NULL DEFAULT '',
    next_poll DOUBLE PRECISION,
    track_until DOUBLE PRECISION,
    polls INTEGER NOT NULL DEFAULT 0,
    claimed_by TEXT,                  -- the relay holding a `sending` row
    lease_until DOUBLE PRECISION      -- and until when, unless it renews
);
CREATE INDEX messages_waiting ON messages (next_attempt) WHERE {WAITING};
CREATE INDEX messages_leased ON messages (lease_until) WHERE state = 'sending';
CREATE TABLE control (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
MIGRATIONS: tuple[str, ...] = (_V1,)
VERSION = len(MIGRATIONS)
_COLUMNS = (
    "id, state, mode, route, mail_from, rcpt_tos, inbound_id, phones, texts, parts, encoding,"
    " upstream_from, upstream_to, message, masked, attempts, created, updated, next_attempt, last_error,"
    " claimed_by, lease_until"
)


async def migrate(conn: AsyncConnection[Any]) -> int:
    """Bring the schema to VERSION under an advisory lock (two relays starting at once)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(8675309)")
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        found_row = await (await conn.execute("SELECT MAX(version) AS v FROM schema_version")).fetchone()
        found = int(found_row["v"] or 0) if found_row else 0
        if found > VERSION:
            raise SpoolError(f"spool schema version {found} is newer than this relay knows ({VERSION})")
        for number in range(found + 1, VERSION + 1):
            await conn.execute(MIGRATIONS[number - 1])
            await conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (number,))
    return found


def masked(text: str, dsn: str) -> str:
    """An error text with the DSN's password (if it has one) shown as ***."""
    try:
        password = conninfo_to_dict(dsn).get("password")
    except psycopg.ProgrammingError:
        return "(the DSN cannot be parsed)"
    return text.replace(str(password), "***") if password else text


class PostgresSpool:
    def __init__(
        self,
        dsn: str,
        *,
        relay: str,
        clock: Callable[[], float] = time.time,
        lease: float = LEASE,
        open_timeout: float = 10.0,
    ) -> None:
        self._dsn = dsn  # never logged: it may hold a password
        self.relay = relay  # this relay's name in `claimed_by`
        self.clock = clock
        self.lease = lease
        self.open_timeout = open_timeout  # seconds to reach the database at start
        self._pool: AsyncConnectionPool[AsyncConnection[Any]] | None = None

    def __repr__(self) -> str:
        return f"PostgresSpool(relay={self.relay!r})"

    @property
    def pool(self) -> AsyncConnectionPool[AsyncConnection[Any]]:
        if self._pool is None:
            raise SpoolError("spool is not open")
        return self._pool

    async def open(self) -> int:
        async def configure(conn: AsyncConnection[Any]) -> None:
            # The 250 is given only after the commit is durable on the primary (and, with
            # synchronous_standby_names set on the server, on the standby it names).
            await conn.execute("SET synchronous_commit = on")
            await conn.commit()

        try:
            # One direct connection first: an unreachable database fails at once with libpq's
            # reason (the pool would keep retrying), and the schema is brought up to date.
            first = await AsyncConnection.connect(
                self._dsn, row_factory=dict_row, connect_timeout=max(1, int(self.open_timeout))
            )
            async with first:
                await migrate(first)
        except SpoolError:
            raise
        except psycopg.Error as exc:
            raise SpoolError(f"cannot open the PostgreSQL spool: {masked(str(exc), self._dsn)}") from None
        self._pool = AsyncConnectionPool(
            self._dsn, min_size=1, max_size=4, kwargs={"row_factory": dict_row}, configure=configure,
            open=False,
        )  # fmt: skip
        await self._pool.open(wait=True, timeout=self.open_timeout)
        return await self.requeue_expired()

    async def close(self, timeout: float = 5.0) -> None:
        if self._pool is not None:
            await self._pool.close(timeout=timeout)
            self._pool = None

    async def enqueue(self, mails: Sequence[ProviderMail], *, mail_from: str, inbound_id: str) -> list[Row]:
        now = self.clock()
        rows = new_rows(
            mails, mail_from=mail_from, inbound_id=inbound_id, state=State.QUEUED, attempts=0, now=now
        )
        marks = ", ".join(["%s"] * 22)
        async with self.pool.connection() as conn, conn.transaction():
            cur = conn.cursor()
            await cur.executemany(
                f"INSERT INTO messages ({_COLUMNS}) VALUES ({marks})",
                [
                    (r.id, r.state.value, r.mode.value, r.route, r.mail_from, json.dumps(r.rcpt_tos),
                     r.inbound_id, json.dumps(r.phones), json.dumps(r.texts, ensure_ascii=False), r.parts,
                     r.encoding.value, r.upstream_from, r.upstream_to, r.message, r.masked, r.attempts,
                     r.created, r.updated, r.next_attempt, r.last_error, None, None)
                    for r in rows
                ],
            )  # fmt: skip
        return rows

    async def claim(self, limit: int, now: float) -> list[Row]:
        """Due rows for this relay, under a lease: another relay's claim skips them (SKIP
        LOCKED), so no row is claimed twice; none while the provider pause holds."""
        async with self.pool.connection() as conn, conn.transaction():
            paused = await (
                await conn.execute("SELECT value FROM control WHERE key = 'paused_until'")
            ).fetchone()
            if paused is not None and float(paused["value"]) > now:
                return []
            cur = await conn.execute(
                f"WITH due AS (SELECT id FROM messages WHERE {WAITING} AND next_attempt <= %s"
                " ORDER BY next_attempt LIMIT %s FOR UPDATE SKIP LOCKED)"
                " UPDATE messages m SET state = 'sending', attempts = m.attempts + 1, updated = %s,"
                " claimed_by = %s, lease_until = %s FROM due WHERE m.id = due.id RETURNING m.*",
                (now, limit, now, self.relay, now + self.lease),
            )
            return sorted((from_db(r) for r in await cur.fetchall()), key=lambda r: r.next_attempt)

    async def renew(self) -> int:
        """Keep this relay's claims: the rows it is still sending stay its own."""
        now = self.clock()
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE messages SET lease_until = %s WHERE state = 'sending' AND claimed_by = %s",
                (now + self.lease, self.relay),
            )
            return cur.rowcount

    async def requeue_expired(self) -> int:
        """Rows whose claimer stopped renewing (it died): back to the queue, marked uncertain
        (it may have sent them), for any relay to take."""
        now = self.clock()
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE messages SET state = 'queued', uncertain = TRUE, claimed_by = NULL,"
                " lease_until = NULL, updated = %s WHERE state = 'sending' AND lease_until < %s",
                (now, now),
            )
            return cur.rowcount

    async def finish(self, relay_id: str, state: State, **values: Any) -> bool:
        """The attempt's outcome, by the relay that holds the claim only; False when it lost it."""
        columns = "".join(f", {k} = %s" for k in values)
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE messages SET state = %s, updated = %s, claimed_by = NULL,"
                f" lease_until = NULL{columns} WHERE id = %s AND state = 'sending' AND claimed_by = %s",
                (state.value, self.clock(), *values.values(), relay_id, self.relay),
            )
            return cur.rowcount == 1

    async def get(self, relay_id: str) -> Row | None:
        async with self.pool.connection() as conn:
            found = await (await conn.execute("SELECT * FROM messages WHERE id = %s", (relay_id,))).fetchone()
        return None if found is None else from_db(found)

    async def counts(self) -> dict[State, int]:
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT state, COUNT(*) AS n FROM messages GROUP BY state")
            return {State(r["state"]): int(r["n"]) for r in await cur.fetchall()}

    async def set_control(self, key: str, value: str | None) -> None:
        async with self.pool.connection() as conn:
            if value is None:
                await conn.execute("DELETE FROM control WHERE key = %s", (key,))
            else:
                await conn.execute(
                    "INSERT INTO control (key, value) VALUES (%s, %s)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (key, value),
                )
