"""Alert-storm state in the spool: held alerts, dedup windows, what each phone was sent.

These functions run inside a spool transaction, so admitting a mail's alerts commits before the
client's 250, and a planner tick that turns held alerts into a provider request marks them sent
in the same transaction that queues the request: a crash or restart neither loses a held alert
nor sends one twice. The decisions are relay/storm/plan.py's.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from relay.config.schema import StormSettings
from relay.model import AlertKind, AlertState, ProviderMail, State
from relay.spool.db import Db
from relay.spool.messages import Row, insert, new_rows
from relay.storm import pacing
from relay.storm import plan as storm
from relay.storm.pacing import FLOOD_GAP, FLOOD_LIMIT, Send
from relay.storm.plan import Admission, Alert, Window

HELD = AlertState.HELD.value
HISTORY = 86400.0  # phone_sends kept this long: far more than any run the flood rule counts


def admit(
    conn: Db,
    alerts: Sequence[Alert],
    *,
    settings: Callable[[str], StormSettings],
    now: float,
    mail_from: str,
    inbound_id: str,
) -> list[Admission]:
    """Store a mail's alerts: held, counted as a repeat, or cancelling a held problem."""
    results = []
    for alert in alerts:
        phones = json.dumps(alert.phones)
        row = conn.execute("SELECT * FROM dedup_windows WHERE key = ?", (alert.dedup,)).fetchone()
        window = _window(row) if row else None
        held = []
        if alert.kind is AlertKind.RECOVERY and alert.key:
            held = [
                _alert(r)
                for r in conn.execute(
                    "SELECT * FROM alerts WHERE state = ? AND route = ? AND alert_key = ? AND phones = ?",
                    (HELD, alert.route, alert.key, phones),
                )
            ]
        result = storm.admit(alert, window, held, settings(alert.route), now)
        _insert(
            conn, alert, result.state, mail_from=mail_from, inbound_id=inbound_id, note=result.note, now=now
        )
        if result.cancels:
            marks = ",".join("?" * len(result.cancels))
            note = f"recovered before it was sent ({alert.id})"
            sql = "UPDATE alerts SET state = ?, note = ?, updated = ? WHERE state = ? AND id IN"
            conn.execute(f"{sql} ({marks})", (AlertState.CANCELLED.value, note, now, HELD, *result.cancels))
        for key in result.drop_window:
            conn.execute("DELETE FROM dedup_windows WHERE key = ?", (key,))
        if result.ends_problem:
            conn.execute(
                "DELETE FROM dedup_windows WHERE key IN (SELECT dedup FROM alerts WHERE route = ?"
                " AND phones = ? AND alert_key = ? AND kind = ?)",
                (alert.route, phones, alert.key, AlertKind.PROBLEM.value),
            )
        if result.window:
            w = result.window
            conn.execute(
                "INSERT INTO dedup_windows (key, route, phones, text, opened, closes, repeats, source)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET route = excluded.route,"
                " phones = excluded.phones, text = excluded.text, opened = excluded.opened,"
                " closes = excluded.closes, repeats = excluded.repeats, source = excluded.source",
                (w.key, w.route, json.dumps(w.phones), w.text, w.opened, w.closes, w.repeats, w.source),
            )
        results.append(result)
    return results


@dataclass(frozen=True, slots=True)
class Tick:
    rows: list[Row]  # provider requests queued by this tick
    next_wake: float | None
    digests: tuple[storm.Digest, ...] = ()


def tick(conn: Db, *, now: float, compose: storm.Compose, wall: float | None = None) -> Tick:
    """Plan, and queue what is due: one transaction. `compose` (relay/pipeline.storm_outgoing)
    plans from the state read here and builds the requests; this only reads and writes. `now` is
    the planner's clock; `wall` (default `now`) stamps the queued requests, which delivery
    schedules by the real clock."""
    held = [_alert(r) for r in conn.execute("SELECT * FROM alerts WHERE state = ?", (HELD,))]
    windows = [
        _window(r)
        for r in conn.execute("SELECT * FROM dedup_windows WHERE repeats > 0 OR closes <= ?", (now,))
    ]
    history: dict[str, list[Send]] = {}
    for phone, at, digest in conn.execute(
        "SELECT phone, at, digest FROM phone_sends WHERE at > ? ORDER BY at", (now - HISTORY,)
    ):
        history.setdefault(phone, []).append(Send(at, digest))
    out = compose(held, windows, history)
    plan = out.plan
    for a in plan.followups:
        note = "repeat count of a dedup window"
        _insert(conn, a, AlertState.HELD, mail_from="", inbound_id="", note=note, now=now)
    for key in plan.closed:
        conn.execute("DELETE FROM dedup_windows WHERE key = ?", (key,))
    rows: list[Row] = []
    for mail, digests in out.requests:
        stamp_now = now if wall is None else wall
        queued = new_rows(
            [mail], mail_from="", inbound_id="", state=State.QUEUED, attempts=0, now=stamp_now,
            config=out.config,
        )  # fmt: skip
        insert(conn, queued)
        rows.extend(queued)
        for d in digests:
            marks = ",".join("?" * len(d.alerts))
            sql = "UPDATE alerts SET state = ?, message_id = ?, updated = ? WHERE state = ? AND id IN"
            conn.execute(f"{sql} ({marks})", (AlertState.SENT.value, mail.relay_id, now, HELD, *d.alerts))
    conn.executemany(
        "INSERT INTO phone_sends (phone, at, digest) VALUES (?, ?, ?)",
        [(phone, s.at, s.digest) for phone, sends in plan.sends.items() for s in sends],
    )
    conn.execute("DELETE FROM phone_sends WHERE at < ?", (now - HISTORY,))
    return Tick(rows, plan.next_wake, plan.digests)


