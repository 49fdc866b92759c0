"""Provider requests in the spool: the stored row, and the SQL of its lifecycle (DESIGN.md 4).

Each function runs inside a transaction the caller owns (the group-commit writer's, or a CLI
connection's); none commits by itself.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from relay.model import Encoding, ProviderMail, RouteMode, State
from relay.spool.db import Db
from relay.spool.schema import WAITING

# States a message does not leave by itself: what retention may delete.
FINISHED = (
    State.CONFIRMED, State.FAILED, State.EXPIRED, State.DUPLICATE, State.SENT, State.UNCONFIRMED,
    State.REPEAT, State.DRY_RUN, State.DELIVERED, State.UNDELIVERED, State.STATUS_UNKNOWN,
)  # fmt: skip
_INSERT_MARKS = ", ".join("?" * 24)  # one per column of `insert`
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
    inbound: bytes | None = None  # the mail it was made from (spool.keep_mail); not read by `claim`
    config: str = ""  # the digest of the config it was rendered with (Config.digest)


def from_db(r: Any) -> Row:
    """A stored row (sqlite3.Row, the PostgreSQL adapter's, a mapping) as a Row; extra columns
    (the claim's holder and lease) are dropped."""
    d = {k: v for k, v in dict(r).items() if k in ROW_FIELDS}
    for key in ("message", "inbound"):
        if isinstance(d.get(key), memoryview):
            d[key] = bytes(d[key])
    for key in ("rcpt_tos", "phones", "texts"):
        d[key] = json.loads(d[key])
    d["state"] = State(d["state"])
    d["mode"] = RouteMode(d["mode"])
    d["encoding"] = Encoding(d["encoding"])
    d["masked"] = bool(d["masked"])
    d["uncertain"] = bool(d["uncertain"])
    return Row(**d)


ROW_FIELDS = frozenset(Row.__dataclass_fields__)
# Every column of a Row but the kept mail (up to spool.keep_mail each): what lists and claims
# read, so that neither drags every mail through memory.
LISTED = ", ".join(f for f in Row.__dataclass_fields__ if f != "inbound")


def new_rows(
    mails: Sequence[ProviderMail],
    *,
    mail_from: str,
    inbound_id: str,
    state: State,
    attempts: int,
    now: float,
    inbound: bytes | None = None,
    config: str = "",
) -> list[Row]:
    return [
        Row(
            id=m.relay_id, state=state, mode=m.mode, route=m.route, mail_from=mail_from,
            rcpt_tos=list(m.rcpt_tos), inbound_id=inbound_id, phones=list(m.phones), texts=list(m.texts),
            parts=m.segments.parts, encoding=m.segments.encoding, upstream_from=m.mail_from,
            upstream_to=m.rcpt_to,
            message=m.masked.encode("ascii") if m.keeps_config_secret else m.message,
            masked=m.keeps_config_secret, attempts=attempts, created=now, updated=now, next_attempt=now,
            last_error="", error_code=None, sms_count=None, inbound=inbound, config=config,
        )
        for m in mails
    ]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Claim:
    """Who holds the `sending` rows it claims, and until when unless it renews (PostgreSQL:
    another relay may take them after that; SQLite has one relay and ignores the lease)."""

    holder: str
    lease: float = 60.0

    def until(self, now: float) -> float:
        return now + self.lease


def insert(conn: Db, rows: Sequence[Row], claim: Claim | None = None) -> None:
    """New rows; a `sending` one (handed to a worker at once) is held under `claim`."""

    def holder(r: Row) -> tuple[str | None, float | None]:
        if r.state is not State.SENDING or claim is None:
            return None, None
        return claim.holder, claim.until(r.updated)

    conn.executemany(
        "INSERT INTO messages (id, state, mode, route, mail_from, rcpt_tos, inbound_id, phones,"
        " texts, parts, encoding, upstream_from, upstream_to, message, masked, attempts, created,"
        " updated, next_attempt, last_error, inbound, config, claimed_by, lease_until)"
        f" VALUES ({_INSERT_MARKS})",
        [
            (
                r.id, r.state.value, r.mode.value, r.route, r.mail_from, json.dumps(r.rcpt_tos), r.inbound_id,
                json.dumps(r.phones), json.dumps(r.texts, ensure_ascii=False), r.parts, r.encoding.value,
                r.upstream_from, r.upstream_to, r.message, int(r.masked), r.attempts, r.created, r.updated,
                r.next_attempt, r.last_error, r.inbound, r.config, *holder(r),
            )
            for r in rows
        ],
    )  # fmt: skip


def requeue_sending(conn: Db, now: float, holder: str | None = None) -> int:
    """After a crash: rows left `sending` have an unknown outcome and go back to the queue,
    marked uncertain (the HTTP transport asks the provider before it sends one again). With a
    `holder` (a shared spool), only its own rows and those whose lease ran out: the claimer
    stopped renewing, so it died; the rows of relays still running stay theirs."""
    sql = (
        "UPDATE messages SET state = ?, updated = ?, uncertain = 1, claimed_by = NULL, lease_until = NULL"
        " WHERE state = ?"
    )
    if holder is None:
        return conn.execute(sql, (State.QUEUED.value, now, State.SENDING.value)).rowcount
    return conn.execute(
        f"{sql} AND (claimed_by = ? OR claimed_by IS NULL OR lease_until < ?)",
        (State.QUEUED.value, now, State.SENDING.value, holder, now),
    ).rowcount


def renew(conn: Db, claim: Claim, now: float) -> int:
    """Keep the holder's claims: the rows it is still sending stay its own."""
    return conn.execute(
        "UPDATE messages SET lease_until = ? WHERE state = ? AND claimed_by = ?",
        (claim.until(now), State.SENDING.value, claim.holder),
    ).rowcount


def paused_until(conn: Db) -> float:
    found = conn.execute("SELECT value FROM control WHERE key = 'paused_until'").fetchone()
    return 0.0 if found is None else float(found[0])


def claim(conn: Db, limit: int, now: float, claim: Claim, *, skip_locked: bool = False) -> list[Row]:
    """Due rows, moved to `sending` under `claim` in the same transaction: no two workers get
    one row. `skip_locked` (PostgreSQL): rows another relay's open transaction is claiming
    are passed over, not waited for."""
    if paused_until(conn) > now:
        return []  # a provider error holds the queue (written with the error itself)
    lock = " FOR UPDATE SKIP LOCKED" if skip_locked else ""
    found = conn.execute(
        f"SELECT {LISTED} FROM messages WHERE {WAITING} AND next_attempt <= ? ORDER BY next_attempt"
        f" LIMIT ?{lock}",
        (now, limit),
    ).fetchall()
    conn.executemany(
        "UPDATE messages SET state = ?, attempts = attempts + 1, updated = ?, claimed_by = ?, lease_until = ?"
        " WHERE id = ?",
        [(State.SENDING.value, now, claim.holder, claim.until(now), r["id"]) for r in found],
    )
    return [replace(from_db(r), state=State.SENDING, attempts=r["attempts"] + 1) for r in found]


def finish(conn: Db, relay_id: str, state: State, now: float, values: dict[str, Any], holder: str) -> bool:
    """Record an attempt's outcome. Only the attempt's owner moves a row out of `sending`: a
    provider reply that came first (confirmed, failed...) is not overwritten, nor a row that
    another relay took over after this one's lease ran out. False: nothing was changed."""
    if not set(values) <= FINISH_COLUMNS:
        raise ValueError(f"finish() cannot set {sorted(set(values) - FINISH_COLUMNS)}")
    columns = "".join(f", {k} = ?" for k in values)
    return (
        conn.execute(
            f"UPDATE messages SET state = ?, updated = ?, claimed_by = NULL, lease_until = NULL{columns}"
            " WHERE id = ? AND state = ? AND claimed_by = ?",
            (state.value, now, *values.values(), relay_id, State.SENDING.value, holder),
        ).rowcount
        == 1
    )


def next_due(conn: Db) -> float | None:
    row = conn.execute(f"SELECT MIN(next_attempt) FROM messages WHERE {WAITING}").fetchone()
    return None if row[0] is None else float(row[0])


def counts(conn: Db) -> dict[State, int]:
    return {State(s): n for s, n in conn.execute("SELECT state, COUNT(*) FROM messages GROUP BY state")}


def count_waiting(conn: Db) -> int:
    return int(conn.execute(f"SELECT COUNT(*) FROM messages WHERE {WAITING}").fetchone()[0])


def oldest_pending(conn: Db) -> float | None:
    marks = (State.QUEUED.value, State.DEFERRED.value, State.SENDING.value)
    found = conn.execute("SELECT MIN(created) FROM messages WHERE state IN (?, ?, ?)", marks).fetchone()
    return None if found[0] is None else float(found[0])


def get(conn: Db, relay_id: str) -> Row | None:
    found = conn.execute("SELECT * FROM messages WHERE id = ?", (relay_id,)).fetchone()
    return None if found is None else from_db(found)


def newest(conn: Db, limit: int, state: State | None = None) -> list[Row]:
    sql, params = f"SELECT {LISTED} FROM messages", []
    if state is not None:
        sql, params = sql + " WHERE state = ?", [state.value]
    return [from_db(r) for r in conn.execute(sql + " ORDER BY created DESC LIMIT ?", [*params, limit])]


# What a new rendering of a message's mail may change (`queue retry` under a changed config).
RENDERED = ("mode", "route", "phones", "texts", "parts", "encoding", "upstream_from", "upstream_to",
            "message", "masked", "config")  # fmt: skip


def retry(
    conn: Db, relay_id: str, now: float, states: tuple[State, ...], rendered: Row | None = None
) -> bool:
    """Queued again, if it is still in one of `states` (a relay may have moved it meanwhile);
    with `rendered`, as that new rendering of its mail (RENDERED: the same id, attempts, history)."""
    marks = ", ".join("?" * len(states))
    columns, values = "", ()
    if rendered is not None:
        stored = _stored(rendered)
        columns = "".join(f", {c} = ?" for c in RENDERED)
        values = tuple(stored[c] for c in RENDERED)
    return bool(conn.execute(
        "UPDATE messages SET state = ?, next_attempt = ?, updated = ?, claimed_by = NULL, lease_until = NULL"
        f"{columns} WHERE id = ? AND state IN ({marks})",
        (State.QUEUED.value, now, now, *values, relay_id, *(s.value for s in states)),
    ).rowcount)  # fmt: skip


def _stored(r: Row) -> dict[str, Any]:
    """The column values of the RENDERED fields, as `insert` writes them."""
    return {
        "mode": r.mode.value, "route": r.route, "phones": json.dumps(r.phones),
        "texts": json.dumps(r.texts, ensure_ascii=False), "parts": r.parts, "encoding": r.encoding.value,
        "upstream_from": r.upstream_from, "upstream_to": r.upstream_to, "message": r.message,
        "masked": int(r.masked), "config": r.config,
    }  # fmt: skip


def hold(conn: Db, relay_id: str, now: float, states: tuple[State, ...]) -> bool:
    """Held (no relay claims it, retention keeps it), if it is still in one of `states`."""
    marks = ", ".join("?" * len(states))
    return bool(conn.execute(
        f"UPDATE messages SET state = ?, updated = ? WHERE id = ? AND state IN ({marks})",
        (State.HELD.value, now, relay_id, *(s.value for s in states)),
    ).rowcount)  # fmt: skip


def drop(conn: Db, relay_id: str, states: tuple[State, ...]) -> bool:
    marks = ", ".join("?" * len(states))
    return bool(conn.execute(
        f"DELETE FROM messages WHERE id = ? AND state IN ({marks})", (relay_id, *(s.value for s in states))
    ).rowcount)  # fmt: skip


def sweep_unconfirmed(conn: Db, now: float, older_than: float) -> int:
    """`sent` rows with no provider reply for `older_than` seconds become `unconfirmed`."""
    cur = conn.execute(
        "UPDATE messages SET state = ?, updated = ? WHERE state = ? AND updated < ?",
        (State.UNCONFIRMED.value, now, State.SENT.value, now - older_than),
    )
    return cur.rowcount


def hold_uncertain(conn: Db, until: float) -> int:
    """Queued rows that may have gone out (uncertain) wait until `until` at the earliest."""
    return conn.execute(
        "UPDATE messages SET next_attempt = ? WHERE state = ? AND uncertain = 1 AND next_attempt < ?",
        (until, State.QUEUED.value, until),
    ).rowcount


def prune(conn: Db, older_than: float, limit: int) -> int:
    """Delete at most `limit` finished messages last touched before `older_than`."""
    finished = tuple(s.value for s in FINISHED)
    marks = ",".join("?" * len(finished))
    return conn.execute(
        f"DELETE FROM messages WHERE id IN (SELECT id FROM messages WHERE state IN ({marks})"
        " AND updated < ? LIMIT ?)",
        (*finished, older_than, limit),
    ).rowcount


def get_control(conn: Db) -> dict[str, str]:
    return dict(conn.execute("SELECT key, value FROM control").fetchall())


REPLY_KEY = "reply_tag_key"


def reply_key(conn: Db) -> bytes:
    """The key of the reply tags (relay/ids.py), made once and kept with the queue it signs for."""
    conn.execute(
        "INSERT INTO control (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
        (REPLY_KEY, secrets.token_hex(32)),
    )
    return bytes.fromhex(conn.execute("SELECT value FROM control WHERE key = ?", (REPLY_KEY,)).fetchone()[0])


def take_turn(conn: Db, key: str, now: float, interval: float) -> bool:
    """Whether `interval` has passed since control `key`; if so it becomes `now`, in the same
    (shared) transaction: of two relays asking at once, one gets the turn."""
    found = conn.execute("SELECT value FROM control WHERE key = ?", (key,)).fetchone()
    if found is not None and now < float(found[0]) + interval:
        return False
    set_control(conn, key, f"{now:.3f}")
    return True


def add_control(conn: Db, key: str, value: str) -> bool:
    """Set `key` unless it is set; True when this call set it (one of relays racing does)."""
    found = conn.execute(
        "INSERT INTO control (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING RETURNING key",
        (key, value),
    ).fetchall()
    return bool(found)


def set_control(conn: Db, key: str, value: str | None) -> None:
    if value is None:
        conn.execute("DELETE FROM control WHERE key = ?", (key,))
    else:
        conn.execute(
            "INSERT INTO control (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )
