"""PostgreSQL under the spool's SQL: the schema and its migrations, and `PgDb`, which turns the
`?` marks that SQLite and PostgreSQL share into psycopg's and gives rows that read like
sqlite3.Row (relay/spool/db.py). relay/spool/postgres.py is the spool that runs on it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import lru_cache
from typing import Any

import psycopg
from psycopg import ClientCursor
from psycopg.conninfo import conninfo_to_dict

from relay.errors import SpoolError
from relay.spool.schema import HELD, KEPT_REPLIES, WAITING

MIGRATE_LOCK = 0x534D5344  # pg_advisory_xact_lock key of migrations (two relays starting at once)
# libpq's connect_timeout for the pool's connections, unless the DSN has one: libpq's default
# waits as long as TCP does (minutes, for a host that drops packets), and holds the next try.
CONNECT_TIMEOUT = 2

# The schema: SQLite's tables (schema.py) with PostgreSQL's types. Timestamps are epoch
# seconds in DOUBLE PRECISION (REAL is 4 bytes here), flags 0/1 integers as in SQLite, so that
# one text of each statement serves both.
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
    masked INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created DOUBLE PRECISION NOT NULL,
    updated DOUBLE PRECISION NOT NULL,
    next_attempt DOUBLE PRECISION NOT NULL,
    last_error TEXT NOT NULL DEFAULT '',
    error_code INTEGER,
    sms_count INTEGER,
    uncertain INTEGER NOT NULL DEFAULT 0,
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
CREATE INDEX messages_tracked ON messages (next_poll) WHERE next_poll IS NOT NULL;
CREATE INDEX messages_created ON messages (created);
CREATE TABLE replies (
    n BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received DOUBLE PRECISION NOT NULL,
    relay_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    code INTEGER,
    sms_count INTEGER,
    description TEXT NOT NULL,
    line TEXT NOT NULL,
    outcome TEXT NOT NULL,
    mail_from TEXT NOT NULL,
    raw BYTEA NOT NULL
);
CREATE INDEX replies_relay_id ON replies (relay_id);
CREATE INDEX replies_kept ON replies (n) WHERE {KEPT_REPLIES};
CREATE TABLE control (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE alerts (
    id TEXT PRIMARY KEY,
    route TEXT NOT NULL,
    phones TEXT NOT NULL,
    text TEXT NOT NULL,
    kind TEXT NOT NULL,
    alert_key TEXT NOT NULL,
    dedup TEXT NOT NULL,
    urgent INTEGER NOT NULL,
    received DOUBLE PRECISION NOT NULL,
    due DOUBLE PRECISION NOT NULL,
    state TEXT NOT NULL,
    message_id TEXT,
    mail_from TEXT NOT NULL,
    inbound_id TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    updated DOUBLE PRECISION NOT NULL,
    rcpt TEXT NOT NULL DEFAULT ''
);
CREATE INDEX alerts_held ON alerts (route, alert_key) WHERE {HELD};
CREATE INDEX alerts_updated ON alerts (updated);
CREATE INDEX alerts_message ON alerts (message_id);
CREATE TABLE dedup_windows (
    key TEXT PRIMARY KEY,
    route TEXT NOT NULL,
    phones TEXT NOT NULL,
    text TEXT NOT NULL,
    opened DOUBLE PRECISION NOT NULL,
    closes DOUBLE PRECISION NOT NULL,
    repeats INTEGER NOT NULL,
    source TEXT NOT NULL
);
CREATE TABLE phone_sends (phone TEXT NOT NULL, at DOUBLE PRECISION NOT NULL, digest TEXT NOT NULL);
CREATE INDEX phone_sends_by_phone ON phone_sends (phone, at);
CREATE TABLE phone_status (
    relay_id TEXT NOT NULL,
    phone TEXT NOT NULL,
    status INTEGER NOT NULL,
    err INTEGER NOT NULL DEFAULT 0,
    changed DOUBLE PRECISION NOT NULL,
    checked DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (relay_id, phone)
);
"""
# Index i holds migration i + 1. Append, never edit: a released database has run the old text.
# Version 2: as SQLite's version 5, the mail a message was made from and the config's digest.
_V2 = """
ALTER TABLE messages ADD COLUMN inbound BYTEA;
ALTER TABLE messages ADD COLUMN config TEXT NOT NULL DEFAULT '';
"""
# Version 3: as SQLite's version 6, SMPP delivery receipts.
_V3 = """
-- SMPP (provider.transport: smpp): each part's provider message id, from its submit_sm_resp,
-- and the status its delivery receipt gave (NULL: none yet), in status.php's codes.
CREATE TABLE smpp_parts (
    message_id TEXT PRIMARY KEY,
    relay_id TEXT NOT NULL,
    phone TEXT NOT NULL,
    part INTEGER NOT NULL,
    status INTEGER,
    err INTEGER NOT NULL DEFAULT 0,
    changed DOUBLE PRECISION
);
CREATE INDEX smpp_parts_by_message ON smpp_parts (relay_id);
-- deliver_sm that changed nothing yet: receipts no part has the id of (one that came before its
-- submit's outcome was written is matched when it is), malformed ones and incoming SMS, kept
-- as digests; bounded by count and age (spool/receipts.py).
CREATE TABLE smpp_inbound (
    n BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL,
    message_id TEXT NOT NULL,
    status INTEGER NOT NULL,
    err INTEGER NOT NULL,
    changed DOUBLE PRECISION NOT NULL,
    received DOUBLE PRECISION NOT NULL,
    digest TEXT NOT NULL
);
CREATE INDEX smpp_inbound_by_id ON smpp_inbound (message_id);
"""
MIGRATIONS: tuple[str, ...] = (_V1, _V2, _V3)
VERSION = len(MIGRATIONS)