def _insert(
    conn: Db,
    a: Alert,
    state: AlertState,
    *,
    mail_from: str,
    inbound_id: str,
    note: str,
    now: float,
) -> None:
    conn.execute(
        "INSERT INTO alerts (id, route, phones, text, kind, alert_key, dedup, urgent, received, due,"
        " state, mail_from, inbound_id, note, updated, rcpt)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (a.id, a.route, json.dumps(a.phones), a.text, a.kind.value, a.key, a.dedup, int(a.urgent),
         a.received, a.due, state.value, mail_from, inbound_id, note, now, a.rcpt),
    )  # fmt: skip


def _alert(r: Any) -> Alert:
    return Alert(
        id=r["id"], route=r["route"], phones=tuple(json.loads(r["phones"])), text=r["text"],
        kind=AlertKind(r["kind"]),
        key=r["alert_key"], dedup=r["dedup"], urgent=bool(r["urgent"]), received=r["received"], due=r["due"],
        rcpt=r["rcpt"],
    )  # fmt: skip


def _window(r: Any) -> Window:
    return Window(
        key=r["key"], route=r["route"], phones=tuple(json.loads(r["phones"])), text=r["text"],
        opened=r["opened"], closes=r["closes"], repeats=r["repeats"], source=r["source"],
    )  # fmt: skip


def counts(conn: Db) -> dict[AlertState, int]:
    found = conn.execute("SELECT state, COUNT(*) FROM alerts GROUP BY state")
    return {AlertState(state): n for state, n in found}


def list_alerts(conn: Db, limit: int = 1000, state: AlertState | None = None) -> list[dict[str, object]]:
    """Alerts, newest first (for `queue alerts`)."""
    where, params = ("WHERE state = ?", [state.value]) if state else ("", [])
    out = []
    for r in conn.execute(f"SELECT * FROM alerts {where} ORDER BY received DESC LIMIT ?", (*params, limit)):
        d = dict(r)
        d["phones"] = json.loads(d["phones"])
        d["urgent"] = bool(d["urgent"])
        out.append(d)
    return out


def senders(conn: Db, relay_id: str) -> dict[str, list[str]]:
    """For a storm digest: the original envelope senders of the alerts in it, each with the
    addresses it mailed (a failure notice goes to each of them)."""
    found: dict[str, list[str]] = {}
    for mail_from, rcpt in conn.execute(
        "SELECT mail_from, rcpt FROM alerts WHERE message_id = ? ORDER BY received", (relay_id,)
    ):
        rcpts = found.setdefault(mail_from, [])
        if rcpt and rcpt not in rcpts:
            rcpts.append(rcpt)
    return found


def prune(conn: Db, older_than: float, limit: int) -> int:
    """Alerts that are done (sent, counted, cancelled): their SMS is a message row already."""
    return conn.execute(
        "DELETE FROM alerts WHERE id IN (SELECT id FROM alerts WHERE state != ? AND updated < ? LIMIT ?)",
        (HELD, older_than, limit),
    ).rowcount


def phone_history(conn: Db, phones: Sequence[str], now: float) -> dict[str, list[Send]]:
    """What these phones were sent (or will be, queued) recently, oldest first: as far back as
    the provider's flood rule can reach (a run of short gaps)."""
    found: dict[str, list[Send]] = {}
    since = now - FLOOD_LIMIT * FLOOD_GAP
    for phone in dict.fromkeys(phones):
        # The newest sends are all the rules read: a run longer than the flood limit is no
        # longer, and a phone never gets many more than that within the minute.
        newest = conn.execute(
            "SELECT at, digest FROM phone_sends WHERE phone = ? AND at > ? ORDER BY at DESC LIMIT ?",
            (phone, since, 2 * FLOOD_LIMIT),
        ).fetchall()
        found[phone] = [Send(at, digest) for at, digest in reversed(newest)]
    return found


def protect(conn: Db, rows: list[Row], mails: Sequence[ProviderMail], now: float) -> list[Row]:
    """Every route keeps the provider's limits (storm routes plan theirs): a request whose text
    every phone got within the minute becomes a `repeat`; one that would be a phone's 50th
    short-gap SMS waits (deferred) until allowed. What goes, goes into the phones' history."""
    out = []
    for row, mail in zip(rows, mails, strict=True):
        phones = [p for e in mail.entries for p in e.phones]
        if not phones:
            out.append(row)
            continue
        history = phone_history(conn, phones, now)
        verdict = pacing.protect(mail.entries, history, now)
        if verdict.repeat:
            out.append(replace(row, state=State.REPEAT, attempts=0, last_error=verdict.reason))
            continue
        at = max(now, verdict.not_before)
        conn.executemany(
            "INSERT INTO phone_sends (phone, at, digest) VALUES (?, ?, ?)",
            [(p, at, pacing.text_digest(e.text)) for e in mail.entries for p in e.phones],
        )
        if verdict.not_before:
            row = replace(row, state=State.DEFERRED, attempts=0, next_attempt=at, last_error=verdict.reason)
        out.append(row)
    return out
