"""The spool's schema: every table and index, and the numbered migrations that build it.

`PRAGMA user_version` holds the number of the last migration applied. A spool made before
migrations existed has user_version 0 and today's tables already (version 1 is written with
IF NOT EXISTS for that reason), so it upgrades in place; a newer spool than this code knows is
refused rather than misread. Each migration runs in one transaction with its version bump.
"""

from __future__ import annotations

import sqlite3

from relay.errors import SpoolError
from relay.model import AlertState, State

WAITING_STATES = (State.QUEUED, State.DEFERRED)
# The partial index's condition, verbatim: queries must spell the same WHERE to use it. SQLite
# needs literal values in an index's WHERE; they are the enum's values, written from it.
WAITING = "state IN ({})".format(", ".join(f"'{s.value}'" for s in WAITING_STATES))
HELD = f"state = '{AlertState.HELD.value}'"
KEPT_REPLIES = "outcome LIKE 'kept%'"  # replies that changed nothing (ReplyOutcome.KEPT's text)

_V1 = f"""
-- Provider requests: one row per request, the relay id is the provider's <id> too.

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
CREATE INDEX IF NOT EXISTS messages_waiting ON messages (next_attempt) WHERE {WAITING};

-- Every mail to the reply address, read or not: the provider's word is never dropped.
CREATE TABLE IF NOT EXISTS replies (
    n INTEGER PRIMARY KEY,
    received REAL NOT NULL,
    relay_id TEXT NOT NULL,         -- '' when no id could be found
    kind TEXT NOT NULL,             -- ok | error | unknown
    code INTEGER,
    sms_count INTEGER,
    description TEXT NOT NULL,
    line TEXT NOT NULL,
    outcome TEXT NOT NULL,          -- what it did: confirmed, failed, paused, ..., unknown id, kept
    mail_from TEXT NOT NULL,
    raw BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS replies_relay_id ON replies (relay_id);
-- Queue-wide switches shared with `smsc-relay queue resume`: key -> value.
CREATE TABLE IF NOT EXISTS control (key TEXT PRIMARY KEY, value TEXT NOT NULL);

-- Alert-storm control (spool/alerts.py): held alerts, dedup windows, sends per phone.
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
CREATE INDEX IF NOT EXISTS alerts_held ON alerts (route, alert_key) WHERE {HELD};
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

# Version 2: the HTTP API (provider.transport: http) and delivery tracking.
_V2 = """
-- uncertain 1: the last attempt may have gone through (ask the provider before resending)
ALTER TABLE messages ADD COLUMN uncertain INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN via TEXT NOT NULL DEFAULT '';          -- smtp | http: how it went out
ALTER TABLE messages ADD COLUMN cost TEXT NOT NULL DEFAULT '';         -- the provider's price (HTTP answers)
ALTER TABLE messages ADD COLUMN balance TEXT NOT NULL DEFAULT '';      -- the balance after it
-- Delivery tracking: when to ask status.php next (NULL: not tracked), and until when.
ALTER TABLE messages ADD COLUMN next_poll REAL;
ALTER TABLE messages ADD COLUMN track_until REAL;  -- then without a final status: status-unknown
ALTER TABLE messages ADD COLUMN polls INTEGER NOT NULL DEFAULT 0;
CREATE INDEX messages_tracked ON messages (next_poll) WHERE next_poll IS NOT NULL;
-- Each phone's delivery status of each tracked request, as status.php last gave it.
CREATE TABLE phone_status (
    relay_id TEXT NOT NULL,
    phone TEXT NOT NULL,
    status INTEGER NOT NULL,
    err INTEGER NOT NULL DEFAULT 0,
    changed REAL NOT NULL,          -- when the provider last changed it (its last_timestamp)
    checked REAL NOT NULL,          -- when we last asked
    PRIMARY KEY (relay_id, phone)
);
"""

# Version 3: replies that changed nothing are bounded (spool/replies.trim_kept, prune_kept).
_V3 = f"CREATE INDEX replies_kept ON replies (n) WHERE {KEPT_REPLIES};"

# Version 4: who holds a `sending` row (the same columns as the PostgreSQL spool's, so one
# text of the SQL serves both; a SQLite spool has one relay, which never reads the lease).
_V4 = """
ALTER TABLE messages ADD COLUMN claimed_by TEXT;
ALTER TABLE messages ADD COLUMN lease_until REAL;
"""

# Version 5: the mail a message was made from (`queue retry` renders it again under the config
# in force), and which config rendered it (the file's digest).
_V5 = """
ALTER TABLE messages ADD COLUMN inbound BLOB;                       -- NULL: not kept (spool.keep_mail)
ALTER TABLE messages ADD COLUMN config TEXT NOT NULL DEFAULT '';    -- Config.digest it was rendered with
"""

# Version 6: SMPP delivery receipts (issue 24).
_V6 = """
-- SMPP (provider.transport: smpp): each part's provider message id, from its submit_sm_resp,
-- and the status its delivery receipt gave (NULL: none yet), in status.php's codes.
CREATE TABLE smpp_parts (
    message_id TEXT PRIMARY KEY,
    relay_id TEXT NOT NULL,
    phone TEXT NOT NULL,
    part INTEGER NOT NULL,
    status INTEGER,
    err INTEGER NOT NULL DEFAULT 0,
    changed REAL
);
CREATE INDEX smpp_parts_by_message ON smpp_parts (relay_id);
-- deliver_sm that changed nothing yet: receipts no part has the id of (one that came before its
-- submit's outcome was written is matched when it is), malformed ones and incoming SMS, kept
-- as digests; bounded by count and age (spool/receipts.py).
CREATE TABLE smpp_inbound (
    n INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    message_id TEXT NOT NULL,
    status INTEGER NOT NULL,
    err INTEGER NOT NULL,
    changed REAL NOT NULL,
    received REAL NOT NULL,
    digest TEXT NOT NULL
);
CREATE INDEX smpp_inbound_by_id ON smpp_inbound (message_id);
"""

# Index i holds migration i + 1. Append, never edit: a released spool has run the old text.
MIGRATIONS: tuple[str, ...] = (_V1, _V2, _V3, _V4, _V5, _V6)
VERSION = len(MIGRATIONS)


def version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the spool to VERSION; returns the version it had. The connection must be in
    autocommit mode (isolation_level=None), as the spool's always is."""
    found = version(conn)
    if found > VERSION:
        raise SpoolError(
            f"spool schema version {found} is newer than this relay knows ({VERSION}): "
            "upgrade smsc-relay, or restore the spool"
        )
    for number in range(found + 1, VERSION + 1):
        # executescript commits first and runs the script as given: BEGIN/COMMIT make the
        # migration and its version one transaction.
        script = f"BEGIN IMMEDIATE;\n{MIGRATIONS[number - 1]}\nPRAGMA user_version = {number};\nCOMMIT;"
        try:
            conn.executescript(script)
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return found
