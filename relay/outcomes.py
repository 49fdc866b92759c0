"""What a provider reply does to its message: the state machine's last step (DESIGN.md section 4)."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

from relay import policy
from relay.model import ProviderReply, ReplyKind, State
from relay.policy import Action, Rule

REPLIES_SCHEMA = """
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
"""
# A reply may answer a row in these states; `sending` too, since the provider can answer
# before delivery has recorded the upstream's 250.
ANSWERABLE = (State.SENDING.value, State.SENT.value, State.UNCONFIRMED.value)


@dataclass(frozen=True, slots=True)
class Applied:
    outcome: str  # what happened, for the replies table and the log
    pause: Rule | None = None  # a provider error that stops or holds the whole queue
    paused_until: float = 0.0
    pause_reason: str = ""
    since_sent: float | None = None  # seconds from the provider's 250 to this reply


def apply_reply(conn: sqlite3.Connection, reply: ProviderReply) -> Applied:
    if reply.kind is ReplyKind.UNKNOWN:
        return Applied("kept (unreadable)")
    if not reply.relay_id:
        return Applied("kept (no id)")
    row = conn.execute("SELECT state, updated FROM messages WHERE id = ?", (reply.relay_id,)).fetchone()
    if row is None:
        return Applied("unknown id")
    if row["state"] not in ANSWERABLE:
        return Applied(f"ignored (message already {row['state']})")  # a repeated reply: idempotent
    now = time.time()
    if reply.kind is ReplyKind.OK:
        conn.execute(
            "UPDATE messages SET state = ?, sms_count = ?, updated = ?, last_error = '', error_code = NULL"
            " WHERE id = ?",
            (State.CONFIRMED.value, reply.sms_count, now, reply.relay_id),
        )
        since = now - row["updated"] if row["state"] == State.SENT.value else None
        return Applied("confirmed", since_sent=since)
    assert reply.code is not None
    rule = policy.rule(reply.code)
    text = f"provider ERROR {reply.code}: {reply.description or rule.meaning}"
    state, pause, next_attempt = {
        Action.FAIL: (State.FAILED, None, now),
        Action.DUPLICATE: (State.DUPLICATE, None, now),
        # The provider did not send it: it waits in the queue for delivery to resume.
        Action.PAUSE: (State.QUEUED, rule, now),
        Action.BACKOFF: (State.DEFERRED, rule, now),
    }[rule.action]
    conn.execute(
        "UPDATE messages SET state = ?, error_code = ?, last_error = ?, next_attempt = ?, updated = ?"
        " WHERE id = ?",
        (state.value, reply.code, text, next_attempt, now, reply.relay_id),
    )
    return Applied(state.value, pause)
