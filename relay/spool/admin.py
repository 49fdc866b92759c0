"""The spool for `smsc-relay queue` and `stats`: a second connection, safe while the relay runs.

Reads see the last committed state (WAL); the few writes (retry, drop, resume) are single
statements that the running relay's next claim or control check picks up. It never requeues
`sending` rows: those belong to the running relay.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relay.model import AlertState, State
from relay.spool import alerts, messages, replies, schema, tracking
from relay.spool.messages import Row
from relay.spool.sqlite import connect


@dataclass(frozen=True, slots=True)
class Stats:
    counts: dict[State, int]
    oldest_pending: float | None  # epoch seconds of the oldest waiting or sending message
    control: dict[str, str]
    alerts: dict[AlertState, int]


class SpoolAdmin:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    @classmethod
    def open(cls, path: Path) -> SpoolAdmin:
        conn = connect(path)
        schema.migrate(conn)  # an older spool gets the tables this code reads
        return cls(conn)

    def close(self) -> None:
        self.conn.close()

    def newest(self, limit: int, state: State | None = None) -> list[Row]:
        return messages.newest(self.conn, limit, state)

    def get(self, relay_id: str) -> Row | None:
        return messages.get(self.conn, relay_id)

    def replies(self, relay_id: str) -> list[dict[str, object]]:
        return [dict(r) for r in replies.of_message(self.conn, relay_id)]

    def phone_statuses(self, relay_id: str) -> list[dict[str, Any]]:
        return [dict(r) for r in tracking.of_message(self.conn, relay_id)]

    def retry(self, relay_id: str) -> None:
        messages.retry(self.conn, relay_id, time.time())

    def drop(self, relay_id: str) -> None:
        messages.drop(self.conn, relay_id)

    def alerts(self, limit: int, state: AlertState | None = None) -> list[dict[str, object]]:
        return alerts.list_alerts(self.conn, limit=limit, state=state)

    def stats(self) -> Stats:
        return Stats(
            counts=messages.counts(self.conn),
            oldest_pending=messages.oldest_pending(self.conn),
            control=messages.get_control(self.conn),
            alerts=alerts.counts(self.conn),
        )

    def resume(self) -> str | None:
        """Clear a provider pause; returns its reason, or None when delivery was not paused."""
        reason = messages.get_control(self.conn).get("pause_reason")
        self.conn.execute("BEGIN IMMEDIATE")
        messages.set_control(self.conn, "paused_until", None)
        messages.set_control(self.conn, "pause_reason", None)
        self.conn.execute("COMMIT")
        return reason
