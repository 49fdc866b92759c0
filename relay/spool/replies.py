"""What a provider reply does to its message: the state machine's last step (DESIGN.md section 4).

Every mail to the reply address is kept in `replies` with what it did, read or not: the
provider's word is never dropped. A reply that pauses the queue writes the pause in the same
transaction as the message's new state, so no worker can claim the message in between.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from relay import provider_errors
from relay.model import ProviderReply, ReplyKind, ReplyOutcome, State
from relay.provider_errors import Action, Rule
from relay.spool import schema
from relay.spool.db import Db

# Replies that changed nothing (kept: unreadable, untrusted, no id) are bounded in storage.
KEPT = schema.KEPT_REPLIES  # the partial index's condition, verbatim
UPSERT_CONTROL = "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
MAX_KEPT = 10_000
TRIM_EVERY = 100  # kept replies between two trims: the table holds at most MAX_KEPT + this
KEPT_RAW_BYTES = 512
KEPT_LINE_CHARS = 300
KEEP_KEPT = 86400.0  # seconds a reply that changed nothing is kept (the rest: spool.keep_days)
SENDER_REFUSED = 6  # "message denied": most often a sender name the account has not registered
# A reply may answer a row in these states; `sending` too, since the provider can answer
# before delivery has recorded the upstream's 250.
ANSWERABLE = (State.SENDING, State.SENT, State.UNCONFIRMED)
_ON_ERROR = {
    Action.FAIL: ReplyOutcome.FAILED,
    Action.DUPLICATE: ReplyOutcome.DUPLICATE,
    # The provider did not send it: it waits in the queue for delivery to resume.
    Action.PAUSE: ReplyOutcome.QUEUED,
    Action.BACKOFF: ReplyOutcome.DEFERRED,
}


@dataclass(frozen=True, slots=True)
class Applied:
    outcome: ReplyOutcome
    detail: str = ""  # why, for KEPT and IGNORED: "unreadable", "untrusted: DKIM: ..."
    pause: Rule | None = None  # a provider error that stops or holds the whole queue
    paused_until: float = 0.0
    pause_reason: str = ""
    since_sent: float | None = None  # seconds from the provider's 250 to this reply

    @property
    def text(self) -> str:
        """As stored in `replies.outcome` and logged: 'confirmed', 'kept (no id)'."""
        return f"{self.outcome.value} ({self.detail})" if self.detail else self.outcome.value


def apply_reply(conn: Db, reply: ProviderReply, now: float) -> Applied:
    if reply.kind is ReplyKind.UNKNOWN:
        return Applied(ReplyOutcome.KEPT, "unreadable")
    if not reply.relay_id:
        return Applied(ReplyOutcome.KEPT, "no id")
    row = conn.execute(
        "SELECT state, updated, attempts FROM messages WHERE id = ?", (reply.relay_id,)
    ).fetchone()
    if row is None:
        return Applied(ReplyOutcome.UNKNOWN_ID)
    state = State(row["state"])
    # The provider took an attempt whose 250 never reached us (the connection dropped): the
    # message waits for a resend. Its OK says it went out: confirmed, and the resend is off.
    resend_pending = state in (State.DEFERRED, State.QUEUED) and row["attempts"] > 0
    if reply.kind is ReplyKind.OK and resend_pending:
        state = State.SENT
    elif state not in ANSWERABLE:
        return Applied(ReplyOutcome.IGNORED, f"message already {state.value}")  # a repeat: idempotent
    if reply.kind is ReplyKind.OK:
        conn.execute(
            "UPDATE messages SET state = ?, sms_count = COALESCE(?, sms_count), updated = ?, last_error = '',"
            " error_code = NULL, uncertain = 0, cost = COALESCE(NULLIF(?, ''), cost),"
            " balance = COALESCE(NULLIF(?, ''), balance) WHERE id = ?",
            (State.CONFIRMED.value, reply.sms_count, now, reply.cost, reply.balance, reply.relay_id),
        )
        since = now - row["updated"] if state is State.SENT and not resend_pending else None
        return Applied(ReplyOutcome.CONFIRMED, since_sent=since)
    assert reply.code is not None
    rule = provider_errors.rule(reply.code)
    text = f"provider ERROR {reply.code}: {reply.description or rule.meaning}"
    if reply.code == SENDER_REFUSED:
        text += " (if the route sets a sender name, is it registered with the account?)"
    outcome = _ON_ERROR[rule.action]
    assert outcome.state is not None
    conn.execute(
        "UPDATE messages SET state = ?, error_code = ?, last_error = ?, next_attempt = ?, updated = ?"
        " WHERE id = ?",
        (outcome.state.value, reply.code, text, now, now, reply.relay_id),
    )
    return Applied(outcome, pause=rule if rule.action in (Action.PAUSE, Action.BACKOFF) else None)


PAUSE_CAUSE = "pause_cause"


def record(
    conn: Db,
    reply: ProviderReply,
    *,
    now: float,
    mail_from: str,
    raw: bytes,
    untrusted: str,
    pause_for: Callable[[Rule], float],
    cause: Callable[[], str] = lambda: "",
) -> Applied:
    """Keep the reply and move its message to the state the reply means; an `untrusted`
    reply (the reason) is kept and changes nothing."""
    applied = (
        Applied(ReplyOutcome.KEPT, f"untrusted: {untrusted}") if untrusted else apply_reply(conn, reply, now)
    )
    if applied.pause is not None:
        until = now + pause_for(applied.pause)
        reason = f"provider ERROR {reply.code}: {applied.pause.meaning}"
        # With what the pause may be owed to (provider_errors.account_cause), so that a relay
        # started after the operator changed it asks again instead of waiting the pause out.
        cause_of = cause() if applied.pause.config_cause else ""
        conn.executemany(
            f"INSERT INTO control (key, value) VALUES (?, ?) {UPSERT_CONTROL}",
            [("paused_until", f"{until:.3f}"), ("pause_reason", reason), (PAUSE_CAUSE, cause_of)],
        )
        applied = replace(applied, paused_until=until, pause_reason=reason)
    kept = applied.outcome is ReplyOutcome.KEPT
    if kept:
        # Unreadable, untrusted, no id: anyone can send these. Kept as a short digest (what it
        # said, its first bytes), for a day (prune_kept), at most MAX_KEPT of them.
        raw, line = raw[:KEPT_RAW_BYTES], reply.line[:KEPT_LINE_CHARS]
    else:
        line = reply.line
    cur = conn.execute(
        "INSERT INTO replies (received, relay_id, kind, code, sms_count, description, line, outcome,"
        " mail_from, raw) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING n",
        (now, reply.relay_id, reply.kind.value, reply.code, reply.sms_count,
         reply.description[:KEPT_LINE_CHARS] if kept else reply.description, line, applied.text,
         mail_from[:KEPT_LINE_CHARS], raw),
    )  # fmt: skip
    number = int(cur.fetchone()[0])  # read at once: SQLite finishes the statement then
    if kept and number % TRIM_EVERY == 0:
        trim_kept(conn)
    return applied


def trim_kept(conn: Db) -> int:
    """Only the newest MAX_KEPT of the replies that changed nothing stay."""
    edge = conn.execute(
        f"SELECT n FROM replies WHERE {KEPT} ORDER BY n DESC LIMIT 1 OFFSET ?", (MAX_KEPT,)
    ).fetchone()
    if edge is None:
        return 0
    return conn.execute(f"DELETE FROM replies WHERE {KEPT} AND n <= ?", (edge[0],)).rowcount


def prune_kept(conn: Db, older_than: float, limit: int) -> int:
    return conn.execute(
        f"DELETE FROM replies WHERE n IN (SELECT n FROM replies WHERE {KEPT} AND received < ? LIMIT ?)",
        (older_than, limit),
    ).rowcount


def of_message(conn: Db, relay_id: str) -> list[Any]:
    return list(conn.execute("SELECT * FROM replies WHERE relay_id = ? ORDER BY n", (relay_id,)))


def prune(conn: Db, older_than: float, limit: int) -> int:
    return conn.execute(
        "DELETE FROM replies WHERE n IN (SELECT n FROM replies WHERE received < ? LIMIT ?)",
        (older_than, limit),
    ).rowcount