@lru_cache(maxsize=512)
def translate(sql: str) -> str:
    """SQLite's `?` marks as psycopg's `%s`, and a literal `%` as `%%`; text inside '...'
    is left as it is but for the `%` (psycopg reads the whole statement)."""
    parts = re.split(r"('(?:[^']|'')*')", sql)
    out = []
    for n, part in enumerate(parts):
        part = part.replace("%", "%%")
        out.append(part if n % 2 else part.replace("?", "%s"))
    return "".join(out)


class PgRow:
    """A row as sqlite3.Row reads: by position, by column name, unpacked, or dict(row)."""

    __slots__ = ("_index", "_values")

    def __init__(self, values: Sequence[Any], index: dict[str, int]) -> None:
        self._values, self._index = values, index

    def __getitem__(self, key: int | str) -> Any:
        return self._values[self._index[key] if isinstance(key, str) else key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def keys(self) -> list[str]:
        return list(self._index)


def _rows(cursor: Any) -> Callable[[Sequence[Any]], PgRow]:
    index = {column.name: n for n, column in enumerate(cursor.description or ())}
    return lambda values: PgRow(values, index)


def _value(v: Any) -> Any:
    return int(v) if isinstance(v, bool) else v  # flags are 0/1 integers, as in SQLite


class PgDb:
    """A psycopg connection with sqlite3.Connection's execute/executemany (relay/spool/db.py)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Any:
        # Always with parameters, even none: psycopg then reads `%%` as `%`.
        return self.conn.execute(translate(sql), [_value(v) for v in parameters])

    def executemany(self, sql: str, seq_of_parameters: Iterable[Sequence[Any]], /) -> Any:
        cur = self.conn.cursor()
        cur.executemany(translate(sql), [[_value(v) for v in p] for p in seq_of_parameters])
        return cur


def connection_kwargs() -> dict[str, Any]:
    """How every spool connection is made: client-side binding (values quoted by libpq's
    rules, as psycopg2 did: SQLite's untyped `?` marks need no server-side types)."""
    return {"cursor_factory": ClientCursor, "row_factory": _rows}


def pool_kwargs(dsn: str) -> dict[str, Any]:
    """connection_kwargs(), and a connect_timeout unless the DSN gives its own."""
    try:
        given = "connect_timeout" in conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        given = False  # the connection says what is wrong with it
    return connection_kwargs() if given else {**connection_kwargs(), "connect_timeout": CONNECT_TIMEOUT}


def masked(text: str, dsn: str) -> str:
    """An error text with the DSN's password (if it has one) shown as ***."""
    try:
        password = conninfo_to_dict(dsn).get("password")
    except psycopg.ProgrammingError:
        return "(the DSN cannot be parsed)"
    return text.replace(str(password), "***") if password else text


def migrate(conn: psycopg.Connection[Any]) -> int:
    """Bring the schema to VERSION under an advisory lock; returns the version it had."""
    db = PgDb(conn)
    with conn.transaction():
        db.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATE_LOCK,))
        db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        found = int(db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0])
        if found > VERSION:
            raise SpoolError(
                f"spool schema version {found} is newer than this relay knows ({VERSION}): upgrade smsc-relay"
            )
        for number in range(found + 1, VERSION + 1):
            conn.execute(MIGRATIONS[number - 1])  # DDL only: no marks to translate
            db.execute("INSERT INTO schema_version (version) VALUES (?)", (number,))
    return found
