"""The spool as the rest of the shell sees it, whatever engine is behind it: the one module of
relay/spool/ that the daemon, the listener and delivery import (a contract in pyproject.toml).

Each part of the shell depends on the narrow Protocol of the concern it uses (messages, replies,
control, tracking, storm); `Spool` is all of them, with opening and closing, for the daemon.

SQLite (relay/spool/sqlite.py, one relay) and PostgreSQL (relay/spool/postgres.py, relays
sharing one queue) implement it, both through base.py, with the same guarantees: `enqueue`
returns only after the rows are durable, a claimed row belongs to one worker, `finish` moves
only rows still `sending` and held by this relay, a reply and the pause it causes commit
together.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from relay.config.schema import SpoolConfig, StormSettings
from relay.model import PartStatus, PhoneStatus, ProviderMail, ProviderReply, State
from relay.provider_errors import Rule
from relay.spool.alerts import Tick
from relay.spool.messages import Row, new_rows
from relay.spool.replies import PAUSE_CAUSE, Applied
from relay.spool.tracking import Finished
from relay.storm.plan import Admission, Alert, Compose

__all__ = [
    "PAUSE_CAUSE", "Applied", "Control", "Enqueued", "Finished", "Messages", "Replies", "Row", "Spool",
    "Storm", "StormAdmit", "Tick", "Tracking", "describe", "make", "new_rows",
]  # fmt: skip


@dataclass(frozen=True, slots=True)
class StormAdmit:
    """A mail's alerts for storm routes, admitted in the transaction that stores the mail."""

    alerts: Sequence[Alert]
    settings: Callable[[str], StormSettings]  # by route name
    now: float  # the planner's clock


@dataclass(frozen=True, slots=True)
class Enqueued:
    rows: list[Row]
    admitted: tuple[Admission, ...] = ()


class Messages(Protocol):
    """Storing and moving provider requests: what the listener and delivery use."""

    async def enqueue(
        self,
        mails: Sequence[ProviderMail],
        *,
        mail_from: str,
        inbound_id: str,
        claimed: bool = False,
        storm: StormAdmit | None = None,
        protect: bool = False,
        inbound: bytes | None = None,
        config: str = "",
    ) -> Enqueued:
        """Store new provider mails (and a mail's storm alerts) durably, all or none.

        `inbound`: the mail they were made from, kept with each (`queue retry` renders it
        again); `config`: the digest of the config that rendered them.

        `claimed`: the rows go in as `sending` (attempt 1), owned by a delivery worker that is
        handed them in memory, which saves a claim transaction per message. `protect`: keep
        the provider's per-phone limits, counted across all routes (spool/alerts.protect): a
        row may come back as a `repeat`, or `deferred` until a phone may get it; only rows
        that came back `sending` are the caller's to hand over."""

    async def claim(self, limit: int, now: float) -> list[Row]:
        """Due rows, moved to `sending`: no two workers get one row; none while paused."""

    async def finish(self, relay_id: str, state: State, *, durable: bool = False, **values: Any) -> bool:
        """Record an attempt's outcome: state plus any of next_attempt, last_error, error_code,
        sms_count, attempts; False when the row is no longer this relay's attempt. Not fsynced
        by default: losing it to a power cut means one resend, not a lost message."""

    async def keep_claims(self) -> int:
        """Renew this relay's claims; rows whose holder stopped renewing go back to the queue
        (a shared spool). Returns how many came back."""

    async def next_due(self) -> float | None: ...
    async def get(self, relay_id: str) -> Row | None: ...
    async def counts(self) -> dict[State, int]: ...
    async def count_waiting(self) -> int: ...
    async def oldest_waiting(self) -> float | None:
        """When the oldest message not yet with the provider was accepted (epoch seconds)."""

    async def sweep_unconfirmed(self, older_than: float) -> int: ...
    async def hold_uncertain(self, until: float) -> int:
        """Queued rows that may have gone out wait until then at the earliest (after a crash,
        a transport that cannot ask the provider waits out its minute for identical requests)."""

    async def prune(self, older_than: float, limit: int = ...) -> tuple[int, int]: ...


