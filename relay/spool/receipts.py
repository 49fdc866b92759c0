"""SMPP delivery receipts in the spool (issue 24): each part's provider message id, the status
its receipt gave, and what that does to its phone and message.

A request sent over SMPP has one row in `smpp_parts` a part and phone, by the message id of its
submit_sm_resp. A receipt sets that part's status (once final, never again: a duplicated or late
receipt changes nothing); a phone's status is then its parts': failed when one part failed,
delivered when all were, and it goes in `phone_status` as status.php's answers do, so `queue
show`, the notices and tracking's end (relay/spool/tracking.py settle) are the same for both.
A phone that already has a final status keeps it.

A deliver_sm that matches no part (yet: a receipt can come before its submit's outcome is
written), a malformed receipt and an incoming SMS are kept in `smpp_inbound` as digests: a
receipt there is applied when its part is written; the table keeps MAX_KEPT rows at most, and
none older than the retention (spool.keep_days).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from relay import provider_errors
from relay.model import Inbound, PartStatus, State
from relay.spool.db import Db
from relay.spool.tracking import TRACKABLE, Finished, settle

MAX_KEPT = 10_000  # deliver_sm kept without a part to apply to; the oldest go first


def _final(column: str) -> str:
    """provider_errors.status_final, in SQL."""
    return f"({column} IN (1, 2, 4) OR {column} = 3 OR {column} >= 20)"


def keep_parts(conn: Db, relay_id: str, parts: Sequence[tuple[str, str]], now: float) -> None:
    """After the provider took a request over SMPP: its parts, (phone, message id) in order.
    Receipts that came first are applied to them (the message is settled later, once its state
    says the provider took it: relay/delivery/receipts.py asks for that)."""
    numbers: dict[str, int] = {}
    rows = []
    for phone, message_id in parts:
        numbers[phone] = numbers.get(phone, 0) + 1
        rows.append((message_id, relay_id, phone, numbers[phone]))
    # A message id the provider gave again (ids are its, not ours) is the newer part's.
    conn.executemany(
        "INSERT INTO smpp_parts (message_id, relay_id, phone, part) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (message_id) DO UPDATE SET relay_id = excluded.relay_id, phone = excluded.phone,"
        " part = excluded.part, status = NULL, err = 0, changed = NULL",
        rows,
    )
    early = []
    for message_id, *_ in rows:
        early += conn.execute(
            "SELECT n, message_id, status, err, changed FROM smpp_inbound"
            " WHERE message_id = ? AND kind = ? ORDER BY n",
            (message_id, Inbound.RECEIPT.value),
        ).fetchall()
    for r in early:
        _apply(conn, r["message_id"], r["status"], r["err"], r["changed"])
        conn.execute("DELETE FROM smpp_inbound WHERE n = ?", (r["n"],))
    if early:
        _phones(conn, relay_id, now)


def record(conn: Db, found: Sequence[PartStatus], settle_ids: Sequence[str], now: float) -> list[Finished]:
    """Apply receipts, keep what matches nothing, and settle the messages they (or `settle_ids`:
    requests whose parts were just written) concern."""
    touched: dict[str, None] = dict.fromkeys(settle_ids)
    for f in found:
        if f.kind is Inbound.RECEIPT:
            relay_id = _apply(conn, f.message_id, f.status, f.err, f.at or now)
            if relay_id is not None:
                touched[relay_id] = None
                continue
        conn.execute(
            "INSERT INTO smpp_inbound (kind, message_id, status, err, changed, received, digest)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (f.kind.value, f.message_id, f.status, f.err, f.at or now, now, f.digest),
        )
    if found:
        _trim(conn)
    finished = []
    for relay_id in touched:
        _phones(conn, relay_id, now)
        row = conn.execute("SELECT state FROM messages WHERE id = ?", (relay_id,)).fetchone()
        # Not yet `confirmed` (the worker writes that next, then asks again): settling now
        # would take it out of tracking before it is in.
        if row is None or State(row["state"]) not in TRACKABLE:
            continue
        done = settle(conn, relay_id, now, polled=False)
        if done is not None:
            finished.append(done)
    return finished


def _apply(conn: Db, message_id: str, status: int, err: int, at: float) -> str | None:
    """A receipt onto its part (unless the part's status is final already); the part's message,
    or None when no part has the id."""
    row = conn.execute("SELECT relay_id FROM smpp_parts WHERE message_id = ?", (message_id,)).fetchone()
    if row is None:
        return None
    conn.execute(
        "UPDATE smpp_parts SET status = ?, err = ?, changed = ? WHERE message_id = ?"
        f" AND (status IS NULL OR NOT {_final('status')})",
        (status, err, at, message_id),
    )
    return str(row["relay_id"])


def _phones(conn: Db, relay_id: str, now: float) -> None:
    """Each phone's status from its parts', into phone_status (a final one there stays)."""
    by_phone: dict[str, list[Any]] = {}
    for r in conn.execute(
        "SELECT phone, status, err, changed FROM smpp_parts WHERE relay_id = ? ORDER BY phone, part",
        (relay_id,),
    ):
        by_phone.setdefault(r["phone"], []).append(r)
    rows = []
    for phone, parts in by_phone.items():
        known = [p for p in parts if p["status"] is not None]
        if not known:
            continue
        failed = next((p for p in known if provider_errors.status_failed(p["status"])), None)
        if failed is not None:
            status, err, changed = failed["status"], failed["err"], failed["changed"]
        elif len(known) == len(parts) and all(p["status"] in provider_errors.DELIVERED for p in parts):
            status, err, changed = 1, 0, max(p["changed"] for p in parts)
        else:  # on its way: the least advanced part's status (-1 for one without a receipt)
            status = min(p["status"] if p["status"] is not None else -1 for p in parts)
            err, changed = 0, max(p["changed"] for p in known)
        rows.append((relay_id, phone, status, err, changed, now))
    conn.executemany(
        "INSERT INTO phone_status (relay_id, phone, status, err, changed, checked) VALUES (?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (relay_id, phone) DO UPDATE SET status = excluded.status, err = excluded.err,"
        f" changed = excluded.changed, checked = excluded.checked WHERE NOT {_final('phone_status.status')}",
        rows,
    )


def _trim(conn: Db) -> None:
    """At most MAX_KEPT kept deliver_sm: the provider's session is authenticated, but a fault of
    its (or a flood of incoming SMS) must not fill the disk."""
    row = conn.execute("SELECT COUNT(*) AS n FROM smpp_inbound").fetchone()
    excess = int(row["n"]) - MAX_KEPT
    if excess > 0:
        conn.execute(
            "DELETE FROM smpp_inbound WHERE n IN (SELECT n FROM smpp_inbound ORDER BY n LIMIT ?)", (excess,)
        )


def of_message(conn: Db, relay_id: str) -> list[Any]:
    return list(
        conn.execute(
            "SELECT * FROM smpp_parts WHERE relay_id = ? ORDER BY phone, part", (relay_id,)
        ).fetchall()
    )


def kept(conn: Db, limit: int) -> list[Any]:
    """The newest deliver_sm that matched nothing, for `queue replies`-like listings."""
    return list(conn.execute("SELECT * FROM smpp_inbound ORDER BY n DESC LIMIT ?", (limit,)).fetchall())


def prune(conn: Db, older_than: float) -> int:
    """Parts of messages that retention deleted, and kept deliver_sm older than it."""
    count = conn.execute(
        "DELETE FROM smpp_parts WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = smpp_parts.relay_id)"
    ).rowcount
    return count + conn.execute("DELETE FROM smpp_inbound WHERE received < ?", (older_than,)).rowcount
