"""The spool for `smsc-relay queue`, `stats`, `send-test`, `spool migrate` and `check`: a
connection of its own, safe while the relays run, on either engine. With relay/spool/interface.py,
the one module of relay/spool/ the command line imports (a contract in pyproject.toml).

Reads see the last committed state; the few writes (retry, drop, resume, a test message) are
short transactions that the running relays' next claim or control check picks up (on
PostgreSQL they are told at once, by NOTIFY). It never requeues `sending` rows: those belong
to a running relay.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

from relay.config.schema import SpoolConfig
from relay.errors import SpoolError
from relay.model import AlertState, ProviderMail, SpoolBackend, State
from relay.spool import alerts, messages, pgdb, postgres, receipts, replies, schema, tracking
from relay.spool.base import CONTROL, QUEUED
from relay.spool.db import Db
from relay.spool.messages import Row
from relay.spool.sqlite import connect, held, lock_path
from relay.spool.writer import SqliteEngine

if TYPE_CHECKING:
    from relay.spool.migrate import Copied


@dataclass(frozen=True, slots=True)
class Stats:
    counts: dict[State, int]
    oldest_pending: float | None  # epoch seconds of the oldest waiting or sending message
    control: dict[str, str]
    alerts: dict[AlertState, int]


class SpoolAdmin:
    def __init__(
        self,
        conn: Db,
        transaction: Callable[[], contextlib.AbstractContextManager[Db]],
        close: Callable[[], None],
        notify: Callable[[Db, str], None] = lambda conn, what: None,
    ) -> None:
        self.conn = conn  # reads, and single statements (autocommit)
        self._transaction = transaction  # several statements as one, serialized as a relay's
        self._close = close
        self._notify = notify

    @classmethod
    def open(cls, path: Path) -> SpoolAdmin:
        """A SQLite spool file."""
        conn = connect(path)
        schema.migrate(conn)  # an older spool gets the tables this code reads

        engine = SqliteEngine(conn)  # the relay's own transactions: BEGIN IMMEDIATE .. COMMIT
        return cls(conn, lambda: engine.transaction(durable=True, shared=True), conn.close)

    @classmethod
    def open_postgres(cls, dsn: str, timeout: float = 10.0) -> SpoolAdmin:
        """A PostgreSQL spool; raises SpoolError (DSN masked) when it cannot be reached."""
        try:
            raw = psycopg.connect(
                dsn, autocommit=True, connect_timeout=int(timeout), **pgdb.connection_kwargs()
            )
            pgdb.migrate(raw)  # an older database gets the tables this code reads
        except psycopg.Error as exc:
            raise SpoolError(f"cannot open the PostgreSQL spool: {pgdb.masked(str(exc), dsn)}") from None
        db = pgdb.PgDb(raw)

        @contextlib.contextmanager
        def transaction() -> Iterator[Db]:
            with raw.transaction():
                db.execute("SELECT pg_advisory_xact_lock(?)", (postgres.SHARED_LOCK,))
                yield db

        return cls(db, transaction, raw.close, postgres.notify)

    @classmethod
    def for_config(cls, cfg: SpoolConfig) -> SpoolAdmin:
        if cfg.backend is SpoolBackend.POSTGRESQL:
            return cls.open_postgres(cfg.dsn.value)
        return cls.open(cfg.path)

    def close(self) -> None:
        self._close()

    def newest(self, limit: int, state: State | None = None) -> list[Row]:
        return messages.newest(self.conn, limit, state)

    def get(self, relay_id: str) -> Row | None:
        return messages.get(self.conn, relay_id)

    def reply_key(self) -> bytes | None:
        """The reply tags' key, if a relay has made it (read only: an admin never makes one)."""
        found = self.conn.execute("SELECT value FROM control WHERE key = ?", (messages.REPLY_KEY,)).fetchone()
        return bytes.fromhex(found[0]) if found else None

    def replies(self, relay_id: str) -> list[dict[str, object]]:
        return [dict(r) for r in replies.of_message(self.conn, relay_id)]

    def phone_statuses(self, relay_id: str) -> list[dict[str, Any]]:
        return [dict(r) for r in tracking.of_message(self.conn, relay_id)]

    def smpp_parts(self, relay_id: str) -> list[dict[str, Any]]:
        """Each SMPP part's provider message id and receipt status (none for other transports)."""
        return [dict(r) for r in receipts.of_message(self.conn, relay_id)]

    def smpp_inbound(self, limit: int) -> list[dict[str, Any]]:
        """The newest deliver_sm kept unmatched: unknown receipts, malformed ones, incoming SMS."""
        return [dict(r) for r in receipts.kept(self.conn, limit)]

    def retry(self, relay_id: str, states: tuple[State, ...], rendered: Row | None = None) -> bool:
        """Queue it again (as `rendered`, a new rendering of its mail) if it is (still) in one
        of `states`; whether it was."""
        with self._transaction() as conn:
            done = messages.retry(conn, relay_id, time.time(), states, rendered)
            if done:
                self._notify(conn, QUEUED)
        return done

    def hold(self, relay_id: str, states: tuple[State, ...]) -> bool:
        with self._transaction() as conn:
            return messages.hold(conn, relay_id, time.time(), states)

    def drop(self, relay_id: str, states: tuple[State, ...]) -> bool:
        return messages.drop(self.conn, relay_id, states)

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
        with self._transaction() as conn:
            for key in ("paused_until", "pause_reason", replies.PAUSE_CAUSE):
                messages.set_control(conn, key, None)
            self._notify(conn, CONTROL)
        return reason

    def enqueue(self, rows: Sequence[Row], mails: Sequence[ProviderMail], *, protect: bool) -> list[Row]:
        """Queue new rows (a test message) as a relay would: within the phone limits."""
        with self._transaction() as conn:
            final = alerts.protect(conn, list(rows), mails, time.time()) if protect else list(rows)
            messages.insert(conn, final)
            self._notify(conn, QUEUED)
        return final


# ---- what the other commands need of the engines ---------------------------------------------
POSTGRES_SCHEMA_VERSION = pgdb.VERSION  # what `check --online` expects a relay's database to have


def masked_dsn(text: str, dsn: str) -> str:
    """An error text with the DSN's password shown as *** (pgdb.masked)."""
    return pgdb.masked(text, dsn)


def serving(path: Path) -> str | None:
    """The lock file by which a relay holds the SQLite spool at `path`, None when none serves it."""
    return str(lock_path(path)) if held(path) else None


def copy_to_postgres(path: Path, dsn: str) -> Copied:
    """`spool migrate`: the SQLite spool at `path` into the database at `dsn`."""
    from relay.spool import migrate

    with contextlib.closing(connect(path)) as source:
        return migrate.copy(source, dsn)
