"""Delivery tracking in the spool: which phones to ask status.php about, and what the answers
do to their messages (DESIGN.md section 4, after `sent`/`confirmed`).

A tracked message has `next_poll` set; it leaves tracking when every phone it was sent to has
a final status (`delivered`, or `undelivered` with the failing phone's status code), or when
`track_until` passes first (`status-unknown`). Each phone's last status is kept in
`phone_status`, so a restart asks only for what is still open, and `queue show` tells per phone.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from relay import provider_errors
from relay.model import PhoneStatus, State
from relay.polling import MAX_PHONES, interval, trackable_phones
from relay.spool.db import Db

# A status may move a message out of these (an ERROR reply that came first wins).
TRACKABLE = (State.SENT, State.CONFIRMED, State.UNCONFIRMED)


@dataclass(frozen=True, slots=True)
class Finished:
    relay_id: str
    state: State
    detail: str  # for the log and `last_error`
    code: int | None = None  # the failing phone's status (undelivered)


def due(conn: Db, now: float, max_pairs: int) -> list[tuple[str, str]]:
    """(relay id, phone) pairs to ask about now, oldest due first; at most MAX_PHONES phones
    of one message, at most `max_pairs` in all, only phones without a final status."""
    pairs: list[tuple[str, str]] = []
    for row in conn.execute(
        "SELECT id, phones FROM messages WHERE next_poll IS NOT NULL AND next_poll <= ? ORDER BY next_poll"
        " LIMIT ?",
        (now, max_pairs),
    ):
        final = {
            phone
            for phone, status in conn.execute(
                "SELECT phone, status FROM phone_status WHERE relay_id = ?", (row["id"],)
            )
            if provider_errors.status_final(status)
        }
        open_phones = [p for p in trackable_phones(json.loads(row["phones"])) if p not in final]
        for phone in open_phones[:MAX_PHONES]:
            if len(pairs) >= max_pairs:
                return pairs
            pairs.append((row["id"], phone))
    return pairs


def record(
    conn: Db, found: Sequence[PhoneStatus], asked: Sequence[tuple[str, str]], now: float
) -> list[Finished]:
    """Keep the statuses, and move each asked message on: final, out of time, or polled again."""
    conn.executemany(
        "INSERT INTO phone_status (relay_id, phone, status, err, changed, checked) VALUES (?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (relay_id, phone) DO UPDATE SET status = excluded.status, err = excluded.err,"
        " changed = excluded.changed, checked = excluded.checked",
        [(s.relay_id, s.phone, s.status, s.err, s.at or now, now) for s in found],
    )
    finished = []
    for relay_id in dict.fromkeys(i for i, _ in asked):
        done = settle(conn, relay_id, now)
        if done is not None:
            finished.append(done)
    return finished


def settle(conn: Db, relay_id: str, now: float, *, polled: bool = True) -> Finished | None:
    """Move a tracked message on from its phones' statuses: final, out of time, or (`polled`:
    status.php was just asked) due again later. SMPP receipts settle with polled=False: one
    phone's receipt changes nothing of when the others are asked."""
    row = conn.execute(
        "SELECT state, phones, track_until, polls FROM messages WHERE id = ?", (relay_id,)
    ).fetchone()
    if row is None:
        return None
    if State(row["state"]) not in TRACKABLE:
        conn.execute("UPDATE messages SET next_poll = NULL WHERE id = ?", (relay_id,))
        return None
    found = conn.execute("SELECT phone, status, err FROM phone_status WHERE relay_id = ?", (relay_id,))
    statuses, errs = {}, {}
    for phone, status, err in found:
        statuses[phone], errs[phone] = status, err
    phones = trackable_phones(json.loads(row["phones"]))
    failed = [p for p in phones if p in statuses and provider_errors.status_failed(statuses[p])]
    if failed:
        phone = failed[0]
        code = statuses[phone]
        detail = f"phone {phone}: status {code} ({provider_errors.status_meaning(code)})"
        if errs.get(phone):
            detail += f", reason {errs[phone]}"
        return _finish(conn, relay_id, State.UNDELIVERED, detail, now, code)
    if phones and all(p in statuses and statuses[p] in provider_errors.DELIVERED for p in phones):
        return _finish(conn, relay_id, State.DELIVERED, f"{len(phones)} phone(s) delivered", now)
    if row["track_until"] is not None and now >= row["track_until"]:
        last = ", ".join(
            f"{p}: {statuses[p]} ({provider_errors.status_meaning(statuses[p])})"
            if p in statuses
            else f"{p}: -"
            for p in phones
        )
        return _finish(conn, relay_id, State.STATUS_UNKNOWN, f"no final delivery status in time: {last}", now)
    if not polled:
        return None
    conn.execute(
        "UPDATE messages SET next_poll = ?, polls = polls + 1 WHERE id = ?",
        (now + interval(row["polls"] + 1), relay_id),
    )
    return None


def _finish(
    conn: Db, relay_id: str, state: State, detail: str, now: float, code: int | None = None
) -> Finished:
    conn.execute(
        "UPDATE messages SET state = ?, next_poll = NULL, updated = ?, polls = polls + 1,"
        " last_error = ?, error_code = ? WHERE id = ?",
        (state.value, now, "" if state is State.DELIVERED else detail, code, relay_id),
    )
    return Finished(relay_id, state, detail, code)


def expire(conn: Db, now: float) -> list[Finished]:
    """Tracked messages past `track_until` that no answer settled (the provider could not be
    asked, or never answered for them)."""
    ids = [
        r[0]
        for r in conn.execute(
            "SELECT id FROM messages WHERE next_poll IS NOT NULL AND track_until <= ?",
            (now,),
        )
    ]
    return [f for f in (settle(conn, i, now) for i in ids) if f is not None]


def of_message(conn: Db, relay_id: str) -> list[Any]:
    return list(
        conn.execute("SELECT * FROM phone_status WHERE relay_id = ? ORDER BY phone", (relay_id,)).fetchall()
    )


def start(conn: Db, relay_id: str, via: str, next_poll: float | None, until: float | None) -> None:
    """After the provider took a request: how it went, and when to first ask for its status."""
    conn.execute(
        "UPDATE messages SET via = ?, next_poll = ?, track_until = ? WHERE id = ?",
        (via, next_poll, until, relay_id),
    )


def prune(conn: Db) -> int:
    """Statuses of messages that retention has deleted."""
    return conn.execute(
        "DELETE FROM phone_status WHERE NOT EXISTS"
        " (SELECT 1 FROM messages m WHERE m.id = phone_status.relay_id)"
    ).rowcount
