"""Provider requests in the spool: the stored row, and the SQL of its lifecycle (DESIGN.md 4).

Each function runs inside a transaction the caller owns (the group-commit writer's, or a CLI
connection's); none commits by itself.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from relay.model import Encoding, ProviderMail, RouteMode, State
from relay.spool.schema import WAITING

# States a message does not leave by itself: what retention may delete.
FINISHED = (
    State.CONFIRMED, State.FAILED, State.EXPIRED, State.DUPLICATE, State.SENT, State.UNCONFIRMED,
    State.REPEAT, State.DRY_RUN, State.DELIVERED, State.UNDELIVERED, State.STATUS_UNKNOWN,
)  # fmt: skip
_INSERT_MARKS = ", ".join("?" * 20)  # one per column of `insert`
# Columns `finish` may set besides the state.
FINISH_COLUMNS = frozenset(
    {"next_attempt", "last_error", "error_code", "sms_count", "attempts", "uncertain", "via", "next_poll",
     "track_until"}
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Row:
    """One stored provider request."""

    id: str
    state: State
    mode: RouteMode
    route: str
    mail_from: str
    rcpt_tos: list[str]
    inbound_id: str
    phones: list[str]
    texts: list[str]
    parts: int
    encoding: Encoding
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
    uncertain: bool = False  # the last attempt may have reached the provider
    via: str = ""  # smtp | http, once sent
    cost: str = ""
    balance: str = ""
    next_poll: float | None = None  # delivery tracking
    track_until: float | None = None
    polls: int = 0


def from_db(r: sqlite3.Row | Mapping[str, Any]) -> Row:
    """A stored row (SQLite's, or a PostgreSQL dict row) as a Row; extra columns are dropped."""
    d = {k: v for k, v in dict(r).items() if k in ROW_FIELDS}
    if isinstance(d["message"], memoryview):
        d["message"] = bytes(d["message"])
    for key in ("rcpt_tos", "phones", "texts"):
        d[key] = json.loads(d[key])
    d["state"] = State(d["state"])
    d["mode"] = RouteMode(d["mode"])
    d["encoding"] = Encoding(d["encoding"])
    d["masked"] = bool(d["masked"])
    d["uncertain"] = bool(d["uncertain"])
    return Row(**d)


ROW_FIELDS = frozenset(Row.__dataclass_fields__)


def new_rows(
    mails: Sequence[ProviderMail], *, mail_from: str, inbound_id: str, state: State, attempts: int, now: float
) -> list[Row]:
    return [
        Row(
            id=m.relay_id, state=state, mode=m.mode, route=m.route, mail_from=mail_from,
            rcpt_tos=list(m.rcpt_tos), inbound_id=inbound_id, phones=list(m.phones), texts=list(m.texts),
            parts=m.segments.parts, encoding=m.segments.encoding, upstream_from=m.mail_from,
            upstream_to=m.rcpt_to,
            message=m.masked.encode("ascii") if m.keeps_config_secret else m.message,
            masked=m.keeps_config_secret, attempts=attempts, created=now, updated=now, next_attempt=now,
            last_error="", error_code=None, sms_count=None,
        )
        for m in mails
    ]  # fmt: skip


def insert(conn: sqlite3.Connection, rows: Sequence[Row]) -> None:
    conn.executemany(
        "INSERT INTO messages (id, state, mode, route, mail_from, rcpt_tos, inbound_id, phones,"
        " texts, parts, encoding, upstream_from, upstream_to, message, masked, attempts, created,"
        f" updated, next_attempt, last_error) VALUES ({_INSERT_MARKS})",
        [
            (
                r.id, r.state.value, r.mode.value, r.route, r.mail_from, json.dumps(r.rcpt_tos), r.inbound_id,
                json.dumps(r.phones), json.dumps(r.texts, ensure_ascii=False), r.parts, r.encoding.value,
                r.upstream_from, r.upstream_to, r.message, int(r.masked), r.attempts, r.created, r.updated,
                r.next_attempt, r.last_error,
            )
            for r in rows
        ],
    )  # fmt: skip


def requeue_sending(conn: sqlite3.Connection, now: float) -> int:
    """After a crash: rows left `sending` have an unknown outcome and go back to the queue,
    marked uncertain (the HTTP transport asks the provider before it sends one again)."""
    cur = conn.execute(
        "UPDATE messages SET state = ?, updated = ?, uncertain = 1 WHERE state = ?",
        (State.QUEUED.value, now, State.SENDING.value),
    )
    return cur.rowcount


def paused_until(conn: sqlite3.Connection) -> float:
    found = conn.execute("SELECT value FROM control WHERE key = 'paused_until'").fetchone()
    return 0.0 if found is None else float(found[0])


def claim(conn: sqlite3.Connection, limit: int, now: float) -> list[Row]:
    """Due rows, moved to `sending` in the same transaction: no two workers get one row."""
    if paused_until(conn) > now:
        return []  # a provider error holds the queue (written with the error itself)
    found = conn.execute(
        f"SELECT * FROM messages WHERE {WAITING} AND next_attempt <= ? ORDER BY next_attempt LIMIT ?",
        (now, limit),
    ).fetchall()
    conn.executemany(
        "UPDATE messages SET state = ?, attempts = attempts + 1, updated = ? WHERE id = ?",
        [(State.SENDING.value, now, r["id"]) for r in found],
    )
    return [replace(from_db(r), state=State.SENDING, attempts=r["attempts"] + 1) for r in found]


def finish(conn: sqlite3.Connection, relay_id: str, state: State, now: float, values: dict[str, Any]) -> None:
    """Record an attempt's outcome. Only the attempt's owner moves a row out of `sending`: a
    provider reply that came first (confirmed, failed...) is not overwritten."""
    if not set(values) <= FINISH_COLUMNS:
        raise ValueError(f"finish() cannot set {sorted(set(values) - FINISH_COLUMNS)}")
    columns = "".join(f", {k} = ?" for k in values)
    conn.execute(
        f"UPDATE messages SET state = ?, updated = ?{columns} WHERE id = ? AND state = ?",
        (state.value, now, *values.values(), relay_id, State.SENDING.value),
    )


def next_due(conn: sqlite3.Connection) -> float | None:
    row = conn.execute(f"SELECT MIN(next_attempt) FROM messages WHERE {WAITING}").fetchone()
    return None if row[0] is None else float(row[0])


def counts(conn: sqlite3.Connection) -> dict[State, int]:
    return {State(s): n for s, n in conn.execute("SELECT state, COUNT(*) FROM messages GROUP BY state")}


def count_waiting(conn: sqlite3.Connection) -> int:
    return int(conn.execute(f"SELECT COUNT(*) FROM messages WHERE {WAITING}").fetchone()[0])


def oldest_pending(conn: sqlite3.Connection) -> float | None:
    marks = (State.QUEUED.value, State.DEFERRED.value, State.SENDING.value)
    found = conn.execute("SELECT MIN(created) FROM messages WHERE state IN (?, ?, ?)", marks).fetchone()
    return None if found[0] is None else float(found[0])


def get(conn: sqlite3.Connection, relay_id: str) -> Row | None:
    found = conn.execute("SELECT * FROM messages WHERE id = ?", (relay_id,)).fetchone()
    return None if found is None else from_db(found)


def newest(conn: sqlite3.Connection, limit: int, state: State | None = None) -> list[Row]:
    sql, params = "SELECT * FROM messages", []
    if state is not None:
        sql, params = sql + " WHERE state = ?", [state.value]
    return [from_db(r) for r in conn.execute(sql + " ORDER BY created DESC LIMIT ?", [*params, limit])]


def retry(conn: sqlite3.Connection, relay_id: str, now: float) -> None:
    conn.execute(
        "UPDATE messages SET state = ?, next_attempt = ?, updated = ? WHERE id = ?",
        (State.QUEUED.value, now, now, relay_id),
    )


def drop(conn: sqlite3.Connection, relay_id: str) -> None:
    conn.execute("DELETE FROM messages WHERE id = ?", (relay_id,))


def sweep_unconfirmed(conn: sqlite3.Connection, now: float, older_than: float) -> int:
    """`sent` rows with no provider reply for `older_than` seconds become `unconfirmed`."""
    cur = conn.execute(
        "UPDATE messages SET state = ?, updated = ? WHERE state = ? AND updated < ?",
        (State.UNCONFIRMED.value, now, State.SENT.value, now - older_than),
    )
    return cur.rowcount


def prune(conn: sqlite3.Connection, older_than: float, limit: int) -> int:
    """Delete at most `limit` finished messages last touched before `older_than`."""
    finished = tuple(s.value for s in FINISHED)
    marks = ",".join("?" * len(finished))
    return conn.execute(
        f"DELETE FROM messages WHERE id IN (SELECT id FROM messages WHERE state IN ({marks})"
        " AND updated < ? LIMIT ?)",
        (*finished, older_than, limit),
    ).rowcount


def get_control(conn: sqlite3.Connection) -> dict[str, str]:
    return dict(conn.execute("SELECT key, value FROM control").fetchall())


REPLY_KEY = "reply_tag_key"


def reply_key(conn: sqlite3.Connection) -> bytes:
    """The key of the reply tags (relay/ids.py), made once and kept with the queue it signs for."""
    conn.execute(
        "INSERT OR IGNORE INTO control (key, value) VALUES (?, ?)", (REPLY_KEY, secrets.token_hex(32))
    )
    return bytes.fromhex(conn.execute("SELECT value FROM control WHERE key = ?", (REPLY_KEY,)).fetchone()[0])


def set_control(conn: sqlite3.Connection, key: str, value: str | None) -> None:
    if value is None:
        conn.execute("DELETE FROM control WHERE key = ?", (key,))
    else:
        conn.execute("INSERT OR REPLACE INTO control (key, value) VALUES (?, ?)", (key, value))
