"""The accept service: a rendered mail in, a receipt (the client's SMTP reply) out.

It owns everything between the pure core's render and the 250: storm admission, the provider's
per-phone limits, the durable spool write, the handoff to delivery and the reply's wording. The
listener (relay/smtp/handler.py) only collects the mail and hands it here; `smsc-relay render`
runs the same render without this.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from relay import replies
from relay.config.current import Current
from relay.errors import RelayError
from relay.metrics import Metrics
from relay.model import AlertState, State
from relay.pipeline import Rendered
from relay.spool.interface import Messages, Row, StormAdmit
from relay.storm.plan import Admission

log = logging.getLogger("relay.listener")

# What the 250 reply says of a mail's storm alerts.
ALERT_WORDS = (
    (AlertState.HELD, "held as"),
    (AlertState.REPEAT, "repeat counted as"),
    (AlertState.CANCELLED, "flap closed as"),
)


class Delivery(Protocol):
    """What accepting needs of delivery: hand new rows over, or say rows are waiting."""

    def can_take(self, count: int) -> bool: ...
    def take(self, rows: list[Row]) -> None: ...
    def wake(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Arrival:
    """A mail as the listener got it, for the SMS recipients of its envelope."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    peer: str  # for the log: "ip:port"
    at: float  # the storm planner's clock when DATA ended


@dataclass(frozen=True, slots=True)
class Receipt:
    reply: replies.Reply
    queued: tuple[str, ...] = ()  # the relay ids handed to delivery or waiting for it


class AcceptService:
    def __init__(
        self,
        spool: Messages,
        delivery: Delivery,
        *,
        current: Current,
        metrics: Metrics,
        on_alert_due: Callable[[float], None] = lambda at: None,
    ) -> None:
        self.spool = spool
        self.delivery = delivery
        self.current = current
        self.metrics = metrics
        self.on_alert_due = on_alert_due  # the storm runner: look sooner

    def refuse(self, arrival: Arrival, exc: RelayError) -> Receipt:
        """A mail the core or the spool would not take: the error's own SMTP reply, logged."""
        reply = str(exc.reply)
        log.warning("event=rejected peer=%s from=%s reply=%r", arrival.peer, arrival.mail_from, reply)
        return Receipt(exc.reply)

    async def accept(self, rendered: Rendered, arrival: Arrival) -> Receipt:
        """Store the mail's provider requests (and storm alerts) durably, then hand them over."""
        self._log_render(rendered, arrival.peer)
        cfg = self.current.config
        claimed = self.delivery.can_take(len(rendered.provider_mails))
        storm = StormAdmit(rendered.alerts, cfg.storm_settings, arrival.at) if rendered.alerts else None
        write = self.spool.enqueue(
            rendered.provider_mails,
            mail_from=arrival.mail_from,
            inbound_id=rendered.mail.message_id,
            claimed=claimed,
            storm=storm,
            protect=cfg.provider.phone_limits,
            # Alert mail is a few KB; a big mail would be kept once per provider request.
            inbound=arrival.raw if len(arrival.raw) <= cfg.spool.keep_mail else None,
            config=cfg.digest,
        )
        try:
            # A client that hangs up now cancels the listener's task; the write must still
            # finish whole (committed or not), so it runs shielded.
            enqueued = await asyncio.shield(write)
        except RelayError as exc:
            return self.refuse(arrival, exc)
        for m in rendered.provider_mails:
            log.info(
                "event=queued id=%s route=%s mode=%s phones=%d parts=%d from=%s",
                m.relay_id, m.route, m.mode.value, len(m.phones), m.segments.parts, arrival.mail_from,
            )  # fmt: skip
        self.metrics.received.inc()
        going = [r for r in enqueued.rows if r.state in (State.SENDING, State.QUEUED)]
        if going and claimed:
            self.delivery.take([r for r in going if r.state is State.SENDING])
        elif going:
            self.delivery.wake()
        said = ["queued as " + " ".join(r.id for r in going)] if going else []
        said += self._report_protected(enqueued.rows)
        said += self._report_alerts(enqueued.admitted)
        reply = replies.S250_ACCEPTED.with_text("; ".join(said))
        return Receipt(reply, tuple(r.id for r in going))

    @staticmethod
    def _log_render(rendered: Rendered, peer: str) -> None:
        for warning in rendered.mail.warnings:
            log.warning("event=decode_warning peer=%s warning=%r", peer, warning)
        for warning in rendered.warnings:
            log.warning("event=render_warning peer=%s warning=%r", peer, warning)
        for note in rendered.notes:
            log.info("event=render_note peer=%s note=%r", peer, note)

    def _report_protected(self, rows: list[Row]) -> list[str]:
        """Rows the provider's per-phone limits held back or counted: logged, counted, said."""
        said = []
        for r in rows:
            if r.state is State.REPEAT:
                action, words = "repeat", f"not sent, a repeat: {r.id} ({r.last_error})"
            elif r.state is State.DEFERRED:
                until = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(r.next_attempt))
                action, words = "held", f"held until {until} to protect the phone: {r.id} ({r.last_error})"
            else:
                continue
            self.metrics.protected.labels(action).inc()
            log.warning(
                "event=phone_protected id=%s route=%s action=%s until=%.0f reason=%r",
                r.id, r.route, action, r.next_attempt, r.last_error,
            )  # fmt: skip
            said.append(words)
        return said

    def _report_alerts(self, admitted: tuple[Admission, ...]) -> list[str]:
        """Log and count admitted alerts, wake the planner for held ones; the reply's words."""
        for a in admitted:
            self.metrics.alerts.labels(a.state.value).inc()
            log.info(
                "event=alert_%s id=%s route=%s phones=%d kind=%s note=%r",
                a.state.value, a.alert.id, a.alert.route, len(a.alert.phones), a.alert.kind.value, a.note,
            )  # fmt: skip
            if a.state is AlertState.HELD:
                self.on_alert_due(a.alert.due)
        said = []
        for state, verb in ALERT_WORDS:
            got = [a.alert.id for a in admitted if a.state is state]
            if got:
                said.append(f"{verb} {' '.join(got)}")
        return said