class Replies(Protocol):
    """The provider's reply mails and the key of the reply tags."""

    reply_key: bytes  # the key of the reply tags (relay/ids.py), shared by all relays of this queue

    async def record_reply(
        self,
        reply: ProviderReply,
        *,
        mail_from: str,
        raw: bytes,
        untrusted: str = "",
        pause_for: Callable[[Rule], float] = ...,
        cause: Callable[[], str] = ...,
    ) -> Applied:
        """Keep a provider reply and apply it; a pause it starts is kept with `cause()` (the
        settings it may be owed to: provider_errors.account_cause)."""


class Control(Protocol):
    """The pause and the other controls relays share."""

    async def watch(self, wake: Callable[[str], None]) -> None:
        """Until cancelled: call `wake` when another relay queued rows ("queued") or changed
        the pause ("control"). Returns at once where no other relay can write."""

    async def add_control(self, key: str, value: str) -> bool:
        """Set control `key` unless it is set; True when this call set it."""

    async def take_turn(self, key: str, now: float, interval: float) -> bool:
        """Whether `interval` has passed since control `key`; if so, it becomes `now`: of the
        relays asking at once, one gets the turn."""

    async def set_control(self, key: str, value: str | None) -> None: ...
    async def control(self) -> dict[str, str]: ...


class Tracking(Protocol):
    """Delivery status per phone."""

    async def start_tracking(
        self,
        relay_id: str,
        *,
        via: str,
        next_poll: float | None,
        until: float | None,
        parts: Sequence[tuple[str, str]] = (),
    ) -> None:
        """After the provider took a request: the transport it went by, (tracking on) when to
        ask status.php first and when to give up waiting for a final status, and (SMPP) each
        part's (phone, provider message id), which its delivery receipt names."""

    async def record_receipts(
        self, found: Sequence[PartStatus], settle: Sequence[str], now: float
    ) -> list[Finished]:
        """SMPP deliver_sm: receipts onto their parts and phones, the rest kept as digests; the
        messages they concern (and `settle`: requests whose parts were just written) settled."""

    async def tracking_due(self, now: float, max_pairs: int) -> list[tuple[str, str]]:
        """(relay id, phone) pairs whose status is due to be asked, oldest first."""

    async def record_statuses(
        self, found: Sequence[PhoneStatus], asked: Sequence[tuple[str, str]], now: float
    ) -> list[Finished]:
        """Keep the statuses; move the asked messages that are now final (or out of time)."""

    async def expire_tracking(self, now: float) -> list[Finished]: ...


class Storm(Protocol):
    """Held alerts: the planner's state."""

    async def storm_tick(self, *, now: float, compose: Compose) -> Tick:
        """Plan the held alerts and queue what is due, in one transaction: `compose` (the core's
        relay/pipeline.storm_outgoing) plans from the state read and builds the requests."""

    async def alert_senders(self, relay_id: str) -> dict[str, list[str]]: ...


class Spool(Messages, Replies, Control, Tracking, Storm, Protocol):
    """The whole spool: what the daemon opens, wires and closes."""

    @property
    def commits(self) -> int:
        """Transactions written so far (group commit: fewer than operations)."""

    @property
    def failing(self) -> str:
        """The last commit error until a commit succeeds again; "" when healthy."""

    async def open(self) -> int:
        """Open (creating or migrating); returns how many `sending` rows were queued again."""

    async def close(self) -> None: ...


def make(cfg: SpoolConfig, default_name: str) -> Spool:
    """The spool the config asks for: a SQLite file, or a PostgreSQL database shared by relays.
    `default_name`: this relay's name when spool.relay_name is not set (hostname:port, stable
    across restarts, so a restarted relay takes its own claims back at once)."""
    from relay.spool import backends  # the engines import this module's types

    return backends.make(cfg, default_name)


def describe(cfg: SpoolConfig, spool: Spool) -> str:
    """For the log: where the queue is (never the DSN: it may hold a password)."""
    from relay.spool import backends

    return backends.describe(cfg, spool)
