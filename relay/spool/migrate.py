"""`smsc-relay spool migrate`: copy a SQLite spool into a PostgreSQL one (docs/ha.md).

Every table is copied as it is, in one PostgreSQL transaction: the messages in every state,
the provider replies, held alerts and dedup windows, what each phone was sent (the provider's
limits keep counting), delivery statuses, and the control table with the reply tags' key, so
that replies to mail sent before the move still land on their messages. Rows a crash left
`sending` go in as `queued` and uncertain, as a restart would make them. The target must hold
no messages yet: two queues are not merged.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

import psycopg

from relay.errors import SpoolError
from relay.model import State
from relay.spool import pgdb, postgres, schema

# In this order; `replies.n` is the database's own (an identity column), so not copied.
TABLES = ("messages", "replies", "control", "alerts", "dedup_windows", "phone_sends", "phone_status")
SKIP = {"replies": {"n"}}
BATCH = 1000


@dataclass(frozen=True, slots=True)
class Copied:
    counts: dict[str, int]  # rows per table
    requeued: int  # `sending` rows queued again (uncertain)


def copy(source: sqlite3.Connection, dsn: str) -> Copied:
    """Copy the spool open on `source` into the database at `dsn` (made or migrated first)."""
    schema.migrate(source)  # an older spool gets today's columns first
    try:
        with psycopg.connect(dsn, connect_timeout=10, **pgdb.connection_kwargs()) as target:
            pgdb.migrate(target)
            return _copy(source, target)
    except psycopg.Error as exc:
        raise SpoolError(f"PostgreSQL: {pgdb.masked(str(exc), dsn)}") from None


def _copy(source: sqlite3.Connection, target: psycopg.Connection[Any]) -> Copied:
    db = pgdb.PgDb(target)
    counts: dict[str, int] = {}
    with target.transaction():
        db.execute("SELECT pg_advisory_xact_lock(?)", (postgres.SHARED_LOCK,))  # no relay writes meanwhile
        if db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]:
            raise SpoolError("the PostgreSQL spool holds messages already: migrate into a new database")
        for table in TABLES:
            have = {r[0] for r in db.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ?", (table,)
            )}  # fmt: skip
            cur = source.execute(f"SELECT * FROM {table}")
            columns = [d[0] for d in cur.description if d[0] in have and d[0] not in SKIP.get(table, ())]
            insert = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
            if table == "control":  # the target's own key (a relay started on it) gives way to ours
                insert += " ON CONFLICT (key) DO UPDATE SET value = excluded.value"
            counts[table] = 0
            while rows := cur.fetchmany(BATCH):
                db.executemany(insert, [[r[c] for c in columns] for r in rows])
                counts[table] += len(rows)
        requeued = db.execute(
            "UPDATE messages SET state = ?, uncertain = 1, claimed_by = NULL, lease_until = NULL"
            " WHERE state = ?",
            (State.QUEUED.value, State.SENDING.value),
        ).rowcount
        postgres.notify(db, "queued")
    return Copied(counts, int(requeued))
